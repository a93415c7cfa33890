"""W1 through both ways of reading a result, next to the floor, in fresh processes.

    .venv/bin/python -m benchmarks.w1_result_paths [units ...]   # 5 processes per size

Each process times (median of its repeats, after a first call that compiles): the
floor (hand-written jitted JAX, one stacked array); ``counterfactual`` plus every
site of ``result.world("cf")`` as NumPy; and ``counterfactual`` plus every site read as
``np.asarray(result.predictions[site].sel(world="cf"))`` (the README's way). The table
is the median over the processes of those medians; ``sel / world`` is the ratio of the two
result paths within each process (the raw query with its NumPy reads is the second).
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Callable
from typing import Any

import numpy as np

PATHS = ("floor", "world(label)[site]", "predictions[site].sel(world)")


def _median_time(fn: Callable[[], Any], repeats: int) -> float:
    fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return float(np.median(times))


def one_process(n: int) -> dict[str, float]:
    import jax

    from benchmarks import data, floor
    from benchmarks import sys_scm_ppl as bench
    from models import linear_gaussian_dag as lg
    from scm_ppl import counterfactual

    evidence = bench.columns(data.linear_gaussian_units(n))
    cols = tuple(evidence[k] for k in lg.NODES)
    cf = floor.make_w1(lg.WEIGHTS)
    key = jax.random.key(0)

    def query():
        return counterfactual(lg.model, evidence, bench.INTERVENTION, rng_key=key,
                              model_kwargs={"n": n})  # fmt: skip

    def by_world():
        world = query().world("cf")
        return [np.asarray(world[s]) for s in lg.NODES]

    def by_sel():
        predictions = query().predictions
        return [np.asarray(predictions[s].sel(world="cf")) for s in lg.NODES]

    repeats = 50 if n <= 10_000 else 10
    return {
        "floor": _median_time(lambda: jax.block_until_ready(cf(cols)), repeats),
        "world(label)[site]": _median_time(by_world, repeats),
        "predictions[site].sel(world)": _median_time(by_sel, repeats),
    }


def main(sizes: list[int], processes: int = 5) -> None:
    print("| path | " + " | ".join(f"{n:,} units" for n in sizes) + " |")
    print("|---|" + "---|" * len(sizes))
    rows: dict[str, list[str]] = {p: [] for p in [*PATHS, "sel / world"]}
    for n in sizes:
        runs = []
        for _ in range(processes):
            out = subprocess.run(
                [sys.executable, "-m", "benchmarks.w1_result_paths", "--one", str(n)],
                capture_output=True, text=True, check=True,
            )  # fmt: skip
            runs.append(json.loads(out.stdout.strip().splitlines()[-1]))
        for p in PATHS:
            times = [r[p] * 1e3 for r in runs]
            med = float(np.median(times))
            ratio = med / float(np.median([r["floor"] * 1e3 for r in runs]))
            rows[p].append(f"{med:.2f} ms ({min(times):.2f}–{max(times):.2f}; {ratio:.2f}× floor)")
        sel = [r["predictions[site].sel(world)"] / r["world(label)[site]"] for r in runs]
        rows["sel / world"].append(f"{float(np.median(sel)):.2f}× ({min(sel):.2f}–{max(sel):.2f})")
    for p in [*PATHS, "sel / world"]:
        print(f"| {p} | " + " | ".join(rows[p]) + " |")


if __name__ == "__main__":
    if sys.argv[1:2] == ["--one"]:
        print(json.dumps(one_process(int(sys.argv[2]))))
    else:
        main([int(a) for a in sys.argv[1:]] or [10_000, 1_000_000])
