"""Shapley values of a set function, vectorised over coalitions.

Exact values enumerate all ``2^d`` coalitions at once (``d <= MAX_EXACT_PLAYERS``): with
``v`` the values of every coalition (bit ``i`` of the coalition's index: player ``i`` is
in), ``phi = A @ v`` with ``A[i, S] = w(|S| - 1)`` if ``i`` is in ``S`` and ``-w(|S|)``
otherwise, ``w(s) = s! (d - 1 - s)! / d!``. Above that, ``approximate=True`` samples
antithetic pairs of permutations and averages each player's marginal contributions along
them (Castro et al. 2009); the standard error of that mean is reported.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np

from scm_ppl.errors import CriticismError

__all__ = ["MAX_EXACT_PLAYERS", "check_players", "exact_matrix", "masks", "permutation_masks"]

MAX_EXACT_PLAYERS = 15
"""The most players whose ``2^d`` coalitions exact Shapley values enumerate."""


def check_players(d: int, approximate: bool, what: str = "noise terms") -> None:
    if d == 0:
        raise CriticismError(f"There are no {what} to attribute to.")
    if d > MAX_EXACT_PLAYERS and not approximate:
        raise CriticismError(
            f"{d} players ({what}): exact Shapley values enumerate 2^{d} = {2**d} coalitions, "
            f"above the limit of {MAX_EXACT_PLAYERS} players (2^{MAX_EXACT_PLAYERS} "
            "coalitions). Pass approximate=True to sample permutations instead (the result "
            "then carries its sampling error)."
        )


def masks(d: int) -> np.ndarray:
    """All ``2^d`` coalitions as a boolean ``(2^d, d)`` array (row ``k``: the bits of ``k``)."""
    index = np.arange(2**d)[:, None]
    return ((index >> np.arange(d)[None, :]) & 1).astype(bool)


def exact_matrix(d: int) -> np.ndarray:
    """``A`` with ``phi = A @ v`` for ``v`` the values of :func:`masks` ``(d)``."""
    m = masks(d)
    size = m.sum(axis=1)
    w = np.array([math.factorial(s) * math.factorial(d - 1 - s) for s in range(d)], float)
    w /= math.factorial(d)
    inside = w[np.clip(size - 1, 0, d - 1)][None, :]
    outside = w[np.clip(size, 0, d - 1)][None, :]
    return np.where(m.T, inside, -np.where(size[None, :] < d, outside, 0.0))


def permutation_masks(key: jax.Array, d: int, pairs: int) -> tuple[jax.Array, jax.Array]:
    """``2 * pairs`` permutations (each with its reverse) and their prefix coalitions:
    ``orders (P, d)`` and ``prefixes (P, d + 1, d)`` (prefix ``k``: the first ``k``)."""
    keys = jax.random.split(key, pairs)
    orders = jax.vmap(lambda k: jax.random.permutation(k, d))(keys)
    orders = jnp.concatenate([orders, orders[:, ::-1]])
    rank = jnp.argsort(orders, axis=1)  # position of each player in its permutation
    prefixes = rank[:, None, :] < jnp.arange(d + 1)[None, :, None]
    return orders, prefixes


def from_permutations(values: jax.Array, orders: jax.Array) -> tuple[jax.Array, jax.Array]:
    """Shapley estimates and their standard errors from the values of the prefixes of
    each permutation, ``values (P, d + 1, ...)``; antithetic pairs are averaged first."""
    steps = values[:, 1:] - values[:, :-1]  # (P, d, ...): contribution of orders[p, k]
    rank = jnp.argsort(orders, axis=1)
    per_player = jnp.take_along_axis(
        steps, rank.reshape(rank.shape + (1,) * (steps.ndim - 2)), axis=1
    )
    half = per_player.shape[0] // 2
    paired = 0.5 * (per_player[:half] + per_player[half:])
    mean = paired.mean(axis=0)
    se = paired.std(axis=0, ddof=1) / jnp.sqrt(half)
    return mean, se


def shapley(
    value_fn: Callable[[jax.Array], jax.Array],
    d: int,
    *,
    approximate: bool,
    key: jax.Array,
    num_permutations: int = 64,
) -> tuple[jax.Array, jax.Array]:
    """Shapley values of ``value_fn`` (coalition masks ``(C, d)`` -> values ``(C, ...)``)
    and their sampling standard error (zero when exact). Traceable."""
    if not approximate:
        v = value_fn(jnp.asarray(masks(d)))
        phi = jnp.tensordot(jnp.asarray(exact_matrix(d), v.dtype), v, axes=1)
        return phi, jnp.zeros_like(phi)
    pairs = max(2, num_permutations // 2)
    orders, prefixes = permutation_masks(key, d, pairs)
    v = value_fn(prefixes.reshape(-1, d))
    v = v.reshape((prefixes.shape[0], d + 1, *v.shape[1:]))
    return from_permutations(v, orders)
