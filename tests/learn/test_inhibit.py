"""inhibit: a reagent's action on one mechanism (issue 18), in closed form on a linear
program from scm_from_graph."""

from __future__ import annotations

import networkx as nx
import numpy as np
import pandas as pd
import pytest
from numpyro import handlers

from scm_ppl.errors import InterventionError
from scm_ppl.learn import inhibit, scm_from_graph


@pytest.fixture(scope="module")
def scm():
    rng = np.random.default_rng(0)
    x = rng.normal(3.0, 2.0, size=2000)
    z = rng.normal(size=2000)
    y = 1.5 * x - z + 0.1 * rng.normal(size=2000)
    df = pd.DataFrame({"x": x, "z": z, "y": y})
    return scm_from_graph(nx.DiGraph([("x", "y"), ("z", "y")]), df)


def _loc_of_y(program, x, z):
    data = {"x": np.array([x]), "z": np.array([z])}
    with handlers.seed(rng_seed=0), handlers.condition(data=data):
        tr = handlers.trace(program).get_trace(n=1)
    return float(tr["y"]["fn"].loc[0])


def test_inhibit_cuts_or_shifts_one_parent_only(scm):
    base = _loc_of_y(scm, 5.0, 1.0)
    cut = _loc_of_y(inhibit(scm, "y", "x"), 5.0, 1.0)
    x_mean = scm.stats["x"]["feature_mean"]
    # Without x's influence y answers as if x sat at its mean: 1.5 (5 - mean) less.
    assert cut == pytest.approx(base - 1.5 * (5.0 - x_mean), abs=0.02)
    shifted = _loc_of_y(inhibit(scm, "y", "x", factor=1.0, shift=-2.0), 5.0, 1.0)
    assert shifted == pytest.approx(base - 1.5 * 2.0, abs=0.02)
    # z's influence is untouched
    assert _loc_of_y(inhibit(scm, "y", "x"), 5.0, 2.0) - cut == pytest.approx(-1.0, abs=0.02)


def test_inhibit_refuses_a_non_edge(scm):
    with pytest.raises(InterventionError, match=r"'z' is not a parent of 'x'"):
        inhibit(scm, "x", "z")
    with pytest.raises(InterventionError, match="acts on a program from scm_from_graph"):
        inhibit(lambda n=1: None, "y", "x")  # type: ignore[arg-type]


def test_inhibit_shift_reads_the_fitted_weight(scm):
    # Refit on data with another slope: the shifted parent must move y by the *fitted*
    # slope, exactly as evaluating the fitted program at the shifted parent value does.
    from scm_ppl import fit

    rng = np.random.default_rng(1)
    x, z = rng.normal(3.0, 2.0, size=500), rng.normal(size=500)
    df = pd.DataFrame({"x": x, "z": z, "y": 3.0 * x - z + 0.1 * rng.normal(size=500)})
    fitted = fit(scm, df, num_epochs=20, batch_size=500, learning_rate=0.05, progress=False)
    moved = _loc_of_y(fitted, 3.0, 1.0) - _loc_of_y(fitted, 5.0, 1.0)
    assert abs(moved) > 1.5 * 2.0 + 0.5  # the fit did change the slope
    shifted = _loc_of_y(inhibit(fitted, "y", "x", factor=1.0, shift=-2.0), 5.0, 1.0)
    assert shifted == pytest.approx(_loc_of_y(fitted, 3.0, 1.0), abs=1e-3)
    chained = inhibit(
        inhibit(fitted, "y", "z", factor=1.0), "y", "x", shift=-2.0, factor=1.0, scm=fitted
    )
    assert _loc_of_y(chained, 5.0, 1.0) == pytest.approx(shifted, abs=1e-3)


def _hurdle_of_y(program, x, b):
    data = {"x": np.array([x]), "b": np.array([b])}
    with handlers.seed(rng_seed=0), handlers.condition(data=data):
        fn = handlers.trace(program).get_trace(n=1)["y"]["fn"]
    return np.array([float(fn.zero_logits[0]), float(fn.loc[0])])


def test_inhibit_on_hurdle_sq_moves_the_square_with_its_parent():
    """A hurdle-sq mechanism is quadratic in each continuous parent's standardised value
    z, in both its zero logits and its log level: shifting the parent by s inside it equals
    evaluating the mechanism at x + s (exactly: (z + d)^2 expands), factor 0 evaluates it
    at the training mean, and the other parent b keeps its influence."""
    rng = np.random.default_rng(0)
    x, b = rng.normal(2.0, 1.5, size=1000), rng.integers(0, 2, size=1000)
    zero = rng.random(1000) < 1 / (1 + np.exp(-((x - 2.0) ** 2) + 1.0))
    level = np.exp(1.0 + 0.5 * (x - 2.0) ** 2 + 0.4 * b + 0.3 * rng.normal(size=1000))
    df = pd.DataFrame({"x": x, "b": b, "y": np.where(zero, 0.0, level)})
    graph = nx.DiGraph([("x", "y"), ("b", "y")])
    model = scm_from_graph(graph, df, mechanisms={"y": "hurdle-sq"})
    for x0 in (0.5, 2.0, 4.0):
        shifted = _hurdle_of_y(inhibit(model, "y", "x", factor=1.0, shift=-1.3), x0, 1)
        np.testing.assert_allclose(shifted, _hurdle_of_y(model, x0 - 1.3, 1), rtol=1e-5)
        cut = _hurdle_of_y(inhibit(model, "y", "x"), x0, 1)
        at_mean = _hurdle_of_y(model, model.stats["x"]["feature_mean"], 1)
        np.testing.assert_allclose(cut, at_mean, rtol=1e-5)
    half = inhibit(model, "y", "x", factor=0.5, shift=1.0)
    mean = model.stats["x"]["feature_mean"]
    # Half the influence of the shifted parent: the midpoint of the mechanism at the mean
    # and at x + 1, in both linear predictors.
    np.testing.assert_allclose(
        _hurdle_of_y(half, 3.0, 0),
        (_hurdle_of_y(model, mean, 0) + _hurdle_of_y(model, 4.0, 0)) / 2,
        rtol=1e-5,
    )
    b_effect = _hurdle_of_y(inhibit(model, "y", "x"), 3.0, 1) - _hurdle_of_y(
        inhibit(model, "y", "x"), 3.0, 0
    )
    np.testing.assert_allclose(
        b_effect, _hurdle_of_y(model, 3.0, 1) - _hurdle_of_y(model, 3.0, 0), rtol=1e-5
    )
