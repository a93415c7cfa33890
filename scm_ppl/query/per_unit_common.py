"""What both per-unit paths (:mod:`scm_ppl.query.per_unit`, closed form, and
:mod:`scm_ppl.query.per_unit_nuts`, one NUTS chain per unit) share: their compiled
functions, cached per program, arguments, evidence shapes and latents, with the size of a
unit's block they accept; and the chain diagnostics over every unit, in JAX.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Mapping
from typing import Any, TypeVar

import jax
import jax.numpy as jnp

from scm_ppl.core.cache import LRUCache
from scm_ppl.core.inference import process_local, shapes, split_arguments
from scm_ppl.core.program import arguments_key

__all__ = ["MAX_BLOCK", "chain_diagnostics", "compiled_per_unit"]

MAX_BLOCK = 64
"""Largest number of latent values per unit whose Hessian block is checked densely."""

_T = TypeVar("_T")

_DIAGNOSTIC_BLOCK = 256
"""Units' values per step of the compiled diagnostics loop. Small blocks keep the FFT's
working set in cache: on 2 CPU cores, 1000 draws of 20,000 values took 2.3 s in blocks of
65,536, 0.8 s in blocks of 1,024 and 0.4-0.5 s in blocks of 128 to 512."""


def compiled_per_unit(
    cache: LRUCache,
    model: Callable,
    args: tuple,
    kwargs: Mapping[str, Any],
    evidence: Mapping[str, Any],
    latent: tuple[str, ...],
    layout: Callable[..., Any],
    build: Callable[[Callable, Any], _T],
    values: Callable[[_T], int],
    limit: str,
) -> _T | str:
    """The per-unit paths' compiled functions for one program, arguments, evidence shapes
    and latents, cached, or why there are none: ``layout(model, args, kwargs, evidence,
    latent)`` reads the latents' layout (a string: why not), ``build(rebuild, layout)``
    compiles, and more than ``MAX_BLOCK`` latent values per unit (``values(built)``) is
    refused, ``limit`` saying what the block is for. The refusal is cached too.

    Examples
    --------
    >>> import jax, numpyro, numpyro.distributions as dist
    >>> from scm_ppl.core.cache import LRUCache
    >>> def model(n):
    ...     with numpyro.plate("unit", n):
    ...         numpyro.sample("x", dist.Normal(numpyro.sample("u", dist.Normal()), 1.0))
    >>> compiled_per_unit(LRUCache(1), model, (3,), {}, {"x": jax.numpy.ones(3)}, ("u",),
    ...     lambda *_: "no unit axis", lambda rebuild, layout: layout, len, "checked")
    'no unit axis'
    """
    key = (model, arguments_key(args, kwargs), shapes(dict(evidence)), tuple(latent))
    found: _T | str | None = cache.get(key)
    if found is None:
        laid_out = layout(model, args, kwargs, evidence, latent)
        if isinstance(laid_out, str):
            found = laid_out
        else:
            _, rebuild = split_arguments(args, kwargs)
            built = build(rebuild, laid_out)
            count = values(built)
            found = (
                built
                if count <= MAX_BLOCK
                else f"each unit has {count} latent values ({limit} up to {MAX_BLOCK})"
            )
        cache.put(key, found)
    return found


def chain_diagnostics(x: jax.Array) -> dict[str, Any]:
    """Max split r_hat and min ESS over the columns of ``x`` ``(chain, draw, m)``: the
    estimators of :mod:`numpyro.diagnostics`, in JAX, in blocks of columns (float32).

    Examples
    --------
    >>> import jax
    >>> d = chain_diagnostics(jax.random.normal(jax.random.key(0), (2, 500, 3)))
    >>> 0.95 < d["max_r_hat"] < 1.05, 500 < d["min_ess"] < 2000
    (True, True)
    """
    x = jnp.asarray(x)
    if not x.is_fully_addressable:
        # Units sharded over processes: each judges its own units (XLA's CPU FFT refuses
        # the global array's layout, and a max over processes would need a collective
        # for two numbers); the scope says so.
        local, _ = process_local(x)
        return {
            **chain_diagnostics(jnp.asarray(local)),
            "diagnostics_scope": "this process's units",
        }
    if len(x.sharding.device_set) > 1:
        # Units sharded over this process's devices: XLA's CPU FFT refuses that layout
        # (a RET_CHECK failure), so the draws are judged on one device.
        x = jax.device_put(x, next(iter(x.sharding.device_set)))
    m = x.shape[2]
    block = min(m, _DIAGNOSTIC_BLOCK)
    # The last block overlaps the one before rather than being padded: harmless for a
    # max and a min, and no copy of the draws.
    starts = jnp.asarray([min(start, m - block) for start in range(0, m, block)])
    r_hat, ess = _diagnostics(x, starts, block)
    return {"max_r_hat": float(r_hat), "min_ess": float(ess)}


@functools.partial(jax.jit, static_argnums=2)
def _diagnostics(x: jax.Array, starts: jax.Array, block: int) -> tuple[jax.Array, jax.Array]:
    def one(start):
        return _diagnostics_block(jax.lax.dynamic_slice_in_dim(x, start, block, axis=2))

    r_hat, ess = jax.lax.map(one, starts)
    # A block of constant values has no r_hat or ESS (NaN); it must not hide the others.
    return jnp.nanmax(r_hat), jnp.nanmin(ess)


def _variance_stats(x: jax.Array) -> tuple[jax.Array, jax.Array]:
    chains, draws = x.shape[:2]
    within = jnp.var(x, axis=1, ddof=1).mean(axis=0)
    estimator = within * (draws - 1) / draws
    if chains > 1:
        return within, estimator + jnp.var(jnp.mean(x, axis=1), axis=0, ddof=1)
    return estimator, estimator


def _diagnostics_block(x: jax.Array) -> tuple[jax.Array, jax.Array]:
    draws = x.shape[1]
    half = draws // 2
    split = jnp.concatenate([x[:, :half], x[:, -half:]], axis=0)
    within, estimator = _variance_stats(split)
    r_hat = jnp.nanmax(jnp.sqrt(estimator / within)) if draws >= 4 else jnp.array(jnp.nan)
    # Autocovariance by FFT (numpyro's biased estimator), then Geyer's initial monotone
    # sequence of paired autocorrelations.
    # Draws on the last axis: the FFT runs over contiguous memory (10x faster on CPU).
    centred = jnp.swapaxes(x - x.mean(axis=1, keepdims=True), 1, 2)
    size = 2 * draws
    spectrum = jnp.fft.rfft(centred, n=size, axis=2)
    power = spectrum.real**2 + spectrum.imag**2
    autocov = jnp.swapaxes(jnp.fft.irfft(power, n=size, axis=2)[:, :, :draws], 1, 2) / draws
    within, estimator = _variance_stats(x)
    rho = 1.0 - (within - autocov.mean(axis=0)) / estimator
    rho = rho.at[0].set(1.0)
    pairs = rho[: 2 * (draws // 2) : 2] + rho[1 : 2 * (draws // 2) : 2]
    # A scan of minima: XLA lowers lax.cummin on CPU as a window reduction, quadratic in
    # the draws (3x slower at 1000 draws).
    monotone = jax.lax.associative_scan(jnp.minimum, jnp.clip(pairs[1:], 0.0, None), axis=0)
    tau = -1.0 + 2.0 * (pairs[0] + monotone.sum(axis=0))
    # numpyro stops here, and antithetic chains (lag-1 autocorrelation near -0.5 and below,
    # common for NUTS on near-Gaussian targets) make tau zero or negative: an ESS of
    # -142,266 for one unit of a 1000-unit joint run. Stan's floor (Stan Reference Manual,
    # "Effective sample size"; Vehtari et al. 2021, Bayesian Analysis 16(2), eq. 11; ArviZ's
    # ``ess``): tau >= 1 / log10(N), so ESS <= N log10 N.
    total = x.shape[0] * draws
    tau = jnp.maximum(tau, 1.0 / math.log10(total))
    ess = jnp.nanmin(total / tau)
    return r_hat, ess
