"""Checks of a query's inputs and outputs that must end in a clear error, never in a
silent NaN or a wrong answer.

* NaN/inf **evidence**: one fused reduction per query, in its own small compiled call
  dispatched with the query; a JAX array found finite is remembered (it is immutable).
* **Impossible evidence**: a value inside a discrete mechanism's support that has
  probability zero given its parents (``Bernoulli(0)`` observed 1). Its coupled noise
  is drawn from an empty set, and the counterfactual would silently answer for another
  value. The query marks, per unit, whether the abducted noise maps back to the
  observed value (NaN where it does not).
* **Non-finite shifts**: a shift intervention (a callable) that overflows or returns NaN
  for some units; marked the same way on the intervened values.

Marks ride out of the compiled call under :data:`MARK_PREFIX` names (``"!zero.<site>"``,
``"!shift_<world>.<site>"``): world labels cannot start with ``!``, and the part after
the dot names the site, so chunking and sharding split them along the site's units.
"""

from __future__ import annotations

import functools
import weakref
from collections.abc import Mapping, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax.core import Tracer

from scm_ppl.core.cache import LRUCache
from scm_ppl.core.handlers import INTERVENTION_KEY
from scm_ppl.core.noise import noise_view
from scm_ppl.errors import EvidenceError, InterventionError
from scm_ppl.query.worlds import NOISE_PREFIX

__all__ = [
    "MARK_PREFIX",
    "NonfiniteCheck",
    "marks_of_trace",
    "nonfinite_flags",
    "not_known_finite",
    "raise_for_marks",
]

MARK_PREFIX = "!"
_ZERO = f"{MARK_PREFIX}zero"
_SHIFT = f"{MARK_PREFIX}shift_"


# id(array) -> weak reference to an evidence array already found finite. JAX arrays are
# immutable, so a query repeated on the same evidence need not read it again; the
# weak reference tells a live array from a new one that reuses a freed array's id.
_FINITE = LRUCache(4096)


@functools.lru_cache(maxsize=64)
def _inexact(dtype: Any) -> bool:
    return bool(jnp.issubdtype(dtype, jnp.inexact))


def not_known_finite(evidence: Mapping[str, Any]) -> dict[str, Any]:
    """The inexact evidence arrays not yet known to hold only finite values."""
    out = {}
    for name, value in evidence.items():
        if not _inexact(value.dtype):
            continue
        ref = _FINITE.get(id(value))
        if ref is None or ref() is not value:
            out[name] = value
    return out


class NonfiniteCheck:
    """Raise :class:`~scm_ppl.EvidenceError` for NaN/inf evidence, naming the first such
    site (in sorted order) with its count; device arrays are judged by flags from a
    small compiled call dispatched with the query (read here: this waits for it), host
    arrays here. Sites and counts are found on the error path only."""

    def __init__(self, evidence: Mapping[str, Any], flags: jax.Array | None) -> None:
        self.evidence, self.flags = evidence, flags

    def __call__(self) -> None:
        if not self.evidence:
            return
        finite = self.flags is None or bool(np.isfinite(np.asarray(self.flags)).all())
        finite = finite and all(
            np.isfinite(v).all() for v in self.evidence.values() if not isinstance(v, jax.Array)
        )
        if finite:
            for value in self.evidence.values():
                if isinstance(value, jax.Array) and not isinstance(value, Tracer):
                    _FINITE.put(id(value), weakref.ref(value))
            self.evidence = {}
            return
        for name in sorted(self.evidence):
            values = np.asarray(self.evidence[name])
            bad = int(np.sum(~np.isfinite(values)))
            if bad:
                raise EvidenceError(
                    f"Evidence for '{name}' holds {bad} NaN/inf value(s) out of "
                    f"{values.size}; drop those units or impute them before the query."
                )


@jax.jit
def nonfinite_flags(evidence: Mapping[str, jax.Array]) -> jax.Array:
    """``sum(x * 0)`` over the evidence: 0 when every value is finite, NaN otherwise
    (NaN and inf times 0 are NaN), shaped ``(groups,)``. Sites of one shape are summed
    together, so the check is one fused pass over them rather than a reduction (and a
    kernel launch) per site; a float sum, because boolean reductions
    (``sum(~isfinite(x))``) compile to loops about five times slower on CPU."""
    by_shape: dict[tuple[int, ...], jax.Array] = {}
    for name in sorted(evidence):
        zero = (evidence[name] * 0).astype(jnp.float32)
        shape = tuple(zero.shape)
        by_shape[shape] = zero if shape not in by_shape else by_shape[shape] + zero
    return jnp.stack([jnp.sum(v) for v in by_shape.values()])


def marks_of_trace(
    trace: Mapping[str, Any], evidence: Mapping[str, Any], labels: Sequence[str]
) -> dict[str, Any]:
    """Per-unit marks of one draw's trace: 0 where all is well, NaN where an observed
    discrete value has probability zero or a shifted value is not finite (``labels``:
    the counterfactual worlds, whose sites are ``"<label>.<site>"``)."""
    marks = {}
    for name, site in trace.items():
        noise = trace.get(f"{NOISE_PREFIX}.{name}")
        if site["type"] == "sample" and name in evidence and noise is not None:
            view = noise_view(site["fn"])
            if view.inverse is None:  # coupled: its noise was drawn from the value's cell
                # An empty cell (probability zero; numpyro clamps such log-probabilities
                # to finite values) gives noise that maps to another value.
                back, value = view.forward(noise["value"]), jnp.asarray(site["value"])
                if jnp.issubdtype(value.dtype, jnp.inexact):  # a mixed law (hurdle): its
                    # continuous part maps back up to float rounding, its atoms exactly
                    same = jnp.isclose(back, value, rtol=1e-4, atol=0.0)
                else:
                    same = back == value
                marks[f"{_ZERO}.{name}"] = jnp.where(same, 0.0, jnp.nan).astype(jnp.float32)
        elif (site.get("infer") or {}).get(INTERVENTION_KEY) == "shift":
            value = jnp.asarray(site["value"])
            if jnp.issubdtype(value.dtype, jnp.inexact):
                world, base = name.split(".", 1) if "." in name else ("", name)
                if world not in labels:  # the factual world's own site, maybe dotted
                    world, base = "factual", name
                marks[f"{_SHIFT}{world}.{base}"] = (value * 0).astype(jnp.float32)
    return marks


def raise_for_marks(marks: Mapping[str, Any]) -> None:
    """Raise for the first mark (in sorted order) that flags a unit, naming the site,
    the number of units and the first of them."""
    for name in sorted(marks):
        flagged = ~np.isfinite(np.asarray(marks[name]))
        if not flagged.any():
            continue
        kind, site = name.split(".", 1)
        count, first = int(flagged.sum()), int(np.argmax(flagged.ravel()))
        if kind == _ZERO:
            # The unit axis is the last one of a per-unit scalar site's marks.
            units = np.unique(np.nonzero(flagged.reshape(-1, flagged.shape[-1]))[1]).tolist()
            listed = f"{units[:20]}{' ...' if len(units) > 20 else ''}"
            err = EvidenceError(
                f"Evidence for '{site}' has probability zero under its mechanism for {count} "
                f"value(s) (first at flat index {first}), at unit(s) {listed} ({len(units)} "
                "in all, indices along the unit plate): the model cannot produce the observed "
                "value given its parents' values, so no noise explains it and no "
                "counterfactual exists. Check those units' evidence or the mechanism, or drop "
                "them explicitly (ate/ett(..., rows=df, impossible='drop') does, with a warning)."
            )
            err.units = tuple(units)  # type: ignore[attr-defined]
            raise err
        world = kind[len(_SHIFT) :]
        raise InterventionError(
            f"The shift intervention on '{site}' gave NaN/inf in world '{world}' for {count} "
            f"value(s) (first at flat index {first}): the callable overflowed or divided by "
            "zero on those natural values. Make it finite over the site's range."
        )
