"""A fit's posterior draws of a global site, as a distribution every query can run.

A Bayesian fit by NUTS ends with draws of the mechanism weights. Their posterior is often
far from Gaussian — the weights of a neural mechanism are not identified (hidden units
permute and flip sign), so it is multimodal — and a Gaussian fitted to the draws would
average the modes into functions the data never supported. :class:`PosteriorDraws` is the
draws themselves: sampling picks one uniformly.

Its noise view is the index of the draw (``u ~ Uniform(0, 1)``, draw ``floor(u S)``; the
inverse finds the draw a value is), so a counterfactual world replays the same draw as its
factual world. It has no density to
speak of: abduction never conditions these sites on a unit's evidence (the fit's posterior
already holds the data), see :mod:`scm_ppl.query.abduction`.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpyro.distributions as dist
from numpyro.distributions import constraints

from scm_ppl.core.noise import NoiseView, register_noise_view
from scm_ppl.errors import SettingsError

__all__ = ["FIT_POSTERIOR", "PosteriorDraws"]

FIT_POSTERIOR = "scm_fit_posterior"
"""The ``infer`` key that marks a global site drawn from a fit's posterior."""


class PosteriorDraws(dist.Distribution):
    """The empirical law of ``draws`` (shaped ``(num_draws, *site_shape)``)."""

    arg_constraints: dict[str, Any] = {}  # noqa: RUF012  (numpyro's class-level convention)
    pytree_data_fields = ("draws",)

    def __init__(self, draws: Any, *, validate_args: bool | None = None) -> None:
        self.draws = jnp.asarray(draws)
        super().__init__(
            batch_shape=(), event_shape=tuple(self.draws.shape[1:]), validate_args=validate_args
        )

    @property
    def support(self) -> constraints.Constraint:  # type: ignore[override]
        return constraints.real

    def pick(self, u: jax.Array) -> jax.Array:
        """The draw that noise ``u`` in ``[0, 1)`` selects."""
        count = self.draws.shape[0]
        index = jnp.clip(jnp.floor(u * count).astype(jnp.int32), 0, count - 1)
        return self.draws[index]

    def index_of(self, value: jax.Array) -> jax.Array:
        """The index of the draw ``value`` is (draws of continuous weights are distinct)."""
        flat = self.draws.reshape(self.draws.shape[0], -1)
        return jnp.argmin(jnp.sum((flat - jnp.reshape(value, (1, -1))) ** 2, axis=-1))

    def noise_of(self, value: jax.Array) -> jax.Array:
        """The noise in ``[0, 1)`` that picks ``value``: the middle of its draw's interval."""
        return (self.index_of(value) + 0.5) / self.draws.shape[0]

    def sample(self, key: jax.Array | None, sample_shape: tuple[int, ...] = ()) -> jax.Array:
        if key is None:
            raise SettingsError("PosteriorDraws.sample needs a PRNG key; got None.")
        return self.pick(jax.random.uniform(key, sample_shape))

    def log_prob(self, value: Any, intermediates: Any = None) -> jax.Array:
        # Each draw has mass 1 / S; inference never moves these sites, so a constant serves.
        batch = jnp.shape(value)[: jnp.ndim(value) - len(self.event_shape)]
        return jnp.full(batch, -jnp.log(self.draws.shape[0]))


@register_noise_view(PosteriorDraws)
def _posterior_draws_view(d: PosteriorDraws) -> NoiseView:
    return NoiseView(dist.Uniform(0.0, 1.0), d.pick, d.noise_of)
