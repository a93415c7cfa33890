"""Peak memory of W1 at 10⁷ units, with and without ``chunk_size``, each in its own process.

    .venv/bin/python -m benchmarks.memory [units] [chunk_size ...]   # default 10**7, 10**6

Each configuration runs in a fresh subprocess that builds the evidence (10 sites, float32,
on the device), records its resident set size, runs ``counterfactual`` (exact, W1's
do(X3 := 1)), reads every site of the counterfactual world as NumPy, checks it against the
closed form on 1,000 random units, and reports its peak RSS during the query (VmHWM,
reset after the evidence is made, via ``/proc/self/clear_refs``) and over the whole
process (``getrusage``'s ``ru_maxrss``). ``chunk_size=None`` is the unchunked query.
The floor under any answer: the evidence plus the answer, 2 x 10 x units x 4 bytes.
"""

from __future__ import annotations

import json
import resource
import subprocess
import sys
import time

from benchmarks.common import status_mib


def _reset_peak() -> bool:
    """Start the peak RSS (VmHWM) afresh (Linux >= 4.0), so the query's own peak is read
    apart from the evidence's making."""
    try:
        with open("/proc/self/clear_refs", "w") as refs:
            refs.write("5")
        return True
    except OSError:
        return False


def one_process(n: int, chunk_size: int | None) -> dict[str, float | None]:
    import jax
    import numpy as np

    from benchmarks import data
    from benchmarks import sys_scm_ppl as bench
    from benchmarks.common import INTERVENED_VALUE
    from models import linear_gaussian_dag as lg
    from scm_ppl import counterfactual

    start_rss = status_mib("VmRSS")
    # Made in blocks of 10^6 rows, so the float64 draws never exist whole.
    x = np.empty((n, len(lg.NODES)), np.float32)
    for at in range(0, n, 10**6):
        rows = min(10**6, n - at)
        x[at : at + rows] = data.linear_gaussian_units(rows, seed=at).astype(np.float32)
    evidence = bench.columns(x)
    jax.block_until_ready(evidence)
    check = np.random.default_rng(1).choice(n, size=1000, replace=False)
    truth = lg.counterfactual_closed_form(x[check].astype(np.float64), {3: INTERVENED_VALUE})
    del x  # only the device evidence stays, as a user's would
    evidence_rss = status_mib("VmRSS")
    reset = _reset_peak()
    start = time.perf_counter()
    result = counterfactual(
        lg.model, evidence, bench.INTERVENTION, rng_key=jax.random.key(0),
        model_kwargs={"n": n}, chunk_size=chunk_size,
    )  # fmt: skip
    world = result.world("cf")
    values = [np.asarray(world[s]) for s in lg.NODES]
    seconds = time.perf_counter() - start
    got = np.stack([v.reshape(-1)[check] for v in values], axis=-1)
    error = float(np.max(np.abs(got - truth)))
    lifetime = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    peak = status_mib("VmHWM") if reset else lifetime
    return {
        "lifetime_peak_rss_mib": lifetime,
        "units": n,
        "chunk_size": chunk_size,
        "start_rss_mib": start_rss,
        "evidence_rss_mib": evidence_rss,
        "peak_rss_mib": peak,
        "seconds_first_call": seconds,
        "max_error": error,
    }


def run(n: int, chunk_size: int | None) -> dict:
    out = subprocess.run(
        [sys.executable, "-m", "benchmarks.memory", "--one", str(n), str(chunk_size)],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    return json.loads(out.stdout.strip().splitlines()[-1])


def table(rows: list[dict]) -> str:
    lines = [
        "| units | chunk_size | RSS at start | with evidence | peak RSS during the query | "
        "process peak (ru_maxrss) | evidence + answer | first call (s) | max error |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        floor = 2 * 10 * r["units"] * 4 / 2**20
        lines.append(
            f"| {r['units']:,} | {r['chunk_size'] or 'none'} | {r['start_rss_mib']:.0f} MiB | "
            f"{r['evidence_rss_mib']:.0f} MiB | {r['peak_rss_mib']:.0f} MiB | "
            f"{r['lifetime_peak_rss_mib']:.0f} MiB | {floor:.0f} MiB | "
            f"{r['seconds_first_call']:.1f} | {r['max_error']:.1e} |"
        )
    return "\n".join(lines)


def main(n: int, chunk_sizes: list[int | None]) -> str:
    return table([run(n, c) for c in chunk_sizes])


if __name__ == "__main__":
    if sys.argv[1:2] == ["--one"]:
        chunk = None if sys.argv[3] == "None" else int(sys.argv[3])
        print(json.dumps(one_process(int(sys.argv[2]), chunk)))
    else:
        size = int(sys.argv[1]) if len(sys.argv) > 1 else 10**7
        chunks = [int(a) for a in sys.argv[2:]] or [10**6]
        print(main(size, [None, *chunks]))
