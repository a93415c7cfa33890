"""A fit on 10⁷ rows streamed from disk, with the memory it takes.

    .venv/bin/python -m benchmarks.streamed_fit [rows] [chunk_rows] [--no-in-memory]

Writes W1's 10 columns (the 10-node linear-Gaussian DAG of
``models/linear_gaussian_dag.py``, float32) as one ``.npy`` file per column in a
temporary folder, 10⁶ rows at a time, then fits the DAG's 16 edge weights and 10 noise
scales (``numpyro.param`` sites, MAP = maximum likelihood) in a fresh subprocess reading
the files through ``scm_ppl.learn.StreamedRows``: one epoch of minibatches of 4,096 rows,
Adam with a cosine-decayed learning rate. It prints the subprocess's peak resident set
(``getrusage``'s ``ru_maxrss``, and ``VmHWM``: the same unless a parent's peak leaks in
through fork) beside its resident set just before the fit (after JAX
and the package are imported), the data's size, the time, and the fitted parameters
against the truth. The streamed fit runs at a tenth of the rows too (its memory should
not depend on the rows); for comparison, the same fit on all rows loaded into memory
(an ordinary ``fit`` of the arrays) runs in another subprocess (``--no-in-memory``
skips it).
"""

from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
import tempfile
import time

import numpy as np

from benchmarks.common import status_mib

BATCH = 4096


def write_columns(folder: str, rows: int) -> dict[str, str]:
    """W1's columns as ``.npy`` files (float32), written 10⁶ rows at a time."""
    from benchmarks import data
    from models import linear_gaussian_dag as lg

    paths = {name: os.path.join(folder, f"{name}.npy") for name in lg.NODES}
    files = {
        name: np.lib.format.open_memmap(path, mode="w+", dtype=np.float32, shape=(rows,))
        for name, path in paths.items()
    }
    for at in range(0, rows, 10**6):
        block = data.linear_gaussian_units(min(10**6, rows - at), seed=at).astype(np.float32)
        for i, name in enumerate(lg.NODES):
            files[name][at : at + len(block)] = block[:, i]
    for f in files.values():
        f.flush()
    del files
    return paths


def w1_fit_model(n: int) -> None:
    """W1 with unknown mechanisms: ``X_i ~ Normal(sum_j w[j, i] X_j, s_i)`` over the DAG's
    edges (the graph is known, the weights and noise scales are learned)."""
    import jax.numpy as jnp
    import numpyro
    import numpyro.distributions as dist
    from numpyro.distributions import constraints

    from models import linear_gaussian_dag as lg

    w = numpyro.param("weights", jnp.zeros((lg.NUM_NODES, lg.NUM_NODES)))
    s = numpyro.param("scales", jnp.ones(lg.NUM_NODES), constraint=constraints.positive)
    with numpyro.plate("unit", n):
        xs: list = []
        for i, name in enumerate(lg.NODES):
            mean = sum((w[j, i] * xs[j] for j in np.flatnonzero(lg.WEIGHTS[:, i])), 0.0)
            xs.append(numpyro.sample(name, dist.Normal(mean, s[i])))


def one_process(mode: str, folder: str, chunk_rows: int) -> dict:
    import jax
    import optax

    from models import linear_gaussian_dag as lg
    from scm_ppl import fit
    from scm_ppl.learn import StreamedRows

    paths = {name: os.path.join(folder, f"{name}.npy") for name in lg.NODES}
    if mode == "streamed":
        rows = StreamedRows(paths, chunk_rows=chunk_rows)
        n = rows.rows
    else:
        rows = {name: np.load(path) for name, path in paths.items()}
        n = len(rows["X0"])
    steps = -(-n // BATCH) + (-(-n // chunk_rows) if mode == "streamed" else 0)
    optimizer = optax.adam(optax.cosine_decay_schedule(0.05, steps))
    before = status_mib("VmRSS")
    start = time.perf_counter()
    fitted = fit(w1_fit_model, rows, batch_size=BATCH, num_epochs=1, optimizer=optimizer,
                 validation_fraction=0.0, rng_key=jax.random.key(0), progress=False)  # fmt: skip
    weights = np.asarray(fitted.params["weights"])
    scales = np.asarray(fitted.params["scales"])
    seconds = time.perf_counter() - start
    edges = lg.WEIGHTS != 0
    return {
        "mode": mode,
        "rows": n,
        "chunk_rows": chunk_rows if mode == "streamed" else None,
        "reads": len(rows.reads) if mode == "streamed" else None,  # type: ignore[union-attr]
        "rss_before_fit_mib": before,
        "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "vm_hwm_mib": status_mib("VmHWM"),
        "seconds": seconds,
        "max_weight_error": float(np.max(np.abs(weights[edges] - lg.WEIGHTS[edges]))),
        "max_scale_error": float(np.max(np.abs(scales - lg.NOISE_SCALES))),
        "weights": weights[edges].round(4).tolist(),
        "scales": scales.round(4).tolist(),
    }


def run(mode: str, folder: str, chunk_rows: int) -> dict:
    out = subprocess.run(
        [sys.executable, "-m", "benchmarks.streamed_fit", "--one", mode, folder, str(chunk_rows)],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    return json.loads(out.stdout.strip().splitlines()[-1])


def main(rows: int = 10**7, chunk_rows: int = 2**18, in_memory: bool = True) -> list[dict]:
    from models import linear_gaussian_dag as lg

    results, sizes = [], {}
    for n in (rows // 10, rows):  # a streamed fit's memory should not grow with the rows
        with tempfile.TemporaryDirectory() as folder:
            start = time.perf_counter()
            # In a subprocess too: Linux keeps a parent's peak RSS at fork in the child's
            # ru_maxrss, and writing through memory maps would lend it the file's size.
            subprocess.run([sys.executable, "-m", "benchmarks.streamed_fit", "--write", folder,
                            str(n)], check=True)  # fmt: skip
            sizes[n] = sum(os.path.getsize(os.path.join(folder, f)) for f in os.listdir(folder))
            print(f"wrote {n:,} rows x {lg.NUM_NODES} columns (float32, .npy): "
                  f"{sizes[n] / 2**20:.0f} MiB in {time.perf_counter() - start:.1f} s")  # fmt: skip
            results.append(run("streamed", folder, chunk_rows))
            if in_memory and n == rows:
                results.append(run("in memory", folder, chunk_rows))
    edges = lg.WEIGHTS != 0
    print(f"truth: weights {lg.WEIGHTS[edges].round(2).tolist()}, "
          f"scales {lg.NOISE_SCALES.tolist()}")  # fmt: skip
    print(
        "| fit | rows | chunk_rows | RSS before the fit | peak RSS (ru_maxrss; VmHWM) | "
        "data | time (s, compile included) | max abs error: weights | scales |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    for r in results:
        print(f"| {r['mode']} | {r['rows']:,} | {r['chunk_rows'] or '-'} | "
              f"{r['rss_before_fit_mib']:.0f} MiB | {r['peak_rss_mib']:.0f}; "
              f"{r['vm_hwm_mib']:.0f} MiB | "
              f"{sizes[r['rows']] / 2**20:.0f} MiB | {r['seconds']:.1f} | "
              f"{r['max_weight_error']:.1e} | {r['max_scale_error']:.1e} |")  # fmt: skip
    for r in results:
        print(f"{r['mode']}, {r['rows']:,} rows: weights {r['weights']}, scales {r['scales']}")
    return results


if __name__ == "__main__":
    if sys.argv[1:2] == ["--write"]:
        write_columns(sys.argv[2], int(sys.argv[3]))
    elif sys.argv[1:2] == ["--one"]:
        print(json.dumps(one_process(sys.argv[2], sys.argv[3], int(sys.argv[4]))))
    else:
        args = [a for a in sys.argv[1:] if not a.startswith("--")]
        main(*(int(a) for a in args[:2]), in_memory="--no-in-memory" not in sys.argv)
