"""Result views: ``result.predictions[site].sel(world=...)`` reads one world of one site
without building the rest, and equals the full InferenceData exactly."""

from __future__ import annotations

import jax
import numpy as np
import numpyro
import numpyro.distributions as dist
import pytest

from scm_ppl import counterfactual


def _chain(n: int) -> None:
    with numpyro.plate("unit", n):
        a = numpyro.sample("a", dist.Normal(0.0, 1.0))
        b = numpyro.sample("b", dist.Normal(0.5 * a, 1.0))
        numpyro.sample("c", dist.Normal(a + -1.0 * b, 1.0))


@pytest.fixture(scope="module")
def result():
    rng = np.random.default_rng(0)
    evidence = {k: rng.normal(size=50).astype(np.float32) for k in ("a", "b", "c")}
    return counterfactual(_chain, evidence, {"b": 1.0}, rng_key=jax.random.key(0), model_args=(50,))


def test_reading_one_site_of_one_world_builds_nothing_else(result) -> None:
    y = result.predictions["c"].sel(world="cf").values
    np.testing.assert_array_equal(y, np.asarray(result.world("cf")["c"]))
    stacked = result.samples["predictions"]
    assert stacked.built == ()  # no world stacked
    assert result.world("factual").built == ()  # the factual world not even sliced
    assert result.samples["posterior"].built == ()  # no abducted noise


def test_views_equal_inference_data_exactly(result) -> None:
    idata = result.to_inference_data()
    for group in ("predictions", "posterior", "observed_data"):
        view = result.group(group)
        full = getattr(idata, group)
        assert set(view.data_vars) == set(full.data_vars)
        for name in full.data_vars:
            assert view[name].dims == full[name].dims
            np.testing.assert_array_equal(view[name].values, full[name].values)
    assert list(result.predictions["world"].values) == ["factual", "cf"]
    picked = result.predictions["a"].isel(world=slice(None, None, -1), draw=slice(0, 3)).values
    np.testing.assert_array_equal(picked, idata.predictions["a"].values[:, :3, ::-1])


def test_unknown_group_says_which_exist(result) -> None:
    with pytest.raises(KeyError, match=r"No group 'prior'.*observed_data"):
        result.group("prior")
