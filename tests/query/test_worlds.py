"""`twin_world` / `multi_world` are NumPyro programs NUTS, SVI and Predictive run unchanged."""

import jax
import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as dist
import pytest
from numpyro import handlers
from numpyro.infer import MCMC, NUTS, SVI, Predictive, Trace_ELBO
from numpyro.infer.autoguide import AutoNormal
from numpyro.optim import Adam

from models import latent_confounder
from scm_ppl import multi_world, twin_world
from scm_ppl.errors import InterventionError

KEY = jax.random.key(0)


def test_factual_sites_keep_their_names_and_worlds_carry_a_prefix():
    program = twin_world(latent_confounder.model, {"X": 1.0})
    tr = handlers.trace(handlers.seed(program, 0)).get_trace(n=3)
    assert {"U", "X", "Y", "noise.U", "noise.X", "noise.Y", "cf.U", "cf.X", "cf.Y"} <= set(tr)
    assert tr["cf.Y"]["type"] == "deterministic"
    np.testing.assert_allclose(tr["cf.U"]["value"], tr["U"]["value"], rtol=1e-6)
    np.testing.assert_allclose(tr["cf.X"]["value"], 1.0)


def test_nuts_runs_on_a_conditioned_twin_world():
    x, y, x_prime = 0.3, -0.2, 1.1
    program = handlers.condition(
        twin_world(latent_confounder.model, {"X": x_prime}), {"X": x, "Y": y}
    )
    mcmc = MCMC(NUTS(program), num_warmup=300, num_samples=500, progress_bar=False)
    mcmc.run(KEY)
    samples = mcmc.get_samples()
    expected = latent_confounder.counterfactual_y(x, y, x_prime).mean
    np.testing.assert_allclose(samples["cf.Y"], expected, atol=1e-4)
    post = latent_confounder.posterior_u(x, y)
    assert abs(float(samples["U"].mean()) - float(post.mean)) < 4 * np.sqrt(float(post.var) / 150)


def test_svi_and_predictive_run_on_a_twin_world():
    program = handlers.condition(twin_world(latent_confounder.model, {"X": 0.0}), {"X": 1.0})
    guide = AutoNormal(program)
    svi = SVI(program, guide, Adam(0.05), Trace_ELBO())
    result = svi.run(KEY, 500, progress_bar=False)
    predictive = Predictive(program, guide=guide, params=result.params, num_samples=200)
    samples = predictive(KEY)
    assert samples["cf.Y"].shape == (200, 1)
    np.testing.assert_allclose(samples["cf.X"], 0.0)


def test_multi_world_shares_noise_across_worlds():
    program = multi_world(latent_confounder.model, {"a": {"X": 0.0}, "b": {"X": 1.0}})
    samples = Predictive(program, num_samples=100)(KEY)
    diff = samples["b.Y"] - samples["a.Y"]
    np.testing.assert_allclose(diff, latent_confounder.BETA, atol=1e-5)


def test_worlds_share_parameters():
    def model():
        w = numpyro.param("w", 2.0)
        x = numpyro.sample("x", dist.Normal(0.0, 1.0))
        numpyro.sample("y", dist.Normal(w * x, 1.0))

    tr = handlers.trace(handlers.seed(twin_world(model, {"x": 1.0}), 0)).get_trace()
    assert "w" in tr and "cf.w" not in tr


def test_discrete_noise_is_a_proper_sample_site():
    def model():
        x = numpyro.sample("x", dist.Bernoulli(0.3))
        numpyro.sample("y", dist.Normal(x, 1.0))

    program = handlers.condition(twin_world(model, {"x": 0.0}), {"x": jnp.array(1.0)})
    samples = Predictive(program, num_samples=2000)(KEY)
    u = np.asarray(samples["noise.x"])
    assert u.min() >= 0.7 and u.max() <= 1.0  # x = 1 <=> u > 1 - p


@pytest.mark.parametrize("label", ["noise", "a.b", "", 3])
def test_bad_world_labels(label):
    with pytest.raises(InterventionError, match="is not usable"):
        multi_world(latent_confounder.model, {label: {"X": 1.0}})
