"""Kernel two-sample and independence statistics with permutation p-values, every
permutation in one JAX call (a permutation only re-indexes a precomputed Gram or
distance matrix)."""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

__all__ = ["energy_test", "hsic_test"]


def _standardise(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, float).reshape(x.shape[0], -1)
    return (x - x.mean(0)) / np.maximum(x.std(0), 1e-12)


def _gram(x: jax.Array) -> jax.Array:
    sq = jnp.sum(x**2, axis=1)
    d2 = jnp.maximum(sq[:, None] + sq[None, :] - 2 * x @ x.T, 0)
    width = jnp.median(d2[jnp.triu_indices(x.shape[0], 1)])
    k = jnp.exp(-d2 / jnp.maximum(width, 1e-12))
    centred = k - k.mean(0, keepdims=True)
    return centred - centred.mean(1, keepdims=True)


@jax.jit
def _hsic(x: jax.Array, y: jax.Array, perms: jax.Array) -> Any:
    kx, ly = _gram(x), _gram(y)
    stat = jnp.sum(kx * ly) / x.shape[0] ** 2
    null = jax.vmap(lambda p: jnp.sum(kx * ly[p][:, p]))(perms) / x.shape[0] ** 2
    return stat, null


def hsic_test(
    x: np.ndarray, y: np.ndarray, *, num_permutations: int = 200, max_rows: int = 500, seed: int = 0
) -> tuple[float, float]:
    """HSIC (Gaussian kernels, median bandwidth) of ``x ⟂ y`` and its permutation p-value."""
    rng = np.random.default_rng(seed)
    n = x.shape[0]
    rows = rng.choice(n, max_rows, replace=False) if n > max_rows else np.arange(n)
    xs, ys = _standardise(x[rows]), _standardise(y[rows])
    perms = np.stack([rng.permutation(len(rows)) for _ in range(num_permutations)])
    stat, null = _hsic(jnp.asarray(xs), jnp.asarray(ys), jnp.asarray(perms))
    p = (1 + np.sum(np.asarray(null) >= float(stat))) / (1 + num_permutations)
    return float(stat), float(p)


@jax.jit
def _energy(z: jax.Array, labels: jax.Array) -> Any:
    sq = jnp.sum(z**2, axis=1)
    dist = jnp.sqrt(jnp.maximum(sq[:, None] + sq[None, :] - 2 * z @ z.T, 0))

    def stat(a: jax.Array) -> jax.Array:
        a = a.astype(z.dtype)
        b = 1 - a
        na, nb = a.sum(), b.sum()
        return 2 * a @ dist @ b / (na * nb) - a @ dist @ a / na**2 - b @ dist @ b / nb**2

    return jax.vmap(stat)(labels)


def energy_test(
    x: np.ndarray,
    y: np.ndarray,
    *,
    num_permutations: int = 200,
    max_rows: int = 1000,
    seed: int = 0,
) -> tuple[float, float]:
    """The energy distance of two samples (rows; columns standardised on the pooled data)
    and its permutation p-value."""
    rng = np.random.default_rng(seed)
    x = np.asarray(x, float).reshape(len(x), -1)
    y = np.asarray(y, float).reshape(len(y), -1)
    if len(x) > max_rows:
        x = x[rng.choice(len(x), max_rows, replace=False)]
    if len(y) > max_rows:
        y = y[rng.choice(len(y), max_rows, replace=False)]
    z = np.concatenate([x, y])
    z = (z - z.mean(0)) / np.maximum(z.std(0), 1e-12)
    own = np.r_[np.ones(len(x)), np.zeros(len(y))]
    labels = np.stack([own, *(rng.permutation(own) for _ in range(num_permutations))])
    stats = np.asarray(_energy(jnp.asarray(z), jnp.asarray(labels)))
    p = (1 + np.sum(stats[1:] >= stats[0])) / (1 + num_permutations)
    return float(stats[0]), float(p)
