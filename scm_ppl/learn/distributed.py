"""Data-parallel fits: rows held by several processes (or devices), one set of parameters.

On a cluster every process loads its own rows and calls :func:`shard_rows`
(:mod:`~scm_ppl.learn.sharding`), which checks that every process holds as many rows with
the same columns and joins them into global arrays sharded along the unit axis (process
``k``'s rows are rows ``k n .. (k+1) n - 1`` of the whole). ``fit`` given such arrays fits
on all rows without moving them: each step runs under ``jax.shard_map``, every device
scores the rows of the minibatch it holds, and the loss and gradients are summed over
devices with ``jax.lax.psum`` before the same optimiser update runs on every device (the
parameters stay replicated).

Why ``shard_map`` and not a plain ``jit`` of the global arrays: a minibatch is a random
gather from rows spread over processes, which XLA partitions by moving the gathered rows
(or the operand) between processes and then repeats the step on every device; with
``shard_map`` the only traffic is the all-reduce of the gradients, and the program says
so. The minibatch indices are drawn from the same key on every device, from the order
one process would use for the concatenated rows, so a data-parallel fit takes the steps
that one process takes on all rows, to float round-off (sums in another order).

The price of taking exactly those steps: with minibatches each device evaluates the
program on all ``batch_size`` positions of the step, with the rows it does not hold
masked out (a minibatch falls on the devices' rows in random shares), so the rows are
spread over the processes' memory but a step's arithmetic is not divided among them;
full batches (``batch_size=None``) divide it, each device scoring its own rows.

What it does not do (each refused with a message before anything is compiled):
``method="nuts"``, interventional regimes, a validation split, the ICM penalty and
``missing="drop"`` (rows must stay where they are). With local latent sites and full
batches (``batch_size=None``) each device draws its own importance samples, so the
numbers differ from one process's by Monte-Carlo error; with minibatches they are the
same draws.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from scm_ppl.core.cache import LRUCache
from scm_ppl.errors import DataError, ScmPplError, SettingsError
from scm_ppl.learn.data import Data, split_rng
from scm_ppl.learn.objective import Objective, column_stats
from scm_ppl.learn.sharding import check_agreement, gather, local_rows, shard_rows

__all__ = [
    "DataParallel",
    "agreed",
    "check_agreement",
    "data_parallel",
    "shard_rows",
    "unsupported",
]

_COMPILED = LRUCache(16)


def _summed(partial: np.ndarray) -> np.ndarray:
    """A partial sum of this process's rows, summed over every process."""
    return gather(partial).sum(axis=0)


def _sharded(value: Any) -> bool:
    return (
        isinstance(value, jax.Array)
        and len(value.sharding.device_set) > 1
        and not value.sharding.is_fully_replicated
    )


def data_parallel(
    data: Any,
    method: str,
    validation_fraction: Any,
    icm_penalty: Any,
    interventions: Any,
    regime: Any,
    *rest: Any,
) -> DataParallel | None:
    """A :class:`DataParallel` plan when ``data`` are arrays sharded over devices along
    the unit axis (:func:`shard_rows`), ``None`` for ordinary data; fit's settings that a
    data-parallel fit cannot honour are refused here, before anything is compiled.
    ``rest``: fit's ``latent, plate, size_arg, model_kwargs, missing``, in that order."""
    if not isinstance(data, Mapping) or not any(_sharded(v) for v in data.values()):
        return None
    if not all(_sharded(v) for v in data.values()):
        plain = sorted(k for k, v in data.items() if not _sharded(v))
        raise DataError(
            f"Columns {plain} are not sharded over devices while the others are; build all "
            "columns with scm_ppl.learn.shard_rows."
        )
    first = next(iter(data.values()))
    sharding = first.sharding
    spec = getattr(sharding, "spec", None)
    if (
        not isinstance(sharding, NamedSharding)
        or spec is None
        or not isinstance(spec[0], str)
        or any(p is not None for p in spec[1:])
        or any(v.sharding != sharding or v.shape[0] != first.shape[0] for v in data.values())
    ):
        raise DataError(
            "Data-parallel fits take columns sharded along the unit axis alone, all alike; "
            "build them with scm_ppl.learn.shard_rows(this process's rows)."
        )
    what = unsupported(method, validation_fraction, icm_penalty, interventions, regime, *rest)
    if what is not None:
        raise SettingsError(
            f"A data-parallel fit (data sharded over devices) does not support {what}."
        )
    mesh = sharding.mesh
    assert isinstance(mesh, Mesh)  # a NamedSharding of concrete arrays has a concrete mesh
    return DataParallel(dict(data), mesh, spec[0])


def unsupported(
    method: str,
    validation_fraction: Any,
    icm_penalty: Any,
    interventions: Any,
    regime: Any,
    *rest: Any,
) -> str | None:
    """What of fit's settings a fit whose rows are not all in this process's memory (sharded
    over processes, or streamed from disk) cannot honour; ``None`` when nothing."""
    if method == "nuts":
        return "method='nuts' (use 'map' or 'svi')"
    if interventions is not None or regime is not None:
        return "interventional regimes"
    if validation_fraction:
        return "a validation split (hold rows out yourself and score them with the fit)"
    if icm_penalty:
        return "the ICM penalty"
    if rest and rest[-1] != "raise":
        return "missing='drop' (drop the rows beforehand)"
    return None


def agreed(parallel: Any, fn: Any, *args: Any) -> Any:
    """``fn(*args)``, with a refusal on any process raised on every process (one that
    went on alone would wait for the others in the first all-reduce)."""
    if parallel is None or jax.process_count() == 1:
        return fn(*args)
    error: ScmPplError | None = None
    out = None
    try:
        out = fn(*args)
    except ScmPplError as err:
        error = err
    refused = gather(np.array([error is not None], np.int32)).ravel()
    if error is not None:
        raise error
    if refused.any():
        raise DataError(
            f"The rows of process(es) {np.flatnonzero(refused).tolist()} were refused; "
            "their error is in their own output."
        )
    return out


class DataParallel:
    """The plan of a data-parallel fit: the global columns, the mesh axis that splits
    them, this process's rows, and the jitted epoch that runs over the devices."""

    def __init__(self, columns: dict[str, jax.Array], mesh: Mesh, axis: str) -> None:
        self.columns, self.mesh, self.axis = columns, mesh, axis
        self.rows = int(next(iter(columns.values())).shape[0])
        self.devices = int(mesh.shape[axis])
        self.shard = self.rows // self.devices  # rows per device
        self.local = {k: local_rows(v) for k, v in columns.items()}
        self.order = np.zeros(1, np.int32)
        self.const: dict[str, Any] = {}

    def split(
        self, data: Data, labels: list[int], frac: float, key: jax.Array
    ) -> tuple[list[dict[str, np.ndarray]], list[dict[str, np.ndarray]]]:
        """This process's rows for training (no validation split), and the order of all
        rows that :func:`~scm_ppl.learn.data.split_rows` gives one process."""
        del labels, frac  # one regime, no validation rows (checked)
        dtype = np.int32 if self.rows < 2**31 else np.int64
        self.order = split_rng(key).permutation(self.rows).astype(dtype)
        self.const = self._stats(data.columns)
        return [data.columns], [{k: v[:0] for k, v in data.columns.items()}]

    def _stats(self, columns: Mapping[str, np.ndarray]) -> dict[str, Any]:
        """Mean and spread of each column over all processes' rows (the encoder's input
        scaling, as :func:`~scm_ppl.learn.objective.feature_stats` gives one process)."""
        shapes = {k: v.shape[1:] for k, v in columns.items()}
        return column_stats(lambda: iter([columns]), shapes, self.rows, _summed)

    def stats(self) -> dict[str, Any]:
        return self.const

    def device_columns(self, train: Mapping[str, np.ndarray]) -> dict[str, jax.Array]:
        """The global columns, cast to the dtypes the checks gave this process's rows."""
        return {s: self.columns[s].astype(v.dtype) for s, v in train.items()}

    def settings(self) -> dict[str, Any]:
        return {
            "num_rows": self.rows,
            "rows_per_regime": {"-1": self.rows},
            "data_parallel": {
                "processes": jax.process_count(),
                "devices": self.devices,
                "rows_per_device": self.shard,
            },
        }

    def compiled_epoch(
        self,
        o: Objective,
        optimizer: optax.GradientTransformation,
        optimizer_key: Any,
        sizes: list[tuple[int, int]],
        steps: int,
    ) -> Any:
        """One epoch over every device: ``epoch(state, opt_state, data, const, key)`` as
        the one-process epoch of :mod:`scm_ppl.learn.train` takes it."""
        ((n, b),) = sizes
        cache_key = o.epoch_key(optimizer_key, sizes, steps, self.mesh, self.axis)
        cached = _COMPILED.get(cache_key)
        if cached is None:
            cached = _COMPILED.put(cache_key, self._build(o, optimizer, n, b, steps))
        order = jnp.asarray(self.order) if b < n else jnp.zeros(1, jnp.int32)

        def run(state, opt_state, data, const, key):
            return cached(state, opt_state, data, const, key, order)

        return run

    def _build(
        self, o: Objective, optimizer: optax.GradientTransformation, n: int, b: int, steps: int
    ) -> Any:
        minibatch, shard, axis = b < n, self.shard, self.axis
        # The model runs on b rows of a minibatch (scaled by n / b, as on one process), or
        # on this device's block of a full batch (each row counted once).
        sizes = [(n, b)] if minibatch else [(shard, shard)]
        fold = not minibatch and bool(o.local or o.prior_local)

        def local_epoch(state, opt_state, data, const, key, order):
            index = jax.lax.axis_index(axis)
            keys = jax.random.split(key, 2)  # as one process draws them: regime 0, steps
            if minibatch:
                perm = jax.random.permutation(keys[0], n)
                idx = jnp.tile(perm, -(-steps * b // n))[: steps * b].reshape(steps, b)
            else:
                idx = jnp.zeros((steps, 0), jnp.int32)

            def step(carry, xs):
                state, opt_state = carry
                rows, step_key = xs
                if minibatch:
                    rows = order[rows] - index * shard
                    held = (rows >= 0) & (rows < shard)
                    rows = jnp.clip(rows, 0, shard - 1)
                    batch = {s: v[rows] for s, v in data[0].items()}
                    part = (index, [held], False)
                else:
                    batch, part = data[0], (index, [None], fold)
                (loss, penalty), grads = jax.value_and_grad(o.loss_and_penalty, has_aux=True)(
                    state, [batch], step_key, const, sizes, n, part
                )
                loss, penalty, grads = jax.lax.psum((loss, penalty, grads), axis)
                updates, opt_state = optimizer.update(grads, opt_state, state)
                return (optax.apply_updates(state, updates), opt_state), (loss, penalty)

            xs = (idx, jax.random.split(keys[-1], steps))
            (state, opt_state), (losses, penalties) = jax.lax.scan(step, (state, opt_state), xs)
            return state, opt_state, losses, penalties

        rep, rows = PartitionSpec(), PartitionSpec(axis)
        return jax.jit(
            jax.shard_map(
                local_epoch,
                mesh=self.mesh,
                in_specs=(rep, rep, rows, rep, rep, rep),
                out_specs=(rep, rep, rep, rep),
            )
        )
