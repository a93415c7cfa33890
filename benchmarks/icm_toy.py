"""The seed paper's toy finding, as numbers: ``python -m benchmarks.icm_toy``.

Fits the two-layer linear generator ``x = W2 W1 z`` (``models/linear_generator.py``) to
noise-free data with ``scm_ppl.fit`` — plain SGD from a small initialisation, and the same
with ``icm_penalty`` — and prints, next to the truth:

* the genericity ratio ρ = trace_ratio(W2, W1 W1ᵀ) (for conv: the spectral density ratio)
  and the closed-form ratio of the balanced factorisation;
* the relative data fit ``‖M̂ - M‖² / ‖M‖²``;
* the output power after a generic intervention on the first mechanism, relative to the
  observed power; the derivation predicts ``1/ρ``. Dense: ``W1 → Q W1``, ``Q`` Haar,
  averaged over rotations, each applied with ``do_mechanism``; circular: ``k1``'s
  frequency response shifted by every ``Δ`` (``lg.shifted_output_power``);
* the time of a penalised epoch over a plain one (steady state, compile excluded).

SGD steps: 0.3 for the dense layers, ``0.3 / n`` for the circular kernels (a kernel tap
moves ``n`` entries of the circulant; at 0.3 the conv fit stalls at relative fit 0.047).

Timings are noisy on a shared machine; rerun to compare.
"""

from __future__ import annotations

import argparse
import time

import jax
import jax.numpy as jnp
import numpy as np
import optax

from models import linear_generator as lg
from scm_ppl import do_mechanism, fit
from scm_ppl.independence import spectral_density_ratio, trace_ratio
from scm_ppl.learn import rotate

ROWS = 2_000
EPOCHS = 120
BATCH = 200
DENSE_TRUTH_KEY = 1  # own ratio 0.998, balanced ratio 1.76
CONV_TRUTH_KEY = 162  # own spectral ratio 0.991, balanced ratio 2.19


def _optimizer(lr: float = 0.3) -> optax.GradientTransformation:
    return optax.chain(optax.clip_by_global_norm(1.0), optax.sgd(lr))


def learning_rate(kind: str, dim: int) -> float:
    """0.3 for dense layers; ``0.3 / n`` for circular kernels, whose taps are each shared by
    ``n`` entries of the circulant (the same step in matrix terms)."""
    return 0.3 if kind == "dense" else 0.3 / dim


def _data(truth: dict, dim: int, kind: str) -> dict[str, np.ndarray]:
    z = np.asarray(jax.random.normal(jax.random.key(100), (ROWS, dim)))
    x = (
        np.asarray(lg.circular_convolve(truth["k2"], lg.circular_convolve(truth["k1"], z)))
        if (kind == "conv")
        else z @ np.asarray(lg.product(truth)).T
    )
    return {"z": z, "x": x}


def _ratio(w: dict, kind: str) -> float:
    if kind == "dense":
        return float(trace_ratio(w["W2"], w["W1"] @ w["W1"].T))
    return float(spectral_density_ratio(w["k2"], jnp.abs(jnp.fft.fft(w["k1"])) ** 2))


def _haar(dim: int, count: int, seed: int = 11) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(count):
        q, r = np.linalg.qr(rng.standard_normal((dim, dim)))
        out.append(q * np.sign(np.diag(r)))
    return out


def _extrapolated_power(program_or_weights, dim: int) -> float:
    powers = []
    for q in _haar(dim, 64):
        if isinstance(program_or_weights, dict):
            w = {**program_or_weights, "W1": q @ np.asarray(program_or_weights["W1"])}
        else:
            w = do_mechanism(program_or_weights, {"W1": rotate(q, side="output")}).params
        powers.append(float(np.sum(np.square(np.asarray(w["W2"]) @ np.asarray(w["W1"])))) / dim)
    return float(np.mean(powers))


def toy(dim: int, kind: str, truth_key: int, init_scale: float, epochs: int) -> dict:
    truth = lg.ground_truth(jax.random.key(truth_key), dim, kind)
    data = _data(truth, dim, kind)
    pairs = [("k1", "k2")] if kind == "conv" else None
    common = dict(
        model_kwargs={"dim": dim, "kind": kind, "init_scale": init_scale},
        batch_size=BATCH,
        num_epochs=epochs,
        validation_fraction=0.0,
        progress=False,
        rng_key=jax.random.key(3),
    )
    lr = learning_rate(kind, dim)
    plain = fit(lg.model, data, optimizer=_optimizer(lr), **common)
    penalised = fit(
        lg.model, data, optimizer=_optimizer(lr), icm_penalty=1.0, icm_pairs=pairs, **common
    )
    m_true = lg.product(truth, kind)
    rows = {}
    for label, w in (
        ("truth", dict(truth)),
        ("plain SGD", plain.params),
        ("SGD + ICM penalty", penalised.params),
    ):
        m = lg.product(w, kind)
        row = {
            "rho": _ratio(w, kind),
            "relative fit": float(jnp.sum((m - m_true) ** 2) / jnp.sum(m_true**2)),
        }
        observed = float(jnp.sum(m_true**2)) / dim
        if kind == "dense":
            source = w if label == "truth" else (plain if label == "plain SGD" else penalised)
            power = _extrapolated_power(source, dim)
        else:
            power = float(np.mean(lg.shifted_output_power(w)))
        row["extrapolated power / observed"] = power / observed
        row["1/rho"] = 1.0 / row["rho"]
        rows[label] = row
    return {"closed form": lg.balanced_ratio(truth, kind), "rows": rows}


def epoch_time_ratio(dim: int, epochs: int) -> tuple[float, float]:
    """Seconds per epoch, penalised and plain, after a warm-up fit of each (compiled)."""
    truth = lg.ground_truth(jax.random.key(1), dim)
    data = _data(truth, dim, "dense")
    common = dict(
        model_kwargs={"dim": dim, "init_scale": 1e-3},
        batch_size=BATCH,
        validation_fraction=0.0,
        progress=False,
        optimizer=_optimizer(0.05),
    )
    seconds = {}
    for penalty in (0.0, 1.0):
        fit(lg.model, data, num_epochs=2, icm_penalty=penalty, **common)  # compile
        start = time.perf_counter()
        fit(lg.model, data, num_epochs=epochs, icm_penalty=penalty, **common)
        seconds[penalty] = (time.perf_counter() - start) / epochs
    return seconds[1.0], seconds[0.0]


def image_epoch_time_ratio(epochs: int) -> tuple[float, float]:
    """Seconds per epoch of the conv image generator (models/conv_generator.py, 1000
    images in batches of 100), penalised (λ = 100, ``conv2`` against the averaged
    periodogram of its recorded input on each minibatch) and plain, after a warm-up fit."""
    from models import conv_generator, morpho

    images = morpho.sample(1_000, seed=1)
    common = dict(batch_size=100, validation_fraction=0.0, progress=False, learning_rate=3e-3)
    options = {
        0.0: {},
        100.0: {
            "model_kwargs": {"record_features": True},
            "icm_pairs": [("features", "decoder.conv2")],
        },
    }
    seconds = {}
    for penalty, extra in options.items():
        kwargs = {**common, **extra, "icm_penalty": penalty}
        fit(conv_generator.model, images, num_epochs=1, **kwargs)
        start = time.perf_counter()
        fit(conv_generator.model, images, num_epochs=epochs, **kwargs)
        seconds[penalty] = (time.perf_counter() - start) / epochs
    return seconds[100.0], seconds[0.0]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer epochs (smoke run)")
    args = parser.parse_args()
    epochs = 20 if args.quick else EPOCHS
    for kind, dim, key in (("dense", 12, DENSE_TRUTH_KEY), ("conv", 12, CONV_TRUTH_KEY)):
        result = toy(dim, kind, key, 1e-3, epochs)
        print(
            f"\n{kind} linear generator, n = {dim}: closed-form balanced ratio "
            f"{result['closed form']:.4f}"
        )
        for label, row in result["rows"].items():
            cells = ", ".join(f"{k} {v:.4g}" for k, v in row.items())
            print(f"  {label:18s} {cells}")
    for dim in (12, 256):
        penalised, plain = epoch_time_ratio(dim, 10 if args.quick else 50)
        print(
            f"\nepoch time, n = {dim}, {ROWS} rows in batches of {BATCH}: penalised "
            f"{1e3 * penalised:.2f} ms, plain {1e3 * plain:.2f} ms, ratio {penalised / plain:.2f}"
        )
    penalised, plain = image_epoch_time_ratio(1 if args.quick else 3)
    print(
        f"\nepoch time, conv image generator (1000 images, batches of 100): penalised "
        f"{penalised:.2f} s, plain {plain:.2f} s, ratio {penalised / plain:.2f}"
    )


if __name__ == "__main__":
    main()
