"""Bayesian fits: one posterior draw of every mechanism per replicate, and posterior
predictive checks.

``y = w x + σ N`` with a prior on ``w`` (a global latent site). A posterior that puts its
draws on ``w = 1`` and ``w = 3`` makes the claim testable: the variance arrow strength of
``x -> y`` is ``w² Var(x)``, so a replicate run on one draw of all mechanisms gives 1 or 9;
a replicate that mixed draws across units would give about 5.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as dist
import pytest

from scm_ppl import attribution, check, fit
from scm_ppl.learn import FitHistory, FittedSCM

SIGMA = 0.5


def with_prior(n: int = 1) -> None:
    w = numpyro.sample("w", dist.Normal(0.0, 2.0))
    with numpyro.plate("unit", n):
        x = numpyro.sample("x", dist.Normal(0.0, 1.0))
        numpyro.sample("y", dist.Normal(w * x, SIGMA))


def _posterior(draws: jax.Array) -> FittedSCM:
    """A NUTS fit whose posterior draws of ``w`` are ``draws`` (no sampler run)."""
    history = FitHistory(np.zeros(0), np.zeros(0), 0, False, 0.0)
    loc, scale = {"w": jnp.mean(draws)}, {"w": jnp.std(draws)}
    settings = {"method": "nuts", "plate": "unit", "size_arg": "n", "model_kwargs": {}}
    return FittedSCM(with_prior, {}, {}, loc, scale, {"w": draws}, history, settings)


def test_each_replicate_runs_one_draw_of_all_mechanisms() -> None:
    fitted = _posterior(jnp.array([1.0, 3.0] * 16))
    r = attribution.arrow_strength(fitted, "y", num_replicates=16, rng_key=jax.random.key(0))
    assert r.uncertainty == "posterior" and r.draws.shape == (16, 1)
    values = r.draws[:, 0]
    # Each replicate's Monte-Carlo error is a few percent of its value; 20% separates the
    # two draws (1 and 9) from any mixture (about 5) with a wide margin.
    rel = np.minimum(np.abs(values - 1.0), np.abs(values - 9.0) / 9.0)
    assert np.all(rel < 0.2), values
    assert np.any(values < 5.0) and np.any(values > 5.0), values
    # The interval is the posterior's: it spans both draws, not a Monte-Carlo error.
    assert r.lower[0] < 2.0 and r.upper[0] > 8.0


def test_posterior_predictive_check() -> None:
    draws = 2.0 + 0.05 * jax.random.normal(jax.random.key(1), (64,))
    fitted = _posterior(draws)
    rng = np.random.default_rng(2)
    x = rng.normal(size=500)
    good = {"x": x, "y": 2.0 * x + SIGMA * rng.normal(size=500)}
    shifted = {"x": x, "y": good["y"] + 3.0}  # the model's mechanism has no intercept
    kw = {"num_draws": 32, "num_permutations": 50}
    ok, bad = check.mechanisms(fitted, good, **kw), check.mechanisms(fitted, shifted, **kw)
    assert ok.bayesian and np.isfinite(ok["y"].ppc_p)
    assert ok["y"].ppc_p > 0.05 and "y" not in ok.failed
    assert bad["y"].ppc_p < 0.01 and "y" in bad.failed


@pytest.mark.slow
def test_nuts_fit_gives_posterior_intervals() -> None:
    """A real (small) NUTS fit: 200 rows, 200 draws. The intrinsic influence of x on y is
    ``w² Var(x)`` with ``w = 2``; its posterior interval must cover 4, and the noise of y
    takes ``σ²``."""
    rng = np.random.default_rng(3)
    x = rng.normal(size=200)
    data = {"x": x, "y": 2.0 * x + SIGMA * rng.normal(size=200)}
    fitted = fit(with_prior, data, method="nuts", num_samples=200, num_warmup=200, progress=False)
    r = attribution.intrinsic_influence(fitted, "y", num_replicates=16)
    assert r.uncertainty == "posterior"
    i = r.nodes.index("x")
    # Var(x) of the model is 1; the posterior sd of w from 200 rows is about 0.035, so
    # w² spreads by about 0.3: the 95% interval must hold the truth, and stay narrow.
    assert r.lower[i] - 0.2 < 4.0 < r.upper[i] + 0.2, r
    assert r.upper[i] - r.lower[i] < 1.5, r
    assert abs(r["y"] - SIGMA**2) < 0.05, r
