"""Tests of ``models.morpho``: the renderer and its measurements, the true SCM's
counterfactuals, and counterfactual images from the learned image SCM.

Everything is measured from pixels (Morpho-MNIST style), never judged by eye: thickness
as stroke area over length, intensity as the brightest pixels, pose (position and angle)
as the ink's centroid and principal axis.
"""

from __future__ import annotations

from typing import Any

import jax
import numpy as np
import pytest

from models import morpho
from scm_ppl import counterfactual, fit

SHIFT = {"thickness": lambda t: t + 1.0}


def test_measured_thickness_rises_monotonically_with_thickness() -> None:
    t = np.linspace(1.5, 5.0, 36)
    for angle, sx, sy in [
        (0.0, 0.0, 0.0),
        (0.3, 1.2, -0.7),
        (np.pi / 2, -1.9, 1.9),
        (2.5, 0.5, 1.0),
    ]:
        measured = morpho.measure_thickness(morpho.render(t, 0.7, angle, sx, sy))
        assert np.all(np.diff(measured) > 0), (angle, measured)
        # Clean renders: the capsule-area formula is accurate to 0.2 px from 2 px up;
        # thinner strokes lying between pixel centres have no fully lit pixel, so their
        # brightness reads low and their thickness up to 0.5 px high.
        np.testing.assert_allclose(measured[t >= 2], t[t >= 2], atol=0.2)
        np.testing.assert_allclose(measured, t, atol=0.5)


def test_measurements_are_accurate_on_noisy_images() -> None:
    data = morpho.sample(3000, seed=5)
    t = data["thickness"]
    inside = t < 4.5  # thicker strokes can reach the border
    err = morpho.measure_thickness(data["image"]) - t
    # Pixel noise (sd 0.02) reads the brightness ~0.02 high, so thickness ~0.06 px low.
    assert abs(err[inside].mean()) < 0.1
    assert np.abs(err[inside]).max() < 0.35
    i_err = morpho.measure_intensity(data["image"]) - data["intensity"]
    assert np.abs(i_err).mean() < 0.03
    pose = morpho.measure_pose(data["image"])
    assert np.abs(pose.x - data["shift_x"]).max() < 0.3
    assert np.abs(pose.y - data["shift_y"]).max() < 0.3
    assert np.abs(morpho.angle_difference(pose.angle, data["angle"])).max() < np.radians(5)


def test_intensity_depends_on_thickness_only_through_its_mechanism() -> None:
    data = morpho.sample(5000, seed=2)
    resid = data["intensity"] - np.asarray(morpho.intensity_mechanism(data["thickness"]))
    se = morpho.INTENSITY_NOISE / np.sqrt(resid.size)
    assert abs(resid.mean()) < 5 * se
    assert abs(resid.std() - morpho.INTENSITY_NOISE) < 0.05 * morpho.INTENSITY_NOISE


def test_true_counterfactual_thickens_the_stroke_in_place() -> None:
    data = morpho.sample(500, seed=3)
    keep = data["thickness"] < 3.5
    data = {k: v[keep] for k, v in data.items()}
    cf = morpho.true_counterfactual(data, **SHIFT)
    rise = morpho.measure_thickness(cf["image"]) - morpho.measure_thickness(data["image"])
    assert abs(rise.mean() - 1.0) < 0.1
    drift = _pose_drift(data["image"], cf["image"])
    assert drift["centroid"].max() < 0.3
    assert drift["angle_deg"].max() < 3.0


# ----------------------------------------------------------------- the learned image SCM


def _pose_drift(factual: np.ndarray, cf: np.ndarray) -> dict[str, np.ndarray]:
    a, b = morpho.measure_pose(factual), morpho.measure_pose(cf)
    return {
        "centroid": np.hypot(b.x - a.x, b.y - a.y),
        "angle_deg": np.degrees(np.abs(morpho.angle_difference(b.angle, a.angle))),
    }


def _held_out(n: int, seed: int) -> dict[str, np.ndarray]:
    """Held-out units with ``thickness + 1`` inside the training range (t < 3.2 -> t' <
    4.2, below the training data's 97th percentile), so the decoder interpolates."""
    data = morpho.sample(n, seed=seed)
    keep = data["thickness"] < 3.2
    return {k: v[keep] for k, v in data.items()}


def _learned_counterfactual(rows: int, epochs: int, held_out: int) -> dict[str, Any]:
    data = morpho.sample(rows, seed=0)
    fitted = fit(
        morpho.learnable_model,
        data,
        num_epochs=epochs,
        batch_size=128,
        learning_rate=1e-2,
        progress=False,
    )
    test = _held_out(held_out, seed=1)
    n = len(test["thickness"])
    result = counterfactual(fitted, test, SHIFT, rng_key=jax.random.key(0), model_kwargs={"n": n})
    pred = result.samples["predictions"]
    image = np.asarray(pred["image"][0, 0, 1])
    truth = morpho.true_counterfactual(test, **SHIFT)
    rise = morpho.measure_thickness(image) - morpho.measure_thickness(test["image"])
    return {
        "method": result.attrs["method"],
        "test": test,
        "image": image,
        "truth": truth,
        "rise": rise,
        "drift": _pose_drift(test["image"], image),
        "intensity": np.asarray(pred["intensity"][0, 0, 1]),
    }


@pytest.fixture(scope="module")
def learned() -> dict[str, Any]:
    return _learned_counterfactual(rows=1500, epochs=20, held_out=300)


@pytest.mark.slow  # trains the image SCM (~1 min on 2 cores); CI runs it
def test_learned_counterfactual_is_exact_abduction(learned: dict[str, Any]) -> None:
    assert learned["method"] == "exact"
    # The learned intensity mechanism carries the unit's own noise to t + 1.
    err = learned["intensity"] - learned["truth"]["intensity"]
    assert np.abs(err).mean() < 0.03


@pytest.mark.slow  # trains the image SCM (~1 min on 2 cores); CI runs it
def test_learned_counterfactual_thickens_the_stroke(learned: dict[str, Any]) -> None:
    rise = learned["rise"]
    # The truth rises by 1 px; the learned decoder, short of converged, by ~0.45 px,
    # on every held-out image.
    assert rise.mean() > 0.3
    assert np.quantile(rise, 0.05) > 0.1


@pytest.mark.slow  # trains the image SCM (~1 min on 2 cores); CI runs it
def test_learned_counterfactual_keeps_the_pose(learned: dict[str, Any]) -> None:
    drift = learned["drift"]
    assert drift["centroid"].mean() < 0.3
    assert np.quantile(drift["centroid"], 0.95) < 0.6
    assert drift["angle_deg"].mean() < 3.0
    assert np.quantile(drift["angle_deg"], 0.95) < 8.0


@pytest.mark.slow
def test_learned_counterfactual_longer_fit() -> None:
    out = _learned_counterfactual(rows=6000, epochs=60, held_out=500)
    assert out["method"] == "exact"
    assert out["rise"].mean() > 0.4
    assert out["drift"]["centroid"].mean() < 0.3
    assert out["drift"]["angle_deg"].mean() < 3.0
    mae = np.abs(out["image"] - out["truth"]["image"]).mean()
    assert mae < 0.04
