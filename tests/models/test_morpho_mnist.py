"""The generator's thickness step, `models.morpho_mnist.set_thickness`: true counterfactual
strokes of do(thickness) for the real digits."""

import numpy as np
import pytest

from models.morpho_mnist import load, set_thickness
from scm_ppl.errors import DataError
from scm_ppl.learn.images import measure_thickness


def test_redrawn_at_its_own_thickness_a_digit_keeps_its_stroke() -> None:
    d = load(8)
    same = set_thickness(d["image"], d["thickness"])
    assert same.shape == d["image"].shape
    # The disc's radius is a whole number of upscaled pixels: up to a quarter pixel of
    # stroke comes or goes (the CSV's thicknesses are the generator's asked values).
    assert np.mean(np.abs(measure_thickness(same) - d["thickness"])) < 0.2
    np.testing.assert_allclose(same.max(axis=(1, 2)), d["image"].max(axis=(1, 2)), rtol=1e-6)


def test_thinner_asks_give_thinner_strokes_and_keep_the_ink_level() -> None:
    d = load(6)
    thin = measure_thickness(set_thickness(d["image"], 1.5))
    thick = measure_thickness(set_thickness(d["image"], 5.0))
    assert np.all(thin < thick)
    assert abs(np.mean(thin) - 1.5) < 0.4 and abs(np.mean(thick) - 5.0) < 0.4


@pytest.mark.parametrize(
    ("images", "thickness", "match"),
    [
        (np.zeros((2, 20, 20)), 2.0, r"shaped \(28, 28\)"),
        (np.full((28, 28), np.nan), 2.0, "finite images"),
        (np.zeros((2, 28, 28)), [2.0, -1.0], "positive, finite thicknesses"),
    ],
)
def test_bad_input_is_refused(images: np.ndarray, thickness, match: str) -> None:
    with pytest.raises(DataError, match=match):
        set_thickness(images, thickness)
