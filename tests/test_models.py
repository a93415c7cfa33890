"""Tests of the ready SCMs in ``models/``: shapes, graphs, and the stated truths.

Exact answers first (closed forms against enumeration, twin simulations that share the
random stream); Monte-Carlo checks use fixed keys and a tolerance of ``Z`` standard
errors of the estimate, computed from the known spread of what is averaged.
"""

from __future__ import annotations

import doctest
import itertools
from collections.abc import Callable, Mapping
from types import ModuleType
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from numpyro import handlers
from numpyro.infer.inspect import get_model_relations

from models import (
    MODELS,
    firing_squad,
    front_door,
    kidney_stones,
    latent_confounder,
    latent_mechanism,
    linear_chain,
    linear_gaussian_dag,
    linear_generator,
)

# Monte-Carlo tolerance in standard errors. With fixed keys the tests are deterministic;
# 5 SE keeps a correct implementation far from the edge (two-sided p ~ 6e-7 per
# comparison, so even ~100 comparisons per test would fail by chance with p < 1e-4),
# while a wrong closed form of any practical size is still caught.
Z = 5.0

MODEL_NAMES = sorted(MODELS)


def simulate(
    model: Callable[..., Any],
    n: int,
    key: int | jax.Array = 0,
    do: Mapping[str, Any] | None = None,
    substitute: Mapping[str, Any] | None = None,
) -> dict[str, np.ndarray]:
    """Run ``model(n)`` under ``seed`` and return every sample/deterministic site.

    ``do`` uses NumPyro's own ``do`` (sample sites), ``substitute`` overrides any site
    (deterministic ones included). Both keep the random stream of the factual run, so
    the same key gives the same exogenous noise: a twin-world simulation. Under ``do``
    the trace records the factual value of the intervened site under its name; the
    intervened values are put back here.
    """
    fn = model
    if do:
        fn = handlers.do(fn, data=dict(do))
    if substitute:
        fn = handlers.substitute(fn, data=dict(substitute))
    trace = handlers.trace(handlers.seed(fn, key)).get_trace(n)
    out = {
        name: np.asarray(site["value"], dtype=np.float64)
        for name, site in trace.items()
        if site["type"] in ("sample", "deterministic")
    }
    for name, value in (do or {}).items():
        out[name] = np.broadcast_to(np.asarray(value, dtype=np.float64), (n,))
    return out


def stack(values: Mapping[str, np.ndarray], nodes: tuple[str, ...]) -> np.ndarray:
    return np.stack([values[name] for name in nodes], axis=-1)


def check_mean_and_cov(
    samples: np.ndarray, mean: np.ndarray, cov: np.ndarray, atol: float = 1e-4
) -> None:
    """Sample mean and covariance against the truth, within ``Z`` standard errors.

    SE of the mean of column i: sqrt(cov_ii / N); SE of the sample covariance of a
    Gaussian pair: sqrt((cov_ii cov_jj + cov_ij^2) / N). ``atol`` covers float32
    rounding where the truth has zero spread (intervened nodes).
    """
    num = samples.shape[0]
    se_mean = np.sqrt(np.diag(cov) / num)
    np.testing.assert_array_less(np.abs(samples.mean(0) - mean), Z * se_mean + atol)
    var = np.diag(cov)
    se_cov = np.sqrt((np.outer(var, var) + cov**2) / num)
    np.testing.assert_array_less(np.abs(np.cov(samples, rowvar=False) - cov), Z * se_cov + atol)


def check_proportion(hits: np.ndarray, p: float) -> None:
    """Frequency of a 0/1 array against ``p`` within ``Z`` binomial standard errors."""
    se = np.sqrt(p * (1 - p) / hits.size)
    assert abs(hits.mean() - p) <= Z * se + 1e-12, (hits.mean(), p, se)


def ols(y: np.ndarray, *columns: np.ndarray) -> tuple[np.ndarray, np.ndarray, float]:
    """Least squares of ``y`` on an intercept and ``columns``: (coef, se, residual var)."""
    design = np.stack([np.ones_like(y), *columns], axis=-1)
    coef, *_ = np.linalg.lstsq(design, y, rcond=None)
    resid = y - design @ coef
    resid_var = float(resid @ resid / (y.size - design.shape[1]))
    se = np.sqrt(resid_var * np.diag(np.linalg.inv(design.T @ design)))
    return coef, se, resid_var


# ---------------------------------------------------------------------------- all


def unit_sites(model: Callable[..., Any], n: int) -> dict[str, Any]:
    """The sample and deterministic sites of ``model(n)`` (and its ``"unit"`` plate)."""
    trace = handlers.trace(handlers.seed(model, jax.random.key(0))).get_trace(n)
    assert trace["unit"]["type"] == "plate"
    return {k: v for k, v in trace.items() if v["type"] in ("sample", "deterministic")}


@pytest.mark.parametrize("n", [1, 7])
@pytest.mark.parametrize("name", MODEL_NAMES)
def test_model_runs_with_unit_plate(name: str, n: int) -> None:
    # Sites may be scalars per unit, shaped (n,), or vectors, shaped (n, *event): the
    # per-unit (event) shape must not depend on n and must equal the distribution's event
    # shape for sample sites; the unit plate is the only plate, on the rightmost batch
    # dim (NumPyro counts plate dims left of the event dims).
    module = MODELS[name]
    sites = unit_sites(module.model, n)
    one_unit = unit_sites(module.model, 1)
    assert set(sites) == set(module.NODES)
    for site_name, site in sites.items():
        event = tuple(jnp.shape(one_unit[site_name]["value"])[1:])
        if site["type"] == "sample":
            assert event == tuple(site["fn"].event_shape), site_name
        assert jnp.shape(site["value"]) == (n, *event), site_name
        frames = {frame.name: frame.dim for frame in site["cond_indep_stack"]}
        assert frames == {"unit": -1}, site_name
    assert not any(site.get("is_observed", False) for site in sites.values())


@pytest.mark.parametrize("name", MODEL_NAMES)
def test_model_default_n_is_one(name: str) -> None:
    trace = handlers.trace(handlers.seed(MODELS[name].model, 0)).get_trace()
    assert trace["unit"]["args"][0] == 1


@pytest.mark.parametrize("name", MODEL_NAMES)
def test_edges_match_model_relations(name: str) -> None:
    module = MODELS[name]
    relations = get_model_relations(module.model, model_kwargs={"n": 3})
    edges = {
        (parent, child)
        for child, parents in relations["sample_sample"].items()
        for parent in parents
    }
    assert edges == module.EDGES
    assert set(relations["sample_dist"]) == set(module.NODES)


@pytest.mark.parametrize("name", MODEL_NAMES)
def test_graph_matches_stated_edges(name: str) -> None:
    graph_module = pytest.importorskip("scm_ppl.core.causal_graph")
    module = MODELS[name]
    g = graph_module.graph(module.model)
    assert set(g.edges) == set(module.EDGES)
    assert set(g.nodes) == set(module.NODES)


@pytest.mark.parametrize("name", MODEL_NAMES)
def test_nodes_are_topologically_ordered(name: str) -> None:
    module = MODELS[name]
    position = {node: i for i, node in enumerate(module.NODES)}
    assert len(position) == len(module.NODES)
    for parent, child in module.EDGES:
        assert position[parent] < position[child], (parent, child)


# Test programs outside MODELS (their sites are not all in one unit plate) have doctests too.
OTHER_MODULES = [latent_mechanism]


@pytest.mark.parametrize(
    "module", [*MODELS.values(), *OTHER_MODULES], ids=[*MODEL_NAMES, "latent_mechanism"]
)
def test_docstring_examples(module: ModuleType) -> None:
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS)
    assert result.failed == 0


# --------------------------------------------------------------- linear generator

LG = linear_generator


@pytest.mark.parametrize("kind", LG.KINDS)
def test_linear_generator_layers_per_component(kind: str) -> None:
    # h = W1 z and E[x | h] = W2 h, component by component; the circulant of a kernel is
    # the matrix of its circular convolution, so both kinds share one check.
    dim, n = 6, 5
    weights = LG.ground_truth(jax.random.key(3), dim, kind)
    draws = simulate(lambda n: LG.model(n, dim=dim, kind=kind, weights=weights), n, key=7)
    first, second = LG.PARAMS[kind]
    w1, w2 = (np.asarray(weights[first]), np.asarray(weights[second]))
    if kind == "conv":
        w1, w2 = np.asarray(LG.circulant(w1)), np.asarray(LG.circulant(w2))
    assert {k: v.shape for k, v in draws.items()} == {k: (n, dim) for k in LG.NODES}
    np.testing.assert_allclose(draws["h"], draws["z"] @ w1.T, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(np.asarray(LG.product(weights, kind)), w2 @ w1, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("kind", LG.KINDS)
def test_linear_generator_output_covariance_matches_simulation(kind: str) -> None:
    # Every component's mean and every pair's covariance within Z standard errors.
    dim, n, noise = 4, 20_000, 0.5
    weights = LG.ground_truth(jax.random.key(4), dim, kind)
    program = lambda n: LG.model(n, dim=dim, kind=kind, weights=weights, noise_scale=noise)
    x = simulate(program, n, key=8)["x"]
    cov = np.asarray(LG.output_covariance(weights, kind, noise_scale=noise), np.float64)
    check_mean_and_cov(x, np.zeros(dim), cov)


# ------------------------------------------------------------------- linear chain


@pytest.mark.parametrize(
    "interventions", [{"x2": 1.5}, {"x1": -1.0}, {"x4": 0.0}, {"x2": 0.3, "x3": -2.0}]
)
def test_linear_chain_counterfactual_matches_twin_simulation(
    interventions: dict[str, float],
) -> None:
    # The same key replays the same standard-normal draws, so the intervened run is the
    # counterfactual world of the factual one: an exact check up to float32 rounding.
    n = 50
    factual = stack(simulate(linear_chain.model, n, key=3), linear_chain.NODES)
    do = {k: jnp.full(n, v) for k, v in interventions.items()}
    twin = stack(simulate(linear_chain.model, n, key=3, do=do), linear_chain.NODES)
    expected = linear_chain.counterfactual_closed_form(factual, dict(interventions))
    np.testing.assert_allclose(twin, expected, rtol=1e-5, atol=1e-5)


def test_linear_chain_counterfactual_accepts_indices_and_names() -> None:
    x = np.array([[0.5, -1.0, 2.0, 0.0], [1.0, 1.0, 1.0, 1.0]])
    by_name = linear_chain.counterfactual_closed_form(x, {"x3": 0.7})
    by_index = linear_chain.counterfactual_closed_form(x, {2: 0.7})
    np.testing.assert_array_equal(by_name, by_index)
    np.testing.assert_array_equal(by_name[:, :2], x[:, :2])  # upstream unchanged
    assert linear_chain.counterfactual_closed_form(x, {}) == pytest.approx(x)
    with pytest.raises(KeyError, match="Unknown node 'x9'"):
        linear_chain.counterfactual_closed_form(x, {"x9": 0.0})
    with pytest.raises(KeyError, match="out of range"):
        linear_chain.counterfactual_closed_form(x, {7: 0.0})


@pytest.mark.parametrize("interventions", [{}, {"x2": 1.0}])
def test_linear_chain_interventional_moments_match_simulation(
    interventions: dict[str, float],
) -> None:
    n = 20_000
    do = {k: jnp.full(n, v) for k, v in interventions.items()}
    samples = stack(simulate(linear_chain.model, n, key=11, do=do), linear_chain.NODES)
    mean, cov = linear_chain.interventional_mean_and_cov(dict(interventions))
    check_mean_and_cov(samples, mean, cov)


# ------------------------------------------------------------ linear-Gaussian DAG


def test_linear_gaussian_dag_weights() -> None:
    w = linear_gaussian_dag.WEIGHTS
    assert w.shape == (10, 10)
    assert np.all(np.tril(w) == 0.0)
    nonzero = np.abs(w[w != 0.0])
    assert np.all((nonzero >= 0.5) & (nonzero <= 1.5))
    assert len(linear_gaussian_dag.EDGES) == nonzero.size == 16  # density 16/45
    assert linear_gaussian_dag.NOISE_SCALES.shape == (10,)
    # The weights were drawn once; the docstring's recipe reproduces them.
    rng = np.random.default_rng(20240601)
    mask = np.triu(rng.random((10, 10)) < 0.3, k=1)
    draw = rng.uniform(0.5, 1.5, (10, 10)) * rng.choice([-1.0, 1.0], (10, 10))
    np.testing.assert_array_equal(w, np.where(mask, np.round(draw, 2), 0.0))
    np.testing.assert_array_equal(
        linear_gaussian_dag.NOISE_SCALES, np.round(rng.uniform(0.5, 1.0, 10), 2)
    )


@pytest.mark.parametrize("interventions", [{3: 1.5}, {0: -2.0, 6: 0.5}, {9: 1.0}, {}])
def test_linear_gaussian_dag_counterfactual_matches_twin_simulation(
    interventions: dict[int, float],
) -> None:
    n, nodes = 50, linear_gaussian_dag.NODES
    factual = stack(simulate(linear_gaussian_dag.model, n, key=5), nodes)
    do = {nodes[i]: jnp.full(n, v) for i, v in interventions.items()}
    twin = stack(simulate(linear_gaussian_dag.model, n, key=5, do=do), nodes)
    expected = linear_gaussian_dag.counterfactual_closed_form(factual, interventions)
    np.testing.assert_allclose(twin, expected, rtol=1e-5, atol=1e-4)


def test_linear_gaussian_dag_counterfactual_of_noise_free_unit() -> None:
    # All noise zero: the counterfactual is the interventional mean.
    interventions = {2: 1.0, 4: -0.5}
    cf = linear_gaussian_dag.counterfactual_closed_form(np.zeros((1, 10)), interventions)
    mean, _ = linear_gaussian_dag.interventional_mean_and_cov(interventions)
    np.testing.assert_allclose(cf[0], mean, atol=1e-12)


@pytest.mark.parametrize("interventions", [{}, {2: 1.0, 7: -1.0}])
def test_linear_gaussian_dag_interventional_moments_match_simulation(
    interventions: dict[int, float],
) -> None:
    n, nodes = 20_000, linear_gaussian_dag.NODES
    do = {nodes[i]: jnp.full(n, v) for i, v in interventions.items()}
    samples = stack(simulate(linear_gaussian_dag.model, n, key=13, do=do), nodes)
    mean, cov = linear_gaussian_dag.interventional_mean_and_cov(interventions)
    check_mean_and_cov(samples, mean, cov)


# -------------------------------------------------------------- latent confounder

LC = latent_confounder


def test_latent_confounder_posterior_matches_regression() -> None:
    # (U, X, Y) is jointly Gaussian with zero mean, so E[U | x, y] = k_x x + k_y y and
    # Var(U | x, y) is constant: least squares of U on (1, X, Y) over joint draws
    # estimates exactly these; compare within Z OLS standard errors.
    n = 200_000
    draws = simulate(LC.model, n, key=21)
    coef, se, resid_var = ols(draws["U"], draws["X"], draws["Y"])
    k_x = float(LC.posterior_u(1.0, 0.0).mean)
    k_y = float(LC.posterior_u(0.0, 1.0).mean)
    np.testing.assert_array_less(np.abs(coef - [0.0, k_x, k_y]), Z * se)
    v = float(LC.posterior_u(0.0, 0.0).var)
    assert abs(resid_var - v) <= Z * v * np.sqrt(2.0 / n)  # SE of a Gaussian variance


def test_latent_confounder_posterior_given_x_matches_regression() -> None:
    n = 200_000
    draws = simulate(LC.model, n, key=22)
    coef, se, resid_var = ols(draws["U"], draws["X"])
    post = LC.posterior_u_given_x(1.0)
    np.testing.assert_array_less(np.abs(coef - [0.0, float(post.mean)]), Z * se)
    assert abs(resid_var - float(post.var)) <= Z * float(post.var) * np.sqrt(2.0 / n)


def test_latent_confounder_counterfactual_is_exact_in_twin_simulation() -> None:
    # Y_{x'} = y + BETA (x' - x) with zero variance: the twin run, which shares U and
    # the noise of Y, must hit it unit by unit.
    n, x_prime = 64, 0.75
    factual = simulate(LC.model, n, key=23)
    twin = simulate(LC.model, n, key=23, do={"X": jnp.full(n, x_prime)})
    cf = LC.counterfactual_y(factual["X"], factual["Y"], x_prime)
    np.testing.assert_allclose(twin["Y"], cf.mean, rtol=1e-5, atol=1e-5)
    np.testing.assert_array_equal(cf.var, 0.0)
    np.testing.assert_allclose(twin["U"], factual["U"])


def test_latent_confounder_counterfactual_given_x_matches_simulation() -> None:
    # Evidence on X only: E[Y_{x'} | X = x] is linear in x and Var(Y_{x'} | X) constant,
    # so regressing the twin-world Y on the factual X recovers both (within Z SE).
    n, x_prime = 200_000, -0.5
    factual = simulate(LC.model, n, key=24)
    twin = simulate(LC.model, n, key=24, do={"X": jnp.full(n, x_prime)})
    coef, se, resid_var = ols(twin["Y"], factual["X"])
    at_0 = LC.counterfactual_y_given_x(0.0, x_prime)
    at_1 = LC.counterfactual_y_given_x(1.0, x_prime)
    expected = [float(at_0.mean), float(at_1.mean - at_0.mean)]
    np.testing.assert_array_less(np.abs(coef - expected), Z * se)
    assert abs(resid_var - float(at_0.var)) <= Z * float(at_0.var) * np.sqrt(2.0 / n)


def test_latent_confounder_interventional_and_observational_slopes() -> None:
    n, x_prime = 100_000, 1.3
    y = simulate(LC.model, n, key=25, do={"X": jnp.full(n, x_prime)})["Y"]
    truth = LC.interventional_y(x_prime)
    sd = float(np.sqrt(truth.var))
    assert abs(y.mean() - float(truth.mean)) <= Z * sd / np.sqrt(n)
    assert abs(y.var() - float(truth.var)) <= Z * float(truth.var) * np.sqrt(2.0 / n)
    draws = simulate(LC.model, n, key=26)
    coef, se, _ = ols(draws["Y"], draws["X"])
    assert abs(coef[1] - LC.observational_slope()) <= Z * se[1]
    assert abs(LC.observational_slope() - LC.BETA) > 0.5  # confounding bias is real


# --------------------------------------------------------------------- front door

FD = front_door


@pytest.mark.parametrize("smoking", [0, 1])
def test_front_door_formula_recovers_truth(smoking: int) -> None:
    truth = FD.p_cancer_do_smoking(smoking)
    assert FD.front_door_estimate(FD.observational_joint(), smoking) == pytest.approx(
        truth, abs=1e-12
    )
    # ... while the confounded conditional does not.
    assert abs(FD.p_cancer_given_smoking(smoking) - truth) > 0.03


def test_front_door_truth_by_hand() -> None:
    assert FD.p_cancer_do_smoking(1) == pytest.approx(0.4, abs=1e-12)
    assert FD.p_cancer_do_smoking(0) == pytest.approx(0.24, abs=1e-12)
    assert FD.observational_joint().sum() == pytest.approx(1.0, abs=1e-12)


def test_front_door_observational_joint_matches_simulation() -> None:
    n = 200_000
    draws = simulate(FD.model, n, key=31)
    joint = FD.observational_joint()
    for s, t, c in itertools.product((0, 1), repeat=3):
        hits = (draws["smoking"] == s) & (draws["tar"] == t) & (draws["cancer"] == c)
        check_proportion(hits, joint[s, t, c])


@pytest.mark.parametrize("smoking", [0, 1])
def test_front_door_interventional_matches_simulation(smoking: int) -> None:
    n = 200_000
    do = {"smoking": jnp.full(n, float(smoking))}
    cancer = simulate(FD.model, n, key=32 + smoking, do=do)["cancer"]
    check_proportion(cancer, FD.p_cancer_do_smoking(smoking))


# ------------------------------------------------------------------ kidney stones

KS = kidney_stones


def test_kidney_stones_published_numbers() -> None:
    p_y = KS.P_Y_GIVEN_XZ
    assert [round(100 * p_y[1][0]), round(100 * p_y[0][0])] == [93, 87]  # small stones
    assert [round(100 * p_y[1][1]), round(100 * p_y[0][1])] == [73, 69]  # large stones
    assert KS.TOTAL == 700
    assert KS.p_recovery_given(1) == pytest.approx(273 / 350, abs=1e-12)
    assert KS.p_recovery_given(0) == pytest.approx(289 / 350, abs=1e-12)
    assert KS.naive_difference() == pytest.approx(-16 / 350, abs=1e-12)
    # Simpson's paradox: A is better once stone size is adjusted for.
    assert KS.ate_adjusted() > 0.05 > 0 > KS.naive_difference()


def test_kidney_stones_naive_difference_matches_simulation() -> None:
    n = 200_000
    draws = simulate(KS.model, n, key=41)
    treated = draws["X"] == 1
    y1, y0 = draws["Y"][treated], draws["Y"][~treated]
    p1, p0 = KS.p_recovery_given(1), KS.p_recovery_given(0)
    se = np.sqrt(p1 * (1 - p1) / y1.size + p0 * (1 - p0) / y0.size)
    assert abs((y1.mean() - y0.mean()) - KS.naive_difference()) <= Z * se


def test_kidney_stones_ate_matches_simulation() -> None:
    # Twin runs under do(X=1) and do(X=0) share Z and the uniform behind Y, so the
    # per-unit differences are averaged; SE = sd(differences) / sqrt(n).
    n = 200_000
    y1 = simulate(KS.model, n, key=42, do={"X": jnp.ones(n)})["Y"]
    y0 = simulate(KS.model, n, key=42, do={"X": jnp.zeros(n)})["Y"]
    diff = y1 - y0
    se = diff.std() / np.sqrt(n)
    assert abs(diff.mean() - KS.ate_adjusted()) <= Z * se
    check_proportion(y1, KS.p_recovery_do(1))


# ------------------------------------------------------------------- firing squad

FS = firing_squad


@pytest.mark.parametrize("p, q", [(0.7, 0.2), (0.5, 0.5), (0.1, 0.9), (0.99, 0.01)])
def test_firing_squad_enumeration_matches_closed_form(p: float, q: float) -> None:
    closed = FS.probabilities_of_causation_closed_form(p, q)
    brute = FS.probabilities_of_causation_enumeration(p, q)
    np.testing.assert_allclose(tuple(brute), tuple(closed), rtol=0, atol=1e-12)


def test_firing_squad_model_matches_mechanisms() -> None:
    draws = simulate(FS.model, 64, key=51)
    assert {(int(u), int(w)) for u, w in zip(draws["U"], draws["W"], strict=True)} == {
        (0, 0),
        (0, 1),
        (1, 0),
        (1, 1),
    }
    for i in range(64):
        expected = FS.mechanisms(int(draws["U"][i]), int(draws["W"][i]))
        assert {name: draws[name][i] for name in FS.NODES} == expected


def test_firing_squad_sites_are_float() -> None:
    trace = handlers.trace(handlers.seed(FS.model, 0)).get_trace(3)
    for name in ("C", "A", "B", "D"):
        assert trace[name]["type"] == "deterministic"
        assert jnp.issubdtype(trace[name]["value"].dtype, jnp.floating)


def test_firing_squad_probabilities_of_causation_match_simulation() -> None:
    # Substituting the deterministic A with the same key keeps U and W: twin worlds.
    n = 100_000
    factual = simulate(FS.model, n, key=52)
    d0 = simulate(FS.model, n, key=52, substitute={"A": jnp.zeros(n)})["D"]
    d1 = simulate(FS.model, n, key=52, substitute={"A": jnp.ones(n)})["D"]
    truth = FS.probabilities_of_causation_closed_form()
    a, d = factual["A"] == 1, factual["D"] == 1
    check_proportion(d0[a & d] == 0, truth.pn)
    assert np.all(d1[~a & ~d] == 1)  # PS = 1 exactly
    check_proportion((d1 == 1) & (d0 == 0), truth.pns)
