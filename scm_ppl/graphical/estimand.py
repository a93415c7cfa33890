"""Symbolic estimands: formulas in observational probabilities, and their exact evaluation.

An estimand is a small immutable expression tree:

* :class:`Probability` ``P(A | C)``, or ``P(A | do(X), C)`` read off an experiment;
* :class:`Product` of terms; :class:`Sum` ``Σ_{vars} term`` (a marginalisation);
* :class:`Fraction` ``numerator / denominator``.

A :class:`Sum` binds its variables inside its term, so the same name may mean a summed
value inside and a fixed value outside (the front-door formula sums over ``x`` inside a
term that also uses the treatment value ``x``). Evaluation respects that scoping, and the
text and LaTeX forms prime the inner name (``x'``) wherever it would be ambiguous.

Evaluation is exact on a :class:`~scm_ppl.graphical.joint.DiscreteJoint` (a probability table with
named axes): every sub-expression becomes a :class:`~scm_ppl.graphical.joint.Table` over its free
variables, so a whole distribution ``P(y | do(x))`` comes out of one pass. Where a value
needs a stratum of probability zero (positivity fails) it is undefined: evaluation raises
an :class:`~scm_ppl.errors.EstimandError` naming the stratum on an empirical joint (from
counts or data) and returns NaN there on an exact one; ``strict`` chooses either way.
"""

from __future__ import annotations

import itertools
import re
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

from scm_ppl.errors import EstimandError
from scm_ppl.graphical.joint import Evaluator, Joint, Table, as_joint

__all__ = [
    "ONE",
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


def _aliases(expr: Expression) -> dict[str, str]:
    """Every alias of the terms of ``expr``: name -> the variable it is a value of."""
    found: dict[str, str] = {}
    stack = [expr]
    while stack:
        e = stack.pop()
        if isinstance(e, Probability):
            for name, variable in e.aliases:
                if found.setdefault(name, variable) != variable:
                    raise EstimandError(
                        f"The name {name!r} stands for both {found[name]!r} and {variable!r}."
                    )
        stack.extend(e._children())
    return found


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

    def _table(self, ev: Evaluator) -> Table:
        raise NotImplementedError

    def _evaluate(
        self,
        joint: Joint | None,
        axes: Sequence[str],
        strict: bool | None,
        experiments: Mapping[frozenset[str], Joint] | None = None,
    ) -> tuple[np.ndarray, np.ndarray | None, Evaluator, bool]:
        """Values and origins on the grid of ``axes``, the evaluator, and the strictness."""
        axes = tuple(axes)
        missing = sorted(self._free - set(axes))
        if missing:
            raise EstimandError(f"No values given for the free variables {missing} of {self}.")
        ev = Evaluator(
            None if joint is None else as_joint(joint),
            {frozenset(k): as_joint(j) for k, j in (experiments or {}).items()},
            _aliases(self),
        )
        table = self._table(ev)
        shape = [ev.cardinality(n) for n in axes]
        values = np.broadcast_to(table.aligned(axes), shape).copy()
        origin = None if table.origin is None else np.broadcast_to(table.aligned(axes, True), shape)
        return values, origin, ev, ev.empirical if strict is None else strict

    def array(
        self,
        joint: Joint | None,
        axes: Sequence[str],
        *,
        strict: bool | None = None,
        experiments: Mapping[frozenset[str], Joint] | None = None,
    ) -> np.ndarray:
        """The value for every assignment of ``axes``, one array axis per name.

        ``experiments`` maps the intervened variables of each interventional term to the
        joint of an experiment that set them at random: ``P(a | do(x), c)`` is read off as
        ``P(a | x, c)`` of the joint under ``frozenset({"x"})``. ``joint`` may be ``None``
        when every term is interventional.

        Every free variable must be among ``axes``; names the value does not depend on
        are broadcast.

        A value that needs a stratum of probability zero (a conditional or a denominator
        where positivity fails) is undefined, unless that stratum only ever gets weight
        zero (``0 · undefined = 0``). With ``strict`` an undefined value raises an
        :class:`~scm_ppl.errors.EstimandError` naming the stratum; without it the value
        is NaN. By default ``strict`` is ``joint.empirical``: plug-in estimates from
        counts or data raise, exact joints give NaN.
        """
        values, origin, ev, strict = self._evaluate(joint, axes, strict, experiments)
        if strict:
            ev.check(origin)
        return values

    def evaluate(
        self,
        joint: Joint | None,
        values: Mapping[str, int],
        *,
        strict: bool | None = None,
        experiments: Mapping[frozenset[str], Joint] | None = None,
    ) -> float:
        """The value at ``values`` (an assignment of at least the free variables); ``strict``
        and ``experiments`` as in :meth:`array`.

        Examples
        --------
        >>> import numpy as np
        >>> from scm_ppl.graphical.estimand import Probability
        >>> joint = (np.array([[0.1, 0.3], [0.2, 0.4]]), ("x", "y"))
        >>> round(Probability({"y"}, given={"x"}).evaluate(joint, {"x": 0, "y": 1}), 3)
        0.75
        """
        names = tuple(sorted(self._free))
        full, origin, ev, strict = self._evaluate(joint, names, strict, experiments)
        index = tuple(self._code(ev, values, n) for n in names)
        if strict and origin is not None:
            ev.check(origin[index])
        return float(full[index])

    def table(
        self,
        joint: Joint,
        outcome: Sequence[str],
        assignment: Mapping[str, int] | None = None,
        *,
        strict: bool | None = None,
    ) -> np.ndarray:
        """The distribution over ``outcome`` (axes in that order) at ``assignment`` of the
        other free variables, e.g. ``P(y | do(x))`` for one treatment value ``x``;
        ``strict`` as in :meth:`array` (only the cells returned must be defined).
        """
        assignment = dict(assignment or {})
        outcome = tuple([outcome] if isinstance(outcome, str) else outcome)
        fixed = tuple(n for n in sorted(self._free) if n not in outcome)
        full, origin, ev, strict = self._evaluate(joint, (*fixed, *outcome), strict)
        index = tuple(self._code(ev, assignment, n) for n in fixed)
        if strict and origin is not None:
            ev.check(origin[index])
        return full[index]

    @staticmethod
    def _code(ev: Evaluator, values: Mapping[str, int], name: str) -> int:
        if name not in values:
            raise EstimandError(f"No value given for free variable {name!r}.")
        code, k = values[name], ev.cardinality(name)
        if not isinstance(code, int | np.integer) or not 0 <= code < k:
            raise EstimandError(f"Value {code!r} of {name!r} is not an integer in 0..{k - 1}.")
        return int(code)


@dataclass(frozen=True)
class Probability(Expression):
    """``P(vars | given)``; ``do`` marks interventional terms ``P(vars | do(do), given)``.

    ``P(∅ | ...)`` is the constant 1 (:data:`ONE`). An interventional term evaluates only
    where the evaluation is given that experiment (``experiments=`` of :meth:`array`).

    ``aliases`` lets a name stand for a value of another variable: ``(("x'", "x"),)``
    makes ``P(z | x')`` the distribution of ``z`` given ``x`` at the value named ``x'``,
    so one formula can use two values of ``x`` (counterfactual estimands do).
    """

    vars: frozenset[str]
    given: frozenset[str] = frozenset()
    do: frozenset[str] = frozenset()
    aliases: tuple[tuple[str, str], ...] = ()
    _free: frozenset[str] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        vars, given, do = _names(self.vars), _names(self.given), _names(self.do)
        if vars & given or vars & do or given & do:
            raise EstimandError(
                f"P({sorted(vars)} | {sorted(given)}, do {sorted(do)}) repeats a variable."
            )
        names = vars | given | do
        # Only the aliases of names in this term are kept, so terms compare by meaning.
        aliases = tuple(sorted({(a, v) for a, v in self.aliases if a in names and a != v}))
        variables = [dict(aliases).get(n, n) for n in names]
        if len(set(variables)) != len(variables):
            raise EstimandError(f"P({sorted(vars)} | {sorted(given)}) names a variable twice.")
        object.__setattr__(self, "vars", vars)
        object.__setattr__(self, "given", given)
        object.__setattr__(self, "do", do)
        object.__setattr__(self, "aliases", aliases)
        object.__setattr__(self, "_free", names if vars else frozenset())

    def _table(self, ev: Evaluator) -> Table:
        if not self.vars:
            return Table(np.ones(()), ())
        head, given = tuple(sorted(self.vars)), tuple(sorted(self.given))
        if self.do:
            return ev.interventional(head, given, tuple(sorted(self.do)))
        return ev.conditional(head, given)


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

    def _table(self, ev: Evaluator) -> Table:
        return ev.product([t._table(ev) for t in self.terms])


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

    def _table(self, ev: Evaluator) -> Table:
        return ev.sum(self.term._table(ev), self.over)


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

    def _table(self, ev: Evaluator) -> Table:
        num, den = self.numerator._table(ev), self.denominator._table(ev)
        return ev.ratio(num, den, self.denominator.text)


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
    if isinstance(term, Probability) and over & term.vars:
        # Marginalising is valid for an interventional distribution as well.
        reduced = Probability(term.vars - over, term.given, term.do, term.aliases)
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
            if isinstance(f, Probability):
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
            factors[i] = Probability(f.vars | g.vars, g.given, aliases=f.aliases + g.aliases)
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
        and num.do == den.do
        and num.given == den.given
        and den.vars < num.vars
    ):
        return Probability(
            num.vars - den.vars, num.given | den.vars, num.do, num.aliases + den.aliases
        )
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
            raise EstimandError(f"Cannot render {type(e).__name__}; expected an estimand node.")
        num = self.render(e.numerator, shown, in_use)
        den = self.render(e.denominator, shown, in_use)
        if fmt.latex:
            return rf"\frac{{{num}}}{{{den}}}"
        top = num if isinstance(e.numerator, Probability) else f"({num})"
        bottom = den if isinstance(e.denominator, Probability) else f"({den})"
        return f"{top} / {bottom}"

    def bracket(self, text: str) -> str:
        return rf"\left[{text}\right]" if self.fmt.latex else f"[{text}]"
