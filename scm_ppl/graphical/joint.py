"""Discrete joint distributions, and the tables that estimands evaluate to.

A :class:`DiscreteJoint` is a probability table with one named axis per variable: exact
(built from probabilities) or *empirical* (built from counts or samples, the plug-in
estimate). A :class:`Table` is the value of a formula for every assignment of its free
variables; an :class:`Evaluator` builds tables on one joint (conditionals, products, sums,
ratios) and is what :mod:`scm_ppl.graphical.estimand` evaluates expressions with.

Positivity. A conditional ``P(a | c)`` is undefined where ``P(c) = 0``, and so is a ratio
whose denominator is zero. A table cell that needs such a value is *undefined* (NaN) and
remembers the first zero stratum it needs; a cell that multiplies it by a defined zero is
not (``0 · undefined = 0``: a stratum of zero weight does not matter, as in
``Σ_z P(y | x, z) P(z)`` at a ``z`` of probability zero). :meth:`Evaluator.check` turns an
undefined cell into an :class:`~scm_ppl.errors.EstimandError` that names the stratum.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike

from scm_ppl.errors import EstimandError

__all__ = ["DiscreteJoint", "Evaluator", "Joint", "Table", "as_joint"]

_DEFINED = np.iinfo(np.int64).max
"""The origin of a defined cell (larger than every stratum index)."""


class DiscreteJoint:
    """A joint probability table over named discrete variables.

    Parameters
    ----------
    probs
        Non-negative probabilities, one axis per variable, summing to 1 (to 1e-6).
    names
        The variable of each axis.
    empirical
        Whether the table is an empirical distribution (:meth:`from_counts` and
        :meth:`from_data` set it). Estimands evaluated on an empirical joint raise
        where they need a stratum that no observation falls in; on an exact joint they
        return NaN there (see :meth:`scm_ppl.graphical.estimand.Expression.array`).

    Examples
    --------
    >>> import numpy as np
    >>> from scm_ppl.graphical.joint import DiscreteJoint
    >>> joint = DiscreteJoint(np.array([[0.1, 0.3], [0.2, 0.4]]), ("x", "y"))
    >>> joint.marginal(["y"]).round(2).tolist()
    [0.3, 0.7]
    >>> joint.conditional(["y"], ["x"]).round(3).tolist()  # axes (y, x)
    [[0.25, 0.333], [0.75, 0.667]]
    """

    def __init__(self, probs: ArrayLike, names: Sequence[str], *, empirical: bool = False) -> None:
        try:
            array = np.array(probs, dtype=float)
        except (TypeError, ValueError) as err:  # strings, ragged lists, odd objects
            raise EstimandError(f"Joint probabilities must be an array of numbers: {err}") from err
        names = tuple(names)
        if array.ndim != len(names) or len(set(names)) != len(names):
            raise EstimandError(
                f"A joint needs one distinct name per axis: its {array.ndim} axes need "
                f"{array.ndim} distinct names; got {list(names)}."
            )
        if not all(isinstance(n, str) for n in names):
            raise EstimandError(f"Variable names must be strings; got {list(names)}.")
        if not np.all(np.isfinite(array)) or np.any(array < 0):
            raise EstimandError("Joint probabilities must be finite and non-negative.")
        if not np.isclose(array.sum(), 1.0, atol=1e-6):
            raise EstimandError(
                f"Joint probabilities sum to {array.sum():.6g}, not 1; use "
                "DiscreteJoint.from_counts for counts."
            )
        array.setflags(write=False)
        self.probs, self.names, self.empirical = array, names, empirical

    @classmethod
    def from_counts(cls, counts: ArrayLike, names: Sequence[str]) -> DiscreteJoint:
        """The empirical joint of a table of counts (the plug-in estimate)."""
        array = np.asarray(counts, dtype=float)
        if not np.all(np.isfinite(array)) or np.any(array < 0):
            raise EstimandError("Counts must be finite and non-negative.")
        total = array.sum()
        if not total > 0:
            raise EstimandError("The counts sum to 0; a count table must be not all zero.")
        return cls(array / total, names, empirical=True)

    @classmethod
    def from_data(
        cls, data: Mapping[str, ArrayLike], cardinality: Mapping[str, int] | None = None
    ) -> DiscreteJoint:
        """The empirical joint of samples: ``{name: integer codes 0..k-1}``, equal lengths.

        ``cardinality`` fixes the number of levels of a variable (default: max code + 1);
        names it has that the data lacks are ignored.

        Examples
        --------
        >>> from scm_ppl.graphical.joint import DiscreteJoint
        >>> DiscreteJoint.from_data({"x": [0, 1, 1, 1]}).probs.tolist()
        [0.25, 0.75]
        """
        if not isinstance(data, Mapping):
            raise EstimandError(
                f"The data must be a mapping {{name: integer codes}}; got {type(data).__name__}."
            )
        names = tuple(data)
        if not names:
            raise EstimandError("The data has no columns; give {name: codes} per variable.")
        codes = [np.asarray(data[n]) for n in names]
        for name, col in zip(names, codes, strict=True):
            integral = np.issubdtype(col.dtype, np.integer) or col.dtype == np.bool_
            if col.ndim != 1 or col.size == 0 or col.shape != codes[0].shape or not integral:
                raise EstimandError(
                    f"Column {name!r} must be a non-empty 1-D integer array as long as the "
                    "others (all the same length), holding integer codes 0, 1, ..., k-1; got "
                    f"dtype {col.dtype} and shape {col.shape}."
                )
            if col.min() < 0:
                raise EstimandError(f"Column {name!r} holds negative codes; use 0, 1, 2, ...")
        codes = [col.astype(np.int64) for col in codes]
        card = dict(cardinality or {})
        shape = tuple(
            int(card[n]) if n in card else int(c.max()) + 1
            for n, c in zip(names, codes, strict=True)
        )
        if any(c.max() >= k for c, k in zip(codes, shape, strict=True)):
            raise EstimandError(
                f"A code exceeds its cardinality {dict(zip(names, shape, strict=True))}."
            )
        counts = np.bincount(np.ravel_multi_index(codes, shape), minlength=int(np.prod(shape)))
        return cls.from_counts(counts.reshape(shape), names)

    def cardinality(self, name: str) -> int:
        """The number of values of ``name``."""
        return self.probs.shape[self._axis(name)]

    def _axis(self, name: str) -> int:
        if name not in self.names:
            raise EstimandError(f"The joint has no variable {name!r}; it has {list(self.names)}.")
        return self.names.index(name)

    def marginal(self, vars: Sequence[str]) -> np.ndarray:
        """``P(vars)``, axes in the order of ``vars``."""
        axes = [self._axis(v) for v in vars]
        if len(set(axes)) != len(axes):
            raise EstimandError(f"Variables {list(vars)} repeat a name.")
        rest = tuple(i for i in range(len(self.names)) if i not in axes)
        summed = self.probs.sum(axis=rest)
        kept = sorted(axes)
        return np.transpose(summed, [kept.index(a) for a in axes])

    def conditional(self, vars: Sequence[str], given: Sequence[str]) -> np.ndarray:
        """``P(vars | given)``, axes ``(*vars, *given)``; NaN where ``P(given) = 0``."""
        joint = self.marginal([*vars, *given])
        with np.errstate(divide="ignore", invalid="ignore"):
            return joint / self.marginal(given)[(None,) * len(vars)]

    def __repr__(self) -> str:
        kind = ", empirical" if self.empirical else ""
        return f"DiscreteJoint(names={list(self.names)}, shape={self.probs.shape}{kind})"


Joint = DiscreteJoint | tuple[ArrayLike, Sequence[str]]
"""A :class:`DiscreteJoint`, or an ``(array, names)`` pair of exact probabilities."""


def as_joint(joint: Joint) -> DiscreteJoint:
    """``joint`` as a :class:`DiscreteJoint`."""
    if isinstance(joint, DiscreteJoint):
        return joint
    if isinstance(joint, tuple) and len(joint) == 2:
        return DiscreteJoint(*joint)
    raise EstimandError(
        f"Expected a DiscreteJoint or an (array, names) pair; got {type(joint).__name__}."
    )


@dataclass(frozen=True)
class Table:
    """A value for every assignment of ``names``, one axis each (size 1: constant along it).

    ``values`` is NaN at undefined cells; ``origin`` (same shape, or ``None`` when every
    cell is defined) holds there the index of the first zero stratum the cell needs, in
    :attr:`Evaluator.strata`.
    """

    values: np.ndarray
    names: tuple[str, ...]
    origin: np.ndarray | None = None

    def aligned(self, names: Sequence[str], origin: bool = False) -> np.ndarray:
        """The values (or origins) with axes reordered to ``names``, size 1 for absent ones."""
        array = self.values if not origin else self._origin()
        own = [n for n in names if n in self.names]
        array = np.transpose(array, [self.names.index(n) for n in own])
        return array.reshape([array.shape[own.index(n)] if n in own else 1 for n in names])

    def _origin(self) -> np.ndarray:
        if self.origin is None:
            return np.full(self.values.shape, _DEFINED)
        return self.origin


@dataclass(frozen=True)
class _Stratum:
    """A zero-probability stratum a value needed: of a conditional, or of a denominator."""

    values: dict[str, int]
    denominator: str | None = None


class Evaluator:
    """Builds :class:`Table` values on one joint, caching its marginals and recording the
    zero strata that undefined cells need.

    ``experiments`` maps intervened variables to the joint of an experiment that set them
    at random (for interventional terms); ``aliases`` maps a name that stands for a value
    of another variable to that variable (tables keep the name as the axis label).
    """

    def __init__(
        self,
        joint: DiscreteJoint | None,
        experiments: Mapping[frozenset[str], DiscreteJoint] | None = None,
        aliases: Mapping[str, str] | None = None,
    ) -> None:
        self._joint = joint
        self.experiments = dict(experiments or {})
        self.aliases = dict(aliases or {})
        self.strata: list[_Stratum] = []
        self._cache: dict[tuple[str, ...], np.ndarray] = {}
        self._arms: dict[frozenset[str], Evaluator] = {}
        if joint is None and not self.experiments:
            raise EstimandError("Nothing to evaluate on: give a joint or an experiment.")

    @property
    def joint(self) -> DiscreteJoint:
        """The observational joint."""
        if self._joint is None:
            raise EstimandError(
                "The estimand has observational terms; give the observational distribution."
            )
        return self._joint

    @property
    def empirical(self) -> bool:
        """Whether any distribution evaluated on is empirical (from counts or data)."""
        joints = [*self.experiments.values(), *([self._joint] if self._joint else [])]
        return any(j.empirical for j in joints)

    def cardinality(self, name: str) -> int:
        """The number of values of the variable that ``name`` stands for."""
        variable = self.aliases.get(name, name)
        for joint in [*([self._joint] if self._joint else []), *self.experiments.values()]:
            if variable in joint.names:
                return joint.cardinality(variable)
        raise EstimandError(f"No distribution given has the variable {variable!r}.")

    def marginal(self, names: tuple[str, ...]) -> np.ndarray:
        names = tuple(self.aliases.get(n, n) for n in names)
        if names not in self._cache:
            self._cache[names] = self.joint.marginal(names)
        return self._cache[names]

    def interventional(
        self, head: tuple[str, ...], given: tuple[str, ...], do: tuple[str, ...]
    ) -> Table:
        """``P(head | do(do), given)``: ``P(head | do, given)`` in the experiment on ``do``."""
        key = frozenset(self.aliases.get(n, n) for n in do)
        if key not in self.experiments:
            raise EstimandError(
                f"A term under do({', '.join(sorted(key))}) is interventional: it needs an "
                f"experiment that sets {sorted(key)}, and the experiments given set "
                f"{[sorted(k) for k in self.experiments] or 'nothing'}. Identify the query "
                "from observational data first (scm_ppl.identify), or pass that experiment."
            )
        if key not in self._arms:
            arm = Evaluator(self.experiments[key], aliases=self.aliases)
            arm.strata = self.strata  # one list, so that origins index the same strata
            self._arms[key] = arm
        return self._arms[key].conditional(head, (*given, *do))

    def _register(
        self, zero: np.ndarray, names: tuple[str, ...], denominator: str | None = None
    ) -> np.ndarray:
        """Record the cells of ``zero`` (axes ``names``) as strata; their indices, else
        ``_DEFINED``."""
        ids = np.full(zero.shape, _DEFINED)
        for index in np.argwhere(zero):
            ids[tuple(index)] = len(self.strata)
            values = {n: int(i) for n, i in zip(names, index, strict=True)}
            self.strata.append(_Stratum(values, denominator))
        return ids

    def conditional(self, head: tuple[str, ...], given: tuple[str, ...]) -> Table:
        """``P(head | given)``, undefined where ``P(given) = 0``."""
        joint = self.marginal((*head, *given))
        if not given:
            return Table(joint, head)
        den = self.marginal(given)
        with np.errstate(divide="ignore", invalid="ignore"):
            values = joint / den[(None,) * len(head)]
        origin = None
        if np.any(den == 0):
            ids = self._register(den == 0, given)
            origin = np.broadcast_to(ids[(None,) * len(head)], values.shape).copy()
        return Table(values, (*head, *given), origin)

    def product(self, tables: Sequence[Table]) -> Table:
        """The cell-wise product; a defined zero factor makes the cell a defined zero."""
        names = tuple(dict.fromkeys(n for t in tables for n in t.names))
        arrays = [t.aligned(names) for t in tables]
        values = functools.reduce(np.multiply, arrays, np.ones(()))
        if all(t.origin is None for t in tables):
            return Table(values, names)
        origin = functools.reduce(np.minimum, [t.aligned(names, origin=True) for t in tables])
        zero = functools.reduce(np.logical_or, [a == 0 for a in arrays])
        shape = np.broadcast_shapes(values.shape, origin.shape, zero.shape)
        values = np.where(zero, 0.0, np.broadcast_to(values, shape))
        return Table(values, names, np.where(zero, _DEFINED, np.broadcast_to(origin, shape)))

    def sum(self, table: Table, over: frozenset[str]) -> Table:
        """``Σ_over table``; a summed variable the table is constant in counts its values."""
        axes = tuple(i for i, n in enumerate(table.names) if n in over)
        scale = np.prod([self.cardinality(n) for n in over - set(table.names)])
        names = tuple(n for n in table.names if n not in over)
        origin = None if table.origin is None else table.origin.min(axis=axes)
        return Table(table.values.sum(axis=axes) * scale, names, origin)

    def ratio(self, num: Table, den: Table, denominator: Callable[[], str]) -> Table:
        """``num / den``, undefined where ``den`` is zero (``denominator()`` names it)."""
        names = tuple(dict.fromkeys((*num.names, *den.names)))
        top, bottom = num.aligned(names), den.aligned(names)
        with np.errstate(divide="ignore", invalid="ignore"):
            values = np.where(bottom == 0, np.nan, top / bottom)
        zero = den.values == 0
        if num.origin is None and den.origin is None and not zero.any():
            return Table(values, names)
        # The strata are the denominator's own cells: it names only its own variables.
        ids = self._register(zero, den.names, denominator() if zero.any() else None)
        new = Table(ids, den.names).aligned(names)
        origin = np.minimum(num.aligned(names, origin=True), den.aligned(names, origin=True))
        return Table(values, names, np.broadcast_to(np.minimum(origin, new), values.shape).copy())

    def check(self, origin: np.ndarray | None) -> None:
        """Raise naming the first zero stratum that a cell of ``origin`` needs, if any."""
        if origin is None or np.all(origin == _DEFINED):
            return
        stratum = self.strata[int(np.min(origin))]
        where = ", ".join(f"{k}={v}" for k, v in stratum.values.items())
        empty = "no row of the data falls in" if self.empirical else "the joint gives zero mass to"
        if stratum.denominator is None:
            cause = f"The estimand conditions on the stratum {where}, but {empty} it"
        else:
            cause = f"The estimand divides by {stratum.denominator}, which is 0 at {where}"
        raise EstimandError(
            f"{cause}, so its value is undefined there (positivity fails). Collect more "
            "data, merge categories or choose another formula; evaluate with strict=False "
            "for NaN there instead."
        )
