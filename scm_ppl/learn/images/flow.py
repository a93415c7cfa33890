"""An exactly invertible conditional normalizing flow as an image mechanism.

Source: the affine coupling layers and multi-scale squeeze of Dinh, Sohl-Dickstein &
Bengio, "Density estimation using Real NVP" (ICLR 2017) with their uniform dequantisation,
and Glow's centred pixels (Kingma & Dhariwal, NeurIPS 2018) instead of Real NVP's logit;
conditioned on the parents as constant input
channels of every coupling network, as the flow image mechanisms of Pawlowski, Castro &
Glocker (NeurIPS 2020, §3.3) are.

The image ``x`` (pixels on ``[0, 1]``) is centred, ``y = x - 1/2``, then mapped through
coupling layers (checkerboard masks on 1x28x28, checkerboard and channel masks on
4x14x14 and 16x7x7 after squeezes) and a per-pixel affine map to ``u ~ Normal(0, I)``,
shaped ``(..., 784)``. Every step is an affine bijection with bounded scales, so the noise
view is the flow itself and inverts exactly (round trip to float32 round-off) for any
image, in range or not: abduction needs no encoder and no residual, a null intervention
returns the image, and a counterfactual image can itself be abducted again
(reversibility). A logit would saturate in float32 on counterfactual pixels far outside
the data and lose them.

The site is fitted by its exact log density (change of variables) at the dequantised
image ``(255 x + v) / 256``, ``v ~ Uniform(0, 1)`` drawn per fitting step, so a density on
256 grey levels does not collapse onto them.
"""

from __future__ import annotations

import functools
import itertools
from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
import numpyro
import numpyro.distributions as dist
from jax.typing import ArrayLike
from numpyro.contrib.module import eqx_module
from numpyro.distributions import constraints

from scm_ppl.core.noise import NoiseView, register_noise_view
from scm_ppl.core.validate import positive_int
from scm_ppl.errors import DataError, SettingsError
from scm_ppl.learn.images.vae import IMAGE_SIZE, _check_event, as_parents, sample_image

__all__ = [
    "LAYOUT",
    "ConditionalFlowImage",
    "CouplingNet",
    "ImageFlow",
    "check_layout",
    "conditional_flow",
]

LAYOUT: tuple[tuple[int, str, int], ...] = (
    (0, "checker", 0),
    (0, "checker", 1),
    (1, "checker", 0),
    (1, "channel", 0),
    (1, "checker", 1),
    (1, "channel", 1),
    (2, "channel", 0),
    (2, "channel", 1),
)
"""Coupling layers as ``(scale, mask, parity)``: scale ``s`` works on ``4^s`` channels of
``28 / 2^s`` pixels a side."""
_GAIN = 3.0  # the per-pixel log-scale moves 3x faster: the background's dequantisation
# scale (log sd about -7) is reached within an epoch, not ten


def _squeeze(x: jax.Array) -> jax.Array:
    c, h, w = x.shape
    x = x.reshape(c, h // 2, 2, w // 2, 2).transpose(0, 2, 4, 1, 3)
    return x.reshape(4 * c, h // 2, w // 2)


def _unsqueeze(x: jax.Array) -> jax.Array:
    c, h, w = x.shape
    x = x.reshape(c // 4, 2, 2, h, w).transpose(0, 3, 1, 4, 2)
    return x.reshape(c // 4, 2 * h, 2 * w)


def _mask(scale: int, kind: str, parity: int) -> jax.Array:
    channels, side = 4**scale, IMAGE_SIZE // 2**scale
    if kind == "checker":
        i, j = jnp.meshgrid(jnp.arange(side), jnp.arange(side), indexing="ij")
        return jnp.broadcast_to((i + j) % 2 == parity, (channels, side, side)).astype(float)
    half = jnp.arange(channels) < channels // 2
    keep = half if parity == 0 else ~half
    return jnp.broadcast_to(keep[:, None, None], (channels, side, side)).astype(float)


class CouplingNet(eqx.Module):
    """``(masked x (C, H, W), condition (c,)) -> (log-scale, shift)``, each ``(C, H, W)``:
    a 3x3 convolution, a 1x1 convolution and a zero-initialised 3x3 convolution (so
    every coupling starts as the identity), the parents as constant input channels."""

    conv1: eqx.nn.Conv2d
    conv2: eqx.nn.Conv2d
    conv3: eqx.nn.Conv2d

    def __init__(self, channels: int, cond_dim: int, width: int, key: jax.Array) -> None:
        k1, k2, k3 = jax.random.split(key, 3)
        self.conv1 = eqx.nn.Conv2d(channels + cond_dim, width, 3, padding=1, key=k1)
        self.conv2 = eqx.nn.Conv2d(width, width, 1, key=k2)
        last = eqx.nn.Conv2d(width, 2 * channels, 3, padding=1, key=k3)
        zero = jax.tree.map(jnp.zeros_like, last)
        self.conv3 = zero

    def __call__(self, x: jax.Array, condition: jax.Array) -> tuple[jax.Array, jax.Array]:
        planes = jnp.broadcast_to(condition[:, None, None], (condition.shape[0], *x.shape[1:]))
        h = jax.nn.silu(self.conv1(jnp.concatenate([x, planes], axis=0)))
        h = self.conv3(jax.nn.silu(self.conv2(h)))
        c = x.shape[0]
        return jnp.tanh(h[:c]) * 2.0, h[c:]


class ImageFlow(eqx.Module):
    """The bijection ``image (28, 28) <-> u (784,)`` given parents ``(c,)``.

    :meth:`inverse` maps an image to its noise with the log-determinant of that map,
    :meth:`forward` maps noise back to the image.
    """

    nets: tuple[CouplingNet, ...]
    loc: jax.Array
    log_scale: jax.Array
    layout: tuple[tuple[int, str, int], ...] = eqx.field(static=True)

    def __init__(
        self,
        cond_dim: int,
        width: int,
        key: jax.Array,
        layout: tuple[tuple[int, str, int], ...] = LAYOUT,
    ) -> None:
        keys = jax.random.split(key, len(layout))
        self.nets = tuple(
            CouplingNet(4**s, cond_dim, width, k) for (s, _, _), k in zip(layout, keys, strict=True)
        )
        self.loc = jnp.zeros(IMAGE_SIZE * IMAGE_SIZE)
        self.log_scale = jnp.zeros(IMAGE_SIZE * IMAGE_SIZE)
        self.layout = layout

    def inverse(self, image: jax.Array, condition: jax.Array) -> tuple[jax.Array, jax.Array]:
        """``(u (784,), log |det du/dimage|)`` of one image."""
        logdet = jnp.zeros((), image.dtype)
        h, scale = (image - 0.5)[None], 0
        for (s, kind, parity), net in zip(self.layout, self.nets, strict=True):
            while scale < s:
                h, scale = _squeeze(h), scale + 1
            m = _mask(s, kind, parity)
            log_s, shift = net(h * m, condition)
            h = h * m + (1.0 - m) * (h * jnp.exp(log_s) + shift)
            logdet = logdet + jnp.sum((1.0 - m) * log_s)
        while scale > 0:
            h, scale = _unsqueeze(h), scale - 1
        log_sd = _GAIN * self.log_scale
        u = (h.reshape(-1) - self.loc) * jnp.exp(-log_sd)
        return u, logdet - jnp.sum(log_sd)

    def forward(self, u: jax.Array, condition: jax.Array) -> jax.Array:
        """The image ``(28, 28)`` of noise ``u (784,)``."""
        h = (u * jnp.exp(_GAIN * self.log_scale) + self.loc).reshape(1, IMAGE_SIZE, IMAGE_SIZE)
        scale = 0
        for (s, kind, parity), net in reversed(tuple(zip(self.layout, self.nets, strict=True))):
            while scale < s:
                h, scale = _squeeze(h), scale + 1
            while scale > s:
                h, scale = _unsqueeze(h), scale - 1
            m = _mask(s, kind, parity)
            log_s, shift = net(h * m, condition)
            h = h * m + (1.0 - m) * (h - shift) * jnp.exp(-log_s)
        while scale > 0:
            h, scale = _unsqueeze(h), scale - 1
        return h[0] + 0.5


class ConditionalFlowImage(dist.Distribution):
    """The law of an image given its parents under a conditional normalizing flow.

    Parameters
    ----------
    flow
        An :class:`ImageFlow`, usually the program's parameters through ``eqx_module``.
    condition
        The parents, ``(..., c)``; the leading axes are the batch shape.
    dequantize
        Uniform draws on ``[0, 1)`` shaped like the images: :meth:`log_prob` is the
        density at ``(255 x + v) / 256``. ``None`` evaluates it at ``x`` itself.

    Examples
    --------
    >>> flow = ImageFlow(2, 4, jax.random.key(0))
    >>> d = ConditionalFlowImage(flow, jnp.zeros((3, 2)))
    >>> x = d.sample(jax.random.key(1))
    >>> d.batch_shape, d.event_shape, d.to_noise(x).shape
    ((3,), (28, 28), (3, 784))
    >>> bool(jnp.allclose(d.from_noise(d.to_noise(x)), x, atol=1e-5))
    True
    """

    arg_constraints: dict[str, Any] = {}  # noqa: RUF012  (numpyro's class-level convention)
    # Observed images must be pixels on [0, 1] (fit checks its data against supports).
    support = constraints.independent(constraints.unit_interval, 2)  # type: ignore[assignment]
    pytree_data_fields = ("flow", "condition", "dequantize")

    def __init__(
        self,
        flow: ImageFlow,
        condition: ArrayLike,
        dequantize: ArrayLike | None = None,
        *,
        validate_args: bool | None = None,
    ) -> None:
        condition = as_parents(condition, "ConditionalFlowImage")
        self.flow = flow
        self.condition = condition
        self.dequantize = None if dequantize is None else jnp.asarray(dequantize)
        super().__init__(
            tuple(condition.shape[:-1]), (IMAGE_SIZE, IMAGE_SIZE), validate_args=validate_args
        )

    def to_noise(self, x: ArrayLike) -> jax.Array:
        """Exact abduction: the flow's noise ``u`` of images ``(..., 28, 28)``, ``(..., 784)``."""
        x = jnp.asarray(x)
        _check_event(x, "ConditionalFlowImage.to_noise")
        return _inverse(self.flow, x, self.condition)[0]

    def from_noise(self, u: ArrayLike) -> jax.Array:
        """The images ``(..., 28, 28)`` of noise ``u (..., 784)``."""
        return _forward(self.flow, jnp.asarray(u), self.condition)

    def sample(self, key: jax.Array | None, sample_shape: tuple[int, ...] = ()) -> jax.Array:
        if key is None:
            raise DataError("ConditionalFlowImage.sample needs a JAX PRNG key.")
        shape = (*sample_shape, *self.batch_shape, IMAGE_SIZE * IMAGE_SIZE)
        # The flow's images are not confined to [0, 1]; a drawn image is a picture, so it
        # is clipped (the noise view, which must invert, is not).
        return jnp.clip(self.from_noise(jax.random.normal(key, shape)), 0.0, 1.0)

    def log_prob(self, value: ArrayLike, intermediates: Any = None) -> jax.Array:
        """Exact ``log p(value | parents)`` (at the dequantised value, if drawn)."""
        del intermediates  # numpyro's protocol; unused
        x = jnp.asarray(value)
        if self.dequantize is not None:
            x = (255.0 * x + self.dequantize) / 256.0
        u, logdet = _inverse(self.flow, x, self.condition)
        return dist.Normal(0.0, 1.0).log_prob(u).sum(-1) + logdet


# Jitted so that an eager call (a trace outside ``jit``) compiles once per network and
# shape instead of once per primitive; inside a traced program these are inlined.


@eqx.filter_jit
def _inverse(flow: Any, x: jax.Array, condition: jax.Array) -> tuple[jax.Array, jax.Array]:
    return jnp.vectorize(flow.inverse, signature="(h,w),(c)->(k),()")(x, condition)


@eqx.filter_jit
def _forward(flow: Any, u: jax.Array, condition: jax.Array) -> jax.Array:
    return jnp.vectorize(flow.forward, signature="(k),(c)->(h,w)")(u, condition)


@register_noise_view(ConditionalFlowImage)
def _flow_view(d: ConditionalFlowImage) -> NoiseView:
    zeros = jnp.zeros((*d.batch_shape, IMAGE_SIZE * IMAGE_SIZE), jnp.result_type(float))
    return NoiseView(dist.Normal(zeros, 1.0).to_event(1), d.from_noise, d.to_noise)


@functools.lru_cache(maxsize=16)
def _flow(cond_dim: int, width: int, layout: tuple, seed: int) -> ImageFlow:
    # One compiled initialisation instead of dozens of eagerly dispatched ones.
    make = eqx.filter_jit(lambda key: ImageFlow(cond_dim, width, key, layout))
    with jax.ensure_compile_time_eval():
        return make(jax.random.key(seed))


def check_layout(layout: Any) -> tuple[tuple[int, str, int], ...]:
    """``layout`` as a tuple of ``(scale, mask, parity)`` coupling layers, or a
    :class:`SettingsError` saying what is wrong.

    Scales are 0, 1, 2 (1x28x28, 4x14x14, 16x7x7) and never decrease; masks are
    ``"checker"`` or ``"channel"`` (not at scale 0, which has one channel); parities 0 or 1.

    Examples
    --------
    >>> check_layout([(0, "checker", 0), (1, "channel", 1)])
    ((0, 'checker', 0), (1, 'channel', 1))
    """
    try:
        out = tuple((int(s), str(k), int(p)) for s, k, p in layout)
    except (TypeError, ValueError):
        out = ()
    ok = bool(out) and all(
        s in (0, 1, 2) and k in ("checker", "channel") and p in (0, 1) and (s, k) != (0, "channel")
        for s, k, p in out
    )
    if not ok or any(a[0] > b[0] for a, b in itertools.pairwise(out)):
        raise SettingsError(
            f"layout must be a non-empty sequence of (scale, mask, parity) with scale 0, 1 or 2 "
            f"(never decreasing), mask 'checker' or 'channel' (not at scale 0) and parity 0 or "
            f"1; got {layout!r}. The default is {LAYOUT!r}."
        )
    return out


def conditional_flow(
    name: str,
    condition: ArrayLike,
    *,
    width: int = 32,
    layout: Any = LAYOUT,
    key: int = 0,
) -> jax.Array:
    """A conditional normalizing-flow image mechanism as the sample site ``name``.

    Learned parameters: ``"<name>.flow$params"``. The noise view is the flow itself
    (``u`` shaped ``(n, 784)``): abduction is exact, no encoder involved. Inside a fit the
    site draws its dequantisation noise from the fit's PRNG key. Pixels on ``[0, 1]``.

    Parameters
    ----------
    name
        The site's name.
    condition
        Parents, ``(n, c)``, roughly standardised.
    width
        Channels of each coupling network.
    layout
        The coupling layers, ``(scale, mask, parity)`` each (see :func:`check_layout`);
        the default has eight.
    key
        Seed of the initial weights.

    Returns
    -------
    jax.Array
        Images ``(n, 28, 28)``.

    Examples
    --------
    >>> from numpyro import handlers
    >>> def model(n=2):
    ...     with numpyro.plate("unit", n):
    ...         t = numpyro.sample("t", dist.Normal(0.0, 1.0))
    ...         conditional_flow("image", t[:, None], width=4)
    >>> tr = handlers.trace(handlers.seed(model, 0)).get_trace()
    >>> tr["image"]["value"].shape, sorted(k for k in tr if "$" in k)
    ((2, 28, 28), ['image.flow$params'])
    """
    positive_int("width", width)
    layout = check_layout(layout)
    condition = as_parents(condition, "conditional_flow")
    flow = eqx_module(f"{name}.flow", _flow(int(condition.shape[-1]), width, layout, key))
    rng = numpyro.prng_key()
    shape = (*condition.shape[:-1], IMAGE_SIZE, IMAGE_SIZE)
    noise = None if rng is None else jax.random.uniform(rng, shape)
    return sample_image(name, ConditionalFlowImage(flow, condition, noise))
