"""A stroke decoder: the network draws a digit's skeleton, the parents set how it is inked.

Why a second decoder. A generic convolutional decoder (:class:`.vae.ConvDecoder`, with or
without FiLM) learns "thicker" as a soft halo around the stroke and partly as "brighter":
on Morpho-MNIST its do(thickness + 1) moved the measured stroke 0.5-0.6 px
(``benchmarks/results/morpho_mnist.md``). When the images are *strokes* and the parents
are *global stroke attributes* (a pen's width and ink), that knowledge can be built into
the mechanism instead of hoped for, the way Morpho-MNIST itself renders its digits
(Castro et al., JMLR 2019, §3.2: a skeleton dilated by a disc of the asked radius, then
scaled in intensity):

* a convolutional network maps the latent code ``z`` (the style, parents unseen) to an
  ink field ``k(z)`` on ``[0, 1]`` (ideally the skeleton);
* a soft distance to the ink, ``D = -tau log sum_q k_q exp(-|p - q| / tau)`` (a
  log-sum-exp soft minimum of ``|p - q|``, so within its window ``D`` is 1-Lipschitz:
  widening the pen cannot leave the edge where it was), computed as one convolution with
  a fixed kernel of radius 6 px (farther from any ink, ``D`` is 30: empty);
* the image ``gain(parents) * sigmoid((width(parents) - D) / softness)``, scaled so
  that its brightest pixel is ``gain`` (the stroke's core is full ink): a pen of
  half-width ``width``, a learned affine map of the parents, and ink ``gain``, the
  ``softplus`` of another (so both extrapolate linearly beyond the training range), and
  a learned edge ``softness`` (anti-aliasing).

What it assumes, and where it would be wrong: the parents act on the image *only* through
one stroke width and one ink level per image; images that are not strokes, or parents that
bend, move or restyle the drawing, need the generic decoder. The pen's half-width is capped
at 5 px (strokes about 11 px thick), inside the soft minimum's window.
"""

from __future__ import annotations

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jax.typing import ArrayLike

__all__ = ["StrokeDecoder", "render_strokes", "soft_distance"]

# exp(-radius / tau) must stay far above float32's smallest normal (1e-38): 6 / 0.4 = 15.
_TAU = 0.4
_RADIUS = 6
# The pen is three numbers per parent against thousands of network weights; stored
# divided by this, it moves as fast under Adam's unit-sized steps as the network can
# learn to imitate it (which it would otherwise do first, drawing thick ink).
_PEN_STEP = 10.0
# The widest half-width drawn: inside the window, so that pixels beyond it stay empty.
_WIDEST = _RADIUS - 1.0
# A drawing fainter than this at its brightest is not brightened to full ink.
_FAINTEST = 1e-3
# Far from any ink the soft distance is capped here (an "empty" pixel, whatever the pen).
_NO_INK = 30.0


def _soft_distance_kernel(radius: int, tau: float) -> np.ndarray:
    r = np.arange(-radius, radius + 1)
    return np.exp(-np.hypot(r[:, None], r[None, :]) / tau).astype(np.float32)


class StrokeDecoder(eqx.Module):
    """``(z (k,), condition (c,)) -> image (28, 28)``: an ink field drawn from ``z`` alone,
    inked by a pen whose half-width and gain are affine-then-squashed maps of ``condition``
    (the module's docstring says why and what it assumes).

    Examples
    --------
    >>> dec = StrokeDecoder(2, 4, 4, jax.random.key(0))
    >>> img = dec(jnp.zeros(4), jnp.zeros(2))
    >>> img.shape, bool(jnp.all((img >= 0) & (img <= 1)))
    ((28, 28), True)
    >>> wide = dec(jnp.zeros(4), jnp.array([1.0, 0.0]))  # a wider pen inks more pixels
    >>> bool(jnp.sum(wide) > jnp.sum(img))
    True
    """

    lin: eqx.nn.Linear
    up1: eqx.nn.ConvTranspose2d
    up2: eqx.nn.ConvTranspose2d
    width_map: eqx.nn.Linear
    gain_map: eqx.nn.Linear
    log_softness: jax.Array
    width: int = eqx.field(static=True)
    ink_cost: float = eqx.field(static=True)

    def __init__(
        self,
        cond_dim: int,
        latent_dim: int,
        width: int,
        key: jax.Array,
        ink_cost: float = 0.5,
    ) -> None:
        k1, k2, k3, k4, k5 = jax.random.split(key, 5)
        self.lin = eqx.nn.Linear(latent_dim, 2 * width * 49, key=k1)
        self.up1 = eqx.nn.ConvTranspose2d(2 * width, width, 4, stride=2, padding=1, key=k2)
        self.up2 = eqx.nn.ConvTranspose2d(width, 1, 4, stride=2, padding=1, key=k3)
        # Start from a one-pixel pen at full ink whose parents barely matter: the fit,
        # not the initial weights, says how thickness and intensity act.
        self.width_map = _affine(cond_dim, 0.5 / _PEN_STEP, k4)
        self.gain_map = _affine(cond_dim, _softplus_inverse(0.8) / _PEN_STEP, k5)
        self.log_softness = jnp.log(jnp.asarray(0.3))
        self.width = width
        self.ink_cost = ink_cost

    def ink(self, z: jax.Array) -> jax.Array:
        """The ink field ``k(z)`` on ``[0, 1)``, shaped ``(28, 28)``: exactly zero off the
        drawing, so no pen inks pixels more than its (capped) half-width from it."""
        h = self.lin(z).reshape(2 * self.width, 7, 7)
        h = self.up2(jax.nn.silu(self.up1(jax.nn.silu(h))))
        return jax.nn.relu(jnp.tanh(h[0]))

    def training_penalty(self, z: jax.Array) -> jax.Array:
        """Nats charged per image while fitting: the ink's total mass times
        ``ink_cost``. A drawing that already holds the stroke's width reconstructs as
        well as a skeleton widened by the pen; the charge makes the skeleton cheaper, so
        the width is learned where the parents can set it."""
        return self.ink_cost * jnp.sum(self.ink(z))

    def pen(self, condition: jax.Array) -> tuple[jax.Array, jax.Array]:
        """``(half-width in pixels, gain)`` of the pen the parents set. The half-width is
        an affine map of the parents, so that a change of the parents widens thin and
        thick strokes alike (a ``softplus`` had slope 0.4 at Morpho-MNIST's thinnest
        strokes, which then widened half as much); below zero the pen is narrower than
        the ink. The gain is the ``softplus`` of an affine map: positive, unbounded above
        (a sigmoid gain saturates near 1, where it learns too slowly to carry the
        intensity)."""
        width = _PEN_STEP * self.width_map(condition)[0]
        gain = _PEN_STEP * self.gain_map(condition)[0]
        return width, jax.nn.softplus(gain)

    def __call__(self, z: jax.Array, condition: jax.Array) -> jax.Array:
        half_width, gain = self.pen(condition)
        return render_strokes(self.ink(z), half_width, gain, jnp.exp(self.log_softness))


def soft_distance(ink: jax.Array) -> jax.Array:
    """Soft distance (pixels) of each pixel of ``ink`` ``(H, W)`` to the ink:
    ``-tau log sum_q ink_q exp(-|p - q| / tau)``, ``tau = 0.4``, over a window of radius
    6 (farther pixels count as empty, at distance 30). 1-Lipschitz within the window;
    0 on a pixel of full ink with no neighbours.

    Examples
    --------
    >>> ink = jnp.zeros((9, 9)).at[4, 4].set(1.0)
    >>> [round(float(v), 2) + 0.0 for v in soft_distance(ink)[4, 4:8]]
    [0.0, 1.0, 2.0, 3.0]
    """
    kernel = jnp.asarray(_soft_distance_kernel(_RADIUS, _TAU))
    near = jax.lax.conv_general_dilated(ink[None, None], kernel[None, None], (1, 1), "SAME")
    return -_TAU * jnp.log(near[0, 0] + jnp.exp(-_NO_INK / _TAU))


def render_strokes(
    ink: jax.Array, half_width: ArrayLike, gain: ArrayLike, softness: ArrayLike
) -> jax.Array:
    """Ink ``(H, W)`` drawn with a pen: ``gain * sigmoid((half_width - D) / softness)``,
    ``D`` the :func:`soft_distance` to the ink, scaled so that its brightest pixel is
    ``gain``. A one-pixel line of full ink drawn with
    half-width ``w`` (1 to 3 px) measures ``2 w`` plus 0.5 to 1.0 px thick
    (:func:`.morphometry.measure_thickness`; the line's own pixel, rounded by the grid).

    Examples
    --------
    >>> line = jnp.zeros((28, 28)).at[4:24, 14].set(1.0)
    >>> img = render_strokes(line, 1.5, 1.0, 0.3)
    >>> [round(float(v), 2) for v in img[14, 11:18]]
    [0.03, 0.38, 0.93, 1.0, 0.93, 0.38, 0.03]
    """
    half_width = jnp.minimum(jnp.asarray(half_width), _WIDEST)
    edge = (half_width - soft_distance(ink)) / jnp.asarray(softness)
    drawn = jax.nn.sigmoid(edge)
    # The stroke's core is the pen's full ink whatever the ink field's level: else faint
    # ink dims the stroke (a second channel for intensity) and a wider pen brightens the
    # core as it widens, raising the half-maximum the stroke is measured at.
    return jnp.asarray(gain) * drawn / jnp.maximum(jnp.max(drawn), _FAINTEST)


def _softplus_inverse(y: float) -> float:
    return float(np.log(np.expm1(y)))


def _affine(cond_dim: int, bias: float, key: jax.Array) -> eqx.nn.Linear:
    """A ``cond_dim -> 1`` map with small weights and the given bias."""
    layer = eqx.nn.Linear(cond_dim, 1, key=key)
    return eqx.tree_at(
        lambda m: (m.weight, m.bias), layer, (0.01 * layer.weight, jnp.asarray([bias]))
    )
