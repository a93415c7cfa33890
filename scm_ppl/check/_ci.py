"""Conditional independence tests, each vectorised over many tests at once.

* ``partial_correlation`` (Gaussian): the partial correlation of ``x_i, x_j`` given
  ``x_C`` from the inverse of the correlation submatrix, Fisher's z with
  ``n - |C| - 3`` degrees of freedom. All tests in one JAX call: a conditioning set is a
  mask, and unused variables are swapped for an identity block before inverting.
* ``gcm`` (Shah & Peters 2020, "The hardness of conditional independence testing and the
  generalised covariance measure"): regress ``x_i`` and ``x_j`` on ``x_C`` (kernel ridge
  regression, Gaussian kernel over the masked standardised columns, bandwidth² ``|C|``),
  and test the mean of the products of residuals with a normal approximation. All tests
  vmapped in one JAX call on at most ``max_rows`` rows.
* ``g_test`` (discrete): the likelihood-ratio statistic ``2 Σ O log(O / E)`` summed over the
  strata of ``x_C``, chi-square with the degrees of freedom of the non-empty strata
  (scipy's chi-square tail; strata are counted with numpy per test).
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax.scipy.special import ndtr
from scipy import stats

__all__ = ["g_test", "gcm", "holm", "partial_correlation"]


@jax.jit
def _partial_correlation(corr: jax.Array, i: jax.Array, j: jax.Array, mask: jax.Array) -> Any:
    p = corr.shape[0]
    eye = jnp.eye(p, dtype=corr.dtype)

    def one(i: jax.Array, j: jax.Array, m: jax.Array) -> Any:
        keep = m.at[i].set(True).at[j].set(True)
        outer = keep[:, None] & keep[None, :]
        sub = jnp.where(outer, corr, eye)
        prec = jnp.linalg.inv(sub)
        return -prec[i, j] / jnp.sqrt(prec[i, i] * prec[j, j])

    return jax.vmap(one)(i, j, mask)


def partial_correlation(x: np.ndarray, tests: list[tuple[int, int, tuple[int, ...]]]) -> Any:
    """p-values and statistics (partial correlations) of ``x_i ⟂ x_j | x_C``."""
    n, p = x.shape
    corr = np.corrcoef(x, rowvar=False).reshape(p, p)
    i, j, mask = _encode(tests, p)
    r = np.asarray(_partial_correlation(jnp.asarray(corr), i, j, mask), float)
    r = np.clip(r, -1 + 1e-12, 1 - 1e-12)
    dof = np.maximum(n - mask.sum(axis=1) - 3, 1)
    z = np.arctanh(r) * np.sqrt(dof)
    return 2 * stats.norm.sf(np.abs(z)), r


def _encode(tests: list[tuple[int, int, tuple[int, ...]]], p: int) -> tuple[Any, Any, Any]:
    i = np.array([t[0] for t in tests], np.int32)
    j = np.array([t[1] for t in tests], np.int32)
    mask = np.zeros((len(tests), p), bool)
    for k, t in enumerate(tests):
        mask[k, list(t[2])] = True
    return i, j, mask


def _gcm_kernel(x: jax.Array, i: jax.Array, j: jax.Array, mask: jax.Array, ridge: float) -> Any:
    n = x.shape[0]

    def one(i: jax.Array, j: jax.Array, m: jax.Array) -> Any:
        w = m.astype(x.dtype)
        xs = x * w
        sq = jnp.sum(xs**2, axis=1)
        d2 = jnp.maximum(sq[:, None] + sq[None, :] - 2 * xs @ xs.T, 0)
        width = jnp.maximum(jnp.sum(w), 1.0)
        k = jnp.exp(-d2 / (2 * width))
        k = jnp.where(jnp.sum(w) > 0, k, jnp.ones_like(k))
        targets = jnp.stack([x[:, i], x[:, j]], axis=1)
        centred = targets - targets.mean(axis=0)
        fit = k @ jnp.linalg.solve(k + ridge * n * jnp.eye(n, dtype=x.dtype), centred)
        res = centred - fit
        prod = res[:, 0] * res[:, 1]
        t = jnp.sqrt(n) * prod.mean() / jnp.maximum(prod.std(), 1e-12)
        return 2 * (1 - ndtr(jnp.abs(t))), t

    return jax.lax.map(lambda a: one(*a), (i, j, mask), batch_size=8)


_gcm_jit = jax.jit(_gcm_kernel, static_argnames="ridge")


def gcm(
    x: np.ndarray,
    tests: list[tuple[int, int, tuple[int, ...]]],
    *,
    max_rows: int = 500,
    ridge: float = 1e-3,
    seed: int = 0,
) -> Any:
    """p-values and statistics of the generalised covariance measure."""
    n, p = x.shape
    if n > max_rows:
        x = x[np.random.default_rng(seed).choice(n, max_rows, replace=False)]
    x = (x - x.mean(0)) / np.maximum(x.std(0), 1e-12)
    i, j, mask = _encode(tests, p)
    pv, t = _gcm_jit(jnp.asarray(x), jnp.asarray(i), jnp.asarray(j), jnp.asarray(mask), ridge)
    return np.asarray(pv, float), np.asarray(t, float)


def g_test(x: np.ndarray, tests: list[tuple[int, int, tuple[int, ...]]]) -> Any:
    """p-values and G statistics of conditional independence of discrete columns."""
    codes = np.stack([np.unique(c, return_inverse=True)[1] for c in x.T], axis=1)
    pvals, gs = [], []
    for i, j, cond in tests:
        if cond:
            _, strata = np.unique(codes[:, list(cond)], axis=0, return_inverse=True)
        else:
            strata = np.zeros(len(codes), int)
        strata = strata.ravel()
        ki, kj, ks = codes[:, i].max() + 1, codes[:, j].max() + 1, strata.max() + 1
        flat = (strata * ki + codes[:, i]) * kj + codes[:, j]
        o = np.bincount(flat, minlength=ks * ki * kj).reshape(ks, ki, kj).astype(float)
        tot = o.sum(axis=(1, 2), keepdims=True)
        e = o.sum(axis=2, keepdims=True) * o.sum(axis=1, keepdims=True) / np.maximum(tot, 1)
        with np.errstate(divide="ignore", invalid="ignore"):
            g = 2 * np.nansum(np.where(o > 0, o * np.log(o / e), 0.0))
        ri = (o.sum(axis=2) > 0).sum(axis=1)
        rj = (o.sum(axis=1) > 0).sum(axis=1)
        dof = max(int(np.sum(np.maximum(ri - 1, 0) * np.maximum(rj - 1, 0))), 1)
        pvals.append(stats.chi2.sf(g, dof))
        gs.append(g)
    return np.asarray(pvals, float), np.asarray(gs, float)


def holm(pvalues: np.ndarray) -> np.ndarray:
    """Holm–Bonferroni adjusted p-values (family-wise error control, any dependence)."""
    p = np.asarray(pvalues, float)
    m = p.size
    if m == 0:
        return p
    order = np.argsort(p)
    adj = np.minimum(1.0, np.maximum.accumulate(p[order] * (m - np.arange(m))))
    out = np.empty_like(adj)
    out[order] = adj
    return out
