"""Results as ``arviz.InferenceData``: the only module that imports arviz (and xarray).

The Datasets are built directly (``xr.Dataset`` with named dims, wrapped in
``az.InferenceData``): an order of magnitude cheaper than ``az.from_dict`` for the many
small queries users run, and every dim is named (``chain``, ``draw``, ``world``,
``unit``, ...), never ``x_dim_0``.
"""

from __future__ import annotations

import json
import warnings
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import xarray as xr
from xarray.backends import BackendArray
from xarray.core import indexing

with warnings.catch_warnings():
    # arviz announces its 1.0 refactor on import; the line we pin (0.23) is the stable one.
    warnings.simplefilter("ignore", FutureWarning)
    import arviz as az

__all__ = ["lazy_dataset", "to_inference_data"]


def _attrs(attrs: Mapping[str, Any]) -> dict[str, Any]:
    """netCDF holds only numbers and strings: everything else travels as JSON."""
    out: dict[str, Any] = {}
    for key, value in attrs.items():
        if isinstance(value, (str, int, float, np.integer, np.floating)) and not isinstance(
            value, bool
        ):
            out[key] = value
        else:
            out[key] = json.dumps(value, default=str)
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


def lazy_dataset(
    variables: Mapping[str, tuple[Sequence[str], tuple[int, ...], Any, Sequence[Any], int | None]],
    coords: Mapping[str, Sequence[Any]],
    attrs: Mapping[str, Any],
) -> xr.Dataset:
    """A Dataset whose variables are read from the result's arrays only when indexed.

    ``variables[name] = (dims, shape, dtype, parts, axis)``: the full variable is the
    ``parts`` (zero-argument builders) stacked along ``axis`` (``None``: one part, the
    array itself). Nothing is built or copied here; ``ds[name].sel(world=label)`` builds
    that one world's array and views it.
    """
    data_vars = {}
    used: dict[str, int] = {}
    for name, (dims, shape, dtype, parts, axis) in variables.items():
        lazy = indexing.LazilyIndexedArray(_Lazy(parts, shape, dtype, axis))
        data_vars[name] = xr.Variable(list(dims), lazy)
        used.update(zip(dims, shape, strict=True))
    ds_coords = {
        dim: list(coords[dim]) if dim in coords else np.arange(size) for dim, size in used.items()
    }
    return xr.Dataset(data_vars, coords=ds_coords, attrs=_attrs(attrs))
