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
>>> from scm_ppl.graphical.adjustment import backdoor_sets, find_adjustment
>>> g = nx.DiGraph([("z", "x"), ("z", "y"), ("x", "y")])
>>> backdoor_sets(g, "x", "y")
[frozenset({'z'})]
>>> print(find_adjustment(g, "x", "y").text())
Σ_{z} P(z) P(y | x, z)
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Literal

import networkx as nx
import numpy as np
from numpy.typing import ArrayLike, NDArray

from scm_ppl.errors import EstimandError, EvidenceError, GraphError
from scm_ppl.graphical.adjustment_search import (
    Pairs,
    adjustment_test,
    backdoor_pool,
    backdoor_test,
    descendants,
    frontdoor_pool,
    frontdoor_test,
    latent_dag,
    moral_backdoor,
    search,
    separated,
    smallest,
    smallest_backdoor,
)
from scm_ppl.graphical.estimand import Expression, Probability, Product, Sum
from scm_ppl.graphical.joint import DiscreteJoint

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
    dag = latent_dag(graph, bidirected)
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


def _check_max_size(max_size: Any) -> None:
    if max_size is not None and (not isinstance(max_size, int) or max_size < 0):
        raise GraphError(f"max_size must be None or a non-negative integer; got {max_size!r}.")


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
    return backdoor_test(dag, x, y)(_covariates(adjustment, graph, x, y))


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
    return adjustment_test(dag, x, y)(_covariates(adjustment, graph, x, y))


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
    if smallest_backdoor(dag, graph, x, y) is None:
        return []
    if minimal:  # within An(X ∪ Y) the moral graph decides, and faster
        adjacency = moral_backdoor(dag, x, y)
        test: Callable[[frozenset], bool] = lambda z: separated(adjacency, x, y, z)
        return search(backdoor_pool(dag, graph, x, y), test, True, max_size)
    pool = set(graph) - x - y - descendants(dag, x)
    return search(pool, backdoor_test(dag, x, y), False, max_size)


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
    return frontdoor_test(dag, x, y)(_covariates(mediators, graph, frozenset([x]), frozenset([y])))


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
    return search(frontdoor_pool(dag, graph, x, y), frontdoor_test(dag, x, y), True, max_size)


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
    Σ_{m} P(m | x) Σ_{x'} P(x') P(y | m, x')
    """
    dag, x, y = _query(graph, treatment, outcome, bidirected)
    z = smallest_backdoor(dag, graph, x, y)
    if z is not None:
        return AdjustmentFormula(
            kind="backdoor", treatment=tuple(sorted(x)), outcome=tuple(sorted(y)), set=z
        )
    if len(x) != 1 or len(y) != 1:
        return None
    (a,), (b,) = x, y
    # Empty pool: only the empty set can work. Otherwise the pool itself is valid.
    m = smallest(frontdoor_pool(dag, graph, a, b), frontdoor_test(dag, a, b))
    if m is None:
        return None
    return AdjustmentFormula(kind="frontdoor", treatment=(a,), outcome=(b,), set=m)


@contextmanager
def _evidence_errors() -> Iterator[None]:
    """Report the estimand machinery's input errors as this module's EvidenceError."""
    try:
        yield
    except EstimandError as error:
        raise EvidenceError(str(error)) from error


@dataclass(frozen=True)
class AdjustmentFormula:
    r"""A covariate-adjustment estimand of ``P(outcome | do(treatment))``.

    ``kind="backdoor"`` is ``Σ_z P(z) P(y | x, z)`` over ``set`` (any adjustment set, not
    only a back-door one); ``kind="frontdoor"`` is ``Σ_m P(m | x) Σ_x' P(x') P(y | m, x')``.
    :meth:`estimand` is the formula as an :mod:`scm_ppl.graphical.estimand` expression, which prints
    and evaluates it (the same tree :func:`scm_ppl.graphical.id_algorithm.identify` returns).

    Examples
    --------
    >>> import numpy as np
    >>> f = AdjustmentFormula(
    ...     kind="backdoor", treatment=("x",), outcome=("y",), set=frozenset({"z"})
    ... )
    >>> print(f.latex())
    \sum_{z} P(z) P(y \mid x, z)
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

    def estimand(self) -> Expression:
        """The formula as an estimand expression, built with the simplifying constructors
        (so an empty front-door set gives ``Σ_x' P(x') P(y | x') = P(y)``).

        Examples
        --------
        >>> f = AdjustmentFormula("frontdoor", ("x",), ("y",), frozenset({"m"}))
        >>> print(f.estimand())
        Σ_{m} P(m | x) Σ_{x'} P(x') P(y | m, x')
        """
        x, y, z = frozenset(self.treatment), frozenset(self.outcome), self.set
        if self.kind == "backdoor":
            return Sum.of(z, Product.of([Probability(z), Probability(y, x | z)]))
        # The inner sum binds the treatment's name: x' in print, a summed value inside.
        inner = Sum.of(x, Product.of([Probability(x), Probability(y, z | x)]))
        return Sum.of(z, Product.of([Probability(z, x), inner]))

    def text(self) -> str:
        """The formula in plain text, e.g. ``Σ_{z} P(z) P(y | x, z)``."""
        return self.estimand().text()

    def latex(self) -> str:
        r"""The formula in LaTeX, e.g. ``\sum_{z} P(z) P(y \mid x, z)``."""
        return self.estimand().latex()

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
            probability zero that it gives positive weight (positivity fails); the message
            names the stratum. Strata of weight zero do not matter.
        """
        with _evidence_errors():
            normalised = DiscreteJoint.from_counts(joint, names)
            table = DiscreteJoint(normalised.probs, normalised.names)  # exact, not data
        self._present(table.names, "joint table's names")
        sizes = [table.cardinality(v) for v in self.treatment]
        return self._evaluate(table, self._values(treatment_value, sizes))

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
            The estimate built from the empirical joint of the counts
            (:meth:`scm_ppl.graphical.joint.DiscreteJoint.from_data`), one axis per outcome.

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
        self._present(tuple(rows), "data's columns")
        columns = {v: rows[v] for v in (*self.treatment, *sorted(self.set), *self.outcome)}
        with _evidence_errors():
            joint = DiscreteJoint.from_data(columns)
        values = self._values(treatment_value)
        levels = {v: max(joint.cardinality(v), (cardinalities or {}).get(v, 0)) for v in columns}
        for v, code in zip(self.treatment, values, strict=True):
            levels[v] = max(levels[v], code + 1)
        if any(levels[v] != joint.cardinality(v) for v in columns):
            with _evidence_errors():
                joint = DiscreteJoint.from_data(columns, levels)
        return self._evaluate(joint, values)

    def _evaluate(self, joint: DiscreteJoint, values: tuple[int, ...]) -> NDArray[np.float64]:
        assignment = dict(zip(self.treatment, values, strict=True))
        with _evidence_errors():
            return self.estimand().table(joint, self.outcome, assignment, strict=True)

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
