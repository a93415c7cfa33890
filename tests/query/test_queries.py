"""ATE, ETT and the probabilities of causation against closed forms."""

import jax
import jax.numpy as jnp
import numpyro
import numpyro.distributions as dist
import pytest

from models import firing_squad, kidney_stones
from scm_ppl import ate, ett, pn, pns, ps
from scm_ppl.errors import InterventionError

KEY = jax.random.key(0)
UNITS = {"n": 200}


def within(estimate, truth, k=4.0):
    return abs(estimate.value - truth) <= k * estimate.std_error + 1e-9


def test_firing_squad_probabilities_of_causation():
    truth = firing_squad.probabilities_of_causation_closed_form(
        firing_squad.P_ORDER, firing_squad.Q_NERVOUS
    )
    for query, expected in ((pn, truth.pn), (ps, truth.ps), (pns, truth.pns)):
        estimate = query(firing_squad.model, "A", "D", rng_key=KEY, model_kwargs=UNITS)
        assert within(estimate, expected), (query.__name__, estimate, expected)
        # U and W replay their factual values in every world: no coupling is assumed
        assert estimate.couplings == {}


def coupled(n=1):
    with numpyro.plate("unit", n):
        x = numpyro.sample("X", dist.Bernoulli(0.5))
        numpyro.sample("Y", dist.Bernoulli(jnp.where(x == 1, 0.8, 0.3)))


def test_probability_of_necessity_under_the_monotone_coupling():
    # u ~ U(0,1), Y = 1[u > 1 - p(X)]: PN = (p1 - p0) / p1, PNS = p1 - p0, PS = (p1 - p0) / (1 - p0)
    p1, p0 = 0.8, 0.3
    assert within(pn(coupled, "X", "Y", rng_key=KEY, model_kwargs=UNITS), (p1 - p0) / p1)
    assert within(pns(coupled, "X", "Y", rng_key=KEY, model_kwargs=UNITS), p1 - p0)
    estimate = ps(coupled, "X", "Y", rng_key=KEY, model_kwargs=UNITS)
    assert within(estimate, (p1 - p0) / (1 - p0))
    assert estimate.couplings["Y"] == "inverse-CDF (monotone)"


def test_ate_and_ett_on_kidney_stones():
    # stone size Z is measured: observed, so the effect is identified (back-door)
    estimate = ate(kidney_stones.model, "X", "Y", rng_key=KEY, model_kwargs=UNITS, observed=["Z"])
    assert within(estimate, kidney_stones.ate_adjusted())
    assert estimate.couplings == {}
    effect_on_treated = ett(
        kidney_stones.model, "X", "Y", rng_key=KEY, model_kwargs=UNITS, observed=["Z"]
    )
    # ETT = sum_z P(z | X=1) (P(Y=1 | 1, z) - P(Y=1 | 0, z))
    pz = kidney_stones.P_Z
    px = kidney_stones.P_X_GIVEN_Z
    py = kidney_stones.P_Y_GIVEN_XZ
    joint = [(1 - pz) * px[0], pz * px[1]]
    truth = sum(joint[z] * (py[1][z] - py[0][z]) for z in (0, 1)) / sum(joint)
    assert within(effect_on_treated, truth)


def test_continuous_treatment_for_ett_is_rejected():
    def model():
        t = numpyro.sample("t", dist.Normal(0, 1))
        numpyro.sample("y", dist.Normal(t, 1))

    with pytest.raises(InterventionError, match=r"Treatment 't' is continuous"):
        ett(model, "t", "y", rng_key=KEY)


def test_unknown_sites_in_queries():
    with pytest.raises(InterventionError, match=r"Unknown site\(s\) \['nope'\]"):
        ate(coupled, "X", "nope", rng_key=KEY)


def test_treatment_and_outcome_values_can_be_named():
    def model(n=1):
        with numpyro.plate("unit", n):
            x = numpyro.sample("X", dist.Bernoulli(0.5))
            y = numpyro.sample("Y", dist.Bernoulli(jnp.where(x == 1, 0.8, 0.3)))
            numpyro.deterministic("T", 2.0 * x + 3.0)
            numpyro.deterministic("Z", 10.0 * y)

    # T = 5 is "treated", 3 "control"; Z = 10 is the positive outcome: same PN as `coupled`
    estimate = pn(model, "X", "Z", rng_key=KEY, positive=10.0, model_kwargs=UNITS)
    assert within(estimate, (0.8 - 0.3) / 0.8)
