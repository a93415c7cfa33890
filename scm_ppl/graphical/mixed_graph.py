"""Acyclic directed mixed graphs (ADMGs): the graphs that identification works on.

An ADMG has a node for every observed variable, a directed edge ``a -> b`` for a direct
cause, and a bidirected edge ``a <-> b`` for a latent common cause. It is what is left of a
causal DAG with latent variables after *latent projection* (Verma & Pearl, 1990): the
latent nodes are removed and

* ``a -> b`` whenever a directed path ``a -> ... -> b`` has only latent intermediate nodes;
* ``a <-> b`` whenever some latent node has directed paths to ``a`` and to ``b`` whose
  intermediate nodes are all latent (a latent root with two children is the simplest case).

Projection keeps every m-separation and every identification answer among the observed
variables, so the ID algorithm needs nothing else (Tian & Pearl, 2002).
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterable, Iterator
from typing import Any

import networkx as nx

from scm_ppl.core.causal_graph import graph, topological_sites
from scm_ppl.errors import GraphError

__all__ = ["ADMG", "admg", "latent_projection"]


def _pairs(bidirected: Iterable[Any], nodes: nx.DiGraph) -> frozenset[frozenset[str]]:
    """Validate bidirected pairs against the nodes of ``nodes``; unordered and deduplicated."""
    pairs = set()
    for pair in bidirected:
        if isinstance(pair, str) or not isinstance(pair, Iterable):
            raise GraphError(
                f"A bidirected edge must be a pair of node names such as ('x', 'y'); got {pair!r}."
            )
        ends = list(pair)
        if len(set(ends)) == 1 and len(ends) in (1, 2):
            raise GraphError(
                f"Bidirected edge {pair!r} joins {ends[0]!r} to itself; a bidirected edge "
                "stands for a latent common cause of two different nodes."
            )
        if len(ends) != 2:
            raise GraphError(f"A bidirected edge must name exactly two nodes; got {pair!r}.")
        absent = [end for end in ends if end not in nodes]
        if absent:
            raise GraphError(
                f"Bidirected edge {tuple(ends)!r} names {absent}, which the graph does not "
                f"have; its nodes are {sorted(map(str, nodes))}."
            )
        pairs.add(frozenset(ends))
    return frozenset(pairs)


def _checked_digraph(directed: Any) -> nx.DiGraph:
    """A copy of ``directed`` after checking its type, node names and acyclicity."""
    if not isinstance(directed, nx.DiGraph):
        raise GraphError(
            f"Expected a networkx.DiGraph for the directed part of the graph; got "
            f"{type(directed).__name__}. Build one with networkx.DiGraph([('x', 'y'), ...])."
        )
    bad = [node for node in directed if not isinstance(node, str)]
    if bad:
        raise GraphError(
            f"Node names must be strings; got {bad[:5]!r}. Relabel them first, e.g. with "
            "networkx.relabel_nodes(g, str)."
        )
    # nx.DiGraph(g) also collapses the parallel edges of a MultiDiGraph.
    copy = nx.DiGraph(directed)
    if not nx.is_directed_acyclic_graph(copy):
        cycle = [edge[:2] for edge in nx.find_cycle(copy)]
        raise GraphError(
            f"The graph has a directed cycle {cycle}; an ADMG must be acyclic. Remove an "
            "edge of the cycle or model the feedback over time."
        )
    return copy


class ADMG:
    """An acyclic directed mixed graph over observed variables; immutable.

    Parameters
    ----------
    directed
        The directed edges, as a ``networkx.DiGraph`` whose nodes are the observed
        variables (strings). It is copied and frozen; node attributes are kept.
    bidirected
        Pairs of nodes that share a latent common cause, e.g. ``[("x", "y")]``.

    Attributes
    ----------
    directed : networkx.DiGraph
        The frozen directed part.
    bidirected : frozenset of frozenset of str
        The bidirected pairs.

    Raises
    ------
    GraphError
        If ``directed`` is not a DiGraph, has non-string node names or a directed cycle,
        or a bidirected pair names an absent node or one node twice.

    Examples
    --------
    >>> import networkx as nx
    >>> from scm_ppl.graphical.mixed_graph import ADMG
    >>> g = ADMG(nx.DiGraph([("x", "m"), ("m", "y")]), bidirected=[("x", "y")])
    >>> [sorted(d) for d in g.districts()]
    [['x', 'y'], ['m']]
    >>> sorted(g.ancestors({"y"}))
    ['m', 'x', 'y']
    """

    __slots__ = ("_bidirected", "_directed", "_order", "_siblings")
    _directed: nx.DiGraph
    _bidirected: frozenset[frozenset[str]]
    _order: tuple[str, ...]
    _siblings: dict[str, frozenset[str]]

    def __init__(self, directed: nx.DiGraph, bidirected: Iterable[Any] = ()) -> None:
        frozen = _checked_digraph(directed)
        # The plotting attribute would go stale; the pairs live in ``bidirected``.
        frozen.graph.pop("bidirected", None)
        nx.freeze(frozen)
        pairs = _pairs(bidirected, frozen)
        siblings: dict[str, set[str]] = {node: set() for node in frozen}
        for a, b in map(tuple, pairs):
            siblings[a].add(b)
            siblings[b].add(a)
        # object.__setattr__: __setattr__ below refuses every assignment.
        object.__setattr__(self, "_directed", frozen)
        object.__setattr__(self, "_bidirected", pairs)
        object.__setattr__(self, "_order", tuple(topological_sites(frozen)))
        object.__setattr__(self, "_siblings", {n: frozenset(s) for n, s in siblings.items()})

    def __setattr__(self, name: str, value: Any) -> None:
        raise AttributeError(f"ADMG is immutable; cannot set {name!r}. Build a new one.")

    def __reduce__(self) -> tuple[Any, ...]:
        # Rebuild through __init__ (copy, deepcopy, pickle): it validates and refreezes.
        return (ADMG, (nx.DiGraph(self._directed), [tuple(p) for p in self._bidirected]))

    @property
    def directed(self) -> nx.DiGraph:
        """The directed part, a frozen ``networkx.DiGraph``."""
        return self._directed

    @property
    def bidirected(self) -> frozenset[frozenset[str]]:
        """The bidirected pairs, each an unordered ``frozenset`` of two nodes."""
        return self._bidirected

    @classmethod
    def from_graph(cls, digraph: nx.DiGraph, bidirected: Iterable[Any] = ()) -> ADMG:
        """An ADMG from a DiGraph plus bidirected pairs; pairs listed in
        ``digraph.graph["bidirected"]`` (as written by :meth:`to_digraph`) are added too.

        Examples
        --------
        >>> import networkx as nx
        >>> from scm_ppl.graphical.mixed_graph import ADMG
        >>> g = ADMG.from_graph(nx.DiGraph([("x", "y")]), [("x", "y")])
        >>> ADMG.from_graph(g.to_digraph()) == g
        True
        """
        extra = digraph.graph.get("bidirected", []) if isinstance(digraph, nx.DiGraph) else []
        return cls(digraph, [*extra, *bidirected])

    # -- basic views ---------------------------------------------------------------------
    @property
    def nodes(self) -> tuple[str, ...]:
        """The nodes in a topological order (ties broken by insertion order)."""
        return self._order

    def topological_order(self) -> tuple[str, ...]:
        """The nodes, each after all of its parents (the same tuple as :attr:`nodes`)."""
        return self._order

    def bidirected_edges(self) -> list[tuple[str, str]]:
        """The bidirected pairs as tuples, each and the list in topological order."""
        position = {node: i for i, node in enumerate(self._order)}
        edges = [sorted(pair, key=position.__getitem__) for pair in self.bidirected]
        return [(a, b) for a, b in sorted(edges, key=lambda e: [position[n] for n in e])]

    def _check(self, nodes: Iterable[str], what: str = "node") -> frozenset[str]:
        names = frozenset([nodes] if isinstance(nodes, str) else nodes)
        unknown = sorted(map(str, names - set(self._order)))
        if unknown:
            raise GraphError(f"Unknown {what} {unknown}; the ADMG has nodes {sorted(self._order)}.")
        return names

    def parents(self, node: str) -> frozenset[str]:
        """The nodes with a directed edge into ``node``."""
        self._check([node])
        return frozenset(self.directed.predecessors(node))

    def children(self, node: str) -> frozenset[str]:
        """The nodes with a directed edge out of ``node``."""
        self._check([node])
        return frozenset(self.directed.successors(node))

    def siblings(self, node: str) -> frozenset[str]:
        """The nodes joined to ``node`` by a bidirected edge."""
        self._check([node])
        return self._siblings[node]

    def ancestors(self, nodes: Iterable[str]) -> frozenset[str]:
        """``nodes`` and every node with a directed path into one of them."""
        return self._closure(self._check(nodes), self.directed.predecessors)

    def descendants(self, nodes: Iterable[str]) -> frozenset[str]:
        """``nodes`` and every node with a directed path from one of them."""
        return self._closure(self._check(nodes), self.directed.successors)

    @staticmethod
    def _closure(start: frozenset[str], step: Callable[[str], Iterable[str]]) -> frozenset[str]:
        seen, stack = set(start), list(start)
        while stack:
            for nxt in step(stack.pop()):
                if nxt not in seen:
                    seen.add(nxt)
                    stack.append(nxt)
        return frozenset(seen)

    # -- c-components --------------------------------------------------------------------
    def districts(self) -> tuple[frozenset[str], ...]:
        """The districts (c-components): the connected components of the bidirected part.

        Ordered by the topological position of their first node.
        """
        seen: set[str] = set()
        found = []
        for node in self._order:
            if node not in seen:
                district = self._closure(frozenset([node]), self._siblings.__getitem__)
                seen |= district
                found.append(district)
        return tuple(found)

    def district_of(self, node: str) -> frozenset[str]:
        """The district (c-component) that contains ``node``."""
        return self._closure(self._check([node]), self._siblings.__getitem__)

    # -- new graphs ----------------------------------------------------------------------
    def subgraph(self, nodes: Iterable[str]) -> ADMG:
        """The ADMG induced on ``nodes``: every edge with both ends in ``nodes``."""
        keep = self._check(nodes)
        pairs = [pair for pair in self.bidirected if pair <= keep]
        return ADMG(self.directed.subgraph(keep).copy(), pairs)

    def cut_incoming(self, nodes: Iterable[str]) -> ADMG:
        """``G`` with an overbar on ``nodes``: every edge into them removed.

        Directed edges into ``nodes`` and bidirected edges touching them go; this is the
        graph of the program after ``do(nodes)``.
        """
        cut = self._check(nodes)
        directed = nx.DiGraph(self.directed)
        directed.remove_edges_from([(a, b) for a, b in self.directed.edges if b in cut])
        return ADMG(directed, [pair for pair in self.bidirected if not pair & cut])

    def cut_outgoing(self, nodes: Iterable[str]) -> ADMG:
        """``G`` with an underbar on ``nodes``: every directed edge out of them removed."""
        cut = self._check(nodes)
        directed = nx.DiGraph(self.directed)
        directed.remove_edges_from([(a, b) for a, b in self.directed.edges if a in cut])
        return ADMG(directed, self.bidirected)

    def to_digraph(self) -> nx.DiGraph:
        """A mutable copy of :attr:`directed` with ``graph["bidirected"]`` set, for plotting.

        :func:`scm_ppl.plotting.figures.plot_graph` draws those pairs dashed and curved.
        """
        g = nx.DiGraph(self.directed)
        g.graph["bidirected"] = self.bidirected_edges()
        # Every node of an ADMG is an observed variable (latents became edges): draw it so,
        # whatever role the site had in the program it was projected from.
        for node in g.nodes:
            g.nodes[node].update(observed=True, role="endogenous")
        return g

    def to_dag(self) -> tuple[nx.DiGraph, dict[str, tuple[str, str]]]:
        """The canonical DAG: one explicit latent parent per bidirected edge.

        Returns
        -------
        (networkx.DiGraph, dict)
            The DAG and a map from each added latent node to the pair it confounds. Latent
            names are ``"U[a,b]"``, lengthened with underscores if a node already has it.
        """
        dag = nx.DiGraph(self.directed)
        latents = {}
        for a, b in self.bidirected_edges():
            name = f"U[{a},{b}]"
            while name in dag:
                name += "_"
            dag.add_edge(name, a)
            dag.add_edge(name, b)
            latents[name] = (a, b)
        return dag, latents

    def m_separated(self, xs: Iterable[str], ys: Iterable[str], given: Iterable[str] = ()) -> bool:
        """Whether ``xs`` and ``ys`` are m-separated given ``given`` (d-separation in the
        canonical DAG, by :func:`networkx.is_d_separator`).

        Examples
        --------
        >>> import networkx as nx
        >>> from scm_ppl.graphical.mixed_graph import ADMG
        >>> g = ADMG(nx.DiGraph([("x", "m"), ("m", "y")]), [("x", "y")])
        >>> g.m_separated({"x"}, {"y"}, {"m"})
        False
        """
        a, b, c = self._check(xs), self._check(ys), self._check(given)
        return bool(nx.is_d_separator(self.to_dag()[0], set(a), set(b), set(c)))

    # -- dunder --------------------------------------------------------------------------
    def __contains__(self, node: object) -> bool:
        return node in self.directed

    def __iter__(self) -> Iterator[str]:
        return iter(self._order)

    def __len__(self) -> int:
        return len(self._order)

    def _key(self) -> tuple[frozenset[str], frozenset[tuple[str, str]], frozenset[Any]]:
        return frozenset(self._order), frozenset(self.directed.edges), self.bidirected

    def __eq__(self, other: object) -> bool:
        return isinstance(other, ADMG) and self._key() == other._key()

    def __hash__(self) -> int:
        return hash(self._key())

    def __repr__(self) -> str:
        return (
            f"ADMG(nodes={list(self._order)}, directed={sorted(self.directed.edges)}, "
            f"bidirected={self.bidirected_edges()})"
        )


def latent_projection(g: nx.DiGraph, latent: Iterable[str]) -> ADMG:
    """The latent projection of a DAG onto its nodes that are not ``latent``.

    Parameters
    ----------
    g
        A DAG; node attributes of the kept nodes are kept. ``g`` is not modified.
    latent
        The nodes to project out.

    Returns
    -------
    ADMG
        ``a -> b`` for each directed path from ``a`` to ``b`` through latent nodes only;
        ``a <-> b`` for each latent node with such paths to both ``a`` and ``b``.

    Examples
    --------
    >>> import networkx as nx
    >>> from scm_ppl.graphical.mixed_graph import latent_projection
    >>> dag = nx.DiGraph([("u", "x"), ("u", "y"), ("x", "l"), ("l", "y")])
    >>> latent_projection(dag, ["u", "l"])
    ADMG(nodes=['x', 'y'], directed=[('x', 'y')], bidirected=[('x', 'y')])
    """
    dag = _checked_digraph(g)
    hidden = frozenset(latent)
    unknown = sorted(map(str, hidden - set(dag)))
    if unknown:
        raise GraphError(f"Unknown latent nodes {unknown}; the graph has nodes {sorted(dag)}.")

    def reach(start: str) -> set[str]:
        """Observed nodes reached from ``start`` through latent nodes only."""
        seen, stack, found = set(), list(dag.successors(start)), set()
        while stack:
            node = stack.pop()
            if node in seen:
                continue
            seen.add(node)
            if node in hidden:
                stack.extend(dag.successors(node))
            else:
                found.add(node)
        return found

    directed = nx.DiGraph()
    directed.add_nodes_from((n, dag.nodes[n]) for n in dag if n not in hidden)
    directed.add_edges_from((a, b) for a in directed for b in reach(a))
    pairs = {frozenset(p) for u in hidden for p in itertools.combinations(sorted(reach(u)), 2)}
    return ADMG(directed, pairs)


def _default_latent(g: nx.DiGraph) -> set[str]:
    """Exogenous sample sites that the program does not observe: noise, latent roots."""
    return {
        node
        for node, data in g.nodes(data=True)
        if data.get("role") == "exogenous" and data.get("observed") is False
    }


def admg(
    source: Callable[..., Any] | nx.DiGraph | ADMG,
    /,
    *args: Any,
    observed: Iterable[str] | None = None,
    latent: Iterable[str] | None = None,
    bidirected: Iterable[Any] = (),
    **kwargs: Any,
) -> ADMG:
    """The ADMG of a NumPyro program or of a user graph, projected onto observed variables.

    Parameters
    ----------
    source
        A NumPyro program (its graph comes from :func:`scm_ppl.core.causal_graph.graph`), a
        ``networkx.DiGraph`` (pairs in ``graph["bidirected"]`` count as bidirected edges),
        or an :class:`ADMG` (returned as is unless ``observed`` or ``latent`` is given).
    *args, **kwargs
        The program's arguments; only for a program.
    observed
        The variables to keep. By default every site except the unobserved exogenous
        sample sites (node attribute ``role == "exogenous"`` and ``observed`` False): latent
        roots become bidirected edges; deterministic sites are variables like any other.
    latent
        For a graph or ADMG: the nodes to project out (the complement of ``observed``).
    bidirected
        For a graph: extra latent common causes, as pairs of node names.

    Returns
    -------
    ADMG

    Raises
    ------
    GraphError
        For the graph problems listed in :class:`ADMG`, unknown names in ``observed`` or
        ``latent``, both given, or ``latent``/``bidirected`` passed with a program.

    Examples
    --------
    >>> import numpyro, numpyro.distributions as dist
    >>> from scm_ppl.graphical.mixed_graph import admg
    >>> def model():
    ...     u = numpyro.sample("u", dist.Normal(0.0, 1.0))  # latent confounder
    ...     x = numpyro.sample("x", dist.Normal(u, 1.0))
    ...     numpyro.sample("y", dist.Normal(x + u, 1.0))
    >>> admg(model)
    ADMG(nodes=['x', 'y'], directed=[('x', 'y')], bidirected=[('x', 'y')])
    """
    if observed is not None and latent is not None:
        raise GraphError("Pass either observed= or latent=, not both.")
    hidden: set[str] = set()
    if isinstance(source, ADMG | nx.DiGraph):
        if args or kwargs:
            raise GraphError(
                f"Program arguments {list(args)} {sorted(kwargs)} were given with a graph; "
                "they are only for a NumPyro program."
            )
        if isinstance(source, ADMG):
            if observed is None and latent is None:
                return source
            dag, confounders = source.to_dag()
            hidden |= set(confounders)
        else:
            dag = _checked_digraph(source)
            if observed is None and latent is None:
                latent = _default_latent(dag)
    elif isinstance(source, nx.Graph) or not callable(source):
        raise GraphError(
            f"Expected a NumPyro program, a networkx.DiGraph or an ADMG; got "
            f"{type(source).__name__}."
        )
    else:
        if latent is not None or tuple(bidirected):
            raise GraphError(
                "latent= and bidirected= describe a user graph; for a program pass the "
                "variables to keep with observed=."
            )
        dag = graph(source, *args, **kwargs)
        if observed is None:
            latent = _default_latent(dag)
    if observed is not None:
        keep = frozenset([observed] if isinstance(observed, str) else observed)
        unknown = sorted(map(str, keep - set(dag)))
        if unknown:
            raise GraphError(
                f"Unknown observed variables {unknown}; the graph has nodes "
                f"{sorted(n for n in dag if n not in hidden)}."
            )
        hidden |= set(dag) - keep
    else:
        hidden |= set([latent] if isinstance(latent, str) else latent or ())
    # Bidirected pairs of a user graph become explicit latent parents and are projected
    # together with the latent nodes; that also covers a pair that touches a latent node.
    explicit = nx.DiGraph(dag)
    for i, (a, b) in enumerate(
        sorted(map(sorted, _pairs([*dag.graph.get("bidirected", []), *bidirected], dag)))
    ):
        name = f"__bidirected_{i}__"
        while name in dag:
            name += "_"
        explicit.add_edges_from([(name, a), (name, b)])
        hidden.add(name)
    return latent_projection(explicit, hidden)
