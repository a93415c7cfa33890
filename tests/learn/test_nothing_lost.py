"""Nothing lost: results survive netCDF whole, fits survive save/load whole, and a save
that is interrupted — by an exception, Ctrl-C, or a killed process — leaves the previous
file intact and loadable.

(tests/query/test_results.py checks one variable and the graph attr after netCDF;
tests/learn/test_fit.py checks MAP and SVI parameters after save/load and an ``OSError`` in the
array writer. This file checks every group, variable, coordinate and attr, every group
of a Bayesian fit, and the other ways a save can stop.)
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import jax
import networkx as nx
import numpy as np
import numpyro
import numpyro.distributions as dist
import pytest

import scm_ppl.learn.serialize as serialize
from models import linear_chain
from scm_ppl import FittedSCM, counterfactual, fit, graph, interventional

KEY = jax.random.key(0)


# --- InferenceData through netCDF -------------------------------------------------------------


def _round_trip(result, tmp_path):
    import arviz as az

    idata = result.to_inference_data()
    path = tmp_path / f"result{len(os.listdir(tmp_path))}.nc"  # the last one is still open
    idata.to_netcdf(str(path))
    return idata, az.from_netcdf(str(path))


def _assert_same_inference_data(idata, loaded):
    import xarray as xr

    assert set(loaded.groups()) == set(idata.groups())
    for group in idata.groups():
        xr.testing.assert_identical(loaded[group].load(), idata[group])


def test_counterfactual_results_round_trip_through_netcdf_whole(tmp_path):
    worlds = {"up": {"x2": lambda x: x + 1.0}, "zero": {"x1": 0.0, "x3": np.zeros(3)}}
    result = counterfactual(
        linear_chain.model, {"x1": [0.5, 1.0, 1.5], "x2": [0.1, 0.2, 0.3]}, worlds,
        rng_key=KEY, num_samples=7, model_kwargs={"n": 3},
    )  # fmt: skip
    idata, loaded = _round_trip(result, tmp_path)
    _assert_same_inference_data(idata, loaded)
    attrs = loaded.predictions.attrs
    saved_graph = json.loads(attrs["graph"])
    assert nx.DiGraph(saved_graph["edges"]).edges == graph(linear_chain.model).edges
    assert sorted(saved_graph["nodes"]) == sorted(graph(linear_chain.model).nodes)
    assert json.loads(attrs["interventions"]) == json.loads(
        json.dumps(result.attrs["interventions"])
    )
    assert json.loads(attrs["worlds"]) == ["factual", "up", "zero"]
    assert attrs["method"] == result.method
    assert list(loaded.predictions.world.values) == result.attrs["worlds"]


def test_couplings_and_interventional_results_round_trip(tmp_path):
    result = counterfactual(
        binary, {"t": [1, 0], "y": [1, 1]}, {"t": 0}, rng_key=KEY, num_samples=20
    )
    idata, loaded = _round_trip(result, tmp_path)
    _assert_same_inference_data(idata, loaded)
    couplings = json.loads(loaded.posterior.attrs["couplings"])
    assert couplings and couplings == result.attrs["couplings"]
    rung2 = interventional(
        linear_chain.model, {"low": {"x2": -1.0}, "high": {"x2": np.ones(4)}}, rng_key=KEY,
        num_samples=5, model_kwargs={"n": 4},
    )  # fmt: skip
    idata, loaded = _round_trip(rung2, tmp_path)
    _assert_same_inference_data(idata, loaded)
    assert list(loaded.predictions.intervention.values) == ["low", "high"]
    high = {"x2": {"kind": "hard", "value": [1.0, 1.0, 1.0, 1.0]}}
    assert json.loads(loaded.predictions.attrs["interventions"])["high"] == high


def binary(n=2):
    with numpyro.plate("unit", n):
        t = numpyro.sample("t", dist.Bernoulli(0.5))
        numpyro.sample("y", dist.Bernoulli(0.2 + 0.6 * t))


# --- fits: save and load without loss ---------------------------------------------------------


def bayesian(n):
    shift = numpyro.param("shift", 0.0)
    w = numpyro.sample("w", dist.Normal(0.0, 1.0))
    with numpyro.plate("unit", n):
        x = numpyro.sample("x", dist.Normal(shift, 1.0))
        numpyro.sample("y", dist.Normal(w * x, 0.5))


def _data(n=200):
    r = np.random.default_rng(0)
    x = 0.3 + r.normal(size=n)
    return {"x": x, "y": 0.7 * x + 0.5 * r.normal(size=n)}


@pytest.fixture(scope="module")
def fitted():
    """An SVI fit: a parameter, a Gaussian posterior (loc, scale) and its draws."""
    return fit(
        bayesian, _data(), method="svi", num_epochs=20, learning_rate=0.05, rng_key=KEY,
        validation_fraction=0.2, progress=False,
    )  # fmt: skip


def _assert_same_fit(a, b):
    for group in ("params", "point", "posterior_loc", "posterior_scale", "posterior_samples"):
        left, right = getattr(a, group), getattr(b, group)
        assert left.keys() == right.keys(), group
        for site in left:
            np.testing.assert_array_equal(np.asarray(left[site]), np.asarray(right[site]))
            assert np.asarray(left[site]).dtype == np.asarray(right[site]).dtype
    for field in a.history._fields:
        np.testing.assert_array_equal(getattr(a.history, field), getattr(b.history, field))
    assert b.settings == json.loads(json.dumps(a.settings))


def test_a_bayesian_fit_saves_and_loads_exactly(fitted, tmp_path):
    assert fitted.posterior_loc and fitted.posterior_scale and fitted.params
    path = tmp_path / "fit.npz"
    fitted.save(path)
    loaded = FittedSCM.load(path, bayesian)
    _assert_same_fit(fitted, loaded)
    # saving what was loaded writes the same arrays and metadata again
    again = tmp_path / "again.npz"
    loaded.save(again)
    (arrays, meta), (arrays2, meta2) = serialize.read_archive(path), serialize.read_archive(again)
    assert meta == meta2 and arrays.keys() == arrays2.keys()
    for key in arrays:
        np.testing.assert_array_equal(arrays[key], arrays2[key])
    # and the loaded program answers as the fitted one, draw for draw
    answers = [
        interventional(m, {"x": 1.0}, rng_key=KEY, num_samples=50, model_kwargs={"n": 2})
        for m in (fitted, loaded)
    ]
    np.testing.assert_array_equal(
        answers[0].samples["predictions"]["y"], answers[1].samples["predictions"]["y"]
    )


def _interrupt(monkeypatch, where, exception):
    """Make the save stop at ``where``: the array writer (second array), the rename, or
    the flush to disk."""
    calls = []

    def write_array(member, array):
        calls.append(1)
        if len(calls) % 2 == 0:  # the second array of every save
            raise exception
        np.lib.format.write_array(member, array, allow_pickle=False)

    def fail(*args, **kwargs):
        raise exception

    if where == "array":
        monkeypatch.setattr(serialize, "_write_array", write_array)
    elif where == "rename":
        monkeypatch.setattr(serialize.os, "replace", fail)
    else:
        monkeypatch.setattr(serialize.os, "fsync", fail)


@pytest.mark.parametrize("where", ["array", "fsync", "rename"])
@pytest.mark.parametrize("exception", [KeyboardInterrupt(), OSError("disk full")])
def test_an_interrupted_save_keeps_the_old_file_and_leaves_no_temporary(
    fitted, tmp_path, monkeypatch, where, exception
):
    path = tmp_path / "fit.npz"
    fitted.save(path)
    before = path.read_bytes()
    _interrupt(monkeypatch, where, exception)
    with pytest.raises(type(exception)):
        fitted.save(path)
    with pytest.raises(type(exception)):
        fitted.save(tmp_path / "new.npz")  # a first save that stops: no file at all
    monkeypatch.undo()
    assert path.read_bytes() == before
    assert os.listdir(tmp_path) == ["fit.npz"]
    _assert_same_fit(fitted, FittedSCM.load(path, bayesian))


def test_a_save_killed_midway_leaves_the_old_file_loadable(fitted, tmp_path):
    """The process dies inside the writer (``os._exit``: no exception handler runs)."""
    path = tmp_path / "fit.npz"
    fitted.save(path)
    before = path.read_bytes()
    script = textwrap.dedent(
        f"""
        import os
        import numpy as np
        import scm_ppl.learn.serialize as serialize

        arrays, metadata = serialize.read_archive({str(path)!r})
        arrays = {{k: v + 1 for k, v in arrays.items()}}  # a different fit
        calls = []

        def die_midway(member, array):
            calls.append(1)
            if len(calls) == 2:
                os._exit(3)
            np.lib.format.write_array(member, array, allow_pickle=False)

        serialize._write_array = die_midway
        serialize.write_archive({str(path)!r}, arrays, metadata)
        """
    )
    env = {**os.environ, "JAX_PLATFORMS": "cpu"}
    done = subprocess.run([sys.executable, "-c", script], env=env, timeout=120, check=False)
    assert done.returncode == 3
    assert path.read_bytes() == before
    leftovers = [f for f in os.listdir(tmp_path) if f != "fit.npz"]
    assert all(f.startswith(".fit.npz.") and f.endswith(".tmp") for f in leftovers)
    _assert_same_fit(fitted, FittedSCM.load(path, bayesian))
