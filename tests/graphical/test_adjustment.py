"""Tests of scm_ppl.adjustment: the back-door and front-door criteria and their formulas.

The criteria are checked against textbook graphs, against brute force over every subset
on random DAGs, and, exactly, against the interventional distribution of random discrete
SCMs computed by enumerating the mutilated model.
"""

from __future__ import annotations

import doctest
import itertools
from collections.abc import Iterable

import networkx as nx
import numpy as np
import pytest

from scm_ppl.errors import EvidenceError, GraphError
from scm_ppl.graphical import adjustment
from scm_ppl.graphical.adjustment import (
    AdjustmentFormula,
    backdoor_sets,
    find_adjustment,
    frontdoor_sets,
    is_adjustment_set,
    is_backdoor_set,
    is_frontdoor_set,
)
from scm_ppl.graphical.estimand import Probability, Product, Sum
from scm_ppl.graphical.id_algorithm import identify
from scm_ppl.graphical.joint import DiscreteJoint

# Pearl, *Causality* (2nd ed.), fig. 3.4 (the graph of fig. 3.1): X1..X6, Xi, Xj there,
# z1..z6, x, y here. The text: {X3, X4} and {X4, X5} meet the back-door criterion, {X4}
# does not (the path Xi <- X3 <- X1 -> X4 <- X2 -> X5 -> Xj opens), nor does {X4, X6}.
FIG_3_4 = nx.DiGraph(
    [
        ("z1", "z3"),
        ("z1", "z4"),
        ("z2", "z4"),
        ("z2", "z5"),
        ("z3", "x"),
        ("z4", "x"),
        ("z4", "y"),
        ("z5", "y"),
        ("x", "z6"),
        ("z6", "y"),
    ]
)
# Pearl, *Causality*, fig. 3.5: smoking -> tar -> cancer, smoking <-> cancer (genotype).
FIG_3_5 = nx.DiGraph([("smoking", "tar"), ("tar", "cancer")])
FIG_3_5_BIDIRECTED = [("smoking", "cancer")]
# The M-graph (Greenland, Pearl & Robins 1999, "Causal diagrams for epidemiologic
# research"; Pearl, *Causality*, sec. 11.3.1): x <- u1 -> m <- u2 -> y, x -> y. The empty set
# is a back-door set; {m} opens the collider.
M_GRAPH = nx.DiGraph([("u1", "x"), ("u1", "m"), ("u2", "m"), ("u2", "y"), ("x", "y")])


def sets(*groups: Iterable[str]) -> set[frozenset[str]]:
    return {frozenset(group) for group in groups}


# ----------------------------------------------------------------- independent references


def latent_dag(g: nx.DiGraph, bidirected: Iterable[tuple[str, str]]) -> nx.DiGraph:
    dag = nx.DiGraph(g)
    for a, b in bidirected:
        dag.add_edges_from([(("U", a, b), a), (("U", a, b), b)])
    return dag


def direct_backdoor(g: nx.DiGraph, bidirected, x: set, y: set, z: frozenset) -> bool:
    """Pearl's definition, written out: no descendant of X; X ⊥ Y | Z in G minus X's out-edges."""
    dag = latent_dag(g, bidirected)
    if any(z & nx.descendants(dag, v) for v in x):
        return False
    cut = dag.copy()
    cut.remove_edges_from([edge for v in x for edge in dag.out_edges(v)])
    return nx.is_d_separator(cut, x, y, set(z))


def all_subsets(nodes: Iterable[str]) -> list[frozenset[str]]:
    pool = sorted(nodes)
    return [frozenset(c) for k in range(len(pool) + 1) for c in itertools.combinations(pool, k)]


def brute_minimal(valid: dict[frozenset[str], bool]) -> set[frozenset[str]]:
    return {s for s, ok in valid.items() if ok and not any(valid[t] for t in valid if t < s)}


def random_graph(
    seed: int, front_door: bool = False
) -> tuple[nx.DiGraph, list[tuple[str, str]], list[str], str]:
    """A random DAG on 3..8 nodes with bidirected pairs, one or two treatments, an outcome.

    With ``front_door`` one treatment, confounded with the outcome and without a direct edge
    to it, so that back-door sets fail and front-door sets are common.
    """
    rng = np.random.default_rng(seed)
    n = int(rng.integers(3, 9))
    nodes = [f"v{i}" for i in range(n)]
    g = nx.DiGraph()
    g.add_nodes_from(nodes)
    p = rng.uniform(0.2, 0.55)
    pairs = list(itertools.combinations(range(n), 2))
    g.add_edges_from((nodes[i], nodes[j]) for i, j in pairs if rng.random() < p)
    bidirected = [(nodes[i], nodes[j]) for i, j in pairs if rng.random() < 0.12]
    i, j = sorted(int(k) for k in rng.choice(n, 2, replace=False))
    if front_door:
        g.remove_edges_from([(nodes[i], nodes[j])])
        if j - i >= 2:
            g.add_edges_from([(nodes[i], nodes[(i + j) // 2]), (nodes[(i + j) // 2], nodes[j])])
        bidirected = sorted({*bidirected, (nodes[i], nodes[j])})
        return g, bidirected, [nodes[i]], nodes[j]
    treatment = [nodes[i]]
    if seed % 4 == 0 and n >= 4:
        treatment.append(next(v for v in nodes if v not in (nodes[i], nodes[j])))
    return g, bidirected, treatment, nodes[j]


class RandomSCM:
    """Binary variables, random positive CPTs, one explicit binary latent per bidirected pair."""

    def __init__(self, g: nx.DiGraph, bidirected, seed: int) -> None:
        rng = np.random.default_rng(seed)
        self.observed = list(nx.topological_sort(g))
        latents = list(dict.fromkeys(("U", *sorted(pair)) for pair in bidirected))
        self.index = {v: i for i, v in enumerate([*self.observed, *latents])}
        self.factors = []  # (variables, table with axes parents..., variable)
        for v in self.observed:
            parents = [*g.predecessors(v), *(u for u in latents if v in u[1:])]
            p1 = rng.uniform(0.05, 0.95, size=(2,) * len(parents))
            self.factors.append(([*parents, v], np.stack([1 - p1, p1], axis=-1)))
        for u in latents:
            p1 = rng.uniform(0.05, 0.95)
            self.factors.append(([u], np.array([1 - p1, p1])))

    def joint(self, do: dict[str, int] | None = None) -> np.ndarray:
        """The observed joint (axes in ``self.observed`` order), under ``do`` if given."""
        do = do or {}
        operands: list = []
        for variables, table in self.factors:
            if variables[-1] in do:
                variables, table = variables[-1:], np.eye(2)[do[variables[-1]]]
            operands += [table, [self.index[v] for v in variables]]
        return np.einsum(*operands, [self.index[v] for v in self.observed])

    def truth(self, do: dict[str, int], outcome: list[str]) -> np.ndarray:
        table = self.joint(do)
        keep = [self.observed.index(v) for v in outcome]
        rest = tuple(i for i in range(table.ndim) if i not in keep)
        return np.moveaxis(table.sum(axis=rest, keepdims=True), keep, range(len(keep))).squeeze(
            axis=tuple(range(len(keep), table.ndim))
        )


# ----------------------------------------------------------------------- textbook graphs


def test_pearl_fig_3_4_minimal_backdoor_sets() -> None:
    found = backdoor_sets(FIG_3_4, "x", "y")
    assert set(found) == sets({"z1", "z4"}, {"z2", "z4"}, {"z3", "z4"}, {"z4", "z5"})
    assert len(found) == 4
    for z in found:  # valid by the definition, and minimal
        assert direct_backdoor(FIG_3_4, (), {"x"}, {"y"}, z)
        assert not any(
            direct_backdoor(FIG_3_4, (), {"x"}, {"y"}, t) for t in all_subsets(z) if t < z
        )
    assert is_backdoor_set(FIG_3_4, "x", "y", {"z3", "z4"})
    assert is_backdoor_set(FIG_3_4, "x", "y", ["z4", "z5"])
    assert not is_backdoor_set(FIG_3_4, "x", "y", {"z4"})
    assert not is_backdoor_set(FIG_3_4, "x", "y", {"z4", "z6"})
    assert not is_adjustment_set(FIG_3_4, "x", "y", {"z4", "z6"})  # z6 mediates
    formula = find_adjustment(FIG_3_4, "x", "y")
    assert formula is not None and formula.kind == "backdoor" and formula.set in found
    text = AdjustmentFormula("backdoor", ("x",), ("y",), frozenset({"z1", "z4"})).text()
    assert text == "Σ_{z1, z4} P(z1, z4) P(y | x, z1, z4)"
    latex = AdjustmentFormula("backdoor", ("x",), ("y",), frozenset({"z1", "z4"})).latex()
    assert latex == r"\sum_{z_{1}, z_{4}} P(z_{1}, z_{4}) P(y \mid x, z_{1}, z_{4})"


def test_pearl_fig_3_5_front_door() -> None:
    args = (FIG_3_5, "smoking", "cancer", FIG_3_5_BIDIRECTED)
    assert backdoor_sets(*args) == []
    assert not is_adjustment_set(FIG_3_5, "smoking", "cancer", {"tar"}, FIG_3_5_BIDIRECTED)
    assert frontdoor_sets(*args) == [frozenset({"tar"})]
    assert is_frontdoor_set(FIG_3_5, "smoking", "cancer", "tar", FIG_3_5_BIDIRECTED)
    formula = find_adjustment(*args)
    assert formula is not None and formula.kind == "frontdoor"
    assert formula.text() == (
        "Σ_{tar} P(tar | smoking) Σ_{smoking'} P(smoking') P(cancer | smoking', tar)"
    )
    assert formula.latex() == (
        r"\sum_{\mathrm{tar}} P(\mathrm{tar} \mid \mathrm{smoking}) \sum_{\mathrm{smoking}'} "
        r"P(\mathrm{smoking}') P(\mathrm{cancer} \mid \mathrm{smoking}', \mathrm{tar})"
    )
    # Tar confounded with cancer: the front door closes.
    confounded = [*FIG_3_5_BIDIRECTED, ("tar", "cancer")]
    assert frontdoor_sets(FIG_3_5, "smoking", "cancer", confounded) == []
    assert find_adjustment(FIG_3_5, "smoking", "cancer", confounded) is None


def test_m_graph_empty_set_is_valid_and_the_collider_is_not() -> None:
    assert backdoor_sets(M_GRAPH, "x", "y") == [frozenset()]
    assert is_backdoor_set(M_GRAPH, "x", "y", set())
    assert not is_backdoor_set(M_GRAPH, "x", "y", {"m"})
    assert not is_adjustment_set(M_GRAPH, "x", "y", {"m"})
    assert is_backdoor_set(M_GRAPH, "x", "y", {"m", "u1"})
    every = backdoor_sets(M_GRAPH, "x", "y", minimal=False)
    assert every[0] == frozenset() and frozenset({"m", "u1"}) in every
    assert frozenset({"m"}) not in every
    assert find_adjustment(M_GRAPH, "x", "y").text() == "P(y | x)"  # type: ignore[union-attr]
    # The same graph with u1, u2 latent: the bidirected form.
    latent: nx.DiGraph[str] = nx.DiGraph([("x", "y")])
    latent.add_node("m")
    assert backdoor_sets(latent, "x", "y", [("x", "m"), ("m", "y")]) == [frozenset()]
    assert not is_backdoor_set(latent, "x", "y", {"m"}, [("x", "m"), ("m", "y")])
    twice = [("x", "m"), ("m", "x"), ("m", "y"), ["y", "m"]]  # repeats and lists are fine
    assert backdoor_sets(latent, "x", "y", twice) == [frozenset()]  # type: ignore[arg-type]


def test_adjustment_criterion_is_more_general_than_backdoor() -> None:
    # x -> w: a side effect of the treatment is an adjustment set but not a back-door one.
    g = nx.DiGraph([("c", "x"), ("c", "y"), ("x", "y"), ("x", "w")])
    assert is_adjustment_set(g, "x", "y", {"c", "w"})
    assert not is_backdoor_set(g, "x", "y", {"c", "w"})
    # Two treatments, x1 -> u -> x2, u -> y: no back-door set, and no adjustment set either.
    two = nx.DiGraph([("x1", "u"), ("u", "x2"), ("u", "y"), ("x2", "y")])
    assert backdoor_sets(two, ["x1", "x2"], "y") == []
    assert not is_adjustment_set(two, ["x1", "x2"], "y", {"u"})
    assert find_adjustment(two, ["x1", "x2"], "y") is None


def test_max_size_and_minimal_flag() -> None:
    assert backdoor_sets(FIG_3_4, "x", "y", max_size=1) == []
    every = backdoor_sets(FIG_3_4, "x", "y", minimal=False)
    assert all(direct_backdoor(FIG_3_4, (), {"x"}, {"y"}, z) for z in every)
    assert [len(z) for z in every] == sorted(len(z) for z in every)
    assert frozenset({"z1", "z2", "z3", "z4", "z5"}) in every


def test_inputs_are_not_mutated() -> None:
    g = FIG_3_5.copy()
    bidirected = [("smoking", "cancer")]
    find_adjustment(g, "smoking", "cancer", bidirected)
    is_adjustment_set(g, "smoking", "cancer", set(), bidirected)
    assert nx.utils.graphs_equal(g, FIG_3_5) and bidirected == [("smoking", "cancer")]


# ---------------------------------------------------------------- random DAGs, brute force


@pytest.mark.parametrize("block", range(4))
def test_backdoor_sets_match_brute_force_on_random_dags(block: int) -> None:
    for seed in range(25 * block, 25 * block + 25):
        g, bidirected, x, y = random_graph(seed)
        valid = {
            z: direct_backdoor(g, bidirected, set(x), {y}, z) for z in all_subsets(set(g) - {*x, y})
        }
        found = backdoor_sets(g, x, y, bidirected)
        assert len(found) == len(set(found)), seed
        assert set(found) == brute_minimal(valid), seed
        assert set(backdoor_sets(g, x, y, bidirected, minimal=False)) == {
            z for z, ok in valid.items() if ok
        }, seed
        for z, ok in valid.items():
            assert is_backdoor_set(g, x, y, z, bidirected) == ok, (seed, z)
            if ok:
                assert is_adjustment_set(g, x, y, z, bidirected), (seed, z)
        formula = find_adjustment(g, x, y, bidirected)  # a smallest back-door set, by min cut
        if found:
            assert formula is not None and formula.kind == "backdoor", seed
            assert valid[formula.set] and len(formula.set) == len(found[0]), seed
        else:
            assert formula is None or formula.kind == "frontdoor", seed


@pytest.mark.parametrize("front_door", [False, True])
def test_frontdoor_sets_match_brute_force_on_random_dags(front_door: bool) -> None:
    nonempty = 0  # minimal front-door sets that are not empty: 3 and 44 with these seeds
    for seed in range(150):
        g, bidirected, (x, *_), y = random_graph(seed, front_door)
        valid = {m: is_frontdoor_set(g, x, y, m, bidirected) for m in all_subsets(set(g) - {x, y})}
        found = frontdoor_sets(g, x, y, bidirected)
        assert set(found) == brute_minimal(valid), seed
        assert [len(m) for m in found] == sorted(len(m) for m in found), seed
        nonempty += sum(bool(m) for m in found)
        formula = find_adjustment(g, x, y, bidirected)
        if formula is not None and formula.kind == "frontdoor":
            assert valid[formula.set] and len(formula.set) == len(found[0]), seed
    assert nonempty >= (40 if front_door else 3)


def test_a_minimal_front_door_set_can_hold_a_node_off_the_causal_paths() -> None:
    # x -> m -> y, x <-> y, a -> m, a -> w -> y: {m} leaves m <- a -> w -> y open; {m, w} and
    # {m, a} close it, and neither has a valid proper subset.
    g = nx.DiGraph([("x", "m"), ("m", "y"), ("a", "m"), ("a", "w"), ("w", "y")])
    assert set(frontdoor_sets(g, "x", "y", [("x", "y")])) == sets({"a", "m"}, {"m", "w"})
    assert not is_frontdoor_set(g, "x", "y", {"m"}, [("x", "y")])
    assert frontdoor_sets(g, "x", "y", [("x", "y")], max_size=1) == []


# ------------------------------------------------------------- exact evaluation on SCMs


def check_formula(formula: AdjustmentFormula, scm: RandomSCM, observational: np.ndarray) -> float:
    """The largest gap between the formula on the joint and the truth, over treatment values."""
    gap = 0.0
    for values in itertools.product((0, 1), repeat=len(formula.treatment)):
        got = formula.evaluate_discrete(observational, tuple(scm.observed), values)
        truth = scm.truth(dict(zip(formula.treatment, values, strict=True)), list(formula.outcome))
        assert got.shape == truth.shape
        gap = max(gap, float(np.max(np.abs(got - truth))))
    return gap


@pytest.mark.parametrize("block", range(3))
def test_adjustment_formula_is_exact_on_random_scms(block: int) -> None:
    """Valid sets give P(y | do(x)) to 1e-9; invalid ones miss it (the criterion is complete)."""
    for seed in range(20 * block, 20 * block + 20):
        g, bidirected, x, y = random_graph(seed)
        scm = RandomSCM(g, bidirected, seed)
        observational = scm.joint()
        for z in all_subsets(set(g) - {*x, y}):
            formula = AdjustmentFormula("backdoor", tuple(x), (y,), z)
            gap = check_formula(formula, scm, observational)
            if is_adjustment_set(g, x, y, z, bidirected):
                assert gap < 1e-9, (seed, z)
            else:  # generic CPTs: the bias is nonzero (the smallest here is about 2e-7)
                assert gap > 1e-8, (seed, z)


FRONT_DOOR_GRAPHS = [
    (FIG_3_5, FIG_3_5_BIDIRECTED, "smoking", "cancer"),
    (nx.DiGraph([("x", "m1"), ("x", "m2"), ("m1", "y"), ("m2", "y")]), [("x", "y")], "x", "y"),
    (nx.DiGraph([("x", "m1"), ("m1", "m2"), ("m2", "y")]), [("x", "y")], "x", "y"),
    (nx.DiGraph([("c", "x"), ("x", "m"), ("m", "y")]), [("c", "y"), ("x", "y")], "x", "y"),
    (nx.DiGraph([("x", "m"), ("m", "y"), ("a", "m")]), [("x", "y"), ("a", "y")], "x", "y"),
    (
        nx.DiGraph([("x", "m"), ("m", "y"), ("a", "m"), ("a", "w"), ("w", "y")]),
        [("x", "y")],
        "x",
        "y",
    ),
]


def test_frontdoor_formula_is_exact_on_random_scms() -> None:
    checked = 0
    cases = [*FRONT_DOOR_GRAPHS, *(random_graph(seed, front_door=True) for seed in range(80))]
    for seed, (g, bidirected, x, y) in enumerate(cases):
        x = x if isinstance(x, str) else x[0]
        scm = RandomSCM(g, bidirected, seed)
        observational = scm.joint()
        for m in all_subsets(set(g) - {x, y}):
            if is_frontdoor_set(g, x, y, m, bidirected):
                formula = AdjustmentFormula("frontdoor", (x,), (y,), m)
                assert check_formula(formula, scm, observational) < 1e-9, (seed, m)
                checked += bool(m)
    assert checked >= 100


def test_find_adjustment_is_exact_on_random_scms() -> None:
    kinds = set()
    for seed, (g, bidirected, x, y) in enumerate(
        [
            *FRONT_DOOR_GRAPHS,
            *(random_graph(seed) for seed in range(60)),
            *(random_graph(seed, front_door=True) for seed in range(60)),
        ]
    ):
        formula = find_adjustment(g, x, y, bidirected)
        if formula is not None:
            kinds.add(formula.kind)
            scm = RandomSCM(g, bidirected, seed)
            assert check_formula(formula, scm, scm.joint()) < 1e-9, seed
    assert kinds == {"backdoor", "frontdoor"}


def test_estimate_from_data_equals_the_formula_on_the_count_table() -> None:
    rng = np.random.default_rng(0)
    counts = rng.integers(1, 6, size=(2, 3, 2))  # axes x, m, y
    rows = np.repeat(np.indices(counts.shape).reshape(3, -1), counts.ravel(), axis=1)
    data: dict[str, np.ndarray] = dict(zip(("x", "m", "y"), rows, strict=True))
    for kind in ("backdoor", "frontdoor"):
        formula = AdjustmentFormula(kind, ("x",), ("y",), frozenset({"m"}))
        for value in (0, 1):
            expected = formula.evaluate_discrete(counts, ("x", "m", "y"), value)
            np.testing.assert_allclose(formula.estimate_from_data(data, value), expected)
    # A bare name for treatment and outcome and a plain set are accepted too.
    loose = AdjustmentFormula("backdoor", "x", "y", {"m"})  # type: ignore[arg-type]
    assert loose == AdjustmentFormula("backdoor", ("x",), ("y",), frozenset({"m"}))
    wider = loose.estimate_from_data(data, {"x": 1}, cardinalities={"y": 4})
    assert wider.shape == (4,) and wider[2:].sum() == 0


def test_estimate_from_sampled_data_approaches_the_truth() -> None:
    scm = RandomSCM(FIG_3_5, FIG_3_5_BIDIRECTED, seed=3)
    table = scm.joint().ravel()
    n = 200_000
    draws = np.random.default_rng(1).choice(table.size, size=n, p=table / table.sum())
    data = dict(zip(scm.observed, np.unravel_index(draws, (2,) * len(scm.observed)), strict=True))
    formula = find_adjustment(FIG_3_5, "smoking", "cancer", FIG_3_5_BIDIRECTED)
    assert formula is not None
    for value in (0, 1):
        truth = scm.truth({"smoking": value}, ["cancer"])
        # Plug-in error is O(n^-1/2): a standard error is below 0.3/sqrt(n) ~ 7e-4 here.
        np.testing.assert_allclose(formula.estimate_from_data(data, value), truth, atol=5e-3)


def test_multiple_outcomes_and_treatment_values_as_mapping() -> None:
    g = nx.DiGraph([("c", "x1"), ("c", "y1"), ("x1", "y1"), ("x2", "y2"), ("x1", "x2")])
    formula = find_adjustment(g, ["x1", "x2"], ["y1", "y2"])
    assert formula is not None and formula.set == frozenset({"c"})
    assert formula.text() == "Σ_{c} P(c) P(y1, y2 | c, x1, x2)"
    scm = RandomSCM(g, (), seed=5)
    got = formula.evaluate_discrete(scm.joint(), tuple(scm.observed), {"x1": 1, "x2": 0})
    np.testing.assert_allclose(got, scm.truth({"x1": 1, "x2": 0}, ["y1", "y2"]), atol=1e-12)
    assert got.shape == (2, 2)


def test_empty_frontdoor_set_and_empty_backdoor_text() -> None:
    f = AdjustmentFormula("frontdoor", ("x",), ("y",), frozenset())
    assert f.text() == "P(y)"  # Σ_x' P(x') P(y | x'), simplified
    assert AdjustmentFormula("backdoor", ("x",), ("y",), frozenset()).latex() == r"P(y \mid x)"
    g = nx.DiGraph([("y", "w"), ("x", "w")])
    assert frontdoor_sets(g, "x", "y", [("x", "y")]) == [frozenset()]


def test_estimand_is_the_formula_identify_prints_and_evaluates() -> None:
    # Pearl, Causality, fig. 3.5: the front-door formula is ID's answer too, term for term.
    graph = FIG_3_5.copy()
    graph.graph["bidirected"] = FIG_3_5_BIDIRECTED
    result = identify(graph, "smoking", "cancer")
    formula = find_adjustment(FIG_3_5, "smoking", "cancer", FIG_3_5_BIDIRECTED)
    assert formula is not None and result.adjustment == formula
    assert formula.estimand() == result.estimand
    assert formula.estimand().text() == result.estimand.text() == formula.text()
    assert formula.latex() == result.estimand.latex()
    expected = "Σ_{tar} P(tar | smoking) Σ_{smoking'} P(smoking') P(cancer | smoking', tar)"
    assert formula.text() == expected
    assert formula.estimand().free_variables() == {"smoking", "cancer"}
    # Evaluation agrees: evaluate_discrete, the estimand's own table, and identify.
    scm = RandomSCM(FIG_3_5, FIG_3_5_BIDIRECTED, seed=8)
    table, names = scm.joint(), tuple(scm.observed)
    joint = DiscreteJoint(table, names)
    identified = result.evaluate(joint)  # axes smoking, cancer
    for value in (0, 1):
        got = formula.evaluate_discrete(table, names, value)
        np.testing.assert_allclose(got, identified[value], atol=1e-12)
        np.testing.assert_allclose(
            formula.estimand().table(joint, ["cancer"], {"smoking": value}), got, atol=1e-12
        )
        truth = scm.truth({"smoking": value}, ["cancer"])
        np.testing.assert_allclose(got, truth, atol=1e-9)
    # And from data: the plug-in estimate is the estimand on the empirical joint.
    draws = np.random.default_rng(2).choice(table.size, size=5000, p=table.ravel())
    rows = dict(zip(names, np.unravel_index(draws, table.shape), strict=True))
    empirical = DiscreteJoint.from_data(rows)
    np.testing.assert_allclose(
        formula.estimate_from_data(rows, 1), result.evaluate(empirical)[1], atol=1e-12
    )


def test_backdoor_estimand() -> None:
    f = AdjustmentFormula("backdoor", ("x",), ("y",), frozenset({"z"}))
    z, xz, y = frozenset("z"), frozenset("xz"), frozenset("y")
    assert f.estimand() == Sum(z, Product((Probability(z), Probability(y, xz))))
    assert AdjustmentFormula("backdoor", "x", "y", ()).estimand() == Probability(  # type: ignore[arg-type]
        y, frozenset("x")
    )


def test_docstring_examples() -> None:
    assert doctest.testmod(adjustment, optionflags=doctest.ELLIPSIS).failed == 0


# ------------------------------------------------------------------------------- errors

GRAPH_ERRORS = [
    (lambda: is_backdoor_set(nx.Graph(), "x", "y", ()), "must be a networkx.DiGraph"),  # type: ignore[arg-type]
    (lambda: backdoor_sets(nx.DiGraph([("x", "y"), ("y", "x")]), "x", "y"), r"cycle x -> y -> x"),
    (lambda: backdoor_sets(FIG_3_5, "smoking", "cancer", [("tar", "q")]), r"names \['q'\]"),
    (lambda: backdoor_sets(FIG_3_5, "smoking", "cancer", [("tar", "tar")]), "two distinct"),
    (lambda: backdoor_sets(FIG_3_5, "smoking", "cancer", ["ab"]), "pair of two"),  # type: ignore[list-item]
    (lambda: backdoor_sets(FIG_3_5, "smk", "cancer"), r"treatment node\(s\) \['smk'\]"),
    (lambda: backdoor_sets(FIG_3_5, "tar", ["cancer", "q"]), r"\['cancer', 'smoking', 'tar'\]"),
    (lambda: backdoor_sets(FIG_3_5, "tar", ["tar", "cancer"]), r"overlap in \['tar'\]"),
    (lambda: backdoor_sets(FIG_3_5, [], "cancer"), "treatment is empty"),
    (lambda: frontdoor_sets(FIG_3_5, "tar", set()), "outcome is empty"),
    (lambda: is_backdoor_set(FIG_3_5, "smoking", "cancer", {"tar", "q"}), "adjustment set"),
    (lambda: is_backdoor_set(M_GRAPH, "x", "y", {"m", "x"}), r"treatment or outcome.*\['x'\]"),
    (lambda: is_frontdoor_set(M_GRAPH, "x", "y", {"y"}), r"treatment or outcome.*\['y'\]"),
    (lambda: is_adjustment_set(M_GRAPH, "x", "y", "y"), r"treatment or outcome.*\['y'\]"),
    (lambda: frontdoor_sets(M_GRAPH, ["x", "u1"], "y"), "single treatment"),
    (lambda: is_frontdoor_set(M_GRAPH, "x", ["y", "m"], ()), "single outcome"),
    (lambda: backdoor_sets(M_GRAPH, "x", "y", max_size=-1), "max_size"),
    (lambda: frontdoor_sets(M_GRAPH, "x", "y", max_size=1.5), "max_size"),  # type: ignore[arg-type]
    (lambda: AdjustmentFormula("napkin", ("x",), ("y",), frozenset()), "kind must be"),  # type: ignore[arg-type]
    (lambda: AdjustmentFormula("frontdoor", ("x", "w"), ("y",), frozenset()), "one treatment"),
    (lambda: AdjustmentFormula("backdoor", ("x",), ("x",), frozenset()), "disjoint"),
    (lambda: AdjustmentFormula("backdoor", (), ("y",), frozenset()), "non-empty treatment"),
    (lambda: AdjustmentFormula("backdoor", ("x", "x"), ("y",), frozenset()), "repeats"),
    (lambda: AdjustmentFormula("backdoor", ("x",), ("y",), frozenset("y")), "apart from both"),
]


@pytest.mark.parametrize("call, match", GRAPH_ERRORS)
def test_graph_errors(call, match: str) -> None:
    with pytest.raises(GraphError, match=match):
        call()


BD = AdjustmentFormula("backdoor", ("x",), ("y",), frozenset({"z"}))
FD = AdjustmentFormula("frontdoor", ("x",), ("y",), frozenset({"z"}))
NAMES = ("x", "z", "y")
UNIFORM = np.full((2, 2, 2), 1 / 8)
HOLE_XZ = UNIFORM * np.array([[[1], [1]], [[0], [1]]])  # P(x=1, z=0) = 0
ROWS = {"x": np.array([0, 1, 0, 1]), "z": np.array([0, 0, 1, 1]), "y": np.array([0, 1, 1, 0])}

EVIDENCE_ERRORS = [
    (lambda: BD.evaluate_discrete(UNIFORM, ("x", "z"), 0), "3 axes"),
    (lambda: BD.evaluate_discrete(UNIFORM, ("x", "x", "y"), 0), "distinct names"),
    (lambda: BD.evaluate_discrete(UNIFORM, ("x", "w", "y"), 0), r"needs \['z'\]"),
    (lambda: BD.evaluate_discrete(-UNIFORM, NAMES, 0), "non-negative"),
    (lambda: BD.evaluate_discrete(UNIFORM * np.nan, NAMES, 0), "finite"),
    (lambda: BD.evaluate_discrete(UNIFORM * 0, NAMES, 0), "not all zero"),
    (lambda: BD.evaluate_discrete(UNIFORM, NAMES, 2), r"x=2 is outside 0..1"),
    (lambda: BD.evaluate_discrete(UNIFORM, NAMES, -1), "non-negative integer"),
    (lambda: BD.evaluate_discrete(UNIFORM, NAMES, 0.5), "non-negative integer"),
    (lambda: BD.evaluate_discrete(UNIFORM, NAMES, (0, 1)), "one non-negative integer"),
    (lambda: BD.evaluate_discrete(UNIFORM, NAMES, {"w": 1}), "per treatment"),
    (lambda: BD.evaluate_discrete(UNIFORM, NAMES, {"x": 1, "w": 1}), "per treatment"),
    (lambda: BD.evaluate_discrete(HOLE_XZ, NAMES, 1), "stratum x=1, z=0.*zero mass"),
    (lambda: FD.evaluate_discrete(UNIFORM * [[[1]], [[0]]], NAMES, 1), "stratum x=1,"),
    (lambda: FD.evaluate_discrete(HOLE_XZ, NAMES, 0), "stratum x=1, z=0.*positivity"),
    (lambda: BD.estimate_from_data({"x": ROWS["x"], "y": ROWS["y"]}, 0), r"needs \['z'\]"),
    (lambda: BD.estimate_from_data({**ROWS, "z": ROWS["z"][:3]}, 0), "as long as the others"),
    (lambda: BD.estimate_from_data({**ROWS, "z": ROWS["z"] * 0.5}, 0), "integer array"),
    (lambda: BD.estimate_from_data({**ROWS, "z": ROWS["z"][None]}, 0), r"shape \(1, 4\)"),
    (lambda: BD.estimate_from_data({k: v[:0] for k, v in ROWS.items()}, 0), "non-empty"),
    (lambda: BD.estimate_from_data({**ROWS, "y": -ROWS["y"]}, 0), "negative codes"),
    (lambda: BD.estimate_from_data({**ROWS, "x": ROWS["x"] * 0}, 1), "no row of the data"),
    (lambda: BD.estimate_from_data(ROWS, 2), r"stratum x=2, z=0, but no row"),
]


@pytest.mark.parametrize("call, match", EVIDENCE_ERRORS)
def test_evidence_errors(call, match: str) -> None:
    with pytest.raises(EvidenceError, match=match):
        call()


def test_errors_are_value_errors() -> None:
    assert issubclass(GraphError, ValueError) and issubclass(EvidenceError, ValueError)


def test_pairs_carried_by_the_graph_count():
    # ADMG.to_digraph() and plot-ready graphs carry their bidirected pairs in graph["bidirected"]
    from scm_ppl import ADMG

    bow = ADMG(nx.DiGraph([("x", "y")]), [("x", "y")])
    assert backdoor_sets(bow.to_digraph(), "x", "y") == []
    assert all(bow.to_digraph().nodes[n]["observed"] for n in ("x", "y"))
