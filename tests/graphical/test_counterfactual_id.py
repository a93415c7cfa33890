"""scm_ppl.graphical.counterfactual_id: ID*, IDC* and make-cg (Shpitser & Pearl, JMLR 2008).

Verdicts are checked by number, not by the form of the formula: every identified
estimand is evaluated on the exact observational (and, where it needs them,
experimental) tables of a random discrete SCM and compared with the counterfactual
probability computed by brute force over that SCM's exogenous noise
(tests/_cf_scm.py); every "not identified" verdict is confirmed by two SCMs that agree
on every interventional distribution and differ on the query (tests/_cf_counterexample.py).
"""

from __future__ import annotations

import doctest
import importlib
from collections.abc import Sequence

import jax
import networkx as nx
import numpy as np
import pytest
from _cf_counterexample import counterexample
from _cf_scm import DiscreteSCM, random_admg

from models import kidney_stones
from scm_ppl import ett, identify, identify_counterfactual
from scm_ppl.errors import (
    DataError,
    EstimandError,
    EvidenceError,
    GraphError,
    InterventionError,
    NotIdentifiableError,
    SettingsError,
)
from scm_ppl.graphical.counterfactual_id import CounterfactualIdentification
from scm_ppl.graphical.joint import DiscreteJoint
from scm_ppl.graphical.mixed_graph import ADMG

Query = list[tuple[dict[str, int], dict[str, int]]]


def mixed(directed: Sequence[tuple[str, str]], bidirected: Sequence[tuple[str, str]] = ()) -> ADMG:
    g = nx.DiGraph()
    g.add_edges_from(directed)
    g.add_nodes_from(n for pair in bidirected for n in pair)
    return ADMG(g, bidirected)


def truth(scm: DiscreteSCM, query: Query, given: Query | None) -> float:
    return scm.probability(query + (given or [])) / (scm.probability(given) if given else 1.0)


def check_identified(
    g: ADMG, query: Query, given: Query | None = None, seed: int = 0, ternary: bool = False
) -> CounterfactualIdentification:
    """Identify, then compare the estimand on exact tables with the brute-force value."""
    r = identify_counterfactual(g, query, given)
    assert r.identifiable and r.witness is None, r
    rng = np.random.default_rng(seed)
    cards = {v: int(rng.integers(2, 4)) if ternary else 2 for v in g.nodes}
    scm = DiscreteSCM(g, rng, cards)
    value = r.evaluate(scm.observational(), [scm.experiment(x) for x in r.experiments])
    assert abs(value - truth(scm, query, given)) < 1e-9, (r, value, truth(scm, query, given))
    return r


def check_not_identified(g: ADMG, query: Query, given: Query | None = None, seed: int = 0):
    """A witness, and two SCMs agreeing on every P(v | do(x)) that differ on the query."""
    r = identify_counterfactual(g, query, given)
    assert not r.identifiable and r.estimand is None and r.witness is not None, r
    found = counterexample(g, query, given, np.random.default_rng(seed), widen=r.witness.variable)
    assert found is not None, f"no counter-example for {r}"
    return r, found


# -- textbook cases ------------------------------------------------------------------------
BACK_DOOR = mixed([("Z", "X"), ("Z", "Y"), ("X", "Y")])
ETT = ([({"X": 0}, {"Y": 1})], [({}, {"X": 1})])


def test_ett_back_door() -> None:
    """Pearl (2009), Causality, §8.2.5 and §9.2 (effect of treatment on the treated), and
    Shpitser & Pearl (2009, "Effects of treatment on the treated"): in X <- Z -> Y,
    X -> Y, P(y_x | x') = Σ_z P(y | x, z) P(z | x')."""
    r = check_identified(BACK_DOOR, *ETT, seed=1)
    assert r.query == "P(Y_{X=0}=1 | X=1)"
    assert r.experiments == () and dict(r.values) == {"X": 0, "X'": 1, "Y": 1}
    assert str(r.estimand) == "Σ_{Z} P(Y | X, Z) P(Z | X')"
    assert r.estimand is not None
    assert r.estimand.latex() == r"\sum_{Z} P(Y \mid X, Z) P(Z \mid X')"
    # The same formula by hand on a positive joint.
    p = np.random.default_rng(0).dirichlet(np.ones(8)).reshape(2, 2, 2)  # Z, X, Y
    joint = DiscreteJoint(p, ("Z", "X", "Y"))
    p_z_given_x1 = p[:, 1, :].sum(1) / p[:, 1, :].sum()
    p_y1_given_x0_z = p[:, 0, 1] / p[:, 0, :].sum(1)
    assert abs(r.evaluate(joint) - p_z_given_x1 @ p_y1_given_x0_z) < 1e-12


def test_pns_not_identified_without_confounding() -> None:
    """Pearl (2009), Causality, §9.2 (Theorem 9.2.10): the probability of necessity and
    sufficiency P(y_x, y'_x') is not identified even in X -> Y without confounding (it
    is bounded, scm_ppl.pns_bounds); Shpitser & Pearl (2008), §4: Y_x and Y_x' share
    Y's noise, so the counterfactual graph's c-component {Y_x, Y_x'} fails ID*."""
    g = mixed([("X", "Y")])
    r, (t1, t2, _) = check_not_identified(g, [({"X": 1}, {"Y": 1}), ({"X": 0}, {"Y": 0})])
    assert r.witness is not None and r.witness.variable == "Y"
    assert set(r.witness.component) == {"Y_{X=0}", "Y_{X=1}"}
    assert abs(t1 - t2) > 1e-6
    with pytest.raises(NotIdentifiableError, match="not identifiable from any set of experiments"):
        r.evaluate(DiscreteJoint(np.full((2, 2), 0.25), ("X", "Y")))


def test_shpitser_pearl_figure_3() -> None:
    """Shpitser & Pearl (2008), JMLR, Fig. 3 (y0's figure_9a-c): X -> W -> Y, D -> Z -> Y,
    X <-> Y. P(y_x | x', z_d, d) is identified; its counterfactual graph keeps x, W_x,
    Y_x, D, Z, X (Z_d merges with Z since D is observed at d) and X <-> Y_x."""
    g = mixed([("X", "W"), ("W", "Y"), ("D", "Z"), ("Z", "Y")], [("X", "Y")])
    query = [({"X": 0}, {"Y": 1})]
    given = [({}, {"X": 1}), ({"D": 0}, {"Z": 1}), ({}, {"D": 0})]
    for seed in range(3):
        r = check_identified(g, query, given, seed=seed)
    cg = r.counterfactual_graph
    assert set(cg.nodes) == {"X=0", "W_{X=0}", "Y_{X=0}", "D", "Z", "X"}
    assert cg.graph["bidirected"] == [("X", "Y_{X=0}")]
    assert cg.nodes["Z"]["worlds"] == ["Z", "Z_{D=0}", "Z_{X=0}"]
    assert set(cg.edges) == {
        ("X=0", "W_{X=0}"),
        ("W_{X=0}", "Y_{X=0}"),
        ("D", "Z"),
        ("Z", "Y_{X=0}"),
    }


def test_shpitser_pearl_ett_front_door_and_tikka() -> None:
    """Shpitser & Pearl (2009), ETT in the front-door graph: Σ_m P(m | x) P(y | m, x');
    Tikka (2022, cfid, Fig. 2): P(y_x | z_x, x') with X -> Z -> Y, X -> Y, X <-> Z."""
    front = mixed([("X", "M"), ("M", "Y")], [("X", "Y")])
    r = check_identified(front, *ETT, seed=2)
    assert str(r.estimand) == "Σ_{M} P(M | X) P(Y | M, X')"
    tikka = mixed([("X", "Z"), ("X", "Y"), ("Z", "Y")], [("X", "Z")])
    query, given = [({"X": 0}, {"Y": 1})], [({"X": 0}, {"Z": 1}), ({}, {"X": 1})]
    check_identified(tikka, query, given, seed=3)


def test_napkin_rung_two_and_three() -> None:
    """The napkin graph (Pearl & Mackenzie 2018, The Book of Why, ch. 7): P(y_x) is
    identified at rung 2 (here equal to scm_ppl.identify's formula); rung-3 queries:
    the ETT P(y_x | x') is not identified (the latent W1 <-> X and W1 <-> Y tie X to
    Y_x), nor is P(y_x, y'_x'), both confirmed by counter-examples; P(y_x, w1) is
    P_x(y, w1) (W1 is not affected by X), which needs an experiment on X."""
    napkin = mixed([("W1", "W2"), ("W2", "X"), ("X", "Y")], [("W1", "X"), ("W1", "Y")])
    r = check_identified(napkin, [({"X": 0}, {"Y": 1})], seed=4)
    rung2 = identify(napkin, "X", "Y")
    scm = DiscreteSCM(napkin, np.random.default_rng(5), dict.fromkeys(napkin.nodes, 2))
    assert abs(r.evaluate(scm.observational()) - rung2.evaluate(scm.observational())[0, 1]) < 1e-12
    check_not_identified(napkin, *ETT)
    check_not_identified(napkin, [({"X": 0}, {"Y": 1}), ({"X": 1}, {"Y": 0})])
    joint = check_identified(napkin, [({"X": 0}, {"Y": 1}), ({}, {"W1": 1})], seed=8)
    assert joint.experiments == (frozenset({"X"}),)
    # Given W2 (a cause of X only), the effect on Y is still identified (rule 2 inside).
    check_identified(napkin, [({"X": 0}, {"Y": 1})], [({}, {"W2": 1})], seed=6)


def test_identified_only_with_experiments() -> None:
    """Bow graph X -> Y, X <-> Y (Pearl 2009, Fig. 3.9a): P(y_x, z) with an unconfounded
    Z -> X factorises into P(z) P_x(y) (Shpitser & Pearl 2008, line 6 of ID*); P_x(y)
    needs an experiment on X."""
    g = mixed([("Z", "X"), ("X", "Y")], [("X", "Y")])
    query = [({"X": 0}, {"Y": 1}), ({}, {"Z": 1})]
    r = check_identified(g, query, seed=7)
    assert r.experiments == (frozenset({"X"}),)
    assert str(r.estimand) == "P(Y | do(X)) P(Z)"
    scm = DiscreteSCM(g, np.random.default_rng(7), dict.fromkeys(g.nodes, 2))
    with pytest.raises(EstimandError, match=r"needs experiments on \[\['X'\]\]"):
        r.evaluate(scm.observational())
    # The experiment as exact tables per intervention, as scm_ppl.bounds takes them.
    arms = [({"X": x}, DiscreteJoint(scm.joint({"X": x}), scm.names)) for x in (0, 1)]
    assert abs(r.evaluate(scm.observational(), arms) - truth(scm, query, None)) < 1e-12


def test_inconsistent_events_have_probability_zero() -> None:
    """Consistency (Pearl 2009, §7.1, composition): with X observed at 0, Y_{X=0} is Y."""
    r = identify_counterfactual(BACK_DOOR, [({"X": 0}, {"Y": 1}), ({}, {"X": 0, "Y": 0})])
    assert r.identifiable and r.estimand is None and r.inconsistent is not None
    assert "Y and Y_{X=0} are the same variable" in r.inconsistent
    assert r.evaluate() == 0.0
    scm = DiscreteSCM(BACK_DOOR, np.random.default_rng(0), dict.fromkeys("ZXY", 2))
    assert scm.probability([({"X": 0}, {"Y": 1}), ({}, {"X": 0, "Y": 0})]) == 0.0
    same_world = identify_counterfactual(BACK_DOOR, [({"X": 0}, {"Y": 1}), ({"X": 0}, {"Y": 0})])
    assert str(same_world) == (
        "P(Y_{X=0}=1, Y_{X=0}=0) = 0 (The events contradict each other: Y_{X=0} would have "
        "to be both 1 and 0)"
    )
    # An event that agrees with its world's intervention always holds and is dropped.
    r = identify_counterfactual(BACK_DOOR, [({"X": 0}, {"X": 0, "Y": 1})])
    assert r.query == "P(Y_{X=0}=1)" and str(r.estimand) == "Σ_{Z} P(Y | X, Z) P(Z)"


# -- random graphs: numbers ------------------------------------------------------------------
def random_query(rng: np.random.Generator, g: ADMG) -> tuple[Query, Query | None]:
    """1-3 worlds, each with 0-2 interventions and 1-2 events; conditioning events on 40%."""
    names = list(g.nodes)

    def world() -> tuple[dict[str, int], dict[str, int]]:
        iv = {str(v): int(rng.integers(0, 2)) for v in rng.permutation(names)[: rng.integers(0, 3)]}
        rest = [v for v in names if v not in iv]
        chosen = rng.permutation(rest)[: rng.integers(1, 3)]
        return iv, {str(v): int(rng.integers(0, 2)) for v in chosen}

    query = [world() for _ in range(int(rng.integers(1, 4)))]
    return query, [world()] if rng.random() < 0.4 else None


def run_random(trials: int, seed: int) -> dict[str, int]:
    """Random ADMGs (3-6 nodes, 2-3 values per variable): every identified estimand equals
    the brute-force value to 1e-9; every inconsistent query has probability 0."""
    rng = np.random.default_rng(seed)
    counts = {"identified": 0, "experiments": 0, "conditional": 0, "zero": 0, "failed": 0}
    for trial in range(trials):
        g = random_admg(rng, int(rng.integers(3, 7)))
        query, given = random_query(rng, g)
        r = identify_counterfactual(g, query, given)
        scm = DiscreteSCM(g, rng, {v: int(rng.integers(2, 4)) for v in g.nodes})
        if r.inconsistent is not None:
            assert scm.probability(query + (given or [])) == 0.0, (trial, r)
            counts["zero"] += 1
        elif r.identifiable:
            value = r.evaluate(scm.observational(), [scm.experiment(x) for x in r.experiments])
            assert abs(value - truth(scm, query, given)) < 1e-9, (trial, g, query, given, r)
            counts["identified"] += 1
            counts["experiments"] += bool(r.experiments)
            counts["conditional"] += bool(given)
        else:
            counts["failed"] += 1
    return counts


def test_random_counterfactuals_by_number() -> None:
    """600 random ADMGs with random discrete SCMs (seed 2008): > 300 identified queries
    (conditional ones and ones that need experiments among them) match brute force."""
    counts = run_random(600, seed=2008)
    assert counts["identified"] >= 300 and counts["conditional"] >= 60, counts
    assert counts["experiments"] >= 15 and counts["zero"] >= 50 and counts["failed"] >= 50, counts


@pytest.mark.slow
def test_random_counterfactuals_by_number_many() -> None:
    counts = run_random(4000, seed=2009)
    assert counts["identified"] >= 2000, counts


def run_counterexamples(trials: int, seed: int) -> tuple[int, int]:
    """Every "not identified" verdict on random ADMGs of 2-4 nodes (at most 2 parents
    each): (confirmed by a counter-example pair, verdicts)."""
    rng = np.random.default_rng(seed)
    confirmed = verdicts = 0
    for _ in range(trials):
        g = random_admg(rng, int(rng.integers(2, 5)), p_dir=0.5)
        if max(len(g.parents(v)) for v in g.nodes) > 2:
            continue
        query, given = random_query(rng, g)
        r = identify_counterfactual(g, query, given)
        if r.identifiable:
            continue
        verdicts += 1
        assert r.witness is not None
        if counterexample(g, query, given, rng, widen=r.witness.variable) is not None:
            confirmed += 1
    return confirmed, verdicts


def test_not_identified_verdicts_have_counterexamples() -> None:
    """Seed 11, 600 graphs: every not-identified verdict is confirmed (two SCMs with the
    same interventional distributions and different query values; ternary variables
    where binary ones make the query identifiable, e.g. P(x, y_{x'}) in the bow graph)."""
    confirmed, verdicts = run_counterexamples(600, seed=11)
    assert verdicts >= 50 and confirmed == verdicts, (confirmed, verdicts)


@pytest.mark.slow
def test_not_identified_verdicts_have_counterexamples_many() -> None:
    confirmed, verdicts = run_counterexamples(6000, seed=12)
    assert confirmed == verdicts, (confirmed, verdicts)


# -- agreement with the package's ett, data, continuous rows -----------------------------------
def kidney_joint() -> DiscreteJoint:
    p = np.zeros((2, 2, 2))
    for z, x, y in np.ndindex(2, 2, 2):
        pz = kidney_stones.P_Z if z else 1 - kidney_stones.P_Z
        px = kidney_stones.P_X_GIVEN_Z[z] if x else 1 - kidney_stones.P_X_GIVEN_Z[z]
        py = kidney_stones.P_Y_GIVEN_XZ[x][z]
        p[z, x, y] = pz * px * (py if y else 1 - py)
    return DiscreteJoint(p, ("Z", "X", "Y"))


def test_ett_agrees_with_queries_ett() -> None:
    """ETT = P(Y_1=1 | X=1) - P(Y_0=1 | X=1) from ID* on the exact joint of the kidney-stone
    program equals scm_ppl.ett's Monte-Carlo estimate on the program (within 4 s.e.)."""
    observed = ["Z", "X", "Y"]
    values = []
    for x in (1, 0):
        r = identify_counterfactual(
            kidney_stones.model, [({"X": x}, {"Y": 1})], [({}, {"X": 1})], observed=observed
        )
        values.append(r.evaluate(kidney_joint()))
    identified = values[0] - values[1]
    estimate = ett(
        kidney_stones.model,
        "X",
        "Y",
        rng_key=jax.random.key(0),
        model_kwargs={"n": 400},
        observed=["Z"],
    )
    assert abs(estimate.value - identified) < 4 * estimate.std_error, (estimate, identified)


def test_evaluate_on_rows_and_continuous_rows() -> None:
    rng = np.random.default_rng(3)
    n = 400_000
    z = rng.integers(0, 2, n)
    x = (rng.random(n) < np.where(z == 1, 0.7, 0.3)).astype(int)
    y = (rng.random(n) < 0.2 + 0.3 * x + 0.4 * z).astype(int)
    r = identify_counterfactual(BACK_DOOR, *ETT)
    exact = 0.2 + 0.4 * (0.7 * 0.5) / (0.7 * 0.5 + 0.3 * 0.5)  # Σ_z P(y | x=0, z) P(z | x=1)
    assert abs(r.evaluate({"Z": z, "X": x, "Y": y}) - exact) < 0.01
    # A continuous adjustment variable is cut into quantile bins (bias shrinks with bins).
    zc = rng.normal(size=n)
    xc = (rng.random(n) < 1 / (1 + np.exp(-2 * zc))).astype(int)
    yc = (rng.random(n) < 1 / (1 + np.exp(-(xc + 2 * zc)))).astype(int)
    target = np.mean(1 / (1 + np.exp(-2 * zc[xc == 1])))  # E[P(Y=1 | x=0, Z) | X=1]
    binned = r.evaluate({"Z": zc, "X": xc, "Y": yc}, bins=20)
    assert abs(binned - target) < 0.02, (binned, target)
    with pytest.raises(DataError, match="'X' looks continuous"):
        r.evaluate({"Z": zc, "X": zc, "Y": yc})


def test_counterfactual_graph_plots() -> None:
    from scm_ppl.plotting import plot_graph

    r = identify_counterfactual(BACK_DOOR, *ETT)
    assert set(r.counterfactual_graph.nodes) == {"Z", "X", "X=0", "Y_{X=0}"}
    assert r.counterfactual_graph.nodes["X=0"]["fixed"]
    assert r.counterfactual_graph.nodes["Y_{X=0}"]["event"] == "query"
    import matplotlib

    matplotlib.use("Agg")
    plot_graph(r.counterfactual_graph)


# -- bad input -----------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("query", "given", "error", "match"),
    [
        ([([("X", 0), ("X", 1)], {"Y": 1})], None, InterventionError, "intervenes on 'X' twice"),
        ([({"Q": 0}, {"Y": 1})], None, GraphError, r"Unknown variable 'Q'.*\['Z', 'X', 'Y'\]"),
        ([({}, {"Y": 1})], [({}, {"Q": 1})], GraphError, r"Unknown variable 'Q' in given"),
        ([({"X": 0}, {"X": 1})], None, InterventionError, "that event is inconsistent"),
        ([({"X": 0}, {"Y": 0.5})], None, EvidenceError, "must be a non-negative integer"),
        ([({"X": "a"}, {"Y": 1})], None, InterventionError, "must be a non-negative integer"),
        ("Y", None, InterventionError, "must be a list of"),
        ([({"X": 0},)], None, InterventionError, r"is an \(interventions, events\) pair"),
        (
            [({"X": 0}, {"Y": 1})],
            [({}, {"X": 0, "Y": 1}), ({"X": 0}, {"Y": 0})],
            EstimandError,
            "conditioning events .* are inconsistent.*undefined",
        ),
    ],
)
def test_bad_input(query, given, error, match) -> None:
    with pytest.raises(error, match=match):
        identify_counterfactual(BACK_DOOR, query, given)


def test_bad_graph() -> None:
    with pytest.raises(GraphError, match="directed cycle"):
        identify_counterfactual(nx.DiGraph([("X", "Y"), ("Y", "X")]), [({"X": 0}, {"Y": 1})])


def test_errors_subclass_builtins() -> None:
    with pytest.raises(ValueError, match="intervenes on 'X' twice"):
        identify_counterfactual(BACK_DOOR, [([("X", 0), ("X", 1)], {"Y": 1})])


@pytest.mark.parametrize(
    "module", ["scm_ppl.graphical.counterfactual_id", "scm_ppl.graphical.cf_graph"]
)
def test_docstring_examples(module: str) -> None:
    assert doctest.testmod(importlib.import_module(module)).failed == 0


def test_evaluate_refuses_too_few_bins() -> None:
    g = nx.DiGraph([("Z", "X"), ("Z", "Y"), ("X", "Y")])
    ett_query = identify_counterfactual(g, [({"X": 0}, {"Y": 1})], given=[({}, {"X": 1})])
    rows = {n: np.array([0, 1, 0, 1]) for n in ("X", "Y", "Z")}
    with pytest.raises(SettingsError, match=r"bins must be >= 2 and max_levels >= 1; got 1"):
        ett_query.evaluate(observed=rows, bins=1)
