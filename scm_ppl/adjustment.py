"""Covariate adjustment: the back-door and front-door criteria and their formulas.

A causal graph is a :class:`networkx.DiGraph` over the observed variables plus
``bidirected`` pairs ``(a, b)``, each a hidden common cause of ``a`` and ``b``. The
criteria are checked by d-separation on the DAG that makes each hidden cause an explicit
node. :func:`backdoor_sets` and :func:`frontdoor_sets` search subsets exhaustively, in
increasing size, among the nodes that can belong to a minimal set: exact, and quick up to
about 15-20 such nodes (a 20-node graph with 18 takes seconds). :func:`find_adjustment`
finds a smallest back-door set in polynomial time (a minimum cut) and searches front-door
sets only when one exists.

Every function takes ``graph`` (a :class:`networkx.DiGraph`, never modified), ``treatment``
and ``outcome`` (a node name or an iterable of them) and ``bidirected`` (pairs of nodes),
and raises :class:`~scm_ppl.errors.GraphError` for a malformed graph (not a DiGraph, a
cycle, a bidirected pair naming absent nodes), unknown node names, an empty treatment or
outcome, overlapping treatment and outcome, or a candidate set containing either.

Examples
--------
>>> import networkx as nx
>>> from scm_ppl.adjustment import backdoor_sets, find_adjustment
>>> g = nx.DiGraph([("z", "x"), ("z", "y"), ("x", "y")])
>>> backdoor_sets(g, "x", "y")
[frozenset({'z'})]
>>> print(find_adjustment(g, "x", "y").text())
Σ_{z} P(y | x, z) P(z)
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import networkx as nx
import numpy as np
from numpy.typing import ArrayLike, NDArray

from scm_ppl.errors import EvidenceError, GraphError

__all__ = [
    "AdjustmentFormula",
    "backdoor_sets",
    "find_adjustment",
    "frontdoor_sets",
    "is_adjustment_set",
    "is_backdoor_set",
    "is_frontdoor_set",
]

Nodes = str | Iterable[str]
Pairs = Iterable[tuple[str, str]]


@dataclass(frozen=True)
class _Latent:
    """The hidden common cause of a bidirected pair: never equal to a user's node."""

    a: str
    b: str


def _latent_dag(graph: nx.DiGraph, bidirected: Pairs) -> nx.DiGraph:
    """A new DAG: ``graph`` plus one latent parent per bidirected pair."""
    if not isinstance(graph, nx.DiGraph):
        raise GraphError(
            f"A causal graph must be a networkx.DiGraph; got {type(graph).__name__}. "
            "Build one with networkx.DiGraph(edges)."
        )
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


def _nodes(value: Nodes, role: str, graph: nx.DiGraph, *, allow_empty: bool = False) -> frozenset:
    items = frozenset([value] if isinstance(value, str) else value)
    if not items and not allow_empty:
        raise GraphError(f"The {role} is empty; name at least one node of the graph.")
    unknown = sorted(str(node) for node in items if node not in graph)
    if unknown:
        raise GraphError(
            f"Unknown {role} node(s) {unknown}; the graph has nodes {sorted(map(str, graph))}."
        )
    return items


def _query(
    graph: nx.DiGraph, treatment: Nodes, outcome: Nodes, bidirected: Pairs
) -> tuple[nx.DiGraph, frozenset, frozenset]:
    dag = _latent_dag(graph, bidirected)
    x, y = _nodes(treatment, "treatment", graph), _nodes(outcome, "outcome", graph)
    if x & y:
        raise GraphError(
            f"Treatment and outcome overlap in {sorted(x & y)}; they must be disjoint sets."
        )
    return dag, x, y


def _covariates(value: Nodes, graph: nx.DiGraph, x: frozenset, y: frozenset) -> frozenset:
    z = _nodes(value, "adjustment set", graph, allow_empty=True)
    if z & (x | y):
        raise GraphError(
            f"The adjustment set contains treatment or outcome node(s) {sorted(z & (x | y))}; "
            "it may only hold other nodes."
        )
    return z


def _descendants(dag: nx.DiGraph, nodes: Iterable[Any]) -> set:
    return set().union(*(nx.descendants(dag, node) for node in nodes))


def _cut(dag: nx.DiGraph, edges: Iterable[tuple[Any, Any]]) -> nx.DiGraph:
    out = dag.copy()
    out.remove_edges_from(list(edges))
    return out


def _backdoor_test(dag: nx.DiGraph, x: frozenset, y: frozenset) -> Callable[[frozenset], bool]:
    """Pearl's back-door criterion: no descendant of X, and X ⊥ Y | Z once X's out-edges go."""
    forbidden = _descendants(dag, x)
    backdoor_graph = _cut(dag, dag.out_edges(x))
    return lambda z: not z & forbidden and nx.is_d_separator(backdoor_graph, x, y, z)


def _adjustment_test(dag: nx.DiGraph, x: frozenset, y: frozenset) -> Callable[[frozenset], bool]:
    """The constructive adjustment criterion (van der Zander, Liśkiewicz & Textor 2019)."""
    reach = _descendants(_cut(dag, dag.in_edges(x)), x) - x
    ancestors = set(y) | set().union(*(nx.ancestors(_cut(dag, dag.out_edges(x)), v) for v in y))
    causal = reach & ancestors  # nodes on proper causal paths, X excluded
    forbidden = causal | _descendants(dag, causal)
    proper = _cut(dag, [(a, b) for a, b in dag.out_edges(x) if b in causal])
    return lambda z: not z & forbidden and nx.is_d_separator(proper, x, y, z)


def _frontdoor_test(dag: nx.DiGraph, x: Any, y: Any) -> Callable[[frozenset], bool]:
    """Pearl's front-door criterion (Causality, def. 3.3.3), the last clause set-wise."""
    no_out_x = _cut(dag, dag.out_edges(x))

    def test(m: frozenset) -> bool:
        if nx.has_path(dag.subgraph(n for n in dag if n not in m), x, y):
            return False  # (i) a directed path from x to y avoids m
        if not m:
            return True
        if not nx.is_d_separator(no_out_x, {x}, m, set()):
            return False  # (ii) an open back-door path from x to m
        return nx.is_d_separator(_cut(dag, dag.out_edges(m)), m, {y}, {x})  # (iii)

    return test


def _backdoor_pool(dag: nx.DiGraph, graph: nx.DiGraph, x: frozenset, y: frozenset) -> set:
    """Observed non-descendants of X in An(X ∪ Y): they hold every minimal back-door set."""
    ancestors = set().union(*(nx.ancestors(dag, v) for v in x | y))
    return (set(graph) & ancestors) - x - y - _descendants(dag, x)


def _moral_backdoor(dag: nx.DiGraph, x: frozenset, y: frozenset) -> dict[Any, list[Any]]:
    """The moral graph of An(X ∪ Y) without X's out-edges, as sorted adjacency lists: a set
    Z ⊆ An(X ∪ Y) d-separates X and Y in the back-door graph iff it separates them here."""
    keep = x | y | set().union(*(nx.ancestors(dag, v) for v in x | y))
    moral = nx.moral_graph(_cut(dag, dag.out_edges(x)).subgraph(keep))
    return {v: sorted(moral[v], key=str) for v in sorted(moral, key=str)}


def _separated(adjacency: dict[Any, list[Any]], x: frozenset, y: frozenset, z: frozenset) -> bool:
    seen, stack = set(x), list(x)
    while stack:
        for w in adjacency[stack.pop()]:
            if w in y:
                return False
            if w not in seen and w not in z:
                seen.add(w)
                stack.append(w)
    return True


def _smallest_backdoor(
    dag: nx.DiGraph, graph: nx.DiGraph, x: frozenset, y: frozenset
) -> frozenset[str] | None:
    """A smallest back-door set, or None: a minimum vertex cut of the moral back-door graph
    through the nodes of the pool (polynomial time)."""
    pool, adjacency = _backdoor_pool(dag, graph, x, y), _moral_backdoor(dag, x, y)
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


def _frontdoor_pool(dag: nx.DiGraph, graph: nx.DiGraph, x: Any, y: Any) -> set:
    """A set holding every minimal front-door set; empty when none exists.

    A minimal set lies in An(y) among the nodes that pass (ii) alone. Dropping the nodes that
    fail (iii) within the current set, until none does, never drops a node of a valid set,
    so a set exists iff what is left meets (i).
    """
    no_out_x = _cut(dag, dag.out_edges(x))
    pool = {v for v in set(graph) & nx.ancestors(dag, y) if v != x}
    pool = {v for v in pool if nx.is_d_separator(no_out_x, {x}, {v}, set())}
    while True:
        cut = _cut(dag, dag.out_edges(pool))
        bad = {m for m in pool if not nx.is_d_separator(cut, {m}, {y}, {x})}
        if not bad:
            return set() if nx.has_path(dag.subgraph(set(dag) - pool), x, y) else pool
        pool -= bad


def _check_max_size(max_size: Any) -> None:
    if max_size is not None and (not isinstance(max_size, int) or max_size < 0):
        raise GraphError(f"max_size must be None or a non-negative integer; got {max_size!r}.")


def _search(
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


def is_backdoor_set(
    graph: nx.DiGraph, treatment: Nodes, outcome: Nodes, adjustment: Nodes, bidirected: Pairs = ()
) -> bool:
    """Whether ``adjustment`` meets Pearl's back-door criterion for ``(treatment, outcome)``.

    No node of the set descends from a treatment, and the set d-separates treatment and
    outcome in the graph without the treatment's outgoing edges (*Causality*, def. 3.3.1,
    for sets). Then ``P(y | do(x)) = Σ_z P(y | x, z) P(z)``.

    Examples
    --------
    >>> import networkx as nx
    >>> g = nx.DiGraph([("z", "x"), ("z", "y"), ("x", "m"), ("m", "y")])
    >>> is_backdoor_set(g, "x", "y", {"z"}), is_backdoor_set(g, "x", "y", {"z", "m"})
    (True, False)
    """
    dag, x, y = _query(graph, treatment, outcome, bidirected)
    return _backdoor_test(dag, x, y)(_covariates(adjustment, graph, x, y))


def is_adjustment_set(
    graph: nx.DiGraph, treatment: Nodes, outcome: Nodes, adjustment: Nodes, bidirected: Pairs = ()
) -> bool:
    """Whether ``Σ_z P(y | x, z) P(z)`` equals ``P(y | do(x))`` in every model of the graph.

    The adjustment criterion of Shpitser, VanderWeele & Robins (UAI 2010), sound and
    complete, in the constructive form of van der Zander, Liśkiewicz & Textor (2019): the set
    holds no descendant of a node on a proper causal path from X to Y, and d-separates X
    and Y once the first edge of every such path is removed. Every back-door set passes.

    Examples
    --------
    >>> import networkx as nx
    >>> g = nx.DiGraph([("x", "y"), ("x", "w")])  # w: a side effect of x
    >>> is_adjustment_set(g, "x", "y", {"w"}), is_backdoor_set(g, "x", "y", {"w"})
    (True, False)
    """
    dag, x, y = _query(graph, treatment, outcome, bidirected)
    return _adjustment_test(dag, x, y)(_covariates(adjustment, graph, x, y))


def backdoor_sets(
    graph: nx.DiGraph,
    treatment: Nodes,
    outcome: Nodes,
    bidirected: Pairs = (),
    *,
    minimal: bool = True,
    max_size: int | None = None,
) -> list[frozenset[str]]:
    """Every (minimal) back-door adjustment set of observed nodes, smallest first.

    An exhaustive search over subsets of the non-descendants of the treatment (outcome
    excluded), in increasing size; with ``minimal`` only over those that are also ancestors
    of treatment or outcome, which hold every minimal separator. Exact; exponential in the
    number of candidates, so meant for up to about 20 of them.

    Parameters
    ----------
    minimal
        Return only the sets with no valid proper subset; else every valid set.
    max_size
        Look at sets of at most this many nodes.

    Returns
    -------
    list of frozenset
        ``[frozenset()]`` when no adjustment is needed (then it is the only minimal set),
        ``[]`` when no back-door set exists. With ``minimal`` no set contains another.

    Examples
    --------
    >>> import networkx as nx
    >>> g = nx.DiGraph([("a", "x"), ("b", "x"), ("a", "y"), ("b", "y"), ("x", "y")])
    >>> [sorted(z) for z in backdoor_sets(g, "x", "y")]
    [['a', 'b']]
    >>> backdoor_sets(nx.DiGraph([("x", "y")]), "x", "y", [("x", "y")])
    []
    """
    dag, x, y = _query(graph, treatment, outcome, bidirected)
    _check_max_size(max_size)
    if _smallest_backdoor(dag, graph, x, y) is None:
        return []
    if minimal:  # within An(X ∪ Y) the moral graph decides, and faster
        adjacency = _moral_backdoor(dag, x, y)
        test: Callable[[frozenset], bool] = lambda z: _separated(adjacency, x, y, z)
        return _search(_backdoor_pool(dag, graph, x, y), test, True, max_size)
    pool = set(graph) - x - y - _descendants(dag, x)
    return _search(pool, _backdoor_test(dag, x, y), False, max_size)


def _single(value: Nodes, role: str, graph: nx.DiGraph) -> str:
    nodes = _nodes(value, role, graph)
    if len(nodes) != 1:
        raise GraphError(
            f"The front-door criterion takes a single {role}; got {sorted(nodes)}. "
            "Use the ID algorithm for sets."
        )
    return next(iter(nodes))


def is_frontdoor_set(
    graph: nx.DiGraph, treatment: Nodes, outcome: Nodes, mediators: Nodes, bidirected: Pairs = ()
) -> bool:
    """Whether ``mediators`` meets Pearl's front-door criterion (*Causality*, def. 3.3.3).

    (i) The set meets every directed path from ``x`` to ``y``; (ii) no back-door path from
    ``x`` to it is open; (iii) ``x`` blocks every back-door path from it to ``y``. Then
    ``P(y | do(x)) = Σ_m P(m | x) Σ_x' P(y | m, x') P(x')``.

    Examples
    --------
    >>> import networkx as nx
    >>> g = nx.DiGraph([("smoking", "tar"), ("tar", "cancer")])
    >>> is_frontdoor_set(g, "smoking", "cancer", {"tar"}, [("smoking", "cancer")])
    True
    """
    dag, _, _ = _query(graph, treatment, outcome, bidirected)
    x, y = _single(treatment, "treatment", graph), _single(outcome, "outcome", graph)
    return _frontdoor_test(dag, x, y)(_covariates(mediators, graph, frozenset([x]), frozenset([y])))


def frontdoor_sets(
    graph: nx.DiGraph,
    treatment: Nodes,
    outcome: Nodes,
    bidirected: Pairs = (),
    *,
    max_size: int | None = None,
) -> list[frozenset[str]]:
    """Every minimal front-door set (no valid proper subset) of observed nodes, smallest first.

    An exhaustive search over subsets of the ancestors of ``y`` that can belong to a valid
    set (exponential in their number: meant for up to about 20). ``[frozenset()]`` when ``y``
    does not descend from ``x`` (then ``P(y | do(x)) = P(y)``), ``[]`` when no set works.

    Examples
    --------
    >>> import networkx as nx
    >>> g = nx.DiGraph([("x", "m"), ("m", "y")])
    >>> frontdoor_sets(g, "x", "y", [("x", "y")])
    [frozenset({'m'})]
    """
    dag, _, _ = _query(graph, treatment, outcome, bidirected)
    x, y = _single(treatment, "treatment", graph), _single(outcome, "outcome", graph)
    _check_max_size(max_size)
    return _search(_frontdoor_pool(dag, graph, x, y), _frontdoor_test(dag, x, y), True, max_size)


def find_adjustment(
    graph: nx.DiGraph, treatment: Nodes, outcome: Nodes, bidirected: Pairs = ()
) -> AdjustmentFormula | None:
    """The formula of a smallest back-door set, else of a smallest front-door set, else None.

    The back-door set is a minimum vertex cut (polynomial time; among sets of the same size
    the cut decides). Front-door sets are tried only for a single treatment and outcome, and
    searched only when one exists; among the smallest the first in sorted order is taken.

    Examples
    --------
    >>> import networkx as nx
    >>> g = nx.DiGraph([("x", "m"), ("m", "y")])
    >>> print(find_adjustment(g, "x", "y", [("x", "y")]).text())
    Σ_{m} P(m | x) Σ_{x'} P(y | m, x') P(x')
    """
    dag, x, y = _query(graph, treatment, outcome, bidirected)
    z = _smallest_backdoor(dag, graph, x, y)
    if z is not None:
        return AdjustmentFormula("backdoor", tuple(sorted(x)), tuple(sorted(y)), z)
    if len(x) != 1 or len(y) != 1:
        return None
    (a,), (b,) = x, y
    pool, test = _frontdoor_pool(dag, graph, a, b), _frontdoor_test(dag, a, b)
    for size in range(len(pool) + 1):  # the pool itself is valid unless it is empty
        for m in itertools.combinations(sorted(pool), size):
            if test(frozenset(m)):
                return AdjustmentFormula("frontdoor", (a,), (b,), frozenset(m))
    return None


def _latex_name(name: str) -> str:
    match = re.fullmatch(r"([A-Za-z])_?(\d+)", name)
    if match:
        return f"{match[1]}_{{{match[2]}}}"
    return name if len(name) == 1 else r"\mathrm{" + name.replace("_", r"\_") + "}"


@dataclass(frozen=True)
class AdjustmentFormula:
    r"""A covariate-adjustment estimand of ``P(outcome | do(treatment))``.

    ``kind="backdoor"`` is ``Σ_z P(y | x, z) P(z)`` over ``set`` (any adjustment set, not
    only a back-door one); ``kind="frontdoor"`` is ``Σ_m P(m | x) Σ_x' P(y | m, x') P(x')``.

    Examples
    --------
    >>> import numpy as np
    >>> f = AdjustmentFormula("backdoor", ("x",), ("y",), frozenset({"z"}))
    >>> print(f.latex())
    \sum_{z} P(y \mid x, z) \, P(z)
    >>> joint = np.full((2, 2, 2), 1 / 8)  # axes z, x, y
    >>> f.evaluate_discrete(joint, ("z", "x", "y"), 1)
    array([0.5, 0.5])
    """

    kind: Literal["backdoor", "frontdoor"]
    treatment: tuple[str, ...]
    outcome: tuple[str, ...]
    set: frozenset[str]

    def __post_init__(self) -> None:
        if self.kind not in ("backdoor", "frontdoor"):
            raise GraphError(f"kind must be 'backdoor' or 'frontdoor'; got {self.kind!r}.")
        for field in ("treatment", "outcome"):
            if isinstance(getattr(self, field), str):
                object.__setattr__(self, field, (getattr(self, field),))
        if self.kind == "frontdoor" and (len(self.treatment) != 1 or len(self.outcome) != 1):
            raise GraphError("A front-door formula takes one treatment and one outcome.")
        object.__setattr__(self, "set", frozenset(self.set))
        x, y, n = set(self.treatment), set(self.outcome), len(self.treatment) + len(self.outcome)
        if not x or not y or len(x | y) != n or self.set & (x | y):
            raise GraphError(
                "A formula needs a non-empty treatment and outcome, disjoint and without "
                f"repeats, and a set apart from both; got {self.treatment}, {self.outcome}, "
                f"{sorted(self.set)}."
            )

    def _render(self, name: Callable[[str], str], total: str, bar: str, times: str) -> str:
        def p(left: list[str], right: Sequence[str] = ()) -> str:
            return f"P({', '.join(left)}{bar + ', '.join(right) if right else ''})"

        x, y = [name(v) for v in self.treatment], [name(v) for v in self.outcome]
        z = [name(v) for v in sorted(self.set)]
        if self.kind == "backdoor":
            return f"{total % ', '.join(z)}{p(y, x + z)}{times}{p(z)}" if z else p(y, x)
        xp = [f"{v}'" for v in x]
        inner = f"{total % ', '.join(xp)}{p(y, z + xp)}{times}{p(xp)}"
        return f"{total % ', '.join(z)}{p(z, x)} {inner}" if z else inner

    def text(self) -> str:
        """The formula in plain text, e.g. ``Σ_{z} P(y | x, z) P(z)``."""
        return self._render(str, "Σ_{%s} ", " | ", " ")

    def latex(self) -> str:
        r"""The formula in LaTeX, e.g. ``\sum_{z} P(y \mid x, z) \, P(z)``."""
        return self._render(_latex_name, r"\sum_{%s} ", r" \mid ", r" \, ")

    def evaluate_discrete(
        self, joint: ArrayLike, names: Sequence[str], treatment_value: Any
    ) -> NDArray[np.float64]:
        """``P(outcome | do(treatment = value))`` from a discrete joint table, exactly.

        Parameters
        ----------
        joint
            Probabilities (or counts: the table is normalised), one axis per name.
        names
            The variable of each axis; variables the formula does not use are summed out.
        treatment_value
            An integer code, or one per treatment: a sequence in ``self.treatment`` order
            or a mapping from treatment to code.

        Returns
        -------
        numpy.ndarray
            ``P(outcome = y | do(treatment = value))``, one axis per outcome.

        Raises
        ------
        EvidenceError
            For a malformed table or value, or when the formula conditions on a stratum of
            probability zero (positivity fails); the message names the stratum.
        """
        table, names = np.asarray(joint, dtype=float), tuple(names)
        if table.ndim != len(names) or len(set(names)) != len(names):
            raise EvidenceError(
                f"The joint table has {table.ndim} axes, so it needs as many distinct names; "
                f"got {list(names)}."
            )
        if not np.all(np.isfinite(table)) or np.any(table < 0) or table.sum() <= 0:
            raise EvidenceError("A joint table must be finite, non-negative and not all zero.")
        self._present(names, "joint table's names")
        values = self._values(
            treatment_value, [table.shape[names.index(v)] for v in self.treatment]
        )
        return self._plugin(table / table.sum(), names, values, "the joint gives zero mass to")

    def estimate_from_data(
        self,
        rows: Mapping[str, ArrayLike],
        treatment_value: Any,
        *,
        cardinalities: Mapping[str, int] | None = None,
    ) -> NDArray[np.float64]:
        """The plug-in estimate of ``P(outcome | do(treatment = value))`` from data.

        Parameters
        ----------
        rows
            Each variable the formula uses mapped to a 1-D array of non-negative integer
            codes, one entry per unit (other columns are ignored).
        treatment_value
            As in :meth:`evaluate_discrete`.
        cardinalities
            Numbers of levels, where more than ``max + 1`` of the data.

        Returns
        -------
        numpy.ndarray
            The estimate built from the empirical joint of the counts, one axis per outcome.

        Raises
        ------
        EvidenceError
            For missing or malformed columns, or a stratum the formula conditions on that no
            row falls in (the message names it).

        Examples
        --------
        >>> import numpy as np
        >>> f = AdjustmentFormula("frontdoor", ("x",), ("y",), frozenset({"m"}))
        >>> data = {"x": np.array([0, 0, 1, 1]), "m": np.array([0, 1, 1, 0]),
        ...         "y": np.array([0, 1, 1, 1])}
        >>> f.estimate_from_data(data, 1)
        array([0.25, 0.75])
        """
        names = (*self.treatment, *sorted(self.set), *self.outcome)
        self._present(tuple(rows), "data's columns")
        cols = [np.asarray(rows[v]) for v in names]
        for v, col in zip(names, cols, strict=True):
            integral = np.issubdtype(col.dtype, np.integer) or col.dtype == np.bool_
            if col.ndim != 1 or col.size != cols[0].size or col.size == 0 or not integral:
                raise EvidenceError(
                    f"Column {v!r} must be a non-empty 1-D integer array as long as the others; "
                    f"got dtype {col.dtype} and shape {col.shape}."
                )
            if col.min() < 0:
                raise EvidenceError(f"Column {v!r} holds negative codes; use 0, 1, 2, ...")
        values = self._values(treatment_value)
        cards = [int(col.max()) + 1 for col in cols]
        for i, value in enumerate(values):
            cards[i] = max(cards[i], value + 1)
        for i, v in enumerate(names):
            cards[i] = max(cards[i], (cardinalities or {}).get(v, 0))
        counts = np.bincount(np.ravel_multi_index(cols, cards), minlength=int(np.prod(cards)))
        table = counts.reshape(cards) / cols[0].size
        return self._plugin(table, names, values, "no row of the data falls in")

    def _present(self, names: tuple[str, ...], what: str) -> None:
        missing = [v for v in (*self.treatment, *sorted(self.set), *self.outcome) if v not in names]
        if missing:
            raise EvidenceError(f"The formula needs {missing}, missing from the {what} {names}.")

    def _values(self, value: Any, sizes: Sequence[int] = ()) -> tuple[int, ...]:
        if isinstance(value, Mapping):
            values: tuple[Any, ...] = tuple(value.get(v) for v in self.treatment)
            extra = sorted(set(value) - set(self.treatment))
        else:
            values, extra = tuple(np.atleast_1d(np.asarray(value, dtype=object))), []
        bad = [v for v in values if not isinstance(v, int | np.integer) or v < 0]
        if len(values) != len(self.treatment) or extra or bad:
            raise EvidenceError(
                f"Give one non-negative integer value per treatment {list(self.treatment)}; "
                f"got {value!r}."
            )
        for v, code, size in zip(self.treatment, values, sizes, strict=False):
            if code >= size:
                raise EvidenceError(f"Treatment value {v}={code} is outside 0..{size - 1}.")
        return tuple(int(v) for v in values)

    def _plugin(
        self, table: NDArray, names: tuple[str, ...], values: tuple[int, ...], empty: str
    ) -> NDArray[np.float64]:
        x, z, y = self.treatment, tuple(sorted(self.set)), self.outcome
        a = _marginal(table, names, (*x, *z, *y))
        nx_, nz, ny = len(x), len(z), len(y)
        y_axes = tuple(range(nz, nz + ny))
        if self.kind == "backdoor":
            ax = a[values]  # axes z..., y...
            pxz, pz = ax.sum(axis=y_axes), a.sum(axis=tuple(range(nx_))).sum(axis=y_axes)
            _positive(pxz, pz > 0, dict(zip(x, values, strict=True)), z, empty)
            return np.tensordot(pz, _ratio(ax, pxz, ny), axes=nz)
        px, pxm = a.sum(axis=tuple(range(1, a.ndim))), a.sum(axis=-1)  # axes x'; x', m...
        _positive(px[values], np.array(True), dict(zip(x, values, strict=True)), (), empty)
        m_given_x = pxm[values] / px[values]
        need = (px > 0).reshape((-1,) + (1,) * nz) & (m_given_x > 0)
        _positive(pxm, need, {}, x + z, empty)
        inner = np.tensordot(px, _ratio(a, pxm, 1), axes=1)  # Σ_x' P(y | m, x') P(x')
        return np.tensordot(m_given_x, inner, axes=nz)


def _marginal(table: NDArray, names: tuple[str, ...], order: tuple[str, ...]) -> NDArray:
    """The marginal table of ``order``, its axes in that order."""
    kept = [names.index(v) for v in order]
    summed = table.sum(axis=tuple(i for i in range(table.ndim) if i not in kept), keepdims=True)
    return np.moveaxis(summed, kept, range(len(kept))).reshape([table.shape[i] for i in kept])


def _ratio(num: NDArray, den: NDArray, trailing: int) -> NDArray:
    den = den.reshape(den.shape + (1,) * trailing)
    return np.divide(
        num, den, out=np.zeros(np.broadcast_shapes(num.shape, den.shape)), where=den > 0
    )


def _positive(
    mass: NDArray, needed: NDArray, fixed: dict[str, int], axes: tuple[str, ...], empty: str
) -> None:
    bad = np.asarray(needed & (mass <= 0))
    if bad.any():
        index = np.unravel_index(int(np.argmax(bad)), bad.shape)
        stratum = {**fixed, **dict(zip(axes, map(int, index), strict=True))}
        where = ", ".join(f"{k}={v}" for k, v in stratum.items())
        raise EvidenceError(
            f"The formula conditions on the stratum {where}, but {empty} it, so the plug-in "
            "estimate is undefined (positivity fails). Collect more data, merge categories, "
            "or use another adjustment set."
        )
