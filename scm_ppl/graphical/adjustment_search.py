"""The graph machinery behind :mod:`scm_ppl.graphical.adjustment`: criteria as predicates,
and search.

:func:`latent_dag` makes each bidirected pair an explicit hidden parent; every other
function works on that DAG, with ``x`` and ``y`` frozensets of nodes (single nodes for the
front-door functions) that :mod:`scm_ppl.graphical.adjustment` has already validated.

* :func:`backdoor_test`, :func:`adjustment_test` and :func:`frontdoor_test` turn a query
  into a predicate on candidate sets (d-separation checks on cut graphs).
* :func:`search` enumerates subsets of a pool in increasing size, keeping the valid (or
  only the minimal valid) ones; :func:`smallest` stops at the first valid one.
* :func:`smallest_backdoor` finds a smallest back-door set in polynomial time, a minimum
  vertex cut of the moral back-door graph.
* :func:`backdoor_pool` and :func:`frontdoor_pool` bound the nodes a minimal set can hold.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import networkx as nx

from scm_ppl.errors import GraphError

__all__ = [
    "Pairs",
    "adjustment_test",
    "backdoor_pool",
    "backdoor_test",
    "cut",
    "descendants",
    "frontdoor_pool",
    "frontdoor_test",
    "latent_dag",
    "moral_backdoor",
    "search",
    "separated",
    "smallest",
    "smallest_backdoor",
]


Pairs = Iterable[tuple[str, str]]


@dataclass(frozen=True)
class _Latent:
    """The hidden common cause of a bidirected pair: never equal to a user's node."""

    a: str
    b: str


def latent_dag(graph: nx.DiGraph, bidirected: Pairs) -> nx.DiGraph:
    """A new DAG: ``graph`` plus one latent parent per bidirected pair."""
    if not isinstance(graph, nx.DiGraph):
        raise GraphError(
            f"A causal graph must be a networkx.DiGraph; got {type(graph).__name__}. "
            "Build one with networkx.DiGraph(edges)."
        )
    # Pairs the graph itself carries (ADMG.to_digraph, plot-ready graphs) count too.
    bidirected = [*graph.graph.get("bidirected", ()), *bidirected]
    if not nx.is_directed_acyclic_graph(graph):
        cycle = [str(edge[0]) for edge in nx.find_cycle(graph)]
        raise GraphError(
            f"The graph has a cycle {' -> '.join([*cycle, cycle[0]])}; a causal graph "
            "must be acyclic."
        )
    dag = nx.DiGraph()
    dag.add_nodes_from(graph.nodes)
    dag.add_edges_from((u, v) for u, v, *_ in graph.edges)
    for item in bidirected:
        pair = () if isinstance(item, str) else tuple(item)
        if len(pair) != 2 or pair[0] == pair[1]:
            raise GraphError(
                f"A bidirected edge must be a pair of two distinct nodes (a, b); got {item!r}."
            )
        absent = [node for node in pair if node not in graph]
        if absent:
            raise GraphError(
                f"The bidirected edge {pair!r} names {absent}, which the graph does not have; "
                f"its nodes are {sorted(map(str, graph.nodes))}."
            )
        a, b = sorted(pair, key=str)
        dag.add_edges_from([(_Latent(a, b), a), (_Latent(a, b), b)])
    return dag


def descendants(dag: nx.DiGraph, nodes: Iterable[Any]) -> set:
    return set().union(*(nx.descendants(dag, node) for node in nodes))


def cut(dag: nx.DiGraph, edges: Iterable[tuple[Any, Any]]) -> nx.DiGraph:
    out = dag.copy()
    out.remove_edges_from(list(edges))
    return out


def backdoor_test(dag: nx.DiGraph, x: frozenset, y: frozenset) -> Callable[[frozenset], bool]:
    """Pearl's back-door criterion: no descendant of X, and X ⊥ Y | Z once X's out-edges go."""
    forbidden = descendants(dag, x)
    backdoor_graph = cut(dag, dag.out_edges(x))
    return lambda z: not z & forbidden and nx.is_d_separator(backdoor_graph, x, y, z)


def adjustment_test(dag: nx.DiGraph, x: frozenset, y: frozenset) -> Callable[[frozenset], bool]:
    """The constructive adjustment criterion (van der Zander, Liśkiewicz & Textor 2019)."""
    reach = descendants(cut(dag, dag.in_edges(x)), x) - x
    ancestors = set(y) | set().union(*(nx.ancestors(cut(dag, dag.out_edges(x)), v) for v in y))
    causal = reach & ancestors  # nodes on proper causal paths, X excluded
    forbidden = causal | descendants(dag, causal)
    proper = cut(dag, [(a, b) for a, b in dag.out_edges(x) if b in causal])
    return lambda z: not z & forbidden and nx.is_d_separator(proper, x, y, z)


def frontdoor_test(dag: nx.DiGraph, x: Any, y: Any) -> Callable[[frozenset], bool]:
    """Pearl's front-door criterion (Causality, def. 3.3.3), the last clause set-wise."""
    no_out_x = cut(dag, dag.out_edges(x))

    def test(m: frozenset) -> bool:
        if nx.has_path(dag.subgraph(n for n in dag if n not in m), x, y):
            return False  # (i) a directed path from x to y avoids m
        if not m:
            return True
        if not nx.is_d_separator(no_out_x, {x}, m, set()):
            return False  # (ii) an open back-door path from x to m
        return nx.is_d_separator(cut(dag, dag.out_edges(m)), m, {y}, {x})  # (iii)

    return test


def backdoor_pool(dag: nx.DiGraph, graph: nx.DiGraph, x: frozenset, y: frozenset) -> set:
    """Observed non-descendants of X in An(X ∪ Y): they hold every minimal back-door set."""
    ancestors = set().union(*(nx.ancestors(dag, v) for v in x | y))
    return (set(graph) & ancestors) - x - y - descendants(dag, x)


def moral_backdoor(dag: nx.DiGraph, x: frozenset, y: frozenset) -> dict[Any, list[Any]]:
    """The moral graph of An(X ∪ Y) without X's out-edges, as sorted adjacency lists: a set
    Z ⊆ An(X ∪ Y) d-separates X and Y in the back-door graph iff it separates them here."""
    keep = x | y | set().union(*(nx.ancestors(dag, v) for v in x | y))
    moral = nx.moral_graph(cut(dag, dag.out_edges(x)).subgraph(keep))
    return {v: sorted(moral[v], key=str) for v in sorted(moral, key=str)}


def separated(adjacency: dict[Any, list[Any]], x: frozenset, y: frozenset, z: frozenset) -> bool:
    seen, stack = set(x), list(x)
    while stack:
        for w in adjacency[stack.pop()]:
            if w in y:
                return False
            if w not in seen and w not in z:
                seen.add(w)
                stack.append(w)
    return True


def smallest_backdoor(
    dag: nx.DiGraph, graph: nx.DiGraph, x: frozenset, y: frozenset
) -> frozenset[str] | None:
    """A smallest back-door set, or None: a minimum vertex cut of the moral back-door graph
    through the nodes of the pool (polynomial time)."""
    pool, adjacency = backdoor_pool(dag, graph, x, y), moral_backdoor(dag, x, y)
    flow, source, sink = nx.DiGraph(), object(), object()
    for v, neighbours in adjacency.items():
        flow.add_edge((v, 0), (v, 1), **({"capacity": 1} if v in pool else {}))
        flow.add_edges_from(((v, 1), (w, 0)) for w in neighbours)
    flow.add_edges_from([(source, (v, 0)) for v in sorted(x)] + [((v, 1), sink) for v in sorted(y)])
    try:
        _, (reached, _) = nx.minimum_cut(flow, source, sink)
    except nx.NetworkXUnbounded:  # a path through nodes that may not be cut
        return None
    return frozenset(v for v in pool if (v, 0) in reached and (v, 1) not in reached)


def frontdoor_pool(dag: nx.DiGraph, graph: nx.DiGraph, x: Any, y: Any) -> set:
    """A set holding every minimal front-door set; empty when none exists.

    A minimal set lies in An(y) among the nodes that pass (ii) alone. Dropping the nodes that
    fail (iii) within the current set, until none does, never drops a node of a valid set,
    so a set exists iff what is left meets (i).
    """
    no_out_x = cut(dag, dag.out_edges(x))
    pool = {v for v in set(graph) & nx.ancestors(dag, y) if v != x}
    pool = {v for v in pool if nx.is_d_separator(no_out_x, {x}, {v}, set())}
    while True:
        no_out_pool = cut(dag, dag.out_edges(pool))
        bad = {m for m in pool if not nx.is_d_separator(no_out_pool, {m}, {y}, {x})}
        if not bad:
            return set() if nx.has_path(dag.subgraph(set(dag) - pool), x, y) else pool
        pool -= bad


def search(
    pool: Iterable[Any], test: Callable[[frozenset], bool], minimal: bool, max_size: int | None
) -> list[frozenset[str]]:
    """The valid subsets, smallest first; with ``minimal`` those with no valid proper subset."""
    pool = sorted(pool, key=str)
    top = len(pool) if max_size is None else min(max_size, len(pool))
    found: list[frozenset[str]] = []
    for size in range(top + 1):
        for combo in itertools.combinations(pool, size):
            z = frozenset(combo)
            if not (minimal and any(f <= z for f in found)) and test(z):
                found.append(z)
        if minimal and frozenset() in found:
            break  # every other set contains it
    return found


def smallest(pool: Iterable[Any], test: Callable[[frozenset], bool]) -> frozenset[str] | None:
    """The first valid subset of ``pool`` in increasing size (sorted order within a size)."""
    pool = sorted(pool, key=str)
    for size in range(len(pool) + 1):
        for combo in itertools.combinations(pool, size):
            if test(frozenset(combo)):
                return frozenset(combo)
    return None
