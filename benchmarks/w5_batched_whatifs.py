"""W5 on scm_ppl alone: 1000 what-ifs do(X3 := v) on 10⁴ units, in one compiled call.

(a) every counterfactual (a 1000 × 10⁴ × 10 answer): ``counterfactual`` with a
``sweep`` of values; (b) the dose–response (mean counterfactual X9 per value):
``dose_response``, which reduces inside the compiled call. Both against the floor
(benchmarks/floor.py) and against a Python loop of 1000 single ``counterfactual`` calls
(the proxy for what a peer without batched interventions has to do).

Run from the repository root::

    .venv/bin/python -m benchmarks.w5_batched_whatifs [--values 1000] [--units 10000]

Timings are steady-state medians (the first call, which compiles, is reported apart).
"""

from __future__ import annotations

import argparse
import time

import jax
import jax.numpy as jnp
import numpy as np

import scm_ppl
from benchmarks.common import W5_UNITS, W5_VALUES, peak_rss_mb, time_call
from benchmarks.data import linear_gaussian_units
from benchmarks.floor import make_w5
from models import linear_gaussian_dag as lg

OUTCOME = "X9"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--values", type=int, default=W5_VALUES)
    parser.add_argument("--units", type=int, default=W5_UNITS)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--loop-calls", type=int, default=None, help="single calls to time")
    args = parser.parse_args()
    n, num_values = args.units, args.values
    x = linear_gaussian_units(n, seed=5).astype(np.float32)
    values = np.linspace(-2.0, 2.0, num_values).astype(np.float32)
    evidence = {name: jnp.asarray(x[:, i]) for i, name in enumerate(lg.NODES)}
    columns = tuple(evidence[name] for name in lg.NODES)
    grid = jnp.asarray(values)
    key = jax.random.key(0)
    kwargs = {"n": n}

    def scm_all() -> object:
        result = scm_ppl.counterfactual(
            lg.model, evidence, {"X3": scm_ppl.sweep(grid)}, rng_key=key, model_kwargs=kwargs
        )
        return jax.block_until_ready(dict(result.samples["predictions"]))

    def scm_dose() -> object:
        dr = scm_ppl.dose_response(
            lg.model, evidence, "X3", grid, OUTCOME, rng_key=key, model_kwargs=kwargs
        )
        return jax.block_until_ready(dr.mean)

    floor_all, floor_dose = make_w5(lg.WEIGHTS)

    def single(value: float) -> jax.Array:
        result = scm_ppl.counterfactual(
            lg.model, evidence, {"X3": value}, rng_key=key, model_kwargs=kwargs
        )
        return jnp.mean(result.world("cf")[OUTCOME])

    def loop() -> object:
        return jax.block_until_ready([single(float(v)) for v in values[: args.loop_calls]])

    timings = {
        "W5(a) floor": time_call(lambda: jax.block_until_ready(floor_all(columns, grid)), 5),
        "W5(a) scm_ppl sweep": time_call(scm_all, args.repeats),
        "W5(b) floor": time_call(lambda: jax.block_until_ready(floor_dose(columns, grid)), 5),
        "W5(b) scm_ppl dose_response": time_call(scm_dose, args.repeats),
    }
    start = time.perf_counter()
    loop()
    calls = args.loop_calls or num_values
    loop_s = (time.perf_counter() - start) * num_values / calls
    # the answers agree: the one-call dose–response is the loop's, value by value
    dr = scm_ppl.dose_response(
        lg.model, evidence, "X3", grid, OUTCOME, rng_key=key, model_kwargs=kwargs
    )
    check = np.asarray([single(float(v)) for v in values[:5]])
    np.testing.assert_allclose(np.asarray(dr.mean[:5]), check, rtol=1e-5, atol=1e-5)
    devices = f"{jax.device_count()} {jax.default_backend()} device(s)"
    print(f"W5: {num_values} values x {n} units, {devices}")
    for name, t in timings.items():
        print(f"  {name:32s} median {t.median_s * 1e3:9.1f} ms   first call {t.first_s:6.2f} s")
    print(f"  {'loop of single scm_ppl calls':32s} total  {loop_s * 1e3:9.1f} ms ({calls} timed)")
    a_ratio = timings["W5(a) scm_ppl sweep"].median_s / timings["W5(a) floor"].median_s
    b_speedup = loop_s / timings["W5(b) scm_ppl dose_response"].median_s
    print(f"  W5(a) sweep / floor: {a_ratio:.2f}x   W5(b) loop / dose_response: {b_speedup:.0f}x")
    print(f"  peak RSS {peak_rss_mb():.0f} MB")


if __name__ == "__main__":
    main()
