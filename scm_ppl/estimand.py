"""Symbolic estimands: formulas in observational probabilities, and their exact evaluation.

An estimand is a small immutable expression tree:

* :class:`Probability` ``P(A | C)`` (``do`` only for displaying a query);
* :class:`Product` of terms; :class:`Sum` ``Σ_{vars} term`` (a marginalisation);
* :class:`Fraction` ``numerator / denominator``.

A :class:`Sum` binds its variables inside its term, so the same name may mean a summed
value inside and a fixed value outside (the front-door formula sums over ``x`` inside a
term that also uses the treatment value ``x``). Evaluation respects that scoping, and the
text and LaTeX forms prime the inner name (``x'``) wherever it would be ambiguous.

Evaluation is exact on a :class:`DiscreteJoint` (a probability table with named axes):
every sub-expression becomes a table over its free variables, so a whole distribution
``P(y | do(x))`` comes out of one pass.
"""

from __future__ import annotations

import functools
import itertools
import re
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
from numpy.typing import ArrayLike

from scm_ppl.errors import EstimandError

__all__ = [
    "ONE",
    "DiscreteJoint",
    "EstimandError",
    "Expression",
    "Fraction",
    "Probability",
    "Product",
    "Sum",
]


def _names(vars: Iterable[str] | str) -> frozenset[str]:
    """A frozenset of names; a lone string is one name, not its characters."""
    names = frozenset([vars] if isinstance(vars, str) else vars)
    bad = [v for v in names if not isinstance(v, str)]
    if bad:
        raise EstimandError(f"Variable names must be strings; got {bad!r}.")
    return names


class DiscreteJoint:
    """A joint probability table over named discrete variables.

    Parameters
    ----------
    probs
        Non-negative probabilities, one axis per variable, summing to 1 (to 1e-6).
    names
        The variable of each axis.

    Examples
    --------
    >>> import numpy as np
    >>> from scm_ppl.estimand import DiscreteJoint
    >>> joint = DiscreteJoint(np.array([[0.1, 0.3], [0.2, 0.4]]), ("x", "y"))
    >>> joint.marginal(["y"]).round(2).tolist()
    [0.3, 0.7]
    >>> joint.conditional(["y"], ["x"]).round(3).tolist()  # axes (y, x)
    [[0.25, 0.333], [0.75, 0.667]]
    """

    def __init__(self, probs: ArrayLike, names: Sequence[str]) -> None:
        array = np.array(probs, dtype=float)
        names = tuple(names)
        if array.ndim != len(names) or len(set(names)) != len(names):
            raise EstimandError(
                f"A joint needs one distinct name per axis; got {array.ndim} axes and names "
                f"{list(names)}."
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
        self.probs, self.names = array, names

    @classmethod
    def from_counts(cls, counts: ArrayLike, names: Sequence[str]) -> DiscreteJoint:
        """The empirical joint of a table of counts (the plug-in estimate)."""
        array = np.asarray(counts, dtype=float)
        total = array.sum()
        if not total > 0:
            raise EstimandError("The count table is empty (its counts sum to 0).")
        return cls(array / total, names)

    @classmethod
    def from_data(
        cls, data: Mapping[str, ArrayLike], cardinality: Mapping[str, int] | None = None
    ) -> DiscreteJoint:
        """The empirical joint of samples: ``{name: integer codes 0..k-1}``, equal lengths.

        ``cardinality`` fixes the number of levels of a variable (default: max code + 1).

        Examples
        --------
        >>> from scm_ppl.estimand import DiscreteJoint
        >>> DiscreteJoint.from_data({"x": [0, 1, 1, 1]}).probs.tolist()
        [0.25, 0.75]
        """
        names = tuple(data)
        codes = [np.asarray(data[n]) for n in names]
        if not codes or len({c.shape for c in codes}) != 1 or codes[0].ndim != 1:
            raise EstimandError("Data must be one 1-d array per variable, all the same length.")
        if any(not np.issubdtype(c.dtype, np.integer) or np.any(c < 0) for c in codes):
            raise EstimandError("Data must hold non-negative integer codes 0, 1, ..., k-1.")
        card = dict(cardinality or {})
        shape = tuple(
            int(card[n]) if n in card else int(c.max(initial=-1)) + 1
            for n, c in zip(names, codes, strict=True)
        )
        if any(c.max(initial=-1) >= k for c, k in zip(codes, shape, strict=True)):
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
        return f"DiscreteJoint(names={list(self.names)}, shape={self.probs.shape})"


Joint = DiscreteJoint | tuple[ArrayLike, Sequence[str]]


def _as_joint(joint: Joint) -> DiscreteJoint:
    if isinstance(joint, DiscreteJoint):
        return joint
    if isinstance(joint, tuple) and len(joint) == 2:
        return DiscreteJoint(*joint)
    raise EstimandError(
        f"Expected a DiscreteJoint or an (array, names) pair; got {type(joint).__name__}."
    )


@dataclass(frozen=True)
class _Table:
    """A sub-expression's value for every assignment of its free variables."""

    values: np.ndarray
    names: tuple[str, ...]

    def aligned(self, names: Sequence[str]) -> np.ndarray:
        """The values with axes reordered to ``names``, size-1 axes for absent ones."""
        own = [n for n in names if n in self.names]
        array = np.transpose(self.values, [self.names.index(n) for n in own])
        return array.reshape([array.shape[own.index(n)] if n in own else 1 for n in names])

    @staticmethod
    def combine(tables: Sequence[_Table]) -> tuple[list[np.ndarray], tuple[str, ...]]:
        names = tuple(dict.fromkeys(n for t in tables for n in t.names))
        return [t.aligned(names) for t in tables], names


class _Evaluator:
    """Evaluates expressions on one joint, caching its marginals."""

    def __init__(self, joint: DiscreteJoint) -> None:
        self.joint = joint
        self._cache: dict[tuple[str, ...], np.ndarray] = {}

    def marginal(self, names: tuple[str, ...]) -> np.ndarray:
        if names not in self._cache:
            self._cache[names] = self.joint.marginal(names)
        return self._cache[names]


class Expression:
    """Base class of estimand expressions; see the module docstring."""

    _free: frozenset[str]

    def free_variables(self) -> frozenset[str]:
        """The variables whose values the expression's value depends on (not summed)."""
        return self._free

    def size(self) -> int:
        """The number of nodes of the tree (how complicated the formula is)."""
        return 1 + sum(child.size() for child in self._children())

    def _children(self) -> tuple[Expression, ...]:
        return ()

    def simplify(self) -> Expression:
        """The same estimand rebuilt with the simplifying constructors, bottom up."""
        return self

    def text(self) -> str:
        """Plain-text form, e.g. ``Σ_{m} P(m | x) Σ_{x'} P(x') P(y | m, x')``."""
        return _render(self, _TEXT)

    def latex(self) -> str:
        r"""LaTeX form, e.g. ``\sum_{m} P(m \mid x) ...``."""
        return _render(self, _LATEX)

    def __str__(self) -> str:
        return self.text()

    def _table(self, ev: _Evaluator) -> _Table:
        raise NotImplementedError

    def array(self, joint: Joint, axes: Sequence[str]) -> np.ndarray:
        """The value for every assignment of ``axes``, one array axis per name.

        Every free variable must be among ``axes``; names the value does not depend on
        are broadcast. NaN marks values that divide by a zero probability.
        """
        joint = _as_joint(joint)
        axes = tuple(axes)
        missing = sorted(self._free - set(axes))
        if missing:
            raise EstimandError(f"No values given for the free variables {missing} of {self}.")
        table = self._table(_Evaluator(joint))
        shape = [joint.cardinality(n) for n in axes]
        return np.broadcast_to(table.aligned(axes), shape).copy()

    def evaluate(self, joint: Joint, values: Mapping[str, int]) -> float:
        """The value at ``values`` (an assignment of at least the free variables).

        Examples
        --------
        >>> import numpy as np
        >>> from scm_ppl.estimand import Probability
        >>> joint = (np.array([[0.1, 0.3], [0.2, 0.4]]), ("x", "y"))
        >>> round(Probability({"y"}, given={"x"}).evaluate(joint, {"x": 0, "y": 1}), 3)
        0.75
        """
        names = tuple(sorted(self._free))
        full = self.array(joint, names)
        return float(full[tuple(self._code(joint, values, n) for n in names)])

    def table(
        self, joint: Joint, outcome: Sequence[str], assignment: Mapping[str, int] | None = None
    ) -> np.ndarray:
        """The distribution over ``outcome`` (axes in that order) at ``assignment`` of the
        other free variables, e.g. ``P(y | do(x))`` for one treatment value ``x``.
        """
        assignment = dict(assignment or {})
        outcome = tuple([outcome] if isinstance(outcome, str) else outcome)
        fixed = tuple(n for n in sorted(self._free) if n not in outcome)
        full = self.array(joint, (*fixed, *outcome))
        return full[tuple(self._code(joint, assignment, n) for n in fixed)]

    @staticmethod
    def _code(joint: Joint, values: Mapping[str, int], name: str) -> int:
        if name not in values:
            raise EstimandError(f"No value given for free variable {name!r}.")
        code, k = values[name], _as_joint(joint).cardinality(name)
        if not isinstance(code, int | np.integer) or not 0 <= code < k:
            raise EstimandError(f"Value {code!r} of {name!r} is not an integer in 0..{k - 1}.")
        return int(code)


@dataclass(frozen=True)
class Probability(Expression):
    """``P(vars | given)``; ``do`` marks interventional queries (displayed, not evaluated).

    ``P(∅ | ...)`` is the constant 1 (:data:`ONE`).
    """

    vars: frozenset[str]
    given: frozenset[str] = frozenset()
    do: frozenset[str] = frozenset()
    _free: frozenset[str] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        vars, given, do = _names(self.vars), _names(self.given), _names(self.do)
        if vars & given or vars & do or given & do:
            raise EstimandError(
                f"P({sorted(vars)} | {sorted(given)}, do {sorted(do)}) repeats a variable."
            )
        object.__setattr__(self, "vars", vars)
        object.__setattr__(self, "given", given)
        object.__setattr__(self, "do", do)
        object.__setattr__(self, "_free", vars | given | do if vars else frozenset())

    def _table(self, ev: _Evaluator) -> _Table:
        if not self.vars:
            return _Table(np.ones(()), ())
        if self.do:
            raise EstimandError(
                f"{self} is interventional; only observational terms can be evaluated on a "
                "joint. Identify it first with scm_ppl.identify."
            )
        head, given = tuple(sorted(self.vars)), tuple(sorted(self.given))
        joint = ev.marginal((*head, *given))
        with np.errstate(divide="ignore", invalid="ignore"):
            values = joint / ev.marginal(given)[(None,) * len(head)] if given else joint
        return _Table(values, (*head, *given))


ONE = Probability(frozenset())
"""The constant 1 (``P(∅)``)."""


@dataclass(frozen=True)
class Product(Expression):
    """The product of ``terms``; :meth:`of` flattens and drops ones."""

    terms: tuple[Expression, ...]
    _free: frozenset[str] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "terms", tuple(self.terms))
        object.__setattr__(self, "_free", frozenset().union(*(t._free for t in self.terms)))

    @staticmethod
    def of(terms: Iterable[Expression]) -> Expression:
        """A simplified product: nested products flattened, ones dropped, a factor that
        also divides a fraction in the product cancelled; one term is itself and no term
        is :data:`ONE`."""
        flat: list[Expression] = []
        for term in terms:
            for factor in term.terms if isinstance(term, Product) else (term,):
                if not _is_one(factor):
                    flat.append(factor)
        for i, term in enumerate(flat):
            if isinstance(term, Fraction):
                rest = Counter(flat[:i] + flat[i + 1 :])
                common = rest & Counter(_factors(term.denominator))
                if common:
                    bottom = Counter(_factors(term.denominator)) - common
                    reduced = _fraction(term.numerator, Product.of(bottom.elements()))
                    return Product.of([*(rest - common).elements(), reduced])
        return ONE if not flat else flat[0] if len(flat) == 1 else Product(tuple(flat))

    def _children(self) -> tuple[Expression, ...]:
        return self.terms

    def simplify(self) -> Expression:
        return Product.of(t.simplify() for t in self.terms)

    def _table(self, ev: _Evaluator) -> _Table:
        arrays, names = _Table.combine([t._table(ev) for t in self.terms])
        return _Table(functools.reduce(np.multiply, arrays, np.ones(())), names)


@dataclass(frozen=True)
class Sum(Expression):
    """``Σ_{over} term``: ``term`` summed over every value of the variables ``over``."""

    over: frozenset[str]
    term: Expression
    _free: frozenset[str] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "over", _names(self.over))
        object.__setattr__(self, "_free", self.term._free - self.over)

    @staticmethod
    def of(over: Iterable[str], term: Expression) -> Expression:
        """A simplified sum: see :func:`_sum` for the rules."""
        return _sum(_names(over), term)

    def _children(self) -> tuple[Expression, ...]:
        return (self.term,)

    def simplify(self) -> Expression:
        return Sum.of(self.over, self.term.simplify())

    def _table(self, ev: _Evaluator) -> _Table:
        inner = self.term._table(ev)
        axes = tuple(i for i, n in enumerate(inner.names) if n in self.over)
        # A summed variable the term does not depend on contributes a factor |values|.
        scale = np.prod([ev.joint.cardinality(n) for n in self.over - set(inner.names)])
        names = tuple(n for n in inner.names if n not in self.over)
        return _Table(inner.values.sum(axis=axes) * scale, names)


@dataclass(frozen=True)
class Fraction(Expression):
    """``numerator / denominator``; :meth:`of` cancels what it can."""

    numerator: Expression
    denominator: Expression
    _free: frozenset[str] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_free", self.numerator._free | self.denominator._free)

    @staticmethod
    def of(numerator: Expression, denominator: Expression) -> Expression:
        """A simplified fraction: common factors cancelled, chain-rule products merged,
        ``P(A, B | C) / P(B | C) = P(A | B, C)``, ``e / 1 = e`` (cancelling assumes
        positive probabilities)."""
        return _fraction(numerator, denominator)

    def _children(self) -> tuple[Expression, ...]:
        return (self.numerator, self.denominator)

    def simplify(self) -> Expression:
        return Fraction.of(self.numerator.simplify(), self.denominator.simplify())

    def _table(self, ev: _Evaluator) -> _Table:
        (num, den), names = _Table.combine([self.numerator._table(ev), self.denominator._table(ev)])
        with np.errstate(divide="ignore", invalid="ignore"):
            return _Table(num / den, names)


def _is_one(e: Expression) -> bool:
    return isinstance(e, Probability) and not e.vars


def _sum(over: frozenset[str], term: Expression) -> Expression:
    """``Σ_over term``, simplified without changing its value:

    * ``Σ_B P(A | C) = P(A \\ B | C)`` for the part of ``B`` inside ``A``;
    * in a product, a summed variable that only one factor depends on is summed inside
      that factor when it is a probability (``Σ_b P(b, A | C) · rest = P(A | C) · rest``,
      which drops the last factors of a chain rule) or a sum (the sums merge); factors
      free of the summed variables move out of the sum;
    * ``P(A | B, C) · P(B | C)`` becomes ``P(A, B | C)`` when that lets a summed variable
      of ``B`` go;
    * nested sums over disjoint variables merge.
    """
    if not over:
        return term
    if isinstance(term, Sum) and not over & term.over:
        return _sum(over | term.over, term.term)
    if isinstance(term, Probability) and not term.do and over & term.vars:
        reduced = Probability(term.vars - over, term.given)
        rest = over - term.vars
        return Sum(rest, reduced) if rest else reduced
    if not isinstance(term, Product):
        return Sum(over, term)
    factors = list(term.terms)
    changed = True
    while changed:
        changed = False
        for i, f in enumerate(factors):
            others = frozenset().union(*(g._free for j, g in enumerate(factors) if j != i))
            own = (over & f._free) - others
            if isinstance(f, Probability) and not f.do:
                own &= f.vars
            elif not isinstance(f, Sum):
                own = frozenset()
            if own:
                # Σ_v (f · rest) = rest · Σ_v f when only f depends on v.
                factors[i], over, changed = _sum(own, f), over - own, True
                break
        else:
            changed = _merge_chain(factors, over)
    outside = [f for f in factors if not f._free & over]
    inside = Product.of(f for f in factors if f._free & over)
    if not over:
        return Product.of(outside)
    summed = Sum(over, inside) if isinstance(inside, Product) else _sum(over, inside)
    return Product.of([*outside, summed])


def _merge_chain(factors: list[Expression], over: frozenset[str] | None) -> bool:
    """Merge one pair ``P(A | B, C) · P(B | C) = P(A, B | C)`` in place; with ``over``,
    only when a summed variable in ``B`` appears in those two factors alone (so that it
    can then be summed out)."""
    for (i, f), (j, g) in itertools.permutations(enumerate(factors), 2):
        if not (isinstance(f, Probability) and isinstance(g, Probability)) or f.do or g.do:
            continue
        if not (g.vars <= f.given and f.given - g.vars == g.given):
            continue
        others = frozenset().union(*(h._free for k, h in enumerate(factors) if k not in (i, j)))
        if over is None or (over & g.vars) - others:
            factors[i] = Probability(f.vars | g.vars, g.given)
            del factors[j]
            return True
    return False


def _factors(e: Expression) -> list[Expression]:
    return list(e.terms) if isinstance(e, Product) else [e]


def _fraction(num: Expression, den: Expression) -> Expression:
    if _is_one(den):
        return num
    if num == den:
        return ONE
    if (
        isinstance(num, Probability)
        and isinstance(den, Probability)
        and not (num.do or den.do)
        and num.given == den.given
        and den.vars < num.vars
    ):
        return Probability(num.vars - den.vars, num.given | den.vars)
    common = Counter(_factors(num)) & Counter(_factors(den))
    if not common:
        merged = [_factors(num), _factors(den)]
        if any(_merge_chain(part, None) for part in merged):
            return _fraction(Product.of(merged[0]), Product.of(merged[1]))
        return Fraction(num, den)
    top, bottom = Counter(_factors(num)) - common, Counter(_factors(den)) - common
    return _fraction(Product.of(top.elements()), Product.of(bottom.elements()))


# -- rendering ------------------------------------------------------------------------------
@dataclass(frozen=True)
class _Format:
    given: str
    sum: str
    do: str
    latex: bool


_TEXT = _Format(given=" | ", sum="Σ_{{{}}} ", do="do({})", latex=False)
_LATEX = _Format(given=r" \mid ", sum=r"\sum_{{{}}} ", do=r"\mathrm{{do}}({})", latex=True)


def _latex_name(name: str) -> str:
    primes = len(name) - len(name.rstrip("'"))
    base = name.rstrip("'")
    if match := re.fullmatch(r"([A-Za-z])_?(\d+)", base):
        base = f"{match[1]}_{{{match[2]}}}"
    elif not re.fullmatch(r"[A-Za-z]", base):
        base = r"\mathrm{" + re.sub(r"([_&%$#{}])", r"\\\1", base) + "}"
    return base + "'" * primes


def _render(expr: Expression, fmt: _Format) -> str:
    top = expr._free
    return _Renderer(fmt).render(expr, {v: v for v in top}, set(top))


class _Renderer:
    def __init__(self, fmt: _Format) -> None:
        self.fmt = fmt

    def names(self, vars: Iterable[str], shown: Mapping[str, str]) -> str:
        out = sorted(shown.get(v, v) for v in vars)
        return ", ".join(_latex_name(v) for v in out) if self.fmt.latex else ", ".join(out)

    def render(self, e: Expression, shown: dict[str, str], in_use: set[str]) -> str:
        fmt = self.fmt
        if isinstance(e, Probability):
            if not e.vars:
                return "1"
            conds = [fmt.do.format(self.names(e.do, shown))] if e.do else []
            conds += [self.names(e.given, shown)] if e.given else []
            given = fmt.given + ", ".join(conds) if conds else ""
            return f"P({self.names(e.vars, shown)}{given})"
        if isinstance(e, Sum):
            # A summed variable whose name is already visible (free in the whole
            # expression, or bound by an enclosing sum) gets primes: x, x', x'', ...
            inner, used = dict(shown), set(in_use)
            for v in sorted(e.over):
                name = v
                while name in used:
                    name += "'"
                inner[v] = name
                used.add(name)
            body = self.render(e.term, inner, used)
            return fmt.sum.format(self.names(e.over, inner)) + body
        if isinstance(e, Product):
            # Σ reaches to the end of a product: put sums last and bracket all but one.
            terms = sorted(e.terms, key=lambda t: (isinstance(t, Sum), isinstance(t, Fraction)))
            parts = []
            for i, t in enumerate(terms):
                text = self.render(t, shown, in_use)
                last = i == len(terms) - 1
                grouped = isinstance(t, Fraction) or (isinstance(t, Sum) and not last)
                parts.append(self.bracket(text) if grouped else text)
            return " ".join(parts)
        if not isinstance(e, Fraction):
            raise TypeError(f"Cannot render {type(e).__name__}; expected an estimand node.")
        num = self.render(e.numerator, shown, in_use)
        den = self.render(e.denominator, shown, in_use)
        if fmt.latex:
            return rf"\frac{{{num}}}{{{den}}}"
        top = num if isinstance(e.numerator, Probability) else f"({num})"
        bottom = den if isinstance(e.denominator, Probability) else f"({den})"
        return f"{top} / {bottom}"

    def bracket(self, text: str) -> str:
        return rf"\left[{text}\right]" if self.fmt.latex else f"[{text}]"
