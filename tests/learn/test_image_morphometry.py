"""Morphometry of digit images against shapes of known thickness and the vendored truth."""

import numpy as np
import pytest

from models.morpho_mnist import load
from scm_ppl.errors import DataError
from scm_ppl.learn.images import measure_intensity, measure_thickness, skeleton


def _bar(rows: int, angle_free: bool = False) -> np.ndarray:
    """A horizontal bar exactly ``rows`` pixels tall and 17 long."""
    img = np.zeros((28, 28))
    top = 14 - rows // 2
    img[top : top + rows, 5:22] = 1.0
    return img.T if angle_free else img


@pytest.mark.parametrize("rows", [3, 4, 5, 6, 7, 8])
def test_thickness_of_bars_is_their_width(rows: int) -> None:
    # Known by construction: a bar `rows` pixels tall, horizontal and vertical.
    bars = np.stack([_bar(rows), _bar(rows, angle_free=True)]) * 200.0
    np.testing.assert_allclose(measure_thickness(bars), rows, atol=0.3)


def _supersampled(inside, s: int = 8) -> np.ndarray:
    """Anti-aliased 28x28 image: each pixel the covered fraction of its 8x8 sub-pixels."""
    g = (np.arange(28 * s) + 0.5) / s
    yy, xx = np.meshgrid(g, g, indexing="ij")
    return inside(xx, yy).astype(float).reshape(28, s, 28, s).mean(axis=(1, 3))


def _line(width: float, angle: float) -> np.ndarray:
    ux, uy = np.cos(angle), np.sin(angle)

    def inside(xx: np.ndarray, yy: np.ndarray) -> np.ndarray:
        px, py = xx - 14, yy - 14
        along = np.clip(px * ux + py * uy, -8, 8)
        return np.hypot(px - along * ux, py - along * uy) <= width / 2

    return _supersampled(inside)


@pytest.mark.parametrize("angle", [0.0, 0.6, 1.2])
def test_thickness_of_drawn_lines_is_their_width(angle: float) -> None:
    widths = np.array([2.0, 3.0, 4.0, 5.0, 6.0, 8.0])
    images = np.stack([_line(w, angle) for w in widths])
    np.testing.assert_allclose(measure_thickness(images), widths, atol=0.3)


def test_thickness_of_discs_is_their_diameter() -> None:
    # A disc's skeleton is its centre pixel; at 4x upsampling its distance to the
    # background is rounded down to the grid, so the measure runs up to 0.6 px low.
    diameters = np.array([3.0, 5.0, 7.0, 9.0])
    discs = np.stack(
        [_supersampled(lambda x, y, d=d: np.hypot(x - 13.7, y - 13.7) <= d / 2) for d in diameters]
    )
    err = measure_thickness(discs) - diameters
    assert np.all((err <= 0.1) & (err >= -0.6))


def test_thickness_of_real_digits_matches_the_generators_truth() -> None:
    # The generator set each digit's thickness with Morpho-MNIST's own measurement
    # (Castro et al. 2019); our re-implementation must agree with the CSV's values.
    d = load(60)
    measured = measure_thickness(d["image"] * 255)
    assert np.mean(np.abs(measured - d["thickness"])) < 0.2
    assert np.corrcoef(measured, d["thickness"])[0, 1] > 0.97


def test_intensity_is_the_median_of_the_stroke() -> None:
    d = load(60)
    measured = measure_intensity(d["image"] * 255)
    assert np.mean(np.abs(measured - d["intensity"])) < 1.5
    img = _bar(5) * 180.0
    img[14, 6] = 100.0  # below half the max: not ink
    assert float(measure_intensity(img)) == 180.0


def test_skeleton_is_one_pixel_wide_and_blank_is_nan() -> None:
    sk = skeleton(_bar(5) > 0)
    assert sk.sum(axis=0).max() == 1 and sk.sum() >= 12
    assert np.isnan(measure_thickness(np.zeros((28, 28))))


@pytest.mark.parametrize(
    ("images", "match"),
    [
        (np.zeros(28), "expects an image"),
        (np.zeros((2, 28, 28, 1)), "expects an image"),
        (-np.ones((28, 28)), "non-negative"),
        (np.full((28, 28), np.nan), "finite"),
        (np.zeros((28, 28), dtype=bool), "real pixel values"),
    ],
)
def test_bad_images_raise(images: np.ndarray, match: str) -> None:
    with pytest.raises(DataError, match=match):
        measure_thickness(images)
    with pytest.raises(DataError, match=match):
        measure_intensity(images)
