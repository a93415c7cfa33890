"""Morphometry of digit images: stroke thickness and intensity measured on pixels.

Source: Castro et al., "Morpho-MNIST: quantitative assessment and diagnostics for
representation learning" (JMLR 2019), §3.1, the measurement the counterfactual image
literature uses to judge effectiveness (Monteiro et al., ICLR 2023). An image is upscaled
(``scale`` times, bicubic), binarised at half its maximum, thinned to a one-pixel
skeleton; the thickness is twice the mean Euclidean distance transform along the
skeleton (the stroke's local half-width), divided by ``scale``. The intensity is the
median of the stroke pixels (those at least half the maximum) of the original image.

It lives in the package, not in ``models/``, because it is a check of *any* learned
image mechanism (the axioms of effectiveness), independent of one data set; it needs only
NumPy and SciPy. Scikit-image is not a dependency: the skeleton is Zhang & Suen's
thinning (Comm. ACM 1984), vectorised over a batch of images (skimage's ``skeletonize``
uses the same two-subiteration scheme).
"""

from __future__ import annotations

import warnings

import numpy as np
import numpy.typing as npt
from scipy import ndimage

from scm_ppl.errors import DataError

__all__ = ["measure_intensity", "measure_thickness", "skeleton"]


def _as_images(images: npt.ArrayLike, what: str) -> np.ndarray:
    x = np.asarray(images)
    if x.ndim not in (2, 3) or x.shape[-1] < 3 or x.shape[-2] < 3:
        raise DataError(
            f"{what} expects an image (H, W) or a batch (N, H, W) of greyscale images; got "
            f"an array of shape {x.shape}. Drop channel axes (x[..., 0]) before measuring."
        )
    if not (np.issubdtype(x.dtype, np.floating) or np.issubdtype(x.dtype, np.integer)):
        raise DataError(f"{what} expects real pixel values; got dtype {x.dtype}.")
    x = x.astype(np.float64)
    if not np.all(np.isfinite(x)) or np.any(x < 0):
        raise DataError(
            f"{what} expects finite, non-negative pixel values (ink bright on black); got "
            f"{int(np.sum(~np.isfinite(x)))} non-finite and {int(np.sum(x < 0))} negative."
        )
    return x


def _binary(x: np.ndarray) -> np.ndarray:
    """Ink: pixels at least half of each image's maximum (a blank image has none)."""
    peak = x.max(axis=(-2, -1), keepdims=True)
    return (x >= 0.5 * peak) & (peak > 0)


def skeleton(binary: npt.ArrayLike, max_iter: int = 200) -> np.ndarray:
    """One-pixel-wide skeletons of binary images ``(..., H, W)`` (Zhang-Suen thinning).

    Examples
    --------
    >>> img = np.zeros((9, 15), bool)
    >>> img[3:6, 2:13] = True  # a bar three pixels high
    >>> sk = skeleton(img)
    >>> int(sk.sum(axis=0).max()), bool(sk[4, 4:11].all())
    (1, True)
    """
    img = np.pad(np.asarray(binary, bool), [(0, 0)] * (np.ndim(binary) - 2) + [(1, 1), (1, 1)])
    for _ in range(max_iter):
        changed = False
        for step in (0, 1):
            p = [
                np.roll(np.roll(img, -dy, axis=-2), -dx, axis=-1)
                for dy, dx in ((-1, 0), (-1, 1), (0, 1), (1, 1), (1, 0), (1, -1), (0, -1), (-1, -1))
            ]  # P2..P9, clockwise from north
            count = sum(q.astype(np.int8) for q in p)
            transitions = sum(((~p[k]) & p[(k + 1) % 8]).astype(np.int8) for k in range(8))
            p2, p4, p6, p8 = p[0], p[2], p[4], p[6]
            if step == 0:
                side = ~(p2 & p4 & p6) & ~(p4 & p6 & p8)
            else:
                side = ~(p2 & p4 & p8) & ~(p2 & p6 & p8)
            remove = img & (count >= 2) & (count <= 6) & (transitions == 1) & side
            if remove.any():
                img = img & ~remove
                changed = True
        if not changed:
            break
    return img[..., 1:-1, 1:-1]


def measure_thickness(images: npt.ArrayLike, scale: int = 4) -> np.ndarray:
    """Mean stroke thickness in pixels of each image (Morpho-MNIST's measurement).

    Parameters
    ----------
    images
        ``(H, W)`` or ``(N, H, W)``, non-negative (any range: ink is read relative to
        each image's maximum).
    scale
        Upsampling factor before binarising (Morpho-MNIST uses 4).

    Returns
    -------
    np.ndarray
        ``()`` or ``(N,)``; ``nan`` for a blank image.

    Examples
    --------
    >>> bar = np.zeros((28, 28))
    >>> bar[12:15, 5:22] = 1.0  # three pixels tall
    >>> round(float(measure_thickness(bar)), 1)
    3.0
    """
    x = _as_images(images, "measure_thickness")
    flat = x.reshape(-1, *x.shape[-2:])
    zoom = (1, scale, scale)
    up = np.asarray(
        ndimage.zoom(flat, zoom, order=3, grid_mode=True, mode="grid-constant"), np.float64
    )
    hires = np.maximum(up, 0.0)
    ink = _binary(hires)
    dist = np.zeros(ink.shape)
    for k, b in enumerate(ink):  # SciPy's transform is per image
        dist[k] = np.asarray(ndimage.distance_transform_edt(b))
    sk = skeleton(ink)
    # Thinning erases blobs with no elongation (a disc, a 2x2 block); their skeleton is
    # the centre, the point farthest from the background.
    empty = ~sk.any(axis=(-2, -1)) & ink.any(axis=(-2, -1))
    if empty.any():
        peak = dist[empty] == dist[empty].max(axis=(-2, -1), keepdims=True)
        sk[empty] = peak & ink[empty]
    n = sk.sum(axis=(-2, -1))
    with np.errstate(invalid="ignore", divide="ignore"):
        half = np.where(sk, dist, 0.0).sum(axis=(-2, -1)) / n
    out = np.where(n > 0, 2.0 * half / scale, np.nan)
    return out.reshape(x.shape[:-2])


def measure_intensity(images: npt.ArrayLike) -> np.ndarray:
    """Stroke intensity of each image: the median of its ink pixels (``>=`` half the max).

    Examples
    --------
    >>> img = np.zeros((28, 28)); img[10:14, 5:20] = 200.0; img[10, 5] = 120.0
    >>> float(measure_intensity(img))
    200.0
    """
    x = _as_images(images, "measure_intensity")
    ink = _binary(x)
    masked = np.where(ink, x, np.nan)
    flat = masked.reshape(*x.shape[:-2], -1)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # a blank image: nan, as documented
        return np.nanmedian(flat, axis=-1) if flat.shape[-1] else flat[..., 0]
