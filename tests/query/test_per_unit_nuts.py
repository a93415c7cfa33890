"""Per-unit NUTS: one chain per unit, vectorised over units, where the units' latents
separate but their posterior is not Gaussian.

Known answers. ``_tanh``: ``u ~ N(0, 1)``, ``x ~ N(tanh u, 0.3)``, ``y ~ N(u + x, 0.5)``,
evidence on ``x`` only, do(x := 0). ``y`` is unobserved, so its noise keeps its prior and
``y_cf = u + e_y``: its mean is ``E[u | x]``, computed here by quadrature on a fine grid
(the density is smooth and negligible beyond |u| = 8). The linear-Gaussian latent
confounder (``models/latent_confounder.py``; Pearl, *Causality*, 2nd ed., §5.2) has the
closed form ``counterfactual_y_given_x``. Tolerances: a posterior mean of ``S`` correlated
draws has standard error ``sd / sqrt(ESS)``; the result reports the smallest ESS over all
units, used for every unit (conservative), and 4.5 standard errors bound the largest of
up to 1,000 units' z-scores with probability above 0.99.
"""

from __future__ import annotations

import warnings

import jax
import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as dist
import pytest
from numpyro.diagnostics import effective_sample_size, split_gelman_rubin

from models import latent_confounder as lc
from scm_ppl import counterfactual
from scm_ppl.errors import AbductionError, InferenceWarning
from scm_ppl.query.per_unit_nuts import chain_diagnostics, unit_sampler, warn_if_unreliable
from scm_ppl.query.plan import plan_query
from tests._devices import run_on_cpu_devices


def _tanh(n: int) -> None:
    with numpyro.plate("unit", n):
        u = numpyro.sample("u", dist.Normal(0.0, 1.0))
        x = numpyro.sample("x", dist.Normal(jnp.tanh(u), 0.3))
        numpyro.sample("y", dist.Normal(u + x, 0.5))


def _shared(n: int) -> None:
    s = numpyro.sample("s", dist.Normal(0.0, 1.0))
    with numpyro.plate("unit", n):
        u = numpyro.sample("u", dist.Normal(s, 1.0))
        numpyro.sample("x", dist.Normal(jnp.tanh(u), 0.3))


def _mean_coupled(n: int) -> None:
    with numpyro.plate("unit", n):
        u = numpyro.sample("u", dist.Normal(0.0, 1.0))
        # Each unit sees the mean of all: a coupling of order 1/n per pair.
        numpyro.sample("x", dist.Normal(jnp.tanh(u) + 0.1 * jnp.mean(u), 0.3))


def _outside(n: int) -> None:
    with numpyro.plate("unit", n):
        u = numpyro.sample("u", dist.Normal(0.0, 1.0))
        numpyro.sample("x", dist.Normal(jnp.tanh(u), 0.3))
    numpyro.sample("m", dist.Normal(jnp.mean(jnp.tanh(u)), 0.3))


def _posterior_mean_u(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    grid = np.linspace(-8.0, 8.0, 16_001)
    logp = -0.5 * grid**2 - 0.5 * ((x[:, None] - np.tanh(grid)) / 0.3) ** 2
    w = np.exp(logp - logp.max(axis=1, keepdims=True))
    w /= w.sum(axis=1, keepdims=True)
    mean = (w * grid).sum(1)
    return mean, np.sqrt((w * (grid - mean[:, None]) ** 2).sum(1))


def _tanh_cf(n: int, method: str, warmup: int, draws: int, seed: int = 0):
    x = np.random.default_rng(seed).normal(size=n).astype(np.float32)
    with warnings.catch_warnings():
        # Not identified without the model (a latent cause), and the ESS may be near 100.
        warnings.simplefilter("ignore")
        result = counterfactual(
            _tanh, {"x": x}, {"x": 0.0}, rng_key=jax.random.key(seed), method=method,
            model_args=(n,), num_warmup=warmup, num_samples=draws,
        )  # fmt: skip
    return x, result


def test_chosen_automatically_reported_and_matches_quadrature() -> None:
    x, result = _tanh_cf(40, "auto", warmup=300, draws=400)
    assert result.method == "per_unit_nuts"
    reason = result.attrs["method_reason"]
    assert "per-unit NUTS" in reason and "separates over 40 units" in reason
    assert "closed form not used: the log density is not quadratic" in reason
    assert {"max_r_hat", "min_ess", "divergences"} <= set(result.attrs)
    assert result.attrs["max_r_hat"] < 1.1 and result.attrs["divergences"] == 0
    y = np.asarray(result.world("cf")["y"]).reshape(-1, 40)
    mean, sd = _posterior_mean_u(x.astype(np.float64))
    sd_y = np.sqrt(sd**2 + 0.25)  # y_cf = u + e_y, e_y from its prior
    z = np.abs(y.mean(0) - mean) / (sd_y / np.sqrt(result.attrs["min_ess"]))
    assert z.max() < 4.5, z.max()


def test_falls_back_to_the_joint_when_units_share_or_couple_latents() -> None:
    key, ev = jax.random.key(0), {"x": jnp.linspace(-1.0, 1.0, 6)}
    big = {"x": jnp.linspace(-1.0, 1.0, 40)}
    ok, why = unit_sampler(_shared, (6,), {}, ev, ("s", "u"), key)
    assert not ok and "'s' has no plate on its leading axis" in why
    ok, why = unit_sampler(_mean_coupled, (6,), {}, ev, ("u",), key)
    assert not ok and "coupled" in why
    ok, why = unit_sampler(_outside, (6,), {}, {**ev, "m": 0.2}, ("u",), key)
    assert not ok and "outside the unit plate depends on the latents" in why
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # not identified: known
        (plan,) = plan_query(_shared, big, {"x": 0.0}, kind="counterfactual",
                             rng_key=jax.random.key(0), model_args=(40,))  # fmt: skip
        (few,) = plan_query(_tanh, ev, {"x": 0.0}, kind="counterfactual",
                            rng_key=jax.random.key(0), model_args=(6,))  # fmt: skip
    assert plan.method == "nuts"
    assert "per-unit NUTS not used: latent site 's' has no plate" in plan.method_reason
    assert few.method == "nuts" and "per-unit NUTS not tried for 6 unit(s)" in few.method_reason
    assert "for 32 to " in few.method_reason


def test_per_unit_nuts_asked_for_where_units_couple_raises() -> None:
    with pytest.raises(AbductionError, match="method='per_unit_nuts' needs the units' latents"):
        counterfactual(
            _mean_coupled, {"x": np.zeros(4, np.float32)}, {"x": 1.0},
            rng_key=jax.random.key(0), method="per_unit_nuts", model_args=(4,),
        )  # fmt: skip


def test_unreliable_chains_warn() -> None:
    with pytest.warns(InferenceWarning, match="Per-unit NUTS abduction may be unreliable"):
        warn_if_unreliable({"divergences": 2.0, "max_r_hat": 1.2, "min_ess": 30.0}, 1)


def test_diagnostics_equal_numpyro() -> None:
    rng = np.random.default_rng(0)
    x = np.cumsum(rng.normal(size=(2, 301, 7)), axis=1) * 0.1 + rng.normal(size=(2, 301, 7))
    for chains in (x, x[:1]):
        got = chain_diagnostics(jnp.asarray(chains, jnp.float32))
        np.testing.assert_allclose(got["max_r_hat"], split_gelman_rubin(chains).max(), rtol=1e-4)
        np.testing.assert_allclose(got["min_ess"], effective_sample_size(chains).min(), rtol=1e-3)


@pytest.mark.slow
def test_per_unit_nuts_equals_joint_nuts_on_100_units() -> None:
    _, per_unit = _tanh_cf(100, "per_unit_nuts", warmup=500, draws=1000)
    _, joint = _tanh_cf(100, "nuts", warmup=500, draws=1000)
    a = np.asarray(per_unit.world("cf")["y"]).reshape(-1, 100)
    b = np.asarray(joint.world("cf")["y"]).reshape(-1, 100)
    sd = np.sqrt(0.5 * (a.var(0) + b.var(0)))
    se = sd * np.sqrt(1 / per_unit.attrs["min_ess"] + 1 / joint.attrs["min_ess"])
    assert np.max(np.abs(a.mean(0) - b.mean(0)) / se) < 4.5


@pytest.mark.slow
def test_per_unit_nuts_matches_the_closed_form_on_500_units() -> None:
    n = 500
    x = np.random.default_rng(3).normal(size=n).astype(np.float32)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the confounded effect is not identified: known
        result = counterfactual(
            lc.model, {"X": x}, {"X": 0.0}, rng_key=jax.random.key(3), method="per_unit_nuts",
            model_args=(n,), num_warmup=300, num_samples=500,
        )  # fmt: skip
    assert result.method == "per_unit_nuts"
    truth = lc.counterfactual_y_given_x(x, 0.0)
    y = np.asarray(result.world("cf")["Y"]).reshape(-1, n)
    z = np.abs(y.mean(0) - truth.mean) / np.sqrt(truth.var / result.attrs["min_ess"])
    assert z.max() < 4.5, z.max()


def test_antithetic_chains_get_stans_ess_floor_not_a_negative_ess() -> None:
    """An AR(1) chain with phi = -0.9 (true ESS N (1 - phi) / (1 + phi) = 19 N): numpyro's
    estimator, which has no floor on tau, reports a negative ESS; with Stan's floor
    (tau >= 1 / log10 N; Vehtari et al. 2021, eq. 11) it is N log10 N = 3000."""
    e = np.random.default_rng(0).normal(size=2000)[1000:]  # a stream that goes negative
    x = np.zeros(1000)
    for t in range(1, 1000):
        x[t] = -0.9 * x[t - 1] + e[t]
    chain = x[None, :, None]
    assert effective_sample_size(chain).min() < 0  # numpyro's estimator
    got = chain_diagnostics(jnp.asarray(chain, jnp.float32))["min_ess"]
    np.testing.assert_allclose(got, 1000 * np.log10(1000), rtol=1e-5)


def test_a_units_draws_do_not_depend_on_the_units_beside_it() -> None:
    # Each unit's chain keys are folded from its own index (unit_keys), not split over the
    # unit axis: the first 16 units draw the same numbers alone as among 24, so chunking
    # the units or adding some leaves the others' draws as they were.
    x = np.random.default_rng(0).normal(size=24).astype(np.float32)

    def draws(n: int) -> np.ndarray:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # not identified; a short chain's ESS
            result = counterfactual(
                _tanh, {"x": x[:n]}, {"x": 0.0}, rng_key=jax.random.key(3),
                method="per_unit_nuts", model_args=(n,), num_warmup=50, num_samples=50,
            )  # fmt: skip
        return np.asarray(result.samples["posterior"]["u"])

    np.testing.assert_array_equal(draws(24)[..., :16], draws(16))


_TWO_DEVICES = """
import warnings
import jax, numpy as np
from scm_ppl import counterfactual, shard_units
from tests.query.test_per_unit_nuts import _tanh

assert jax.device_count() == 2, jax.devices()
n = 40
x = np.random.default_rng(0).normal(size=n).astype(np.float32)

def run(evidence, warmup):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return counterfactual(_tanh, evidence, {"x": 0.0}, rng_key=jax.random.key(3),
                              method="per_unit_nuts", model_args=(n,), num_warmup=warmup,
                              num_samples=5)

one, two = run({"x": x}, 1), run(shard_units({"x": x}), 1)
for got, want in ((two.samples["posterior"]["u"], one.samples["posterior"]["u"]),
                  (two.world("cf")["y"], one.world("cf")["y"])):
    np.testing.assert_allclose(np.asarray(got), np.asarray(want), atol=1e-5)
# the diagnostics of units sharded over devices are computed (XLA's CPU FFT refused them)
assert {"max_r_hat", "min_ess"} <= set(one.attrs) and {"max_r_hat", "min_ess"} <= set(two.attrs)
print("ok")
"""


def test_two_devices_draw_what_one_device_draws() -> None:
    """Units sharded over two devices keep their keys: the same start and the same draws,
    to float32 round-off, while the chains stay short. Longer chains part: XLA rounds
    the sharded program's step-size adaptation differently in the last bit (1e-7 after
    two iterations, also for numpyro's own NUTS under vmap), and NUTS amplifies it."""
    run = run_on_cpu_devices(_TWO_DEVICES)
    assert run.returncode == 0, run.stderr[-3000:]
    assert run.stdout.strip().endswith("ok")


def test_auto_takes_per_unit_nuts_up_to_its_measured_bound_and_the_joint_chain_past_it() -> None:
    from scm_ppl.query.per_unit import AUTO_MAX_UNITS

    def planned(n: int):
        x = np.random.default_rng(0).normal(size=n).astype(np.float32)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # not identified: known
            (plan,) = plan_query(_tanh, {"x": x}, {"x": 0.0}, kind="counterfactual",
                                 rng_key=jax.random.key(0), model_args=(n,))  # fmt: skip
        return plan

    inside, past = planned(AUTO_MAX_UNITS), planned(AUTO_MAX_UNITS + 1)
    assert inside.method == "per_unit_nuts"
    assert f"separates over {AUTO_MAX_UNITS} units" in inside.method_reason
    assert past.method == "nuts"
    assert f"per-unit NUTS not tried for {AUTO_MAX_UNITS + 1} unit(s)" in past.method_reason
    assert f"for 32 to {AUTO_MAX_UNITS:,} units" in past.method_reason
