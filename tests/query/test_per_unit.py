"""Per-unit abduction under a latent confounder: the closed form per unit, checked.

Known answers: ``models/latent_confounder.py`` (Gaussian conditioning; Pearl,
*Causality*, 2nd ed., §5.2). With evidence on ``X`` only and do(X := 0), unit ``i``'s
counterfactual ``Y`` has mean ``GAMMA m_i`` and variance ``GAMMA^2 v + SIGMA_Y^2``.
The draws are independent, so the Monte-Carlo standard error of a mean of ``S`` draws is
``sqrt(var / S)``: 4.5 standard errors bound the largest of 200 units' z-scores with
probability above 0.998.
"""

from __future__ import annotations

import warnings

import jax
import numpy as np
import numpyro
import numpyro.distributions as dist
import pytest

from models import latent_confounder as lc
from scm_ppl import counterfactual
from scm_ppl.errors import AbductionError
from scm_ppl.query.per_unit import per_unit_choice

NUM_SAMPLES = 400


def _cf(n: int, method: str = "auto", num_samples: int = NUM_SAMPLES, seed: int = 0):
    x = np.random.default_rng(seed).normal(size=n).astype(np.float32)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the confounded effect is not identified: known
        result = counterfactual(
            lc.model, {"X": x}, {"X": 0.0}, rng_key=jax.random.key(seed), method=method,
            model_args=(n,), num_samples=num_samples,
        )  # fmt: skip
    return x, result


def _z_scores(x: np.ndarray, draws: np.ndarray, units: np.ndarray) -> np.ndarray:
    truth = lc.counterfactual_y_given_x(x[units], 0.0)
    draws = draws.reshape(-1, x.shape[0])[:, units]
    return np.abs(draws.mean(0) - truth.mean) / np.sqrt(truth.var / draws.shape[0])


def test_chosen_automatically_and_matches_closed_form_on_10k_units() -> None:
    x, result = _cf(10_000)
    assert result.method == "per_unit"
    assert "quadratic and separates over 10000 unit(s)" in result.attrs["method_reason"]
    units = np.random.default_rng(1).choice(10_000, size=200, replace=False)
    z = _z_scores(x, np.asarray(result.world("cf")["Y"]), units)
    assert z.max() < 4.5, z.max()
    # Exact independent draws, judged by the same estimators as any sampled result:
    # split r_hat over 10,000 units of 400 draws stays within a few percent of 1; the
    # ESS estimator is noisy, and its minimum over 10,000 units of 400 iid draws sits
    # near 0.35 x 400 (measured: 145).
    assert result.attrs["divergences"] == 0 and result.attrs["max_r_hat"] < 1.05
    assert 0.25 * NUM_SAMPLES < result.attrs["min_ess"] <= 2 * NUM_SAMPLES


def _coupled(n: int) -> None:
    shared = numpyro.sample("shared", dist.Normal(0.0, 1.0))
    with numpyro.plate("unit", n):
        numpyro.sample("x", dist.Normal(jax.numpy.tanh(shared), 1.0))


def _tanh(n: int) -> None:
    with numpyro.plate("unit", n):
        u = numpyro.sample("u", dist.Normal(0.0, 1.0))
        numpyro.sample("x", dist.Normal(jax.numpy.tanh(u), 0.3))


def test_not_quadratic_or_not_per_unit_says_why() -> None:
    ev = {"x": jax.numpy.linspace(-1.0, 1.0, 5)}
    ok, why = per_unit_choice(_tanh, (5,), {}, ev, ("u",), jax.random.key(0))
    assert not ok and "not quadratic" in why
    ok, why = per_unit_choice(_coupled, (5,), {}, ev, ("shared",), jax.random.key(0))
    assert not ok and "not quadratic" in why


def test_per_unit_asked_for_where_it_does_not_apply_raises() -> None:
    with pytest.raises(AbductionError, match="method='per_unit' needs a Gaussian posterior"):
        counterfactual(
            _tanh, {"x": np.zeros(3, np.float32)}, {"x": 1.0}, rng_key=jax.random.key(0),
            method="per_unit", model_args=(3,),
        )  # fmt: skip


@pytest.mark.slow
def test_per_unit_equals_joint_nuts_on_100_units() -> None:
    x, per_unit = _cf(100, method="per_unit", num_samples=1000)
    _, joint = _cf(100, method="nuts", num_samples=1000)
    assert joint.method == "nuts"
    a = np.asarray(per_unit.world("cf")["Y"]).reshape(-1, 100)
    b = np.asarray(joint.world("cf")["Y"]).reshape(-1, 100)
    truth = lc.counterfactual_y_given_x(x, 0.0)
    # NUTS draws are correlated: its standard error is sqrt(var / ESS), ESS >= 200 here
    # (the result reports its minimum ESS); the per-unit draws are independent.
    ess = min(float(joint.attrs.get("min_ess", 200.0)), 1000.0)
    se = np.sqrt(truth.var / 1000 + truth.var / ess)
    assert np.max(np.abs(a.mean(0) - b.mean(0)) / se) < 4.5


def _ten_latents(n: int) -> None:
    with numpyro.plate("unit", n):
        previous = 0.0
        for k in range(10):
            u = numpyro.sample(f"u{k}", dist.Normal(0.0, 1.0))
            numpyro.sample(f"x{k}", dist.Normal(u + 2.0 * previous, 1.0))
            previous = u


@pytest.mark.parametrize("unroll, n", [(8, 50), (16, 40)])  # n: a compile of its own
def test_ten_correlated_latents_per_unit_match_gaussian_conditioning(monkeypatch, unroll, n):
    """Both products of the draws (batched past ``_UNROLL`` values per unit, else unrolled).
    Known answer: ``x = A u + e`` with ``A = I + 2 (sub-diagonal)``, ``u, e ~ N(0, I)``,
    so ``u | x ~ N(P^-1 A^T x, P^-1)`` with ``P = I + A^T A``. Whitened by the true
    posterior, the draws are standard normal: each mean within 4.5 standard errors
    (500 values, 2000 independent draws) and each unit's covariance within 0.15 of the
    identity (standard errors sqrt(2 / 2000) = 0.032 on the diagonal, 0.022 off it:
    4.7 and 6.7 of them, over 5,000 entries)."""
    from scm_ppl.query import per_unit

    monkeypatch.setattr(per_unit, "_UNROLL", unroll)
    draws, names = 2000, [f"u{k}" for k in range(10)]
    x = np.random.default_rng(3).normal(size=(10, n)).astype(np.float32)
    evidence = {f"x{k}": x[k] for k in range(10)}
    z, _ = per_unit.per_unit_latents(_ten_latents, (n,), {}, evidence, tuple(names), draws,
                            jax.random.key(4))  # fmt: skip
    u = np.stack([np.asarray(z[k])[0] for k in names], axis=-1)  # (draws, n, 10)
    a = np.eye(10) + 2.0 * np.eye(10, k=-1)
    precision = np.eye(10) + a.T @ a
    mean = np.linalg.solve(precision, a.T @ x.astype(np.float64)).T  # (n, 10)
    white = (u - mean) @ np.linalg.cholesky(precision)  # L^T (u - m) ~ N(0, I)
    assert np.abs(white.mean(0)).max() * np.sqrt(draws) < 4.5
    centred = white - white.mean(0)
    covariance = np.einsum("sni,snj->nij", centred, centred) / (draws - 1)
    assert np.abs(covariance - np.eye(10)).max() < 0.15
