"""Tests for scm_ppl.identify: ID, IDC, and the adjustment formulas it reports first.

Every check is exact: estimands are evaluated on joint tables computed by enumeration, and
compared with interventional distributions computed by enumerating the mutilated SCM.
"""

from __future__ import annotations

import doctest
import importlib
import itertools
import time
from collections.abc import Callable, Iterable, Sequence

import jax.numpy as jnp
import networkx as nx
import numpy as np
import numpyro
import numpyro.distributions as dist
import pytest

from scm_ppl.errors import EstimandError, GraphError, NotIdentifiableWarning
from scm_ppl.graphical.adjustment import AdjustmentFormula
from scm_ppl.graphical.estimand import Fraction, Probability, Product, Sum
from scm_ppl.graphical.id_algorithm import (
    Hedge,
    IdentificationResult,
    NotIdentifiableError,
    identify,
)
from scm_ppl.graphical.joint import DiscreteJoint
from scm_ppl.graphical.mixed_graph import ADMG


def P(vars: Iterable[str], given: Iterable[str] = "") -> Probability:
    """A shorthand: P("yx", "m") is P(x, y | m) (a string is a set of one-letter names)."""
    return Probability(frozenset(vars), frozenset(given))


def mixed(directed: Sequence[tuple[str, str]], bidirected: Sequence[tuple[str, str]] = ()) -> ADMG:
    g = nx.DiGraph()
    g.add_edges_from(directed)
    g.add_nodes_from(n for pair in bidirected for n in pair)
    return ADMG(g, bidirected)


class BinarySCM:
    """A random binary SCM whose ADMG is ``g``.

    Each bidirected edge is an explicit binary latent parent of both its ends; every
    conditional probability table is drawn uniformly from [0.1, 0.9], so the observational
    joint is strictly positive. Joints are computed exactly by enumeration over observed
    and latent variables; ``do`` replaces a mechanism by a point mass.
    """

    def __init__(self, g: ADMG, rng: np.random.Generator) -> None:
        self.observed = list(g.nodes)
        latents = [f"U{i}" for i in range(len(g.bidirected))]
        self.axes = {v: i for i, v in enumerate([*self.observed, *latents])}
        self.parents = {v: sorted(g.parents(v)) for v in self.observed}
        for u, pair in zip(latents, g.bidirected_edges(), strict=True):
            for end in pair:
                self.parents[end].append(u)
        self.p1 = {v: rng.uniform(0.1, 0.9, (2,) * len(self.parents[v])) for v in self.observed}
        self.latents = {u: rng.uniform(0.1, 0.9) for u in latents}

    def _factor(self, names: list[str], table: np.ndarray) -> np.ndarray:
        """``table`` (axes ``names``) broadcast against the full grid of variables."""
        order = sorted(range(len(names)), key=lambda k: self.axes[names[k]])
        shape = [1] * len(self.axes)
        for k in order:
            shape[self.axes[names[k]]] = 2
        return np.transpose(table, order).reshape(shape)

    def joint(self, do: dict[str, int] | None = None) -> np.ndarray:
        """P(observed) (axes in ADMG order), after ``do`` when given."""
        do = do or {}
        total = np.ones((2,) * len(self.axes))
        for u, p in self.latents.items():
            total = total * self._factor([u], np.array([1 - p, p]))
        for v in self.observed:
            if v in do:
                total = total * self._factor([v], np.eye(2)[do[v]])
            else:
                p = self.p1[v]
                total = total * self._factor([*self.parents[v], v], np.stack([1 - p, p], -1))
        return total.sum(axis=tuple(range(len(self.observed), len(self.axes))))

    def observational(self) -> DiscreteJoint:
        return DiscreteJoint(self.joint(), self.observed)

    def effect(self, x: Sequence[str], y: Sequence[str], z: Sequence[str] = ()) -> np.ndarray:
        """P(y | do(x), z) with axes ``(*x, *z, *y)``, like IdentificationResult.evaluate."""
        out = np.empty((2,) * (len(x) + len(z) + len(y)))
        for values in itertools.product([0, 1], repeat=len(x)):
            p = DiscreteJoint(self.joint(dict(zip(x, values, strict=True))), self.observed)
            joint = p.marginal([*z, *y])
            out[values] = joint / joint.sum(
                axis=tuple(range(len(z), len(z) + len(y))), keepdims=True
            )
        return out


def check_identified(
    g: ADMG, x: Sequence[str], y: Sequence[str], z: Sequence[str] = (), seed: int = 0
) -> IdentificationResult:
    """Identify the query, then compare its exact evaluation with the brute-force truth."""
    result = identify(g, x, y, given=z)
    assert result.identifiable and result.estimand is not None and result.hedge is None
    assert result.estimand.free_variables() <= {*x, *y, *z}
    scm = BinarySCM(g, np.random.default_rng(seed))
    np.testing.assert_allclose(result.evaluate(scm.observational()), scm.effect(x, y, z), atol=1e-9)
    return result


def check_hedge(g: ADMG, hedge: Hedge) -> None:
    """The hedge conditions of Shpitser & Pearl (2006) that a node-set pair can show.

    F and F' come as node sets; the C-forests are edge subgraphs of G[F] and G[F'] (the
    paper's theorem on the graphs returned by line 5 of ID). Checked:
    (1) F' is a proper subset of F;
    (2) F meets the treatment, F' does not;
    (3) G[F] and G[F'] are each a single c-component;
    (4) the roots R of G[F'] (nodes with no child in F') are ancestors of the outcome in G
        with the treatment's incoming edges cut;
    (5) every node of F has a directed path inside G[F] to R, so G[F] has a spanning forest
        rooted at R: F and F' contain R-rooted C-forests with the same roots.
    """
    f, f_sub, x = hedge.forest, hedge.subforest, hedge.treatment
    assert f_sub < f
    assert f & x and not f_sub & x
    assert len(g.subgraph(f).districts()) == 1 and len(g.subgraph(f_sub).districts()) == 1
    roots = {v for v in f_sub if not g.children(v) & f_sub}
    assert roots <= g.cut_incoming(x).ancestors(hedge.outcome)
    in_f = g.subgraph(f)
    assert all(in_f.descendants([v]) & roots for v in f)


def check_not_identified(
    g: ADMG, x: Sequence[str], y: Sequence[str], z: Sequence[str] = ()
) -> Hedge:
    result = identify(g, x, y, given=z)
    assert not result.identifiable and result.estimand is None and result.hedge is not None
    check_hedge(g, result.hedge)
    return result.hedge


# -- textbook cases ------------------------------------------------------------------------------
BOW = mixed([("x", "y")], [("x", "y")])
FRONT_DOOR = mixed([("x", "m"), ("m", "y")], [("x", "y")])
# Pearl & Mackenzie (2018), The Book of Why, ch. 7: the napkin graph.
NAPKIN = mixed([("w1", "w2"), ("w2", "x"), ("x", "y")], [("w1", "x"), ("w1", "y")])


def test_bow_arc_is_not_identifiable() -> None:
    # Pearl (2009), Causality, Fig. 3.9(a); the smallest hedge (Shpitser & Pearl 2006).
    hedge = check_not_identified(BOW, ["x"], ["y"])
    assert hedge == Hedge(frozenset("xy"), frozenset("y"), frozenset("x"), frozenset("y"))
    result = identify(BOW, "x", "y")
    assert str(result) == (
        "P(y | do(x)) is not identifiable (hedge for P(y | do(x)): F = ['x', 'y'], F' = ['y'])"
    )
    with pytest.raises(NotIdentifiableError, match=r"P\(y \| do\(x\)\) is not identifiable"):
        result.evaluate(BinarySCM(BOW, np.random.default_rng(0)).observational())

    # The witness the hedge promises: with u ~ Bernoulli(1/2) and x = u, the SCMs y = u and
    # y = x have the same P(x, y) but different P(y | do(x)).
    def solve(f_y: Callable[[int, int], int], do_x: int | None = None) -> np.ndarray:
        joint = np.zeros((2, 2))
        for u in (0, 1):
            x = u if do_x is None else do_x
            joint[x, f_y(u, x)] += 0.5
        return joint

    confounded, causal = (lambda u, x: u), (lambda u, x: x)
    np.testing.assert_array_equal(solve(confounded), solve(causal))
    assert solve(confounded, do_x=0)[0, 1] == 0.5 and solve(causal, do_x=0)[0, 1] == 0.0


def test_front_door() -> None:
    # Pearl (2009), Causality, §3.3.2 (Fig. 3.5, smoking -> tar -> cancer).
    result = check_identified(FRONT_DOOR, ["x"], ["y"])
    assert result.query == "P(y | do(x))"
    assert result.estimand is not None
    assert result.estimand.text() == "Σ_{m} P(m | x) Σ_{x'} P(x') P(y | m, x')"
    assert result.estimand.latex() == r"\sum_{m} P(m \mid x) \sum_{x'} P(x') P(y \mid m, x')"
    # The estimand *is* the front-door formula: equal on any positive joint, even one that
    # does not come from the graph.
    p = np.random.default_rng(3).dirichlet(np.ones(8)).reshape(2, 2, 2)  # axes x, m, y
    p_x, p_xm = p.sum((1, 2)), p.sum(2)
    p_m_x, p_y_xm = p_xm / p_x[:, None], p / p_xm[..., None]
    formula = np.einsum("xm,mzy,z->xy", p_m_x, p_y_xm.transpose(1, 0, 2), p_x)
    np.testing.assert_allclose(result.evaluate((p, ("x", "m", "y"))), formula, atol=1e-12)


def test_back_door() -> None:
    # Pearl (2009), Causality, §3.3.1, Fig. 3.4: {x3, x4} and {x4, x5} both satisfy the
    # back-door criterion for the effect of xi on xj; {x3} alone does not (x3 is a collider
    # on xi <- x4 <- x1 -> x3 <- x2 -> x5 -> xj).
    g = mixed(
        [
            ("x1", "x3"),
            ("x2", "x3"),
            ("x1", "x4"),
            ("x2", "x5"),
            ("x3", "xi"),
            ("x4", "xi"),
            ("x5", "xj"),
            ("xi", "x6"),
            ("x6", "xj"),
        ]
    )
    result = check_identified(g, ["xi"], ["xj"], seed=4)
    p = BinarySCM(g, np.random.default_rng(4)).observational()

    def adjusted(s: str) -> np.ndarray:
        covariates = frozenset(s.split())
        formula = Sum.of(covariates, Product.of([P(["xj"], {"xi", *covariates}), P(covariates)]))
        return formula.array(p, ["xi", "xj"])

    np.testing.assert_allclose(result.evaluate(p), adjusted("x3 x4"), atol=1e-12)
    np.testing.assert_allclose(result.evaluate(p), adjusted("x4 x5"), atol=1e-12)
    assert np.abs(result.evaluate(p) - adjusted("x3")).max() > 1e-4
    # A confounded covariate also works: z -> x, z -> y, z <-> x; and an unconfounded
    # treatment whose mediator is confounded with y needs no adjustment at all (Shpitser &
    # Pearl 2008, JMLR, Fig. 2(d) and 2(b), as transcribed in y0's examples).
    confounded_z = mixed([("z", "x"), ("z", "y"), ("x", "y")], [("z", "x")])
    assert str(check_identified(confounded_z, ["x"], ["y"]).estimand) == "Σ_{z} P(z) P(y | x, z)"
    mediator = mixed([("x", "y"), ("x", "z"), ("z", "y")], [("z", "y")])
    assert str(check_identified(mediator, ["x"], ["y"]).estimand) == "P(y | x)"
    # No confounding, and a cause w of x only (removed by line 3 of ID).
    assert str(check_identified(mixed([("w", "x"), ("x", "y")]), ["x"], ["y"]).estimand) == (
        "P(y | x)"
    )


def test_napkin() -> None:
    result = check_identified(NAPKIN, ["x"], ["y"], seed=5)
    assert result.estimand is not None
    # w2 affects y only through x (line 3 of ID), so the formula holds at every w2; the
    # estimand averages it over P(w2).
    assert result.estimand.text() == (
        "Σ_{w2} P(w2) [(Σ_{w1} P(w1) P(x | w1, w2) P(y | w1, w2, x)) / "
        "(Σ_{w1} P(w1) P(x | w1, w2))]"
    )
    # Pearl & Mackenzie's napkin formula, at each w2 separately:
    # P(y | do(x)) = Σ_w1 P(x, y | w1, w2) P(w1) / Σ_w1 P(x | w1, w2) P(w1).
    p = BinarySCM(NAPKIN, np.random.default_rng(5)).observational()
    p_w1 = p.marginal(["w1"])
    num = np.einsum(
        "axyb,a->bxy", p.conditional(["x", "y"], ["w1", "w2"]).transpose(2, 0, 1, 3), p_w1
    )
    den = np.einsum("xab,a->bx", p.conditional(["x"], ["w1", "w2"]), p_w1)
    for w2 in (0, 1):
        np.testing.assert_allclose(result.evaluate(p), num[w2] / den[w2][:, None], atol=1e-12)


def test_shpitser_pearl_joint_example() -> None:
    # Shpitser & Pearl (2006; JMLR 2008, Fig. 3(a)), the worked example of ID, as transcribed
    # in y0's examples (complete_hierarchy_figure_3a): P(y1, y2 | do(x)) is identifiable.
    g = mixed(
        [("w1", "x"), ("x", "y1"), ("w2", "y2")],
        [("w1", "w2"), ("w1", "y1"), ("w1", "y2"), ("x", "w2")],
    )
    result = check_identified(g, ["x"], ["y1", "y2"], seed=6)
    assert str(result) == "P(y1, y2 | do(x)) = P(y2) Σ_{w1} P(w1) P(y1 | w1, x)"


def test_joint_effect_hedge_with_identifiable_marginals() -> None:
    # The phenomenon hedges explain (Shpitser & Pearl 2006): each marginal
    # effect is identifiable, the joint one is not. F = {x, y1, y2} (x -> y1, x <-> y2,
    # y1 <-> y2), F' = {y1, y2}, roots {y1, y2}.
    g = mixed([("x", "y1")], [("y1", "y2"), ("x", "y2")])
    assert str(check_identified(g, ["x"], ["y1"]).estimand) == "P(y1 | x)"
    assert str(check_identified(g, ["x"], ["y2"]).estimand) == "P(y2)"
    hedge = check_not_identified(g, ["x"], ["y1", "y2"])
    assert (hedge.forest, hedge.subforest) == (
        frozenset({"x", "y1", "y2"}),
        frozenset({"y1", "y2"}),
    )


@pytest.mark.parametrize(
    ("directed", "bidirected"),
    [
        # Pearl (2009), Causality, p. 92, Fig. 3.8(f) and 3.8(g) as transcribed in y0's
        # examples (identifiability_4, identifiability_3): identifiable with confounding
        # that no single adjustment set removes.
        (
            [("x", "z1"), ("x", "y"), ("z1", "z2"), ("z1", "y"), ("z2", "y")],
            [("x", "z2"), ("z1", "y")],
        ),
        (
            [("z2", "x"), ("z2", "z1"), ("z2", "z3"), ("x", "z1"), ("z3", "y"), ("z1", "y")],
            [("z2", "x"), ("z2", "y"), ("x", "z3"), ("x", "y")],
        ),
    ],
)
def test_causality_figure_3_8_style(directed: list, bidirected: list) -> None:
    check_identified(mixed(directed, bidirected), ["x"], ["y"], seed=7)


@pytest.mark.parametrize(
    ("directed", "bidirected", "forest"),
    [
        # Pearl (2009), Causality, Fig. 3.9-style models (each stated by its graph here):
        # a confounded first stage x -> z, ...
        ([("x", "z"), ("z", "y")], [("x", "z")], "xz"),
        # ... the same with a direct effect x -> y too, ...
        ([("x", "z"), ("z", "y"), ("x", "y")], [("x", "z")], "xz"),
        # ... a covariate z confounded with both x and y; ...
        ([("z", "x"), ("x", "y")], [("x", "z"), ("z", "y")], "xyz"),
        # ... and x, y joined by a chain of bidirected edges through z.
        ([("x", "y"), ("z", "y")], [("x", "z"), ("z", "y")], "xyz"),
    ],
)
def test_causality_figure_3_9_style(directed: list, bidirected: list, forest: str) -> None:
    hedge = check_not_identified(mixed(directed, bidirected), ["x"], ["y"])
    assert hedge.forest == frozenset(forest)


def test_conditional_effects_idc() -> None:
    # Shpitser & Pearl (2006, UAI), rule 2 in IDC: in x -> z -> y with x <-> z,
    # P(y | do(x), z) = P(y | do(x, z)) = P(y | z).
    g = mixed([("x", "z"), ("z", "y")], [("x", "z")])
    result = check_identified(g, ["x"], ["y"], ["z"])
    assert str(result) == "P(y | do(x), z) = P(y | z)"
    # Here w cannot move into the treatment (the path w <-> z -> y survives cutting x's
    # incoming edges), so IDC takes the ratio P_x(y, w) / Σ_y P_x(y, w).
    g = mixed([("z", "x"), ("z", "y"), ("x", "y")], [("z", "x"), ("z", "w"), ("x", "w")])
    result = check_identified(g, ["x"], ["y"], ["w"])
    assert isinstance(result.estimand, Fraction)
    assert str(result.estimand) == "(Σ_{z} P(w, z) P(y | x, z)) / P(w)"
    # Conditioning does not remove a bow arc: the hedge is for P(y, z | do(x)).
    g = mixed([("z", "x"), ("x", "y")], [("x", "y")])
    hedge = check_not_identified(g, ["x"], ["y"], ["z"])
    # (IDC moved z into the treatment first: P(y | do(x), z) = P(y | do(x, z)) here.)
    assert hedge.treatment == {"x", "z"} and hedge.outcome == {"y"}


# -- random ADMGs -------------------------------------------------------------------------------
def random_admg(rng: np.random.Generator, n: int) -> ADMG:
    """n nodes in a random order, each forward pair a directed edge with probability
    p_dir, each pair a bidirected edge with probability p_bi (both drawn per graph)."""
    names = [f"v{i}" for i in range(n)]
    order = rng.permutation(names)
    p_dir, p_bi = rng.uniform(0.2, 0.6), rng.uniform(0.1, 0.5)
    g = nx.DiGraph()
    g.add_nodes_from(names)
    g.add_edges_from((a, b) for a, b in itertools.combinations(order, 2) if rng.random() < p_dir)
    return ADMG(g, [p for p in itertools.combinations(names, 2) if rng.random() < p_bi])


def test_random_admgs_id_and_idc() -> None:
    """400 random ADMGs (3-7 nodes, seed 2024), one query each: 1-2 treatments, 1-2
    outcomes and, on every other graph, 1-2 conditioning variables. An estimand must equal
    the brute-force P(y | do(x), z) of a random binary SCM with that ADMG to 1e-6, for every
    value of x, z and y; a hedge must pass check_hedge (conditions (1)-(5) there). That
    P(v) cannot determine the query when a hedge exists is the completeness theorem of
    Shpitser & Pearl (2006; for IDC their UAI 2006 paper), not re-proved here.
    """
    rng = np.random.default_rng(2024)
    counts = {"identified": 0, "hedge": 0, "conditional": 0, "backdoor": 0, "frontdoor": 0}
    start = time.perf_counter()
    for trial in range(400):
        n = int(rng.integers(3, 8))
        g = random_admg(rng, n)
        nodes = list(rng.permutation(list(g.nodes)))
        nx_ = int(rng.integers(1, min(2, n - 1) + 1))
        ny = int(rng.integers(1, min(2, n - nx_) + 1))
        nz = int(rng.integers(1, min(2, n - nx_ - ny) + 1)) if trial % 2 and n - nx_ - ny else 0
        x, y, z = nodes[:nx_], nodes[nx_ : nx_ + ny], nodes[nx_ + ny : nx_ + ny + nz]
        if identify(g, x, y, given=z).identifiable:
            result = check_identified(g, x, y, z, seed=trial)
            counts["identified"] += 1
            counts["conditional"] += bool(z)
            if result.adjustment is not None:  # the fast path, checked exactly all the same
                assert not z and result.estimand == result.adjustment.estimand()
                counts[result.adjustment.kind] += 1
        else:
            check_not_identified(g, x, y, z)
            counts["hedge"] += 1
    elapsed = time.perf_counter() - start
    # Both answers, and both paths to an estimand, occur often enough for the checks to
    # mean something (ID: every conditional query, and unconditional ones without a set).
    assert counts["identified"] > 150 and counts["hedge"] > 50 and counts["conditional"] > 50
    assert counts["backdoor"] > 50 and counts["frontdoor"] > 10, counts
    assert elapsed < 20.0, f"random suite took {elapsed:.1f} s"


def test_random_admgs_agree_with_tian_pearl() -> None:
    """An independent completeness check: P(v \\ x | do(x)) for a single x is identifiable
    iff no child of x is in x's district (Tian & Pearl 2002, "A general identification
    condition for causal effects", AAAI)."""
    rng = np.random.default_rng(7)
    seen = set()
    for _ in range(200):
        g = random_admg(rng, int(rng.integers(2, 8)))
        x = str(rng.choice(list(g.nodes)))
        expected = not g.children(x) & g.district_of(x)
        rest = [v for v in g.nodes if v != x]
        assert identify(g, x, rest).identifiable == expected
        seen.add(expected)
    assert seen == {True, False}


def test_twenty_node_admg_is_fast() -> None:
    rng = np.random.default_rng(11)
    names = [f"v{i}" for i in range(20)]
    worst = 0.0
    for _ in range(20):
        g = nx.DiGraph()
        g.add_nodes_from(names)
        g.add_edges_from((a, b) for a, b in itertools.combinations(names, 2) if rng.random() < 0.15)
        pairs = [p for p in itertools.combinations(names, 2) if rng.random() < 0.06]
        admg = ADMG(g, pairs)
        x, y = list(rng.permutation(names)[:4].reshape(2, 2))
        start = time.perf_counter()
        str(identify(admg, list(x), list(y)))
        worst = max(worst, time.perf_counter() - start)
    assert worst < 0.5, f"a 20-node identification took {worst:.3f} s"


# -- programs and input errors -------------------------------------------------------------------
def front_door_program(n: int) -> None:
    with numpyro.plate("unit", n):
        u = numpyro.sample("u", dist.Normal(0.0, 1.0))  # latent: an unobserved root
        x = numpyro.sample("x", dist.Normal(u, 1.0))
        m = numpyro.sample("m", dist.Normal(x, 1.0))
        numpyro.sample("y", dist.Normal(m + u, 1.0))


def back_door_program(z_obs: jnp.ndarray | None = None) -> None:
    z = numpyro.sample("z", dist.Normal(0.0, 1.0).expand([3]).to_event(1), obs=z_obs)
    x = numpyro.sample("x", dist.Normal(z, 1.0).to_event(1))
    numpyro.sample("y", dist.Normal(x + z, 1.0).to_event(1))


def test_identify_a_program() -> None:
    result = identify(front_door_program, "x", "y", model_args=(4,))
    assert result.graph == FRONT_DOOR and result.identifiable
    # z is observed through model_kwargs, so it is a variable and adjusts for itself.
    result = identify(back_door_program, "x", "y", model_kwargs={"z_obs": jnp.zeros(3)})
    assert str(result.estimand) == "Σ_{z} P(z) P(y | x, z)"
    # Without it z is a latent root: the bow arc, and a warning that names observed=.
    with pytest.warns(NotIdentifiableWarning, match=r"observed=\['x', 'y', 'z'\]"):
        assert not identify(back_door_program, "x", "y").identifiable
    assert identify(back_door_program, "x", "y", observed=["x", "y", "z"]).identifiable


def test_identify_accepts_graphs_without_mutating_them() -> None:
    g = nx.DiGraph([("x", "m"), ("m", "y")])
    g.graph["bidirected"] = [("x", "y")]
    before = (list(g.nodes(data=True)), list(g.edges), dict(g.graph))
    assert str(identify(g, ["x"], {"y"}).estimand) == str(identify(FRONT_DOOR, "x", "y").estimand)
    assert identify(g, "x", "y", observed=["x", "y"]).hedge is not None  # m hidden: a bow
    assert (list(g.nodes(data=True)), list(g.edges), dict(g.graph)) == before


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"treatment": "q", "outcome": "y"}, r"Unknown variables \['q'\].*\['x', 'm', 'y'\]"),
        ({"treatment": "x", "outcome": ["y", "w"]}, r"Unknown variables \['w'\]"),
        ({"treatment": "x", "outcome": "y", "given": "q"}, r"Unknown variables \['q'\]"),
        (
            {"treatment": ["x", "y"], "outcome": "y"},
            r"\['y'\] is in both the treatment and the outcome",
        ),
        ({"treatment": "x", "outcome": "y", "given": ["x"]}, r"both the treatment and the given"),
        ({"treatment": "x", "outcome": "y", "given": "y"}, r"both the outcome and the given"),
        ({"treatment": [], "outcome": "y"}, "The treatment is empty"),
        ({"treatment": "x", "outcome": ()}, "The outcome is empty"),
        (
            {"treatment": ["x", 1], "outcome": "y"},
            r"must be a name or names \(strings\); got \[1\]",
        ),
    ],
)
def test_bad_queries(kwargs: dict, match: str) -> None:
    with pytest.raises(GraphError, match=match):
        identify(FRONT_DOOR, **kwargs)


def test_bad_sources() -> None:
    with pytest.raises(GraphError, match="Latent sites are projected out"):
        identify(front_door_program, "u", "y", model_args=(4,))
    with pytest.raises(GraphError, match="directed cycle"):
        identify(nx.DiGraph([("x", "y"), ("y", "x")]), "x", "y")
    with pytest.raises(GraphError, match=r"names \['q'\]"):
        bad = nx.DiGraph([("x", "y")])
        bad.graph["bidirected"] = [("x", "q")]
        identify(bad, "x", "y")
    with pytest.raises(GraphError, match="Expected a NumPyro program"):
        identify([("x", "y")], "x", "y")  # type: ignore[arg-type]


# -- the adjustment fast path --------------------------------------------------------------------
def test_identify_reports_adjustment_formulas() -> None:
    front = identify(FRONT_DOOR, "x", "y")
    assert front.adjustment == AdjustmentFormula("frontdoor", ("x",), ("y",), frozenset({"m"}))
    assert front.estimand == front.adjustment.estimand()
    assert front.adjustment.text() == str(front.estimand)
    back = identify(mixed([("z", "x"), ("z", "y"), ("x", "y")], [("z", "x")]), "x", "y")
    assert back.adjustment is not None and back.adjustment.kind == "backdoor"
    assert back.adjustment.set == {"z"}
    # Not identifiable, or identifiable by ID alone, or a conditional query: no adjustment.
    assert identify(BOW, "x", "y").adjustment is None
    assert identify(NAPKIN, "x", "y").adjustment is None
    assert identify(FRONT_DOOR, "x", "y", given="m").adjustment is None
    # Sets of treatments and outcomes take the back-door criterion.
    joint = identify(
        mixed([("c", "x1"), ("c", "y1"), ("x1", "y1"), ("x2", "y2")]), ["x1", "x2"], ["y1", "y2"]
    )
    assert joint.adjustment is not None and joint.adjustment.set == {"c"}


def test_evaluating_on_data_with_an_empty_stratum_names_it() -> None:
    # Front door from data in which no unit has x=1, m=0: P(y | m=0, x'=1) is needed.
    rows = {
        "x": np.array([0, 0, 1, 1, 0]),
        "m": np.array([0, 1, 1, 1, 1]),
        "y": np.array([0, 1, 1, 0, 1]),
    }
    result = identify(FRONT_DOOR, "x", "y")
    data = DiscreteJoint.from_data(rows)
    with pytest.raises(EstimandError, match=r"stratum m=0, x=1, but no row of the data falls in"):
        result.evaluate(data)
    # strict=False: NaN at x=0 only; at x=1 the stratum has weight P(m=0 | x=1) = 0.
    # There P(y=1 | do(x=1)) = Σ_x' P(x') P(y=1 | m=1, x') = 3/5 · 1 + 2/5 · 1/2.
    loose = result.evaluate(data, strict=False)
    assert np.isnan(loose[0]).all()
    np.testing.assert_allclose(loose[1], [0.2, 0.8])
    # The same estimand on the exact joint of those rows: NaN (documented), or raise if strict.
    exact = DiscreteJoint(data.probs, data.names)
    np.testing.assert_array_equal(result.evaluate(exact), loose)
    with pytest.raises(EstimandError, match=r"stratum m=0, x=1, but the joint gives zero mass"):
        result.evaluate(exact, strict=True)


def test_docstring_examples() -> None:
    assert doctest.testmod(importlib.import_module("scm_ppl.graphical.id_algorithm")).failed == 0
