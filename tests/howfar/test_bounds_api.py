"""bounds on larger graphs, on programs and data, in counterfactual results, and bad input."""

import importlib
import itertools

import jax
import matplotlib
import networkx as nx
import numpy as np
import numpyro
import numpyro.distributions as dist
import pytest
import xarray as xr

from models import firing_squad
from scm_ppl import ADMG, ate_bounds, bounds, counterfactual, pn_bounds, pns_bounds, ps_bounds
from scm_ppl.errors import BoundsError, DataError

matplotlib.use("Agg")
canonical = importlib.import_module("scm_ppl.howfar.bounds.canonical")


def table(probs: np.ndarray, names: tuple[str, ...]) -> xr.DataArray:
    coords = {n: list(range(k)) for n, k in zip(names, probs.shape, strict=True)}
    return xr.DataArray(probs, dims=names, coords=coords)


# ---------------------------------------------------------------- random SCMs on any ADMG
def random_scm(g: ADMG, rng: np.random.Generator, atoms: int = 5) -> list:
    """A random canonical SCM with binary variables: per district, ``atoms`` joint response
    functions with Dirichlet weights; districts independent. Returns (weight, functions)
    pairs, ``functions[v]`` a dict from parent values (in sorted parent order) to a value."""
    per_district = []
    for district in g.districts():
        weights = rng.dirichlet(np.ones(atoms))
        options = []
        for w in weights:
            functions = {}
            for v in district:
                parents = sorted(g.parents(v))
                configs = itertools.product((0, 1), repeat=len(parents))
                functions[v] = {c: int(rng.integers(2)) for c in configs}
            options.append((w, functions))
        per_district.append(options)
    scm = []
    for combo in itertools.product(*per_district):
        weight = float(np.prod([w for w, _ in combo]))
        scm.append((weight, {k: f for _, fs in combo for k, f in fs.items()}))
    return scm


def run_world(g: ADMG, functions: dict, intervention: dict) -> dict:
    values = {}
    for v in g.topological_order():
        parents = tuple(values[p] for p in sorted(g.parents(v)))
        values[v] = intervention[v] if v in intervention else functions[v][parents]
    return values


def exact(g: ADMG, scm: list, query: list) -> tuple[xr.DataArray, float]:
    names = g.topological_order()
    joint, truth = np.zeros([2] * len(names)), 0.0
    for weight, functions in scm:
        factual = run_world(g, functions, {})
        joint[tuple(factual[v] for v in names)] += weight
        worlds = [run_world(g, functions, iv) for iv, _ in query]
        if all(w[k] == x for w, (_, ev) in zip(worlds, query, strict=True) for k, x in ev.items()):
            truth += weight
    return table(joint, names), truth


SIX = ADMG(
    nx.DiGraph([("Z", "X"), ("W", "X"), ("X", "M"), ("M", "Y"), ("W", "Y"), ("C", "Y")]),
    bidirected=[("X", "Y"), ("M", "C")],
)
PNS = [({"X": 1}, {"Y": 1}), ({"X": 0}, {"Y": 0})]


@pytest.mark.parametrize(
    ("graph", "query", "sharp"),
    [
        (ADMG(nx.DiGraph([("X", "M"), ("M", "Y")])), PNS, False),  # two districts downstream
        (ADMG(nx.DiGraph([("Z", "X"), ("X", "Y")]), [("X", "Y")]), PNS, True),
        (SIX, [({"X": 1}, {"Y": 1}), ({}, {"X": 0})], False),
    ],
)
def test_bounds_contain_the_truth_of_random_scms(graph, query, sharp):
    rng = np.random.default_rng(7)
    for i in range(6 if graph is SIX else 40):
        p, truth = exact(graph, random_scm(graph, rng), query)
        b = bounds(graph, p, query, tighten=i % 2 == 0 or graph is not SIX)
        assert b.sharp is sharp and b.reason
        assert b.lower - 1e-8 <= truth <= b.upper + 1e-8


@pytest.mark.slow
@pytest.mark.parametrize(
    "query",
    [PNS, [({"X": 1}, {"Y": 1}), ({}, {"X": 0})], [({"X": 0, "C": 1}, {"Y": 0, "M": 1})]],
)
def test_bounds_contain_the_truth_of_many_random_scms_on_six_nodes(query):
    rng = np.random.default_rng(8)
    for _ in range(12):
        p, truth = exact(SIX, random_scm(SIX, rng, atoms=4), query)
        b = bounds(SIX, p, query)
        assert b.lower - 1e-8 <= truth <= b.upper + 1e-8


def test_per_district_factors_tighten_the_outer_bounds():
    # With Y <-> C the block is one district and its LP is sharp for that larger model; on
    # SIX the same LP plus Tian's per-district rows must sit inside it, often strictly.
    merged = ADMG(SIX.directed, [*SIX.bidirected_edges(), ("Y", "C")])
    rng = np.random.default_rng(9)
    narrower = 0
    for _ in range(3):
        p, truth = exact(SIX, random_scm(SIX, rng), PNS)
        outer, envelope = bounds(SIX, p, PNS), bounds(merged, p, PNS)
        assert envelope.sharp and not outer.sharp and "per-district" in outer.method
        assert envelope.lower - 1e-9 <= outer.lower <= truth + 1e-9
        assert truth - 1e-9 <= outer.upper <= envelope.upper + 1e-9
        narrower += outer.width < envelope.width - 1e-3
    assert narrower >= 2


def test_graph_outside_the_query_is_dropped_and_districts_are_reported():
    uniform = table(np.full([2] * 6, 1 / 64), SIX.topological_order())
    b = pns_bounds(SIX, uniform, "X", "Y", tighten=False)
    assert set(b.block.variables) == {"X", "M", "Y", "C"} and b.block.conditioning == ("Z", "W")
    assert not b.sharp and "not proven sharp" in b.reason
    assert 0.0 <= b.lower <= b.upper <= 1.0


# ---------------------------------------------------------------- the firing squad
def firing_squad_joint(p: float, q: float) -> xr.DataArray:
    joint = np.zeros((2, 2, 2, 2))  # C, A, B, D
    for u, w in itertools.product((0, 1), repeat=2):
        s = firing_squad.mechanisms(u, w)
        joint[s["C"], s["A"], s["B"], s["D"]] += (p if u else 1 - p) * (q if w else 1 - q)
    return table(joint, ("C", "A", "B", "D"))


def test_firing_squad_probabilities_of_causation():
    p, q = firing_squad.P_ORDER, firing_squad.Q_NERVOUS
    joint = firing_squad_joint(p, q)
    truth = firing_squad.probabilities_of_causation_closed_form(p, q)
    pns = pns_bounds(firing_squad.model, joint, "A", "D")
    pn = pn_bounds(firing_squad.model, joint, "A", "D")
    ps = ps_bounds(firing_squad.model, joint, "A", "D")
    # Without an order (prob 1 - p) both of D's responses are seen; with one, D_{A=0} never is.
    np.testing.assert_allclose([pns.lower, pns.upper], [truth.pns, 1.0], atol=1e-9)
    np.testing.assert_allclose([pn.lower, pn.upper], [truth.pn, 1.0], atol=1e-9)
    np.testing.assert_allclose([ps.lower, ps.upper], [1.0, 1.0], atol=1e-9)
    assert pns.sharp and pn.sharp and ps.sharp and pns.block.variables == ("D",)


def test_firing_squad_from_rows_of_data():
    rng = np.random.default_rng(0)
    u, w = rng.random(5000) < firing_squad.P_ORDER, rng.random(5000) < firing_squad.Q_NERVOUS
    a = np.maximum(u, w)
    rows = {"U": u, "W": w, "C": u * 1.0, "A": a * 1.0, "B": u * 1.0, "D": np.maximum(a, u) * 1.0}
    b = pns_bounds(firing_squad.model, rows, "A", "D", treated=1.0, control=0.0)
    assert abs(b.lower - np.mean(~u)) < 1e-9 and abs(b.upper - 1.0) < 1e-9 and b.sharp


# ---------------------------------------------------------------- experiments and data
def test_randomised_trial_rows_narrow_the_observational_bounds():
    g = ADMG(nx.DiGraph([("X", "Y")]), bidirected=[("X", "Y")])
    rng = np.random.default_rng(1)
    n = 20_000
    u = rng.random(n) < 0.5  # a confounder: sicker patients take the drug and recover less
    x_obs = (rng.random(n) < np.where(u, 0.8, 0.2)).astype(int)
    y_obs = (rng.random(n) < 0.3 + 0.4 * x_obs - 0.2 * u).astype(int)
    x_rct = rng.integers(0, 2, n)
    y_rct = (rng.random(n) < 0.3 + 0.4 * x_rct - 0.2 * (rng.random(n) < 0.5)).astype(int)
    observed = {"X": x_obs, "Y": y_obs}
    alone = pns_bounds(g, observed, "X", "Y")
    both = pns_bounds(g, observed, "X", "Y", interventional=[("X", {"X": x_rct, "Y": y_rct})])
    assert both.lower >= alone.lower - 1e-9 and both.upper <= alone.upper + 1e-9
    assert both.width < alone.width - 0.1
    ate = ate_bounds(g, observed, "X", "Y", interventional=[("X", {"X": x_rct, "Y": y_rct})])
    assert ate.lower - 0.03 <= 0.4 <= ate.upper + 0.03


def test_data_incompatible_with_the_graph_fall_back_to_the_nearest_fit():
    iv = ADMG(nx.DiGraph([("Z", "X"), ("X", "Y")]), bidirected=[("X", "Y")])
    # Y follows Z with X fixed: Z acts on Y directly, which the instrument graph forbids.
    rows = {"Z": np.array([0, 1] * 50), "X": np.zeros(100, int), "Y": np.array([0, 1] * 50)}
    b = ate_bounds(iv, rows, "X", "Y", support={"X": [0, 1]})
    assert not b.sharp and "not exactly compatible" in b.reason and -1 <= b.lower <= b.upper <= 1
    exact_table = table(np.array([[[0.5, 0], [0, 0]], [[0, 0.5], [0, 0]]]), ("Z", "X", "Y"))
    with pytest.raises(BoundsError, match="not compatible with the graph"):
        ate_bounds(iv, exact_table, "X", "Y")


# ---------------------------------------------------------------- counterfactual(bounds=...)
def coin_model(n: int = 1) -> None:
    with numpyro.plate("unit", n):
        x = numpyro.sample("x", dist.Bernoulli(0.4))
        numpyro.sample("y", dist.Bernoulli(0.2 + 0.6 * x))


def test_counterfactual_carries_the_bounds_in_attrs():
    exact_joint = table(np.array([[0.48, 0.12], [0.08, 0.32]]), ("x", "y"))
    cf = counterfactual(
        coin_model, {"x": 1, "y": 1}, {"x": 0}, rng_key=jax.random.key(0), bounds=exact_joint
    )
    records = {(r["site"], r["value"]): r for r in cf.attrs["bounds"]["bounds"]}
    # PN = P(y_0 = 0 | x = 1, y = 1) under exogeneity: [(0.8 - 0.2) / 0.8, 1] (Tian & Pearl)
    assert abs(records["y", 0]["lower"] - 0.75) < 1e-9 and abs(records["y", 0]["upper"] - 1) < 1e-9
    point = float((cf.samples["predictions"]["y"][:, :, 1] == 0).mean())
    assert records["y", 0]["lower"] - 0.05 <= point <= records["y", 0]["upper"]


def test_counterfactual_bounds_refuse_what_they_cannot_bound():
    with pytest.raises(BoundsError, match="hard interventions"):
        counterfactual(
            coin_model, {"x": 1}, {"x": lambda v: 1 - v}, rng_key=jax.random.key(0), bounds=True
        )
    with pytest.raises(BoundsError, match="same for every unit"):
        counterfactual(
            coin_model, {"x": np.array([0, 1]), "y": np.array([1, 1])}, {"x": 0},
            rng_key=jax.random.key(0), bounds=True, model_kwargs={"n": 2},
        )  # fmt: skip


def test_counterfactual_bounds_refuse_continuous_programs():
    def gaussian(n: int = 1) -> None:
        with numpyro.plate("unit", n):
            x = numpyro.sample("x", dist.Normal(0.0, 1.0))
            numpyro.sample("y", dist.Normal(x, 1.0))

    with pytest.raises(BoundsError, match=r"needs a discrete program.*looks continuous"):
        counterfactual(gaussian, {"x": 1.0}, {"x": 0.0}, rng_key=jax.random.key(0), bounds=True)


# ---------------------------------------------------------------- plot
def test_plot_bounds_draws_intervals_and_points():
    import matplotlib.pyplot as plt

    plot_bounds = importlib.import_module("scm_ppl.plotting.bounds").plot_bounds
    joint = firing_squad_joint(0.7, 0.2)
    results = {
        "PNS": pns_bounds(firing_squad.model, joint, "A", "D"),
        "PN": pn_bounds(firing_squad.model, joint, "A", "D"),
    }
    ax = plot_bounds(results, {"fitted": {"PNS": 0.3, "PN": 0.08}, "other": [0.5, 0.9]})
    assert [t.get_text() for t in ax.get_yticklabels()] == ["PNS", "PN"]
    assert [t.get_text() for t in ax.get_legend().get_texts()] == [
        "sharp bounds",
        "fitted",
        "other",
    ]
    plt.close(ax.figure)
    with pytest.raises(BoundsError, match="are not Bounds"):
        plot_bounds({"PNS": 0.3})


# ---------------------------------------------------------------- bad input
XY = ADMG(nx.DiGraph([("X", "Y")]), bidirected=[("X", "Y")])
P_XY = table(np.array([[0.3, 0.2], [0.1, 0.4]]), ("X", "Y"))


@pytest.mark.parametrize(
    ("query", "match"),
    [
        ([({"X": 1}, {"Q": 1})], r"Unknown variable 'Q' in the event.*variables \['X', 'Y'\]"),
        ([({"X": 2}, {"Y": 1})], r"Unknown value 2 for 'X'.*support is \[0, 1\]"),
        ([({"X": 1}, {"X": 0, "Y": 1})], "one world cannot give a variable two values"),
        ([], "non-empty list of"),
    ],
)
def test_bad_queries(query, match):
    with pytest.raises(BoundsError, match=match):
        bounds(XY, P_XY, query)


@pytest.mark.parametrize(
    ("observed", "match"),
    [
        (table(np.array([[0.3, 0.2], [0.1, 0.3]]), ("X", "Y")), "sums to 0.9"),
        (table(np.array([[0.6, -0.1], [0.1, 0.4]]), ("X", "Y")), "negative or non-finite"),
        ({"X": np.array([0.0, 1.0, 0.5]), "Y": np.array([0, 1, 1])}, "looks continuous"),
        ({"X": np.array([0, 1, 1])}, "'Y' of the event of the query appears in no distribution"),
        (0.5, "rows of discrete data"),
    ],
)
def test_bad_observed_distributions(observed, match):
    with pytest.raises(DataError, match=match):
        bounds(XY, observed, PNS)


def test_value_outside_the_support():
    rows = {"X": np.array([0, 1, 2]), "Y": np.array([0, 1, 1])}
    with pytest.raises(DataError, match=r"value\(s\) \[2\] for 'X', outside its support"):
        bounds(XY, rows, PNS, support={"X": [0, 1]})
    arm = table(np.array([0.5, 0.5]), ("Y",)).assign_coords(Y=[0, 3])
    with pytest.raises(DataError, match="outside its support"):
        bounds(XY, P_XY, PNS, interventional=[({"X": 1}, arm)])


def test_graph_too_large_for_the_canonical_model():
    many = ADMG(nx.DiGraph([(f"P{i}", "Y") for i in range(5)]))
    p = table(np.full([2] * 6, 1 / 64), (*[f"P{i}" for i in range(5)], "Y"))
    with pytest.raises(BoundsError, match=r"needs 4,294,967,296 joint .*Y: 4294967296.*limit"):
        bounds(many, p, [({"P0": 1}, {"Y": 1})])


def test_conditional_query_on_impossible_evidence():
    p = table(np.array([[0.5, 0.5], [0.0, 0.0]]), ("X", "Y"))
    with pytest.raises(BoundsError, match="probability 0"):
        pn_bounds(XY, p, "X", "Y")


def test_experimental_arm_that_is_not_one_arm():
    with pytest.raises(DataError, match=r"under do\(X=1\) but 'X' takes other values"):
        bounds(XY, P_XY, PNS, interventional=[({"X": 1}, P_XY)])


def test_variables_the_query_needs_must_be_observed():
    iv = ADMG(nx.DiGraph([("Z", "X"), ("X", "Y")]), bidirected=[("X", "Y")])
    with pytest.raises(DataError, match=r"\['Z'\] of the graph, which the query needs"):
        bounds(iv, P_XY, PNS)
    with pytest.raises(DataError, match=r"lacks variable\(s\) \['Z'\]"):
        bounds(iv, P_XY, PNS, support={"Z": [0, 1]})


def test_docstring_examples_run():
    import doctest

    for name in ("scm_ppl.howfar.bounds.solve", "scm_ppl.howfar.bounds.queries"):
        assert doctest.testmod(importlib.import_module(name)).failed == 0


def test_ate_needs_numeric_outcomes():
    rows = {"X": np.array([0, 1, 1, 0]), "Y": np.array(["no", "yes", "yes", "no"])}
    with pytest.raises(BoundsError, match=r"numeric values of 'Y'.*\['no', 'yes'\]"):
        ate_bounds(XY, rows, "X", "Y")
    b = bounds(XY, rows, [({"X": 1}, {"Y": "yes"})])
    assert 0.0 <= b.lower <= b.upper <= 1.0


def test_probabilities_of_causation_name_the_outcome_value_as_the_queries_do():
    # positive= is the outcome value that counts as "Y = 1", as in pn/ps/pns; the other is "Y = 0".
    flipped = {
        "pns": (pns_bounds, [({"X": 1}, {"Y": 0}), ({"X": 0}, {"Y": 1})], None),
        "pn": (pn_bounds, [({"X": 0}, {"Y": 1})], {"X": 1, "Y": 0}),
        "ps": (ps_bounds, [({"X": 1}, {"Y": 0})], {"X": 0, "Y": 1}),
    }
    words = P_XY.assign_coords(Y=["no", "yes"])
    for wrapper, query, given in flipped.values():
        got = wrapper(XY, P_XY, "X", "Y", positive=0)
        want = bounds(XY, P_XY, query, given=given)
        np.testing.assert_allclose([got.lower, got.upper], [want.lower, want.upper], atol=1e-12)
        numeric = wrapper(XY, P_XY, "X", "Y")
        labelled = wrapper(XY, words, "X", "Y", positive="yes")
        np.testing.assert_allclose([labelled.lower, labelled.upper], [numeric.lower, numeric.upper])


def test_probabilities_of_causation_need_a_binary_outcome_holding_positive():
    three = table(np.full((2, 3), 1 / 6), ("X", "Y"))
    for wrapper in (pns_bounds, pn_bounds, ps_bounds):
        name = wrapper.__name__
        with pytest.raises(BoundsError, match=rf"{name} needs a binary outcome.*\[0, 1, 2\]"):
            wrapper(XY, three, "X", "Y")
        with pytest.raises(BoundsError, match=r"positive=7 is not a value of 'Y'.*\[0, 1\]"):
            wrapper(XY, P_XY, "X", "Y", positive=7)
    with pytest.raises(BoundsError, match=r"Unknown variable 'Q'"):
        pn_bounds(XY, P_XY, "X", "Q")
