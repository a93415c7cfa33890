"""Small pieces the attributions share: keys, settings, batched maps, noise mixing."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import jax
import jax.numpy as jnp

from scm_ppl.core.validate import check_prng_key, positive_int

__all__ = ["batched_map", "check_positive", "default_key", "mix", "replicate"]


def default_key(rng_key: Any) -> jax.Array:
    """``rng_key``, or ``jax.random.key(0)`` when none is given (results repeat by default)."""
    return jax.random.key(0) if rng_key is None else check_prng_key(rng_key)


def check_positive(**values: Any) -> None:
    for name, value in values.items():
        positive_int(name, value)


def batched_map(fn: Callable, xs: Any, batch_size: int) -> Any:
    """``jax.lax.map`` in batches of ``batch_size`` (vmapped inside a batch): bounds memory
    while keeping the loop inside the compiled call."""
    n = jax.tree_util.tree_leaves(xs)[0].shape[0]
    return jax.lax.map(fn, xs, batch_size=max(1, min(batch_size, n)))


def mix(
    mask: jax.Array,
    players: tuple[str, ...],
    fixed: Mapping[str, jax.Array],
    fresh: Mapping[str, jax.Array],
) -> dict[str, jax.Array]:
    """The noise of a coalition: ``fixed`` for the players in ``mask``, ``fresh`` for the
    rest (and for every site that is not a player)."""
    out = dict(fresh)
    for i, s in enumerate(players):
        f = jnp.broadcast_to(fixed[s], fresh[s].shape)
        out[s] = jnp.where(mask[i], f, fresh[s])
    return out


def replicate(kernel: Callable[[jax.Array], Any], key: jax.Array, num: int) -> Any:
    """``kernel`` run on ``num`` independent keys, one after another inside the call."""
    return jax.lax.map(kernel, jax.random.split(key, num))


def flat_target(y: jax.Array) -> jax.Array:
    """A per-unit scalar target as a float vector."""
    return jnp.reshape(y, (y.shape[0],)).astype(jnp.result_type(float))
