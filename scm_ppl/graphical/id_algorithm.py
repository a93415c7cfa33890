"""Graphical identification: is ``P(y | do(x))`` determined by ``P(v)``, and by what formula?

:func:`identify` runs the complete ID algorithm of Shpitser & Pearl, "Identification of
Joint Interventional Distributions in Recursive Semi-Markovian Causal Models" (AAAI 2006),
on the ADMG of a program or of a user graph, and IDC (Shpitser & Pearl, "Identification of
Conditional Interventional Distributions", UAI 2006) for ``P(y | do(x), z)``. The answer
is a symbolic estimand (:mod:`scm_ppl.graphical.estimand`) that evaluates exactly on a discrete
joint, or a *hedge*: two C-forests that witness that no formula exists (the algorithm is
complete, so a hedge is a proof of non-identifiability, not a failure to find one).

The fast special cases come first: for an unconditional query,
:func:`scm_ppl.graphical.adjustment.find_adjustment` looks for a back-door set (any treatment and
outcome sets), then a front-door set (one treatment, one outcome). When one applies, the
result reports it in ``adjustment`` and its formula is the estimand; ID runs otherwise.
"""

from __future__ import annotations

import functools
import warnings
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import jax
import networkx as nx
import numpy as np

from scm_ppl.errors import GraphError, NotIdentifiableError, NotIdentifiableWarning
from scm_ppl.graphical.adjustment import AdjustmentFormula, find_adjustment
from scm_ppl.graphical.estimand import Expression, Fraction, Probability, Product, Sum
from scm_ppl.graphical.estimand_sampled import SampledEvaluation, evaluate_sampled
from scm_ppl.graphical.joint import Joint
from scm_ppl.graphical.mixed_graph import ADMG, admg, latent_projection

__all__ = [
    "Hedge",
    "IdentificationResult",
    "NotIdentifiableError",
    "identify",
    "roots_that_identify",
]


@dataclass(frozen=True)
class Hedge:
    """The witness of non-identifiability returned by line 5 of ID.

    ``forest`` (F) and ``subforest`` (F') are the node sets of two C-forests with the same
    root set, for the query ``P(outcome | do(treatment))`` that ID was solving (IDC may
    have moved conditioning variables into it): F' ⊂ F, F meets the treatment and F'
    does not, and the roots are ancestors of the outcome once the treatment's incoming
    edges are cut. From them Shpitser & Pearl (2006) build two models that agree on
    ``P(v)`` and disagree on the query (the completeness of ID).

    Examples
    --------
    >>> import networkx as nx
    >>> from scm_ppl.graphical import identify
    >>> bow = nx.DiGraph([("x", "y")])
    >>> bow.graph["bidirected"] = [("x", "y")]   # x <-> y: a latent confounder
    >>> hedge = identify(bow, "x", "y").hedge
    >>> sorted(hedge.forest), sorted(hedge.subforest)
    (['x', 'y'], ['y'])
    """

    forest: frozenset[str]
    subforest: frozenset[str]
    treatment: frozenset[str]
    outcome: frozenset[str]

    def __str__(self) -> str:
        query = Probability(self.outcome, do=self.treatment).text()
        return f"hedge for {query}: F = {sorted(self.forest)}, F' = {sorted(self.subforest)}"


@dataclass(frozen=True)
class IdentificationResult:
    """The answer of :func:`identify`.

    Attributes
    ----------
    query
        The query as text, e.g. ``"P(y | do(x))"``.
    treatment, outcome, given
        The query's variables, in the order given.
    graph
        The ADMG the query was answered on (``graph.to_digraph()`` plots it).
    identifiable
        Whether ``P(v)`` determines the query.
    estimand
        The formula in observational probabilities; ``None`` when not identifiable.
    hedge
        The witness of non-identifiability; ``None`` when identifiable.
    adjustment
        The back-door or front-door formula when one applies (unconditional queries
        only); then ``estimand`` is its :meth:`~scm_ppl.graphical.AdjustmentFormula.estimand`.
        ``None`` when no adjustment formula applies and ID found the estimand (or a hedge).

    Examples
    --------
    >>> import networkx as nx
    >>> from scm_ppl.graphical import identify
    >>> result = identify(nx.DiGraph([("z", "x"), ("z", "y"), ("x", "y")]), "x", "y")
    >>> result.identifiable, result.adjustment.kind, sorted(result.adjustment.set)
    (True, 'backdoor', ['z'])
    """

    query: str
    treatment: tuple[str, ...]
    outcome: tuple[str, ...]
    given: tuple[str, ...]
    graph: ADMG
    identifiable: bool
    estimand: Expression | None
    hedge: Hedge | None
    adjustment: AdjustmentFormula | None = None

    def evaluate(self, joint: Joint, *, strict: bool | None = None) -> np.ndarray:
        """The queried distribution computed exactly from an observational joint.

        Parameters
        ----------
        joint
            A :class:`~scm_ppl.graphical.joint.DiscreteJoint` or an ``(array, names)`` pair over
            (at least) the variables of the estimand.
        strict
            Whether a value that needs a stratum of probability zero raises; by default
            when ``joint`` is empirical (from counts or data). See
            :meth:`scm_ppl.graphical.estimand.Expression.array`.

        Returns
        -------
        numpy.ndarray
            Axes ``(*treatment, *given, *outcome)``: ``table[x][y]`` is ``P(y | do(x))``.
            Without ``strict``, NaN where the formula needs a zero-probability stratum
            (positivity fails there).

        Raises
        ------
        NotIdentifiableError
            If the query is not identifiable.
        EstimandError
            With ``strict``, where positivity fails; the message names the stratum.
        """
        if self.estimand is None:
            raise NotIdentifiableError(
                f"{self.query} is not identifiable from observational data on this graph "
                f"({self.hedge}); no joint distribution determines it. Add assumptions "
                "(a parametric model, more observed variables) or use experimental data."
            )
        axes = (*self.treatment, *self.given, *self.outcome)
        return self.estimand.array(joint, axes, strict=strict)

    def evaluate_sampled(
        self,
        source: Mapping[str, Any] | Callable[..., Any],
        *,
        rng_key: jax.Array | None = None,
        num_samples: int = 100_000,
        bins: int = 16,
        outcome_bins: int = 256,
        max_levels: int = 10,
        model_args: tuple[Any, ...] = (),
        model_kwargs: Mapping[str, Any] | None = None,
    ) -> SampledEvaluation:
        """The queried distribution and outcome means from continuous rows: data, or a
        Monte-Carlo sample of a program's (a fitted SCM's) observational distribution.

        Continuous variables are cut into ``bins`` quantile bins; see
        :func:`scm_ppl.graphical.estimand_sampled.evaluate_sampled` for the parameters and the
        discretisation bias.
        """
        return evaluate_sampled(
            self,
            source,
            rng_key=rng_key,
            num_samples=num_samples,
            bins=bins,
            outcome_bins=outcome_bins,
            max_levels=max_levels,
            model_args=model_args,
            model_kwargs=model_kwargs,
        )

    def __str__(self) -> str:
        if self.estimand is None:
            return f"{self.query} is not identifiable ({self.hedge})"
        return f"{self.query} = {self.estimand}"


class _Fail(Exception):
    """Line 5 of ID: the current graph and district form a hedge."""

    def __init__(self, forest: frozenset[str], subforest: frozenset[str]) -> None:
        super().__init__()
        self.forest, self.subforest = forest, subforest


class _Hedged(Exception):
    """IDC could not identify its query; carries the hedge."""

    def __init__(self, hedge: Hedge) -> None:
        super().__init__()
        self.hedge = hedge


@dataclass(frozen=True)
class _Dist:
    """The distribution ``P`` that ID passes down: a joint over ``variables``.

    Its expression may also mention values fixed by an enclosing call (the treatments of
    line 7); those are never among ``variables``, so marginalising cannot capture them.
    """

    expr: Expression
    variables: frozenset[str]

    def marginal(self, keep: frozenset[str]) -> Expression:
        return Sum.of(self.variables - keep, self.expr)

    def conditional(self, v: str, given: frozenset[str]) -> Expression:
        return Fraction.of(self.marginal(given | {v}), self.marginal(given))


class _ID:
    """ID and IDC on one ADMG; node subsets stand for induced subgraphs."""

    def __init__(self, g: ADMG) -> None:
        self.g = g
        self.position = {v: i for i, v in enumerate(g.topological_order())}
        self.parents = {v: g.parents(v) for v in g}
        self.siblings = {v: g.siblings(v) for v in g}

    def sorted(self, nodes: Iterable[str]) -> list[str]:
        return sorted(nodes, key=self.position.__getitem__)

    def ancestors(
        self, ys: frozenset[str], within: frozenset[str], cut: frozenset[str] = frozenset()
    ) -> frozenset[str]:
        """Ancestors of ``ys`` in ``G[within]`` with the edges into ``cut`` removed."""
        seen, stack = set(ys), list(ys)
        while stack:
            node = stack.pop()
            if node in cut:
                continue
            for parent in self.parents[node] & within:
                if parent not in seen:
                    seen.add(parent)
                    stack.append(parent)
        return frozenset(seen)

    def districts(self, within: frozenset[str]) -> list[frozenset[str]]:
        """The districts of ``G[within]``, by topological position of their first node."""
        found, seen = [], set()
        for start in self.sorted(within):
            if start in seen:
                continue
            district, stack = {start}, [start]
            while stack:
                for sib in self.siblings[stack.pop()] & within:
                    if sib not in district:
                        district.add(sib)
                        stack.append(sib)
            seen |= district
            found.append(frozenset(district))
        return found

    def factor(self, p: _Dist, v: str, nodes: frozenset[str]) -> Expression:
        """``P(v | v_π^{(i-1)})`` under ``p``, the predecessors taken in ``G[nodes]``.

        ``v`` is independent of its other predecessors given its Markov blanket in the
        graph of ``v`` and its predecessors: its district there and the district's parents
        (the ordered local Markov property of ADMGs, Richardson 2003; Tian & Pearl 2002).
        ``p`` is Markov to ``G[nodes]`` at every call of ID, so both forms are equal;
        the smaller one is returned (``P(y | x)`` rather than ``P(y | w, x)``).
        """
        before = frozenset(u for u in nodes if self.position[u] < self.position[v])
        full = p.conditional(v, before)
        district = next(d for d in self.districts(before | {v}) if v in d)
        blanket = (district | frozenset().union(*(self.parents[u] for u in district))) & (
            before | {v}
        )
        blanket -= {v}
        if blanket == before:
            return full
        short = p.conditional(v, blanket)
        return short if short.size() <= full.size() else full

    def id(self, y: frozenset[str], x: frozenset[str], p: _Dist, v: frozenset[str]) -> Expression:
        """The function ID(y, x, P, G[v]) of Shpitser & Pearl (2006); raises :class:`_Fail`."""
        # Line 1: no intervention, marginalise.
        if not x:
            return p.marginal(y)
        # Line 2: only ancestors of Y matter; the rest is summed out of P.
        ancestors = self.ancestors(y, v)
        if ancestors != v:
            return self.id(y, x & ancestors, _Dist(p.marginal(ancestors), ancestors), ancestors)
        # Line 3: intervening on W, which affects Y only through X, changes nothing.
        w = (v - x) - self.ancestors(y, v, cut=x)
        if w:
            return self.id(y, x | w, p, v)
        # Line 4: c-component factorisation of G \ X.
        parts = self.districts(v - x)
        if len(parts) > 1:
            terms = [self.id(s, v - s, p, v) for s in parts]
            return Sum.of(v - (y | x), Product.of(terms))
        (s,) = parts
        whole = self.districts(v)
        # Line 5: G is one c-component: G and S form a hedge.
        if len(whole) == 1:
            raise _Fail(v, s)
        # Line 6: S is a district of G: P_{v\s}(s) is a product of conditionals.
        if s in whole:
            return Sum.of(s - y, Product.of(self.factor(p, u, v) for u in self.sorted(s)))
        # Line 7: S lies in a larger district S'; recurse on G[S'] with P_{v\s'}(s').
        (bigger,) = [d for d in whole if s < d]
        q = Product.of(self.factor(p, u, v) for u in self.sorted(bigger))
        return self.id(y, x & bigger, _Dist(q, bigger), bigger)

    def idc(self, y: frozenset[str], x: frozenset[str], z: frozenset[str]) -> Expression:
        """IDC(y, x, z, P, G) of Shpitser & Pearl (UAI 2006); raises :class:`_Hedged`."""
        # Line 1: a Z_i that is d-separated from Y given the rest once X's incoming and
        # Z_i's outgoing edges are cut can be moved from the evidence into the treatments
        # (rule 2 of the do-calculus).
        moved = True
        while moved:
            moved = False
            for zi in self.sorted(z):
                cut = self.g.cut_incoming(x).cut_outgoing([zi])
                dag = cut.to_dag()[0]
                if nx.is_d_separator(dag, set(y), {zi}, set(x | z - {zi})):
                    x, z, moved = x | {zi}, z - {zi}, True
                    break
        v = frozenset(self.g.nodes)
        base = _Dist(Probability(v), v)
        try:
            joint = self.id(y | z, x, base, v)
        except _Fail as failure:
            hedge = Hedge(
                forest=failure.forest, subforest=failure.subforest, treatment=x, outcome=y | z
            )
            raise _Hedged(hedge) from None
        if not z:
            return joint
        # Line 2: P(y | do(x), z) = P_x(y, z) / Σ_y P_x(y, z).
        return Fraction.of(joint, Sum.of(y, joint))


def _variables(value: str | Iterable[str] | None, what: str) -> tuple[str, ...]:
    if value is None:
        return ()
    items = [value] if isinstance(value, str) or not isinstance(value, Iterable) else list(value)
    bad = [item for item in items if not isinstance(item, str)]
    if bad:
        raise GraphError(f"The {what} must be a name or names (strings); got {bad!r}.")
    return tuple(dict.fromkeys(items))


def identify(
    source: Callable[..., Any] | nx.DiGraph | ADMG,
    treatment: str | Iterable[str],
    outcome: str | Iterable[str],
    *,
    given: str | Iterable[str] | None = None,
    observed: Iterable[str] | None = None,
    model_args: tuple[Any, ...] = (),
    model_kwargs: Mapping[str, Any] | None = None,
) -> IdentificationResult:
    """Identify ``P(outcome | do(treatment), given)`` from the observational distribution.

    Parameters
    ----------
    source
        A NumPyro program, a ``networkx.DiGraph`` (bidirected pairs in
        ``graph["bidirected"]``) or an :class:`~scm_ppl.graphical.mixed_graph.ADMG`; see
        :func:`scm_ppl.graphical.mixed_graph.admg` for how it is projected onto observed variables.
    treatment, outcome
        A variable name or names; non-empty and disjoint.
    given
        Variables conditioned on (IDC); disjoint from both.
    observed
        The observed variables, if not the default of :func:`scm_ppl.graphical.mixed_graph.admg`.
    model_args, model_kwargs
        Arguments of the program, to trace its graph.

    Returns
    -------
    IdentificationResult
        ``identifiable``, the ``estimand`` or the ``hedge``, the ``adjustment`` formula
        when a back-door or front-door set applies, and ``evaluate(joint)``.

    Raises
    ------
    GraphError
        For an empty treatment or outcome, names that are not observed variables of the
        graph, overlapping treatment / outcome / given, or a malformed graph.

    Examples
    --------
    >>> import networkx as nx
    >>> from scm_ppl.graphical.id_algorithm import identify
    >>> front_door = nx.DiGraph([("x", "m"), ("m", "y")])
    >>> front_door.graph["bidirected"] = [("x", "y")]
    >>> result = identify(front_door, "x", "y")
    >>> print(result.estimand)
    Σ_{m} P(m | x) Σ_{x'} P(x') P(y | m, x')
    >>> result.adjustment.kind, sorted(result.adjustment.set)
    ('frontdoor', ['m'])
    >>> bow = nx.DiGraph([("x", "y")])
    >>> bow.graph["bidirected"] = [("x", "y")]
    >>> result = identify(bow, "x", "y")
    >>> result.identifiable, str(result.hedge)
    (False, "hedge for P(y | do(x)): F = ['x', 'y'], F' = ['y']")
    """
    x, y = _variables(treatment, "treatment"), _variables(outcome, "outcome")
    z = _variables(given, "given variables")
    for name, names in (("treatment", x), ("outcome", y)):
        if not names:
            raise GraphError(f"The {name} is empty; name at least one variable.")
    for (a, xs), (b, ys) in (
        (("treatment", x), ("outcome", y)),
        (("treatment", x), ("given", z)),
        (("outcome", y), ("given", z)),
    ):
        if set(xs) & set(ys):
            raise GraphError(
                f"{sorted(set(xs) & set(ys))} is in both the {a} and the {b}; a variable can "
                "play only one role in a query."
            )
    if isinstance(source, ADMG) and observed is None:
        g = source
    else:
        g = admg(source, *model_args, observed=observed, **dict(model_kwargs or {}))
    unknown = [n for n in (*x, *y, *z) if n not in g]
    if unknown:
        raise GraphError(
            f"Unknown variables {unknown}: the ADMG's observed variables are {list(g.nodes)}. "
            "Latent sites are projected out; pass observed=[...] to keep one."
        )

    query = Probability(frozenset(y), given=frozenset(z), do=frozenset(x)).text()
    answer = functools.partial(
        IdentificationResult, query=query, treatment=x, outcome=y, given=z, graph=g
    )
    if not z:
        formula = find_adjustment(g.directed, x, y, g.bidirected_edges())
        if formula is not None:
            return answer(
                identifiable=True, estimand=formula.estimand(), hedge=None, adjustment=formula
            )
    solver = _ID(g)
    try:
        estimand = solver.idc(frozenset(y), frozenset(x), frozenset(z))
    except _Hedged as failure:
        if observed is None and callable(source) and not isinstance(source, nx.Graph | ADMG):
            _warn_projected_roots(source, model_args, model_kwargs, g, x, y, z)
        return answer(identifiable=False, estimand=None, hedge=failure.hedge)
    # Line 3 of ID may leave a treatment W that does not affect Y in the formula; the
    # value does not depend on it, so average it out over P(w) (positivity assumed).
    extra = estimand.free_variables() - set(x) - set(y) - set(z)
    if extra:
        estimand = Sum.of(extra, Product.of([Probability(frozenset(extra)), estimand]))
    return answer(identifiable=True, estimand=estimand, hedge=None)


def _warn_projected_roots(source, model_args, model_kwargs, g, x, y, z) -> None:
    """Warn when measuring a root that the default projection hid would identify the query."""
    from scm_ppl.core.causal_graph import graph

    dag = graph(source, *model_args, **dict(model_kwargs or {}))
    latent = sorted(set(dag) - set(g.nodes))
    roots = roots_that_identify(dag, latent, x, y, z)
    if roots:
        keep = sorted(g.nodes) + roots
        warnings.warn(
            f"P({', '.join(y)} | do({', '.join(x)})) is not identified with {roots} "
            f"projected out as latent (the default: unobserved exogenous sample sites are "
            f"latent), but it is identified if {roots} {'is' if len(roots) == 1 else 'are'} "
            f"observed. If your data have {roots}, pass observed={keep}.",
            NotIdentifiableWarning,
            stacklevel=3,
        )


def roots_that_identify(
    dag: nx.DiGraph,
    latent: Iterable[str],
    treatment: Iterable[str],
    outcome: Iterable[str],
    given: Iterable[str] = (),
) -> list[str]:
    """The latent roots (two or more children) whose measurement identifies the query.

    ``P(outcome | do(treatment), given)`` is checked on the projection of ``dag`` that
    keeps one such root observed; the roots for which that identifies it are returned.
    When no single root does, all of them together are tried; ``[]`` when that fails too.

    Examples
    --------
    >>> import networkx as nx
    >>> from scm_ppl.graphical.id_algorithm import roots_that_identify
    >>> dag = nx.DiGraph([("z", "x"), ("z", "y"), ("x", "y")])
    >>> roots_that_identify(dag, ["z"], ["x"], ["y"])
    ['z']
    """
    hidden = set(latent)
    roots = sorted(r for r in hidden if dag.in_degree(r) == 0 and dag.out_degree(r) >= 2)
    x, y, z = sorted(treatment), sorted(outcome), sorted(given)

    def identified(shown: set[str]) -> bool:
        return identify(latent_projection(dag, hidden - shown), x, y, given=z).identifiable

    single = [r for r in roots if identified({r})]
    if single or not roots:
        return single
    return roots if len(roots) > 1 and identified(set(roots)) else []
