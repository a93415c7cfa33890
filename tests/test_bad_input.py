"""Malformed queries at the public API end in the package's documented errors.

Every case asserts the exception class *and* its message (``match=``): never a raw
JAX/NumPyro traceback, a hang, or a silent NaN. Numerically fragile but valid inputs
(tiny scales, extreme logits, values near the float range) give finite answers.
Errors raised here are the classes of :mod:`scm_ppl.errors`, plus ``TypeError`` for an
``rng_key`` that is not a key, ``ValueError`` for non-positive sample counts and
``FileNotFoundError`` for a missing file, as the functions document.
"""

from __future__ import annotations

import importlib

import jax
import jax.numpy as jnp
import networkx as nx
import numpy as np
import numpyro
import numpyro.distributions as dist
import pytest

from scm_ppl import (
    FittedSCM,
    admg,
    ate,
    counterfactual,
    do,
    dose_response,
    ett,
    fit,
    graph,
    identify,
    interventional,
    multi_world,
    noise_view,
    pn,
    pns,
    ps,
    sweep,
    twin_world,
)
from scm_ppl.errors import (
    AbductionError,
    DataError,
    EstimandError,
    EvidenceError,
    GraphError,
    InterventionError,
    NoiseViewError,
    ProgramError,
    ScmPplError,
    SerializationError,
    SettingsError,
)
from scm_ppl.graphical import DiscreteJoint

KEY = jax.random.key(0)
X64 = bool(jax.config.read("jax_enable_x64"))


def model(n=1):
    with numpyro.plate("unit", n):
        z = numpyro.sample("z", dist.Normal(0.0, 1.0))
        x = numpyro.sample("x", dist.Normal(0.8 * z, 1.0))
        numpyro.sample("y", dist.Normal(x + z, 0.5))


def binary(n=1):
    with numpyro.plate("unit", n):
        t = numpyro.sample("t", dist.Bernoulli(0.5))
        numpyro.sample("y", dist.Bernoulli(jnp.where(t > 0, 0.9, 0.2)))


def raises(n=1):
    raise RuntimeError("user bug")


def nan_parameter(n=1):
    with numpyro.plate("unit", n):
        numpyro.sample("x", dist.Normal(jnp.nan, 1.0))


def concretizes(n=1):
    with numpyro.plate("unit", n):
        z = numpyro.sample("z", dist.Normal(0.0, 1.0))
        numpyro.sample("x", dist.Normal(float(z.sum()), 1.0))  # Python float of a tracer


def empty(n=1):
    pass


def gamma(n=1):
    numpyro.sample("g", dist.Gamma(2.0))


FULL = {"z": 0.1, "x": 0.2, "y": 0.3}
CYCLE = nx.DiGraph([("a", "b"), ("b", "a")])
CHAIN = nx.DiGraph([("a", "b")])


def cf(evidence=FULL, interventions=None, **kwargs):
    return counterfactual(
        model, evidence, {"x": 1.0} if interventions is None else interventions,
        rng_key=kwargs.pop("rng_key", KEY), num_samples=kwargs.pop("num_samples", 3), **kwargs,
    )  # fmt: skip


def rung2(interventions, **kwargs):
    kwargs.setdefault("observed", ["z"])  # z is measured: the effect is identified (back-door)
    return interventional(model, interventions, rng_key=KEY, num_samples=3, **kwargs)


def run(program):
    return numpyro.handlers.trace(numpyro.handlers.seed(program, 0)).get_trace()


# --- queries: counterfactual, interventional, do, worlds -------------------------------------

QUERY_CASES = [
    # evidence: wrong type, names, shapes, values
    (lambda: cf("x"), EvidenceError, r"Evidence must be a mapping.*got str"),
    (lambda: cf({"q": 1.0}), EvidenceError, r"Unknown evidence site 'q'; the program has"),
    (lambda: cf({3: 1.0}), EvidenceError, r"Unknown evidence site 3"),
    (lambda: cf({"x": "a"}), EvidenceError, r"'x' has dtype <U1; expected numbers"),
    (lambda: cf({"x": object()}), EvidenceError, r"'x' has dtype object"),
    (lambda: cf({"x": [[1.0, 2.0], [3.0]]}), EvidenceError, r"'x' is not an array"),
    (lambda: cf({"x": []}), EvidenceError, r"'x' is empty"),
    (lambda: cf({"x": np.ones(5)}), EvidenceError, r"shape \(5,\), but the site has shape \(1,\)"),
    (lambda: cf({**FULL, "x": np.nan}), EvidenceError, r"'x' holds 1 NaN/inf value"),
    (lambda: cf({**FULL, "y": -np.inf}), EvidenceError, r"'y' holds 1 NaN/inf value"),
    (lambda: cf({"x": np.nan}), EvidenceError, r"'x' holds 1 NaN/inf value"),  # nuts path
    # interventions: wrong type, names, values, shapes, callables
    (lambda: cf(interventions=[("x", 1.0)]), InterventionError, r"must be a mapping.*got list"),
    (lambda: cf(interventions={"q": 1.0}), InterventionError, r"Unknown intervention site 'q'"),
    (lambda: cf(interventions={3: 1.0}), InterventionError, r"names must be strings; got 3"),
    (lambda: cf(interventions={"x": "a"}), InterventionError, r"type str; expected a number"),
    (lambda: cf(interventions={"x": None}), InterventionError, r"type NoneType; expected"),
    (lambda: cf(interventions={"x": np.nan}), InterventionError, r"1 NaN/inf value\(s\)"),
    (lambda: cf(interventions={"x": np.inf}), InterventionError, r"1 NaN/inf value\(s\)"),
    (lambda: cf(interventions={"x": np.ones(4)}), InterventionError, r"does not broadcast"),
    (lambda: cf(interventions={"x": lambda v: v[:0]}), InterventionError, r"changes the shape"),
    (
        lambda: cf(interventions={"x": lambda v: v.undefined}),
        InterventionError,
        r"callable intervention on 'x' raised AttributeError",
    ),
    (lambda: cf(interventions={"a b": {"x": 1.0}}), InterventionError, r"'a b' is not usable"),
    # masks
    (lambda: cf(mask={"x": [True, False]}), InterventionError, r"mask for 'x' has shape \(2,\)"),
    (lambda: cf(mask={"y": True}), InterventionError, r"Mask given for \['y'\].*not intervened"),
    (lambda: cf(mask="x"), InterventionError, r"mask= must be a mapping"),
    (lambda: rung2({"x": 1.0}, mask="x"), InterventionError, r"mask= must be a mapping"),
    # settings, keys, methods
    (lambda: cf(rng_key=0), TypeError, r"rng_key must be a JAX PRNG key.*got int"),
    (lambda: cf(rng_key=np.zeros(2)), TypeError, r"rng_key must be a JAX PRNG key"),
    (lambda: cf(num_samples=0), ValueError, r"num_samples must be a positive integer; got 0"),
    (lambda: cf(num_samples=2.5), ValueError, r"num_samples must be a positive integer"),
    (lambda: cf(num_samples=True), ValueError, r"num_samples must be a positive integer"),
    (lambda: cf(method="magic"), SettingsError, r"Unknown method 'magic'; choose one of"),
    (lambda: cf({"y": 0.3}, method="exact"), AbductionError, r"latent; use method='nuts'"),
    # programs: not callable, raising, zero units, wrong arguments, no noise view
    (
        lambda: counterfactual("model", FULL, {"x": 1.0}, rng_key=KEY),
        ProgramError,
        r"Running the program ''model'' raised",
    ),
    (
        lambda: counterfactual(raises, FULL, {"x": 1.0}, rng_key=KEY),
        ProgramError,
        r"'raises' raised RuntimeError: user bug",
    ),
    (
        lambda: counterfactual(nan_parameter, {"x": 0.0}, {"x": 1.0}, rng_key=KEY),
        ProgramError,
        r"'nan_parameter' raised ValueError: Normal distribution got invalid loc",
    ),
    (
        lambda: counterfactual(concretizes, {"x": 0.0, "z": 0.0}, {"x": 1.0}, rng_key=KEY),
        ProgramError,
        r"'concretizes' raised ConcretizationTypeError",
    ),
    (
        lambda: counterfactual(empty, None, {}, rng_key=KEY),
        ProgramError,
        r"no sample or deterministic sites",
    ),
    (lambda: cf(None, model_kwargs={"n": 0}), ProgramError, r"size of plate should be positive"),
    (lambda: cf(model_kwargs={"m": 3}), ProgramError, r"unexpected keyword argument 'm'"),
    (lambda: cf(model_kwargs=[("n", 2)]), TypeError, r"model_kwargs must be a mapping.*list"),
    (lambda: cf(model_kwargs=3), TypeError, r"model_kwargs must be a mapping.*int"),
    (
        lambda: counterfactual(gamma, {"g": 1.0}, {"g": 2.0}, rng_key=KEY),
        NoiseViewError,
        r"Site 'g' has no noise view.*Gamma",
    ),
    # interventional
    (lambda: rung2("x"), InterventionError, r"must be a mapping.*got str"),
    (lambda: rung2({"x": 1.0}, evidence={"x": 0.0}), InterventionError, r"both intervened on"),
    (lambda: rung2({"q": 1.0}), InterventionError, r"Unknown intervention site 'q'"),
    # do and worlds, used as NumPyro handlers
    (lambda: do(model, "x"), InterventionError, r"must be a mapping from site name to value"),
    (lambda: do(model, {"x": np.nan}), InterventionError, r"NaN/inf"),
    (lambda: do(model, {"z": 1.0}, mask={"x": True}), InterventionError, r"Mask given for"),
    (lambda: twin_world(model, "x"), InterventionError, r"must be a mapping.*got str"),
    (lambda: multi_world(model, {"a": 1.0}), InterventionError, r"must be a mapping.*got float"),
    (lambda: multi_world(model, {"noise": {"x": 1.0}}), InterventionError, r"not usable"),
    (lambda: multi_world(model, {"": {"x": 1.0}}), InterventionError, r"not usable"),
]


@pytest.mark.parametrize(("call", "error", "match"), QUERY_CASES)
def test_malformed_queries_end_in_documented_errors(call, error, match):
    with pytest.raises(error, match=match) as info:
        call()
    assert isinstance(info.value, ScmPplError | TypeError | ValueError)


# --- causal quantities -----------------------------------------------------------------------

ESTIMAND_CASES = [
    (ate, {"treatment": "q"}, InterventionError, r"Unknown site\(s\) \['q'\]"),
    (ate, {"treatment": "t", "treated": np.nan}, InterventionError, r"NaN/inf"),
    (ate, {"rng_key": None}, TypeError, r"rng_key must be a JAX PRNG key"),
    (ate, {"num_samples": 0}, ValueError, r"num_samples must be a positive integer"),
    (ett, {"outcome": 3}, InterventionError, r"Unknown site\(s\) \[3\]"),
    (ett, {"treated": 5}, EstimandError, r"No \(draw, unit\) sample meets the condition t = 5"),
    (ett, {"treated": "yes"}, InterventionError, r"type str; expected a number"),
    (pn, {"treated": 5}, EstimandError, r"condition t = 5 and y = 1"),
    (ps, {"positive": 1, "treated": 1, "control": 1}, None, None),  # valid
    (pns, {"treatment": "q"}, InterventionError, r"Unknown site"),
    (ps, {"positive": 7}, EstimandError, r"never equals positive=7"),
    (pns, {"positive": 7}, EstimandError, r"never equals positive=7 .* takes \[0, 1\]"),
]


@pytest.mark.parametrize(("quantity", "changes", "error", "match"), ESTIMAND_CASES)
def test_malformed_causal_quantities(quantity, changes, error, match):
    kwargs = {"treatment": "t", "outcome": "y", "rng_key": KEY, "num_samples": 20, **changes}
    if error is None:
        estimate = quantity(binary, **kwargs)
        assert np.isfinite(estimate.value) and np.isfinite(estimate.std_error)
        return
    with pytest.raises(error, match=match):
        quantity(binary, **kwargs)


def test_a_continuous_treatment_is_refused_where_conditioning_needs_a_discrete_one():
    for quantity in (ett, pn, ps, pns):
        with pytest.raises(InterventionError, match=r"Treatment 'x' is continuous \(Normal\)"):
            quantity(model, "x", "y", rng_key=KEY, num_samples=3)


# --- graphs and identification ----------------------------------------------------------------

GRAPH_CASES = [
    (lambda: graph(3), GraphError, r"Could not trace model '3'"),
    (lambda: graph(raises), GraphError, r"'raises'.*RuntimeError: user bug"),
    (lambda: graph(empty), GraphError, r"'empty' has no sample or deterministic sites"),
    (lambda: admg(3), GraphError, r"Expected a NumPyro program, a networkx.DiGraph"),
    (lambda: admg(nx.Graph([("a", "b")])), GraphError, r"got Graph"),
    (lambda: admg(CYCLE), GraphError, r"directed cycle.*must be acyclic"),
    (lambda: admg(nx.DiGraph([("a", "a")])), GraphError, r"directed cycle \[\('a', 'a'\)\]"),
    (lambda: admg(nx.DiGraph([(1, 2)])), GraphError, r"Node names must be strings"),
    (lambda: admg(CHAIN, observed=["q"]), GraphError, r"Unknown observed variables \['q'\]"),
    (lambda: admg(CHAIN, observed=["a"], latent=["b"]), GraphError, r"not both"),
    (lambda: admg(model, latent=["z"]), GraphError, r"for a program pass the variables"),
    (lambda: identify(CYCLE, "a", "b"), GraphError, r"directed cycle"),
    (lambda: identify(CHAIN, "a", "q"), GraphError, r"Unknown variables \['q'\]"),
    (lambda: identify(CHAIN, 1, "b"), GraphError, r"must be a name or names.*got \[1\]"),
    (lambda: identify(CHAIN, ["a", None], "b"), GraphError, r"got \[None\]"),
    (lambda: identify(CHAIN, "a", "a"), GraphError, r"in both the treatment and the outcome"),
    (lambda: identify(CHAIN, [], "b"), GraphError, r"The treatment is empty"),
    (lambda: identify(raises, "x", "y"), GraphError, r"RuntimeError: user bug"),
    (lambda: identify(model, "x", "y", given="x"), GraphError, r"in both the treatment and"),
]


@pytest.mark.parametrize(("call", "error", "match"), GRAPH_CASES)
def test_malformed_graphs_and_identification_queries(call, error, match):
    with pytest.raises(error, match=match):
        call()


# --- noise views, joints, fits and fit files --------------------------------------------------


def bad_file(tmp_path, content: bytes):
    path = tmp_path / "fit.npz"
    path.write_bytes(content)
    return path


OTHER_CASES = [
    (lambda tmp: noise_view("normal"), NoiseViewError, r"expects a numpyro Distribution"),
    (lambda tmp: noise_view(dist.Normal), NoiseViewError, r"got 'DistributionMeta'"),
    (lambda tmp: noise_view(dist.Gamma(2.0)), NoiseViewError, r"'Gamma'.*icdf cannot run"),
    (
        lambda tmp: noise_view(dist.Dirichlet(jnp.ones(3))),
        NoiseViewError,
        r"'Dirichlet' \(it is multivariate",
    ),
    (lambda tmp: DiscreteJoint([-0.5, 1.5], ["x"]), EstimandError, r"finite and non-negative"),
    (lambda tmp: DiscreteJoint([np.nan, 1.0], ["x"]), EstimandError, r"finite and non-negative"),
    (lambda tmp: DiscreteJoint([0.2, 0.2], ["x"]), EstimandError, r"sum to 0.4, not 1"),
    (lambda tmp: DiscreteJoint([], ["x"]), EstimandError, r"sum to 0, not 1"),
    (lambda tmp: DiscreteJoint("abc", ["x"]), EstimandError, r"must be an array of numbers"),
    (lambda tmp: DiscreteJoint([[0.5], [0.5, 0]], "xy"), EstimandError, r"array of numbers"),
    (lambda tmp: DiscreteJoint([0.5, 0.5], ["x", "y"]), EstimandError, r"one distinct name"),
    (lambda tmp: DiscreteJoint([[0.5, 0.5]], ["x", "x"]), EstimandError, r"distinct names"),
    (lambda tmp: DiscreteJoint([0.5, 0.5], [1]), EstimandError, r"names must be strings"),
    (lambda tmp: DiscreteJoint.from_counts(np.zeros(3), ["x"]), EstimandError, r"sum to 0"),
    (lambda tmp: DiscreteJoint.from_data([1, 2]), EstimandError, r"must be a mapping"),
    (lambda tmp: DiscreteJoint.from_data({}), EstimandError, r"has no columns"),
    (lambda tmp: DiscreteJoint.from_data({"x": [0.5]}), EstimandError, r"integer codes"),
    (lambda tmp: DiscreteJoint.from_data({"x": []}), EstimandError, r"non-empty"),
    (lambda tmp: DiscreteJoint.from_data({"x": [-1, 0]}), EstimandError, r"negative codes"),
    (
        lambda tmp: DiscreteJoint([0.5, 0.5], ["x"]).marginal(["q"]),
        EstimandError,
        r"no variable 'q'; it has \['x'\]",
    ),
    (lambda tmp: fit(model, "data"), DataError, r"data must be a mapping"),
    (lambda tmp: fit(model, {}), DataError, r"data hold no columns"),
    (lambda tmp: fit(model, {"x": np.zeros(0)}), DataError, r"no rows|lack"),
    (lambda tmp: fit("model", {"x": np.zeros(3)}), SettingsError, r"must be a NumPyro program"),
    (
        lambda tmp: fit(model, {"x": np.zeros(3)}, method="mle"),
        SettingsError,
        r"Unknown method 'mle'; choose one of \['map', 'svi', 'nuts'\]",
    ),
    (lambda tmp: FittedSCM.load(tmp / "missing.npz", model), FileNotFoundError, r"missing"),
    (lambda tmp: FittedSCM.load(tmp, model), SerializationError, r"not a saved scm_ppl fit"),
    (
        lambda tmp: FittedSCM.load(bad_file(tmp, b"PK\x03\x04 truncated"), model),
        SerializationError,
        r"not a zip archive.*or it is damaged",
    ),
    (
        lambda tmp: FittedSCM.load(bad_file(tmp, b"\x93NUMPY junk"), model),
        SerializationError,
        r"not a zip archive",
    ),
]


@pytest.mark.parametrize(("call", "error", "match"), OTHER_CASES)
def test_malformed_noise_views_joints_fits_and_files(call, error, match, tmp_path):
    with pytest.raises(error, match=match):
        call(tmp_path)


# --- numerically fragile, but valid ----------------------------------------------------------


def tiny_scales(n=1):
    with numpyro.plate("unit", n):
        x = numpyro.sample("x", dist.Normal(0.0, 1e-30))
        numpyro.sample("y", dist.Normal(x, 1e-30))


def extreme_logits(n=1):
    with numpyro.plate("unit", n):
        x = numpyro.sample("x", dist.Normal(0.0, 1.0))
        numpyro.sample("b", dist.Bernoulli(logits=1e4 * x))
        numpyro.sample("c", dist.Categorical(logits=jnp.stack([1e4 * x, -1e4 * x, 0 * x], -1)))


def test_tiny_scales_give_the_exact_finite_counterfactual():
    # noise of y: (1 - 0) / 1e-30 = 1e30, still a float32; under do(x = 1): y = 1 + 1 = 2
    result = counterfactual(tiny_scales, {"x": 0.0, "y": 1.0}, {"x": 1.0}, rng_key=KEY)
    np.testing.assert_allclose(result.samples["predictions"]["y"][0, 0, 1], 2.0, rtol=1e-6)


def test_extreme_logits_give_finite_counterfactuals():
    evidence = {"x": [0.3, -0.3], "b": [1, 0], "c": [0, 1]}
    result = counterfactual(
        extreme_logits, evidence, {"x": lambda x: -x}, rng_key=KEY, num_samples=20,
        model_kwargs={"n": 2},
    )  # fmt: skip
    predictions = result.samples["predictions"]
    # the logits swap sign, so the counterfactual choices flip, with certainty
    np.testing.assert_array_equal(predictions["b"][:, :, 1], np.broadcast_to([0, 1], (1, 20, 2)))
    np.testing.assert_array_equal(predictions["c"][:, :, 1], np.broadcast_to([1, 0], (1, 20, 2)))
    assert all(np.isfinite(np.asarray(v)).all() for v in result.samples["posterior"].values())


def test_values_near_the_float_range():
    big = 1e38  # representable in float32
    result = cf({"z": 0.0, "x": big, "y": 0.0})
    for value in result.samples["predictions"].values():
        assert np.isfinite(np.asarray(value)).all()
    beyond = 1e300  # inf in float32: refused; a number under JAX_ENABLE_X64
    if X64:
        assert np.isfinite(np.asarray(rung2({"x": beyond}).samples["predictions"]["x"])).all()
    else:
        with pytest.raises(InterventionError, match=r"up to 1e\+300, beyond the largest float32"):
            rung2({"x": beyond})


def test_discrete_evidence_outside_the_support_is_refused_not_cast():
    def coin(n=1):
        with numpyro.plate("unit", n):
            x = numpyro.sample("x", dist.Bernoulli(0.3))
            numpyro.sample("y", dist.Normal(x, 1.0))

    for value in (2.0, 0.5, -1):
        with pytest.raises(EvidenceError, match=r"cannot take \(support: Boolean\(\)\)"):
            counterfactual(coin, {"x": value, "y": 0.3}, {"x": 0.0}, rng_key=KEY)
    with pytest.raises(EvidenceError, match="NaN/inf"):
        counterfactual(coin, {"x": np.nan, "y": 0.3}, {"x": 0.0}, rng_key=KEY)
    counts = {"x": jnp.asarray([0, 1, 1]), "y": jnp.zeros(3)}  # device arrays are checked too
    result = counterfactual(coin, counts, {"x": 0}, rng_key=KEY, model_kwargs={"n": 3})
    assert result.attrs["method"] == "coupling"


def test_do_on_a_site_the_program_never_reaches_is_an_error_not_a_null_effect():
    with pytest.raises(InterventionError, match=r"do\(\) intervenes on \['q'\], but the program"):
        run(do(model, {"q": 1.0}))
    as_context = do(interventions={"x": 1.0, "typo": 2.0})
    with pytest.raises(InterventionError, match=r"without reaching that site"), as_context:
        run(model)
    with pytest.raises(InterventionError, match=r"\['typo'\]"):
        run(twin_world(model, {"typo": 1.0}))
    assert np.asarray(run(do(model, {"x": 1.0}))["x"]["value"]).tolist() == [1.0]


def test_a_single_sample_estimate_reports_an_infinite_not_a_nan_standard_error():
    queries = importlib.import_module("scm_ppl.query.estimates")
    value, std_error, count = queries._mean(np.array([0.7]))
    assert (value, count) == (0.7, 1) and std_error == np.inf


def impossible_coin(n=1):
    with numpyro.plate("unit", n):
        x = numpyro.sample("x", dist.Normal(0.0, 1.0))
        b = numpyro.sample("b", dist.Bernoulli(probs=jnp.where(x > 0, 0.5, 0.0)))
        numpyro.sample("y", dist.Normal(x + b, 1.0))


def test_evidence_of_probability_zero_inside_the_support_is_refused():
    # Units 1 and 3 observe b = 1 where P(b = 1 | x) = 0: no noise explains them.
    evidence = {"x": np.array([0.5, -0.5, 0.3, -1.0]), "b": np.array([1, 1, 0, 1])}
    evidence["y"] = np.zeros(4)
    four = {"model_kwargs": {"n": 4}, "rng_key": KEY}
    match = (
        r"'b' has probability zero under its mechanism for 2 value\(s\) \(first at flat index 1\)"
    )
    with pytest.raises(EvidenceError, match=match):
        counterfactual(impossible_coin, evidence, {"x": 1.0}, **four)
    with pytest.raises(EvidenceError, match=match):  # chunked units too
        counterfactual(impossible_coin, evidence, {"x": 1.0}, chunk_size=2, **four)
    with pytest.raises(EvidenceError, match="probability zero"):  # and a sweep of values
        counterfactual(impossible_coin, evidence, {"x": sweep(np.linspace(0.0, 1.0, 3))}, **four)
    with pytest.raises(EvidenceError, match="probability zero"):
        dose_response(impossible_coin, evidence, "x", np.linspace(0.0, 1.0, 3), "y", **four)
    possible = {**evidence, "b": np.array([1, 0, 0, 0])}
    result = counterfactual(impossible_coin, possible, {"x": 1.0}, **four)
    assert result.attrs["method"] == "coupling"


def test_a_shift_that_overflows_is_an_error_not_an_inf_answer():
    blows_up = {"x": lambda v: v / (v - v)}  # inf or NaN for every unit, in any precision
    with pytest.raises(
        InterventionError, match=r"shift intervention on 'x' gave NaN/inf in world 'cf'"
    ):
        cf(interventions=blows_up)
    with pytest.raises(InterventionError, match=r"in world 'factual' for 1 value"):
        rung2(blows_up)
    assert np.isfinite(np.asarray(cf(interventions={"x": lambda v: v + 1}).world("cf")["x"])).all()
