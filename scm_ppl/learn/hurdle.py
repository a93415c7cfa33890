"""The hurdle mechanism: a point mass at zero, and a log-normal law above it.

Earnings, counts of hours, expression levels: non-negative data with many exact zeros,
on which Gaussian noise puts mass below zero and none at zero. :class:`Hurdle` models
``P(Y = 0) = sigmoid(zero_logits)`` and ``log Y | Y > 0 ~ Normal(loc, scale)``; its
log-density is computed from logits (``log_sigmoid``), so a unit far in a tail never
underflows to probability zero.

**The stated coupling** (its noise view, registered with
:func:`~scm_ppl.core.noise.register_noise_view`). Two standard normal noises per unit,
``u = (u_zero, u_level)``; with ``q = P(Y > 0)`` and the threshold ``c = ndtri(1 - q)``::

    Y = 0                               if u_zero <= c
    Y = exp(loc + scale * u_level)      if u_zero > c

Whether a unit is positive is monotone in ``u_zero`` (the inverse-CDF coupling of the
hurdle), and a positive unit keeps its standardised log level ``u_level`` in every world
(the location-scale coupling of the log-normal part). A positive value fixes ``u_level``
exactly and says only ``u_zero > c``; a zero says ``u_zero <= c`` and nothing about
``u_level`` (drawn from its prior). In closed form: a unit seen at zero under ``q`` is
positive in a world with ``q' > q`` with probability ``(q' - q) / (1 - q)``, and a positive
unit that stays positive moves from ``y`` to ``exp(loc' + scale' (log y - loc) / scale)``.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpyro.distributions as dist
from jax.scipy.special import log_ndtr, ndtri
from numpyro.distributions import constraints
from numpyro.distributions.util import promote_shapes

from scm_ppl.core.noise import NoiseView, register_noise_view

__all__ = ["HURDLE_COUPLING", "Hurdle"]

HURDLE_COUPLING = "hurdle: inverse-CDF for zero vs positive, location-scale above zero"


class Hurdle(dist.Distribution):
    """Zero with probability ``sigmoid(zero_logits)``, else ``LogNormal(loc, scale)``.

    Examples
    --------
    >>> import jax.numpy as jnp
    >>> d = Hurdle(0.0, 0.0, 1.0)  # half the mass at zero
    >>> float(jnp.exp(d.log_prob(0.0)))
    0.5
    """

    arg_constraints = {  # noqa: RUF012 (numpyro reads this class attribute)
        "zero_logits": constraints.real,
        "loc": constraints.real,
        "scale": constraints.positive,
    }
    reparametrized_params = []  # noqa: RUF012

    @property
    def support(self) -> constraints.Constraint:  # type: ignore[override]
        return constraints.nonnegative

    def __init__(self, zero_logits: Any, loc: Any, scale: Any, *, validate_args: Any = None):
        zero_logits, loc, scale = promote_shapes(zero_logits, loc, scale)
        self.zero_logits: jax.Array = jnp.asarray(zero_logits)
        self.loc: jax.Array = jnp.asarray(loc)
        self.scale: jax.Array = jnp.asarray(scale)
        batch_shape = jax.lax.broadcast_shapes(
            jnp.shape(zero_logits), jnp.shape(loc), jnp.shape(scale)
        )
        super().__init__(batch_shape=batch_shape, validate_args=validate_args)

    def sample(self, key: jax.Array | None, sample_shape: tuple[int, ...] = ()) -> jax.Array:
        assert key is not None  # numpyro passes a key to every sample call
        u = jax.random.normal(key, (*sample_shape, *self.batch_shape, 2))
        return hurdle_forward(self, u)

    def log_prob(self, value: Any, intermediates: Any = None) -> jax.Array:
        value = jnp.asarray(value)
        positive = value > 0
        safe = jnp.where(positive, value, 1.0)
        log_pos = jax.nn.log_sigmoid(-self.zero_logits) + dist.LogNormal(
            self.loc, self.scale
        ).log_prob(safe)
        return jnp.where(positive, log_pos, jax.nn.log_sigmoid(self.zero_logits))

    @property
    def mean(self) -> jax.Array:
        return jax.nn.sigmoid(-self.zero_logits) * jnp.exp(self.loc + self.scale**2 / 2)


def _threshold(d: Hurdle) -> jax.Array:
    # P(u_zero <= c) = P(Y = 0) = sigmoid(zero_logits), from logits: no underflow.
    return ndtri(jnp.exp(jax.nn.log_sigmoid(d.zero_logits)))


def hurdle_forward(d: Hurdle, u: Any) -> jax.Array:
    """The value of noise ``u`` (last axis: ``u_zero, u_level``) under the coupling."""
    u = jnp.asarray(u)
    positive = u[..., 0] > _threshold(d)
    return jnp.where(positive, jnp.exp(d.loc + d.scale * u[..., 1]), 0.0)


class _HurdleNoise(dist.Distribution):
    """Law of the noise given a value: ``u_zero`` truncated to its side of the threshold;
    ``u_level`` exact for a positive value, standard normal for a zero."""

    arg_constraints = {}  # noqa: RUF012

    @property
    def support(self) -> constraints.Constraint:  # type: ignore[override]
        return constraints.real_vector

    def __init__(self, threshold: jax.Array, level: jax.Array, zero: jax.Array):
        self.threshold, self.level, self.zero = jnp.broadcast_arrays(threshold, level, zero)
        super().__init__(batch_shape=jnp.shape(self.threshold), event_shape=(2,))

    def _log_mass(self) -> jax.Array:  # log P(u_zero on the value's side of c)
        return jnp.where(self.zero, log_ndtr(self.threshold), log_ndtr(-self.threshold))

    def sample(self, key: jax.Array | None, sample_shape: tuple[int, ...] = ()) -> jax.Array:
        assert key is not None  # numpyro passes a key to every sample call
        shape = sample_shape + self.batch_shape
        k1, k2 = jax.random.split(key)
        # Inverse CDF of the truncated normal, by symmetry always in its lower tail.
        v = jax.random.uniform(k1, shape, minval=1e-7, maxval=1.0)
        edge = jnp.where(self.zero, self.threshold, -self.threshold)
        t = ndtri(jnp.clip(v * jnp.exp(log_ndtr(edge)), 1e-37, 1.0))
        t = jnp.minimum(t, edge)
        u_zero = jnp.where(self.zero, t, -t)
        u_level = jnp.where(self.zero, jax.random.normal(k2, shape), self.level)
        return jnp.stack([u_zero, u_level], axis=-1)

    def log_prob(self, value: Any, intermediates: Any = None) -> jax.Array:
        value = jnp.asarray(value)
        u_zero, u_level = value[..., 0], value[..., 1]
        std = dist.Normal(0.0, 1.0)
        lp = std.log_prob(u_zero) - self._log_mass()
        lp = lp + jnp.where(self.zero, std.log_prob(u_level), 0.0)
        inside = jnp.where(self.zero, u_zero <= self.threshold, u_zero > self.threshold)
        inside = inside & (self.zero | (u_level == self.level))
        return jnp.where(inside, lp, -jnp.inf)


@register_noise_view(Hurdle)
def _hurdle_view(d: Hurdle) -> NoiseView:
    threshold = _threshold(d)

    def noise_given_value(x: Any) -> dist.Distribution:
        x = jnp.asarray(x)
        positive = x > 0
        level = (jnp.log(jnp.where(positive, x, 1.0)) - d.loc) / d.scale
        return _HurdleNoise(threshold, level, ~positive)

    zeros = jnp.zeros((*d.batch_shape, 2))
    return NoiseView(
        base=dist.Normal(zeros, 1.0).to_event(1),
        forward=lambda u: hurdle_forward(d, u),
        inverse=None,
        noise_given_value=noise_given_value,
        coupling=HURDLE_COUPLING,
    )
