"""W9: one query over N processes joined by ``jax.distributed`` (CPU collectives).

    .venv/bin/python -m benchmarks.multiprocess [processes] [units per process]

The launcher starts N worker processes on localhost (coordinator on a free port); each
holds its own units of the evidence, and together they form one global array sharded
over the processes' devices along the unit axis. Every worker runs the same exact
``counterfactual`` (latent confounder, evidence on ``X`` and ``Y``, do(X := 0)) and
writes its own units' answer; the launcher compares the stitched answer with one
process running the same query on all units, and with the closed form. On a GPU cluster
the same worker code runs with ``jax.distributed.initialize()`` reading the cluster's
own coordinator settings (SLURM, Open MPI) instead of the localhost arguments.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import tempfile
import time

import numpy as np


def _evidence(total: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    x = rng.normal(size=total).astype(np.float32)
    return {"X": x, "Y": (0.5 * x + rng.normal(size=total)).astype(np.float32)}


def _answer(evidence, n):
    import jax

    from models import latent_confounder as lc
    from scm_ppl import counterfactual

    result = counterfactual(
        lc.model, evidence, {"X": 0.0}, rng_key=jax.random.key(0), model_args=(n,)
    )
    return result.world("cf")["Y"], result.method


def worker(rank: int, processes: int, port: int, per: int, out: str) -> None:
    import jax

    jax.config.update("jax_cpu_collectives_implementation", "gloo")
    jax.distributed.initialize(f"localhost:{port}", processes, rank)
    from jax.sharding import Mesh, NamedSharding, PartitionSpec

    total = per * processes
    full = _evidence(total)
    mesh = Mesh(np.array(jax.devices()), ("unit",))
    sharding = NamedSharding(mesh, PartitionSpec("unit"))
    mine = slice(rank * per, (rank + 1) * per)
    evidence = {
        k: jax.make_array_from_process_local_data(sharding, v[mine], (total,))
        for k, v in full.items()
    }
    start = time.perf_counter()
    y, method = _answer(evidence, total)
    shards = sorted(y.addressable_shards, key=lambda s: s.index[-1].start or 0)
    local = np.concatenate([np.asarray(s.data) for s in shards], axis=-1)
    seconds = time.perf_counter() - start
    np.savez(os.path.join(out, f"rank{rank}.npz"), y=local, seconds=seconds, method=method)
    jax.distributed.shutdown()


def main(processes: int = 2, per: int = 50_000) -> tuple[float, float]:
    """Run the workers and the one-process reference; ``(max gap to one process, max gap
    to the closed form)``."""
    from models import latent_confounder as lc

    with socket.socket() as s:
        s.bind(("localhost", 0))
        port = s.getsockname()[1]
    with tempfile.TemporaryDirectory() as out:
        env = {**os.environ, "JAX_PLATFORMS": "cpu"}
        start = time.perf_counter()
        procs = [
            subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "benchmarks.multiprocess",
                    "--worker",
                    str(r),
                    str(processes),
                    str(port),
                    str(per),
                    out,
                ],
                env=env,
            )
            for r in range(processes)
        ]
        codes = [p.wait(timeout=600) for p in procs]
        wall = time.perf_counter() - start
        assert codes == [0] * processes, f"worker exit codes {codes}"
        parts = [np.load(os.path.join(out, f"rank{r}.npz")) for r in range(processes)]
    y = np.concatenate([p["y"] for p in parts], axis=-1)
    total = per * processes
    ev = _evidence(total)
    one = np.asarray(_answer(ev, total)[0])
    truth = lc.counterfactual_y(ev["X"], ev["Y"], 0.0).mean
    print(f"method {parts[0]['method']}; {processes} processes x {per:,} units: "
          f"wall {wall:.1f} s (start-up included), "
          f"query {max(float(p['seconds']) for p in parts) * 1e3:.1f} ms (first call); "
          f"max |N-process - 1-process| {np.max(np.abs(y - one)):.2e}, "
          f"max |N-process - closed form| {np.max(np.abs(y - truth)):.2e}")  # fmt: skip
    return float(np.max(np.abs(y - one))), float(np.max(np.abs(y - truth)))


if __name__ == "__main__":
    if sys.argv[1:2] == ["--worker"]:
        worker(*(int(a) for a in sys.argv[2:6]), sys.argv[6])  # type: ignore[arg-type]
    else:
        main(*(int(a) for a in sys.argv[1:3]))
