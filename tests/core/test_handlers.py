"""`do` on sample and deterministic sites, and how it composes with NumPyro's handlers."""

import jax
import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as dist
import pytest
from numpyro import handlers
from numpyro.infer import MCMC, NUTS, Predictive

from scm_ppl import do
from scm_ppl.core import replay_noise
from scm_ppl.core.handlers import INTERVENTION_KEY, NATURAL_OF_KEY
from scm_ppl.errors import InterventionError


def model(n=3):
    with numpyro.plate("unit", n):
        z = numpyro.sample("z", dist.Normal(0.0, 1.0))
        x = numpyro.sample("x", dist.Normal(0.8 * z, 1.0))
        y = numpyro.deterministic("y", 2.0 * x + z)
        numpyro.sample("w", dist.Normal(y - x, 0.5))


def run(program, seed=0, *args, **kwargs):
    return handlers.trace(handlers.seed(program, seed)).get_trace(*args, **kwargs)


def test_hard_intervention_on_sample_site_sets_value_and_cuts_parents():
    tr = run(do(model, {"x": 1.5}))
    np.testing.assert_allclose(tr["x"]["value"], 1.5)
    assert tr["x"]["type"] == "deterministic"
    assert tr["x"]["infer"][INTERVENTION_KEY] == "hard"
    np.testing.assert_allclose(tr["y"]["value"], 3.0 + tr["z"]["value"], rtol=1e-6)


def test_hard_intervention_on_deterministic_site():
    tr = run(do(model, {"y": -2.0}))
    np.testing.assert_allclose(tr["y"]["value"], -2.0)
    assert tr["y"]["infer"][INTERVENTION_KEY] == "hard"


def test_per_unit_array_intervention_broadcasts_over_the_plate():
    values = jnp.array([1.0, 2.0, 3.0])
    tr = run(do(model, {"x": values}))
    np.testing.assert_allclose(tr["x"]["value"], values)


def test_shift_keeps_the_natural_draw_and_adds_to_it():
    tr = run(do(model, {"x": lambda x: x + 1.0}))
    natural = tr["x.natural"]
    assert natural["type"] == "sample" and natural["infer"][NATURAL_OF_KEY] == "x"
    np.testing.assert_allclose(tr["x"]["value"], natural["value"] + 1.0, rtol=1e-6)
    # the shifted value is what flows downstream
    np.testing.assert_allclose(tr["y"]["value"], 2 * tr["x"]["value"] + tr["z"]["value"], rtol=1e-6)


def test_shift_on_a_deterministic_site():
    tr = run(do(model, {"y": lambda y: 10 * y}))
    expected = 10 * (2 * tr["x"]["value"] + tr["z"]["value"])
    np.testing.assert_allclose(tr["y"]["value"], expected, rtol=1e-5)


def test_stochastic_intervention_replaces_the_mechanism():
    samples = Predictive(do(model, {"x": dist.Normal(5.0, 0.1)}), num_samples=2000)(
        jax.random.key(0)
    )
    assert abs(float(samples["x"].mean()) - 5.0) < 0.01
    assert abs(float(samples["x"].std()) - 0.1) < 0.01


def test_stochastic_intervention_on_a_deterministic_site():
    samples = Predictive(do(model, {"y": dist.Normal(-3.0, 0.1)}), num_samples=2000)(
        jax.random.key(0)
    )
    assert abs(float(samples["y"].mean()) + 3.0) < 0.01
    assert "y.intervention" in samples


def test_mask_intervenes_on_some_units_only():
    mask = jnp.array([True, False, True])
    tr = run(do(model, {"x": 7.0}, mask={"x": mask}))
    x, natural = tr["x"]["value"], tr["x.natural"]["value"]
    np.testing.assert_allclose(x, jnp.where(mask, 7.0, natural))


def test_several_sites_at_once():
    tr = run(do(model, {"x": 1.0, "z": 2.0}))
    np.testing.assert_allclose(tr["y"]["value"], 4.0)


def test_context_manager_form():
    with handlers.trace() as tr, handlers.seed(rng_seed=0), do(interventions={"x": 0.0}):
        model()
    np.testing.assert_allclose(tr["x"]["value"], 0.0)


def test_composes_with_condition_and_nuts():
    # w | do(x = 1), z: posterior of z given w is Gaussian; check the mean against it.
    conditioned = handlers.condition(do(model, {"x": 1.0}), {"w": jnp.array([3.0])})
    mcmc = MCMC(NUTS(conditioned), num_warmup=300, num_samples=1000, progress_bar=False)
    mcmc.run(jax.random.key(0), n=1)
    z = mcmc.get_samples()["z"]
    # w = y - x + .5 e = (2 + z) - 1 + .5 e  =>  z | w ~ N((w - 1) / 1.25, 0.25 / 1.25)
    assert abs(float(z.mean()) - 2.0 / 1.25) < 4 * np.sqrt(0.2 / 300)


def test_composes_with_substitute_jit_and_vmap():
    def run_once(key, value):
        program = handlers.substitute(do(model, {"x": value}), {"z": jnp.zeros(3)})
        return run(program, key)["y"]["value"]

    out = jax.jit(jax.vmap(run_once, in_axes=(0, 0)))(
        jax.random.split(jax.random.key(0), 4), jnp.arange(4.0)
    )
    np.testing.assert_allclose(out, 2 * jnp.arange(4.0)[:, None] * jnp.ones((4, 3)))


def test_replay_noise_makes_sites_deterministic_functions_of_noise():
    noise = {"z": jnp.ones(3), "x": jnp.zeros(3), "w": jnp.zeros(3)}
    tr = run(replay_noise(model, noise))
    np.testing.assert_allclose(tr["x"]["value"], 0.8)
    np.testing.assert_allclose(tr["w"]["value"], 0.8 + 1.0)
    assert all(tr[n]["type"] == "deterministic" for n in ("z", "x", "w"))


@pytest.mark.parametrize(
    ("interventions", "match"),
    [
        ({"x": "one"}, "expected a number or array"),
        ({"x": jnp.array([1.0, jnp.nan])}, r"1 NaN/inf"),
        ([("x", 1.0)], "must be a mapping"),
        ({3: 1.0}, "site names must be strings"),
    ],
)
def test_bad_interventions_are_named(interventions, match):
    with pytest.raises(InterventionError, match=match):
        do(model, interventions)


def test_mask_for_a_site_not_intervened_on():
    with pytest.raises(InterventionError, match=r"Mask given for \['w'\]"):
        do(model, {"x": 1.0}, mask={"w": jnp.ones(3, bool)})


def test_graph_of_an_intervened_program():
    from scm_ppl import graph

    hard = graph(do(model, {"x": 1.0}))
    assert hard.nodes["x"]["intervened"] and hard.nodes["x"]["intervention"] == "hard"
    assert list(hard.predecessors("x")) == []
    shifted = graph(do(model, {"x": lambda x: x + 1}))
    assert "x.natural" not in shifted
    assert set(shifted.predecessors("x")) == {"z"}
    assert shifted.nodes["x"]["intervention"] == "shift"


def vector_model(n=3):
    with numpyro.plate("unit", n):
        numpyro.sample("v", dist.MultivariateNormal(jnp.zeros(3), jnp.eye(3)))


def test_mask_on_a_site_with_event_axes_selects_units_not_coordinates():
    # Three units and three coordinates: a mask aligned on the trailing (event) axis would
    # pass silently and pick coordinates. It must pick units.
    mask = jnp.array([True, False, True])
    natural = run(vector_model)["v"]["value"]
    v = run(do(vector_model, {"v": 7.0}, mask={"v": mask}))["v"]["value"]
    np.testing.assert_allclose(v, jnp.where(mask[:, None], 7.0, natural))


@pytest.mark.parametrize("masked", [False, True])
def test_value_that_does_not_fit_the_site_shape_is_refused(masked):
    # One value per unit, shaped (n,), for a site shaped (n, 3): a broadcasting error deep
    # in JAX before; now the package says which site and what shape it needs.
    mask = {"v": jnp.array([True, False, True])} if masked else None
    with pytest.raises(InterventionError, match=r"'v'.*shape \(4,\).*\(3, 3\)"):
        run(do(vector_model, {"v": jnp.zeros(4)}, mask=mask))


@pytest.mark.parametrize("site", ["x", "y"])  # a sample and a deterministic site
def test_mask_that_does_not_fit_the_units_is_refused(site):
    with pytest.raises(InterventionError, match=rf"'{site}'.*mask has shape \(2,\)"):
        run(do(model, {site: 1.0}, mask={site: jnp.array([True, False])}))
