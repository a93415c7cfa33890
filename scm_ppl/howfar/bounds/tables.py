"""Reading the distributions and queries that :func:`scm_ppl.howfar.bounds.solve.bounds` is given.

Every distribution becomes a :class:`ProbabilityTable`: probabilities with one axis per
variable, and for each variable its support (the values, in order) so that values are
handled as indices ``0 .. k-1`` from here on.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from scm_ppl.errors import BoundsError, DataError
from scm_ppl.graphical.joint import DiscreteJoint
from scm_ppl.graphical.mixed_graph import ADMG

__all__ = [
    "ProbabilityTable",
    "as_table",
    "merge_supports",
    "needed",
    "parse_query",
    "prepare_experiments",
    "read_experiments",
    "reindex",
]

_SUM_TOLERANCE = 1e-6


@dataclass(frozen=True, eq=False)
class ProbabilityTable:
    """A probability table: ``probs`` has one axis per name; ``support[name]`` its values."""

    names: tuple[str, ...]
    probs: np.ndarray
    support: dict[str, tuple[Any, ...]]
    empirical: bool

    def restricted(self, variables: Sequence[str]) -> ProbabilityTable:
        """The marginal table over the names that are in ``variables`` (others summed out)."""
        keep = [n for n in self.names if n in set(variables)]
        if len(keep) == len(self.names):
            return self
        support = {n: self.support[n] for n in keep}
        return ProbabilityTable(
            names=tuple(keep), probs=self.marginal(keep), support=support, empirical=self.empirical
        )

    def marginal(self, keep: Sequence[str]) -> np.ndarray:
        """The marginal over ``keep``, axes in that order."""
        drop = tuple(i for i, n in enumerate(self.names) if n not in keep)
        summed = self.probs.sum(axis=drop) if drop else self.probs
        remaining = [n for n in self.names if n in keep]
        return np.transpose(summed, [remaining.index(n) for n in keep])


def _plain(value: Any) -> Any:
    return value.item() if isinstance(value, np.generic) else value


def _discrete_column(name: str, column: Any, what: str) -> np.ndarray:
    array = np.asarray(column)
    if array.ndim != 1:
        raise DataError(
            f"Column {name!r} of the {what} has shape {array.shape}; rows of data need one "
            "1-D array per variable."
        )
    if array.dtype.kind == "f":
        if not np.all(np.isfinite(array)):
            raise DataError(f"Column {name!r} of the {what} holds NaN or inf.")
        if not np.all(array == np.round(array)):
            example = array[array != np.round(array)][0]
            raise DataError(
                f"Column {name!r} of the {what} holds non-integer values such as {example!r}: "
                "it looks continuous. bounds works on discrete variables; discretise it "
                "first (e.g. np.digitize) or drop it from the graph."
            )
    elif array.dtype.kind not in "biuUSO":
        raise DataError(
            f"Column {name!r} of the {what} has dtype {array.dtype}; expected integer, bool, "
            "or string labels."
        )
    return array


def _from_rows(rows: Mapping[str, Any], what: str) -> ProbabilityTable:
    columns = {str(k): _discrete_column(str(k), v, what) for k, v in rows.items()}
    if not columns:
        raise DataError(f"The {what} has no variables.")
    lengths = {len(c) for c in columns.values()}
    if len(lengths) != 1 or 0 in lengths:
        raise DataError(
            f"The columns of the {what} must have one common, non-zero length; got lengths "
            f"{ {k: len(c) for k, c in columns.items()} }."
        )
    names = tuple(columns)
    support, codes = {}, []
    for name in names:
        values, inverse = np.unique(columns[name], return_inverse=True)
        support[name] = tuple(_plain(v) for v in values)
        codes.append(inverse.ravel())
    counts = np.zeros([len(support[n]) for n in names])
    np.add.at(counts, tuple(codes), 1.0)
    return ProbabilityTable(
        names=names, probs=counts / counts.sum(), support=support, empirical=True
    )


def _from_probs(
    probs: Any, names: Sequence[str], support: dict[str, tuple], what: str
) -> ProbabilityTable:
    array = np.asarray(probs, dtype=float)
    if not np.all(np.isfinite(array)) or np.any(array < 0):
        raise DataError(
            f"The {what} has negative or non-finite probabilities (min {np.nanmin(array):.3g}); "
            "a probability table must be non-negative."
        )
    if abs(array.sum() - 1.0) > _SUM_TOLERANCE:
        raise DataError(
            f"The {what} sums to {array.sum():.9g}, not 1. Pass probabilities (normalise "
            "counts by their total) or rows of data."
        )
    return ProbabilityTable(names=tuple(names), probs=array, support=support, empirical=False)


def as_table(source: Any, what: str) -> ProbabilityTable:
    """A :class:`ProbabilityTable` from rows of data (a mapping of 1-D arrays or a
    DataFrame), an ``xarray.DataArray`` with one dim per variable, or a
    :class:`DiscreteJoint`."""
    if isinstance(source, ProbabilityTable):
        return source
    if isinstance(source, DiscreteJoint):
        support = {n: tuple(range(source.cardinality(n))) for n in source.names}
        table = _from_probs(source.probs, source.names, support, what)
        return ProbabilityTable(
            names=table.names, probs=table.probs, support=support, empirical=source.empirical
        )
    if hasattr(source, "dims") and hasattr(source, "coords") and hasattr(source, "values"):
        names = tuple(str(d) for d in source.dims)
        support = {}
        for dim, size in zip(source.dims, np.shape(source.values), strict=True):
            coord = source.coords[dim].values if dim in source.coords else np.arange(size)
            support[str(dim)] = tuple(_plain(v) for v in np.asarray(coord))
        return _from_probs(source.values, names, support, what)
    if hasattr(source, "columns") and hasattr(source, "to_numpy"):
        return _from_rows({str(c): np.asarray(source[c]) for c in source.columns}, what)
    if isinstance(source, Mapping):
        return _from_rows(source, what)
    raise DataError(
        f"The {what} must be rows of discrete data (a dict of 1-D arrays or a DataFrame), an "
        f"xarray.DataArray with one dim per variable, or a DiscreteJoint; got "
        f"{type(source).__name__}."
    )


def merge_supports(
    tables: Sequence[tuple[ProbabilityTable, str]], explicit: Mapping[str, Sequence[Any]] | None
) -> dict[str, tuple[Any, ...]]:
    """One support per variable: ``explicit`` first, then exact tables' coordinates, then
    the union of values seen in data. Values outside a fixed support are an error."""
    support: dict[str, tuple[Any, ...]] = {
        k: tuple(_plain(v) for v in vs) for k, vs in (explicit or {}).items()
    }
    fixed = set(support)
    for table, _ in tables:
        if not table.empirical:
            for name in table.names:
                if name not in fixed:
                    support[name] = table.support[name]
                    fixed.add(name)
    for table, _ in tables:
        for name in table.names:
            if name not in fixed:
                seen = set(support.get(name, ())) | set(table.support[name])
                support[name] = tuple(sorted(seen))
    for table, what in tables:
        for name in table.names:
            outside = [v for v in table.support[name] if v not in support[name]]
            if outside and (table.empirical or np.any(table.probs)):
                raise DataError(
                    f"The {what} has value(s) {outside} for {name!r}, outside its support "
                    f"{list(support[name])}. Fix the data or widen support={{{name!r}: [...]}}."
                )
    return support


def reindex(table: ProbabilityTable, support: dict[str, tuple[Any, ...]]) -> np.ndarray:
    """``table.probs`` laid out on ``support`` (values it lacks get probability 0)."""
    out = np.zeros([len(support[n]) for n in table.names])
    index = [[support[n].index(v) for v in table.support[n]] for n in table.names]
    out[np.ix_(*index)] = table.probs
    return out


def _value_index(name: str, value: Any, support: dict[str, tuple[Any, ...]], where: str) -> int:
    if name not in support:
        raise BoundsError(
            f"Unknown variable {name!r} in {where}; the graph has variables {sorted(support)}."
        )
    if not support[name]:
        raise DataError(
            f"Variable {name!r} of {where} appears in no distribution given, so its values are "
            "unknown; add it to observed= or give support={...}."
        )
    value = _plain(np.asarray(value).item()) if np.ndim(value) == 0 else value
    if value not in support[name]:
        raise BoundsError(
            f"Unknown value {value!r} for {name!r} in {where}; its support is "
            f"{list(support[name])}."
        )
    return support[name].index(value)


def parse_query(
    query: Any, support: dict[str, tuple[Any, ...]], where: str = "the query"
) -> tuple[tuple[tuple[tuple[str, int], ...], tuple[tuple[str, int], ...]], ...]:
    """``[(intervention, event), ...]`` -> worlds with value indices, checked."""
    if isinstance(query, tuple) and len(query) == 2 and isinstance(query[0], Mapping):
        query = [query]
    if not isinstance(query, Sequence) or not query:
        raise BoundsError(
            f"{where} must be a non-empty list of (intervention, event) pairs such as "
            "[({'X': 1}, {'Y': 1}), ({'X': 0}, {'Y': 0})]; got " + repr(query)
        )
    worlds = []
    for item in query:
        if not (isinstance(item, tuple | list) and len(item) == 2):
            raise BoundsError(
                f"Each entry of {where} is an (intervention, event) pair; got {item!r}."
            )
        iv, event = item
        if not isinstance(iv, Mapping) or not isinstance(event, Mapping):
            raise BoundsError(
                f"An entry of {where} must pair two dicts {{variable: value}}; got {item!r}."
            )
        iv_idx = {
            k: _value_index(k, v, support, f"the intervention of {where}") for k, v in iv.items()
        }
        ev_idx = {}
        for k, v in event.items():
            index = _value_index(k, v, support, f"the event of {where}")
            if k in iv_idx and iv_idx[k] != index:
                raise BoundsError(
                    f"The world do({dict(iv)}) sets {k!r} to {iv[k]!r} and its event asks for "
                    f"{k!r} = {v!r}: one world cannot give a variable two values. Put the "
                    "event in another world (another intervention dict)."
                )
            if k not in iv_idx:
                ev_idx[k] = index
        worlds.append((tuple(sorted(iv_idx.items())), tuple(sorted(ev_idx.items()))))
    return tuple(worlds)


def read_experiments(
    interventional: Any, graph: ADMG
) -> list[tuple[dict[str, Any] | tuple[str, ...], ProbabilityTable, str]]:
    if interventional is None:
        return []
    if not isinstance(interventional, Sequence) or isinstance(interventional, str):
        raise BoundsError(
            "interventional= must be a list of (intervention, distribution) pairs, e.g. "
            "[({'X': 1}, p_do_x1), ({'X': 0}, p_do_x0)], or [('X', rct_rows)] for data in "
            f"which X was randomised; got {type(interventional).__name__}."
        )
    out = []
    for i, pair in enumerate(interventional):
        if not (isinstance(pair, tuple | list) and len(pair) == 2):
            raise BoundsError(f"interventional[{i}] must be an (intervention, distribution) pair.")
        spec, source = pair
        what = f"interventional distribution #{i}"
        if isinstance(spec, str):
            spec = (spec,)
        if isinstance(spec, Mapping):
            spec = dict(spec)
            names = list(spec)
        elif isinstance(spec, Sequence) and all(isinstance(s, str) for s in spec):
            spec = tuple(spec)
            names = list(spec)
        else:
            raise BoundsError(
                f"The intervention of {what} must be a dict {{variable: value}} or the names "
                f"of randomised variables; got {spec!r}."
            )
        unknown = sorted(set(names) - set(graph.nodes))
        if unknown:
            raise BoundsError(
                f"Unknown variable(s) {unknown} intervened on in {what}; the graph has "
                f"variables {sorted(graph.nodes)}."
            )
        out.append((spec, as_table(source, what), what))
    return out


def needed(table: ProbabilityTable, names: Sequence[str], what: str) -> None:
    missing = [n for n in names if n not in table.names]
    if missing:
        raise DataError(
            f"The {what} lacks variable(s) {missing} that the query needs; it has "
            f"{list(table.names)}."
        )


def prepare_experiments(
    raw: list[tuple[Any, ProbabilityTable, str]], support: dict[str, tuple[Any, ...]]
) -> list[tuple[dict[str, int], tuple[str, ...], np.ndarray]]:
    """Each experiment as (intervention indices, recorded variables, P(recorded | do))."""
    out = []
    for spec, table, what in raw:
        probs = reindex(table, support)
        full = ProbabilityTable(
            names=table.names, probs=probs, support=support, empirical=table.empirical
        )
        if isinstance(spec, dict):
            iv = {k: support[k].index(v) if v in support[k] else -1 for k, v in spec.items()}
            bad = [k for k, i in iv.items() if i < 0]
            if bad:
                raise BoundsError(
                    f"{what} intervenes with value(s) outside the support of {bad}: "
                    f"{ {k: list(support[k]) for k in bad} }."
                )
            for name, index in iv.items():
                if name in full.names and full.marginal([name])[index] < 1 - 1e-9:
                    raise DataError(
                        f"{what} is under do({name}={spec[name]!r}) but {name!r} takes other "
                        "values in it; pass only the rows of that arm."
                    )
            recorded = tuple(n for n in table.names if n not in iv)
            out.append((iv, recorded, full.marginal(list(recorded))))
        else:
            needed(table, spec, what)
            recorded = tuple(n for n in table.names if n not in spec)
            joint = full.marginal([*spec, *recorded])
            arms = joint.reshape(-1, *joint.shape[len(spec) :])
            for flat, arm in enumerate(arms):
                if arm.sum() > 0:
                    values = np.unravel_index(flat, joint.shape[: len(spec)])
                    iv = {k: int(v) for k, v in zip(spec, values, strict=True)}
                    out.append((iv, recorded, arm / arm.sum()))
    return out
