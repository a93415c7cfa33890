"""Drawing noise: JAX's default key vs :func:`scm_ppl.core.fast_key` vs ``torch.randn``, one run.

.. code-block:: bash

    .venv/bin/python -m benchmarks.prng_speed                 # 10⁷ normals + W3 at 10⁶
    .venv/bin/python -m benchmarks.prng_speed --repeats 9 --no-w3

Every case is timed once per round, the cases taking turns in a rotating order (the
machine is shared, so neighbouring calls see the same load), after a first call that
compiles. torch runs in the ChiRho environment (``benchmarks/.envs/chirho``, made by
``setup_envs.sh``) as a child process that times one call per request, in the same
rounds. Reported: first call, median of the rounds and their range, and the ratio to
``torch.randn`` (normals) or to ChiRho (W3).

Cases that are measured but not offered: JAX's built-in Philox-4x32-10 (it XORs its
four output words into one, so costs one 10-round hash per word), and Threefry-2x32
with 13 rounds (Random123's fewest "Crush-resistant"; not the default stream).
"""

from __future__ import annotations

import argparse
import functools
import json
import statistics
import subprocess
import time
from collections.abc import Callable
from typing import Any

import jax
import numpy as np
from jax import lax
from jax.extend.random import define_prng_impl, threefry_prng_impl

from benchmarks.common import BENCH_DIR, REPO_DIR, load
from scm_ppl.core import fast_key
from scm_ppl.core import prng as fast_prng

CHIRHO_PYTHON = BENCH_DIR / ".envs" / "chirho" / "bin" / "python"

# The torch side: one timed call per request line ("randn N" or "w3 KIND N").
TORCH_WORKER = r"""
import sys, time
import torch
cache = {}
for line in sys.stdin:
    what, *args = line.split()
    if what == "randn":
        fn = lambda n=int(args[0]): torch.randn(n)
    else:
        from benchmarks import sys_chirho as C
        from benchmarks.common import load
        kind, n = args[0], int(args[1])
        if (kind, n) not in cache:
            d = load("lg")
            cache[kind, n] = C.make_w3(kind, d["weights"], d["noise_scales"], n)
        fn = cache[kind, n]
    start = time.perf_counter()
    fn()
    print(time.perf_counter() - start, flush=True)
"""


def _threefry13_impl() -> Any:
    """fast_key's generator with 13 rounds instead of 20 (measured only)."""
    return define_prng_impl(
        key_shape=(2,),
        seed=threefry_prng_impl.seed,
        split=threefry_prng_impl.split,
        random_bits=functools.partial(fast_prng._random_bits, rounds=13),
        fold_in=threefry_prng_impl.fold_in,
        name="threefry2x32_13",
    )


def jax_cases(size: int, units: int, with_w3: bool) -> dict[str, Callable[[], Any]]:
    """Each case a no-argument call that returns once its answer is computed."""
    keys = {
        "jax default (threefry, rolled)": jax.random.key(0),
        "scm_ppl.core.fast_key (threefry, unrolled)": fast_key(0),
        "jax philox4x32 [not offered]": jax.random.key(0, impl="philox4x32"),
        "threefry-13 unrolled [not offered]": jax.random.key(0, impl=_threefry13_impl()),
    }
    normal = jax.jit(lambda k: jax.random.normal(k, (size,)))
    bits = jax.jit(lambda k: jax.random.bits(k, (size,)))
    cases: dict[str, Callable[[], Any]] = {}
    for name, key in keys.items():
        cases[f"normals: {name}"] = lambda k=key: jax.block_until_ready(normal(k))
    for name in list(keys)[:2]:
        cases[f"bits: {name}"] = lambda k=keys[name]: jax.block_until_ready(bits(k))
    # The transform alone: JAX's normal is sqrt(2) * erfinv(uniform in (-1, 1)).
    uniform = jax.random.uniform(jax.random.key(1), (size,), minval=-0.999999, maxval=1.0)
    erfinv = jax.jit(lambda u: np.float32(np.sqrt(2.0)) * lax.erf_inv(u))
    cases["transform: erfinv of given uniforms"] = lambda: jax.block_until_ready(erfinv(uniform))
    if with_w3:
        cases.update(_w3_cases(units, {k: keys[k] for k in list(keys)[:2]}))
    return cases


def _w3_cases(units: int, keys: dict[str, jax.Array]) -> dict[str, Callable[[], Any]]:
    from benchmarks import floor
    from benchmarks import sys_scm_ppl as S

    d = load("lg")
    floor_draw = floor.make_w3_linear(d["weights"], d["noise_scales"], units)
    cases: dict[str, Callable[[], Any]] = {}
    for name, key in keys.items():
        for kind, (model, action) in S.W3_MODELS.items():
            cases[f"W3 {kind}: scm_ppl, {name}"] = lambda m=model, a=action, k=key: S.w3(
                m, a, units, k
            )
        cases[f"W3 linear: floor, {name}"] = lambda k=key: jax.block_until_ready(floor_draw(k))
    return cases


class TorchWorker:
    """torch in the ChiRho environment, timing one call per request."""

    def __init__(self) -> None:
        self.proc = subprocess.Popen(
            [str(CHIRHO_PYTHON), "-c", TORCH_WORKER],
            cwd=REPO_DIR,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )

    def time(self, request: str) -> float:
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.write(request + "\n")
        self.proc.stdin.flush()
        return float(self.proc.stdout.readline())

    def close(self) -> None:
        if self.proc.stdin is not None:
            self.proc.stdin.close()
        self.proc.wait(timeout=30)


def _timed(fn: Callable[[], Any]) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def run(size: int, units: int, repeats: int, with_w3: bool) -> dict[str, dict[str, Any]]:
    cases = jax_cases(size, units, with_w3)
    torch_worker = TorchWorker() if CHIRHO_PYTHON.exists() else None
    if torch_worker is not None:
        cases["normals: torch.randn"] = lambda: torch_worker.time(f"randn {size}")
        if with_w3:
            for kind in ("linear", "nonlinear"):
                cases[f"W3 {kind}: chirho"] = lambda k=kind: torch_worker.time(f"w3 {k} {units}")
    # Pay the process's one-off costs before timing any first call.
    jax.block_until_ready(jax.jit(lambda k: jax.random.normal(k, (8,)))(jax.random.key(1)))
    first = {name: _timed(fn) for name, fn in cases.items()}
    times: dict[str, list[float]] = {name: [] for name in cases}
    names = list(cases)
    for round_ in range(repeats):
        for name in names[round_ % len(names) :] + names[: round_ % len(names)]:
            fn = cases[name]
            # torch's worker reports the call's own time, without the pipe.
            elapsed = fn() if name.endswith(("torch.randn", "chirho")) else _timed(fn)
            times[name].append(elapsed)
    if torch_worker is not None:
        torch_worker.close()
    return {
        name: {
            "first_s": first[name],
            "median_s": statistics.median(ts),
            "min_s": min(ts),
            "max_s": max(ts),
        }
        for name, ts in times.items()
    }


def report(results: dict[str, dict[str, Any]], size: int, units: int) -> str:
    def reference(name: str) -> float | None:
        group = name.split(": ")[0]
        peer = "normals: torch.randn" if group == "normals" else f"{group}: chirho"
        return results[peer]["median_s"] if peer in results else None

    lines = [
        f"normals: {size:,} float32 standard normals; W3: {units:,} units under do(X3 := 1)",
        "",
        "| case | first call | median | range | vs torch/chirho |",
        "|---|---|---|---|---|",
    ]
    for name, r in results.items():
        ref = reference(name)
        ratio = f"{r['median_s'] / ref:.2f}×" if ref and not name.startswith("bits") else "–"
        lines.append(
            f"| {name} | {r['first_s'] * 1e3:.0f} ms | {r['median_s'] * 1e3:.0f} ms "
            f"| {r['min_s'] * 1e3:.0f}–{r['max_s'] * 1e3:.0f} ms | {ratio} |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    parser.add_argument("--size", type=int, default=10_000_000, help="normals per call")
    parser.add_argument("--units", type=int, default=1_000_000, help="W3 units")
    parser.add_argument("--repeats", type=int, default=7, help="timed rounds (≥ 7)")
    parser.add_argument("--no-w3", action="store_true", help="the generator only")
    parser.add_argument("--json", help="also write every number here")
    args = parser.parse_args()
    results = run(args.size, args.units, args.repeats, not args.no_w3)
    print(report(results, args.size, args.units))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=1)


if __name__ == "__main__":
    main()
