"""What an intervention *means*, apart from where it is applied.

An intervention value is one of three kinds, read the way ChiRho's ``intervene`` reads
them:

* an array or scalar: a **hard** intervention, broadcast over the site's shape;
* a callable of the value the mechanism would have produced: a **shift** (functional)
  intervention such as ``lambda x: x + 1``; it keeps the unit's noise;
* a NumPyro distribution: a **stochastic** intervention that replaces the mechanism, with
  fresh noise of its own.

:class:`~scm_ppl.core.handlers.do` decides where these apply; this module only classifies a
value and computes the intervened value from the natural one.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, Literal, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import numpyro.distributions as dist
from jax.core import Tracer

from scm_ppl.errors import InterventionError

__all__ = ["Intervention", "as_intervention", "as_interventions", "describe"]

Kind = Literal["hard", "shift", "stochastic"]


class Intervention(NamedTuple):
    """A classified intervention value.

    Attributes
    ----------
    kind
        ``"hard"``, ``"shift"`` or ``"stochastic"``.
    value
        The array (hard), the callable (shift) or the distribution (stochastic).
    """

    kind: Kind
    value: Any


def as_intervention(site: str, value: Any) -> Intervention:
    """Classify one intervention value, checking it is usable.

    Parameters
    ----------
    site
        The site name, used in error messages.
    value
        An array-like, a callable of the natural value, or a distribution.

    Examples
    --------
    >>> as_intervention("x", 1.0).kind
    'hard'
    >>> as_intervention("x", lambda x: x + 1).kind
    'shift'
    """
    if isinstance(value, Intervention):
        return value
    if isinstance(value, dist.Distribution):
        return Intervention("stochastic", value)
    if callable(value):
        return Intervention("shift", value)
    if isinstance(value, Tracer):
        return Intervention("hard", value)
    try:
        array = np.asarray(value)
    except Exception as err:  # numpy raises many types for ragged or odd input
        raise InterventionError(_kind_message(site, value)) from err
    if array.dtype == object or not (
        np.issubdtype(array.dtype, np.number) or np.issubdtype(array.dtype, np.bool_)
    ):
        raise InterventionError(_kind_message(site, value))
    if np.issubdtype(array.dtype, np.inexact) and not np.all(np.isfinite(array)):
        bad = int(np.size(array) - np.count_nonzero(np.isfinite(array)))
        raise InterventionError(
            f"Intervention on '{site}' holds {bad} NaN/inf value(s); "
            "an intervention must set finite values."
        )
    if np.issubdtype(array.dtype, np.floating) and array.size:
        # without JAX_ENABLE_X64 a float64 value becomes float32: huge values turn to inf
        dtype = jax.dtypes.canonicalize_dtype(array.dtype)
        largest, limit = float(np.max(np.abs(array))), float(jnp.finfo(dtype).max)
        if largest > limit:
            raise InterventionError(
                f"Intervention on '{site}' holds values up to {largest:.3g}, beyond the largest "
                f"{dtype} ({limit:.3g}): they would become inf. Rescale the program's "
                "variables, or enable 64-bit floats (JAX_ENABLE_X64=1)."
            )
    return Intervention("hard", jnp.asarray(value))


def as_interventions(interventions: Mapping[str, Any] | None) -> dict[str, Intervention]:
    """Classify a mapping ``site -> value`` (see :func:`as_intervention`)."""
    if interventions is None:
        return {}
    if not isinstance(interventions, Mapping):
        raise InterventionError(
            "Interventions must be a mapping from site name to value, e.g. {'x': 1.0}; "
            f"got {type(interventions).__name__}."
        )
    for name in interventions:
        if not isinstance(name, str):
            raise InterventionError(
                f"Intervention site names must be strings; got {name!r} ({type(name).__name__})."
            )
    return {name: as_intervention(name, value) for name, value in interventions.items()}


def apply_intervention(
    intervention: Intervention,
    natural: jax.Array,
    sample_fresh: Callable[[dist.Distribution], jax.Array],
) -> jax.Array:
    """The intervened value, given the value the mechanism would have produced.

    ``sample_fresh`` draws from a distribution (a stochastic intervention's new
    mechanism); the handler supplies it so that the draw is a proper NumPyro site.
    """
    shape = jnp.shape(natural)
    if intervention.kind == "hard":
        return jnp.broadcast_to(jnp.asarray(intervention.value, jnp.result_type(natural)), shape)
    if intervention.kind == "shift":
        return intervention.value(natural)
    fresh = sample_fresh(intervention.value)
    return jnp.broadcast_to(fresh, shape)


def describe(interventions: Mapping[str, Intervention]) -> dict[str, dict[str, Any]]:
    """A JSON-ready description of interventions, for result metadata."""
    out: dict[str, dict[str, Any]] = {}
    for name, iv in interventions.items():
        if iv.kind == "hard":
            value: Any = np.asarray(iv.value).tolist()
        elif iv.kind == "shift":
            value = getattr(iv.value, "__qualname__", repr(iv.value))
        else:
            value = type(iv.value).__name__
        out[name] = {"kind": iv.kind, "value": value}
    return out


def _kind_message(site: str, value: Any) -> str:
    return (
        f"Intervention on '{site}' has a value of type {type(value).__name__}; expected a "
        "number or array (hard), a callable of the natural value such as "
        "`lambda x: x + 1` (shift), or a numpyro distribution (stochastic)."
    )
