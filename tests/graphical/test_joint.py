"""Tests for scm_ppl.joint: discrete joints, and the tables estimands evaluate to."""

from __future__ import annotations

import doctest
from collections.abc import Callable

import numpy as np
import pytest

from scm_ppl.errors import EstimandError
from scm_ppl.graphical import joint as joint_module
from scm_ppl.graphical.joint import DiscreteJoint, Evaluator, Table, as_joint


def test_discrete_joint() -> None:
    joint = DiscreteJoint.from_counts([[1, 3], [2, 4]], ("x", "y"))
    np.testing.assert_allclose(joint.marginal(["y", "x"]), [[0.1, 0.2], [0.3, 0.4]])
    data = DiscreteJoint.from_data(
        {"x": np.array([0, 0, 1, 1]), "y": np.array([0, 1, 1, 1])}, {"y": 3}
    )
    np.testing.assert_allclose(data.probs, [[0.25, 0.25, 0], [0, 0.5, 0]])
    assert data.cardinality("y") == 3 and "DiscreteJoint(names=['x', 'y']" in repr(data)
    assert data.empirical and joint.empirical and "empirical" in repr(data)
    exact = DiscreteJoint([0.25, 0.75], ("x",))
    assert not exact.empirical and "empirical" not in repr(exact)
    assert as_joint(exact) is exact and as_joint(([0.5, 0.5], ("x",))).names == ("x",)
    # Booleans are codes too; a cardinality for a variable the data lacks is ignored.
    flags = DiscreteJoint.from_data({"x": np.array([True, False, True])}, {"q": 3})
    np.testing.assert_allclose(flags.probs, [1 / 3, 2 / 3])
    with pytest.raises(ValueError, match="read-only"):
        joint.probs[0, 0] = 1.0
    with np.errstate(all="raise"):  # NaN, not a warning, where P(given) = 0
        cond = data.conditional(["x"], ["y"])
    assert np.isnan(cond[:, 2]).all()


@pytest.mark.parametrize(
    ("build", "match"),
    [
        (lambda: DiscreteJoint(np.ones((2, 2)) / 4, ("x",)), "one distinct name per axis"),
        (lambda: DiscreteJoint(np.ones((2, 2)) / 4, ("x", "x")), "one distinct name per axis"),
        (lambda: DiscreteJoint(np.ones(2) / 2, (1,)), "must be strings"),  # type: ignore[arg-type]
        (lambda: DiscreteJoint([0.5, 0.6], ("x",)), "sum to 1.1, not 1"),
        (lambda: DiscreteJoint([1.5, -0.5], ("x",)), "finite and non-negative"),
        (lambda: DiscreteJoint.from_counts([0, 0], ("x",)), "counts sum to 0"),
        (lambda: DiscreteJoint.from_counts([1, -1], ("x",)), "finite and non-negative"),
        (lambda: DiscreteJoint.from_counts([1, np.nan], ("x",)), "finite and non-negative"),
        (lambda: DiscreteJoint.from_data({"x": [0, 1], "y": [0]}), "all the same length"),
        (lambda: DiscreteJoint.from_data({"x": [0.5, 1.0]}), "integer codes"),
        (lambda: DiscreteJoint.from_data({"x": [[0, 1]]}), r"1-D.*shape \(1, 2\)"),
        (lambda: DiscreteJoint.from_data({"x": np.array([], int)}), "non-empty"),
        (lambda: DiscreteJoint.from_data({"x": [0, -1]}), "negative codes"),
        (lambda: DiscreteJoint.from_data({}), "no columns"),
        (lambda: DiscreteJoint.from_data({"x": [0, 2]}, {"x": 2}), "exceeds its cardinality"),
        (lambda: DiscreteJoint([1.0], ("x",)).marginal(["q"]), r"no variable 'q'; it has \['x'\]"),
        (lambda: DiscreteJoint([1.0], ("x",)).marginal(["x", "x"]), "repeat a name"),
        (lambda: as_joint(np.ones(2)), "Expected a DiscreteJoint or an"),  # type: ignore[arg-type]
    ],
)
def test_joint_errors(build: Callable[[], object], match: str) -> None:
    with pytest.raises(EstimandError, match=match):
        build()


# -- tables and positivity -----------------------------------------------------------------------
# P(z, x) with P(x=1, z=0) = 0 (axes z, x), and y uniform given both.
HOLE = np.array([[0.25, 0.0], [0.25, 0.5]])[..., None] * np.full(2, 0.5)


def test_conditional_marks_zero_strata() -> None:
    ev = Evaluator(DiscreteJoint(HOLE, ("z", "x", "y")))
    table = ev.conditional(("y",), ("x", "z"))
    assert table.names == ("y", "x", "z") and table.origin is not None
    assert np.isnan(table.values[:, 1, 0]).all() and not np.isnan(table.values[:, 0]).any()
    assert [s.values for s in ev.strata] == [{"x": 1, "z": 0}]
    assert (table.origin[:, 1, 0] == 0).all()
    assert ev.conditional(("y",), ()).origin is None  # a marginal is always defined


def test_zero_weight_strata_do_not_matter() -> None:
    ev = Evaluator(DiscreteJoint(HOLE, ("z", "x", "y")))
    undefined = ev.conditional(("z",), ("x",))  # defined: P(x) > 0 everywhere
    assert undefined.origin is None
    # Σ_z P(y | x, z) P(z | x): at x=1 the undefined P(y | x=1, z=0) has weight 0.
    product = ev.product([ev.conditional(("y",), ("x", "z")), undefined])
    total = ev.sum(product, frozenset({"z"}))
    assert not np.isnan(total.values).any() and total.origin is not None
    np.testing.assert_allclose(total.aligned(("x", "y")), 0.5)
    ev.check(total.origin)  # nothing undefined: no error
    # Σ_z P(y | x, z) P(z) gives it weight P(z=0) = 1/4: undefined at x=1 only.
    backdoor = ev.sum(
        ev.product([ev.conditional(("y",), ("x", "z")), ev.conditional(("z",), ())]),
        frozenset({"z"}),
    )
    assert np.isnan(backdoor.aligned(("x", "y"))[1]).all()
    np.testing.assert_allclose(backdoor.aligned(("x", "y"))[0], 0.5)
    with pytest.raises(EstimandError, match=r"stratum x=1, z=0, but the joint gives zero mass"):
        ev.check(backdoor.origin)


def test_ratio_with_a_zero_denominator_names_it() -> None:
    ev = Evaluator(DiscreteJoint.from_counts([[1, 0], [1, 2]], ("a", "b")))
    num, den = ev.conditional(("a", "b"), ()), ev.conditional(("b",), ())
    ratio = ev.ratio(num, Table(den.values * np.array([1, 0]), den.names), lambda: "Q(b)")
    assert np.isnan(ratio.aligned(("a", "b"))[:, 1]).all()
    with pytest.raises(EstimandError, match=r"divides by Q\(b\), which is 0 at b=1"):
        ev.check(ratio.origin)
    # Sums of a constant count its values.
    assert ev.sum(Table(np.ones(()), ()), frozenset({"a"})).values == 2


def test_docstring_examples() -> None:
    assert doctest.testmod(joint_module).failed == 0
