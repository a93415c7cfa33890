"""FlowJAX normalizing flows as NumPyro distributions with an exact noise view.

:class:`FlowDistribution` wraps a FlowJAX flow (optionally conditioned on parents) as the
distribution of a sample site; its noise view reads the site as ``x = T(u; parents)``
with ``u`` the flow's standard-normal base noise, so counterfactual abduction inverts it
exactly. :func:`make_flow` builds the flows :func:`scm_ppl.learn.mechanisms.flow` offers.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
import numpyro.distributions as dist
from flowjax.bijections import RationalQuadraticSpline
from flowjax.distributions import AbstractDistribution, AbstractTransformed, StandardNormal
from flowjax.flows import coupling_flow, masked_autoregressive_flow
from jax.typing import ArrayLike
from numpyro.distributions import constraints

from scm_ppl.core.noise import NoiseView, register_noise_view
from scm_ppl.errors import NoiseViewError, ProgramError

__all__ = ["FLOW_KINDS", "FlowDistribution", "make_flow"]

FLOW_KINDS = ("maf", "coupling", "spline")


class FlowDistribution(dist.Distribution):
    """A FlowJAX flow as a NumPyro distribution, conditioned on parents.

    Parameters
    ----------
    flow
        A FlowJAX distribution with one event axis, ``flow.shape == (dim,)``, usually a
        :class:`flowjax.distributions.Transformed` with a ``StandardNormal`` base (the
        flows of :mod:`flowjax.flows`). Give it with its parameters unwrapped
        (``paramax.unwrap``), as :func:`flowjax.experimental.numpyro.register_params`
        returns it.
    condition
        Parents, shaped ``(..., cond_dim)``; the leading axes are the batch shape. Leave
        out for an unconditional flow (a learned root distribution).
    squeeze
        Drop the event axis of a one-dimensional flow, so that the site is a scalar per
        unit. Defaults to ``dim == 1``.

    Notes
    -----
    The noise view (:func:`scm_ppl.noise_view`) has base ``Normal(0, 1)`` shaped like the
    value, forward :meth:`from_noise` and inverse :meth:`to_noise`, so abduction through
    a flow mechanism is exact.

    Examples
    --------
    >>> import jax, jax.numpy as jnp
    >>> from flowjax.distributions import StandardNormal
    >>> from flowjax.flows import masked_autoregressive_flow
    >>> f = masked_autoregressive_flow(
    ...     jax.random.key(0), base_dist=StandardNormal((1,)), cond_dim=2, flow_layers=2, nn_width=8
    ... )
    >>> d = FlowDistribution(f, jnp.ones((5, 2)))
    >>> d.batch_shape, d.event_shape
    ((5,), ())
    >>> x = d.sample(jax.random.key(1))
    >>> bool(jnp.allclose(d.from_noise(d.to_noise(x)), x, atol=1e-5))
    True
    """

    arg_constraints: dict[str, Any] = {}  # noqa: RUF012  (numpyro's class-level convention)
    pytree_data_fields = ("flow", "condition")
    pytree_aux_fields = ("squeeze",)

    def __init__(
        self,
        flow: AbstractDistribution,
        condition: ArrayLike | None = None,
        *,
        squeeze: bool | None = None,
        validate_args: bool | None = None,
    ) -> None:
        if not isinstance(flow, AbstractDistribution) or len(flow.shape) != 1:
            raise ProgramError(
                "FlowDistribution expects a FlowJAX distribution over vectors (flow.shape "
                f"== (dim,)); got {type(flow).__name__} with shape "
                f"{getattr(flow, 'shape', None)}. Build one with flowjax.flows, e.g. "
                "masked_autoregressive_flow(key, base_dist=StandardNormal((dim,)), cond_dim=p)."
            )
        if isinstance(flow, AbstractTransformed):
            flow = flow.merge_transforms()
        cond_shape = flow.cond_shape
        if condition is None:
            if cond_shape is not None:
                raise ProgramError(
                    f"The flow is conditional (cond_shape {cond_shape}) but no condition was "
                    "given; pass the parents as condition=, shaped (..., cond_dim)."
                )
            batch_shape: tuple[int, ...] = ()
        else:
            condition = jnp.asarray(condition)
            if cond_shape is None or condition.shape[-len(cond_shape) :] != cond_shape:
                raise ProgramError(
                    f"The condition has shape {condition.shape}, but the flow expects "
                    f"{'no condition' if cond_shape is None else f'(..., *{cond_shape})'}."
                )
            batch_shape = tuple(condition.shape[: condition.ndim - len(cond_shape)])
        if squeeze is None:
            squeeze = flow.shape == (1,)
        if squeeze and flow.shape != (1,):
            raise ProgramError(
                f"squeeze=True drops the event axis of a one-dimensional flow; this flow has "
                f"shape {flow.shape}."
            )
        self.flow = flow
        self.condition = condition
        self.squeeze = bool(squeeze)
        event_shape = () if squeeze else tuple(flow.shape)
        super().__init__(batch_shape, event_shape, validate_args=validate_args)

    @property
    def support(self) -> constraints.Constraint:  # type: ignore[override]
        return constraints.real if self.squeeze else constraints.real_vector

    def _full(self, v: ArrayLike) -> jax.Array:
        v = jnp.asarray(v)
        return v[..., None] if self.squeeze else v

    def _site(self, v: jax.Array) -> jax.Array:
        return v[..., 0] if self.squeeze else v

    def _bijection(self) -> Any:
        if not isinstance(self.flow, AbstractTransformed):
            raise NoiseViewError(
                f"The noise of a FlowDistribution needs a transformed FlowJAX distribution "
                f"(base + bijection); got {type(self.flow).__name__}."
            )
        return self.flow.bijection

    def from_noise(self, u: ArrayLike) -> jax.Array:
        """The value ``T(u; condition)`` of base noise ``u`` (shaped like the value)."""
        return self._site(_apply(self._bijection(), "transform", self._full(u), self.condition))

    def to_noise(self, x: ArrayLike) -> jax.Array:
        """The base noise ``T^{-1}(x; condition)`` of a value ``x``."""
        return self._site(_apply(self._bijection(), "inverse", self._full(x), self.condition))

    def sample(self, key: jax.Array | None, sample_shape: tuple[int, ...] = ()) -> jax.Array:
        if key is None:
            raise ProgramError("FlowDistribution.sample needs a JAX PRNG key.")
        typed = jax.dtypes.issubdtype(key.dtype, jax.dtypes.prng_key)
        # numpyro still hands out raw uint32 keys; FlowJAX wants typed ones.
        typed_key = key if typed else jax.random.wrap_key_data(key)
        return self._site(_sample(self.flow, typed_key, tuple(sample_shape), self.condition))

    def log_prob(self, value: ArrayLike, intermediates: Any = None) -> jax.Array:
        del intermediates  # numpyro's TransformedDistribution protocol; unused
        return _log_prob(self.flow, self._full(value), self.condition)


# FlowJAX runs its layers in a `lax.scan`, which recompiles on every eager call; jitted
# here, an eager call (``handlers.seed`` + ``trace`` outside ``jit``) compiles once per flow
# structure and shapes. Inside a traced program these are inlined.


@eqx.filter_jit
def _apply(bijection: Any, method: str, v: jax.Array, condition: jax.Array | None) -> jax.Array:
    fn = getattr(bijection, method)
    if condition is None:
        return jnp.vectorize(fn, signature="(d)->(d)")(v)
    return jnp.vectorize(fn, signature="(d),(c)->(d)")(v, condition)


@eqx.filter_jit
def _sample(
    flow: AbstractDistribution,
    key: jax.Array,
    sample_shape: tuple[int, ...],
    condition: jax.Array | None,
) -> jax.Array:
    return flow.sample(key, sample_shape, condition)


@eqx.filter_jit
def _log_prob(flow: AbstractDistribution, x: jax.Array, condition: jax.Array | None) -> jax.Array:
    return flow.log_prob(x, condition)


@register_noise_view(FlowDistribution)
def _flow_view(d: FlowDistribution) -> NoiseView:
    flow = d.flow
    base = getattr(flow, "base_dist", None)
    if not (isinstance(flow, AbstractTransformed) and isinstance(base, StandardNormal)):
        what = f"its base is {type(base).__name__}" if base is not None else "it has no bijection"
        raise NoiseViewError(
            f"No noise view for a FlowDistribution whose flow ({type(flow).__name__}) is not a "
            f"transformed standard normal: {what}. Use a flow from flowjax.flows with "
            "base_dist=StandardNormal((dim,))."
        )
    zeros = jnp.zeros((*d.batch_shape, *d.event_shape), jnp.result_type(float))
    base = dist.Normal(zeros, jnp.ones_like(zeros)).to_event(len(d.event_shape))
    return NoiseView(base, d.from_noise, d.to_noise)


def make_flow(
    kind: str,
    key: jax.Array,
    *,
    dim: int,
    cond_dim: int | None,
    flow_layers: int,
    nn_width: int,
    nn_depth: int,
    activation: Callable[[jax.Array], jax.Array],
    knots: int,
    interval: float,
) -> AbstractTransformed:
    """A FlowJAX flow of ``kind`` (one of :data:`FLOW_KINDS`) on ``dim`` dimensions.

    ``"maf"``: masked autoregressive, affine; ``"coupling"``: coupling layers, affine;
    ``"spline"``: masked autoregressive with rational-quadratic splines on
    ``[-interval, interval]`` (identity outside).
    """
    common = {
        "base_dist": StandardNormal((dim,)),
        "cond_dim": cond_dim,
        "flow_layers": flow_layers,
        "nn_width": nn_width,
        "nn_depth": nn_depth,
        "nn_activation": activation,
    }
    if kind == "maf":
        return masked_autoregressive_flow(key, **common)
    if kind == "coupling":
        return coupling_flow(key, **common)
    transformer = RationalQuadraticSpline(knots=knots, interval=interval)
    return masked_autoregressive_flow(key, transformer=transformer, **common)
