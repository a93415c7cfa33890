"""Counterfactual and interventional queries: closed-form answers first."""

import jax
import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as dist
import pytest
from numpyro import handlers

from models import latent_confounder, linear_chain, linear_gaussian_dag
from scm_ppl import counterfactual, interventional
from scm_ppl.errors import (
    AbductionError,
    EvidenceError,
    InterventionError,
    NoiseViewError,
    SettingsError,
)
from scm_ppl.query.engine import trace_count

KEY = jax.random.key(0)


def simulate(model, n, seed=1, **kwargs):
    tr = handlers.trace(handlers.seed(model, seed)).get_trace(n=n, **kwargs)
    return {name: site["value"] for name, site in tr.items() if site["type"] == "sample"}


# --- exact path --------------------------------------------------------------------------


def test_fully_observed_linear_gaussian_dag_matches_closed_form():
    n = 2000
    data = simulate(linear_gaussian_dag.model, n)
    cf = counterfactual(
        linear_gaussian_dag.model, data, {"X3": 1.0}, rng_key=KEY, model_kwargs={"n": n}
    )
    assert cf.method == "exact" and cf.attrs["exact"]
    observed = np.stack([np.asarray(data[f"X{i}"]) for i in range(10)], axis=-1)
    expected = linear_gaussian_dag.counterfactual_closed_form(observed, {3: 1.0})
    predictions = cf.samples["predictions"]
    got = np.stack([np.asarray(predictions[f"X{i}"][0, 0, 1]) for i in range(10)], axis=-1)
    assert predictions["X0"].shape == (1, 1, 2, n)  # one exact draw, two worlds
    np.testing.assert_allclose(got, expected, atol=1e-5, rtol=0)


def test_exact_path_shift_intervention_on_a_chain():
    n = 500
    data = simulate(linear_chain.model, n)
    cf = counterfactual(
        linear_chain.model, data, {"x2": lambda x: x + 1.0}, rng_key=KEY, model_kwargs={"n": n}
    )
    observed = np.stack([np.asarray(data[f"x{i}"]) for i in range(1, 5)], axis=-1)
    shifted = observed[:, 1] + 1.0
    expected = linear_chain.counterfactual_closed_form(observed, {"x2": shifted})
    got = np.stack(
        [np.asarray(cf.samples["predictions"][f"x{i}"][0, 0, 1]) for i in range(1, 5)], -1
    )
    np.testing.assert_allclose(got, expected, atol=1e-5, rtol=0)


def test_noise_is_in_the_posterior_and_inverts_exactly():
    data = simulate(linear_chain.model, 50)
    cf = counterfactual(linear_chain.model, data, {"x1": 0.0}, rng_key=KEY, model_kwargs={"n": 50})
    noise = np.asarray(cf.samples["posterior"]["noise.x2"][0, 0])
    w, s = linear_chain.WEIGHTS[0], linear_chain.NOISE_SCALES[1]
    expected = (np.asarray(data["x2"]) - w * np.asarray(data["x1"])) / s
    np.testing.assert_allclose(noise, expected, atol=1e-5)


def test_downstream_latent_sites_are_drawn_from_their_prior_exactly():
    # x2..x4 unobserved but downstream of the evidence: no inference needed.
    cf = counterfactual(linear_chain.model, {"x1": 1.0}, {"x1": 2.0}, rng_key=KEY, num_samples=4000)
    assert cf.method == "exact" and not cf.attrs["exact"]
    x2_cf = np.asarray(cf.samples["predictions"]["x2"][0, :, 1, 0])
    w, s = linear_chain.WEIGHTS[0], linear_chain.NOISE_SCALES[1]
    assert abs(x2_cf.mean() - 2.0 * w) < 4 * s / np.sqrt(4000)
    # the factual and counterfactual x2 share noise: they differ by exactly w * (2 - 1)
    x2_f = np.asarray(cf.samples["predictions"]["x2"][0, :, 0, 0])
    np.testing.assert_allclose(x2_cf - x2_f, w, atol=1e-5)


# --- inference path ----------------------------------------------------------------------


@pytest.mark.filterwarnings("ignore::scm_ppl.errors.NotIdentifiableWarning")
def test_nuts_counterfactual_posterior_matches_closed_form():
    x, x_prime = 0.7, -0.4
    cf = counterfactual(
        latent_confounder.model,
        {"X": x},
        {"X": x_prime},
        rng_key=KEY,
        num_samples=2000,
        num_warmup=500,
        method="nuts",  # "auto" takes the per-unit closed form on this Gaussian model
    )
    assert cf.method == "nuts"
    y_cf = np.asarray(cf.samples["predictions"]["Y"][0, :, 1, 0])
    truth = latent_confounder.counterfactual_y_given_x(x, x_prime)
    ess = cf.attrs["min_ess"]
    # mean within 4 Monte-Carlo standard errors (ESS-based); variance within 10 %.
    assert abs(y_cf.mean() - float(truth.mean)) < 4 * np.sqrt(float(truth.var) / ess)
    assert abs(y_cf.var() / float(truth.var) - 1) < 0.10


@pytest.mark.filterwarnings("ignore::scm_ppl.errors.NotIdentifiableWarning")
def test_nuts_with_plate_size_in_model_kwargs():
    # plate sizes are Python ints: NUTS must not trace them
    x = np.array([0.5, -1.0, 2.0])
    cf = counterfactual(
        latent_confounder.model, {"X": x, "Y": np.zeros(3)}, {"X": 0.0},
        rng_key=KEY, num_samples=300, model_kwargs={"n": 3},
    )  # fmt: skip
    expected = latent_confounder.counterfactual_y(x, 0.0, 0.0).mean
    np.testing.assert_allclose(
        cf.samples["predictions"]["Y"][0, :, 1], np.broadcast_to(expected, (300, 3)), atol=1e-4
    )


@pytest.mark.filterwarnings("ignore::scm_ppl.errors.NotIdentifiableWarning")
def test_nuts_counterfactual_is_exact_where_the_latent_cancels():
    # Y_{x'} | X, Y = y + beta (x' - x) with zero variance, though U stays uncertain.
    x, y, x_prime = 0.3, -0.2, 1.1
    cf = counterfactual(
        latent_confounder.model, {"X": x, "Y": y}, {"X": x_prime}, rng_key=KEY, num_samples=500
    )
    y_cf = np.asarray(cf.samples["predictions"]["Y"][0, :, 1, 0])
    np.testing.assert_allclose(
        y_cf, latent_confounder.counterfactual_y(x, y, x_prime).mean, atol=1e-4
    )
    u = np.asarray(cf.samples["posterior"]["U"])
    assert u.std() > 0.1


@pytest.mark.filterwarnings("ignore::scm_ppl.errors.NotIdentifiableWarning")
def test_design_example_counterfactual_and_svi_agree_with_closed_form():
    def model(n=1):
        with numpyro.plate("unit", n):
            z = numpyro.sample("z", dist.Normal(0, 1))
            x = numpyro.sample("x", dist.Normal(0.8 * z, 1))
            y = numpyro.deterministic("y", 2 * x + z)
            numpyro.sample("w", dist.Normal(y - x, 0.5))

    # w - x = z + 0.5 e, x = 0.8 z + e'  =>  z | x, w is Gaussian; w_cf = x + 1 + (w - x) exactly
    evidence = {"x": 0.3, "w": 1.2}
    precision = 1 + 0.8**2 + 1 / 0.25
    z_mean = (0.8 * 0.3 + (1.2 - 0.3) / 0.25) / precision
    for method, tol in (("nuts", 4 / np.sqrt(300)), ("svi", 0.15)):
        cf = counterfactual(
            model, evidence, {"x": lambda x: x + 1}, rng_key=KEY, method=method, svi_steps=3000
        )
        assert cf.method == method
        np.testing.assert_allclose(cf.samples["predictions"]["w"][0, :, 1], 2.2, atol=1e-4)
        z = np.asarray(cf.samples["posterior"]["z"])
        assert abs(z.mean() - z_mean) < tol * np.sqrt(1 / precision)


# --- effectiveness, composition, determinism, compile counts ------------------------------


def random_linear_model(seed, num_nodes=5):
    rng = np.random.default_rng(seed)
    weights = np.triu(rng.normal(size=(num_nodes, num_nodes)), 1) * (
        rng.random((num_nodes, num_nodes)) < 0.6
    )

    def model(n=1):
        values = []
        with numpyro.plate("unit", n):
            for i in range(num_nodes):
                loc = sum((weights[j, i] * values[j] for j in range(i)), start=jnp.zeros(()))
                values.append(numpyro.sample(f"v{i}", dist.Normal(loc, 1.0)))

    return model


@pytest.mark.parametrize("seed", range(5))
def test_intervening_at_the_observed_value_gives_back_the_factual_world(seed):
    model = random_linear_model(seed)
    data = simulate(model, 20, seed=seed)
    site = f"v{seed % 5}"
    cf = counterfactual(model, data, {site: data[site]}, rng_key=KEY, model_kwargs={"n": 20})
    for name, value in data.items():
        np.testing.assert_allclose(cf.samples["predictions"][name][0, 0, 1], value, atol=1e-5)


@pytest.mark.parametrize("seed", range(3))
def test_composition_intervening_on_a_site_at_its_counterfactual_value(seed):
    # If do(a) makes b take value b*, then do(a, b = b*) changes nothing else.
    model = random_linear_model(seed)
    data = simulate(model, 10, seed=seed)
    once = counterfactual(model, data, {"v1": 2.0}, rng_key=KEY, model_kwargs={"n": 10})
    b_star = once.samples["predictions"]["v3"][0, 0, 1]
    twice = counterfactual(
        model, data, {"v1": 2.0, "v3": b_star}, rng_key=KEY, model_kwargs={"n": 10}
    )
    for name in data:
        np.testing.assert_allclose(
            twice.samples["predictions"][name], once.samples["predictions"][name], atol=1e-5
        )


@pytest.mark.filterwarnings("ignore::scm_ppl.errors.NotIdentifiableWarning")
def test_same_key_same_answer_and_no_recompilation():
    def query(key, shift):
        return counterfactual(
            latent_confounder.model, {"X": 0.1}, {"X": lambda x: x + shift},
            rng_key=key, method="svi", svi_steps=200, num_samples=50,
        )  # fmt: skip

    first = query(KEY, 1.0)
    second = query(KEY, 1.0)
    np.testing.assert_array_equal(
        first.samples["predictions"]["Y"], second.samples["predictions"]["Y"]
    )
    data = simulate(linear_chain.model, 100)
    counterfactual(linear_chain.model, data, {"x2": 1.0}, rng_key=KEY, model_kwargs={"n": 100})
    before = trace_count()
    for value in (2.0, 3.0, 4.0):
        counterfactual(
            linear_chain.model, data, {"x2": value}, rng_key=KEY, model_kwargs={"n": 100}
        )
        counterfactual(
            linear_chain.model, data, {"x2": lambda x: x + 1}, rng_key=KEY, model_kwargs={"n": 100}
        )
    # one trace for the inline lambda's first use; hard values are arguments, not constants
    assert trace_count() - before == 1


def test_several_worlds_and_masks():
    data = simulate(linear_chain.model, 4)
    cf = counterfactual(
        linear_chain.model,
        data,
        {"low": {"x1": -1.0}, "high": {"x1": 1.0}},
        rng_key=KEY,
        model_kwargs={"n": 4},
    )
    assert cf.attrs["worlds"] == ["factual", "low", "high"]
    diff = cf.samples["predictions"]["x2"][0, 0, 2] - cf.samples["predictions"]["x2"][0, 0, 1]
    np.testing.assert_allclose(diff, 2 * linear_chain.WEIGHTS[0], atol=1e-5)
    mask = jnp.array([True, False, True, False])
    masked = counterfactual(
        linear_chain.model, data, {"x1": 5.0}, mask={"x1": mask}, rng_key=KEY, model_kwargs={"n": 4}
    )
    x1 = masked.samples["predictions"]["x1"][0, 0, 1]
    np.testing.assert_allclose(x1, jnp.where(mask, 5.0, data["x1"]), atol=1e-6)


def test_stochastic_intervention_in_a_counterfactual_world_has_fresh_noise():
    data = simulate(linear_chain.model, 1)
    cf = counterfactual(
        linear_chain.model, data, {"x1": dist.Normal(10.0, 1.0)}, rng_key=KEY, num_samples=3000
    )
    x1 = np.asarray(cf.samples["predictions"]["x1"][0, :, 1, 0])
    assert abs(x1.mean() - 10.0) < 4 / np.sqrt(3000) and abs(x1.std() - 1.0) < 0.05


# --- interventional ----------------------------------------------------------------------


# X0-X2 are roots with several children, latent under the identification rule: the
# effect is the program's, not identified from data on X3-X9, which is what this checks.
@pytest.mark.filterwarnings("ignore::scm_ppl.errors.NotIdentifiableWarning")
def test_interventional_mean_and_covariance_match_closed_form():
    n = 20_000
    result = interventional(linear_gaussian_dag.model, {"X3": 1.0}, num_samples=n, rng_key=KEY)
    samples = np.stack(
        [np.asarray(result.samples["predictions"][f"X{i}"]).reshape(-1) for i in range(10)], -1
    )
    mean, cov = linear_gaussian_dag.interventional_mean_and_cov({3: 1.0})
    se = np.sqrt(np.diag(cov) / n)
    assert np.all(np.abs(samples.mean(0) - mean) < 4 * se + 1e-6)
    np.testing.assert_allclose(np.cov(samples.T), cov, atol=0.1 * np.max(np.diag(cov)))


def test_interventional_with_evidence_in_the_intervened_world():
    # Y | do(X = x'), U observed: Y = beta x' + gamma u + noise (exact: no latent upstream)
    result = interventional(
        latent_confounder.model, {"X": 2.0}, evidence={"U": 0.5}, num_samples=4000, rng_key=KEY
    )
    y = np.asarray(result.samples["predictions"]["Y"][0, :, 0, 0])
    expected = latent_confounder.BETA * 2.0 + latent_confounder.GAMMA * 0.5
    assert abs(y.mean() - expected) < 4 * latent_confounder.SIGMA_Y / np.sqrt(4000)
    assert result.attrs["methods"] == {"do": "exact"}


def test_several_interventions_side_by_side():
    result = interventional(
        linear_chain.model, {"a": {"x1": 0.0}, "b": {"x1": 1.0}}, num_samples=10, rng_key=KEY
    )
    assert result.samples["predictions"]["x1"].shape == (1, 10, 2, 1)
    assert list(result.predictions.intervention.values) == ["a", "b"]


# --- bad input ---------------------------------------------------------------------------


def test_unknown_sites_are_listed():
    with pytest.raises(
        EvidenceError, match=r"Unknown evidence site 'q'.*\['x1', 'x2', 'x3', 'x4'\]"
    ):
        counterfactual(linear_chain.model, {"q": 1.0}, {"x1": 1.0}, rng_key=KEY)
    with pytest.raises(InterventionError, match=r"Unknown intervention site 'q'; the program"):
        counterfactual(linear_chain.model, {"x1": 1.0}, {"q": 1.0}, rng_key=KEY)
    with pytest.raises(InterventionError, match=r"Unknown intervention site 'q'"):
        interventional(linear_chain.model, {"q": 1.0}, rng_key=KEY)


def test_evidence_that_does_not_fit_the_plate():
    with pytest.raises(EvidenceError, match=r"shape \(5,\), but the site has shape \(1,\).*'n'"):
        counterfactual(linear_chain.model, {"x1": np.zeros(5)}, {"x1": 1.0}, rng_key=KEY)


def test_nan_evidence_names_site_and_count():
    with pytest.raises(EvidenceError, match=r"'x2' holds 2 NaN/inf value\(s\) out of 3"):
        counterfactual(
            linear_chain.model,
            {"x2": np.array([np.nan, 1.0, np.inf])},
            {"x1": 1.0},
            rng_key=KEY,
            model_kwargs={"n": 3},
        )


def test_intervening_on_evidence_in_the_same_world():
    with pytest.raises(InterventionError, match=r"both intervened on and given as evidence"):
        interventional(linear_chain.model, {"x1": 1.0}, evidence={"x1": 0.0}, rng_key=KEY)


def test_callable_that_changes_the_shape():
    with pytest.raises(InterventionError, match=r"changes the shape"):
        counterfactual(
            linear_chain.model, {"x1": 0.0}, {"x2": lambda x: jnp.stack([x, x])}, rng_key=KEY
        )


def test_callable_that_raises():
    def bad(x):
        raise RuntimeError("boom")

    with pytest.raises(InterventionError, match=r"raised RuntimeError.*boom"):
        counterfactual(linear_chain.model, {"x1": 0.0}, {"x2": bad}, rng_key=KEY)


def test_distribution_without_noise_view():
    class NoCdf(dist.Distribution):
        support = dist.constraints.real

        def sample(self, key, sample_shape=()):
            return jax.random.normal(key, sample_shape)

        def log_prob(self, value):
            return -0.5 * value**2

    def model():
        numpyro.sample("x", NoCdf())

    with pytest.raises(NoiseViewError, match=r"Site 'x' has no noise view.*'NoCdf'"):
        counterfactual(model, {"x": 1.0}, {"x": 2.0}, rng_key=KEY)
    # an interventional query does not need noise views
    interventional(model, {"x": 2.0}, rng_key=KEY, num_samples=2)


def test_exact_forced_where_a_site_does_not_invert():
    def model():
        x = numpyro.sample("x", dist.Bernoulli(0.5))
        numpyro.sample("y", dist.Normal(x, 1.0))

    with pytest.raises(
        AbductionError, match=r"'x' \(BernoulliProbs\) does not invert.*method='nuts'"
    ):
        counterfactual(model, {"x": 1.0, "y": 0.0}, {"x": 0.0}, rng_key=KEY, method="exact")


def test_exact_forced_with_latent_upstream():
    with pytest.raises(AbductionError, match=r"\['U'\] is latent; use method='nuts'"):
        counterfactual(latent_confounder.model, {"X": 1.0}, {"X": 0.0}, rng_key=KEY, method="exact")


def test_unknown_method_and_bad_key():
    with pytest.raises(SettingsError, match=r"Unknown method 'magic'"):
        counterfactual(linear_chain.model, {"x1": 1.0}, {"x1": 0.0}, rng_key=KEY, method="magic")
    with pytest.raises(TypeError, match=r"rng_key must be a JAX PRNG key"):
        counterfactual(linear_chain.model, {"x1": 1.0}, {"x1": 0.0}, rng_key=0)


def test_evidence_on_a_deterministic_site_with_latent_parents():
    def model():
        z = numpyro.sample("z", dist.Normal(0, 1))
        numpyro.deterministic("y", 2 * z)

    with pytest.raises(EvidenceError, match=r"deterministic site\(s\) \['y'\]"):
        counterfactual(model, {"y": 1.0}, {"z": 0.0}, rng_key=KEY)


def test_evidence_on_a_deterministic_site_must_agree_with_its_mechanism():
    def model():
        z = numpyro.sample("z", dist.Normal(0, 1))
        numpyro.deterministic("y", 2 * z)

    cf = counterfactual(model, {"z": 1.0, "y": 2.0}, {"z": 0.0}, rng_key=KEY)
    np.testing.assert_allclose(cf.samples["predictions"]["y"][0, 0, 1], 0.0)
    with pytest.raises(EvidenceError, match=r"'y' disagrees with its mechanism by up to 1"):
        counterfactual(model, {"z": 1.0, "y": 3.0}, {"z": 0.0}, rng_key=KEY)


@pytest.mark.filterwarnings("ignore::scm_ppl.errors.NotIdentifiableWarning")
def test_unreliable_nuts_is_warned_about():
    from scm_ppl.errors import InferenceWarning

    with pytest.warns(InferenceWarning, match=r"NUTS abduction may be unreliable: .*min ESS"):
        counterfactual(
            latent_confounder.model, {"X": 0.2}, {"X": 0.0}, rng_key=KEY,
            num_samples=20, num_warmup=20, method="nuts",
        )  # fmt: skip


def test_a_program_that_raises_is_reported_with_its_name():
    from scm_ppl.errors import ProgramError

    def broken(n=1):
        raise KeyError("no such column")

    with pytest.raises(ProgramError, match=r"'broken' raised KeyError"):
        counterfactual(broken, {"x": 1.0}, {"x": 0.0}, rng_key=KEY)


def test_bad_settings_are_named():
    with pytest.raises(ValueError, match=r"num_samples must be a positive integer; got 0"):
        interventional(linear_chain.model, {"x1": 1.0}, rng_key=KEY, num_samples=0)


@pytest.mark.filterwarnings("ignore::scm_ppl.errors.InferenceWarning")
def test_not_identified_queries_warn_or_raise_under_strict():
    from scm_ppl.errors import NotIdentifiableError, NotIdentifiableWarning

    # U is a latent confounder of X and Y: P(Y | do(X)) is the bow arc, not identified.
    with pytest.warns(NotIdentifiableWarning, match=r"P\(Y \| do\(X\)\) is not identified"):
        result = counterfactual(
            latent_confounder.model, {"X": 0.1, "Y": 0.2}, {"X": 0.0}, rng_key=KEY, num_samples=200
        )
    assert result.attrs["identified"] is False
    with pytest.raises(NotIdentifiableError, match=r"latent \['U'\]"):
        interventional(
            latent_confounder.model, {"X": 0.0}, evidence={"Y": 0.2}, rng_key=KEY, strict=True
        )
    # observing the confounder identifies it (without evidence it stays latent)
    fine = interventional(
        latent_confounder.model, {"X": 0.0}, evidence={"U": 0.2}, rng_key=KEY, num_samples=5
    )
    assert fine.attrs["identification"]["do"]["identified"] is True
