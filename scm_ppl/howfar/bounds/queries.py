"""Bounds on the usual causal quantities: interventional probabilities, the ATE, and the
probabilities of causation PN, PS and PNS (Tian & Pearl, 2000), each one call of the
linear programs of :mod:`scm_ppl.howfar.bounds.solve`.

Every query takes the options of :func:`~scm_ppl.howfar.bounds.solve.bounds` by name
(``interventional``, ``support``, ``max_response_types``, ``tighten``, ``model_args``,
``model_kwargs``); :data:`~scm_ppl.howfar.bounds.solve.OPTIONS_DOC` documents them once
and each docstring shows them under "Other Parameters".

The probabilities of causation name values as :func:`~scm_ppl.pn`, :func:`~scm_ppl.ps`
and :func:`~scm_ppl.pns` do: ``treated`` and ``control`` are the treatment's two values,
``positive`` the outcome's value that counts as "Y = 1" (the event happened); the outcome
takes two values, and the other one is "Y = 0".
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

from scm_ppl.errors import BoundsError, DataError
from scm_ppl.howfar.bounds.solve import (
    MAX_RESPONSE_TYPES,
    Bounds,
    Terms,
    bounds_of_terms,
    documents_options,
)

__all__ = ["ate_bounds", "interventional_bounds", "pn_bounds", "pns_bounds", "ps_bounds"]

Support = dict[str, tuple[Any, ...]]

_OPTION_NAMES = (
    "interventional",
    "support",
    "max_response_types",
    "tighten",
    "model_args",
    "model_kwargs",
)


def _options(arguments: Mapping[str, Any]) -> dict[str, Any]:
    """The shared options (:data:`~scm_ppl.howfar.bounds.solve.OPTIONS_DOC`) among a
    query's arguments (its ``locals()``), to pass on to the LP by name."""
    return {name: arguments[name] for name in _OPTION_NAMES}


@documents_options
def interventional_bounds(
    graph_or_model: Any,
    observed: Any,
    intervention: Mapping[str, Any],
    event: Mapping[str, Any],
    *,
    given: Mapping[str, Any] | None = None,
    interventional: Any = None,
    support: Mapping[str, Sequence[Any]] | None = None,
    max_response_types: int = MAX_RESPONSE_TYPES,
    tighten: bool = True,
    model_args: tuple = (),
    model_kwargs: Mapping[str, Any] | None = None,
) -> Bounds:
    """Bounds on ``P(event | do(intervention))``, or with ``given`` (factual evidence
    ``{variable: value}``) on ``P(event_{do(intervention)} | given)``.

    Other Parameters
    ----------------
    {options}

    Examples
    --------
    >>> import networkx as nx, numpy as np, xarray as xr
    >>> from scm_ppl.graphical.mixed_graph import ADMG
    >>> g = ADMG(nx.DiGraph([("X", "Y")]))           # no confounding: identified
    >>> p = xr.DataArray(np.array([[0.3, 0.2], [0.1, 0.4]]), dims=("X", "Y"),
    ...                  coords={"X": [0, 1], "Y": [0, 1]})
    >>> b = interventional_bounds(g, p, {"X": 1}, {"Y": 1})
    >>> round(b.lower, 9), round(b.upper, 9)
    (0.8, 0.8)
    """
    terms = ((1.0, [(dict(intervention), dict(event))]),)
    return bounds_of_terms(graph_or_model, observed, terms, given=given, **_options(locals()))


@documents_options
def ate_bounds(
    graph_or_model: Any,
    observed: Any,
    treatment: str,
    outcome: str,
    *,
    treated: Any = 1,
    control: Any = 0,
    interventional: Any = None,
    support: Mapping[str, Sequence[Any]] | None = None,
    max_response_types: int = MAX_RESPONSE_TYPES,
    tighten: bool = True,
    model_args: tuple = (),
    model_kwargs: Mapping[str, Any] | None = None,
) -> Bounds:
    """Bounds on ``E[Y | do(X = treated)] - E[Y | do(X = control)]``, one LP objective
    (not the difference of two intervals). The outcome's values must be numbers.

    Other Parameters
    ----------------
    {options}

    Examples
    --------
    >>> import networkx as nx, numpy as np, xarray as xr
    >>> from scm_ppl.graphical.mixed_graph import ADMG
    >>> g = ADMG(nx.DiGraph([("X", "Y")]), bidirected=[("X", "Y")])
    >>> p = xr.DataArray(np.array([[0.3, 0.2], [0.1, 0.4]]), dims=("X", "Y"),
    ...                  coords={"X": [0, 1], "Y": [0, 1]})
    >>> b = ate_bounds(g, p, "X", "Y")                # Manski: width 1
    >>> round(b.lower, 9), round(b.upper, 9)
    (-0.3, 0.7)
    """

    def terms(known: Support) -> Terms:
        values = known.get(outcome, ())
        if not values:
            raise DataError(
                f"The outcome {outcome!r} appears in no distribution given, so its values are "
                f"unknown; add it to observed= or give support={{{outcome!r}: [...]}}."
            )
        numeric = all(isinstance(v, int | float | bool) for v in values)
        if outcome in known and not numeric:
            raise BoundsError(
                f"ate_bounds needs numeric values of {outcome!r}; its support is {list(values)}. "
                "Bound P(Y = y | do(x)) with interventional_bounds instead."
            )
        out = [(float(y), [({treatment: treated}, {outcome: y})]) for y in values if y != 0]
        out += [(-float(y), [({treatment: control}, {outcome: y})]) for y in values if y != 0]
        return tuple(out) or ((0.0, [({treatment: treated}, {outcome: v}) for v in values[:1]]),)

    return bounds_of_terms(graph_or_model, observed, terms, given=None, **_options(locals()))


@documents_options
def pns_bounds(
    graph_or_model: Any,
    observed: Any,
    treatment: str,
    outcome: str,
    *,
    treated: Any = 1,
    control: Any = 0,
    positive: Any = 1,
    given: Mapping[str, Any] | None = None,
    interventional: Any = None,
    support: Mapping[str, Sequence[Any]] | None = None,
    max_response_types: int = MAX_RESPONSE_TYPES,
    tighten: bool = True,
    model_args: tuple = (),
    model_kwargs: Mapping[str, Any] | None = None,
) -> Bounds:
    """Probability of necessity and sufficiency ``P(Y_{X=treated} = 1, Y_{X=control} = 0)``,
    "Y = 1" meaning ``Y = positive`` (as in :func:`~scm_ppl.pns`); ``given``: factual
    evidence ``{variable: value}`` to condition on (PNS within a stratum).

    Other Parameters
    ----------------
    {options}

    Examples
    --------
    >>> import networkx as nx, numpy as np, xarray as xr
    >>> from scm_ppl.graphical.mixed_graph import ADMG
    >>> g = ADMG(nx.DiGraph([("X", "Y")]), bidirected=[("X", "Y")])
    >>> p = xr.DataArray(np.array([[0.3, 0.2], [0.1, 0.4]]), dims=("X", "Y"),
    ...                  coords={"X": [0, 1], "Y": ["no", "yes"]})
    >>> b = pns_bounds(g, p, "X", "Y", positive="yes")
    >>> round(b.lower, 3), round(b.upper, 3)
    (0.0, 0.7)
    """

    def terms(known: Support) -> Terms:
        yes, no = _binary_outcome("pns_bounds", outcome, positive, known)
        return (
            (1.0, [({treatment: treated}, {outcome: yes}), ({treatment: control}, {outcome: no})]),
        )

    return bounds_of_terms(graph_or_model, observed, terms, given=given, **_options(locals()))


@documents_options
def pn_bounds(
    graph_or_model: Any,
    observed: Any,
    treatment: str,
    outcome: str,
    *,
    treated: Any = 1,
    control: Any = 0,
    positive: Any = 1,
    interventional: Any = None,
    support: Mapping[str, Sequence[Any]] | None = None,
    max_response_types: int = MAX_RESPONSE_TYPES,
    tighten: bool = True,
    model_args: tuple = (),
    model_kwargs: Mapping[str, Any] | None = None,
) -> Bounds:
    """Probability of necessity ``P(Y_{X=control} = 0 | X = treated, Y = 1)``, "Y = 1"
    meaning ``Y = positive`` (as in :func:`~scm_ppl.pn`).

    Other Parameters
    ----------------
    {options}

    Examples
    --------
    >>> import networkx as nx, numpy as np, xarray as xr
    >>> from scm_ppl.graphical.mixed_graph import ADMG
    >>> g = ADMG(nx.DiGraph([("X", "Y")]))       # X exogenous: no confounding
    >>> p = xr.DataArray(np.array([[0.3, 0.2], [0.1, 0.4]]), dims=("X", "Y"),
    ...                  coords={"X": [0, 1], "Y": [0, 1]})
    >>> b = pn_bounds(g, p, "X", "Y")
    >>> round(b.lower, 6), round(b.upper, 6)  # Tian & Pearl (2000): [(0.8-0.4)/0.8, 0.6/0.8]
    (0.5, 0.75)
    """
    terms, given = _contrary_to_fact(
        "pn_bounds", treatment, outcome, positive, set_to=control, seen=treated, then_yes=False
    )
    return bounds_of_terms(graph_or_model, observed, terms, given=given, **_options(locals()))


@documents_options
def ps_bounds(
    graph_or_model: Any,
    observed: Any,
    treatment: str,
    outcome: str,
    *,
    treated: Any = 1,
    control: Any = 0,
    positive: Any = 1,
    interventional: Any = None,
    support: Mapping[str, Sequence[Any]] | None = None,
    max_response_types: int = MAX_RESPONSE_TYPES,
    tighten: bool = True,
    model_args: tuple = (),
    model_kwargs: Mapping[str, Any] | None = None,
) -> Bounds:
    """Probability of sufficiency ``P(Y_{X=treated} = 1 | X = control, Y = 0)``, "Y = 1"
    meaning ``Y = positive`` (as in :func:`~scm_ppl.ps`).

    Other Parameters
    ----------------
    {options}

    Examples
    --------
    >>> import networkx as nx, numpy as np, xarray as xr
    >>> from scm_ppl.graphical.mixed_graph import ADMG
    >>> g = ADMG(nx.DiGraph([("X", "Y")]))       # X exogenous: no confounding
    >>> p = xr.DataArray(np.array([[0.3, 0.2], [0.1, 0.4]]), dims=("X", "Y"),
    ...                  coords={"X": [0, 1], "Y": [0, 1]})
    >>> b = ps_bounds(g, p, "X", "Y")
    >>> round(b.lower, 6), round(b.upper, 6)  # Tian & Pearl (2000): [(0.8-0.4)/0.6, 1]
    (0.666667, 1.0)
    """
    terms, given = _contrary_to_fact(
        "ps_bounds", treatment, outcome, positive, set_to=treated, seen=control, then_yes=True
    )
    return bounds_of_terms(graph_or_model, observed, terms, given=given, **_options(locals()))


def _contrary_to_fact(
    name: str,
    treatment: str,
    outcome: str,
    positive: Any,
    *,
    set_to: Any,
    seen: Any,
    then_yes: bool,
) -> tuple[Callable[[Support], Terms], Callable[[Support], dict[str, Any]]]:
    """The query and the evidence of ``P(Y_{X=set_to} = y | X = seen, Y = the other value)``
    as functions of the support: ``y`` is the positive value when ``then_yes`` (PS), the
    other one otherwise (PN)."""

    def values(known: Support) -> tuple[Any, Any]:
        """``(y, the other value)``."""
        yes, no = _binary_outcome(name, outcome, positive, known)
        return (yes, no) if then_yes else (no, yes)

    def terms(known: Support) -> Terms:
        return ((1.0, [({treatment: set_to}, {outcome: values(known)[0]})]),)

    def given(known: Support) -> dict[str, Any]:
        return {treatment: seen, outcome: values(known)[1]}

    return terms, given


def _binary_outcome(name: str, outcome: str, positive: Any, known: Support) -> tuple[Any, Any]:
    """The outcome's values ``(positive, the other one)``, as its support spells them."""
    values = known.get(outcome, ())
    if not values:  # unknown or unseen: the query's parser names the problem
        return positive, positive
    same = [v for v in values if v == positive]
    if not same:
        raise BoundsError(
            f"positive={positive!r} is not a value of {outcome!r}; its support is "
            f"{list(values)}. Give the outcome value that counts as 'Y = 1'."
        )
    others = [v for v in values if v != positive]
    if len(others) != 1:
        raise BoundsError(
            f"{name} needs a binary outcome, but {outcome!r} takes {list(values)}: positive= "
            "names the value that counts as 'Y = 1' and the other one is 'Y = 0'. Coarsen the "
            "outcome to two values, or bound the events you mean with bounds()."
        )
    return same[0], others[0]
