"""Distributions from several studies: marginal and conditional tables over subsets of the
variables, each a set of linear rows on the canonical model's response-type distribution.

Two-sample data are common: an instrument's effect on the treatment measured in one study,
on the outcome in another (``P(X | Z)`` and ``P(Y | Z)``, Balke & Pearl's bivariate case, as
in bpbounds' ``fmt="bivariate"``). Neither table holds every variable, and the studies need
not share a law of ``Z``. Each table still constrains the response types ``q`` linearly:

* a conditional table ``P(A | B)``: ``P(a, b) - p(a | b) P(b) = 0`` for every cell;
* a marginal table ``P(S)``: ``P(s)`` equals its value.

Both sides are linear in ``q`` given the law ``P(f)`` of the factual part the linear program
conditions on (:mod:`scm_ppl.howfar.bounds.canonical`). A table that conditions on every
factual variable is read per value ``f``, where ``P(f)`` cancels; only tables that leave a
factual variable unconditioned, and a query whose event depends on ``f``, need ``P(f)``, and
it is then read from a marginal table that holds every factual variable.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from scm_ppl.errors import BoundsError, DataError
from scm_ppl.graphical.mixed_graph import ADMG
from scm_ppl.howfar.bounds.canonical import CanonicalBlock
from scm_ppl.howfar.bounds.tables import ProbabilityTable, as_table, reindex

__all__ = [
    "Conditional",
    "LinearSystem",
    "StudyTable",
    "experiment_study",
    "is_several",
    "linear_system",
    "probability_of",
    "read_studies",
    "study_sources",
]

_TOLERANCE = 1e-6


@dataclass(frozen=True, eq=False)
class Conditional:
    """A conditional distribution ``P(other variables | given)`` measured in one study.

    Pass it in the list ``observed=[...]`` of :func:`~scm_ppl.howfar.bounds` (and of every
    ``*_bounds`` query) next to marginal tables from other studies.

    Parameters
    ----------
    table
        Rows of discrete data (a dict of 1-D arrays or a DataFrame: the conditional
        frequencies are used), or an ``xarray.DataArray`` with one dim per variable whose
        slices at each value of ``given`` sum to 1 (a slice of zeros: that value was not
        seen).
    given
        The conditioning variable(s).

    Examples
    --------
    >>> import numpy as np, xarray as xr
    >>> p_x_given_z = xr.DataArray(np.array([[0.9, 0.1], [0.2, 0.8]]), dims=("Z", "X"),
    ...                            coords={"Z": [0, 1], "X": [0, 1]})
    >>> Conditional(p_x_given_z, given="Z").given
    ('Z',)
    """

    table: Any
    given: tuple[str, ...]

    def __init__(self, table: Any, given: str | Sequence[str]) -> None:
        names = (given,) if isinstance(given, str) else tuple(given)
        if not names or not all(isinstance(n, str) for n in names):
            raise BoundsError(
                "Conditional(table, given=...) needs the name(s) of the conditioning "
                f"variable(s), e.g. given='Z'; got {given!r}."
            )
        object.__setattr__(self, "table", table)
        object.__setattr__(self, "given", names)


@dataclass(frozen=True, eq=False)
class StudyTable:
    """One study's table, read: ``probs`` has one axis per name, ``given`` first.

    ``probs`` is the joint ``P(names)`` when ``given`` is empty, else ``P(rest | given)``
    (slices of zeros where a value of ``given`` was not seen). ``intervention`` names the
    regime (value indices; empty for observational studies).
    """

    what: str
    names: tuple[str, ...]
    given: tuple[str, ...]
    probs: np.ndarray
    empirical: bool
    source: ProbabilityTable = field(repr=False)
    intervention: tuple[tuple[str, int], ...] = ()

    def on_support(self, support: dict[str, tuple[Any, ...]]) -> StudyTable:
        """The table laid out on the common supports (values it lacks get probability 0)."""
        source = ProbabilityTable(
            names=self.names, probs=self.probs, support=self.source.support, empirical=False
        )
        return StudyTable(
            what=self.what,
            names=self.names,
            given=self.given,
            probs=reindex(source, support),
            empirical=self.empirical,
            source=self.source,
            intervention=self.intervention,
        )


def is_several(observed: Any) -> bool:
    """Whether ``observed`` is a list of studies rather than one table."""
    return isinstance(observed, Conditional) or (
        isinstance(observed, list | tuple) and not isinstance(observed, str)
    )


def _conditional_probs(table: ProbabilityTable, given: tuple[str, ...], what: str) -> np.ndarray:
    """``P(rest | given)`` from a joint table (axes: given, then the rest)."""
    order = [*given, *(n for n in table.names if n not in given)]
    joint = table.marginal(order)
    p_given = joint.sum(axis=tuple(range(len(given), joint.ndim)), keepdims=True)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(p_given > 0, joint / np.where(p_given > 0, p_given, 1.0), 0.0)


def _read_conditional(entry: Conditional, what: str) -> StudyTable:
    source = entry.table
    if hasattr(source, "dims") and hasattr(source, "coords") and hasattr(source, "values"):
        names = tuple(str(d) for d in source.dims)
        _check_given(entry.given, names, what)
        support = {}
        for dim, size in zip(source.dims, np.shape(source.values), strict=True):
            coord = source.coords[dim].values if dim in source.coords else np.arange(size)
            support[str(dim)] = tuple(v.item() if isinstance(v, np.generic) else v for v in coord)
        probs = np.asarray(source.values, dtype=float)
        if not np.all(np.isfinite(probs)) or np.any(probs < 0):
            raise DataError(f"The {what} has negative or non-finite probabilities.")
        order = [*entry.given, *(n for n in names if n not in entry.given)]
        probs = np.transpose(probs, [names.index(n) for n in order])
        sums = probs.sum(axis=tuple(range(len(entry.given), probs.ndim)))
        bad = (np.abs(sums - 1.0) > _TOLERANCE) & (sums != 0)
        if np.any(bad):
            raise DataError(
                f"The {what} is P(... | {', '.join(entry.given)}), so each slice at a value of "
                f"{list(entry.given)} must sum to 1; some sum to {sums[bad].ravel()[:3]}. Pass "
                "conditional probabilities, or rows of data."
            )
        joint = ProbabilityTable(names=tuple(order), probs=probs, support=support, empirical=False)
        return StudyTable(what, tuple(order), entry.given, probs, False, joint)
    table = as_table(source, what)
    _check_given(entry.given, table.names, what)
    probs = _conditional_probs(table, entry.given, what)
    order = (*entry.given, *(n for n in table.names if n not in entry.given))
    ordered = ProbabilityTable(
        names=order, probs=table.marginal(order), support=table.support, empirical=True
    )
    return StudyTable(what, order, entry.given, probs, table.empirical, ordered)


def _check_given(given: tuple[str, ...], names: Sequence[str], what: str) -> None:
    missing = [v for v in given if v not in names]
    if missing:
        raise BoundsError(
            f"The {what} conditions on {missing}, which it does not hold; it has {list(names)}."
        )
    if len(given) == len(names):
        raise BoundsError(
            f"The {what} conditions on every variable it holds ({list(names)}); a conditional "
            "table needs at least one variable that is not given."
        )


def read_studies(observed: Any, graph: ADMG) -> list[StudyTable]:
    """Each entry of a list of observational studies, read and checked against the graph."""
    entries = [observed] if isinstance(observed, Conditional) else list(observed)
    if not entries:
        raise BoundsError(
            "observed= is an empty list; give at least one table (marginal, or "
            "Conditional(table, given=...))."
        )
    studies = []
    for i, entry in enumerate(entries):
        what = f"observed[{i}]"
        if isinstance(entry, Conditional):
            study = _read_conditional(entry, what)
        else:
            table = as_table(entry, what)
            study = StudyTable(what, table.names, (), table.probs, table.empirical, table)
        unknown = sorted(set(study.names) - set(graph.nodes))
        if unknown:
            raise BoundsError(
                f"{what} holds variable(s) {unknown} that the graph does not have; the graph "
                f"has {sorted(graph.nodes)}. Rename the columns or drop them from that table."
            )
        studies.append(study)
    return studies


@dataclass(frozen=True, eq=False)
class LinearSystem:
    """``A q = b`` from every study, with ``P(f)`` where the studies give it.

    ``signature`` (shape ``(T, k)``): types with equal signatures have equal columns of
    ``A``. ``p_f`` is None when no study gives the law of the factual part and none needs it.
    """

    a: Any
    b: np.ndarray
    signature: np.ndarray
    p_f: np.ndarray | None
    rows_from: str


def _codes(block: CanonicalBlock, values: dict[str, np.ndarray], names: Sequence[str]) -> Any:
    n_f = block.condition_configs().shape[0]
    code = np.zeros((n_f, block.size), dtype=np.int64)
    for name in names:
        code = code * block.cardinality[name] + values[name]
    return code


def _law_of_factual(block: CanonicalBlock, studies: list[StudyTable]) -> np.ndarray | None:
    """``P(f)`` over ``block.condition_configs()`` from the marginal observational tables
    that hold every conditioning variable; exact tables must agree."""
    names = block.conditioning
    if not names:
        return np.ones(1)
    found = [(law.ravel(), study) for law, study in _marginals(studies, names)]
    if not found:
        return None
    first, first_study = found[0]
    for law, study in found[1:]:
        gap = float(np.abs(law - first).max())
        if gap > _TOLERANCE and not (study.empirical or first_study.empirical):
            raise BoundsError(
                f"{first_study.what} and {study.what} give different distributions of "
                f"{list(names)} (largest difference {gap:.3g}): the tables contradict each "
                "other. If they come from studies with different laws of those variables, pass "
                f"them as Conditional(table, given={list(names)})."
            )
    return np.mean([law for law, _ in found], axis=0)


def linear_system(block: CanonicalBlock, studies: list[StudyTable]) -> LinearSystem:
    """The rows of every study on the response types of ``block``, and ``sum q = 1``."""
    from scipy import sparse  # lazily, as in lp.py

    configs = block.condition_configs()
    n_f, size = configs.shape[0], block.size
    p_f = _law_of_factual(block, studies)
    rows, cols, data, b, signature = [], [], [], [], []
    offset = 0
    for study in studies:
        values = block.evaluate(dict(study.intervention))
        given = study.given
        # a table that conditions on every factual variable (or holds them all) is read per
        # value f, where P(f) cancels; any other table is a sum over f weighted by P(f)
        per_value = set(block.conditioning) <= set(given or study.names)
        if not given and per_value:
            given = tuple(n for n in study.names if n in block.conditioning)
        rest = tuple(n for n in study.names if n not in given)
        probs = np.transpose(study.probs, [study.names.index(n) for n in (*given, *rest)])
        p_b = probs.sum(axis=tuple(range(len(given), probs.ndim)))
        conditional = probs if study.given else _divide(probs, p_b, len(given))
        n_rest = math.prod(block.cardinality[n] for n in rest)
        cond_flat = conditional.reshape(-1, n_rest)
        b_code = _codes(block, values, given)
        cell = b_code * n_rest + _codes(block, values, rest)
        if per_value:
            weights = np.ones((n_f, 1))
        elif p_f is None:
            raise BoundsError(_needs_law(block, study))
        else:
            weights = p_f[:, None]
        signature.append(cell)
        live = (np.ravel(p_b) > 0)[b_code] & (weights > 0)
        weight = np.broadcast_to(weights, cell.shape)[live]
        column = np.broadcast_to(np.arange(size), cell.shape)[live]
        rows.append(offset + cell[live])  # + 1[cell(f, t) = (b, r)]
        cols.append(column)
        data.append(weight)
        if given:
            # - p(r | b) 1[B(f, t) = b] on each cell (b, r) of the same b: P(b, r) = p(r|b) P(b)
            rows.append(offset + (b_code[live] * n_rest)[:, None] + np.arange(n_rest)[None, :])
            cols.append(np.repeat(column[:, None], n_rest, axis=1))
            data.append(-cond_flat[b_code[live]] * weight[:, None])
            b.append(np.zeros(cond_flat.size))
        else:
            b.append(conditional.ravel())
        offset += cond_flat.size
    rows.append(np.full(size, offset))
    cols.append(np.arange(size))
    data.append(np.ones(size))
    b.append(np.ones(1))
    matrix = sparse.coo_matrix(
        (
            np.concatenate([np.ravel(d) for d in data]),
            (
                np.concatenate([np.ravel(r) for r in rows]),
                np.concatenate([np.ravel(c) for c in cols]),
            ),
        ),
        shape=(offset + 1, size),
    ).tocsr()
    vector = np.concatenate(b)
    nonzero = np.flatnonzero(np.diff(matrix.indptr) > 0)
    empty_but_positive = np.setdiff1d(np.flatnonzero(np.abs(vector) > 0), nonzero)
    keep = np.union1d(nonzero, empty_but_positive)
    return LinearSystem(
        a=matrix[keep],
        b=vector[keep],
        signature=np.concatenate(signature, axis=0).T,
        p_f=p_f,
        rows_from=", ".join(s.what for s in studies),
    )


def _divide(probs: np.ndarray, p_b: np.ndarray, k: int) -> np.ndarray:
    shaped = p_b.reshape(p_b.shape + (1,) * (probs.ndim - k))
    return np.where(shaped > 0, probs / np.where(shaped > 0, shaped, 1.0), 0.0)


def _needs_law(block: CanonicalBlock, study: StudyTable) -> str:
    return (
        f"{study.what} does not condition on {list(block.conditioning)}, so reading it needs "
        f"their joint distribution, which no marginal table gives. Add a table that holds "
        f"{list(block.conditioning)} (from the same population), or give {study.what} as "
        f"Conditional(table, given={list(block.conditioning)})."
    )


def study_sources(studies: list[StudyTable]) -> list[tuple[ProbabilityTable, str]]:
    """Each study's table and name, for the common supports."""
    return [(s.source, s.what) for s in studies]


def experiment_study(
    intervention: Mapping[str, int], recorded: tuple[str, ...], probs: np.ndarray, empirical: bool
) -> StudyTable:
    """An experimental table ``P(recorded | do(intervention))``, already on the supports."""
    setting = ", ".join(f"{k}={v}" for k, v in intervention.items())
    table = ProbabilityTable(names=recorded, probs=probs, support={}, empirical=empirical)
    return StudyTable(
        what=f"the experiment do({setting})",
        names=tuple(recorded),
        given=(),
        probs=probs,
        empirical=empirical,
        source=table,
        intervention=tuple(sorted(intervention.items())),
    )


def probability_of(studies: list[StudyTable], evidence: Mapping[str, int]) -> float | None:
    """``P(evidence)`` from the first marginal observational table that holds its variables."""
    names = tuple(evidence)
    for law, _ in _marginals(studies, names):
        return float(law[tuple(evidence[n] for n in names)])
    return None


def _marginals(studies: list[StudyTable], names: Sequence[str]):
    """``(P(names), study)`` from each marginal observational table that holds ``names``."""
    for study in studies:
        if study.given or study.intervention or not set(names) <= set(study.names):
            continue
        source = ProbabilityTable(study.names, study.probs, {}, study.empirical)
        yield source.marginal(list(names)), study
