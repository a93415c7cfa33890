"""Where scm_ppl's W1 time goes, next to the floor: Python, dispatch, compute, checks.

    .venv/bin/python -m benchmarks.profile_w1 [units ...]

For each size: the steady-state time of one ``counterfactual`` call (on the same
evidence arrays, as the benchmark repeats it: their NaN/inf verdict is kept, JAX arrays
being immutable) and of one on evidence it has not seen (the check runs: one fused
reduction in a small compiled call of its own); the floor alone and with that check
added; and a cProfile of repeated calls split into the compiled call (dispatch and,
on CPU, its inline run), the wait for the device, and everything else (Python:
argument checks, cache keys, result building).
"""

from __future__ import annotations

import cProfile
import pstats
import sys
import time
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from benchmarks import data, floor
from benchmarks import sys_scm_ppl as bench
from models import linear_gaussian_dag as lg
from scm_ppl.query import _evidence_checks as evidence_checks


def best_and_median(fn: Callable[[], Any], repeats: int) -> tuple[float, float]:
    fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return float(np.min(times)), float(np.median(times))


def profile_calls(fn: Callable[[], Any], repeats: int) -> dict[str, float]:
    """Seconds per call: total, in JAX's compiled-call machinery, and the rest."""
    profiler = cProfile.Profile()
    profiler.enable()
    for _ in range(repeats):
        fn()
    profiler.disable()
    stats = pstats.Stats(profiler)
    raw: dict = stats.stats  # type: ignore[attr-defined]  # pstats keeps it untyped
    total = sum(v[2] for v in raw.values()) / repeats  # sum of tottime = wall in profile
    by_name: dict[str, float] = {}
    for (filename, _, name), (_, _, tottime, _, _) in raw.items():
        where = "jax" if "/jax/" in filename or "/jaxlib/" in filename else "other"
        if name.startswith("<built-in method numpy.asarray") or "block_until_ready" in name:
            where = "wait for device"
        if "pjit" in name or "cache_miss" in name or name == "<built-in method apply_primitive>":
            where = "jit dispatch"
        if "scm_ppl" in filename:
            where = "scm_ppl Python"
        by_name[where] = by_name.get(where, 0.0) + tottime / repeats
    by_name["total (profiled)"] = total
    return by_name


def profile_size(n: int, key: jax.Array) -> None:
    x = data.linear_gaussian_units(n)
    evidence = bench.columns(x)
    cols = tuple(evidence[k] for k in lg.NODES)
    repeats = 200 if n <= 10_000 else 20
    cf = floor.make_w1(lg.WEIGHTS)

    @jax.jit
    def floor_with_check(cols):
        # scm_ppl's check of evidence it has not seen: x * 0 is 0, or NaN for NaN and
        # +-inf, so one sum over the sites is NaN exactly when a value is not finite.
        return cf(cols), jnp.isfinite(jnp.sum(sum(c * 0.0 for c in cols)))

    def unseen_evidence():
        evidence_checks._FINITE._data.clear()  # forget the verdicts: the check runs again
        return bench.w1(evidence, key)

    print(f"\n=== W1, {n:,} units (best, median of {repeats}) ===")
    rows = {
        "scm_ppl counterfactual": lambda: bench.w1(evidence, key),
        "scm_ppl, unseen evidence": unseen_evidence,
        "floor": lambda: jax.block_until_ready(cf(cols)),
        "floor + finite check": lambda: jax.block_until_ready(floor_with_check(cols)),
    }
    for label, fn in rows.items():
        best, med = best_and_median(fn, repeats)
        print(f"{label:<30} {best * 1e3:9.3f} ms  {med * 1e3:9.3f} ms")
    split = profile_calls(lambda: bench.w1(evidence, key), repeats)
    print("cProfile of the scm_ppl call, ms per call by where the time is spent:")
    for where, seconds in sorted(split.items(), key=lambda kv: -kv[1]):
        print(f"  {where:<26} {seconds * 1e3:9.3f}")


def main(sizes: list[int]) -> None:
    key = jax.random.key(0)
    for n in sizes:
        profile_size(n, key)


if __name__ == "__main__":
    main([int(a) for a in sys.argv[1:]] or [10_000, 1_000_000])
