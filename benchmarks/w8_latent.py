"""W8: counterfactual posteriors under a latent confounder, per unit and joint.

    .venv/bin/python -m benchmarks.w8_latent [--tanh] [--joint 100,10000] [units:draws ...]

``models/latent_confounder.py``, evidence on ``X`` only, do(X := 0) (per unit: the closed
form, each unit's posterior Gaussian). ``--tanh``: the nonlinear confounder of
:func:`tanh_model` (per unit: NUTS, one chain per unit vectorised over units; its truth by
quadrature). For each size:
the steady-state time of one ``counterfactual`` call (after a first call that
compiles) reading ``result.world("cf")["Y"]`` as NumPy, and the largest z-score of
the per-unit posterior mean against the closed form on 1,000 random units (independent
draws: standard error ``sqrt(var / draws)``; the joint NUTS path uses its minimum ESS).
"""

from __future__ import annotations

import sys
import time
import warnings

import jax
import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as dist

from models import latent_confounder as lc
from scm_ppl import counterfactual


def tanh_model(n: int = 1) -> None:
    """A latent confounder with a saturating mechanism: ``U ~ N(0, 1)``,
    ``X ~ N(tanh(2 U), 0.3)``, ``Y ~ N(0.8 X - 1.5 U, 0.5)``. Given ``X = x`` only and
    do(X := 0), ``Y_cf = -1.5 U + e_Y`` with ``e_Y`` from its prior: mean ``-1.5 E[U | x]``,
    variance ``2.25 Var(U | x) + 0.25``."""
    with numpyro.plate("unit", n):
        u = numpyro.sample("U", dist.Normal(0.0, 1.0))
        x = numpyro.sample("X", dist.Normal(jnp.tanh(2.0 * u), 0.3))
        numpyro.sample("Y", dist.Normal(0.8 * x - 1.5 * u, 0.5))


def tanh_truth(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean and variance of ``Y_cf`` under :func:`tanh_model` by quadrature (16,001 points
    on [-8, 8]; the posterior of ``U`` is smooth and negligible beyond)."""
    grid = np.linspace(-8.0, 8.0, 16_001)
    logp = -0.5 * grid**2 - 0.5 * ((x[:, None] - np.tanh(2.0 * grid)) / 0.3) ** 2
    w = np.exp(logp - logp.max(axis=1, keepdims=True))
    w /= w.sum(axis=1, keepdims=True)
    mean = (w * grid).sum(1)
    var = (w * (grid - mean[:, None]) ** 2).sum(1)
    return -1.5 * mean, 2.25 * var + 0.25


def run(n: int, draws: int, method: str, tanh: bool = False) -> tuple[float, float, float, str]:
    x = np.random.default_rng(0).normal(size=n).astype(np.float32)
    model = tanh_model if tanh else lc.model

    def once(seed: int):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            result = counterfactual(
                model, {"X": x}, {"X": 0.0}, rng_key=jax.random.key(seed), method=method,
                model_args=(n,), num_samples=draws,
            )  # fmt: skip
        return result, np.asarray(result.world("cf")["Y"]).reshape(-1, n)

    start = time.perf_counter()
    once(0)
    first = time.perf_counter() - start
    start = time.perf_counter()
    result, y = once(1)
    steady = time.perf_counter() - start
    units = np.random.default_rng(2).choice(n, size=min(n, 1000), replace=False)
    if tanh:
        mean, var = tanh_truth(x[units].astype(np.float64))
    else:
        truth = lc.counterfactual_y_given_x(x[units], 0.0)
        mean, var = truth.mean, truth.var
    # The smallest ESS over all units, used for every unit: conservative z-scores.
    ess = float(result.attrs.get("min_ess", y.shape[0]))
    z = np.abs(y[:, units].mean(0) - mean) / np.sqrt(var / ess)
    return first, steady, float(z.max()), result.method


def main(argv: list[str]) -> None:
    tanh = argv[:1] == ["--tanh"]
    argv = argv[1:] if tanh else argv
    joint: list[int] = []
    if argv[:1] == ["--joint"]:
        joint, argv = [int(v) for v in argv[1].split(",")], argv[2:]
    sizes = [tuple(int(v) for v in a.split(":")) for a in argv] or [
        (100, 1000), (10_000, 1000), (1_000_000, 100)
    ]  # fmt: skip
    print("| method | units | draws | first call (s) | steady (s) | max z (1,000 units) |")
    print("|---|---|---|---|---|---|")
    for n, draws in sizes:
        for method in ["per_unit_nuts" if tanh else "per_unit", *(["nuts"] if n in joint else [])]:
            first, steady, z, used = run(n, draws, method, tanh)
            print(
                f"| {used} | {n:,} | {draws} | {first:.2f} | {steady:.2f} | {z:.2f} |", flush=True
            )


if __name__ == "__main__":
    main(sys.argv[1:])
