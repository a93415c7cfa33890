"""Tests for scm_ppl.admg: ADMGs, their validation, and latent projection."""

from __future__ import annotations

import copy
import doctest
import importlib
import pickle
from collections.abc import Iterator
from typing import Any

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt
import networkx as nx
import numpyro
import numpyro.distributions as dist
import pytest

from scm_ppl.errors import GraphError
from scm_ppl.graphical.mixed_graph import ADMG, admg, latent_projection
from scm_ppl.plotting.figures import plot_graph


@pytest.fixture(autouse=True)
def _close_figures() -> Iterator[None]:
    yield
    plt.close("all")


def front_door() -> ADMG:
    return ADMG(nx.DiGraph([("x", "m"), ("m", "y")]), [("x", "y")])


def edges(g: ADMG) -> tuple[list[tuple[str, str]], list[tuple[str, str]]]:
    return sorted(g.directed.edges), g.bidirected_edges()


# -- programs ---------------------------------------------------------------------------------
def confounded(n: int) -> None:
    """A latent root u confounds x and y; w is a noise-free mechanism."""
    u = numpyro.sample("u", dist.Normal(0.0, 1.0))
    with numpyro.plate("unit", n):
        x = numpyro.sample("x", dist.Normal(u, 1.0))
        y = numpyro.sample("y", dist.Normal(x + u, 1.0))
        numpyro.deterministic("w", 2.0 * y)


def mediated() -> None:
    """x -> m -> y with an observed root x: hiding m leaves x -> y."""
    x = numpyro.sample("x", dist.Normal(0.0, 1.0), obs=0.5)
    m = numpyro.sample("m", dist.Normal(x, 1.0))
    numpyro.sample("y", dist.Normal(m, 1.0))


def test_latent_confounder_site_becomes_a_bidirected_edge() -> None:
    g = admg(confounded, 3)
    assert g.nodes == ("x", "y", "w")  # the deterministic site w counts as a variable
    assert edges(g) == ([("x", "y"), ("y", "w")], [("x", "y")])
    # Node attributes of the program graph travel along (for plotting).
    assert g.directed.nodes["w"]["kind"] == "deterministic"


def test_unobserved_intermediate_becomes_a_directed_edge() -> None:
    # The observed root x is a variable by default; m is endogenous, so it stays ...
    assert edges(admg(mediated)) == ([("m", "y"), ("x", "m")], [])
    # ... unless it is left out of observed=.
    assert edges(admg(mediated, observed=["x", "y"])) == ([("x", "y")], [])


def test_observed_keeps_a_latent_root() -> None:
    g = admg(confounded, 3, observed=["u", "x", "y"])
    assert edges(g) == ([("u", "x"), ("u", "y"), ("x", "y")], [])


def test_program_errors() -> None:
    with pytest.raises(GraphError, match=r"Unknown observed variables \['q'\]"):
        admg(confounded, 3, observed=["x", "q"])
    with pytest.raises(GraphError, match="describe a user graph"):
        admg(confounded, 3, latent=["u"])
    with pytest.raises(GraphError, match="describe a user graph"):
        admg(confounded, 3, bidirected=[("x", "y")])
    with pytest.raises(GraphError, match="either observed= or latent="):
        admg(confounded, 3, observed=["x"], latent=["u"])
    with pytest.raises(GraphError, match="Could not trace"):
        admg(confounded)  # the program needs n


# -- user graphs and latent projection ----------------------------------------------------------
def test_user_graph_with_bidirected_and_latent() -> None:
    g = nx.DiGraph([("x", "y")])
    assert edges(admg(g, bidirected=[("y", "x")])) == ([("x", "y")], [("x", "y")])
    dag = nx.DiGraph([("u", "x"), ("u", "y"), ("x", "y")])
    assert edges(admg(dag, latent=["u"])) == ([("x", "y")], [("x", "y")])
    assert edges(admg(dag, observed=["x", "y"])) == ([("x", "y")], [("x", "y")])
    assert edges(admg(dag)) == ([("u", "x"), ("u", "y"), ("x", "y")], [])
    with pytest.raises(GraphError, match="only for a NumPyro program"):
        admg(dag, 3)


def test_bidirected_attribute_and_pairs_touching_latent_nodes() -> None:
    g = nx.DiGraph([("a", "l"), ("l", "b")])
    g.graph["bidirected"] = [("a", "b")]
    # a <-> l with l latent: the confounder of a and l reaches b through l.
    assert edges(admg(g, latent=["l"], bidirected=[("a", "l")])) == ([("a", "b")], [("a", "b")])
    assert edges(admg(g)) == ([("a", "l"), ("l", "b")], [("a", "b")])


def test_verma_pearl_projection() -> None:
    # u1 reaches x and y only through latent l1, l2; u2 -> a -> b: a is observed, so u2
    # confounds nothing. h is a hidden mediator of x -> h -> y; w -> h -> y gives w -> y.
    dag = nx.DiGraph(
        [
            ("u1", "l1"),
            ("u1", "l2"),
            ("l1", "x"),
            ("l2", "y"),
            ("u2", "a"),
            ("a", "b"),
            ("x", "h"),
            ("w", "h"),
            ("h", "y"),
        ]
    )
    g = latent_projection(dag, ["u1", "u2", "l1", "l2", "h"])
    assert set(g.nodes) == {"x", "y", "a", "b", "w"}
    assert edges(g) == ([("a", "b"), ("w", "y"), ("x", "y")], [("x", "y")])
    with pytest.raises(GraphError, match=r"Unknown latent nodes \['q'\]"):
        latent_projection(dag, ["q"])


def test_projection_of_an_admg() -> None:
    g = front_door()
    assert admg(g) is g
    assert edges(admg(g, latent=["m"])) == ([("x", "y")], [("x", "y")])
    # Hiding x leaves its confounder with y reaching m through x: m <-> y.
    assert edges(admg(g, observed=["m", "y"])) == ([("m", "y")], [("m", "y")])


# -- queries on an ADMG --------------------------------------------------------------------------
def test_structure_queries() -> None:
    g = ADMG(
        nx.DiGraph([("a", "b"), ("b", "c"), ("c", "d"), ("e", "d")]),
        [("a", "c"), ("c", "e"), ("b", "d")],
    )
    assert g.nodes == g.topological_order() == ("a", "b", "c", "e", "d")
    assert g.parents("d") == {"c", "e"} and g.children("b") == {"c"}
    assert g.siblings("c") == {"a", "e"}
    assert g.ancestors({"c"}) == {"a", "b", "c"}
    assert g.descendants("c") == {"c", "d"}
    assert g.districts() == (frozenset("ace"), frozenset("bd"))
    assert g.district_of("e") == frozenset("ace")
    assert len(g) == 5 and "a" in g and "z" not in g and list(g) == list(g.nodes)
    sub = g.subgraph(["a", "b", "c"])
    assert edges(sub) == ([("a", "b"), ("b", "c")], [("a", "c")])
    assert sub.districts() == (frozenset("ac"), frozenset("b"))


def test_mutilations() -> None:
    g = front_door()
    bar = g.cut_incoming(["m"])  # G with an overbar on m
    assert edges(bar) == ([("m", "y")], [("x", "y")])
    assert edges(g.cut_incoming("y")) == ([("x", "m")], [])  # x <-> y points into y
    assert edges(g.cut_outgoing(["m"])) == ([("x", "m")], [("x", "y")])
    assert edges(g) == ([("m", "y"), ("x", "m")], [("x", "y")])  # g itself unchanged


def test_m_separation_and_canonical_dag() -> None:
    g = front_door()
    dag, latents = g.to_dag()
    assert latents == {"U[x,y]": ("x", "y")}
    assert set(dag.edges) == {("x", "m"), ("m", "y"), ("U[x,y]", "x"), ("U[x,y]", "y")}
    assert g.m_separated({"x"}, {"y"}, {"m"}) is False
    assert g.cut_incoming("x").m_separated("x", "y", "m") is True
    # A node already named like the latent pushes the latent name aside.
    clash = ADMG(nx.DiGraph([("a", "U[a,b]"), ("U[a,b]", "b")]), [("a", "b")])
    assert list(clash.to_dag()[1]) == ["U[a,b]_"]


def test_to_digraph_round_trip_and_plot() -> None:
    g = front_door()
    d = g.to_digraph()
    assert d.graph["bidirected"] == [("x", "y")]
    d.add_edge("x", "y")  # a mutable copy
    assert ("x", "y") not in g.directed.edges
    assert ADMG.from_graph(g.to_digraph()) == g
    assert ADMG.from_graph(nx.DiGraph([("x", "y")]), [("x", "y")]) == admg(
        nx.DiGraph([("x", "y")]), bidirected=[("x", "y")]
    )
    ax = plot_graph(g.to_digraph(), title="front door")
    assert ax.get_title() == "front door"


# -- immutability and equality -------------------------------------------------------------------
def test_immutable_and_hashable() -> None:
    g = front_door()
    with pytest.raises(AttributeError, match="immutable"):
        g.bidirected = frozenset()  # type: ignore[misc]
    with pytest.raises(nx.NetworkXError, match="Frozen"):
        g.directed.add_edge("y", "x")
    assert g == front_door() and hash(g) == hash(front_door())
    assert g != g.cut_incoming("x") and g != "not a graph"
    assert copy.copy(g) == g and copy.deepcopy(g) == g
    assert pickle.loads(pickle.dumps(g)) == g
    assert repr(g) == (
        "ADMG(nodes=['x', 'm', 'y'], directed=[('m', 'y'), ('x', 'm')], bidirected=[('x', 'y')])"
    )


def test_inputs_are_not_mutated() -> None:
    g: nx.DiGraph = nx.DiGraph([("u", "x"), ("x", "y"), ("u", "y")])
    g.nodes["x"]["role"] = "endogenous"
    g.graph["bidirected"] = [("x", "y")]
    pairs = [["x", "y"]]
    before = (list(g.nodes(data=True)), list(g.edges), dict(g.graph), copy.deepcopy(pairs))
    a = ADMG.from_graph(g, pairs)
    admg(g, latent=["u"], bidirected=pairs)
    latent_projection(g, ["u"])
    a.cut_incoming("x").cut_outgoing("u").subgraph(["x", "y"]).to_dag()
    assert (list(g.nodes(data=True)), list(g.edges), dict(g.graph), pairs) == before
    # The ADMG holds a copy: changing the input later does not reach it.
    g.add_edge("y", "q")
    assert "q" not in a and a.directed is not g
    assert "bidirected" not in a.directed.graph  # the plotting attribute is not kept stale


# -- validation ----------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("directed", "bidirected", "match"),
    [
        (nx.Graph([("x", "y")]), (), "Expected a networkx.DiGraph.*got Graph"),
        ([("x", "y")], (), "Expected a networkx.DiGraph.*got list"),
        (nx.DiGraph([(1, 2)]), (), r"Node names must be strings; got \[1, 2\]"),
        (
            nx.DiGraph([("a", "b"), ("b", "c"), ("c", "a")]),
            (),
            r"directed cycle \[\('a', 'b'\), \('b', 'c'\), \('c', 'a'\)\]",
        ),
        (nx.DiGraph([("a", "a")]), (), r"directed cycle \[\('a', 'a'\)\]"),
        (nx.DiGraph([("x", "y")]), [("x", "q")], r"names \['q'\], which the graph does not"),
        (nx.DiGraph([("x", "y")]), [("x", "x")], "joins 'x' to itself"),
        (nx.DiGraph([("x", "y")]), [frozenset({"x"})], "joins 'x' to itself"),
        (nx.DiGraph([("x", "y")]), [("x", "y", "x")], "exactly two nodes"),
        (nx.DiGraph([("x", "y")]), ["xy"], "pair of node names"),
        (nx.DiGraph([("x", "y")]), [3], "pair of node names"),
    ],
)
def test_validation_errors(directed: Any, bidirected: Any, match: str) -> None:
    with pytest.raises(GraphError, match=match):
        ADMG(directed, bidirected)


def test_validation_errors_reach_the_constructors() -> None:
    cyclic = nx.DiGraph([("a", "b"), ("b", "a")])
    with pytest.raises(GraphError, match="directed cycle"):
        admg(cyclic)
    with pytest.raises(GraphError, match="directed cycle"):
        latent_projection(cyclic, [])
    with pytest.raises(GraphError, match=r"Expected a NumPyro program.*got Graph"):
        admg(nx.Graph([("a", "b")]))  # type: ignore[arg-type]
    with pytest.raises(GraphError, match=r"Expected a NumPyro program.*got list"):
        admg([("a", "b")])  # type: ignore[arg-type]
    with pytest.raises(GraphError, match=r"names \['q'\]"):
        admg(nx.DiGraph([("a", "b")]), bidirected=[("a", "q")])


def test_unknown_nodes_in_queries() -> None:
    g = front_door()
    for call in (
        lambda: g.parents("q"),
        lambda: g.children("q"),
        lambda: g.siblings("q"),
        lambda: g.ancestors(["x", "q"]),
        lambda: g.descendants("q"),
        lambda: g.district_of("q"),
        lambda: g.subgraph(["q"]),
        lambda: g.cut_incoming(["q"]),
        lambda: g.cut_outgoing(["q"]),
        lambda: g.m_separated("x", "q"),
    ):
        with pytest.raises(GraphError, match=r"Unknown node \['q'\]; the ADMG has nodes"):
            call()


def test_docstring_examples() -> None:
    assert doctest.testmod(importlib.import_module("scm_ppl.graphical.mixed_graph")).failed == 0
