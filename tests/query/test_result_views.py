"""Result views: ``result.predictions[site].sel(world=...)`` reads one world of one site
without building the rest, and equals the full InferenceData exactly."""

from __future__ import annotations

import jax
import numpy as np
import numpyro
import numpyro.distributions as dist
import pytest

from scm_ppl import counterfactual
from scm_ppl.query.results import LazyGroup


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


def _counted(result, calls: list[str]):
    """The result with every world's arrays counting their reads."""
    for label in ("factual", "cf"):
        world = result.world(label)
        original = world.__getitem__

        def read(name, original=original, label=label):
            calls.append(f"{label}.{name}")
            return original(name)

        result._worlds[label] = type("Counted", (), {"__getitem__": staticmethod(read)})()
    return result


def test_sel_of_one_world_reads_that_world_of_that_site_once() -> None:
    rng = np.random.default_rng(1)
    evidence = {k: rng.normal(size=30).astype(np.float32) for k in ("a", "b", "c")}
    calls: list[str] = []
    fresh = _counted(
        counterfactual(_chain, evidence, {"b": 1.0}, rng_key=jax.random.key(1), model_args=(30,)),
        calls,
    )
    for site in ("a", "b", "c"):
        np.asarray(fresh.predictions[site].sel(world="cf"))
    # Shapes are known without reading (the last world's shape: one read per site when the
    # group's view is made), then one read per site for the values; never the factual world.
    assert sorted(set(calls)) == ["cf.a", "cf.b", "cf.c"]
    assert len(calls) == 6
    stacked = fresh.samples["predictions"]
    assert isinstance(stacked, LazyGroup) and stacked.built == ()  # nothing stacked


def test_sel_view_is_identical_to_xarray_and_shares_coordinates(result) -> None:
    import xarray as xr

    idata = result.to_inference_data()
    for site in ("a", "c"):
        for label in ("factual", "cf"):
            fast = result.predictions[site].sel(world=label)
            # identical: values, dims, coordinates (the scalar world label too), name, attrs
            assert isinstance(fast, xr.DataArray)
            assert fast.identical(idata.predictions[site].sel(world=label))
            assert np.shares_memory(np.asarray(fast), np.asarray(result.world(label)[site]))
    again = counterfactual(
        _chain, {k: np.zeros(50, np.float32) for k in "abc"}, {"b": 2.0},
        rng_key=jax.random.key(3), model_args=(50,),
    )  # fmt: skip
    # Results of one shape share their coordinate variables: nothing rebuilt per query.
    assert again.predictions["unit"].variable is result.predictions["unit"].variable
    # Anything but one label of one dim is xarray's own .sel, same answer.
    both = result.predictions["c"].sel(world=["cf"])
    assert both.identical(idata.predictions["c"].sel(world=["cf"]))
    with pytest.raises(KeyError):
        result.predictions["c"].sel(world="nope")


def _slots(obj) -> dict:
    names = {s for cls in type(obj).__mro__ for s in getattr(cls, "__slots__", ())}
    return {s: getattr(obj, s, "<unset>") for s in sorted(names - {"__weakref__"})}


def _set(obj) -> set:
    """The slots an object has set: a slot xarray's constructor sets and ours does not
    (or the reverse) shows here."""
    unset = (None, "<unset>")
    return {name for name, value in _slots(obj).items() if not any(value is u for u in unset)}


def test_direct_constructors_set_every_slot_xarrays_own_set() -> None:
    """The result views build xarray objects without xarray's constructors (their checks
    cost more than a read); each must leave exactly the object xarray's would."""
    import xarray as xr
    from xarray.core import indexing

    from scm_ppl import convert

    values = np.arange(6.0).reshape(2, 3)
    ours, theirs = convert._variable(("a", "b"), values), xr.Variable(("a", "b"), values)
    assert _slots(ours) == _slots(theirs) and ours.identical(theirs)
    source = convert._Lazy([{"y": values}], "y", (2, 3), values.dtype, None)
    lazy = convert._lazily_indexed(source)
    reference = indexing.LazilyIndexedArray(source)
    assert lazy.key.tuple == reference.key.tuple and lazy.shape == reference.shape
    assert _set(lazy) == _set(reference)
    coords, indexes = {"a": xr.Variable("a", [0, 1])}, {}
    array = convert._data_array(ours, dict(coords), "y", dict(indexes))
    reference = convert._Picked(ours, dict(coords), name="y", indexes=dict(indexes), fastpath=True)
    assert _slots(array) == _slots(reference)
    view = convert.lazy_dataset({"y": (["a", "b"], (2, 3), "float64", [{"y": values}], None)},
                                {}, {"note": [1]})  # fmt: skip
    plain = xr.Dataset({"y": (("a", "b"), values)}, coords={"a": [0, 1], "b": [0, 1, 2]},
                       attrs={"note": "[1]"})  # fmt: skip
    assert _set(view) == _set(plain) and view.identical(plain)


def test_sel_along_another_dim_and_the_shared_label(result) -> None:
    idata = result.to_inference_data()
    # A unit of the stacked worlds: xarray's indexing over both worlds, same answer.
    by_unit = result.predictions["c"].sel(unit=3)
    assert by_unit.identical(idata.predictions["c"].sel(unit=3))
    one = result.predictions["c"].sel(world="cf")
    # The label's 0-d coordinate is shared by every result of this shape: read-only.
    with pytest.raises(ValueError, match="read-only"):
        one["world"].values[()] = "factual"
    assert one.identical(idata.predictions["c"].sel(world="cf"))
