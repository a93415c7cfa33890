"""Sharp bounds on interventional and counterfactual probabilities of discrete SCMs.

The data fix a distribution, not the mechanisms. For discrete variables on an ADMG, every
SCM is a distribution over *response types* (the canonical model,
:mod:`scm_ppl.howfar.bounds.canonical`), and a counterfactual probability is linear in that
distribution: its range over every SCM that reproduces the data is the interval between two
linear programs, solved here with ``scipy.optimize.linprog(method="highs")`` (Balke & Pearl,
1997; Tian & Pearl, 2000; Zhang, Tian & Bareinboim, 2022).

When are the bounds sharp? The variables a query needs split into a *factual* part ``F`` (an
ancestral union of districts that no intervention reaches, whose response types enter only
through its observed values, e.g. an unconfounded instrument) and the rest ``M``. The LP
conditions on ``F``'s values and runs over the joint response types of ``M``:

* ``M`` within one district: the LP ranges over exactly the SCMs that reproduce the given
  distributions, and ``sharp`` is True;
* ``M`` spanning several districts: their response types are independent in every SCM on
  the graph, a product constraint that no LP states; the LP lets them be dependent, which
  contains every SCM, so the bounds are valid but ``sharp`` is False (``reason`` says why).

A bidirected edge lets the whole district's noise be dependent (one latent per district,
as in Zhang, Tian & Bareinboim's canonical models). Sharpness is relative to the
variables the query needs (the smallest ancestral union of districts holding its
variables): with distributions compatible with the whole graph, variables outside it
cannot narrow the bounds. A sum of interventional probabilities that the ID algorithm
identifies is returned as a point (``lower == upper``) even where the LP alone is outer.
Data that no SCM on the graph reproduces exactly (finite samples) are met by the SCMs
nearest to them in L1, and ``sharp`` is then False.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

import networkx as nx
import numpy as np

from scm_ppl.errors import BoundsError, DataError
from scm_ppl.graphical.mixed_graph import ADMG, admg
from scm_ppl.howfar.bounds.canonical import (
    CanonicalBlock,
    World,
    _TooLarge,
    canonical_block,
    describe_worlds,
    relevant_variables,
)
from scm_ppl.howfar.bounds.lp import (
    constraints,
    distinct_columns,
    district_constraints,
    indicator,
    nearest,
    solve,
)
from scm_ppl.howfar.bounds.studies import (
    StudyTable,
    experiment_study,
    is_several,
    linear_system,
    probability_of,
    read_studies,
    study_sources,
)
from scm_ppl.howfar.bounds.tables import (
    ProbabilityTable,
    as_table,
    merge_supports,
    needed,
    parse_query,
    prepare_experiments,
    read_experiments,
    reindex,
)

__all__ = ["MAX_RESPONSE_TYPES", "OPTIONS_DOC", "Bounds", "bounds", "documents_options"]

MAX_RESPONSE_TYPES = 2**16
"""Default limit on the LP's columns (joint response types of the block ``M``)."""

OPTIONS_DOC = """\
interventional
    Experimental distributions: ``[(intervention, distribution), ...]`` with an
    intervention dict such as ``{"X": 1}``, or the name(s) of randomised variables
    (``[("X", rct_rows)]``: each arm is ``do(X = x)``).
support
    ``{variable: values}``; by default exact tables' coords, else the values seen.
max_response_types
    Refuse LPs with more columns than this.
tighten
    Where the bounds are outer (several districts downstream of the interventions),
    add Tian's per-district factors as rows: valid, often much narrower, but they tell
    apart response types that the data alone would merge, so the LP can grow from
    hundreds to tens of thousands of columns (six binary variables: ~0.07 s -> ~2 s).
model_args, model_kwargs
    Arguments of a program ``graph_or_model``."""
"""The options that :func:`bounds` and every query of :mod:`scm_ppl.howfar.bounds.queries`
take by name, as a numpydoc parameter list (:func:`documents_options` writes it in)."""

_F = TypeVar("_F", bound=Callable[..., Any])


def documents_options(fn: _F) -> _F:
    """Write :data:`OPTIONS_DOC` into ``fn``'s docstring where a line reads ``{options}``,
    at that line's indentation, so the shared options are documented once."""
    lines = []
    for line in (fn.__doc__ or "").split("\n"):
        if line.strip() == "{options}":
            indent = line[: len(line) - len(line.lstrip())]
            lines += [indent + entry for entry in OPTIONS_DOC.split("\n")]
        else:
            lines.append(line)
    fn.__doc__ = "\n".join(lines)
    return fn


Terms = tuple[tuple[float, Any], ...]
"""``(coefficient, query)`` pairs: the objective is the weighted sum of their probabilities."""


@dataclass(frozen=True, eq=False)
class Bounds:
    """The range of a query over every discrete SCM on the graph that fits the data.

    Attributes
    ----------
    lower, upper : float
        The bounds.
    sharp : bool
        Whether each bound is proven attained by an SCM on the graph that reproduces the
        given distributions (see the module docstring for the rule).
    reason : str
        Why the bounds are or are not sharp.
    method : str
        How they were computed (LP size, solver).
    query : str
        The query, written out.
    block : CanonicalBlock
        The response-type block the LP ran over (variables, parents, types).
    condition_probs : numpy.ndarray
        ``P(f)`` for each row of ``block.condition_configs()`` (NaN where only
        conditional tables were given, which leave it unknown).
    lower_solution, upper_solution : numpy.ndarray
        The response-type distributions (over ``block.types``) attaining each end,
        before division by ``P(given)`` for conditional queries.
    denominator : float
        ``P(given)`` for a conditional query, else 1.
    support : dict
        The values of every variable, in index order.

    Examples
    --------
    >>> import networkx as nx, numpy as np, xarray as xr
    >>> from scm_ppl.graphical.mixed_graph import ADMG
    >>> g = ADMG(nx.DiGraph([("X", "Y")]), bidirected=[("X", "Y")])  # confounded
    >>> p = xr.DataArray(np.array([[0.3, 0.2], [0.1, 0.4]]), dims=("X", "Y"),
    ...                  coords={"X": [0, 1], "Y": [0, 1]})
    >>> from scm_ppl.howfar import ate_bounds
    >>> b = ate_bounds(g, p, "X", "Y")      # Manski (1990): [0.4 - 0.7, 0.9 - 0.2], width 1
    >>> round(b.lower, 6), round(b.upper, 6), b.sharp
    (-0.3, 0.7, True)
    """

    lower: float
    upper: float
    sharp: bool
    reason: str
    method: str
    query: str
    block: CanonicalBlock = field(repr=False)
    condition_probs: np.ndarray = field(repr=False)
    lower_solution: np.ndarray = field(repr=False)
    upper_solution: np.ndarray = field(repr=False)
    denominator: float = field(default=1.0, repr=False)
    support: dict[str, tuple[Any, ...]] = field(default_factory=dict, repr=False)

    @property
    def width(self) -> float:
        """``upper - lower``."""
        return self.upper - self.lower

    def __iter__(self):
        return iter((self.lower, self.upper))


def _graph(source: Any, model_args: tuple, model_kwargs: Mapping[str, Any] | None) -> ADMG:
    if isinstance(source, ADMG):
        return source
    if isinstance(source, nx.DiGraph):
        return admg(source)
    if callable(source):
        program = getattr(source, "model", source)
        return admg(program, *model_args, **dict(model_kwargs or {}))
    raise BoundsError(
        "graph_or_model must be an ADMG, a networkx.DiGraph or a NumPyro program; got "
        f"{type(source).__name__}."
    )


@functools.lru_cache(maxsize=128)
def _cached_block(
    g: ADMG,
    worlds: tuple[World, ...],
    experiments: tuple[tuple[frozenset[str], frozenset[str]], ...],
    evidence: frozenset[str],
    cardinality: tuple[tuple[str, int], ...],
    max_types: int,
) -> CanonicalBlock:
    return canonical_block(g, worlds, experiments, evidence, dict(cardinality), max_types)


def bounds_of_terms(
    graph_or_model: Any,
    observed: Any,
    terms: Terms | Callable[[dict[str, tuple[Any, ...]]], Terms],
    *,
    given: Mapping[str, Any] | Callable[[dict[str, tuple[Any, ...]]], Mapping[str, Any]] | None,
    interventional: Any,
    support: Mapping[str, Sequence[Any]] | None,
    max_response_types: int,
    model_args: tuple,
    model_kwargs: Mapping[str, Any] | None,
    tighten: bool = True,
) -> Bounds:
    """Bounds on ``sum(coef * P(query | given))`` over ``terms``; the options are those of
    :func:`bounds`. ``terms`` and ``given`` may be functions of the support (``{variable:
    values}``, known only once the data are read), for queries that name values the data
    reveal, such as the other value of a binary outcome."""
    g = _graph(graph_or_model, model_args, model_kwargs)
    several = is_several(observed)
    studies: list[StudyTable] = []
    tables: list[StudyTable] = []
    rows_from = ""
    if several:
        studies = read_studies(observed, g)
        obs = None
        sources = study_sources(studies)
    else:
        obs = as_table(observed, "observed distribution").restricted(g.nodes)
        sources = [(obs, "observed distribution")]
    raw = [(spec, t.restricted(g.nodes), w) for spec, t, w in read_experiments(interventional, g)]
    sources += [(t, w) for _, t, w in raw]
    known = merge_supports(sources, support)
    known = {k: v for k, v in known.items() if k in g.nodes}
    for v in g.nodes:
        known.setdefault(v, ())
    if callable(terms):
        terms = terms(known)
    if callable(given):
        given = given(known)
    parsed_terms = tuple((coef, parse_query(q, known)) for coef, q in terms)
    evidence = parse_query([({}, dict(given))], known, "given")[0][1] if given else ()
    experiments = prepare_experiments(raw, known)
    all_worlds = tuple(w for _, worlds in parsed_terms for w in worlds)
    if evidence:
        all_worlds += (((), evidence),)
    exp_keys = tuple((frozenset(iv), frozenset(recorded)) for iv, recorded, _ in experiments)
    if several:
        # each study's variables must be in the block (or the factual part it conditions on)
        exp_keys += tuple((frozenset(), frozenset(s.names)) for s in studies)
    seeds = {v for w in all_worlds for part in w for v, _ in part}
    seeds |= {v for x, r in exp_keys for v in x | r}
    relevant = relevant_variables(g, frozenset(seeds))
    empty = sorted(v for v in relevant if not known[v])
    if empty:
        raise DataError(
            f"Variable(s) {empty} of the graph, which the query needs, appear in no "
            "distribution given; add them to observed= or give support={...}."
        )
    cardinality = tuple(sorted((v, len(known[v])) for v in relevant))
    try:
        block = _cached_block(
            g,
            all_worlds,
            exp_keys,
            frozenset(v for v, _ in evidence),
            cardinality,
            int(max_response_types),
        )
    except _TooLarge as err:
        raise BoundsError(
            f"The canonical model needs {err.total:,} joint response types ({err.detail}); "
            f"the limit is max_response_types={err.limit:,}. Coarsen variables, drop parents, "
            "or raise the limit if memory allows."
        ) from None
    if several:
        in_trials = any(t.empirical for _, t, _ in raw)
        tables = [s.on_support(known) for s in studies] + [
            experiment_study(iv, recorded, probs, in_trials) for iv, recorded, probs in experiments
        ]
        system = linear_system(block, tables)
        a, b, p_f, signature = system.a, system.b, system.p_f, system.signature
        rows_from = system.rows_from
        obs_full, tightened, empirical = None, None, any(t.empirical for t in tables)
    else:
        assert obs is not None
        names = [*block.conditioning, *block.variables]
        needed(obs, names, "observed distribution")
        obs_full = ProbabilityTable(
            names=obs.names, probs=reindex(obs, known), support=known, empirical=obs.empirical
        )
        a, b, p_f, signature = constraints(block, obs_full.marginal(names), experiments)
        tightened = (
            None
            if block.sharp or not tighten
            else district_constraints(block, g, obs_full.names, obs_full.probs)
        )
        empirical = obs.empirical or any(t.empirical for _, t, _ in raw)
    if tightened is not None and len(tightened[1]):
        from scipy import sparse

        rows, values = tightened
        # before the last row (sum q = 1), which ``nearest`` keeps exact
        a = sparse.vstack([a[:-1], sparse.csr_matrix(rows), a[-1:]]).tocsr()
        b = np.concatenate([b[:-1], values, b[-1:]])
        signature = np.column_stack([signature, rows.T.astype(np.int64)])
    c = np.zeros(block.size)
    for coef, worlds in parsed_terms:
        holds = indicator(block, worlds + ((((), evidence),) if evidence else ()))
        c += coef * _weighted(holds, p_f, block)
    denominator = 1.0
    if evidence:
        denominator = _probability_of_evidence(evidence, obs_full, tables if several else [])
        if denominator <= 0:
            raise BoundsError(
                f"The evidence {dict(given or {})} has probability 0 in the observed "
                "distribution; a conditional query needs it positive."
            )
    kept = distinct_columns(signature, c)
    a, c = a[:, kept], c[kept]
    low, high = solve(c, a, b, 1.0), solve(c, a, b, -1.0)
    sharp, reason = block.sharp, _reason(block)
    how = "exact constraints" if not several else f"exact constraints from {rows_from}"
    if tightened is not None:
        how += " and Tian's per-district factors"
    if low.status == 2 or high.status == 2:
        if not empirical:
            raise BoundsError(
                "The given distributions are not compatible with the graph"
                + (" or contradict each other" if several else "")
                + ": no SCM on it reproduces them (the linear program is infeasible). Check "
                "the graph, or that the tables come from one model."
            )
        low, high, distance = nearest(c, a, b)
        sharp = False
        how = f"nearest compatible distribution (L1 distance {distance:.3g})"
        reason = (
            f"The data are not exactly compatible with the graph (L1 distance {distance:.3g}, "
            "typical of finite samples); the bounds range over the SCMs closest to them. " + reason
        )
    for result in (low, high):
        if result.status != 0:
            raise BoundsError(f"The linear program failed: {result.message}")
    lower, upper = float(low.fun) / denominator, float(-high.fun) / denominator
    method = (
        f"linear program (scipy HiGHS) over {block.size} joint response types of "
        f"{list(block.variables)} ({len(kept)} distinct columns), conditioning on "
        f"{list(block.conditioning)}; {how}"
    )
    exact_lp = how.startswith("exact constraints")
    point = (
        None
        if sharp or evidence or not exact_lp or obs_full is None
        else _identified(g, parsed_terms, obs_full)
    )
    if point is not None and lower - 1e-7 <= point <= upper + 1e-7:
        lower = upper = point
        sharp = True
        reason = (
            "The query is identified on the graph (ID algorithm); its value is the "
            "estimand on the observed distribution. (The LP alone, without the "
            "independence of districts, gave the outer bounds in lower_solution/upper_solution.)"
        )
        method = f"identified: ID-algorithm estimand; {method}"
    text = " + ".join(
        f"{coef:g}*P({describe_worlds(w, known)})"
        if coef != 1
        else f"P({describe_worlds(w, known)})"
        for coef, w in parsed_terms
    )
    if evidence:
        text = f"[{text}] given {describe_worlds((((), evidence),), known)}"
    return Bounds(
        lower=min(lower, upper),
        upper=max(lower, upper),
        sharp=sharp,
        reason=reason,
        method=method,
        query=text,
        block=block,
        condition_probs=(
            p_f if p_f is not None else np.full(block.condition_configs().shape[0], np.nan)
        ),
        lower_solution=_expand(low.x, kept, block.size),
        upper_solution=_expand(high.x, kept, block.size),
        denominator=denominator,
        support=known,
    )


def _weighted(holds: np.ndarray, p_f: np.ndarray | None, block: CanonicalBlock) -> np.ndarray:
    """``sum_f P(f) holds[f]``; without ``P(f)`` the event must not depend on ``f``."""
    if p_f is not None:
        return p_f @ holds
    if not np.all(holds == holds[:1]):
        raise BoundsError(
            f"The query depends on the values of {list(block.conditioning)}, whose joint "
            "distribution no table gives (every table conditions on them). Add a marginal "
            f"table that holds {list(block.conditioning)}."
        )
    return holds[0].astype(float)


def _probability_of_evidence(
    evidence: tuple[tuple[str, int], ...], obs: ProbabilityTable | None, studies: list
) -> float:
    if obs is not None:
        return float(obs.marginal([v for v, _ in evidence])[tuple(i for _, i in evidence)])
    value = probability_of(studies, dict(evidence))
    if value is None:
        raise BoundsError(
            f"A conditional query needs P({', '.join(v for v, _ in evidence)}), and no "
            "marginal observational table holds all of those variables. Add one, or ask "
            "the unconditional query."
        )
    return value


@functools.lru_cache(maxsize=128)
def _identify(g: ADMG, treatment: tuple[str, ...], outcome: tuple[str, ...]) -> Any:
    from scm_ppl.graphical.id_algorithm import identify

    return identify(g, treatment, outcome)


def _identified(
    g: ADMG, terms: tuple[tuple[float, Any], ...], observed: ProbabilityTable
) -> float | None:
    """The value of a sum of single-world interventional probabilities that the ID
    algorithm identifies, evaluated on ``observed``; None when it does not apply."""
    total = 0.0
    for coef, worlds in terms:
        if len(worlds) != 1 or not worlds[0][0] or not worlds[0][1]:
            return None
        (iv, event) = worlds[0]
        treatment, outcome = tuple(v for v, _ in iv), tuple(v for v, _ in event)
        result = _identify(g, treatment, outcome)
        if not result.identifiable:
            return None
        try:
            table = result.evaluate((observed.probs, observed.names))
        except Exception:  # a variable the estimand needs is not observed: no shortcut
            return None
        value = float(table[tuple(i for _, i in iv) + tuple(i for _, i in event)])
        if not np.isfinite(value):
            return None
        total += coef * value
    return total


def _expand(solution: np.ndarray, kept: np.ndarray, size: int) -> np.ndarray:
    """A distribution over every type: each class's weight on its representative."""
    full = np.zeros(size)
    full[kept] = np.maximum(solution, 0.0)
    return full


def _reason(block: CanonicalBlock) -> str:
    if not block.variables:
        return "No response type is free: the query is a function of the observed distribution."
    if block.sharp:
        return (
            f"The free response types belong to one district {sorted(block.districts[0])}; "
            "the LP ranges over exactly the SCMs that reproduce the given distributions."
        )
    names = " and ".join(str(sorted(d)) for d in block.districts)
    return (
        f"The free response types span districts {names}, independent in every SCM on the "
        "graph; independence is not a linear constraint, so the LP lets them be dependent "
        "(keeping only its linear consequences, Tian's factors per district): the bounds "
        "are valid but not proven sharp."
    )


@documents_options
def bounds(
    graph_or_model: Any,
    observed: Any,
    query: Sequence[tuple[Mapping[str, Any], Mapping[str, Any]]],
    *,
    given: Mapping[str, Any] | None = None,
    interventional: Any = None,
    support: Mapping[str, Sequence[Any]] | None = None,
    max_response_types: int = MAX_RESPONSE_TYPES,
    tighten: bool = True,
    model_args: tuple = (),
    model_kwargs: Mapping[str, Any] | None = None,
) -> Bounds:
    """Sharp bounds on ``P(query | given)`` over every discrete SCM on the graph that
    reproduces the given distributions.

    Parameters
    ----------
    graph_or_model
        An :class:`~scm_ppl.ADMG`, a ``networkx.DiGraph`` (pairs in ``graph["bidirected"]``
        are latent confounders), or a NumPyro program (its ADMG by :func:`~scm_ppl.admg`).
    observed
        The observational distribution: rows of discrete data (a dict of 1-D arrays or a
        DataFrame; columns not in the graph are ignored), an ``xarray.DataArray`` of
        probabilities with one dim per variable (coords are the values), or a
        :class:`~scm_ppl.DiscreteJoint`. Or a *list* of tables from several studies, each
        over a subset of the variables: marginal tables (as above; every column must be
        in the graph) and conditional ones,
        :class:`~scm_ppl.howfar.Conditional` ``(table, given=...)``. Each table becomes
        linear constraints (``P(a, b) = p(a | b) P(b)`` for a conditional one); tables that
        do not condition on the instrument-like factual variables need their law from a
        marginal table (the error says which).
    query
        A conjunction of events across worlds: ``[(intervention, event), ...]``, e.g.
        ``[({"X": 1}, {"Y": 1}), ({"X": 0}, {"Y": 0})]`` for ``P(Y_{X=1}=1, Y_{X=0}=0)``.
        ``({}, event)`` is the factual world.
    given
        Factual evidence ``{variable: value}``: bounds on ``P(query | given)``.
    {options}

    Returns
    -------
    Bounds

    Raises
    ------
    BoundsError
        Unknown variables or values in the query, a world whose event contradicts its
        intervention, a canonical model that is too large, exact tables no SCM on the
        graph reproduces (or that contradict each other), a table over a variable the
        graph does not have.
    DataError
        Tables that are negative or do not sum to 1, continuous data, values outside a
        variable's support, missing variables.

    Examples
    --------
    >>> import networkx as nx, numpy as np, xarray as xr
    >>> from scm_ppl.graphical.mixed_graph import ADMG
    >>> g = ADMG(nx.DiGraph([("X", "Y")]), bidirected=[("X", "Y")])
    >>> p = xr.DataArray(np.array([[0.3, 0.2], [0.1, 0.4]]), dims=("X", "Y"),
    ...                  coords={"X": [0, 1], "Y": [0, 1]})
    >>> b = bounds(g, p, [({"X": 1}, {"Y": 1}), ({"X": 0}, {"Y": 0})])   # PNS
    >>> round(b.lower, 3), round(b.upper, 3), b.sharp
    (0.0, 0.7, True)

    Two-sample instrumental variables (Balke & Pearl's bivariate case): ``P(X | Z)`` from
    one study, ``P(Y | Z)`` from another.

    >>> from scm_ppl.howfar import Conditional
    >>> iv = ADMG(nx.DiGraph([("Z", "X"), ("X", "Y")]), bidirected=[("X", "Y")])
    >>> x_z = xr.DataArray(np.array([[0.9, 0.1], [0.2, 0.8]]), dims=("Z", "X"))
    >>> y_z = xr.DataArray(np.array([[0.6, 0.4], [0.3, 0.7]]), dims=("Z", "Y"))
    >>> b = bounds(iv, [Conditional(x_z, given="Z"), Conditional(y_z, given="Z")],
    ...            [({"X": 1}, {"Y": 1})])
    >>> round(b.lower, 3), round(b.upper, 3)
    (0.5, 0.9)
    """
    return bounds_of_terms(
        graph_or_model,
        observed,
        ((1.0, query),),
        given=given,
        interventional=interventional,
        support=support,
        max_response_types=max_response_types,
        model_args=model_args,
        model_kwargs=model_kwargs,
        tighten=tighten,
    )
