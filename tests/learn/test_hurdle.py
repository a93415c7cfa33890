"""The hurdle mechanism's counterfactuals follow its stated coupling (closed forms)."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as dist

from scm_ppl import counterfactual
from scm_ppl.learn import Hurdle

A, B, LOC, SHIFT, S = 0.5, -1.2, 1.0, 0.7, 0.6  # P(zero) falls and the level rises with t


def model(n=1):
    with numpyro.plate("unit", n):
        t = numpyro.sample("t", dist.Bernoulli(0.5))
        numpyro.sample("y", Hurdle(A + B * t, LOC + SHIFT * t, S))


def test_log_density_from_logits_never_underflows():
    d = Hurdle(jnp.array(200.0), 0.0, 1.0)  # P(Y > 0) = e^-200: zero in float32
    assert np.isfinite(float(d.log_prob(1.0)))
    assert float(d.log_prob(1.0)) < -199


def test_counterfactuals_follow_the_stated_coupling():
    n = 4000
    y_obs = np.concatenate([np.zeros(n), np.array([0.5, 2.0, 7.0])])
    rows = {"t": np.zeros(len(y_obs), np.int32), "y": y_obs}
    cf = counterfactual(model, rows, {"t": 1}, rng_key=jax.random.key(0), num_samples=1,
                        model_kwargs={"n": len(y_obs)})  # fmt: skip
    y_cf = np.asarray(cf.world("cf")["y"])[0, 0]
    # A zero under q0 = P(Y > 0 | t=0) is positive under q1 with prob (q1 - q0) / (1 - q0).
    q0, q1 = 1 / (1 + np.exp(A)), 1 / (1 + np.exp(A + B))
    p = (q1 - q0) / (1 - q0)
    frac = float(np.mean(y_cf[:n] > 0))
    assert abs(frac - p) < 4 * np.sqrt(p * (1 - p) / n)
    # A positive unit stays positive (q1 > q0) and keeps its standardised log level.
    expected = np.exp(LOC + SHIFT + (np.log(y_obs[n:]) - LOC))
    np.testing.assert_allclose(y_cf[n:], expected, rtol=1e-5)
    assert "hurdle" in cf.attrs["couplings"]["y"]
