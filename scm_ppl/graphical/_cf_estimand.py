"""Building a counterfactual estimand: internal names, interventional terms reduced by
ID, and the names shown to the user.

ID* works with one internal name per value in the counterfactual graph (a node's value,
or a constant's). :class:`_Builder` makes the terms ``P(s | do(pa))``, replacing each by
the ID algorithm's observational formula where there is one; :func:`_display` renames
the finished estimand: the query's values ``X``, ``X'``, ... in the order they appear,
and every summed name the first of ``Z``, ``Z'``, ... that is free in its scope.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterable, Mapping

from scm_ppl.graphical.cf_graph import CounterfactualGraph
from scm_ppl.graphical.estimand import Expression, Fraction, Probability, Product, Sum, _merge_chain
from scm_ppl.graphical.id_algorithm import identify
from scm_ppl.graphical.mixed_graph import ADMG

__all__ = ["Builder", "display", "observational", "terms"]


def terms(expr: Expression) -> list[Probability]:
    out, stack = [], [expr]
    while stack:
        e = stack.pop()
        if isinstance(e, Probability):
            out.append(e)
        stack.extend(e._children())
    return out


def observational(expr: Expression) -> bool:
    return any(p.vars and not p.do for p in terms(expr))


class Builder:
    """Builds the estimand with one internal name per node value, then renames."""

    def __init__(self, g: ADMG) -> None:
        self.g = g
        self.variable: dict[str, str] = {}  # internal name -> variable
        self.value: dict[str, int] = {}  # internal name -> value, for fixed values
        self.count = 0

    def name(self, cg: CounterfactualGraph, node: int) -> str:
        n = cg.nodes[node]
        name = f"_c{n.variable}={n.value}" if n.fixed else f"_n{node}"
        self.variable[name] = n.variable
        if n.value is not None:
            self.value[name] = n.value
        return name

    def fresh(self, variable: str) -> str:
        self.count += 1
        self.variable[f"_b{self.count}"] = variable
        return f"_b{self.count}"

    def probability(self, vars: Iterable[str], do: Iterable[str] = ()) -> Probability:
        vars, do = frozenset(vars), frozenset(do)
        aliases = tuple((n, self.variable[n]) for n in vars | do)
        return Probability(vars, do=do, aliases=aliases)

    def term(self, outcome: dict[str, str], do: dict[str, str]) -> Expression:
        """``P(outcome | do(do))`` (variable -> internal name), reduced to observational
        terms when the ID algorithm identifies it."""
        if do:
            # Only intervened ancestors of the outcome (once they are set) matter.
            cut = self.g.cut_incoming(do)
            do = {v: n for v, n in do.items() if v in cut.ancestors(outcome)}
        if not do:
            return self.probability(outcome.values())
        found = _identify(self.g, frozenset(do), frozenset(outcome))
        if found is None:
            return self.probability(outcome.values(), do.values())
        env = {**outcome, **do}
        return _rewrite(found, env, lambda v, _: self.fresh(v), self.variable.__getitem__)


@functools.lru_cache(maxsize=4096)
def _identify(g: ADMG, x: frozenset[str], y: frozenset[str]) -> Expression | None:
    return identify(g, sorted(x), sorted(y)).estimand


def _rewrite(
    e: Expression,
    env: Mapping[str, str],
    fresh: Callable[[str, frozenset[str]], str],
    variable: Callable[[str], str],
    used: frozenset[str] = frozenset(),
) -> Expression:
    """``e`` with its free names renamed by ``env`` and each summed name by ``fresh``."""
    if isinstance(e, Probability):
        names = [[env[n] for n in part] for part in (e.vars, e.given, e.do)]
        aliases = tuple((n, variable(n)) for part in names for n in part)
        return Probability(*map(frozenset, names), aliases=aliases)  # type: ignore[arg-type]
    if isinstance(e, Sum):
        inner, over = dict(env), []
        for n in sorted(e.over):
            inner[n] = fresh(n, used | frozenset(over))
            over.append(inner[n])
        return Sum(frozenset(over), _rewrite(e.term, inner, fresh, variable, used | set(over)))
    if isinstance(e, Product):
        return Product(tuple(_rewrite(t, env, fresh, variable, used) for t in e.terms))
    assert isinstance(e, Fraction)
    parts = (_rewrite(t, env, fresh, variable, used) for t in (e.numerator, e.denominator))
    return Fraction(*parts)


def display(
    raw: Expression, b: Builder, seen: list[tuple[str, int]], variables: set[str]
) -> tuple[Expression, dict[str, int]]:
    """Rename internal names: values of the query ``X``, ``X'``, ... in order of
    appearance; summed names the first of ``Z``, ``Z'``, ... free in their scope."""

    def candidates(variable: str) -> Iterable[str]:
        name = variable
        while True:
            if name == variable or name not in variables:
                yield name
            name += "'"

    names: dict[tuple[str, int], str] = {}
    taken: set[str] = set()
    for var, value in seen:
        if (var, value) not in names:
            names[var, value] = next(c for c in candidates(var) if c not in taken)
            taken.add(names[var, value])
    env = {n: names[b.variable[n], b.value[n]] for n in raw.free_variables()}
    shown: dict[str, str] = {v: b.variable[n] for n, v in env.items()}

    def fresh(internal: str, used: frozenset[str]) -> str:
        variable = b.variable[internal]
        name = next(c for c in candidates(variable) if c not in used and c not in taken)
        shown[name] = variable
        return name

    expr = _rewrite(raw, env, fresh, shown.__getitem__, frozenset(taken))
    values = dict(sorted((v, b.value[n]) for n, v in env.items()))
    return _ordered(_divide_inside(expr.simplify())), values


def _ordered(e: Expression) -> Expression:
    """The factors of every product sorted by their text: one form whatever the order in
    which sets of names were iterated."""
    if isinstance(e, Product):
        return Product(tuple(sorted((_ordered(t) for t in e.terms), key=str)))
    if isinstance(e, Sum):
        return Sum(e.over, _ordered(e.term))
    if isinstance(e, Fraction):
        return Fraction(_ordered(e.numerator), _ordered(e.denominator))
    return e


def _divide_inside(expr: Expression) -> Expression:
    """``(Σ_z P(z) P(x' | z) f) / P(x')`` as ``Σ_z P(z | x') f``: IDC*'s ratio, moved
    inside the sum where the chain rule turns it into one conditional (the ETT form)."""
    if not (
        isinstance(expr, Fraction)
        and isinstance(expr.numerator, Sum)
        and isinstance(expr.denominator, Probability)
        and not expr.denominator.do
        and not expr.denominator.free_variables() & expr.numerator.over
    ):
        return expr
    term = expr.numerator.term
    factors = list(term.terms) if isinstance(term, Product) else [term]
    while _merge_chain(factors, None):
        pass
    for i, factor in enumerate(factors):
        quotient = Fraction.of(factor, expr.denominator)
        if isinstance(quotient, Probability):
            factors[i] = quotient
            return Sum.of(expr.numerator.over, Product.of(factors))
    return expr
