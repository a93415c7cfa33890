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
