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

with warnings.catch_warnings():
    # arviz announces its 1.0 refactor on import; the line we pin (0.23) is the stable one.
    warnings.simplefilter("ignore", FutureWarning)
    import arviz as az

__all__ = ["to_inference_data"]


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
