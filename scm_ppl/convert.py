"""Results as ``arviz.InferenceData``: the only module that imports arviz (and xarray).

The Datasets are built directly (``xr.Dataset`` with named dims, wrapped in
``az.InferenceData``): an order of magnitude cheaper than ``az.from_dict`` for the many
small queries users run, and every dim is named (``chain``, ``draw``, ``world``,
``unit``, ...), never ``x_dim_0``.
"""

from __future__ import annotations

import functools
import json
import warnings
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import xarray as xr
from xarray.backends import BackendArray
from xarray.core import indexing
from xarray.core.indexes import PandasIndex

with warnings.catch_warnings():
    # arviz announces its 1.0 refactor on import; the line we pin (0.23) is the stable one.
    warnings.simplefilter("ignore", FutureWarning)
    import arviz as az

__all__ = ["lazy_dataset", "to_inference_data"]


_JSON = json.JSONEncoder(default=str)
"""One encoder for every result: ``json.dumps(..., default=str)`` builds a new one per call,
which costs more than encoding a result's small attrs."""


def _attrs(attrs: Mapping[str, Any]) -> dict[str, Any]:
    """netCDF holds only numbers and strings: everything else travels as JSON."""
    out: dict[str, Any] = {}
    for key, value in attrs.items():
        if isinstance(value, (str, int, float, np.integer, np.floating)) and not isinstance(
            value, bool
        ):
            out[key] = value
        else:
            out[key] = _JSON.encode(value)
    return out


def to_inference_data(
    groups: Mapping[str, Mapping[str, Any]],
    dims: Mapping[str, Mapping[str, Sequence[str]]],
    coords: Mapping[str, Sequence[Any]],
    attrs: Mapping[str, Any],
) -> az.InferenceData:
    """Assemble InferenceData from arrays, their dim names and coordinates.

    ``dims[group][name]`` lists the dims of ``name`` after the leading ``chain`` and
    ``draw`` (which every group but ``observed_data`` carries).
    """
    datasets: dict[str, Any] = {}
    shared_attrs = _attrs(attrs)
    for group, variables in groups.items():
        lead = [] if group == "observed_data" else ["chain", "draw"]
        data_vars = {}
        used: dict[str, int] = {}
        for name, value in variables.items():
            array = np.asarray(value)
            var_dims = [*lead, *dims[group][name]]
            data_vars[name] = (var_dims, array)
            used.update(zip(var_dims, array.shape, strict=True))
        ds_coords = {
            dim: list(coords[dim]) if dim in coords else np.arange(size)
            for dim, size in used.items()
        }
        datasets[group] = xr.Dataset(data_vars, coords=ds_coords, attrs=shared_attrs)
    return az.InferenceData(**datasets)


class _Lazy(BackendArray):
    """One variable of a result, read only when (and where) it is indexed.

    ``parts`` are zero-argument builders of the arrays stacked along ``axis`` (one part
    and ``axis=None``: the array itself). Selecting one entry along ``axis`` builds only
    that part and hands back a view of it: ``.sel(world="cf")`` never stacks the worlds.
    """

    def __init__(
        self, parts: Sequence[Any], shape: tuple[int, ...], dtype: Any, axis: int | None
    ) -> None:
        self._parts, self.shape, self.dtype, self._axis = list(parts), shape, np.dtype(dtype), axis
        self.whole = (slice(None),) * len(shape)  # the key of a variable not indexed yet

    def __getitem__(self, key: Any) -> Any:
        return indexing.explicit_indexing_adapter(
            key, self.shape, indexing.IndexingSupport.BASIC, self._read
        )

    def _read(self, key: tuple) -> np.ndarray:
        axis = self._axis
        if axis is None:
            return np.asarray(self._parts[0]())[key]
        rest = key[:axis] + key[axis + 1 :]
        picked = key[axis]
        if isinstance(picked, (int, np.integer)):
            return np.asarray(self._parts[int(picked)]())[rest]
        dropped = sum(isinstance(k, (int, np.integer)) for k in key[:axis])
        chosen = range(len(self._parts))[picked]
        return np.stack([np.asarray(self._parts[i]())[rest] for i in chosen], axis=axis - dropped)


_SHARED: dict[tuple, tuple[xr.Variable, Any]] = {}
"""Coordinate variables and their indexes, one per (dim, labels): every result of the same
shape shares them (index variables cannot be modified in place, so sharing is safe)."""
_MAX_SHARED = 256


def _coordinate(dim: str, size: int, labels: Sequence[Any] | None) -> tuple[xr.Variable, Any]:
    key = (dim, size, None if labels is None else tuple(labels))
    found = _SHARED.get(key)
    if found is None:
        values = np.arange(size) if labels is None else list(labels)
        template = xr.Dataset(coords={dim: values})
        found = (template._variables[dim], template._indexes[dim])
        if len(_SHARED) >= _MAX_SHARED:
            _SHARED.clear()
        _SHARED[key] = found
    return found


@functools.cache
def _whole_key(ndim: int) -> indexing.BasicIndexer:
    """The key of an array not indexed yet (immutable: indexing composes a new one)."""
    return indexing.BasicIndexer((slice(None),) * ndim)


class _Picked(xr.DataArray):
    """A DataArray of a lazy result whose ``.sel(dim=label)`` of one label along one dim
    builds only that part and views it (no stacking, no copy); every other call is
    xarray's own. The answer is identical to xarray's (a test checks with
    ``xarray.testing.assert_identical``)."""

    __slots__ = ()

    def sel(  # type: ignore[override]
        self,
        indexers: Mapping[Any, Any] | None = None,
        method: str | None = None,
        tolerance: Any = None,
        drop: bool = False,
        **indexers_kwargs: Any,
    ) -> xr.DataArray:
        plain = indexers is None and method is None and tolerance is None and not drop
        if plain and len(indexers_kwargs) == 1:
            ((dim, label),) = indexers_kwargs.items()
            picked = _pick(self, dim, label)
            if picked is not None:
                return picked
        return super().sel(indexers, method, tolerance, drop, **indexers_kwargs)

    @property
    def __array_struct__(self) -> Any:
        # np.asarray(array) looks this up first; a DataArray misses it and falls through
        # xarray's attribute search and then its __array__ (~50 us in all). The values'
        # own interface: the same array, no copy (numpy keeps this object as its base).
        return self.variable.values.__array_struct__


def _pick(array: xr.DataArray, dim: Any, label: Any) -> xr.DataArray | None:
    """``array.sel({dim: label})`` read straight from the lazy parts, or ``None`` (then
    xarray answers) when this is not a single known label of an unindexed lazy array."""
    variable = array.variable
    data = variable._data
    if (
        type(data) is not indexing.LazilyIndexedArray
        or type(data.array) is not _Lazy
        or data.key.tuple != data.array.whole  # indexed already: xarray composes keys
        or dim not in array._indexes
        or not isinstance(label, (str, int, np.integer))
    ):
        return None
    index = array._indexes[dim]
    if not isinstance(index, PandasIndex):
        return None
    try:
        position = index.index.get_loc(label)
    except KeyError:
        return None  # xarray raises its own error
    if not isinstance(position, (int, np.integer)):
        return None
    lazy: _Lazy = data.array
    axis = variable.dims.index(dim)
    if lazy._axis == axis:
        values = np.asarray(lazy._parts[int(position)]())
    else:
        values = np.asarray(lazy._parts[0]())[(slice(None),) * axis + (int(position),)]
    dims = variable.dims[:axis] + variable.dims[axis + 1 :]
    coords = {k: v for k, v in array._coords.items() if k != dim}
    indexes = {k: v for k, v in array._indexes.items() if k != dim}
    # The label as xarray's own .sel keeps it: a 0-d coordinate of the index's dtype.
    scalar = np.array(index.index[int(position)], dtype=array._coords[dim].dtype)
    coords[dim] = xr.Variable((), scalar, fastpath=True)
    picked = xr.Variable(dims, values, fastpath=True)
    return _Picked(picked, coords, name=array.name, indexes=indexes, fastpath=True)


class _LazyDataset(xr.Dataset):
    """A Dataset of a lazy result: its variables are :class:`_Picked` arrays, and the
    coordinates every variable needs are worked out once per set of dims."""

    __slots__ = ()

    def __getitem__(self, key: Any) -> Any:
        if type(key) is str and key in self._variables and key not in self._coord_names:
            return self._construct_dataarray(key)  # xarray's checks of the key, skipped
        return super().__getitem__(key)

    def _construct_dataarray(self, name: Any) -> xr.DataArray:
        variable = self._variables.get(name)
        if variable is None or name in self._coord_names:
            return super()._construct_dataarray(name)
        coords = {d: self._variables[d] for d in variable.dims if d in self._indexes}
        indexes = {d: self._indexes[d] for d in coords}
        return _Picked(variable, coords, name=name, indexes=indexes, fastpath=True)


def lazy_dataset(
    variables: Mapping[str, tuple[Sequence[str], tuple[int, ...], Any, Sequence[Any], int | None]],
    coords: Mapping[str, Sequence[Any]],
    attrs: Mapping[str, Any],
) -> xr.Dataset:
    """A Dataset whose variables are read from the result's arrays only when indexed.

    ``variables[name] = (dims, shape, dtype, parts, axis)``: the full variable is the
    ``parts`` (zero-argument builders) stacked along ``axis`` (``None``: one part, the
    array itself). Nothing is built or copied here, and the coordinates are shared with
    every result of the same shape; ``ds[name].sel(world=label)`` builds that one
    world's array and views it.

    Examples
    --------
    >>> import numpy as np
    >>> parts = [lambda: np.zeros((1, 2, 3)), lambda: np.ones((1, 2, 3))]
    >>> ds = lazy_dataset({"y": (["chain", "draw", "world", "unit"], (1, 2, 2, 3), "float64",
    ...                          parts, 2)}, {"world": ["factual", "cf"]}, {})
    >>> float(ds["y"].sel(world="cf").sum())
    6.0
    """
    data_vars: dict[Any, xr.Variable] = {}
    used: dict[str, int] = {}
    for name, (dims, shape, dtype, parts, axis) in variables.items():
        array = _Lazy(parts, shape, dtype, axis)
        lazy = indexing.LazilyIndexedArray(array, _whole_key(len(shape)))
        data_vars[name] = xr.Variable(tuple(dims), lazy, fastpath=True)
        used.update(zip(dims, shape, strict=True))
    indexes: dict[Any, Any] = {}
    all_vars: dict[Any, xr.Variable] = {}
    for dim, size in used.items():
        all_vars[dim], indexes[dim] = _coordinate(dim, size, coords.get(dim))
    all_vars.update(data_vars)
    return _LazyDataset._construct_direct(
        all_vars, set(used), dims=dict(used), attrs=_attrs(attrs), indexes=indexes
    )
