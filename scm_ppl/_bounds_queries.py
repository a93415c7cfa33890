"""Bounds on the usual causal quantities: interventional probabilities, the ATE, and the
probabilities of causation PN, PS and PNS (Tian & Pearl, 2000), each one call of the
linear programs of :mod:`scm_ppl.bounds`."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from scm_ppl.bounds import Bounds, bounds, bounds_of_terms
from scm_ppl.errors import BoundsError

__all__ = ["ate_bounds", "interventional_bounds", "pn_bounds", "pns_bounds", "ps_bounds"]


def interventional_bounds(
    graph_or_model: Any,
    observed: Any,
    intervention: Mapping[str, Any],
    event: Mapping[str, Any],
    **options: Any,
) -> Bounds:
    """Bounds on ``P(event | do(intervention))``; ``options`` as in :func:`~scm_ppl.bounds`.

    Examples
    --------
    >>> import networkx as nx, numpy as np, xarray as xr
    >>> from scm_ppl.admg import ADMG
    >>> g = ADMG(nx.DiGraph([("X", "Y")]))           # no confounding: identified
    >>> p = xr.DataArray(np.array([[0.3, 0.2], [0.1, 0.4]]), dims=("X", "Y"),
    ...                  coords={"X": [0, 1], "Y": [0, 1]})
    >>> b = interventional_bounds(g, p, {"X": 1}, {"Y": 1})
    >>> round(b.lower, 9), round(b.upper, 9)
    (0.8, 0.8)
    """
    return bounds(graph_or_model, observed, [(dict(intervention), dict(event))], **options)


def ate_bounds(
    graph_or_model: Any,
    observed: Any,
    treatment: str,
    outcome: str,
    *,
    treated: Any = 1,
    control: Any = 0,
    **options: Any,
) -> Bounds:
    """Bounds on ``E[Y | do(X = treated)] - E[Y | do(X = control)]``, one LP objective
    (not the difference of two intervals). The outcome's values must be numbers.

    Examples
    --------
    >>> import networkx as nx, numpy as np, xarray as xr
    >>> from scm_ppl.admg import ADMG
    >>> g = ADMG(nx.DiGraph([("X", "Y")]), bidirected=[("X", "Y")])
    >>> p = xr.DataArray(np.array([[0.3, 0.2], [0.1, 0.4]]), dims=("X", "Y"),
    ...                  coords={"X": [0, 1], "Y": [0, 1]})
    >>> b = ate_bounds(g, p, "X", "Y")                # Manski: width 1
    >>> round(b.lower, 9), round(b.upper, 9)
    (-0.3, 0.7)
    """

    def terms(support: dict[str, tuple[Any, ...]]) -> tuple:
        values = support.get(outcome, ())
        numeric = all(isinstance(v, int | float | bool) for v in values)
        if outcome in support and not numeric:
            raise BoundsError(
                f"ate_bounds needs numeric values of {outcome!r}; its support is {list(values)}. "
                "Bound P(Y = y | do(x)) with interventional_bounds instead."
            )
        out = [(float(y), [({treatment: treated}, {outcome: y})]) for y in values if y != 0]
        out += [(-float(y), [({treatment: control}, {outcome: y})]) for y in values if y != 0]
        return tuple(out) or ((0.0, [({treatment: treated}, {outcome: v}) for v in values[:1]]),)

    return bounds_of_terms(graph_or_model, observed, terms, **_defaults(options))


def pns_bounds(
    graph_or_model: Any,
    observed: Any,
    treatment: str,
    outcome: str,
    *,
    treated: Any = 1,
    control: Any = 0,
    present: Any = 1,
    absent: Any = 0,
    **options: Any,
) -> Bounds:
    """Probability of necessity and sufficiency ``P(Y_{x} = y, Y_{x'} = y')`` with
    ``x = treated``, ``x' = control``, ``y = present``, ``y' = absent``."""
    query = [({treatment: treated}, {outcome: present}), ({treatment: control}, {outcome: absent})]
    return bounds(graph_or_model, observed, query, **options)


def pn_bounds(
    graph_or_model: Any,
    observed: Any,
    treatment: str,
    outcome: str,
    *,
    treated: Any = 1,
    control: Any = 0,
    present: Any = 1,
    absent: Any = 0,
    **options: Any,
) -> Bounds:
    """Probability of necessity ``P(Y_{x'} = y' | X = x, Y = y)``."""
    query = [({treatment: control}, {outcome: absent})]
    given = {treatment: treated, outcome: present}
    return bounds(graph_or_model, observed, query, given=given, **options)


def ps_bounds(
    graph_or_model: Any,
    observed: Any,
    treatment: str,
    outcome: str,
    *,
    treated: Any = 1,
    control: Any = 0,
    present: Any = 1,
    absent: Any = 0,
    **options: Any,
) -> Bounds:
    """Probability of sufficiency ``P(Y_{x} = y | X = x', Y = y')``."""
    query = [({treatment: treated}, {outcome: present})]
    given = {treatment: control, outcome: absent}
    return bounds(graph_or_model, observed, query, given=given, **options)


def _defaults(options: dict[str, Any]) -> dict[str, Any]:
    from scm_ppl.bounds import MAX_RESPONSE_TYPES

    allowed = {
        "interventional",
        "support",
        "max_response_types",
        "tighten",
        "model_args",
        "model_kwargs",
    }
    unknown = sorted(set(options) - allowed)
    if unknown:
        raise TypeError(f"Unexpected keyword argument(s) {unknown}; allowed: {sorted(allowed)}.")
    return {
        "given": None,
        "interventional": options.get("interventional"),
        "support": options.get("support"),
        "max_response_types": options.get("max_response_types", MAX_RESPONSE_TYPES),
        "model_args": options.get("model_args", ()),
        "model_kwargs": options.get("model_kwargs"),
        "tighten": options.get("tighten", True),
    }
