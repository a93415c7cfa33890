"""Queries larger than one pass: chunks over units or draws, and units across devices.

* ``chunk_size=`` on :func:`~scm_ppl.counterfactual` (and the sweeps) bounds how many
  draw × unit rows one compiled pass holds. An exact answer (one draw, no random
  numbers) runs ``chunk_size`` units of the unit plate at a time inside one compiled
  loop, writing each chunk into its slot of the answer; a sampled answer runs
  ``chunk_size // units`` draws at a time, and since every draw has its own key (split
  from ``rng_key`` before chunking) the answer is the same with or without chunks.
* Across devices, JAX's own sharding does the work: put the evidence on a
  :class:`jax.sharding.NamedSharding` over the unit axis (:func:`shard_units`), and the
  compiled query, elementwise over units, runs where its evidence lives, each device on
  its own units, with no communication but the NaN/inf counts.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from scm_ppl.core.program import ProgramInfo, SiteInfo
from scm_ppl.errors import EvidenceError, SettingsError
from scm_ppl.query._compiled import UnitChunks

__all__ = ["check_chunk_size", "plan_chunks", "shard_units", "unit_plate"]


def check_chunk_size(chunk_size: Any) -> None:
    if chunk_size is None:
        return
    if (
        not isinstance(chunk_size, (int, np.integer))
        or isinstance(chunk_size, bool)
        or chunk_size < 1
    ):
        raise SettingsError(
            f"chunk_size must be a positive integer (draw × unit rows per pass) or None; "
            f"got {chunk_size!r}."
        )


def unit_plate(info: ProgramInfo) -> tuple[str, int] | None:
    """The plate that indexes units: the one most sites sit in (the larger on a tie)."""
    counts: Counter[str] = Counter()
    sizes: dict[str, int] = {}
    for site in info.sites.values():
        for axis, plate in enumerate(site.batch_dims):
            if plate:
                counts[plate] += 1
                sizes[plate] = site.shape[axis]
    if not counts:
        return None
    plate = max(counts, key=lambda p: (counts[p], sizes[p]))
    return plate, sizes[plate]


def _axis_from_end(site: SiteInfo, plate: str) -> int | None:
    if plate not in site.batch_dims:
        return None
    return site.batch_dims.index(plate) - len(site.shape)


def plan_chunks(
    info: ProgramInfo,
    chunk_size: int | None,
    num_draws: int,
    determined: bool,
    masks: Mapping[str, Any] | None = None,
) -> tuple[UnitChunks | None, int | None]:
    """How a query with ``num_draws`` draws runs within ``chunk_size`` rows per pass:
    ``(unit chunks or None, draws per pass or None)``."""
    del masks  # per-unit masks are sliced with the evidence
    check_chunk_size(chunk_size)
    if chunk_size is None:
        return None, None
    found = unit_plate(info)
    units = found[1] if found else 1
    if determined:
        if found is None or chunk_size >= units:
            return None, None
        plate = found[0]
        axes = tuple((name, _axis_from_end(site, plate)) for name, site in info.sites.items())
        return UnitChunks(plate=plate, size=units, per_pass=int(chunk_size), axes=axes), None
    per_pass = max(1, int(chunk_size) // units)
    return None, per_pass if per_pass < num_draws else None


def shard_units(
    evidence: Mapping[str, Any],
    *,
    axis: int = -1,
    devices: Sequence[Any] | None = None,
) -> dict[str, jax.Array]:
    """Put evidence on several devices, split along the unit axis.

    A thin wrapper around :func:`jax.device_put` with a
    :class:`~jax.sharding.NamedSharding` over a one-axis mesh named ``"unit"``; queries
    on the result run sharded (JAX's own partitioner splits the compiled call), and
    their answers stay sharded the same way.

    Parameters
    ----------
    evidence
        ``{site: values}`` with the units along ``axis`` (scalars are replicated).
    axis
        The unit axis of every array (``-1``: the last, where a ``numpyro.plate`` with
        the default ``dim`` puts it).
    devices
        Devices to split over (default: all of :func:`jax.devices`). The number of
        units must be a multiple of their number.

    Examples
    --------
    >>> import jax, numpy as np
    >>> sharded = shard_units({"x": np.zeros(4)}, devices=jax.devices()[:1])
    >>> tuple(sharded["x"].sharding.spec)
    ('unit',)
    """
    if not isinstance(evidence, Mapping):
        raise EvidenceError(
            f"shard_units takes a mapping {{site: values}}; got {type(evidence).__name__}."
        )
    devices = list(devices) if devices is not None else jax.devices()
    mesh = Mesh(np.array(devices), ("unit",))
    out = {}
    for name, value in evidence.items():
        array = jnp.asarray(value)
        if array.ndim == 0:
            out[name] = jax.device_put(array, NamedSharding(mesh, PartitionSpec()))
            continue
        if not -array.ndim <= axis < array.ndim:
            raise EvidenceError(
                f"Evidence for '{name}' has {array.ndim} axes; it has no unit axis {axis}."
            )
        if array.shape[axis] % len(devices):
            raise EvidenceError(
                f"Evidence for '{name}' has {array.shape[axis]} units, which do not split "
                f"evenly over {len(devices)} devices; pad or drop units to a multiple of "
                f"{len(devices)}."
            )
        spec: list[str | None] = [None] * array.ndim
        spec[axis] = "unit"
        out[name] = jax.device_put(array, NamedSharding(mesh, PartitionSpec(*spec)))
    return out
