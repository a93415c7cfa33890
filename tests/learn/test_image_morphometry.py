"""Morphometry of digit images against shapes of known thickness and the vendored truth."""

import numpy as np
import pytest

from models.morpho_mnist import load, set_thickness
from scm_ppl.errors import DataError, SettingsError
from scm_ppl.learn.images import (
    ink_thickness,
    measure_intensity,
    measure_thickness,
    skeleton,
    upscaled_ink,
)


def _bar(rows: int, angle_free: bool = False) -> np.ndarray:
    """A horizontal bar exactly ``rows`` pixels tall and 17 long."""
    img = np.zeros((28, 28))
    top = 14 - rows // 2
    img[top : top + rows, 5:22] = 1.0
    return img.T if angle_free else img


@pytest.mark.parametrize("rows", [3, 4, 5, 6, 7, 8])
def test_thickness_of_bars_is_their_width(rows: int) -> None:
    # Known by construction: a bar `rows` pixels tall, horizontal and vertical. The medial
    # axis (Morpho-MNIST's measure) branches into the square corners, where the bar is
    # thin: it reads bars up to 20 % thin, as documented; a thinning reads them exactly.
    bars = np.stack([_bar(rows), _bar(rows, angle_free=True)]) * 200.0
    np.testing.assert_allclose(measure_thickness(bars, method="thinning"), rows, atol=0.3)
    medial = measure_thickness(bars)
    assert np.all((medial >= 0.78 * rows) & (medial <= rows + 0.1))


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
@pytest.mark.parametrize(("method", "atol"), [("medial_axis", 0.5), ("thinning", 0.3)])
def test_thickness_of_drawn_lines_is_their_width(angle: float, method: str, atol: float) -> None:
    # Round-ended lines, as digits' strokes are: the medial axis has no corners to branch
    # into (all but one within 0.1 px; a 4 px line at 1.2 rad reads 3.5).
    widths = np.array([2.0, 3.0, 4.0, 5.0, 6.0, 8.0])
    images = np.stack([_line(w, angle) for w in widths])
    measured = measure_thickness(images, method=method)
    np.testing.assert_allclose(measured, widths, atol=atol)
    assert np.median(np.abs(measured - widths)) < 0.1


def _discs(diameters: np.ndarray) -> np.ndarray:
    return np.stack(
        [_supersampled(lambda x, y, d=d: np.hypot(x - 13.7, y - 13.7) <= d / 2) for d in diameters]
    )


def test_thickness_of_discs_is_their_diameter() -> None:
    # A disc's thinned skeleton is its centre; at 4x upsampling its distance to the
    # background is rounded down to the grid, so the measure runs up to 0.6 px low.
    diameters = np.array([3.0, 5.0, 7.0, 9.0])
    err = measure_thickness(_discs(diameters), method="thinning") - diameters
    assert np.all((err <= 0.1) & (err >= -0.6))


def test_the_medial_axis_reads_discs_thin_as_documented() -> None:
    # A digital disc has no medial axis but spurs reaching its rim: Morpho-MNIST's
    # measure is not for blobs (the docstring says so).
    diameters = np.array([7.0, 9.0])
    assert np.all(measure_thickness(_discs(diameters)) < diameters - 2.0)


@pytest.mark.parametrize("method", ["medial_axis", "thinning"])
def test_a_true_one_pixel_thickening_of_real_digits_measures_one_pixel(method: str) -> None:
    # Known by construction on real strokes: the generator's own SetThickness
    # (models.morpho_mnist.set_thickness) asked for one pixel more. Over 12 digits; on the
    # first 100 held-out digits the medial axis reads t + 1.15 (session 8).
    d = load(12)
    before = measure_thickness(d["image"], method=method)
    after = measure_thickness(set_thickness(d["image"], d["thickness"] + 1.0), method=method)
    assert abs(np.mean(after - before) - 1.0) < 0.25


@pytest.mark.parametrize("method", ["medial_axis", "thinning"])
def test_thickness_of_real_digits_matches_the_generators_truth(method: str) -> None:
    # The generator set each digit's thickness with Morpho-MNIST's own measurement
    # (Castro et al. 2019), to within its disc's grid (a quarter pixel of radius): the
    # measure must agree with the CSV's values (500 digits: MAE 0.13 / 0.11 px).
    d = load(60)
    measured = measure_thickness(d["image"] * 255, method=method)
    assert np.mean(np.abs(measured - d["thickness"])) < 0.2
    assert np.corrcoef(measured, d["thickness"])[0, 1] > 0.97


def test_intensity_is_the_median_of_the_stroke() -> None:
    d = load(60)
    measured = measure_intensity(d["image"] * 255)
    assert np.mean(np.abs(measured - d["intensity"])) < 1.5
    img = _bar(5) * 180.0
    img[14, 6] = 100.0  # below half the max: not ink
    assert float(measure_intensity(img)) == 180.0


def test_skeletons_follow_the_bar_and_blank_is_nan() -> None:
    thin = skeleton(_bar(5) > 0, "thinning")
    assert thin.sum(axis=0).max() == 1 and thin.sum() >= 12
    medial = skeleton(_bar(5) > 0)
    assert medial[14, 8:19].all()  # the axis along the bar, branching only at its ends
    assert np.isnan(measure_thickness(np.zeros((28, 28))))
    with pytest.raises(SettingsError, match="Unknown method 'zhang'"):
        measure_thickness(_bar(5), method="zhang")


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


def test_the_measure_is_deterministic() -> None:
    # scikit-image's medial axis breaks ties at random unless seeded: a square-ended bar
    # measured 2.95-3.00 px from one call to the next before the seed.
    bars = np.stack([_bar(3), _bar(5, angle_free=True)])
    first = measure_thickness(bars)
    for _ in range(3):
        np.testing.assert_array_equal(measure_thickness(bars), first)
    np.testing.assert_array_equal(skeleton(bars > 0), skeleton(bars > 0))


def test_thickness_from_upscaled_ink_is_the_measure() -> None:
    # The two steps measure_thickness composes (and set_thickness reuses).
    d = load(4)
    steps = [ink_thickness(upscaled_ink(x)) for x in d["image"]]
    np.testing.assert_array_equal(steps, measure_thickness(d["image"]))
    assert np.isnan(ink_thickness(np.zeros((8, 8), bool)))
    with pytest.raises(SettingsError, match="Unknown method"):
        ink_thickness(upscaled_ink(d["image"][0]), method="zhang")
