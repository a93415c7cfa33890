"""Couplings of discrete sites: the inverse-CDF search and the Gumbel-max posterior.

An integer site with cdf ``F`` is read as ``x = min{k : F(k) >= u}``, ``u ~ Uniform(0, 1)``
(:func:`smallest_k`), so ``u | x`` is uniform on the step ``(F(x - 1), F(x)]``
(:func:`uniform_between`). A categorical site is read as ``x = argmax(logits + u)`` with
``u_i ~ Gumbel(0, 1)`` (:func:`gumbel_max`); :class:`GumbelMaxPosterior` is the law of
``u`` given ``x``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpyro.distributions as dist
from jax.typing import ArrayLike
from numpyro.distributions import constraints
from numpyro.distributions.distribution import Distribution

from scm_ppl.errors import SettingsError

__all__ = ["GumbelMaxPosterior", "gumbel_max", "smallest_k", "uniform_between"]


def smallest_k(
    cdf: Callable[[jax.Array], jax.Array], u: jax.Array, lower: ArrayLike, upper: ArrayLike | None
) -> jax.Array:
    """Vectorised ``min{k in [lower, upper] : cdf(k) >= u}`` (``upper`` when none is).

    A fixed number of steps keeps it jit/vmap friendly: bisection over the integers a
    float of ``u``'s dtype represents exactly, after, when ``upper`` is None, a doubling
    search for an upper end. Both run in one loop so the cdf is compiled once.
    """
    dtype = u.dtype
    steps = int(jnp.finfo(dtype).nmant) + 2
    bounded = upper is not None
    shape = jnp.broadcast_shapes(u.shape, jnp.shape(lower), jnp.shape(upper) if bounded else ())
    u = jnp.broadcast_to(u, shape)
    lo = jnp.broadcast_to(jnp.asarray(lower, dtype) - 1, shape)  # cdf(lo) = 0 < u
    hi = jnp.broadcast_to(jnp.asarray(upper if bounded else 0, dtype), shape)
    found = jnp.full(shape, bounded)  # whether cdf(hi) >= u is known

    def step(_: jax.Array, state: tuple[jax.Array, ...]) -> tuple[jax.Array, ...]:
        lo, hi, found, width = state
        mid = jnp.where(found, jnp.floor((lo + hi) / 2), lo + width)
        reached = cdf(mid) >= u
        lo, hi = jnp.where(reached, lo, mid), jnp.where(reached, mid, hi)
        return lo, hi, found | reached, jnp.where(found, width, 2 * width)

    init = (lo, hi, found, jnp.ones(shape, dtype))
    lo, hi, found, _ = jax.lax.fori_loop(0, steps if bounded else 2 * steps, step, init)
    return jnp.maximum(jnp.where(found, hi, lo), jnp.asarray(lower, dtype))


def uniform_between(low: ArrayLike, high: ArrayLike) -> Distribution:
    """``Uniform`` on the cdf step ``(low, high]`` of a discrete value, trimmed at the ends.

    The cdf of one point can come out a few dozen ulps apart in two compiled programs
    (vectorised and scalar transcendental paths differ, and betainc/gammaincc amplify
    that), so noise drawn right at a step would map to a neighbouring value. Trimming
    64 eps from each end (the middle half of steps narrower than that) keeps
    ``forward(u) == x`` at an O(1e-5) change of the law.
    """
    low, high = jnp.broadcast_arrays(jnp.asarray(low), jnp.asarray(high))
    trim = jnp.clip((high - low) / 4, 0, 64 * jnp.finfo(low.dtype).eps)
    return dist.Uniform(low + trim, high - trim)


def gumbel_max(logits: ArrayLike, u: ArrayLike) -> jax.Array:
    """The category chosen by Gumbel noise ``u``: ``argmax(logits + u)`` over the last axis.

    Examples
    --------
    >>> import jax.numpy as jnp
    >>> int(gumbel_max(jnp.log(jnp.array([0.2, 0.8])), jnp.array([2.0, 0.0])))
    0
    """
    return jnp.argmax(jnp.asarray(logits) + jnp.asarray(u), axis=-1).astype(jnp.result_type(int))


class GumbelMaxPosterior(Distribution):
    """Law of Gumbel-max noise ``u`` given that ``argmax(logits + u) == value``.

    The prior is ``u_i ~ Gumbel(0, 1)`` independently. Sampling is the top-down
    construction of Maddison et al. (2014): the maximum ``M = max_i (logits_i + u_i)``
    is ``Gumbel(logsumexp(logits))`` and independent of the argmax, coordinate ``value``
    takes ``M``, and every other ``logits_i + u_i`` is ``Gumbel(logits_i)`` truncated
    below ``M``.

    Parameters
    ----------
    logits : ArrayLike
        Unnormalised log-probabilities, shape ``(..., K)``.
    value : ArrayLike
        The observed category, integer, shape broadcasting against ``logits.shape[:-1]``.

    Examples
    --------
    >>> import jax, jax.numpy as jnp
    >>> logits = jnp.log(jnp.array([0.5, 0.3, 0.2]))
    >>> u = GumbelMaxPosterior(logits, 2).sample(jax.random.key(0), (4,))
    >>> u.shape
    (4, 3)
    >>> bool(jnp.all(gumbel_max(logits, u) == 2))
    True
    """

    # -inf logits (categories of probability zero) are allowed.
    arg_constraints = {"logits": constraints.independent(constraints.less_than(jnp.inf), 1)}  # noqa: RUF012
    pytree_data_fields = ("logits", "value")

    def __init__(self, logits: ArrayLike, value: ArrayLike, *, validate_args: bool | None = None):
        logits = jnp.asarray(logits)
        value = jnp.asarray(value)
        batch_shape = jnp.broadcast_shapes(logits.shape[:-1], value.shape)
        k = logits.shape[-1]
        self.logits = jnp.broadcast_to(logits, (*batch_shape, k))
        self.value = jnp.broadcast_to(value, batch_shape)
        super().__init__(batch_shape=batch_shape, event_shape=(k,), validate_args=validate_args)

    @property
    def support(self) -> constraints.Constraint:
        return constraints.real_vector

    def sample(self, key: jax.Array | None, sample_shape: tuple[int, ...] = ()) -> jax.Array:
        if key is None:
            raise SettingsError("GumbelMaxPosterior.sample needs a PRNG key; got None.")
        logits = self.logits
        dtype = jnp.result_type(logits.dtype, float)
        shape = (*sample_shape, *self.batch_shape, self.event_shape[0])
        key_top, key_rest = jax.random.split(key)
        top = jax.scipy.special.logsumexp(logits, axis=-1, keepdims=True) + jax.random.gumbel(
            key_top, (*shape[:-1], 1), dtype
        )
        prior = jax.random.gumbel(key_rest, shape, dtype)
        # Gumbel(logits_i) truncated below `top`: -log(exp(-top) + exp(-g)), g ~ Gumbel(logits_i).
        below = -jnp.logaddexp(-top, -(logits + prior))
        chosen = self.value[..., None] == jnp.arange(shape[-1])
        u = jnp.where(chosen, top, below) - logits
        # Keep every runner-up a few ulps below the top, so that argmax(logits + u)
        # recovers `value` exactly even if the logits are recomputed an ulp apart
        # elsewhere (an O(eps) change of the law).
        z_top = jnp.where(chosen, logits + u, -jnp.inf).max(axis=-1, keepdims=True)
        slack = 8 * jnp.finfo(dtype).eps * (jnp.abs(z_top) + jnp.abs(logits) + jnp.abs(u) + 1)
        ceiling = jnp.where(jnp.isfinite(z_top), z_top - slack - logits, jnp.inf)
        u = jnp.where(chosen, u, jnp.minimum(u, ceiling))
        # A category of probability zero never wins whatever its noise: keep the prior draw.
        return jnp.where(jnp.isfinite(logits), u, prior)

    def log_prob(self, value: ArrayLike, intermediates: list[Any] | None = None) -> jax.Array:
        u = jnp.asarray(value)
        logits = self.logits
        prior = jnp.sum(-(u + jnp.exp(-u)), axis=-1)
        log_p = jnp.take_along_axis(
            jax.nn.log_softmax(logits, axis=-1), self.value[..., None].astype(int), axis=-1
        )[..., 0]
        consistent = gumbel_max(logits, u) == self.value
        return jnp.where(consistent, prior - log_p, -jnp.inf)
