"""Enumeration of discrete latent causes for 10^4 units with different evidence, one call.

Two queries (issue 16): Pearl's probabilistic firing squad (*Causality* §7.2.2; court
order U, rifleman A's nervousness W, evidence D per unit, query D_{A=0}) and a binary
treatment/outcome confounded by a three-state latent U (evidence X and Y per unit, query
Y_{1-X}). Each is timed as the exact answer (:func:`scm_ppl.query.enumerated_counterfactual`,
every configuration with its exact weight) and as draws from the exact posterior
(:func:`scm_ppl.counterfactual` with ``method="enumerate"``, 100 draws per unit): the
first call (compiles) and the median of warm calls with new evidence of the same shape.
The exact answers are checked against their closed forms. Not a test: it prints.

Run: ``.venv/bin/python -m benchmarks.enumeration_units [--units 10000]``
"""

from __future__ import annotations

import argparse
import time
import warnings
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as dist

from scm_ppl import counterfactual
from scm_ppl.errors import NotIdentifiableWarning
from scm_ppl.query import enumerated_counterfactual

P, Q = 0.3, 0.2  # P(court order), P(A nervous)
PU = (0.2, 0.5, 0.3)
TABLE = np.array(
    [
        [[0, 1], [1, 0], [1, 1], [0, 0]],
        [[0, 1], [1, 0], [0, 1], [1, 1]],
        [[0, 1], [1, 0], [0, 0], [1, 0]],
    ]
)
NY = (0.1, 0.3, 0.4, 0.2)


def squad(n: int):
    def model():
        with numpyro.plate("units", n):
            u: Any = numpyro.sample("U", dist.Bernoulli(P))
            w: Any = numpyro.sample("W", dist.Bernoulli(Q))
            a: Any = numpyro.deterministic("A", u | w)
            b: Any = numpyro.deterministic("B", u)
            numpyro.deterministic("D", a | b)

    return model


def confounder(n: int):
    table = jnp.asarray(TABLE)

    def model():
        with numpyro.plate("units", n):
            u: Any = numpyro.sample("U", dist.CategoricalProbs(jnp.asarray(PU)))
            nx: Any = numpyro.sample("NX", dist.Bernoulli(0.2))
            ny: Any = numpyro.sample("NY", dist.CategoricalProbs(jnp.asarray(NY)))
            x = numpyro.deterministic("X", (u == 1).astype(jnp.int32) ^ nx)
            numpyro.deterministic("Y", table[u, ny, x])

    return model


def _timed(fn, calls: int = 5) -> tuple[float, float]:
    start = time.perf_counter()
    fn(0)
    first = time.perf_counter() - start  # compiles, unless an earlier call of this shape did
    warm = []
    for i in range(1, calls + 1):
        start = time.perf_counter()
        fn(i)
        warm.append(time.perf_counter() - start)
    return first, float(np.median(warm))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--units", type=int, default=10_000)
    n = parser.parse_args().units
    warnings.simplefilter("ignore", NotIdentifiableWarning)  # U confounds: known, not news
    rng = np.random.default_rng(0)
    d_sets = [rng.integers(0, 2, n).astype(np.int32) for _ in range(6)]
    xy_sets = [(rng.integers(0, 2, n).astype(np.int32), rng.integers(0, 2, n).astype(np.int32))
               for _ in range(6)]  # fmt: skip
    fs, cf = squad(n), confounder(n)

    def fs_exact(i):
        ans = enumerated_counterfactual(fs, {"D": d_sets[i]}, {"A": 0})
        return ans.probability("cf", "D", 0)

    def fs_draws(i):
        res = counterfactual(fs, {"D": d_sets[i]}, {"A": 0}, rng_key=jax.random.key(i),
                             num_samples=100)  # fmt: skip
        return jax.block_until_ready(res.world("cf")["D"])

    def cf_exact(i):
        x, y = xy_sets[i]
        return enumerated_counterfactual(cf, {"X": x, "Y": y}, {"X": 1 - x}).probability(
            "cf", "Y", 1
        )

    def cf_draws(i):
        x, y = xy_sets[i]
        res = counterfactual(cf, {"X": x, "Y": y}, {"X": 1 - x}, rng_key=jax.random.key(i),
                             num_samples=100)  # fmt: skip
        return jax.block_until_ready(res.world("cf")["Y"])

    # D = 0: no order, no nerves, so D_{A=0} = 0 for sure; D = 1: Pearl's §7.2.2 answer.
    want = np.where(d_sets[0] == 1, (1 - P) * Q / (1 - (1 - P) * (1 - Q)), 1.0)
    print(f"{'query':34s} {'first call (s)':>15s} {'warm call (ms)':>15s}")
    for name, fn in [
        ("firing squad, exact weights", fs_exact),
        ("firing squad, 100 draws/unit", fs_draws),
        ("confounder (3-state U), exact", cf_exact),
        ("confounder (3-state U), 100 draws", cf_draws),
    ]:
        first, warm = _timed(fn)
        print(f"{name:34s} {first:15.2f} {1e3 * warm:15.1f}")
    fs_error = np.max(np.abs(fs_exact(0) - want))
    print(f"firing squad: max |exact - Pearl's closed form| = {fs_error:.2e}")
    print(f"({n} units with different evidence per call; {jax.devices()[0].platform})")


if __name__ == "__main__":
    main()
