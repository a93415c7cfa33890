"""Results become InferenceData with named dims, lazily, and survive netCDF."""

import json

import jax
import numpy as np
import pytest

from models import linear_chain
from scm_ppl import counterfactual, interventional

KEY = jax.random.key(0)


@pytest.fixture(scope="module")
def result():
    return counterfactual(
        linear_chain.model, {"x1": [0.5, 1.0, 1.5]}, {"x1": 0.0}, rng_key=KEY,
        num_samples=20, model_kwargs={"n": 3},
    )  # fmt: skip


def test_inference_data_is_built_on_first_use_only(result):
    assert result._idata is None
    predictions = result.predictions
    assert result._idata is None  # a group is a view of its own: InferenceData waits
    assert result.to_inference_data() is result.to_inference_data()
    assert predictions["x2"].dims == ("chain", "draw", "world", "unit")
    assert list(predictions.world.values) == ["factual", "cf"]
    assert result.posterior["noise.x2"].dims == ("chain", "draw", "unit")
    assert result.observed_data["x1"].dims == ("unit",)


def test_attrs_say_how_the_answer_was_found(result):
    attrs = result.predictions.attrs
    assert attrs["method"] == "exact"
    graph = json.loads(attrs["graph"])
    assert ["x1", "x2"] in graph["edges"]
    assert json.loads(attrs["interventions"]) == {"cf": {"x1": {"kind": "hard", "value": 0.0}}}


def test_netcdf_round_trip(result, tmp_path):
    import arviz as az

    path = tmp_path / "cf.nc"
    result.to_inference_data().to_netcdf(str(path))
    loaded = az.from_netcdf(str(path))
    np.testing.assert_array_equal(loaded.predictions["x4"].values, result.predictions["x4"].values)
    assert loaded.predictions.attrs["graph"] == result.predictions.attrs["graph"]


def test_unknown_attribute_names_the_groups(result):
    with pytest.raises(
        AttributeError, match=r"groups: \['observed_data', 'posterior', 'predictions'\]"
    ):
        _ = result.sample_stats


def test_interventional_dims():
    result = interventional(linear_chain.model, {"x2": 1.0}, num_samples=5, rng_key=KEY)
    assert result.predictions["x3"].dims == ("chain", "draw", "intervention", "unit")
    assert "observed_data" not in result.samples
