"""Reading the distributions that a counterfactual estimand is evaluated on.

Observational and experimental distributions become :class:`~scm_ppl.graphical.joint.DiscreteJoint`
tables. An experiment on ``X`` becomes one joint over ``X`` and the other variables in
which ``X`` was set at random, so ``P(v | do(x))`` is its conditional ``P(v | x)``: data
from a randomised trial are that already, and exact tables ``P(v | do(X = x))`` for
several ``x`` are stacked with equal weights.

Rows with a continuous column (more than ``max_levels`` distinct values) are cut into
quantile bins, with the edges of the first distribution that has the column, so that
every distribution uses the same bins (as :mod:`scm_ppl.estimand_sampled` does for
identified causal effects).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from scm_ppl.errors import DataError, EstimandError, SettingsError
from scm_ppl.graphical.joint import DiscreteJoint, as_joint

__all__ = ["as_experiments", "as_observed"]


class _Binner:
    """Integer codes for columns; continuous columns share the edges first seen."""

    def __init__(self, fixed: set[str], bins: int, max_levels: int) -> None:
        if bins < 2 or max_levels < 1:
            raise SettingsError(f"bins must be >= 2 and max_levels >= 1; got {bins}, {max_levels}.")
        self.fixed, self.bins, self.max_levels = fixed, bins, max_levels
        self.edges: dict[str, np.ndarray] = {}

    def codes(self, name: str, column: Any) -> np.ndarray:
        array = np.asarray(column)
        if array.ndim != 1:
            raise DataError(f"Column {name!r} must be 1-D; got shape {array.shape}.")
        if array.dtype.kind in "biu" and name not in self.edges:
            return array.astype(np.int64)
        if array.dtype.kind != "f" or not np.all(np.isfinite(array)):
            raise DataError(f"Column {name!r} must hold finite numbers; got dtype {array.dtype}.")
        levels = np.unique(array)
        integral = np.all(levels == np.round(levels)) and levels.min() >= 0
        if name not in self.edges and integral and levels.size <= self.max_levels:
            return array.astype(np.int64)
        if name in self.fixed:
            raise DataError(
                f"Column {name!r} looks continuous ({levels.size} distinct values), but the "
                "query fixes its value; counterfactual events need discrete variables."
            )
        if name not in self.edges:
            cuts = np.quantile(array, np.linspace(0.0, 1.0, self.bins + 1)[1:-1])
            self.edges[name] = np.unique(cuts)
        return np.searchsorted(self.edges[name], array, side="right").astype(np.int64)

    def joint(self, source: Any, what: str) -> DiscreteJoint:
        if isinstance(source, Mapping):
            if not source:
                raise DataError(f"The {what} has no columns.")
            codes = {str(k): self.codes(str(k), v) for k, v in source.items()}
            cards = {k: len(e) + 1 for k, e in self.edges.items() if k in codes}
            return DiscreteJoint.from_data(codes, cardinality=cards)
        try:
            return as_joint(source)
        except EstimandError as err:
            raise DataError(
                f"The {what} must be a DiscreteJoint, an (array, names) pair or rows "
                f"{{name: 1-D array}}; got {type(source).__name__}."
            ) from err


def as_observed(source: Any, fixed: set[str], bins: int, max_levels: int) -> Any:
    """The observational joint (``None`` stays ``None``); returns a joint with the
    binner attached for the experiments to reuse."""
    binner = _Binner(fixed, bins, max_levels)
    joint = None if source is None else binner.joint(source, "observational distribution")
    return _WithBinner(joint, binner)


class _WithBinner:
    def __init__(self, joint: DiscreteJoint | None, binner: _Binner) -> None:
        self.joint, self.binner = joint, binner


def as_experiments(
    interventional: Any, observed: _WithBinner
) -> dict[frozenset[str], DiscreteJoint]:
    """``{intervened variables: joint in which they were set at random}``."""
    if interventional is None:
        return {}
    if not isinstance(interventional, Sequence) or isinstance(interventional, str):
        raise DataError(
            "interventional= must be a list of pairs: [({'X': 0}, table), ({'X': 1}, table)] "
            f"or [('X', randomised_rows)]; got {type(interventional).__name__}."
        )
    stacked: dict[frozenset[str], list[tuple[dict[str, int], DiscreteJoint]]] = {}
    out: dict[frozenset[str], DiscreteJoint] = {}
    for i, pair in enumerate(interventional):
        if not (isinstance(pair, tuple | list) and len(pair) == 2):
            raise DataError(f"interventional[{i}] must be an (intervention, distribution) pair.")
        spec, source = pair
        joint = observed.binner.joint(source, f"interventional distribution #{i}")
        if isinstance(spec, Mapping):
            stacked.setdefault(frozenset(spec), []).append((dict(spec), joint))
            continue
        names = (spec,) if isinstance(spec, str) else tuple(spec)
        absent = [n for n in names if n not in joint.names]
        if absent:
            raise DataError(
                f"interventional[{i}] randomises {absent}, which its data lack; they have "
                f"{list(joint.names)}."
            )
        out[frozenset(names)] = joint
    for key, entries in stacked.items():
        out[key] = _stack(sorted(key), entries)
    return out


def _stack(names: list[str], entries: list[tuple[dict[str, int], DiscreteJoint]]) -> DiscreteJoint:
    """One joint over ``names`` and the rest, each entry weighted equally."""
    rest = [n for n in entries[0][1].names if n not in names]
    cards = [
        max(
            [int(spec[n]) + 1 for spec, _ in entries]
            + [j.cardinality(n) for _, j in entries if n in j.names]
        )
        for n in names
    ]
    shape = [entries[0][1].cardinality(n) for n in rest]
    out = np.zeros(cards + shape)
    for spec, joint in entries:
        if sorted(n for n in joint.names if n not in names) != sorted(rest):
            raise DataError(
                f"The interventional distributions on {names} must cover the same variables; "
                f"got {sorted(rest)} and {sorted(n for n in joint.names if n not in names)}."
            )
        out[tuple(int(spec[n]) for n in names)] += joint.marginal(rest) / len(entries)
    return DiscreteJoint(out, (*names, *rest), empirical=any(j.empirical for _, j in entries))
