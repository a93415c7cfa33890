"""Tests for scm_ppl.estimand: formulas, simplification, printing and exact evaluation."""

from __future__ import annotations

import doctest
import importlib
import itertools
from collections.abc import Callable, Iterable

import numpy as np
import pytest

from scm_ppl.errors import EstimandError
from scm_ppl.graphical.estimand import ONE, Expression, Fraction, Probability, Product, Sum
from scm_ppl.graphical.joint import DiscreteJoint


def P(vars: Iterable[str], given: Iterable[str] = "") -> Probability:
    """A shorthand: P("yx", "m") is P(x, y | m) (a string is a set of one-letter names)."""
    return Probability(frozenset(vars), frozenset(given))


def test_simplification_of_trivial_cases() -> None:
    assert Sum.of([], P("y")) == P("y")
    assert Product.of([P("y")]) == P("y")
    assert Product.of([]) == ONE and str(P("", "x")) == "1"
    assert Product.of([P("", "x"), P("y")]) == P("y")
    assert Product.of([ONE, P("y"), Product((P("x"), ONE))]) == Product((P("y"), P("x")))
    assert str(ONE) == "1" and ONE.free_variables() == frozenset()
    assert Sum.of("x", P("xy", "z")) == P("y", "z")
    assert Sum.of(set("xy"), P("xy")) == ONE
    assert Fraction.of(P("xy", "z"), P("y", "z")) == P("x", "yz")
    assert Fraction.of(P("x"), ONE) == P("x") and Fraction.of(P("x"), P("x")) == ONE
    # A chain rule: the last factors sum out, the common factors cancel.
    chain = Product.of([P("a"), P("b", "a"), P("c", "ab")])
    assert Sum.of("c", chain) == Product.of([P("a"), P("b", "a")])
    assert Fraction.of(Sum.of("c", chain), P("a")) == P("b", "a")
    assert Sum.of(set("abc"), chain) == ONE
    # Factors free of the summed variable leave the sum; sums over disjoint sets merge.
    assert str(Sum.of("m", Product.of([P("x"), P("y", "m"), P("m", "x")]))) == (
        "P(x) Σ_{m} P(y | m) P(m | x)"
    )
    assert Sum.of("a", Sum(frozenset("b"), P("c", "ab"))) == Sum(frozenset("ab"), P("c", "ab"))
    raw = Sum(frozenset("x"), Product((P("x"), P("y", "x"), ONE)))
    assert raw.simplify() == P("y")  # Σ_x P(x) P(y | x) = Σ_x P(x, y) = P(y)
    assert Sum.of("x", Product.of([P("x", "z"), P("y", "xz")])) == P("y", "z")
    # ... but not when the merge would be wrong (P(y | x, z) P(x) is not P(x, y | z)).
    assert isinstance(Sum.of("x", Product.of([P("x"), P("y", "xz")])), Sum)


def test_text_latex_and_primes() -> None:
    inner = Sum.of("x", Product.of([P("x"), P("y", "mx")]))
    e = Sum.of("m", Product.of([inner, P("m", "x")]))
    assert e.free_variables() == {"x", "y"}
    assert e.text() == str(e) == "Σ_{m} P(m | x) Σ_{x'} P(x) P(y | m, x')".replace("P(x)", "P(x')")
    assert e.latex().startswith(r"\sum_{m} P(m \mid x)")
    # Only names already visible are primed; a name bound twice over gets two primes.
    nested = Sum.of(
        "x", Product.of([P("x", "y"), Sum.of("y", Product.of([P("y", "z"), P("y", "x")]))])
    )
    assert nested.text() == "Σ_{x} P(x | y) Σ_{y'} P(y' | z) P(y' | x)"
    assert nested.free_variables() == {"y", "z"}
    inner = Sum(frozenset("x"), Product((P("x"), P("w", "x"))))
    twice = Product((P("x"), Sum(frozenset("x"), Product((P("x", "w"), inner)))))
    assert twice.text() == "P(x) Σ_{x'} P(x' | w) Σ_{x''} P(x'') P(w | x'')"
    # Brackets group all but the last sum of a product, and fractions.
    two = Product((Sum(frozenset("a"), P("ab", "d")), Sum(frozenset("c"), P("cb", "d"))))
    assert two.text() == "[Σ_{a} P(a, b | d)] Σ_{c} P(b, c | d)"
    frac = Product((P("w"), Fraction(Sum(frozenset("a"), P("ab")), P("b"))))
    assert frac.text() == "P(w) [(Σ_{a} P(a, b)) / P(b)]"
    assert frac.latex() == r"P(w) \left[\frac{\sum_{a} P(a, b)}{P(b)}\right]"
    named = Probability(frozenset({"x_1", "y2", "my_var"}), frozenset({"z"}), frozenset({"t"}))
    assert named.text() == "P(my_var, x_1, y2 | do(t), z)"
    assert named.latex() == r"P(\mathrm{my\_var}, x_{1}, y_{2} \mid \mathrm{do}(t), z)"


def test_evaluation_respects_scoping() -> None:
    # Σ_x P(x) P(y | x) at a *free* x elsewhere: the inner x is the summed one.
    p = np.random.default_rng(1).dirichlet(np.ones(4)).reshape(2, 2)  # axes x, y
    joint = DiscreteJoint(p, ("x", "y"))
    e = Product.of([P("x"), Sum.of("x", Product.of([P("x"), P("y", "x")]))])
    assert e.free_variables() == {"x", "y"}
    for xv, yv in itertools.product([0, 1], [0, 1]):
        assert e.evaluate(joint, {"x": xv, "y": yv, "unused": 5}) == pytest.approx(
            p[xv].sum() * p[:, yv].sum()
        )
    # Summing a variable the term does not depend on multiplies by its number of values.
    assert Sum(frozenset("x"), P("y")).evaluate(joint, {"y": 0}) == pytest.approx(2 * p[:, 0].sum())
    np.testing.assert_allclose(e.table(joint, ["y"], {"x": 1}), p[1].sum() * p.sum(0))
    np.testing.assert_allclose(
        P("y", "x").array((p, ("x", "y")), ["y", "x"]), (p / p.sum(1, keepdims=True)).T
    )
    # Axes the value does not depend on are broadcast.
    np.testing.assert_allclose(P("y").array(joint, ["x", "y"]), np.tile(p.sum(0), (2, 1)))


@pytest.mark.parametrize(
    ("build", "match"),
    [
        (lambda: Probability(frozenset("x"), frozenset("x")), "repeats a variable"),
        (lambda: Probability(frozenset({1})), "must be strings"),  # type: ignore[arg-type]
    ],
)
def test_estimand_errors(build: Callable[[], object], match: str) -> None:
    with pytest.raises(EstimandError, match=match):
        build()


def test_rendering_an_unknown_node_is_an_estimand_error() -> None:
    class Stray(Expression):
        _free = frozenset()

    with pytest.raises(EstimandError, match="Cannot render Stray; expected an estimand node"):
        Stray().text()


def test_evaluation_errors() -> None:
    joint = DiscreteJoint(np.full((2, 2), 0.25), ("x", "y"))
    with pytest.raises(EstimandError, match=r"No value given for free variable 'y'"):
        P("y", "x").evaluate(joint, {"x": 0})
    with pytest.raises(EstimandError, match=r"Value 2 of 'x' is not an integer in 0..1"):
        P("y", "x").evaluate(joint, {"x": 2, "y": 0})
    with pytest.raises(EstimandError, match=r"free variables \['x'\]"):
        P("y", "x").array(joint, ["y"])
    with pytest.raises(EstimandError, match="no variable 'z'"):
        P("z").evaluate(joint, {"z": 0})
    with pytest.raises(EstimandError, match="is interventional"):
        Probability(frozenset("y"), do=frozenset("x")).evaluate(joint, {"x": 0, "y": 0})
    with pytest.raises(EstimandError, match="Expected a DiscreteJoint or an"):
        P("y").evaluate(np.ones(2), {"y": 0})  # type: ignore[arg-type]


# -- positivity ----------------------------------------------------------------------------------
BACKDOOR = Sum.of("z", Product.of([P("z"), P("y", "xz")]))
# Counts over (z, x, y): no unit has x=1, z=0.
COUNTS = np.array([[[3, 1], [0, 0]], [[2, 2], [1, 3]]])


def test_empirical_joint_raises_naming_the_stratum() -> None:
    data = DiscreteJoint.from_counts(COUNTS, ("z", "x", "y"))
    with pytest.raises(EstimandError, match=r"stratum x=1, z=0, but no row of the data falls in"):
        BACKDOOR.array(data, ["x", "y"])
    with pytest.raises(EstimandError, match="positivity fails"):
        BACKDOOR.evaluate(data, {"x": 1, "y": 0})
    with pytest.raises(EstimandError, match=r"stratum x=1, z=0"):
        BACKDOOR.table(data, ["y"], {"x": 1})
    # Only the values asked for must be defined; strict=False gives NaN instead.
    p = COUNTS / COUNTS.sum()
    expected = sum(p[z].sum() * p[z, 0] / p[z, 0].sum() for z in (0, 1))
    np.testing.assert_allclose(BACKDOOR.table(data, ["y"], {"x": 0}), expected)
    assert BACKDOOR.evaluate(data, {"x": 0, "y": 1}) == pytest.approx(expected[1])
    loose = BACKDOOR.array(data, ["x", "y"], strict=False)
    assert np.isnan(loose[1]).all() and np.allclose(loose[0], expected)


def test_exact_joint_gives_nan_unless_strict() -> None:
    exact = DiscreteJoint(COUNTS / COUNTS.sum(), ("z", "x", "y"))
    assert np.isnan(BACKDOOR.array(exact, ["x", "y"])[1]).all()
    with pytest.raises(EstimandError, match=r"stratum x=1, z=0, but the joint gives zero mass"):
        BACKDOOR.array(exact, ["x", "y"], strict=True)
    # A stratum of weight zero does not matter: P(z=0) = 0 leaves every value defined.
    no_z0 = COUNTS * np.array([0, 1])[:, None, None]
    data = DiscreteJoint.from_counts(no_z0, ("z", "x", "y"))
    p = no_z0[1] / no_z0[1].sum(axis=1, keepdims=True)
    np.testing.assert_allclose(BACKDOOR.array(data, ["x", "y"]), p)


def test_a_zero_denominator_is_named() -> None:
    # (Σ_a P(a, b)) / P(b) at b = 2, a value no row has.
    frac = Fraction(Sum(frozenset("a"), P("ab")), P("b"))
    data = DiscreteJoint.from_data({"a": [0, 1, 1], "b": [0, 1, 0]}, {"b": 3})
    np.testing.assert_allclose(frac.array(data, ["b"], strict=False)[:2], 1.0)
    with pytest.raises(EstimandError, match=r"divides by P\(b\), which is 0 at b=2"):
        frac.array(data, ["b"])


def test_docstring_examples() -> None:
    assert doctest.testmod(importlib.import_module("scm_ppl.graphical.estimand")).failed == 0
