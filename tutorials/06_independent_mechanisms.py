# ---
# jupyter:
#   jupytext:
#     formats: py:percent
#     text_representation:
#       extension: .py
#       format_name: percent
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # 6. Independent mechanisms: which factorisation of a generator extrapolates?
#
# A generative model is a chain of mechanisms (layers) whose intermediate nodes are never
# observed. Observational data fix the *output* distribution, not the factorisation: many
# pairs of layers give the same images, yet they answer differently when one layer is
# changed — an intervention on a *mechanism*, the kind of extrapolation a generator is
# asked for ("draw thicker strokes", "zoom in").
#
# **What the paper claims** (Besserve, Sun, Janzing & Schölkopf, "A theory of independent
# mechanisms for extrapolation in generative models", AAAI 2021): among the factorisations
# that fit, keep those whose successive mechanisms are *generic* with respect to each other
# (independence of mechanisms, ICM); measure genericity with group-invariance ratios —
# the trace ratio for linear maps, the spectral density ratio for convolutions, both 1 for
# a generic pair; plain (stochastic) gradient descent can produce *non-generic*
# factorisations that extrapolate badly, and enforcing genericity in training fixes that.
#
# **What this tutorial derives and checks** (our derivation, in §1 below, not a quote of
# the paper): for a two-layer linear generator trained from small initialisation, the
# exact ratio that gradient descent converges to, the factor by which it mispredicts a
# generic intervention, and that the ICM penalty of `fit` removes it. Then the same
# questions on a small convolutional image generator.
#
# Tools used: `fit(..., icm_penalty=λ)`, `do_mechanism` with `rotate` / `stretch`,
# `trace_ratio`, `spectral_density_ratio`. Set `SCM_PPL_SMOKE=1` for a quick run.

# %%
import os
from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import jax
import jax.numpy as jnp
import matplotlib.pyplot as plt
import numpy as np
import optax

from models import linear_generator as lg
from scm_ppl import (
    do_mechanism,
    fit,
    plot_learning_curve,
    rotate,
    spectral_density_ratio,
    trace_ratio,
)

SMOKE = os.environ.get("SCM_PPL_SMOKE") == "1"
DIM = 12  # n: dimension of z, h and x
NUM_ROWS = 2_000
EPOCHS = 30 if SMOKE else 120  # 10 SGD steps (batches of 200 rows) per epoch
CHECKPOINTS = [5, 15] if SMOKE else [5, 10, 20, 40, 80, 120]
INIT_SCALES = [1e-3, 0.3] if SMOKE else [1e-3, 1e-2, 0.1, 0.3, 0.6, 1.0]
NUM_ROTATIONS = 8 if SMOKE else 64

HERE = Path(__file__).resolve().parent if "__file__" in globals() else Path.cwd()
OUTPUT = HERE / "output"
OUTPUT.mkdir(exist_ok=True)

# %% [markdown]
# ## 1. The derivation (ours)
#
# **Setting.** `z ~ N(0, I_n)`, `h = W1 z`, `x = W2 h` (the program
# `models.linear_generator.model`, with a unit-variance Gaussian likelihood on `x`, so
# fitting is least squares). The data fix `M = W2 W1`. Write `τ(A) = tr(A)/n`,
# `Σ_H = W1 W1ᵀ` (the hidden layer's covariance) and `Σ_X = M Mᵀ`. The genericity of the
# second mechanism with respect to its input is the trace ratio
# `ρ = τ(W2 Σ_H W2ᵀ) / (τ(W2 W2ᵀ) τ(Σ_H))`.
#
# **(a) Gradient descent balances the layers.** With `G = (M* − W2 W1) Σ_Z`, gradient flow
# is `Ẇ1 = W2ᵀ G`, `Ẇ2 = G W1ᵀ`, so
# `d/dt (W1 W1ᵀ) = W2ᵀ G W1ᵀ + W1 Gᵀ W2 = d/dt (W2ᵀ W2)`: the difference
# `W2ᵀW2 − W1W1ᵀ` is conserved. From a small initialisation it starts (and stays) ≈ 0:
# the fit is *balanced*. A balanced factorisation of `M = U S Vᵀ` has `W1 = O S^{1/2} Vᵀ`,
# `W2 = U S^{1/2} Oᵀ` for an orthogonal `O` (the singular values of the two layers must be
# equal and multiply to `S`). Then `Σ_H = O S Oᵀ`, `W2 Σ_H W2ᵀ = U S² Uᵀ` and
#
# `ρ_bal = τ(S²) / τ(S)² = τ(Σ_X) / τ(Σ_X^{1/2})² ≥ 1`,
#
# by Cauchy–Schwarz, with equality only when every singular value of `M` is the same. For a
# circular convolution the same argument per frequency gives `|k̂1| = |k̂2| = |m̂|^{1/2}`
# and `ρ_bal = ⟨S_X⟩ / ⟨√S_X⟩²` with `S_X = |m̂|²`.
#
# **(b) A non-generic fit mispredicts extrapolation.** Change the first mechanism
# generically: `W1 → Q W1`, `Q` a Haar-random rotation (the hidden covariance becomes
# `Q Σ_H Qᵀ`, with no relation to `W2`). Since `E_Q[Q A Qᵀ] = τ(A) I`,
#
# `E_Q τ(Σ_X') = τ(W2 W2ᵀ) τ(Σ_H) = τ(Σ_X) / ρ`.
#
# A generic truth has `ρ* ≈ 1` (concentration in high dimension), so its output power is
# kept; the balanced fit predicts `1/ρ_bal` of it.
#
# **(c) The penalty.** `fit(..., icm_penalty=λ)` adds `λ (log ρ)²`. Every `ρ = 1`
# factorisation of `M` (for example `W1 = I`) has zero penalty and the same data fit, so
# the penalised optimum keeps the fit and extrapolates by `τ(Σ_X)/1`, like the truth.

# %% [markdown]
# ## 2. Ground truth and data
#
# `W1*, W2*` with i.i.d. `N(0, 1/n)` entries (`lg.ground_truth`); this key gives a truth
# whose own ratio is ≈ 1 and whose balanced ratio is large.

# %%
truth = lg.ground_truth(jax.random.key(1), DIM)
m_true = lg.product(truth)
z = np.asarray(jax.random.normal(jax.random.key(100), (NUM_ROWS, DIM)))
data = {"z": z, "x": z @ np.asarray(m_true).T}  # noise-free outputs
closed_form = lg.balanced_ratio(truth)
print(f"truth's ratio ρ* = {float(trace_ratio(truth['W2'], truth['W1'] @ truth['W1'].T)):.4f}")
print(f"closed-form ratio of the balanced factorisation ρ_bal = {closed_form:.4f}")

# %% [markdown]
# ## 3. Fitting: plain SGD from small initialisation vs the ICM penalty
#
# Both fits run `fit` with minibatch SGD (lr 0.3, batches of 200): the conservation law
# holds step by step up to O(lr²), so SGD stays balanced too. The only extra is a
# gradient-norm clip: `log ρ` is scale-invariant, so at a tiny initialisation its gradient
# is huge (∝ 1/‖W‖); the clip acts only during the first steps of the penalised fit.


# %%
def optimizer() -> optax.GradientTransformation:
    return optax.chain(optax.clip_by_global_norm(1.0), optax.sgd(0.3))


def fit_toy(init_scale: float, epochs: int, penalty: float = 0.0):
    return fit(
        lg.model,
        data,
        model_kwargs={"dim": DIM, "init_scale": init_scale},
        optimizer=optimizer(),
        batch_size=200,
        num_epochs=epochs,
        validation_fraction=0.0,
        icm_penalty=penalty,
        progress=False,
        rng_key=jax.random.key(3),
    )


def ratio(w) -> float:
    return float(trace_ratio(w["W2"], w["W1"] @ w["W1"].T))


def relative_fit(w) -> float:
    m = lg.product(w)
    return float(jnp.sum((m - m_true) ** 2) / jnp.sum(m_true**2))


ROTATIONS = []
rng = np.random.default_rng(11)
for _ in range(NUM_ROTATIONS):
    q, r = np.linalg.qr(rng.standard_normal((DIM, DIM)))
    ROTATIONS.append(q * np.sign(np.diag(r)))  # Haar-distributed


def extrapolated_power(program_or_weights) -> float:
    """Output power τ(Σ_X') averaged over generic changes W1 → Q W1 (via do_mechanism)."""
    powers = []
    for q in ROTATIONS:
        if isinstance(program_or_weights, dict):
            w = {**program_or_weights, "W1": q @ np.asarray(program_or_weights["W1"])}
        else:
            w = do_mechanism(program_or_weights, {"W1": rotate(q, side="output")}).params
        powers.append(float(np.sum(np.square(np.asarray(w["W2"]) @ np.asarray(w["W1"])))) / DIM)
    return float(np.mean(powers))


plain = fit_toy(1e-3, EPOCHS)
penalised = fit_toy(1e-3, EPOCHS, penalty=1.0)
observed_power = float(jnp.sum(m_true**2)) / DIM
true_power = extrapolated_power(dict(truth))
rows = [
    ("truth", dict(truth), true_power),
    ("plain SGD", plain.params, extrapolated_power(plain)),
    ("SGD + ICM penalty", penalised.params, extrapolated_power(penalised)),
]
print(f"{'':18s} {'ρ':>7s} {'rel. data fit':>14s} {'power after W1→QW1':>19s} {'1/ρ':>6s}")
for label, w, power in rows:
    print(
        f"{label:18s} {ratio(w):7.4f} {relative_fit(w):14.2e} "
        f"{power / observed_power:19.4f} {1 / ratio(w):6.4f}"
    )
print(f"closed form ρ_bal = {closed_form:.4f}; 'power' is relative to the observed τ(Σ_X)")

# %% [markdown]
# The plain fit reaches the closed-form ρ_bal and the same data fit as the penalised one;
# after a generic change of the first layer it predicts `≈ 1/ρ_bal` of the output power
# while the truth keeps it. The penalised fit extrapolates like the truth. Its learning
# curve shows the data term and the penalty (dashed, log scale) falling together:

# %%
ax = plot_learning_curve(penalised)
ax.set_title("fit(..., icm_penalty=1.0) on the linear generator")
ax.figure.savefig(OUTPUT / "06_penalty_learning_curve.png", dpi=110)
plt.close(ax.figure)

# %% [markdown]
# ## 4. Against training steps and initialisation scale
#
# ρ and the extrapolation error `|P_fit − P_truth| / P_truth` of the power after the
# generic change, for fits stopped after more and more epochs, and for plain fits started
# from larger and larger initialisations (a large initialisation is not balanced, so the
# conservation law no longer pins the factorisation to ρ_bal).

# %%
by_steps = {"plain SGD": [], "SGD + ICM penalty": []}
for epochs in CHECKPOINTS:
    for label, penalty in (("plain SGD", 0.0), ("SGD + ICM penalty", 1.0)):
        fitted = fit_toy(1e-3, epochs, penalty)
        error = abs(extrapolated_power(fitted) - true_power) / true_power
        by_steps[label].append((10 * epochs, ratio(fitted.params), error))
by_init = []
for scale in INIT_SCALES:
    fitted = fit_toy(scale, EPOCHS)
    error = abs(extrapolated_power(fitted) - true_power) / true_power
    by_init.append((scale, ratio(fitted.params), error, relative_fit(fitted.params)))
print("init scale   ρ (plain)   extrapolation error   rel. data fit")
for scale, rho, error, rel in by_init:
    print(f"{scale:10.3g} {rho:11.4f} {error:21.4f} {rel:15.2e}")

fig, axes = plt.subplots(1, 3, figsize=(13, 3.6), layout="constrained")
for label, color in (("plain SGD", "#222222"), ("SGD + ICM penalty", "#c0392b")):
    steps, rhos, errors = np.asarray(by_steps[label]).T
    axes[0].plot(steps, rhos, "o-", color=color, label=label)
    axes[1].plot(steps, errors, "o-", color=color, label=label)
axes[0].axhline(closed_form, color="#888888", linestyle="--", label="closed form ρ_bal")
axes[0].axhline(1.0, color="#888888", linestyle=":", label="generic (ρ = 1)")
axes[0].set(xlabel="SGD steps", ylabel="ρ = trace ratio(W2, Σ_H)", xscale="log")
axes[1].axhline(1 - 1 / closed_form, color="#888888", linestyle="--", label="1 − 1/ρ_bal")
axes[1].set(xlabel="SGD steps", ylabel="extrapolation error of power", xscale="log")
scales, rhos, errors, _ = np.asarray(by_init).T
axes[2].plot(scales, rhos, "o-", color="#222222", label="ρ (plain SGD)")
axes[2].plot(scales, errors, "s--", color="#2471a3", label="extrapolation error")
axes[2].axhline(closed_form, color="#888888", linestyle="--", label="ρ_bal")
axes[2].set(
    xlabel="initialisation scale", xscale="log", yscale="log", title=f"after {10 * EPOCHS} steps"
)
for ax in axes:
    ax.legend(frameon=False, fontsize=8)
fig.suptitle("Linear generator x = W2 W1 z (n = 12): genericity and extrapolation")
fig.savefig(OUTPUT / "06_toy_ratio_and_extrapolation.png", dpi=110)
plt.close(fig)

# %% [markdown]
# The circular-convolution generator behaves the same way, with the spectral closed form
# `⟨S_X⟩/⟨√S_X⟩²`. (A real-valued frequency — zero, and `n/2` — whose initial sign
# disagrees with the target's has to cross a saddle, which slows SGD down there.)

# %%
conv_truth = lg.ground_truth(jax.random.key(2), DIM, kind="conv")
z_conv = lg.circular_convolve(conv_truth["k2"], lg.circular_convolve(conv_truth["k1"], z))
conv_plain = fit(
    lg.model,
    {"z": z, "x": np.asarray(z_conv)},
    model_kwargs={"dim": DIM, "kind": "conv", "init_scale": 1e-3},
    optimizer=optimizer(),
    batch_size=200,
    num_epochs=EPOCHS,
    validation_fraction=0.0,
    progress=False,
    rng_key=jax.random.key(3),
)
k1, k2 = conv_plain.params["k1"], conv_plain.params["k2"]
conv_rho = float(spectral_density_ratio(k2, jnp.abs(jnp.fft.fft(k1)) ** 2))
print(
    f"conv: SDR of the plain fit {conv_rho:.4f}, closed form "
    f"{lg.balanced_ratio(conv_truth, kind='conv'):.4f}"
)

# %% [markdown]
# ## 5. A convolutional image generator, trained with and without the penalty
#
# `models.conv_generator`: a conditional decoder from the stroke's attributes (thickness,
# intensity, angle, position; the true laws of `models.morpho`) to a 20×20 image — a linear
# layer to a 16×5×5 feature map, then twice "upsample ×2, 5×5 convolution" (`conv1`:
# 16 → 8 channels, `conv2`: 8 → 1). `fit(..., icm_penalty=λ)` detects the conv pair
# `(decoder.conv1, decoder.conv2)` and penalises the mean over channel pairs of
# `(log SDR)²`, with the input spectrum of `conv2` taken as the output spectrum of `conv1`
# for white input (`Σ_j |k̂1_ij|²`). The per-row data loss here is in the hundreds (400
# pixels at noise scale 0.05), so λ is set to match it.

# %%
import scm_ppl._plot_independence as plot_independence
from models import conv_generator as cg
from models import morpho
from scm_ppl import mechanism_genericity, stretch

IMAGE_ROWS = 200 if SMOKE else 3_000
IMAGE_EPOCHS = 1 if SMOKE else 40
PENALTY = 100.0
images = morpho.sample(IMAGE_ROWS, seed=1)
image_fits = {}
for label, penalty in (("plain", 0.0), ("ICM penalty", PENALTY)):
    image_fits[label] = fit(
        cg.model,
        images,
        batch_size=100,
        num_epochs=IMAGE_EPOCHS,
        learning_rate=3e-3,
        validation_fraction=0.0,
        icm_penalty=penalty,
        progress=False,
    )
held_out = morpho.sample(500, seed=2)
for label, fitted in image_fits.items():
    mse = np.mean((cg.mean_images(fitted.params, held_out) - held_out["image"]) ** 2)
    print(f"{label:12s}: held-out pixel MSE {mse:.5f} (pixel noise variance 0.0004)")

# %% [markdown]
# **Genericity of the trained layers.** `mechanism_genericity(network, inputs)` records
# each layer's input on real decoder inputs and returns `log SDR` per channel pair of
# `conv2` (w.r.t. the measured spectrum of its input) and the trace ratio of the dense
# pairs. A generic pair sits at `log ρ = 0`.

# %%
inputs = morpho.decoder_inputs(
    held_out["thickness"],
    held_out["intensity"],
    (held_out["angle"], held_out["shift_x"], held_out["shift_y"]),
)
reports = {}
fig, axes = plt.subplots(1, 2, figsize=(11, 3.6), layout="constrained", sharex=True)
for ax, (label, fitted) in zip(axes, image_fits.items(), strict=True):
    network = fitted.params["decoder$params"]
    reports[label] = mechanism_genericity(network, inputs)
    plot_independence.plot_genericity(reports[label], ax=ax)
    ax.set_title(f"{label}: log ρ of successive layers")
    conv_pairs = [
        np.asarray(v).ravel()
        for kind, v in zip(reports[label].kinds, reports[label].log_ratio_by_pair, strict=True)
        if kind == "conv"
    ]
    values = np.concatenate(conv_pairs) if conv_pairs else np.zeros(0)
    print(
        f"{label:12s}: conv channel pairs: mean |log SDR| {np.mean(np.abs(values)):.3f}, "
        f"sd {np.std(values):.3f} over {values.size} pairs"
    )
fig.savefig(OUTPUT / "06_image_generator_log_sdr.png", dpi=110)
plt.close(fig)

# %% [markdown]
# **Extrapolation: `stretch(2)` on the intermediate layer `conv1`.** `do_mechanism` dilates
# every 5×5 kernel of `conv1` by two (`ĥ(ν) → ĥ(2ν)`, resampled on the kernel's own
# grid). We measure what it does to the generated strokes: thickness (Morpho-MNIST's
# area/length), the stroke's length along its principal axis (√(12 · variance)), total ink
# and mean brightness, on the same held-out attributes, for both trainings.


# %%
def stroke_measures(pictures: np.ndarray) -> dict[str, np.ndarray]:
    ink = np.clip(pictures, 0.0, None) * (pictures > 0.1)
    mass = np.maximum(ink.sum(axis=(-2, -1)), 1e-9)  # an inkless image has no centroid
    grid = np.arange(morpho.IMAGE_SIZE) - (morpho.IMAGE_SIZE - 1) / 2
    gy, gx = np.meshgrid(grid, grid, indexing="ij")
    mx = (ink * gx).sum(axis=(-2, -1)) / mass
    my = (ink * gy).sum(axis=(-2, -1)) / mass
    dx, dy = gx - mx[:, None, None], gy - my[:, None, None]
    cxx = (ink * dx * dx).sum(axis=(-2, -1)) / mass
    cyy = (ink * dy * dy).sum(axis=(-2, -1)) / mass
    cxy = (ink * dx * dy).sum(axis=(-2, -1)) / mass
    major = 0.5 * (cxx + cyy) + np.sqrt(0.25 * (cxx - cyy) ** 2 + cxy**2)
    return {
        "thickness": morpho.measure_thickness(pictures),
        "length": np.sqrt(12.0 * major),
        "ink": mass,
        "brightness": morpho.measure_intensity(pictures),
    }


truth_measures = stroke_measures(held_out["image"])
print(f"{'':28s}" + "".join(f"{k:>12s}" for k in truth_measures))
print(f"{'data':28s}" + "".join(f"{np.nanmean(v):12.3f}" for v in truth_measures.values()))
generated = {}
for label, fitted in image_fits.items():
    stretched = do_mechanism(fitted, {"decoder.conv1": stretch(2.0)})
    for version, program in (("as fitted", fitted), ("conv1 stretched x2", stretched)):
        pictures = cg.mean_images(program.params, held_out)
        generated[(label, version)] = pictures
        measures = stroke_measures(pictures)
        print(
            f"{label + ', ' + version:28s}"
            + "".join(f"{np.nanmean(v):12.3f}" for v in measures.values())
        )
for label in image_fits:
    before = stroke_measures(generated[(label, "as fitted")])
    after = stroke_measures(generated[(label, "conv1 stretched x2")])
    change = {k: np.nanmean(after[k]) / np.nanmean(before[k]) for k in before}
    print(
        f"{label:12s} stretch(2) changes: " + ", ".join(f"{k} ×{v:.2f}" for k, v in change.items())
    )

fig, axes = plt.subplots(5, 6, figsize=(9, 7.8), layout="constrained")
rows = [("data", held_out["image"])] + [
    (f"{label}\n{version}", pictures) for (label, version), pictures in generated.items()
]
for row, (title, pictures) in zip(axes, rows, strict=True):
    for k, ax in enumerate(row):
        ax.imshow(pictures[k], cmap="gray", vmin=0.0, vmax=1.0)
        ax.set_xticks([])
        ax.set_yticks([])
    row[0].set_ylabel(title, fontsize=8)
fig.suptitle("stretch(2) on the intermediate layer conv1: plain vs ICM-penalised training")
fig.savefig(OUTPUT / "06_stretch_images.png", dpi=110)
plt.close(fig)

# %% [markdown]
# The table above is the measurement. In our full run (40 epochs on 3000 images, 2 CPU
# cores) both trainings fit equally well (held-out pixel MSE 0.0017 for both) and
# `stretch(2)` on `conv1` does *not* extrapolate gracefully for either: the strokes break
# up (plain: thickness ×1.21, length ×1.78, ink ×1.85; penalised: thickness ×0.67, length
# ×1.27, ink ×0.56). The penalty did not make the measured `log SDR` of `conv1 → conv2`
# concentrate at 0 either: it constrains the ratio computed for a *white* input to
# `conv1` (weights only), while `mechanism_genericity` measures it against the recorded,
# strongly coloured input (upsampled feature maps). What the toy establishes exactly does
# not carry over to this small network without a penalty on the measured input spectrum;
# marking the feature map as a site and passing `icm_pairs=[(site, layer)]` is the way to
# penalise that (see `fit`'s docstring) — not done here.
