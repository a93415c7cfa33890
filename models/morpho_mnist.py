"""Morpho-MNIST: real handwritten digits re-rendered by a known thickness -> intensity SCM.

Source: Castro et al., "Morpho-MNIST" (JMLR 2019) and the thickness–intensity set of
Pawlowski, Castro & Glocker, "Deep Structural Causal Models for Tractable Counterfactual
Inference" (NeurIPS 2020), vendored in ``models/data/morphomnist/`` (see its README)::

    thickness = 0.5 + Gamma(10, rate 5)                                    (pixels)
    intensity = 64 + 191 sigmoid(e),   e ~ Normal(2 (thickness - 2.5), 0.5)   (0-255)
    image     = SetIntensity(SetThickness(digit, thickness), intensity)

* :func:`load` reads the 10,000 images, labels and true attributes (no downloads).
* :func:`true_model` is the SCM of the two parents (the image mechanism, morphological
  operations on a digit, has no density: it is the thing to learn);
  :func:`set_thickness` is its thickness step, for true counterfactuals of
  ``do(thickness)`` (the floor a learned mechanism's effectiveness is measured against).
* :func:`learnable_model` is ``thickness -> intensity -> image``: the parents in their true
  parametric families with learned parameters, and the image a conditional VAE
  (:func:`scm_ppl.learn.images.conditional_vae`) or, with ``mechanism="flow"``, an exactly
  invertible conditional normalizing flow (:func:`scm_ppl.learn.images.conditional_flow`),
  or, with ``mechanism="diffusion"``, a conditional diffusion model inverted by DDIM
  (:func:`scm_ppl.learn.images.conditional_diffusion`), conditioned on both.

The digit label is part of the image's *noise*, not a parent: in the generating SCM the
digit is exogenous style that causes neither thickness nor intensity, and abduction
recovers it (with the rest of the style) from the pixels, so a counterfactual keeps it
without the label being observed. Pixel values of the ``"image"`` site are on ``[0, 1]``.
"""

from __future__ import annotations

import gzip
from collections.abc import Callable
from pathlib import Path

import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as dist
from jax.typing import ArrayLike
from numpyro.distributions import constraints
from skimage import morphology, transform

from scm_ppl.core.validate import check_method
from scm_ppl.errors import DataError, SettingsError
from scm_ppl.learn.images import (
    conditional_diffusion,
    conditional_flow,
    conditional_vae,
    ink_thickness,
    upscaled_ink,
)

DATA_DIR = Path(__file__).parent / "data" / "morphomnist"
"""Where the vendored files live."""
N_TEST = 500
"""The last ``N_TEST`` images are held out for the benchmark's counterfactual metrics."""
THICKNESS_SHIFT, THICKNESS_SHAPE, THICKNESS_RATE = 0.5, 10.0, 5.0
INTENSITY_LOW, INTENSITY_RANGE, INTENSITY_NOISE = 64.0, 191.0, 0.5


def _idx(path: Path) -> np.ndarray:
    with gzip.open(path, "rb") as fh:
        raw = fh.read()
    ndim = raw[3]
    dims = np.frombuffer(raw[4 : 4 + 4 * ndim], dtype=">u4").astype(int)
    return np.frombuffer(raw[4 + 4 * ndim :], dtype=np.uint8).reshape(dims)


def load(n: int | None = None, *, held_out: bool = False) -> dict[str, np.ndarray]:
    """The vendored data: ``image`` float32 ``(N, 28, 28)`` on ``[0, 1]``, ``thickness``
    (pixels) and ``intensity`` (0-255) float32 ``(N,)``, ``label`` int ``(N,)``.

    ``held_out=False`` gives the first ``10000 - N_TEST`` (training) images, ``True`` the
    last :data:`N_TEST`; ``n`` keeps the first ``n`` of those.

    Examples
    --------
    >>> d = load(5)
    >>> d["image"].shape, d["image"].dtype, d["label"].tolist()
    ((5, 28, 28), dtype('float32'), [7, 2, 1, 0, 4])
    """
    images = _idx(DATA_DIR / "t10k-images-idx3-ubyte.gz")
    labels = _idx(DATA_DIR / "t10k-labels-idx1-ubyte.gz")
    with gzip.open(DATA_DIR / "t10k-morpho.csv.gz", "rt") as fh:
        table = np.loadtxt(fh, delimiter=",", skiprows=1)
    split = slice(len(images) - N_TEST, None) if held_out else slice(0, len(images) - N_TEST)
    rows = np.arange(len(images))[split][:n]
    return {
        "image": images[rows].astype(np.float32) / 255.0,
        "thickness": table[rows, 1].astype(np.float32),
        "intensity": table[rows, 2].astype(np.float32),
        "label": labels[rows].astype(np.int32),
    }


def set_thickness(images: ArrayLike, thickness: ArrayLike, scale: int = 16) -> np.ndarray:
    """Digits redrawn with strokes of the given thickness, the way the generator drew them:
    the true image mechanism's thickness step, for true counterfactuals of ``do(thickness)``.

    As Pawlowski et al.'s generator (``deepscm``'s ``SetThickness``, on Castro et al.'s
    ``Thickening`` and ``Thinning``, at its ``scale=16``): each image is upscaled ``scale``
    times and binarised as :func:`~scm_ppl.learn.images.measure_thickness` does, its
    thickness measured there, dilated (thicker) or eroded (thinner) by a disc of radius
    ``int(scale * |asked - measured| / 2)`` upscaled pixels (the generator's disc: drawn 16
    times larger and reduced, every pixel it touches), and reduced back
    (``pyramid_reduce``, cubic), at the image's own ink level (the intensity is a separate
    step). Here it redraws an already drawn digit, not the original MNIST one. On the 500
    held-out digits, asked for ``t + 1`` it draws strokes measured 0.22 px off (MAE),
    asked for 6 px at 6.99 px on average (MAE 1.03): the floor of a learned mechanism's
    effectiveness (the disc that touches every pixel errs thick).

    Parameters
    ----------
    images
        ``(28, 28)`` or ``(N, 28, 28)``, non-negative (the scale of ``load``'s, ``[0, 1]``,
        or 0-255).
    thickness
        Asked stroke thickness in pixels, a scalar or ``(N,)``.

    Examples
    --------
    >>> from scm_ppl.learn.images import measure_thickness
    >>> d = load(3)
    >>> np.round(measure_thickness(set_thickness(d["image"], 5.0)), 1).tolist()
    [5.4, 5.3, 4.9]
    """
    x = np.asarray(images, np.float64)
    if x.ndim not in (2, 3) or x.shape[-2:] != (28, 28) or not np.all(np.isfinite(x)):
        raise DataError(
            f"set_thickness expects finite images shaped (28, 28) or (N, 28, 28); got shape "
            f"{x.shape}."
        )
    flat = x.reshape(-1, 28, 28)
    asked = np.broadcast_to(np.asarray(thickness, np.float64), (len(flat),))
    if not np.all(np.isfinite(asked) & (asked > 0)):
        raise DataError("set_thickness expects positive, finite thicknesses (pixels).")
    out = np.zeros_like(flat)
    for k, img in enumerate(flat):  # scikit-image's morphology is per image
        ink = upscaled_ink(img, scale)
        delta = asked[k] - ink_thickness(ink, scale)
        if not np.isfinite(delta):  # a blank image has no stroke to redraw
            out[k] = img
            continue
        radius = int(scale * abs(delta) / 2)
        magnified = np.asarray(morphology.disk(16 * radius), np.float64)
        disc = np.asarray(transform.pyramid_reduce(magnified, 16, order=1)) > 0
        grow = morphology.dilation if delta >= 0 else morphology.erosion
        drawn = np.asarray(
            transform.pyramid_reduce(np.asarray(grow(ink, disc), float), scale, order=3)
        )
        out[k] = drawn * (img.max() / max(drawn.max(), 1e-12))
    return out.reshape(x.shape)


def intensity_mean_logit(thickness: ArrayLike) -> jnp.ndarray:
    """The location of the intensity's logit: ``2 (thickness - 2.5)``.

    Examples
    --------
    >>> float(intensity_mean_logit(3.0))
    1.0
    """
    return 2.0 * (jnp.asarray(thickness) - 2.5)


def _thickness_law(shape: ArrayLike, rate: ArrayLike) -> dist.Distribution:
    return dist.TransformedDistribution(
        dist.Gamma(shape, rate), dist.transforms.AffineTransform(THICKNESS_SHIFT, 1.0)
    )


def _intensity_law(loc: ArrayLike, noise: ArrayLike) -> dist.Distribution:
    return dist.TransformedDistribution(
        dist.Normal(loc, noise),
        [
            dist.transforms.SigmoidTransform(),
            dist.transforms.AffineTransform(INTENSITY_LOW, INTENSITY_RANGE),
        ],
    )


def true_model(n: int = 1) -> None:
    """The true SCM of the parents, sites ``thickness`` and ``intensity`` of shape ``(n,)``
    (for sampling: its Gamma has no noise view without TensorFlow Probability).

    Examples
    --------
    >>> from numpyro import handlers
    >>> tr = handlers.trace(handlers.seed(true_model, 0)).get_trace(3)
    >>> tr["intensity"]["value"].shape
    (3,)
    """
    with numpyro.plate("unit", n):
        t = numpyro.sample("thickness", _thickness_law(THICKNESS_SHAPE, THICKNESS_RATE))
        numpyro.sample("intensity", _intensity_law(intensity_mean_logit(t), INTENSITY_NOISE))


def image_condition(thickness: ArrayLike, intensity: ArrayLike) -> jnp.ndarray:
    """The image mechanism's parents, standardised: ``(..., 2)``."""
    t = (jnp.asarray(thickness) - 2.5) / 0.7
    i = (jnp.asarray(intensity) - 160.0) / 60.0
    return jnp.stack(jnp.broadcast_arrays(t, i), axis=-1)


MECHANISMS = ("vae", "flow", "diffusion")
"""Image mechanisms :func:`learnable_model` offers."""


def learnable_model(
    n: int = 1,
    *,
    mechanism: str = "vae",
    latent_dim: int = 16,
    width: int = 16,
    key: int = 0,
    counterfactual_loss: Callable[[jnp.ndarray, jnp.ndarray], jnp.ndarray] | None = None,
    film: bool = False,
    decoder: str = "conv",
    num_steps: int = 50,
) -> None:
    """``thickness -> intensity -> image`` with learned mechanisms (fit with ``fit``).

    * ``thickness``: ``0.5 + LogNormal(m, s)``, learned (the true ``Gamma(10, 5)`` has
      shape 10, so a log-normal is close; NumPyro's Gamma has no quantile function
      without TensorFlow Probability, so it has no noise view here);
    * ``intensity``: ``64 + 191 sigmoid(Normal(w (thickness - 2.5) + c, s))``, learned;
    * ``image``: on both parents (pixels on ``[0, 1]``), ``mechanism="vae"`` a conditional
      VAE (:func:`~scm_ppl.learn.images.conditional_vae`: amortised abduction, residual
      carried) or ``"flow"`` a conditional normalizing flow
      (:func:`~scm_ppl.learn.images.conditional_flow`: exact abduction; ``latent_dim``
      unused, ``width`` the coupling networks' channels) or ``"diffusion"`` a conditional
      diffusion model (:func:`~scm_ppl.learn.images.conditional_diffusion`: DDIM inversion
      of ``num_steps`` steps, residual carried; ``latent_dim`` unused, ``width`` the
      denoiser's channels).

    ``counterfactual_loss`` (VAE only, for ``fit``; leave it out in queries): a
    :class:`~scm_ppl.learn.images.counterfactual_training.CounterfactualLoss` whose
    regressor reads :func:`image_condition` off an image, added to the image mechanism's
    objective so that decoded counterfactuals measure as asked. ``film`` (VAE only):
    the parents scale and shift every decoder feature map. ``decoder`` (VAE only):
    ``"conv"`` a generic convolutional decoder, ``"stroke"`` a
    :class:`~scm_ppl.learn.images.StrokeDecoder` (the latent draws the digit's skeleton,
    thickness and intensity set the pen's width and ink: the form of Morpho-MNIST's own
    rendering, built in).

    Examples
    --------
    >>> from numpyro import handlers
    >>> tr = handlers.trace(handlers.seed(learnable_model, 0)).get_trace(2, latent_dim=4, width=4)
    >>> tr["image"]["value"].shape, tr["thickness"]["value"].shape
    ((2, 28, 28), (2,))
    """
    check_method(mechanism, MECHANISMS, what="image mechanism")
    if (counterfactual_loss is not None or film or decoder != "conv") and mechanism != "vae":
        raise SettingsError(
            "counterfactual_loss, film and decoder are options of the VAE image mechanism; got "
            f"mechanism={mechanism!r}. Use mechanism='vae' or drop them."
        )
    pos = constraints.positive
    m = numpyro.param("thickness.loc", jnp.asarray(0.5))
    v = numpyro.param("thickness.scale", jnp.asarray(0.5), constraint=pos)
    w = jnp.asarray(numpyro.param("intensity.weight", jnp.asarray(1.0)))
    c = jnp.asarray(numpyro.param("intensity.bias", jnp.asarray(0.0)))
    s = jnp.asarray(numpyro.param("intensity.noise", jnp.asarray(1.0), constraint=pos))
    with numpyro.plate("unit", n):
        t = numpyro.sample(
            "thickness",
            dist.TransformedDistribution(
                dist.LogNormal(m, v), dist.transforms.AffineTransform(THICKNESS_SHIFT, 1.0)
            ),
        )
        i = numpyro.sample("intensity", _intensity_law(w * (t - 2.5) + c, s))
        condition = image_condition(t, i)
        if mechanism == "flow":
            conditional_flow("image", condition, width=width, key=key)
        elif mechanism == "diffusion":
            conditional_diffusion("image", condition, width=width, num_steps=num_steps, key=key)
        else:
            conditional_vae(
                "image",
                condition,
                latent_dim=latent_dim,
                width=width,
                key=key,
                counterfactual_loss=counterfactual_loss,
                film=film,
                decoder=decoder,
            )
