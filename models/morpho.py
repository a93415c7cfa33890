"""A procedural image SCM in the spirit of Morpho-MNIST: thickness -> intensity -> image.

Source: the synthetic set-up of Pawlowski, Castro & Glocker, "Deep Structural Causal
Models for Tractable Counterfactual Inference" (NeurIPS 2020, §5 and appendix on
Morpho-MNIST), where a digit's stroke thickness causes its brightness and both cause the
image. Here the "digit" is a stroke drawn procedurally (generated, never downloaded): a
line segment of fixed length :data:`SEGMENT_LENGTH` with round caps, at a random angle
and position, rendered anti-aliased on a :data:`IMAGE_SIZE` x :data:`IMAGE_SIZE` grid::

    thickness = 1.5 + g,              g ~ Gamma(2, 2)                (pixels)
    intensity = 0.5 + 0.4 sigmoid(2 (thickness - 2.5)) + 0.05 u_i,   u_i ~ Normal(0, 1)
    angle ~ Uniform(0, pi),  shift_x, shift_y ~ Uniform(-2, 2)       (exogenous pose)
    image = render(thickness, intensity, pose) + 0.02 u_x,            u_x ~ Normal(0, I)

``render`` paints ``intensity * coverage`` with ``coverage = clip(thickness / 2 - d + 1/2,
0, 1)`` and ``d`` the distance of a pixel centre to the segment: a vectorised
distance-to-segment field, no loop over pixels or units.

Programs
--------
* :func:`model` is the true SCM. By default it holds the scalar sites :data:`NODES` (the
  generic model tests check those); ``images=True`` adds the site ``"image"`` of shape
  ``(n, IMAGE_SIZE, IMAGE_SIZE)``. :func:`sample` draws units with their images.
* :func:`learnable_model` is the same graph with learned mechanisms: a FlowJAX flow for
  the thickness, an additive-noise MLP for the intensity, and for the image a per-pixel
  additive-noise mechanism ``image = decoder_θ(thickness, intensity, pose) + σ ⊙ u`` with
  an Equinox MLP decoder. The per-pixel residual is the noise, so abduction is exact:
  the counterfactual image is ``decoder_θ(t', i', pose) + (image - decoder_θ(t, i, pose))``.
  With ``pose=False`` the decoder sees ``(thickness, intensity)`` only; the pose then
  lives in the residual alone and a counterfactual can only add the *average* change of
  the image (a centred halo): the tutorial shows the difference.

Known truths
------------
* The true counterfactual of a unit under an intervention on thickness or intensity
  keeps its pose and its pixel noise: :func:`true_counterfactual`.
* :func:`measure_thickness` and :func:`measure_intensity` read the attributes back from
  pixels (as Morpho-MNIST measures its digits); :func:`measure_pose` reads the stroke's
  centroid and principal-axis angle.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any, NamedTuple, cast

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import numpy.typing as npt
import numpyro
import numpyro.distributions as dist
from jax.typing import ArrayLike
from numpyro import handlers
from numpyro.contrib.module import eqx_module
from numpyro.distributions import constraints

from scm_ppl.learn.mechanisms import additive_noise, flow

NODES: tuple[str, ...] = ("thickness", "intensity", "angle", "shift_x", "shift_y")
"""Scalar site names in topological order (``angle``, ``shift_*`` are exogenous pose)."""

EDGES: frozenset[tuple[str, str]] = frozenset({("thickness", "intensity")})
"""Directed edges among :data:`NODES`; with ``images=True`` every node is also a parent of
``"image"``."""

POSE: tuple[str, ...] = ("angle", "shift_x", "shift_y")
"""The exogenous pose sites (nuisance: the stroke's angle and position)."""

IMAGE_SIZE = 20
"""Height and width of an image in pixels."""
SEGMENT_LENGTH = 8.0
"""Length of the stroke's centre line in pixels (caps excluded)."""
MAX_SHIFT = 2.0
"""The stroke's centre lies within ``MAX_SHIFT`` pixels of the image centre, per axis."""
THICKNESS_MIN, THICKNESS_SHAPE, THICKNESS_RATE = 1.5, 2.0, 2.0
"""``thickness = THICKNESS_MIN + Gamma(THICKNESS_SHAPE, THICKNESS_RATE)``."""
INTENSITY_NOISE = 0.05
"""Standard deviation of the intensity's additive noise."""
PIXEL_NOISE = 0.02
"""Standard deviation of the pixels' additive noise."""


# --------------------------------------------------------------------------- the truth


def intensity_mechanism(thickness: ArrayLike) -> jax.Array:
    """Mean intensity given thickness: ``0.5 + 0.4 sigmoid(2 (thickness - 2.5))``.

    Examples
    --------
    >>> round(float(intensity_mechanism(2.5)), 3)
    0.7
    """
    return 0.5 + 0.4 * jax.nn.sigmoid(2.0 * (jnp.asarray(thickness) - 2.5))


def _grid() -> tuple[jax.Array, jax.Array]:
    """Pixel-centre coordinates ``(x, y)`` relative to the image centre, ``(H, W)`` each;
    ``x`` grows to the right (columns), ``y`` downwards (rows)."""
    c = jnp.arange(IMAGE_SIZE, dtype=jnp.float32) - (IMAGE_SIZE - 1) / 2
    return c[None, :] + 0.0 * c[:, None], c[:, None] + 0.0 * c[None, :]


def render(
    thickness: ArrayLike,
    intensity: ArrayLike,
    angle: ArrayLike,
    shift_x: ArrayLike,
    shift_y: ArrayLike,
) -> jax.Array:
    """Noise-free images of strokes: ``intensity * coverage``, shaped ``(..., H, W)``.

    The stroke is the set of points within ``thickness / 2`` of a segment of length
    :data:`SEGMENT_LENGTH` centred at ``(shift_x, shift_y)`` (pixels from the image
    centre, ``y`` downwards) at ``angle`` (radians from the ``x`` axis). A pixel's coverage
    is ``clip(thickness / 2 - d + 1/2, 0, 1)`` with ``d`` its centre's distance to the
    segment, a one-pixel anti-aliasing ramp. All arguments broadcast (one value per unit).

    Examples
    --------
    >>> img = render(2.0, 0.8, 0.0, 0.0, 0.0)
    >>> img.shape, round(float(img.max()), 3), round(float(img.sum() / 0.8), 1)  # 8*2 + pi
    ((20, 20), 0.8, 19.2)
    """
    t, i, a, sx, sy = (
        jnp.asarray(v, dtype=jnp.float32)[..., None, None]
        for v in (thickness, intensity, angle, shift_x, shift_y)
    )
    gx, gy = _grid()
    px, py = gx - sx, gy - sy
    ux, uy = jnp.cos(a), jnp.sin(a)
    along = jnp.clip(px * ux + py * uy, -SEGMENT_LENGTH / 2, SEGMENT_LENGTH / 2)
    d = jnp.hypot(px - along * ux, py - along * uy)
    return i * jnp.clip(t / 2 - d + 0.5, 0.0, 1.0)


def model(n: int = 1, *, images: bool = False) -> None:
    """The true SCM for ``n`` units; sites :data:`NODES` of shape ``(n,)``, and with
    ``images=True`` the site ``"image"`` of shape ``(n, IMAGE_SIZE, IMAGE_SIZE)``.

    Examples
    --------
    >>> from numpyro import handlers
    >>> tr = handlers.trace(handlers.seed(model, 0)).get_trace(3, images=True)
    >>> tr["thickness"]["value"].shape, tr["image"]["value"].shape
    ((3,), (3, 20, 20))
    """
    with numpyro.plate("unit", n):
        g = dist.Gamma(THICKNESS_SHAPE, THICKNESS_RATE)
        thickness = numpyro.sample(
            "thickness",
            dist.TransformedDistribution(g, dist.transforms.AffineTransform(THICKNESS_MIN, 1.0)),
        )
        intensity = numpyro.sample(
            "intensity", dist.Normal(intensity_mechanism(thickness), INTENSITY_NOISE)
        )
        angle = numpyro.sample("angle", dist.Uniform(0.0, math.pi))
        shift_x = numpyro.sample("shift_x", dist.Uniform(-MAX_SHIFT, MAX_SHIFT))
        shift_y = numpyro.sample("shift_y", dist.Uniform(-MAX_SHIFT, MAX_SHIFT))
        if images:
            mean = render(thickness, intensity, angle, shift_x, shift_y)
            numpyro.sample("image", dist.Normal(mean, PIXEL_NOISE).to_event(2))


def sample(n: int, seed: int | jax.Array = 0) -> dict[str, np.ndarray]:
    """``n`` units of the true SCM with their images: ``{site: array}``, float32.

    Examples
    --------
    >>> data = sample(4, seed=1)
    >>> sorted(data), data["image"].shape
    (['angle', 'image', 'intensity', 'shift_x', 'shift_y', 'thickness'], (4, 20, 20))
    """
    tr = handlers.trace(handlers.seed(model, seed)).get_trace(n, images=True)
    return {k: np.asarray(s["value"]) for k, s in tr.items() if s["type"] == "sample"}


def true_counterfactual(
    data: Mapping[str, npt.ArrayLike],
    thickness: Callable[[np.ndarray], npt.ArrayLike] | npt.ArrayLike | None = None,
    intensity: Callable[[np.ndarray], npt.ArrayLike] | npt.ArrayLike | None = None,
) -> dict[str, np.ndarray]:
    """The exact counterfactual of observed units (data with images) under an
    intervention on ``thickness`` and/or ``intensity`` (a value or a function of the
    factual value, e.g. ``lambda t: t + 1``).

    Abduction reads the noise off: ``u_i = intensity - intensity_mechanism(thickness)``
    and the pixel noise ``image - render(...)``; the pose is exogenous and kept.

    Examples
    --------
    >>> data = sample(3, seed=0)
    >>> cf = true_counterfactual(data, thickness=lambda t: t + 1)
    >>> bool(np.allclose(cf["thickness"], data["thickness"] + 1))
    True
    """

    def act(value: object, factual: np.ndarray) -> np.ndarray:
        if value is None:
            return factual
        out = value(factual) if callable(value) else value
        return np.broadcast_to(np.asarray(out, dtype=np.float32), factual.shape)

    t = np.asarray(data["thickness"], dtype=np.float32)
    i = np.asarray(data["intensity"], dtype=np.float32)
    pose = [np.asarray(data[k], dtype=np.float32) for k in POSE]
    pixel_noise = np.asarray(data["image"]) - np.asarray(render(t, i, *pose))
    t_cf = act(thickness, t)
    u_i = i - np.asarray(intensity_mechanism(t))
    i_cf = act(intensity, np.asarray(intensity_mechanism(t_cf)) + u_i)
    image = np.asarray(render(t_cf, i_cf, *pose)) + pixel_noise
    return {
        "thickness": t_cf,
        "intensity": i_cf,
        **dict(zip(POSE, pose, strict=True)),
        "image": image,
    }


# ------------------------------------------------------------------------ measurement


def _ink(images: npt.ArrayLike, threshold: float) -> np.ndarray:
    x = np.asarray(images, dtype=np.float64)
    return np.where(x > threshold, x, 0.0)


def measure_intensity(images: npt.ArrayLike, top: int = 4) -> np.ndarray:
    """Stroke brightness from pixels: the mean of each image's ``top`` brightest pixels
    (fully covered ones for any thickness of the SCM's range).

    Examples
    --------
    >>> round(float(measure_intensity(render(2.0, 0.8, 0.3, 1.0, -1.0))), 3)
    0.8
    """
    x = np.asarray(images, dtype=np.float64)
    flat = x.reshape(*x.shape[:-2], -1)
    return np.sort(flat, axis=-1)[..., -top:].mean(axis=-1)


class Pose(NamedTuple):
    """A stroke's pose read from pixels: centroid (pixels from the centre, ``y`` down)
    and principal-axis angle (radians in ``[0, pi)``)."""

    x: np.ndarray
    y: np.ndarray
    angle: np.ndarray


def _moments(images: npt.ArrayLike, threshold: float) -> tuple[np.ndarray, ...]:
    w = _ink(images, threshold)
    gx, gy = (np.asarray(g, dtype=np.float64) for g in _grid())
    mass = w.sum(axis=(-2, -1))
    mx = (w * gx).sum(axis=(-2, -1)) / mass
    my = (w * gy).sum(axis=(-2, -1)) / mass
    dx = gx - mx[..., None, None]
    dy = gy - my[..., None, None]
    cxx = (w * dx * dx).sum(axis=(-2, -1)) / mass
    cyy = (w * dy * dy).sum(axis=(-2, -1)) / mass
    cxy = (w * dx * dy).sum(axis=(-2, -1)) / mass
    return mass, mx, my, cxx, cyy, cxy


def measure_pose(images: npt.ArrayLike, threshold: float = 0.1) -> Pose:
    """Centroid and principal-axis angle of the ink (pixels above ``threshold``).

    Examples
    --------
    >>> p = measure_pose(render(2.0, 0.8, 0.5, 1.0, -1.5))
    >>> round(float(p.x), 2), round(float(p.y), 2), round(float(p.angle), 1)
    (1.0, -1.5, 0.5)
    """
    _, mx, my, cxx, cyy, cxy = _moments(images, threshold)
    angle = np.mod(0.5 * np.arctan2(2 * cxy, cxx - cyy), np.pi)
    return Pose(mx, my, angle)


def angle_difference(a: npt.ArrayLike, b: npt.ArrayLike) -> np.ndarray:
    """``a - b`` for undirected angles (period pi), wrapped to ``[-pi/2, pi/2)``."""
    d = np.asarray(a, dtype=np.float64) - np.asarray(b, dtype=np.float64)
    return np.mod(d + np.pi / 2, np.pi) - np.pi / 2


def measure_thickness(
    images: npt.ArrayLike, threshold: float = 0.1, intensity: npt.ArrayLike | None = None
) -> np.ndarray:
    """Stroke thickness from pixels, as Morpho-MNIST measures it: stroke area over length.

    The area is the ink (the sum of pixels above ``threshold``, which drops the pixel
    noise) over the stroke's brightness (:func:`measure_intensity` unless given); a
    capsule of length ``L`` (:data:`SEGMENT_LENGTH`) and width ``t`` has area
    ``L t + pi t^2 / 4``, solved for ``t``. The one-pixel anti-aliasing ramp keeps the
    ink proportional to the covered area, so the measure is unbiased on clean images;
    on noisy ones the brightness is read a little high and the thickness ~0.06 px low.

    Examples
    --------
    >>> t = np.array([1.5, 2.5, 3.5, 4.5])
    >>> np.round(measure_thickness(render(t, 0.8, 0.4, 0.5, -0.5)), 1).tolist()
    [1.5, 2.5, 3.5, 4.5]
    """
    x = _ink(images, threshold)
    brightness = measure_intensity(images) if intensity is None else np.asarray(intensity)
    area = x.sum(axis=(-2, -1)) / brightness
    length = SEGMENT_LENGTH
    return (np.sqrt(length**2 + np.pi * area) - length) / (np.pi / 2)


# -------------------------------------------------------------------- learnable model


@functools.lru_cache(maxsize=8)
def _decoder(in_size: int, hidden: tuple[int, ...], seed: int) -> eqx.Module:
    """The initial decoder MLP ``(in_size,) -> (H * W,)``, built once per architecture
    (eagerly, even under a trace)."""
    with jax.ensure_compile_time_eval():
        sizes = (in_size, *hidden, IMAGE_SIZE * IMAGE_SIZE)
        keys = jax.random.split(jax.random.key(seed), len(sizes) - 1)
        layers: list[Callable[..., Any]] = []
        for k, key in enumerate(keys):
            layers.append(eqx.nn.Linear(sizes[k], sizes[k + 1], key=key))
            if k < len(keys) - 1:
                layers.append(eqx.nn.Lambda(jax.nn.silu))
        return eqx.nn.Sequential(layers)


def decode(net: Callable[[jax.Array], jax.Array], inputs: jax.Array) -> jax.Array:
    """Mean images ``(..., H, W)`` from decoder inputs ``(..., d)``."""
    flat = inputs.reshape(-1, inputs.shape[-1])
    return jax.vmap(net)(flat).reshape(*inputs.shape[:-1], IMAGE_SIZE, IMAGE_SIZE)


def decoder_inputs(
    thickness: ArrayLike, intensity: ArrayLike, pose: Sequence[ArrayLike] | None
) -> jax.Array:
    """The decoder's input per unit, roughly standardised: ``(..., 2)`` without pose,
    ``(..., 6)`` with it (the angle as ``cos 2a, sin 2a``: a stroke is symmetric under a
    half turn)."""
    t = (jnp.asarray(thickness) - 2.5) / 0.7
    i = (jnp.asarray(intensity) - 0.7) / 0.1
    columns = [t, i]
    if pose is not None:
        angle, sx, sy = (jnp.asarray(p) for p in pose)
        columns += [jnp.cos(2 * angle), jnp.sin(2 * angle), sx / MAX_SHIFT, sy / MAX_SHIFT]
    shape = jnp.broadcast_shapes(*(c.shape for c in columns))
    return jnp.stack([jnp.broadcast_to(c, shape) for c in columns], axis=-1)


def learnable_model(
    n: int = 1, *, pose: bool = True, hidden: tuple[int, ...] = (64, 256), seed: int = 0
) -> None:
    """The image SCM with learned mechanisms (fit it with :func:`scm_ppl.fit`).

    * ``thickness``: a FlowJAX flow (``scm_ppl.mechanisms.flow``, a root);
    * ``intensity``: ``additive_noise`` MLP of the thickness;
    * ``angle``, ``shift_x``, ``shift_y``: the exogenous pose, with its true law (nothing
      to learn; only with ``pose=True``);
    * ``image``: per-pixel additive noise, ``Normal(decoder(...), σ).to_event(2)``, with
      the Equinox MLP decoder ``"image.net$params"`` (hidden widths ``hidden``) and the
      per-pixel scale ``"image.scale"``. Its noise view inverts it exactly.

    Examples
    --------
    >>> from numpyro import handlers
    >>> tr = handlers.trace(handlers.seed(learnable_model, 0)).get_trace(2)
    >>> tr["image"]["value"].shape, tr["image.scale"]["value"].shape
    ((2, 20, 20), (20, 20))
    """
    scale = numpyro.param(
        "image.scale",
        jnp.full((IMAGE_SIZE, IMAGE_SIZE), 0.1),
        constraint=constraints.positive,
    )
    with numpyro.plate("unit", n):
        thickness = flow("thickness", None, kind="maf", flow_layers=1, nn_width=8, key=seed)
        intensity = additive_noise("intensity", thickness[..., None], hidden=(16,), key=seed)
        pose_values = None
        if pose:
            pose_values = (
                numpyro.sample("angle", dist.Uniform(0.0, math.pi)),
                numpyro.sample("shift_x", dist.Uniform(-MAX_SHIFT, MAX_SHIFT)),
                numpyro.sample("shift_y", dist.Uniform(-MAX_SHIFT, MAX_SHIFT)),
            )
        x = decoder_inputs(thickness, intensity, pose_values)
        net = cast(
            Callable[[jax.Array], jax.Array],
            eqx_module("image.net", _decoder(x.shape[-1], tuple(hidden), seed)),
        )
        mean = decode(net, x)
        numpyro.sample("image", dist.Normal(mean, scale).to_event(2))
