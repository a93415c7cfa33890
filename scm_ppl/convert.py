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

_C_ENCODE = getattr(json.encoder, "c_make_encoder", None)
# The C encoder behind ``_JSON.encode`` made once (``encode`` makes one per call: half of
# the cost of a result's attrs). No circular-reference check: attrs are trees of plain
# values; a cycle would end in a RecursionError instead of a ValueError.
try:  # c_make_encoder is CPython's private signature: fall back if it ever changes
    _ENCODE = (
        _C_ENCODE(
            None, str, json.encoder.encode_basestring_ascii, None, ": ", ", ", False, False, True
        )
        if _C_ENCODE is not None
        else None
    )
except TypeError:
    _ENCODE = None


def _encode(value: Any) -> str:
    if _ENCODE is None or isinstance(value, str):
        return _JSON.encode(value)
    return "".join(_ENCODE(value, 0))


def _attrs(attrs: Mapping[str, Any]) -> dict[str, Any]:
    """netCDF holds only numbers and strings: everything else travels as JSON."""
    out: dict[str, Any] = {}
    for key, value in attrs.items():
        if isinstance(value, (str, int, float, np.integer, np.floating)) and not isinstance(
            value, bool
        ):
            out[key] = value
        else:
            out[key] = _encode(value)
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

    The parts stacked along ``axis`` are ``sources[i][name]`` (one source and
    ``axis=None``: the array itself), read only when indexed. Selecting one entry along
    ``axis`` reads only that part and hands back a view of it: ``.sel(world="cf")`` never
    stacks the worlds.
    """

    def __init__(
        self,
        sources: Sequence[Mapping[str, Any]],
        name: str,
        shape: tuple[int, ...],
        dtype: Any,
        axis: int | None,
    ) -> None:
        self._sources, self._name, self._axis = sources, name, axis
        self.shape, self.dtype = shape, np.dtype(dtype)

    def _part(self, i: int) -> np.ndarray:
        return np.asarray(self._sources[i][self._name])

    def __getitem__(self, key: Any) -> Any:
        return indexing.explicit_indexing_adapter(
            key, self.shape, indexing.IndexingSupport.BASIC, self._read
        )

    def _read(self, key: tuple) -> np.ndarray:
        axis = self._axis
        if axis is None:
            return self._part(0)[key]
        rest = key[:axis] + key[axis + 1 :]
        picked = key[axis]
        if isinstance(picked, (int, np.integer)):
            return self._part(int(picked))[rest]
        dropped = sum(isinstance(k, (int, np.integer)) for k in key[:axis])
        chosen = range(len(self._sources))[picked]
        return np.stack([self._part(i)[rest] for i in chosen], axis=axis - dropped)


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
    """The key of an array not indexed yet (immutable: indexing composes a new one, so a
    variable is unindexed exactly when its key *is* this object)."""
    return indexing.BasicIndexer((slice(None),) * ndim)


# Direct constructors. xarray's own (even with ``fastpath=True``) re-check dims, wrap the
# data and copy the index mappings: a few microseconds per object, which at ten sites and
# one world each is most of a read. Here every argument is known valid by construction
# (dims are a tuple of one name per axis, the data already the array xarray would hold);
# ``tests/query/test_result_views.py`` checks each against xarray's constructor with ``identical``
# and the same slots, so an xarray that adds a slot fails there, not here.
_new = object.__new__


def _variable(dims: tuple, data: Any) -> xr.Variable:
    """``xr.Variable(dims, data, fastpath=True)``."""
    variable = _new(xr.Variable)
    variable._dims, variable._data, variable._attrs, variable._encoding = dims, data, None, None
    return variable


def _lazily_indexed(array: _Lazy) -> indexing.LazilyIndexedArray:
    """``indexing.LazilyIndexedArray(array)``: not indexed yet."""
    lazy = _new(indexing.LazilyIndexedArray)
    lazy.array, lazy.key, lazy._shape = array, _whole_key(len(array.shape)), array.shape
    return lazy


_set = object.__setattr__  # a DataArray's own __setattr__ is Python code (~1 us a slot)


def _data_array(variable: xr.Variable, coords: dict, name: Any, indexes: dict) -> _Picked:
    """``_Picked(variable, coords, name=name, indexes=indexes, fastpath=True)`` (the dicts
    are the caller's fresh ones: not copied again)."""
    array = _new(_Picked)
    _set(array, "_variable", variable)
    _set(array, "_coords", coords)
    _set(array, "_name", name)
    _set(array, "_indexes", indexes)
    _set(array, "_close", None)
    return array


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
        data = self._variable._data
        if type(data) is np.ndarray:
            return data.__array_struct__
        return self._variable.values.__array_struct__


_LABELS: dict[tuple[int, Any], tuple[Any, int, np.ndarray]] = {}
"""``(id(index), label) -> (index, position, label as a read-only 0-d array)``: the shared
coordinate indexes make the lookup of a label the same for every result of one shape. The
entry holds the index, so its id cannot be reused while the entry lives."""


def _label(index: PandasIndex, label: Any, dtype: Any) -> tuple[int, np.ndarray] | None:
    key = (id(index), label)
    found = _LABELS.get(key)
    if found is None or found[0] is not index:
        try:
            position = index.index.get_loc(label)
        except KeyError:
            return None  # xarray raises its own error
        if not isinstance(position, (int, np.integer)):
            return None
        # The label as xarray's own .sel keeps it: a 0-d coordinate of the index's dtype.
        scalar = np.array(index.index[int(position)], dtype=dtype)
        scalar.flags.writeable = False  # shared by every result: nobody writes into it
        if len(_LABELS) >= 4 * _MAX_SHARED:
            _LABELS.clear()
        found = _LABELS[key] = (index, int(position), scalar)
    return found[1], found[2]


def _pick(array: xr.DataArray, dim: Any, label: Any) -> xr.DataArray | None:
    """``array.sel({dim: label})`` read straight from the lazy parts, or ``None`` (then
    xarray answers) when this is not a single known label of an unindexed lazy array."""
    variable = array._variable
    data = variable._data
    if (
        type(data) is not indexing.LazilyIndexedArray
        or type(data.array) is not _Lazy
        or data.key is not _whole_key(len(data._shape))  # indexed already: xarray composes
        or not isinstance(label, (str, int, np.integer))
        or isinstance(label, bool)  # 1 == True: a cached label must mean one thing
    ):
        return None
    index = array._indexes.get(dim)
    if type(index) is not PandasIndex:
        return None
    found = _label(index, label, array._coords[dim].dtype)
    if found is None:
        return None
    position, scalar = found
    lazy: _Lazy = data.array
    axis = variable._dims.index(dim)
    if lazy._axis == axis:
        values = lazy._part(position)
    elif lazy._axis is None:
        values = lazy._part(0)[(slice(None),) * axis + (position,)]
    else:  # a label along another dim of stacked parts: xarray's indexing reads every part
        return None
    dims = variable._dims[:axis] + variable._dims[axis + 1 :]
    coords = {k: v for k, v in array._coords.items() if k != dim}
    indexes = {k: v for k, v in array._indexes.items() if k != dim}
    coords[dim] = _variable((), scalar)
    return _data_array(_variable(dims, values), coords, array._name, indexes)


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
        coords = {d: self._variables[d] for d in variable._dims if d in self._indexes}
        indexes = {d: self._indexes[d] for d in coords}
        return _data_array(variable, coords, name, indexes)


def lazy_dataset(
    variables: Mapping[str, tuple[Sequence[str], tuple[int, ...], Any, Sequence[Any], int | None]],
    coords: Mapping[str, Sequence[Any]],
    attrs: Mapping[str, Any],
) -> xr.Dataset:
    """A Dataset whose variables are read from the result's arrays only when indexed.

    ``variables[name] = (dims, shape, dtype, sources, axis)``: the full variable is the
    arrays ``sources[i][name]`` stacked along ``axis`` (``None``: one source, the array
    itself). Nothing is read or copied here, and the coordinates are shared with every
    result of the same shape; ``ds[name].sel(world=label)`` reads that one world's array
    and views it.

    Examples
    --------
    >>> import numpy as np
    >>> worlds = [{"y": np.zeros((1, 2, 3))}, {"y": np.ones((1, 2, 3))}]
    >>> ds = lazy_dataset({"y": (["chain", "draw", "world", "unit"], (1, 2, 2, 3), "float64",
    ...                          worlds, 2)}, {"world": ["factual", "cf"]}, {})
    >>> float(ds["y"].sel(world="cf").sum())
    6.0
    """
    data_vars: dict[Any, xr.Variable] = {}
    used: dict[str, int] = {}
    for name, (dims, shape, dtype, sources, axis) in variables.items():
        lazy = _lazily_indexed(_Lazy(sources, name, shape, dtype, axis))
        data_vars[name] = _variable(tuple(dims), lazy)
        used.update(zip(dims, shape, strict=True))
    indexes: dict[Any, Any] = {}
    all_vars: dict[Any, xr.Variable] = {}
    for dim, size in used.items():
        all_vars[dim], indexes[dim] = _coordinate(dim, size, coords.get(dim))
    all_vars.update(data_vars)
    dataset = _new(_LazyDataset)  # Dataset._construct_direct, without its __setattr__
    for slot, value in (
        ("_variables", all_vars), ("_coord_names", set(used)), ("_dims", used),
        ("_indexes", indexes), ("_attrs", _attrs(attrs)), ("_close", None), ("_encoding", None),
    ):  # fmt: skip
        _set(dataset, slot, value)
    return dataset
