"""Batched what-ifs: a grid of intervention values in one compiled call (sweep,
dose_response), exact answers first."""

import jax
import numpy as np
import pytest
from numpyro import handlers

from models import latent_confounder, linear_chain, linear_gaussian_dag
from scm_ppl import counterfactual, dose_response, interventional, sweep
from scm_ppl.errors import InterventionError, SettingsError
from scm_ppl.query.engine import trace_count

KEY = jax.random.key(0)
GRID = np.linspace(-2.0, 2.0, 5)


def simulate(model, n, seed=1):
    tr = handlers.trace(handlers.seed(model, seed)).get_trace(n=n)
    return {name: site["value"] for name, site in tr.items() if site["type"] == "sample"}


@pytest.fixture(scope="module")
def dag_data():
    return simulate(linear_gaussian_dag.model, 200)


def test_sweep_counterfactual_matches_closed_form_for_every_value(dag_data):
    cf = counterfactual(
        linear_gaussian_dag.model, dag_data, {"X3": sweep(GRID)}, rng_key=KEY,
        model_kwargs={"n": 200},
    )  # fmt: skip
    assert cf.method == "exact" and cf.attrs["query"] == "counterfactual_sweep"
    predictions = cf.samples["predictions"]
    assert predictions["X9"].shape == (1, 1, len(GRID), 200)
    observed = np.stack([np.asarray(dag_data[f"X{i}"]) for i in range(10)], -1)
    for k, value in enumerate(GRID):
        expected = linear_gaussian_dag.counterfactual_closed_form(observed, {3: value})
        got = np.stack([np.asarray(predictions[f"X{i}"][0, 0, k]) for i in range(10)], -1)
        np.testing.assert_allclose(got, expected, atol=1e-5, rtol=0)
    dataset = cf.predictions
    assert dataset["X9"].dims == ("chain", "draw", "intervention", "unit")
    np.testing.assert_allclose(dataset.intervention.values, GRID)
    assert cf.posterior["noise.X9"].dims == ("chain", "draw", "unit")


def test_sweep_holds_other_interventions_fixed(dag_data):
    cf = counterfactual(
        linear_gaussian_dag.model, dag_data, {"X3": sweep(GRID), "X7": 0.5}, rng_key=KEY,
        model_kwargs={"n": 200},
    )  # fmt: skip
    observed = np.stack([np.asarray(dag_data[f"X{i}"]) for i in range(10)], -1)
    expected = linear_gaussian_dag.counterfactual_closed_form(observed, {3: GRID[1], 7: 0.5})
    got = np.asarray(cf.samples["predictions"]["X9"][0, 0, 1])
    np.testing.assert_allclose(got, expected[:, 9], atol=1e-5, rtol=0)


def test_repeated_sweep_with_new_values_does_not_recompile(dag_data):
    query = lambda grid: counterfactual(
        linear_gaussian_dag.model, dag_data, {"X3": sweep(grid)}, rng_key=KEY,
        model_kwargs={"n": 200},
    )  # fmt: skip
    query(GRID)
    before = trace_count()
    again = query(GRID + 1.0)
    assert trace_count() == before
    assert float(again.samples["predictions"]["X3"][0, 0, 0, 0]) == pytest.approx(GRID[0] + 1)


def test_dose_response_is_the_mean_of_the_sweep_and_chunking_changes_nothing(dag_data):
    cf = counterfactual(
        linear_gaussian_dag.model, dag_data, {"X3": sweep(GRID)}, rng_key=KEY,
        model_kwargs={"n": 200},
    )  # fmt: skip
    full = dose_response(
        linear_gaussian_dag.model, dag_data, "X3", GRID, "X9", rng_key=KEY,
        chunk_size=None, model_kwargs={"n": 200},
    )  # fmt: skip
    chunked = dose_response(
        linear_gaussian_dag.model, dag_data, "X3", GRID, "X9", rng_key=KEY,
        chunk_size=400, model_kwargs={"n": 200},
    )  # fmt: skip
    assert chunked.attrs["values_per_pass"] == 2 and full.attrs["values_per_pass"] == 5
    expected = np.asarray(cf.samples["predictions"]["X9"][0, 0]).mean(-1)
    np.testing.assert_allclose(full.mean, expected, rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(chunked.mean, full.mean, rtol=1e-6, atol=1e-6)
    assert full.draws.shape == (1, 1, len(GRID)) and full.attrs["method"] == "exact"
    # linear: the dose-response is a line with the total effect of X3 on X9 as slope
    slope = np.diff(np.asarray(full.mean)) / np.diff(GRID)
    mean_at = lambda v: linear_gaussian_dag.interventional_mean_and_cov({3: v})[0][9]
    np.testing.assert_allclose(slope, mean_at(1.0) - mean_at(0.0), rtol=1e-4)


@pytest.mark.slow  # ~20 s: many interventional draws
# X0-X2 are unobserved roots with several children, so latent confounders by the package's
# rule, and the query says so; the closed form checked here is the program's own answer.
@pytest.mark.filterwarnings("ignore::scm_ppl.errors.NotIdentifiableWarning")
def test_interventional_dose_response_and_sweep_match_closed_form():
    n, draws = 50, 400
    dr = dose_response(
        linear_gaussian_dag.model, None, "X3", GRID, "X9", rng_key=KEY, num_samples=draws,
        model_kwargs={"n": n},
    )  # fmt: skip
    assert not dr.attrs["counterfactual"]
    _, cov = linear_gaussian_dag.interventional_mean_and_cov({3: 0.0})
    se = np.sqrt(cov[9, 9] / (n * draws))
    for k, value in enumerate(GRID):
        mean = linear_gaussian_dag.interventional_mean_and_cov({3: value})[0][9]
        assert abs(float(dr.mean[k]) - mean) < 4 * se
    # draws chunked (each keeps its key): the same numbers
    chunked = dose_response(
        linear_gaussian_dag.model, None, "X3", GRID, "X9", rng_key=KEY, num_samples=draws,
        chunk_size=7 * n, model_kwargs={"n": n},
    )  # fmt: skip
    np.testing.assert_allclose(chunked.draws, dr.draws, rtol=1e-6, atol=1e-6)
    result = interventional(
        linear_gaussian_dag.model, {"X3": sweep(GRID)}, num_samples=draws, rng_key=KEY,
        model_kwargs={"n": n},
    )  # fmt: skip
    assert result.attrs["query"] == "interventional_sweep"
    y = np.asarray(result.samples["predictions"]["X9"])  # chain, draw, value, unit
    assert y.shape == (1, draws, len(GRID), n)
    np.testing.assert_allclose(y.mean(axis=(0, 1, 3)), dr.mean, rtol=1e-5, atol=1e-5)


@pytest.mark.slow
@pytest.mark.filterwarnings("ignore::scm_ppl.errors.NotIdentifiableWarning")
@pytest.mark.filterwarnings("ignore::scm_ppl.errors.InferenceWarning")
def test_nuts_sweep_equals_single_queries_with_the_same_key():
    # NUTS on purpose: "auto" takes the exact per-unit Gaussian on this model.
    settings = {"num_samples": 100, "num_warmup": 100, "rng_key": KEY, "method": "nuts"}
    grid = np.array([-1.0, 0.5])
    swept = counterfactual(latent_confounder.model, {"X": 0.7}, {"X": sweep(grid)}, **settings)
    assert swept.method == "nuts"
    for k, value in enumerate(grid):
        single = counterfactual(latent_confounder.model, {"X": 0.7}, {"X": value}, **settings)
        np.testing.assert_allclose(
            swept.samples["predictions"]["Y"][:, :, k],
            single.samples["predictions"]["Y"][:, :, 1],
            rtol=1e-5,
            atol=1e-5,
        )


# --- bad input ---------------------------------------------------------------------------


def test_bad_sweeps_are_named():
    data = {"x1": 0.5}
    with pytest.raises(InterventionError, match=r"leading axis of at least one value"):
        sweep(np.array(1.0))
    with pytest.raises(InterventionError, match=r"leading axis of at least one value"):
        sweep([])
    with pytest.raises(InterventionError, match=r"takes numbers"):
        sweep(["a", "b"])
    with pytest.raises(InterventionError, match=r"NaN/inf"):
        sweep([0.0, np.nan])
    with pytest.raises(InterventionError, match=r"One site can be swept per query"):
        counterfactual(
            linear_chain.model, data, {"x1": sweep(GRID), "x2": sweep(GRID)}, rng_key=KEY
        )
    with pytest.raises(InterventionError, match=r"one counterfactual world"):
        counterfactual(linear_chain.model, data, {"a": {"x1": sweep(GRID)}}, rng_key=KEY)
    with pytest.raises(InterventionError, match=r"does not broadcast to the site's shape"):
        counterfactual(linear_chain.model, data, {"x1": sweep(np.zeros((3, 4)))}, rng_key=KEY)
    with pytest.raises(InterventionError, match=r"Unknown intervention site 'q'"):
        counterfactual(linear_chain.model, data, {"q": sweep(GRID)}, rng_key=KEY)
    with pytest.raises(InterventionError, match=r"takes no evidence"):
        interventional(linear_chain.model, {"x1": sweep(GRID)}, evidence=data, rng_key=KEY)


def test_bad_dose_response_arguments_are_named():
    data = {"x1": 0.5}
    with pytest.raises(InterventionError, match=r"Unknown outcome site 'q'.*\['x1', 'x2'"):
        dose_response(linear_chain.model, data, "x1", GRID, "q", rng_key=KEY)
    with pytest.raises(InterventionError, match=r"site must be a site name"):
        dose_response(linear_chain.model, data, 3, GRID, "x4", rng_key=KEY)
    with pytest.raises(InterventionError, match=r"both swept and in interventions="):
        dose_response(
            linear_chain.model, data, "x1", GRID, "x4", rng_key=KEY, interventions={"x1": 0.0}
        )
    for bad in (0, -3, 2.5, True):
        with pytest.raises(SettingsError, match=r"chunk_size must be a positive integer"):
            dose_response(linear_chain.model, data, "x1", GRID, "x4", rng_key=KEY, chunk_size=bad)
    with pytest.raises(TypeError, match=r"rng_key must be a JAX PRNG key"):
        dose_response(linear_chain.model, data, "x1", GRID, "x4", rng_key=0)
