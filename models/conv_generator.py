"""A small convolutional image generator for the stroke images of :mod:`models.morpho`.

Source: the convolutional generators (GAN generators, VAE decoders) whose successive layers
Besserve et al., "A theory of independent mechanisms for extrapolation in generative
models" (AAAI 2021) treat as a chain of mechanisms; here a conditional decoder small enough
to train on two CPU cores in minutes, on the procedurally drawn strokes of
:mod:`models.morpho` (generated, never downloaded)::

    thickness, intensity, angle, shift_x, shift_y   ~ the true laws of models.morpho
    c = decoder_inputs(thickness, intensity, pose)  (6 standardised numbers per unit)
    h0 = silu(Linear(c))  reshaped to (C0, 5, 5)
    h1 = silu(Conv(up(h0)))                         (C1, 10, 10)   5x5 kernels
    image ~ Normal(Conv(up(h1)), pixel_scale)       (20, 20)       5x5 kernels

``up`` doubles the grid by repeating pixels (nearest-neighbour "resize-convolution", which
draws no checkerboard, unlike a strided transposed convolution), so each convolution is a
stationary mechanism on its grid and dilating its kernel (``stretch``) means what it says.

The decoder is the Equinox module ``"decoder"`` (registered with
``numpyro.contrib.module.eqx_module``), so ``do_mechanism(fitted, {"decoder.conv1":
stretch(2.0)})`` changes one layer. For the ICM penalty, ``model(..., record_features=True)``
records ``conv2``'s actual input as the per-unit site ``"features"``, and
``fit(..., icm_penalty=λ, icm_pairs=[("features", "decoder.conv2")])`` penalises ``conv2``
against that feature map's averaged periodogram on each minibatch (without ``icm_pairs``,
``fit`` finds the pair ``(decoder.conv1, decoder.conv2)`` by itself but can then only use
the spectrum ``conv1`` would give a white input).
"""

from __future__ import annotations

import functools
import math
from collections.abc import Mapping
from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as dist
from numpyro.contrib.module import eqx_module

from models import morpho

__all__ = ["NODES", "ConvDecoder", "decoder", "generate", "model"]

NODES: tuple[str, ...] = (*morpho.NODES, "image")
"""Site names in topological order."""

EDGES: frozenset[tuple[str, str]] = morpho.EDGES | {(node, "image") for node in morpho.NODES}
"""Directed edges: the attributes of :mod:`models.morpho` and the image they cause."""

BASE = 5  # the first feature map is BASE x BASE; two upsamplings give 20 x 20


def upsample(feature_map: jax.Array) -> jax.Array:
    """``(C, H, W) -> (C, 2H, 2W)`` by repeating every pixel."""
    return jnp.repeat(jnp.repeat(feature_map, 2, axis=-2), 2, axis=-1)


class ConvDecoder(eqx.Module):
    """``(6,) -> (20, 20)``: a linear layer to ``(C0, 5, 5)``, then twice (upsample ×2,
    5x5 convolution), with SiLU between."""

    linear: eqx.nn.Linear
    conv1: eqx.nn.Conv2d
    conv2: eqx.nn.Conv2d
    channels: tuple[int, int] = eqx.field(static=True)

    def __init__(self, channels: tuple[int, int], key: jax.Array) -> None:
        k0, k1, k2 = jax.random.split(key, 3)
        c0, c1 = channels
        self.channels = (c0, c1)
        self.linear = eqx.nn.Linear(6, c0 * BASE * BASE, key=k0)
        self.conv1 = eqx.nn.Conv2d(c0, c1, 5, padding=2, key=k1)
        self.conv2 = eqx.nn.Conv2d(c1, 1, 5, padding=2, key=k2)

    def hidden(self, inputs: jax.Array) -> jax.Array:
        """The first feature map ``(C0, 5, 5)``."""
        return jax.nn.silu(self.linear(inputs)).reshape(self.channels[0], BASE, BASE)

    def features(self, inputs: jax.Array) -> jax.Array:
        """The input of ``conv2``: the second feature map, upsampled, ``(C1, 20, 20)``."""
        return upsample(jax.nn.silu(self.conv1(upsample(self.hidden(inputs)))))

    def __call__(self, inputs: jax.Array) -> jax.Array:
        return self.conv2(self.features(inputs))[0]


@functools.lru_cache(maxsize=8)
def decoder(channels: tuple[int, int] = (16, 8), seed: int = 0) -> ConvDecoder:
    """The initial decoder, built once per architecture (eagerly, even under a trace)."""
    with jax.ensure_compile_time_eval():
        return ConvDecoder(tuple(channels), jax.random.key(seed))  # type: ignore[arg-type]


def generate(net: Any, inputs: jax.Array) -> jax.Array:
    """Mean images ``(..., 20, 20)`` from decoder inputs ``(..., 6)``."""
    flat = inputs.reshape(-1, inputs.shape[-1])
    size = morpho.IMAGE_SIZE
    return jax.vmap(net)(flat).reshape(*inputs.shape[:-1], size, size)


def _features_and_images(net: Any, inputs: jax.Array) -> tuple[jax.Array, jax.Array]:
    """``(n, C1, 20, 20)`` inputs of ``conv2`` and the ``(n, 20, 20)`` mean images."""
    features = jax.vmap(net.features)(inputs)
    return features, jax.vmap(net.conv2)(features)[:, 0]


def model(
    n: int = 1,
    *,
    channels: tuple[int, int] = (16, 8),
    seed: int = 0,
    pixel_scale: float = 0.05,
    record_features: bool = False,
) -> jax.Array:
    """``n`` units: the attributes of :mod:`models.morpho` (their true laws) and an image
    ``(n, 20, 20)`` drawn by the learnable decoder ``"decoder"`` plus pixel noise.

    With ``record_features=True`` the input of the last convolution (the upsampled second
    feature map, ``(n, C1, 20, 20)``) is also a deterministic per-unit site
    ``"features"``: ``fit(..., icm_penalty=λ, icm_pairs=[("features", "decoder.conv2")])``
    then penalises ``conv2``'s genericity against the averaged periodogram of its actual
    input on each minibatch, instead of the spectrum ``conv1`` would give a white input.

    Examples
    --------
    >>> from numpyro import handlers
    >>> tr = handlers.trace(handlers.seed(model, 0)).get_trace(3)
    >>> tr["image"]["value"].shape, tr["decoder$params"]["value"].conv1.weight.shape
    ((3, 20, 20), (8, 16, 5, 5))
    """
    net = eqx_module("decoder", decoder(tuple(channels), seed))  # type: ignore[arg-type]
    with numpyro.plate("unit", n):
        g = dist.Gamma(morpho.THICKNESS_SHAPE, morpho.THICKNESS_RATE)
        shift = dist.transforms.AffineTransform(morpho.THICKNESS_MIN, 1.0)
        thickness = numpyro.sample("thickness", dist.TransformedDistribution(g, shift))
        intensity = numpyro.sample(
            "intensity",
            dist.Normal(morpho.intensity_mechanism(thickness), morpho.INTENSITY_NOISE),
        )
        angle = numpyro.sample("angle", dist.Uniform(0.0, math.pi))
        shift_x = numpyro.sample("shift_x", dist.Uniform(-morpho.MAX_SHIFT, morpho.MAX_SHIFT))
        shift_y = numpyro.sample("shift_y", dist.Uniform(-morpho.MAX_SHIFT, morpho.MAX_SHIFT))
        inputs = morpho.decoder_inputs(thickness, intensity, (angle, shift_x, shift_y))
        if record_features:
            features, mean = _features_and_images(net, inputs)
            numpyro.deterministic("features", features)
        else:
            mean = generate(net, inputs)
        return jnp.asarray(numpyro.sample("image", dist.Normal(mean, pixel_scale).to_event(2)))


def mean_images(params: Mapping[str, Any], data: Mapping[str, Any]) -> np.ndarray:
    """The decoder's mean images for the attributes in ``data`` under ``params``
    (e.g. ``fitted.params``, or those of ``do_mechanism(fitted, ...)``)."""
    net = params["decoder$params"]
    full = eqx.combine(net, eqx.filter(decoder(net.channels), eqx.is_inexact_array, inverse=True))
    inputs = morpho.decoder_inputs(
        data["thickness"], data["intensity"], (data["angle"], data["shift_x"], data["shift_y"])
    )
    return np.asarray(generate(full, inputs))
