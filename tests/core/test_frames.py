"""DataFrames in and out (issue 18): dtype -> site type, the errors a table can cause, and
the same answers from a DataFrame as from a dict of arrays."""

from __future__ import annotations

import jax
import numpy as np
import numpyro
import numpyro.distributions as dist
import pandas as pd
import pytest

from scm_ppl import counterfactual
from scm_ppl.core.frames import as_columns, site_types, to_frame
from scm_ppl.errors import DataError, DataWarning, SettingsError


def model(n=1):
    with numpyro.plate("unit", n):
        x = numpyro.sample("x", dist.Normal(0.0, 1.0))
        numpyro.sample("y", dist.Normal(2.0 * x, 1.0))


def test_dataframe_and_dict_give_identical_answers():
    df = pd.DataFrame({"x": [0.5, -1.0, 2.0], "y": [1.5, 0.0, 3.0]})
    kw = {"rng_key": jax.random.key(0), "model_kwargs": {"n": 3}}
    from_frame = counterfactual(model, df, {"x": 1.0}, **kw)
    from_dict = counterfactual(model, {c: df[c].to_numpy() for c in df}, {"x": 1.0}, **kw)
    np.testing.assert_array_equal(from_frame.world("cf")["y"], from_dict.world("cf")["y"])
    # y_cf = 2 * 1 + (y - 2 x): the abducted noise replayed
    out = from_frame.to_dataframe("cf")
    np.testing.assert_allclose(out["y"], 2.0 + df["y"] - 2 * df["x"], rtol=1e-6)
    assert list(out.columns) == ["x", "y"] and len(out) == 3


def test_site_types_follow_dtypes():
    df = pd.DataFrame({
        "b": [True, False, True],
        "t": [0, 1, 0],
        "k": pd.Categorical(["a", "c", "b"]),
        "e": [3, 12, 7],
        "y": [0.1, 2.0, 3.5],
    })  # fmt: skip
    assert site_types(df) == {
        "b": "binary", "t": "binary", "k": "categorical", "e": "categorical", "y": "continuous",
    }  # fmt: skip
    cols = as_columns(df)
    assert cols["k"].tolist() == [0, 2, 1] and cols["b"].dtype == np.bool_


def test_non_frames_pass_through():
    data = {"x": [1.0]}
    assert as_columns(data) is data
    assert to_frame({"v": np.ones((2, 3))}).columns.tolist() == ["v[0]", "v[1]", "v[2]"]


def test_missing_values_are_refused_with_count_and_columns():
    df = pd.DataFrame({"x": [0.5, np.nan, 2.0], "y": [1.0, 2.0, None]})
    with pytest.raises(
        DataError, match=r"missing values .* in 2 row\(s\): per column \{'x': 1, 'y': 1\}"
    ):
        as_columns(df)
    with pytest.warns(DataWarning, match="Dropped 2 of 3 row"):
        cols = as_columns(df, missing="drop")
    assert cols["x"].tolist() == [0.5]
    with pytest.raises(DataError, match="missing= must be one of"):
        as_columns(df, missing="impute")


def test_mixed_types_in_a_column_are_refused():
    df = pd.DataFrame({"x": [1.0, "two", 3.0]})
    with pytest.raises(DataError, match=r"Column 'x' has mixed or non-numeric values .*float.*str"):
        as_columns(df)


def test_unseen_level_is_refused():
    df = pd.DataFrame({"k": pd.Categorical(["a", "z"])})
    with pytest.raises(DataError, match=r"Column 'k' holds level\(s\) \['z'\] unseen in training"):
        as_columns(df, levels={"k": ("a", "b")})
    ints = pd.DataFrame({"e": [1, 7]})
    with pytest.raises(DataError, match=r"level\(s\) \[7\] unseen"):
        as_columns(ints, levels={"e": (0, 1, 2)})


def test_queries_and_fit_refuse_nan_in_a_frame():
    from scm_ppl import fit

    df = pd.DataFrame({"x": [0.5, np.nan], "y": [1.0, 2.0]})
    with pytest.raises(DataError, match=r"evidence table holds missing values"):
        counterfactual(model, df, {"x": 1.0}, rng_key=jax.random.key(0))
    with pytest.raises(DataError, match=r"data table holds missing values"):
        fit(model, df)


def test_fit_drops_missing_rows_on_request_and_records_the_count():
    """missing='drop' on a DataFrame and on a dict (with regime tags dropped alongside)."""
    from scm_ppl import fit

    rng = np.random.default_rng(0)
    x = rng.normal(size=200)
    y = 2.0 * x + rng.normal(size=200)
    x[[3, 7]] = np.nan
    y[7] = np.nan
    y[11] = np.nan  # rows 3, 7, 11: three rows, per column x: 2, y: 2
    df = pd.DataFrame({"x": x, "y": y})
    kw = {"num_epochs": 2, "batch_size": None, "progress": False}
    with pytest.raises(DataError, match=r"3 row\(s\): per column \{'x': 2, 'y': 2\}.*'drop'"):
        fit(model, df, **kw)
    with pytest.raises(DataError, match=r"'x' hold 2 NaN/inf value\(s\).*missing='drop'"):
        fit(model, {"x": x, "y": y}, **kw)
    with pytest.warns(DataWarning, match=r"Dropped 3 of 200 row\(s\) of the data table"):
        from_frame = fit(model, df, missing="drop", **kw)
    assert from_frame.settings["dropped_rows"] == 3 and from_frame.settings["num_rows"] == 197
    regime = np.full(200, -1)
    with pytest.warns(DataWarning, match="Dropped 3 of 200"):
        from_dict = fit(
            model, {"x": x, "y": y}, missing="drop", interventions=[], regime=regime, **kw
        )
    assert from_dict.settings["dropped_rows"] == 3
    with pytest.raises(SettingsError, match=r"Unknown missing= policy 'mean'"):
        fit(model, df, missing="mean", **kw)
    clean = fit(model, df.dropna(), **kw)
    assert clean.settings["dropped_rows"] == 0
