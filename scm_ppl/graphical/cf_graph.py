"""The counterfactual graph of a query: ``make-cg`` of Shpitser & Pearl (JMLR 2008).

A counterfactual query speaks of several *worlds*, one per intervention: ``Y_{X=0} = 1``
is ``Y`` in the world where ``X`` is set to 0. The *parallel worlds graph* has one copy of
the ADMG per world; every copy of a variable keeps the variable's own noise and its
latent common causes, so copies of one variable, and copies of two variables joined by a
bidirected edge, share exogenous parents (drawn as bidirected edges). An intervened
variable becomes a constant in its world.

Many copies are the *same* random variable: copies of ``A`` whose parents are the same
nodes, or take the same value (by intervention, or because the query observes it), are
equal (Lemma 24 of the paper). Merging them in topological order, and keeping the
ancestors of the query's events, gives the *counterfactual graph*. Merging can reveal
that the events contradict themselves (``Y_{X=0} = 1`` and ``Y = 0`` with ``X = 0``
observed): the query then has probability 0 and the graph records why.

This module builds that graph; :mod:`scm_ppl.graphical.counterfactual_id` runs ID* and IDC* on it.
"""

from __future__ import annotations

import itertools
import operator
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import networkx as nx

from scm_ppl.errors import EvidenceError, GraphError, InterventionError
from scm_ppl.graphical.mixed_graph import ADMG

__all__ = ["CounterfactualGraph", "Event", "World", "make_cg", "parse_events", "world_label"]

World = tuple[tuple[str, int], ...]
"""An intervention ``do(...)``: sorted ``(variable, value)`` pairs; ``()`` is the factual world."""

Event = tuple[str, World, int]
"""``(variable, world, value)``: the variable takes the value in that world."""


def world_label(variable: str, world: World, order: dict[str, int]) -> str:
    """``Y_{X=0, Z=1}`` (interventions in topological order), or ``Y`` in the factual world."""
    if not world:
        return variable
    sub = ", ".join(f"{v}={x}" for v, x in sorted(world, key=lambda p: order[p[0]]))
    return f"{variable}_{{{sub}}}"


@dataclass
class _Node:
    variable: str
    parents: list[int]
    worlds: list[World]
    value: int | None = None  # the value the events give it, if any
    fixed: bool = False  # a constant: the variable is intervened on in its worlds


@dataclass
class CounterfactualGraph:
    """The counterfactual graph, as nodes with parents; constants are fixed nodes.

    Attributes
    ----------
    graph
        The ADMG the worlds copy.
    nodes
        Node id -> node. A random node stands for the copies of ``variable`` in
        ``worlds`` (merged); a fixed node for the value ``value`` that interventions give.
    query, given
        The nodes the query's events and the conditioning events are about.
    conflict
        Why the events cannot hold together, if they cannot (probability 0).
    """

    graph: ADMG
    nodes: dict[int, _Node] = field(default_factory=dict)
    query: set[int] = field(default_factory=set)
    given: set[int] = field(default_factory=set)
    conflict: str | None = None
    merge_on_query: bool = True

    # -- construction ----------------------------------------------------------------------
    def _order(self) -> dict[str, int]:
        return {v: i for i, v in enumerate(self.graph.topological_order())}

    def label(self, node: int) -> str:
        """``Y_{X=0}`` for a random node (its smallest world), ``X=0`` for a constant."""
        n = self.nodes[node]
        if n.fixed:
            return f"{n.variable}={n.value}"
        return world_label(n.variable, min(n.worlds, key=lambda w: (len(w), w)), self._order())

    def constant(self, variable: str, value: int) -> int:
        """The id of the constant ``variable = value`` (one node per pair)."""
        for i, n in self.nodes.items():
            if n.fixed and n.variable == variable and n.value == value:
                return i
        i = max(self.nodes, default=-1) + 1
        self.nodes[i] = _Node(variable, [], [], value, fixed=True)
        return i

    def _observe(self, node: int, value: int, what: str) -> None:
        n = self.nodes[node]
        if n.value is not None and n.value != value and self.conflict is None:
            self.conflict = (
                f"{what}: {self.label(node)} would have to be both {n.value} and {value}"
            )
        if n.value is None:
            n.value = value

    def random_nodes(self) -> list[int]:
        """The random (not fixed) nodes, parents before children."""
        order = self._order()
        ids = [i for i, n in self.nodes.items() if not n.fixed]
        return sorted(ids, key=lambda i: (order[self.nodes[i].variable], i))

    def merge(self) -> None:
        """Merge the copies that are the same random variable (Lemma 24), in topological
        order so that merged parents make their children mergeable."""
        for variable in self.graph.topological_order():
            groups: dict[tuple, list[int]] = {}
            for i in self.random_nodes():
                if self.nodes[i].variable == variable:
                    groups.setdefault(self._parent_key(i), []).append(i)
            for members in groups.values():
                for other in members[1:]:
                    self._absorb(members[0], other)

    def _parent_key(self, node: int) -> tuple:
        # A parent whose value is known (a constant, or a node the events observe) counts
        # by that value: two copies whose parents take the same values are one variable.
        key = []
        for p in self.nodes[node].parents:
            parent = self.nodes[p]
            known = parent.fixed or self.merge_on_query or p in self.given
            key.append(("=", parent.value) if known and parent.value is not None else ("node", p))
        return tuple(key)

    def _absorb(self, keep: int, gone: int) -> None:
        a, b = self.nodes[keep], self.nodes[gone]
        why = (
            f"{self.label(gone)} and {self.label(keep)} are the same variable (their "
            "parents are the same or take the same values)"
        )
        # Prefer random parents: the constants they replace then drop out of the graph.
        a.parents = [
            q if self.nodes[p].fixed and not self.nodes[q].fixed else p
            for p, q in zip(a.parents, b.parents, strict=True)
        ]
        a.worlds = sorted(set(a.worlds) | set(b.worlds), key=lambda w: (len(w), w))
        if b.value is not None:
            self._observe(keep, b.value, why)
        for n in self.nodes.values():
            n.parents = [keep if p == gone else p for p in n.parents]
        for events in (self.query, self.given):
            if gone in events:
                events.discard(gone)
                events.add(keep)
        del self.nodes[gone]

    def prune(self) -> None:
        """Keep the ancestors of the events' nodes (and the constants they read)."""
        keep, stack = set(), [*self.query, *self.given]
        while stack:
            i = stack.pop()
            if i not in keep:
                keep.add(i)
                stack.extend(self.nodes[i].parents)
        self.nodes = {i: n for i, n in self.nodes.items() if i in keep}

    def fix(self, node: int) -> None:
        """Turn a conditioning node into a constant at its observed value (rule 2 of the
        do-calculus applied inside the counterfactual graph)."""
        n = self.nodes[node]
        assert n.value is not None
        const = self.constant(n.variable, n.value)
        for other in self.nodes.values():
            other.parents = [const if p == node else p for p in other.parents]
        self.given.discard(node)
        del self.nodes[node]
        self.merge()
        self.prune()

    # -- structure -------------------------------------------------------------------------
    def confounded(self, a: int, b: int) -> bool:
        """Whether two random nodes share exogenous noise: copies of one variable share
        its own noise, copies of two variables joined by a bidirected edge their latent."""
        va, vb = self.nodes[a].variable, self.nodes[b].variable
        return va == vb or frozenset((va, vb)) in self.graph.bidirected

    def districts(self) -> list[list[int]]:
        """The c-components of the random nodes, each parents-first."""
        nodes, seen, found = self.random_nodes(), set(), []
        for start in nodes:
            if start in seen:
                continue
            part, stack = {start}, [start]
            while stack:
                a = stack.pop()
                for b in nodes:
                    if b not in part and self.confounded(a, b):
                        part.add(b)
                        stack.append(b)
            seen |= part
            found.append([i for i in nodes if i in part])
        return found

    def d_separated(self, a: int, bs: set[int], given: set[int]) -> bool:
        """Whether ``a`` is d-separated from ``bs`` given ``given`` once the edges out of
        ``a`` are cut (constants are fixed values: they carry no dependence)."""
        dag = nx.DiGraph()
        nodes = self.random_nodes()
        dag.add_nodes_from(nodes)
        dag.add_edges_from(
            (p, i) for i in nodes for p in self.nodes[i].parents if p in dag and p != a
        )
        for x, y in itertools.combinations(nodes, 2):
            if self.confounded(x, y):
                dag.add_edges_from([(("u", x, y), x), (("u", x, y), y)])
        return bool(nx.is_d_separator(dag, {a}, set(bs), set(given)))

    def to_networkx(self) -> nx.DiGraph:
        """The graph for plotting: nodes labelled ``Y_{X=0}`` (constants ``X=0``),
        ``graph["bidirected"]`` the confounded pairs. Node attributes: ``variable``,
        ``worlds``, ``value`` (the event's value or None), ``fixed``, ``event`` ("query",
        "given" or None)."""
        out = nx.DiGraph()
        order = self._order()
        for i in sorted(self.nodes, key=lambda i: (order[self.nodes[i].variable], i)):
            n = self.nodes[i]
            event = "query" if i in self.query else "given" if i in self.given else None
            out.add_node(
                self.label(i),
                variable=n.variable,
                worlds=[world_label(n.variable, w, order) for w in n.worlds],
                value=n.value,
                fixed=n.fixed,
                event=event,
                observed=True,
                role="endogenous",
            )
        for i, n in self.nodes.items():
            out.add_edges_from((self.label(p), self.label(i)) for p in n.parents)
        out.graph["bidirected"] = [
            (self.label(a), self.label(b))
            for a, b in itertools.combinations(self.random_nodes(), 2)
            if self.confounded(a, b)
        ]
        return out


def make_cg(
    g: ADMG,
    query: Sequence[Event],
    given: Sequence[Event] = (),
    *,
    merge_on_query: bool = True,
) -> CounterfactualGraph:
    """The counterfactual graph of the events ``query`` and ``given`` on the ADMG ``g``.

    Events on a variable intervened on in its own world must have been removed (or
    rejected) before; see :func:`scm_ppl.graphical.counterfactual_id.identify_counterfactual`.
    With ``merge_on_query=False`` only the values of ``given`` and of interventions
    merge copies, so that the graph serves every value of the query's variables (IDC*
    divides by a sum over them).

    Examples
    --------
    >>> import networkx as nx
    >>> from scm_ppl.graphical.mixed_graph import ADMG
    >>> from scm_ppl.graphical.cf_graph import make_cg
    >>> g = ADMG(nx.DiGraph([("Z", "X"), ("Z", "Y"), ("X", "Y")]))
    >>> cg = make_cg(g, [("Y", (("X", 0),), 1)], [("X", (), 1)])
    >>> sorted(cg.to_networkx().nodes)  # Z is the same in both worlds
    ['X', 'X=0', 'Y_{X=0}', 'Z']
    """
    cg = CounterfactualGraph(g, merge_on_query=merge_on_query)
    worlds = list(dict.fromkeys(w for _, w, _ in [*query, *given]))
    parents = {v: sorted(g.parents(v), key=g.topological_order().index) for v in g}
    copies: dict[tuple[World, str], int] = {}
    for world in worlds:
        fixed = dict(world)
        for v in g.topological_order():
            if v in fixed:
                copies[world, v] = cg.constant(v, fixed[v])
            else:
                i = max(cg.nodes, default=-1) + 1
                cg.nodes[i] = _Node(v, [copies[world, p] for p in parents[v]], [world])
                copies[world, v] = i
    for events, store in ((query, cg.query), (given, cg.given)):
        for variable, world, value in events:
            node = copies[world, variable]
            cg._observe(node, value, "The events contradict each other")
            store.add(node)
    cg.merge()
    cg.prune()
    return cg


def parse_events(
    query: Any, g: ADMG, where: str, order: dict[str, int]
) -> tuple[list[Event], list[str], list[tuple[str, int]]]:
    """Events, their text, and the (variable, value) pairs in order of appearance."""
    if isinstance(query, tuple) and len(query) == 2 and isinstance(query[1], Mapping):
        query = [query]
    if not isinstance(query, Sequence) or isinstance(query, str):
        raise InterventionError(
            f"{where} must be a list of (interventions, events) pairs such as "
            f"[({{'X': 0}}, {{'Y': 1}})]; got {query!r}."
        )
    events, text, seen = [], [], []
    for item in query:
        if not (isinstance(item, tuple | list) and len(item) == 2):
            raise InterventionError(
                f"Each entry of {where} is an (interventions, events) pair; got {item!r}."
            )
        world: dict[str, int] = {}
        raw_iv = item[0].items() if isinstance(item[0], Mapping) else item[0]
        raw_ev = item[1].items() if isinstance(item[1], Mapping) else item[1]
        for var, value in raw_iv:
            _check(g, var, value, where, InterventionError)
            if world.get(var, value) != value:
                raise InterventionError(
                    f"A world of {where} intervenes on {var!r} twice, with {world[var]} and "
                    f"{value}; one world sets a variable once. Put the second value in "
                    "another world (another (interventions, events) pair)."
                )
            world[var] = int(value)
        w: World = tuple(sorted(world.items()))
        for var, value in raw_ev:
            _check(g, var, value, where, EvidenceError)
            seen.append((var, int(value)))
            if var in world:
                if world[var] != value:
                    raise InterventionError(
                        f"The world do({world}) of {where} sets {var!r} to {world[var]}, and "
                        f"its event asks for {var!r} = {value}: that event is inconsistent "
                        "(probability 0 by effectiveness). Ask about the variable in "
                        "another world, or drop the event."
                    )
                continue  # X_{X=x} = x always holds
            events.append((var, w, int(value)))
            text.append(f"{world_label(var, w, order)}={value}")
        seen.extend(world.items())
    return events, text, seen


def _check(g: ADMG, var: Any, value: Any, where: str, error: type[Exception]) -> None:
    if var not in g:
        raise GraphError(
            f"Unknown variable {var!r} in {where}; the graph's variables are {list(g.nodes)}."
        )
    if not hasattr(value, "__index__") or operator.index(value) < 0:
        raise error(
            f"The value {value!r} of {var!r} in {where} must be a non-negative integer "
            "code (0, 1, ..., k-1), as in a DiscreteJoint."
        )
