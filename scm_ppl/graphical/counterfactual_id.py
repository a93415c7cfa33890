"""Counterfactual identification: ID* and IDC* (Shpitser & Pearl, JMLR 2008).

A counterfactual query is a conjunction of events in several worlds, e.g.
``P(Y_{X=0} = 1 | X = 1)`` (the effect of treatment on the treated): ``Y`` in the world
``do(X = 0)`` together with ``X`` in the factual world. :func:`identify_counterfactual`
builds the query's counterfactual graph (:mod:`scm_ppl.graphical.cf_graph`), and

* **ID*** factorises ``P(events)`` over the c-components of that graph: each component
  ``S`` contributes ``P(s | do(pa))``, the distribution of its variables with the
  parents outside it set, unless ``S`` needs one variable at two values at once (two
  worlds of one variable, or a variable intervened at one value and observed at
  another): then no set of experiments determines the query, and the component is the
  witness;
* **IDC*** answers ``P(events | given)``, first moving every conditioning event that
  is d-separated from the query (rule 2 of the do-calculus inside the counterfactual
  graph) into the interventions, then dividing ``P(events, given)`` by ``P(given)``.

Every interventional term ``P(s | do(x))`` that the ID algorithm identifies from the
observational distribution is replaced by its formula (:func:`scm_ppl.identify`); the
others remain and need an experiment on ``x`` (``result.experiments``).

Values. The estimand's free names stand for the query's values: one name per variable
and value, primed for a second value (``X`` and ``X'`` for ``X = 0`` and ``X = 1``), read
off ``result.values``. The formula holds for the pattern of equal and different values
in the query, so it is evaluated at those values only.

Inconsistent events (``Y_{X=0} = 1`` with ``Y_{X=0} = 0``, or events that merging shows to
be one variable at two values) have probability 0: ``result.inconsistent`` says why. An
event on a variable intervened on in its own world is rejected as bad input
(:class:`~scm_ppl.errors.InterventionError`) when it contradicts the intervention, and
dropped (it always holds) when it agrees.
"""

from __future__ import annotations

import copy
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import networkx as nx

from scm_ppl.errors import (
    EstimandError,
    NotIdentifiableError,
)
from scm_ppl.graphical._cf_data import as_experiments, as_observed
from scm_ppl.graphical._cf_estimand import Builder, display, observational, terms
from scm_ppl.graphical.cf_graph import CounterfactualGraph, Event, make_cg, parse_events
from scm_ppl.graphical.estimand import ONE, Expression, Fraction, Probability, Product, Sum
from scm_ppl.graphical.mixed_graph import ADMG, admg

__all__ = ["CounterfactualIdentification", "CounterfactualWitness", "identify_counterfactual"]

Query = Sequence[tuple[Mapping[str, int] | Iterable[tuple[str, int]], Mapping[str, int]]]


@dataclass(frozen=True)
class CounterfactualWitness:
    """Why a counterfactual query is not identified: a c-component of the counterfactual
    graph that needs ``variable`` at two values at once (``first`` and ``second``, as
    node labels such as ``X=0`` or ``X=1`` for an observed ``X``). Shpitser & Pearl
    (2008, Theorem 30) build from such a component two models that agree on every
    interventional distribution and disagree on the query.

    Examples
    --------
    >>> import networkx as nx
    >>> from scm_ppl.graphical.counterfactual_id import identify_counterfactual
    >>> pns = identify_counterfactual(nx.DiGraph([("X", "Y")]),
    ...                               [({"X": 1}, {"Y": 1}), ({"X": 0}, {"Y": 0})])
    >>> w = pns.witness  # PNS needs Y's one mechanism at X = 1 and at X = 0 at once
    >>> w.variable, w.component
    ('Y', ('Y_{X=1}', 'Y_{X=0}'))
    """

    component: tuple[str, ...]
    variable: str
    first: str
    second: str

    def __str__(self) -> str:
        return (
            f"the c-component {{{', '.join(self.component)}}} of the counterfactual graph "
            f"needs {self.variable} at two values at once ({self.first} and {self.second})"
        )


@dataclass(frozen=True)
class CounterfactualIdentification:
    """The answer of :func:`identify_counterfactual`.

    Attributes
    ----------
    query
        The query as text, e.g. ``"P(Y_{X=0}=1 | X=1)"``.
    graph
        The ADMG the query was answered on.
    identifiable
        Whether the interventional distributions determine the query (True as well for
        inconsistent events, whose probability is 0).
    estimand
        The formula in ``P(v)`` and ``P(v | do(x))`` terms; ``None`` when not identifiable
        or inconsistent.
    values
        The value of each free name of the estimand.
    experiments
        The intervened sets of the interventional terms the estimand still has (empty:
        the observational distribution suffices).
    counterfactual_graph
        The counterfactual graph (``networkx.DiGraph``; ``graph["bidirected"]`` holds the
        confounded pairs) of the query and the conditioning events.
    witness
        When not identifiable: the component that fails; else ``None``.
    inconsistent
        When the events cannot hold together: why (the probability is 0); else ``None``.

    Examples
    --------
    >>> import networkx as nx
    >>> from scm_ppl.graphical.counterfactual_id import identify_counterfactual
    >>> g = nx.DiGraph([("Z", "X"), ("Z", "Y"), ("X", "Y")])  # back-door through Z
    >>> ett = identify_counterfactual(g, [({"X": 0}, {"Y": 1})], given=[({}, {"X": 1})])
    >>> ett.identifiable, ett.experiments, ett.witness
    (True, (), None)
    >>> ett.estimand.text()
    "Σ_{Z} P(Y | X, Z) P(Z | X')"
    """

    query: str
    graph: ADMG
    identifiable: bool
    estimand: Expression | None
    values: Mapping[str, int]
    experiments: tuple[frozenset[str], ...]
    counterfactual_graph: nx.DiGraph = field(repr=False)
    witness: CounterfactualWitness | None = None
    inconsistent: str | None = None

    def evaluate(
        self,
        observed: Any = None,
        interventional: Any = None,
        *,
        strict: bool | None = None,
        bins: int = 16,
        max_levels: int = 10,
    ) -> float:
        """The query's probability from exact tables or from rows of data.

        Parameters
        ----------
        observed
            The observational distribution: a :class:`~scm_ppl.graphical.joint.DiscreteJoint`, an
            ``(array, names)`` pair, or rows ``{name: 1-D array}`` (the plug-in estimate).
        interventional
            For an estimand with interventional terms, as in :func:`scm_ppl.bounds`: a
            list of ``({"X": 0}, table_or_rows)`` pairs (the distribution under that
            intervention), or ``("X", rows)`` pairs for data in which ``X`` was set at
            random.
        strict
            Whether a formula that needs a stratum of probability zero raises (default:
            for data) or gives NaN; see :meth:`scm_ppl.graphical.estimand.Expression.array`.
        bins, max_levels
            Rows: a column with more than ``max_levels`` distinct values is continuous
            and cut into ``bins`` quantile bins, as
            :func:`scm_ppl.estimand_sampled.evaluate_sampled` does. Only summed
            variables may be continuous (a query's events need discrete values). The
            binned formula is biased: within a bin of an adjustment variable some
            confounding is left, so the answer drifts towards the confounded one; the
            bias shrinks as bins narrow (raise ``bins`` and the rows to see it settle).

        Raises
        ------
        NotIdentifiableError
            If the query is not identifiable.
        EstimandError, DataError
            If a needed distribution is missing or unusable, or positivity fails.
        """
        if self.inconsistent is not None:
            return 0.0
        if self.estimand is None:
            raise NotIdentifiableError(
                f"{self.query} is not identifiable from any set of experiments: "
                f"{self.witness}. Bound it instead (scm_ppl.bounds) or add assumptions."
            )
        fixed = set(self.graph.nodes) & _mentioned(self.estimand, self.values)
        read = as_observed(observed, fixed, bins, max_levels)
        joint, experiments = read.joint, as_experiments(interventional, read)
        missing = [sorted(x) for x in self.experiments if x not in experiments]
        if missing:
            raise EstimandError(
                f"The estimand of {self.query} needs experiments on {missing}; pass them "
                "as interventional=[({'X': 0}, table), ...] or [('X', rows), ...]."
            )
        if joint is None and observational(self.estimand):
            raise EstimandError(f"The estimand of {self.query} needs observed= as well.")
        return self.estimand.evaluate(
            joint, dict(self.values), strict=strict, experiments=experiments
        )

    def __str__(self) -> str:
        if self.inconsistent is not None:
            return f"{self.query} = 0 ({self.inconsistent})"
        if self.estimand is None:
            return f"{self.query} is not identifiable ({self.witness})"
        return f"{self.query} = {self.estimand}"


def _mentioned(expr: Expression, values: Mapping[str, int]) -> set[str]:
    """The variables whose values the query fixes (their columns must stay discrete)."""
    aliases = dict(a for p in terms(expr) for a in p.aliases)
    return {aliases.get(n, n) for n in values}


class _Fail(Exception):
    def __init__(self, witness: CounterfactualWitness) -> None:
        super().__init__()
        self.witness = witness


def _id_star(cg: CounterfactualGraph, b: Builder) -> Expression:
    """ID*: ``P`` of the events of ``cg`` as a sum of products over its c-components."""
    events = cg.query | cg.given
    terms = []
    for part in cg.districts():
        inside = set(part)
        seen: dict[str, tuple[Any, int]] = {}
        for node in part:
            # Two copies of one variable in one component: its two worlds share noise.
            _claim(cg, part, seen, node, copies=True)
        outcome = {cg.nodes[i].variable: b.name(cg, i) for i in part}
        do: dict[str, str] = {}
        for node in part:
            for p in cg.nodes[node].parents:
                if p not in inside:
                    _claim(cg, part, seen, p)
                    var = cg.nodes[p].variable
                    if var not in outcome:
                        do.setdefault(var, b.name(cg, p))
        terms.append(b.term(outcome, do))
    summed = {b.name(cg, i) for i in cg.random_nodes() if i not in events}
    return Sum.of(summed, Product.of(terms))


def _claim(
    cg: CounterfactualGraph,
    part: list[int],
    seen: dict[str, tuple[Any, int]],
    node: int,
    copies: bool = False,
) -> None:
    """Record the value ``node`` gives its variable in the component ``part``; two
    different values (or, with ``copies``, two nodes at all) are the failure of ID*."""
    n = cg.nodes[node]
    key = ("=", n.value) if n.value is not None else ("node", node)
    if n.variable in seen and (copies or seen[n.variable][0] != key):
        first, second = (cg.label(i) for i in (seen[n.variable][1], node))
        if not n.fixed and n.value is not None and not copies:
            second += f"={n.value}"
        component = tuple(cg.label(i) for i in part)
        raise _Fail(CounterfactualWitness(component, n.variable, first, second))
    seen.setdefault(n.variable, (key, node))


def _idc_star(g: ADMG, query: list[Event], given: list[Event], b: Builder) -> Expression:
    """IDC*: the estimand of ``P(query | given)``. Rule 2 runs on a graph merged with the
    conditioning values only, so that it holds for every value of the query, as the
    denominator ``P(given)`` (a sum over the query's values) needs."""
    cg = make_cg(g, query, given, merge_on_query=False)
    cg.query -= cg.given
    moved = True
    while moved and cg.given:
        moved = False
        for d in sorted(cg.given, key=cg.random_nodes().index):
            if cg.d_separated(d, cg.query, cg.given - {d}):
                cg.fix(d)
                moved = True
                break
    # P(query, given) holds at the query's values only: there its values may merge
    # copies too (the model after the moves above is itself a counterfactual graph).
    merged = copy.deepcopy(cg)
    merged.merge_on_query = True
    merged.merge()
    merged.prune()
    numerator = _id_star(merged if merged.conflict is None else cg, b) if cg.query else ONE
    if not cg.given:
        return numerator
    base = copy.deepcopy(cg)
    for i in base.query:
        if i not in base.given:
            base.nodes[i].value = None
    base.query = set()
    base.prune()
    return Fraction.of(numerator, _id_star(base, b))


def identify_counterfactual(
    graph_or_program: Any,
    query: Query,
    given: Query | None = None,
    *,
    observed: Iterable[str] | None = None,
    model_args: tuple[Any, ...] = (),
    model_kwargs: Mapping[str, Any] | None = None,
) -> CounterfactualIdentification:
    """Identify a counterfactual probability from the interventional distributions.

    Parameters
    ----------
    graph_or_program
        An :class:`~scm_ppl.ADMG`, a ``networkx.DiGraph`` (bidirected pairs in
        ``graph["bidirected"]``) or a NumPyro program (projected by :func:`scm_ppl.admg`).
    query
        The events, one ``(interventions, events)`` pair per world: ``[({"X": 0},
        {"Y": 1})]`` is ``Y_{X=0} = 1``; ``({}, {...})`` is the factual world. Values
        are integer codes.
    given
        Conditioning events, in the same form (IDC*); ``None`` for none.
    observed, model_args, model_kwargs
        As in :func:`scm_ppl.identify`.

    Returns
    -------
    CounterfactualIdentification

    Raises
    ------
    GraphError
        For a malformed or cyclic graph, or a variable the graph does not have.
    InterventionError
        For a world that sets a variable twice, or an event that contradicts its own
        world's intervention (``X_{X=0} = 1``).
    EvidenceError
        For an event value that is not a non-negative integer code.
    EstimandError
        When the conditioning events are inconsistent (``P(given) = 0``, so the
        conditional probability is undefined).

    Examples
    --------
    >>> import networkx as nx
    >>> from scm_ppl.graphical.counterfactual_id import identify_counterfactual
    >>> g = nx.DiGraph([("Z", "X"), ("Z", "Y"), ("X", "Y")])
    >>> ett = identify_counterfactual(g, [({"X": 0}, {"Y": 1})], given=[({}, {"X": 1})])
    >>> print(ett)
    P(Y_{X=0}=1 | X=1) = Σ_{Z} P(Y | X, Z) P(Z | X')
    >>> ett.values
    {'X': 0, "X'": 1, 'Y': 1}
    >>> pns = identify_counterfactual(nx.DiGraph([("X", "Y")]),
    ...                               [({"X": 1}, {"Y": 1}), ({"X": 0}, {"Y": 0})])
    >>> pns.identifiable, pns.witness.variable, pns.witness.component
    (False, 'Y', ('Y_{X=1}', 'Y_{X=0}'))
    """
    if isinstance(graph_or_program, ADMG) and observed is None:
        g = graph_or_program
    else:
        g = admg(graph_or_program, *model_args, observed=observed, **dict(model_kwargs or {}))
    order = {v: i for i, v in enumerate(g.topological_order())}
    events, text, seen = parse_events(query, g, "the query", order)
    conditions, given_text, given_seen = parse_events(given or [], g, "given", order)
    query_text = f"P({', '.join(text)}{' | ' if given_text else ''}{', '.join(given_text)})"

    def result(**kwargs: Any) -> CounterfactualIdentification:
        return CounterfactualIdentification(query=query_text, graph=g, **kwargs)

    if conditions and make_cg(g, [], conditions).conflict:
        raise EstimandError(
            f"The conditioning events of {query_text} are inconsistent: "
            f"{make_cg(g, [], conditions).conflict}. P(given) = 0, so the conditional "
            "probability is undefined; fix the conditioning events."
        )
    full = make_cg(g, events, conditions)
    if full.conflict is not None:
        return result(
            identifiable=True,
            estimand=None,
            values={},
            experiments=(),
            counterfactual_graph=full.to_networkx(),
            inconsistent=full.conflict,
        )
    b = Builder(g)
    try:
        if conditions:
            raw = _idc_star(g, events, conditions, b)
        else:
            raw = _id_star(full, b) if events else ONE
    except _Fail as failure:
        return result(
            identifiable=False,
            estimand=None,
            values={},
            experiments=(),
            counterfactual_graph=full.to_networkx(),
            witness=failure.witness,
        )
    estimand, values = display(raw, b, [*seen, *given_seen], set(g.nodes))
    experiments = sorted({frozenset(_plain(p.do, p)) for p in terms(estimand) if p.do}, key=sorted)
    return result(
        identifiable=True,
        estimand=estimand,
        values=values,
        experiments=tuple(experiments),
        counterfactual_graph=full.to_networkx(),
    )


def _plain(names: Iterable[str], p: Probability) -> set[str]:
    aliases = dict(p.aliases)
    return {aliases.get(n, n) for n in names}
