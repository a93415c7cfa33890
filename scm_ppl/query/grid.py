"""A grid of intervention values: ``sweep(values)`` marks one site's values so a query
answers for all of them in one compiled call (see :mod:`scm_ppl.query.sweeps`)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from scm_ppl.errors import InterventionError

__all__ = ["SweepValues", "contains_sweep", "split_sweep", "sweep"]


class SweepValues(NamedTuple):
    """A grid of hard intervention values for one site; ``values[i]`` is the ``i``-th."""

    values: jax.Array


def sweep(values: Any) -> SweepValues:
    """Mark an array as a grid of intervention values, one query per leading index.

    Parameters
    ----------
    values
        Shape ``(num_values, *value_shape)``; each ``values[i]`` must broadcast to the
        site's shape (a scalar per value for the usual dose grid).

    Examples
    --------
    >>> import jax, numpy as np, numpyro, numpyro.distributions as dist
    >>> from scm_ppl import counterfactual
    >>> def model():
    ...     x = numpyro.sample("x", dist.Normal(0.0, 1.0))
    ...     numpyro.sample("y", dist.Normal(2.0 * x, 1.0))
    >>> grid = np.array([0.0, 1.0, 2.0])
    >>> cf = counterfactual(model, {"x": 0.5, "y": 1.5}, {"x": sweep(grid)},
    ...                     rng_key=jax.random.key(0))
    >>> [round(float(y), 3) for y in cf.samples["predictions"]["y"][0, 0]]
    [0.5, 2.5, 4.5]
    """
    if isinstance(values, SweepValues):
        return values
    try:
        array = np.asarray(values)
    except Exception as err:  # ragged lists fail in many ways
        raise InterventionError(f"A sweep takes an array of values; {err}.") from err
    if array.dtype == object or not np.issubdtype(array.dtype, np.number):
        raise InterventionError(
            f"A sweep takes numbers, shaped (num_values, ...); got dtype {array.dtype}."
        )
    if array.ndim == 0 or array.shape[0] == 0:
        raise InterventionError(
            f"A sweep needs a leading axis of at least one value; got shape {array.shape}. "
            "For one value, pass it without sweep()."
        )
    if np.issubdtype(array.dtype, np.inexact) and not np.all(np.isfinite(array)):
        raise InterventionError("A sweep holds NaN/inf values; every value must be finite.")
    return SweepValues(jnp.asarray(array))


def split_sweep(interventions: Mapping[str, Any]) -> tuple[str, SweepValues, dict[str, Any]]:
    if any(isinstance(v, Mapping) for v in interventions.values()):
        raise InterventionError(
            "A sweep applies to one counterfactual world: give {site: sweep(values), ...}, "
            "not several labelled worlds."
        )
    swept = [name for name, v in interventions.items() if isinstance(v, SweepValues)]
    if len(swept) != 1:
        raise InterventionError(
            f"One site can be swept per query; got sweeps on {swept}. Stack the grids "
            "into one site's values, or run one query per swept site."
        )
    fixed = {name: v for name, v in interventions.items() if name != swept[0]}
    return swept[0], interventions[swept[0]], fixed


def contains_sweep(interventions: Any) -> bool:
    """Whether ``{site: value}`` or ``{label: {site: value}}`` holds a :func:`sweep`."""
    if not isinstance(interventions, Mapping):
        return False
    for value in interventions.values():
        if isinstance(value, SweepValues):
            return True
        if isinstance(value, Mapping) and any(isinstance(v, SweepValues) for v in value.values()):
            return True
    return False
