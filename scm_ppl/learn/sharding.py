"""Rows held by several processes, joined into one table: :func:`shard_rows`.

On a cluster every process loads its own rows and calls :func:`shard_rows`, which checks
that every process holds as many rows with the same columns (:func:`check_agreement`) and
joins them into global arrays sharded along the unit axis over every process's devices;
:func:`local_rows` reads this process's block back. What a fit does with such arrays is
:mod:`scm_ppl.learn.distributed`.
"""

from __future__ import annotations

import zlib
from collections.abc import Mapping
from typing import Any

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from scm_ppl.errors import DataError

__all__ = ["check_agreement", "gather", "local_rows", "shard_rows"]


def gather(values: np.ndarray) -> np.ndarray:
    """``values`` of every process, stacked: ``(processes, *values.shape)``.

    Examples
    --------
    >>> import numpy as np
    >>> gather(np.array([3, 4])).tolist()   # one process here
    [[3, 4]]
    """
    if jax.process_count() == 1:
        return values[None]
    from jax.experimental import multihost_utils

    gathered = multihost_utils.process_allgather(values)
    return np.asarray(gathered).reshape(jax.process_count(), *values.shape)


def _describe(columns: Mapping[str, np.ndarray]) -> str:
    return ", ".join(f"{k}: {v.dtype}{list(v.shape[1:])}" for k, v in sorted(columns.items()))


def check_agreement(rows: Any, signatures: Any, here: str) -> None:
    """Refuse process-local rows that do not form one table: ``rows[k]`` and
    ``signatures[k]`` (a checksum of the column names, per-row shapes and dtypes) are
    process ``k``'s; ``here`` describes this process's columns.

    Examples
    --------
    >>> check_agreement([500, 500], [7, 7], "x: float32[]")
    >>> check_agreement([500, 400], [7, 7], "x: float32[]")
    Traceback (most recent call last):
    ...
    scm_ppl.errors.DataError: Processes hold different numbers of rows: [500, 400] ...
    """
    rows, signatures = [int(r) for r in rows], [int(s) for s in signatures]
    if len(set(rows)) > 1:
        raise DataError(
            f"Processes hold different numbers of rows: {rows} (by process index); a "
            "data-parallel fit needs as many rows on every process. Drop rows so that every "
            f"process holds {min(rows)}, or deal them out evenly."
        )
    if len(set(signatures)) > 1:
        odd = [k for k, s in enumerate(signatures) if s != signatures[0]]
        raise DataError(
            f"Process(es) {odd} hold columns that differ from process 0's in name, per-row "
            f"shape or dtype; this process holds {{{here}}}. Give every process the same "
            "columns."
        )


def shard_rows(columns: Mapping[str, Any]) -> dict[str, jax.Array]:
    """Join every process's rows into global arrays sharded over the processes' devices.

    Call it on every process with that process's rows (``{site: array}``, the unit axis
    first); the result holds all processes' rows, process ``k``'s as the ``k``-th block,
    and is what ``fit`` (and the queries) take as data. Nothing is copied between
    processes.

    Raises
    ------
    DataError
        Processes holding different numbers of rows or different columns, or a number
        of rows that this process's devices cannot split evenly.

    Examples
    --------
    >>> import jax, numpy as np
    >>> from scm_ppl.learn import shard_rows
    >>> rows = shard_rows({"x": np.arange(4.0, dtype=np.float32)})   # one process here
    >>> rows["x"].shape, jax.process_count()
    ((4,), 1)
    """
    if not isinstance(columns, Mapping) or not columns:
        raise DataError(
            "shard_rows takes this process's rows as {site: array}, the unit axis first; "
            f"got {type(columns).__name__}."
        )
    local = {str(k): np.asarray(v) for k, v in columns.items()}
    lengths = {k: (v.shape[0] if v.ndim else None) for k, v in local.items()}
    if None in lengths.values() or len(set(lengths.values())) > 1:
        raise DataError(
            f"This process's columns have rows {lengths}; every column needs the unit axis "
            "first and as many rows as the others."
        )
    n = int(local[next(iter(local))].shape[0])
    here = _describe(local)
    signature = zlib.crc32(here.encode()) & 0x7FFFFFFF
    gathered = gather(np.array([n, signature], np.int64))
    check_agreement(gathered[:, 0], gathered[:, 1], here)
    # After the agreement (dtypes included), so every process refuses alike.
    text = {k: str(v.dtype) for k, v in local.items() if not _numeric(v)}
    if text:
        raise DataError(
            f"Columns of shard_rows that are not numeric: {text}; code labels as integers "
            "(as fit codes a DataFrame's categories) before sharding."
        )
    devices = sorted(jax.devices(), key=lambda d: (d.process_index, d.id))
    if n % jax.local_device_count():
        raise DataError(
            f"This process holds {n} rows, which its {jax.local_device_count()} devices "
            "cannot split evenly; drop rows so that the count is a multiple of the devices."
        )
    sharding = NamedSharding(Mesh(np.array(devices), ("unit",)), PartitionSpec("unit"))
    total = n * jax.process_count()
    return {
        k: jax.make_array_from_process_local_data(sharding, v, (total, *v.shape[1:]))
        for k, v in local.items()
    }


def _numeric(values: np.ndarray) -> bool:
    return values.dtype == bool or bool(np.issubdtype(values.dtype, np.number))


def local_rows(array: jax.Array) -> np.ndarray:
    """This process's rows of a global array sharded along its first axis, in order.

    Examples
    --------
    >>> import numpy as np
    >>> local_rows(shard_rows({"x": np.arange(4.0)})["x"]).tolist()   # one process here
    [0.0, 1.0, 2.0, 3.0]
    """
    shards = {}
    for s in array.addressable_shards:  # replicas over other mesh axes: one of each
        shards.setdefault(s.index[0].start or 0, s)
    return np.concatenate([np.asarray(shards[k].data) for k in sorted(shards)], axis=0)
