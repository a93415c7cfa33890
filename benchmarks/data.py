"""Write the data every system reads (one file per workload, same bytes for all).

Runs in the scm_ppl environment (it reads the ground truths in ``models/``); the peers
read the ``.npz`` files with NumPy only.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from typing import Any

import numpy as np

from benchmarks.common import (
    DATA_DIR,
    W2_UNITS,
    W2_X_PRIME,
    W4_HELD_OUT,
    W4_ROWS,
    W4_SHIFT,
    W5_UNITS,
    W5_VALUES,
    data_path,
)
from models import latent_confounder as lc
from models import linear_gaussian_dag as lg
from models import nonlinear as nl


def linear_gaussian_units(n: int, seed: int = 0) -> np.ndarray:
    """``(n, 10)`` fully observed units of the 10-node DAG: ``x = u (I - W)^{-1}``."""
    rng = np.random.default_rng(seed)
    u = rng.standard_normal((n, lg.NUM_NODES)) * lg.NOISE_SCALES
    return u @ np.linalg.inv(np.eye(lg.NUM_NODES) - lg.WEIGHTS)


def w2_observed_x(seed: int = 2) -> np.ndarray:
    """``X`` of :data:`W2_UNITS` units drawn from the latent-confounder model."""
    rng = np.random.default_rng(seed)
    u = rng.normal(0.0, lc.SIGMA_U, W2_UNITS)
    return lc.ALPHA * u + rng.normal(0.0, lc.SIGMA_X, W2_UNITS)


def w4_split() -> tuple[dict[str, np.ndarray], dict[str, np.ndarray], dict[str, np.ndarray]]:
    """Training rows, held-out units and their true counterfactuals under the W4 shift."""
    train = nl.sample(W4_ROWS, seed=0)
    held_out = nl.sample(W4_HELD_OUT, seed=1)
    truth = nl.counterfactual_truth(held_out, {"x2": held_out["x2"] + W4_SHIFT})
    return train, held_out, truth


def write_all(w1_sizes: list[int], force: bool = False) -> None:
    """Write every workload's data file (kept when present unless ``force``)."""
    DATA_DIR.mkdir(parents=True, exist_ok=True)
    common = {"weights": lg.WEIGHTS, "noise_scales": lg.NOISE_SCALES}
    files: dict[str, Callable[[], dict[str, np.ndarray]]] = {
        f"w1_{n}": partial(lambda n: {"x": linear_gaussian_units(n), **common}, n) for n in w1_sizes
    }
    files["lg"] = lambda: dict(common)
    files["w2"] = lambda: {
        "x": w2_observed_x(),
        "x_prime": np.full(W2_UNITS, W2_X_PRIME),
        "consts": np.array([lc.ALPHA, lc.BETA, lc.GAMMA, lc.SIGMA_U, lc.SIGMA_X, lc.SIGMA_Y]),
    }

    def w4() -> dict[str, np.ndarray]:
        train, held_out, truth = w4_split()
        out = {f"train_{k}": v for k, v in train.items()}
        out |= {f"held_{k}": v for k, v in held_out.items()}
        return out | {f"truth_{k}": v for k, v in truth.items()}

    files["w4"] = w4
    files["w5"] = lambda: {
        "x": linear_gaussian_units(W5_UNITS, seed=5),
        "values": np.linspace(-2.0, 2.0, W5_VALUES),
        **common,
    }
    for name, make in files.items():
        if force or not data_path(name).exists():
            arrays: dict[str, Any] = make()
            np.savez(data_path(name), **arrays)
