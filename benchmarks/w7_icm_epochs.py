"""W7 ICM toy on scm_ppl alone: one training epoch with the ICM penalty against one without.

``fit(..., icm_penalty=λ)`` adds ``λ Σ (log ρ)²`` over successive mechanism pairs, with
the genericity ratio ρ computed inside the loss; its cost is the price of enforcing
independence of mechanisms. Two models (the benchmark's workloads):

* ``w7_icm_dense``: the seed paper's toy, ``models/linear_generator.py`` (dense,
  ``x = W2 W1 z``, n = 12), 2000 noise-free rows in batches of 200, SGD from a small
  initialisation as in ``benchmarks/icm_toy.py`` (λ = 1, the pair ``(W1, W2)`` found by
  itself); the answers are the fitted ρ = trace_ratio(W2, W1 W1ᵀ), the closed-form ρ of
  the balanced factorisation plain SGD converges to, and the relative data fit;
* ``w7_icm_conv``: the conv image generator ``models/conv_generator.py`` on 1000 images
  of ``models/morpho.py`` in batches of 100 (λ = 100, the conv pair found by itself).

Systems: ``scm_ppl`` (plain) and ``scm_ppl[icm]`` (penalised); the *first call* is a
one-epoch fit (trace + compile + run), *steady* the epoch loop of a warm fit divided by
its epochs. Run from the repository root::

    .venv/bin/python -m benchmarks.w7_icm_epochs
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax

from benchmarks.common import Timing, peak_rss_mb
from models import linear_generator as lgen
from scm_ppl import fit
from scm_ppl.independence import trace_ratio

DENSE_ROWS = 2_000
DENSE_BATCH = 200
DENSE_EPOCHS = 120  # enough for plain SGD to reach its balanced ratio at n = 12
DENSE_PENALTY = 1.0
CONV_BATCH = 100
CONV_EPOCHS = 2
CONV_PENALTY = 100.0
CONV_LEARNING_RATE = 3e-3

# One optimizer object: fit caches its compiled epoch per optimizer, so the warm fits
# reuse what the first call compiled.
_SGD = optax.chain(optax.clip_by_global_norm(1.0), optax.sgd(0.3))


def dense_data(dim: int, rows: int = DENSE_ROWS) -> tuple[dict[str, np.ndarray], dict]:
    """Noise-free rows ``{z, x}`` of a generic dense truth (``icm_toy``'s, key 1)."""
    truth = lgen.ground_truth(jax.random.key(1), dim)
    z = np.asarray(jax.random.normal(jax.random.key(100), (rows, dim)))
    return {"z": z, "x": z @ np.asarray(lgen.product(truth)).T}, truth


def dense_fit(data: Mapping[str, np.ndarray], epochs: int, penalty: float) -> Any:
    """Plain (``penalty=0``) or ICM-penalised SGD on the dense linear generator."""
    dim = data["z"].shape[1]
    return fit(
        lgen.model,
        data,
        model_kwargs={"dim": dim, "init_scale": 1e-3},
        batch_size=DENSE_BATCH,
        num_epochs=epochs,
        validation_fraction=0.0,
        progress=False,
        optimizer=_SGD,
        icm_penalty=penalty,
        rng_key=jax.random.key(3),
    )


def dense_answers(fitted: Any, truth: Mapping[str, Any]) -> dict[str, float]:
    """Fitted ρ, the closed-form balanced ρ and the relative fit ``‖M̂ - M‖² / ‖M‖²``."""
    w = fitted.params
    m, m_true = lgen.product(w), lgen.product(truth)
    return {
        "rho": float(trace_ratio(w["W2"], w["W1"] @ w["W1"].T)),
        "balanced_rho": lgen.balanced_ratio(truth),
        "relative_fit": float(jnp.sum((m - m_true) ** 2) / jnp.sum(m_true**2)),
    }


def conv_data(images: int) -> dict[str, np.ndarray]:
    """``images`` strokes of ``models/morpho.py`` with their attributes (seed 1)."""
    from models import morpho

    return morpho.sample(images, seed=1)


def conv_fit(data: Mapping[str, np.ndarray], epochs: int, penalty: float) -> Any:
    """Plain or ICM-penalised Adam on the conv image generator."""
    from models import conv_generator

    return fit(
        conv_generator.model,
        data,
        batch_size=CONV_BATCH,
        num_epochs=epochs,
        validation_fraction=0.0,
        progress=False,
        learning_rate=CONV_LEARNING_RATE,
        icm_penalty=penalty,
        rng_key=jax.random.key(3),
    )


def fit_answers(fitted: Any) -> dict[str, float]:
    """The last epoch's data term (per row) and penalty (0 without one)."""
    history = fitted.history
    penalty = float(history.penalties[-1]) if len(history.penalties) else 0.0
    return {"final_loss": float(history.losses[-1]), "final_penalty": penalty}


def run(system: str, workload: str, size: int, repeats: int) -> tuple[Timing, dict, dict]:
    """The worker's entry: a one-epoch first call, then ``max(repeats, 1)`` warm fits.

    ``size``: the dimension n of the dense toy, the number of images for the conv one.
    """
    penalised = system.endswith("[icm]")
    if workload == "w7_icm_dense":
        data, truth = dense_data(size)
        penalty, epochs = (DENSE_PENALTY if penalised else 0.0), DENSE_EPOCHS

        def train(num_epochs: int) -> Any:
            return dense_fit(data, num_epochs, penalty)
    elif workload == "w7_icm_conv":
        data, truth = conv_data(size), None
        penalty, epochs = (CONV_PENALTY if penalised else 0.0), CONV_EPOCHS

        def train(num_epochs: int) -> Any:
            return conv_fit(data, num_epochs, penalty)
    else:
        raise ValueError(f"unknown W7 workload {workload!r}")
    start = time.perf_counter()
    train(1)  # trace + compile + one epoch
    first = time.perf_counter() - start
    warm = [train(epochs) for _ in range(max(repeats, 1))]
    per_epoch = [f.history.seconds / epochs for f in warm]
    answers = fit_answers(warm[-1])
    if truth is not None:
        answers |= dense_answers(warm[-1], truth)
    extra = {"epochs": epochs, "icm_penalty": penalty}
    return Timing(first, per_epoch), {k: np.asarray(v) for k, v in answers.items()}, extra


def main() -> None:
    for workload, size in (("w7_icm_dense", 12), ("w7_icm_conv", 1_000)):
        seconds = {}
        for system in ("scm_ppl", "scm_ppl[icm]"):
            timing, answers, _ = run(system, workload, size, 1)
            seconds[system] = timing.median_s
            shown = ", ".join(f"{k} {float(v):.4g}" for k, v in answers.items())
            print(f"{workload} {system:13s} epoch {timing.median_s * 1e3:8.1f} ms; {shown}")
        ratio = seconds["scm_ppl[icm]"] / seconds["scm_ppl"]
        print(f"{workload}: penalised / plain epoch {ratio:.2f}")
    print(f"peak RSS {peak_rss_mb():.0f} MB")


if __name__ == "__main__":
    main()
