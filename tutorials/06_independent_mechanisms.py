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
# `trace_ratio`, `spectral_density_ratio`. Set `SCM_PPL_SMOKE=1` for a quick run. The
# full run takes about a minute of CPU: it loads the four image decoders of §5–6 from
# `tutorials/cache/`, where this very code saved them after training them (≈ 6 more minutes
# of CPU); `SCM_PPL_RETRAIN=1` trains them again and reproduces every number below.

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
from scm_ppl import do_mechanism, fit
from scm_ppl.independence import spectral_density_ratio, trace_ratio
from scm_ppl.learn import rotate
from scm_ppl.plotting import plot_learning_curve

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
# ρ and the error are different quantities: each gets its own labelled axis.
axes[2].plot(scales, rhos, "o-", color="#222222", label="ρ (plain SGD)")
axes[2].axhline(closed_form, color="#888888", linestyle="--", label="ρ_bal")
axes[2].set(
    xlabel="initialisation scale",
    ylabel="ρ = trace ratio(W2, Σ_H)",
    xscale="log",
    title=f"after {10 * EPOCHS} steps",
)
error_ax = axes[2].twinx()
error_ax.plot(scales, errors, "s--", color="#2471a3", label="extrapolation error (right)")
error_ax.set_yscale("log")
error_ax.set_ylabel("extrapolation error of power", color="#2471a3")
error_ax.tick_params(axis="y", colors="#2471a3")
for ax in axes[:2]:
    ax.legend(frameon=False, fontsize=8)
handles = axes[2].get_legend_handles_labels()[0] + error_ax.get_legend_handles_labels()[0]
axes[2].legend(handles=handles, frameon=False, fontsize=8)
fig.suptitle("Linear generator x = W2 W1 z (n = 12): genericity and extrapolation")
fig.savefig(OUTPUT / "06_toy_ratio_and_extrapolation.png", dpi=110)
plt.close(fig)

# %% [markdown]
# ### The circular-convolution generator
#
# The same three findings with circular convolutions `h = k1 ⊛ z`, `x = k2 ⊛ h`
# (full-length kernels, `kind="conv"`), the spectral density ratio
# `ρ = ⟨|k̂2|² S_H⟩ / (⟨|k̂2|²⟩⟨S_H⟩)` with `S_H = |k̂1|²`, and the closed form
# `ρ_bal = ⟨S_X⟩/⟨√S_X⟩²`. The generic change of the first mechanism is now a *shift of its
# frequency response* by `Δ` bins, `k̂1(ν) → k̂1(ν − Δ)` (the modulation
# `k1[t] → e^{2πiΔt/n} k1[t]`); averaged over all `n` shifts the output power is exactly
# `⟨|k̂2|²⟩⟨|k̂1|²⟩ = τ(Σ_X)/ρ` (`lg.shifted_output_power`). The truth (key 162) has
# `ρ* = 0.991`: with n = 12 there are only 7 distinct frequencies, so the ratio of random
# kernels spreads by about ±10% and we chose a truth that is generic, as the setting
# assumes.
#
# **The step size.** A kernel tap is shared by the `n` entries of a circulant diagonal, so
# an SGD step on `k1`, `k2` moves the end-to-end map `n` times as far as the same step on
# dense matrices. At the dense step (0.3) SGD cannot settle at the strongest frequency (it
# hovers at a lower gain with the wrong phase: relative fit stuck at 0.047, the same after
# 400 epochs as after 120; at 0.6 it is 0.20, at 0.1 6e-3, at 0.05 1.6e-3). With the step
# scaled to `0.3 / n` both fits converge to machine precision.

# %%
CONV_TRUTH_KEY = 162
conv_truth = lg.ground_truth(jax.random.key(CONV_TRUTH_KEY), DIM, kind="conv")
m_conv = lg.product(conv_truth, "conv")
conv_data = {"z": z, "x": z @ np.asarray(m_conv).T}  # the circulant of k2 ⊛ k1


def fit_conv_toy(penalty: float = 0.0):
    return fit(
        lg.model,
        conv_data,
        model_kwargs={"dim": DIM, "kind": "conv", "init_scale": 1e-3},
        optimizer=optax.chain(optax.clip_by_global_norm(1.0), optax.sgd(0.3 / DIM)),
        batch_size=200,
        num_epochs=EPOCHS,
        validation_fraction=0.0,
        icm_penalty=penalty,
        icm_pairs=[("k1", "k2")] if penalty else None,
        progress=False,
        rng_key=jax.random.key(3),
    )


def spectral_ratio(w) -> float:
    return float(spectral_density_ratio(w["k2"], jnp.abs(jnp.fft.fft(w["k1"])) ** 2))


conv_observed = float(jnp.sum(m_conv**2)) / DIM
conv_rows = [
    ("truth", dict(conv_truth)),
    ("plain SGD", fit_conv_toy().params),
    ("SGD + ICM penalty", fit_conv_toy(1.0).params),
]
print(f"{'conv':18s} {'ρ':>7s} {'rel. data fit':>14s} {'power after shifts':>19s} {'1/ρ':>6s}")
for label, w in conv_rows:
    m = lg.product(w, "conv")
    rel = float(jnp.sum((m - m_conv) ** 2) / jnp.sum(m_conv**2))
    power = float(np.mean(lg.shifted_output_power(w))) / conv_observed
    rho = spectral_ratio(w)
    print(f"{label:18s} {rho:7.4f} {rel:14.2e} {power:19.4f} {1 / rho:6.4f}")
print(f"closed form ρ_bal = {lg.balanced_ratio(conv_truth, kind='conv'):.4f}")

# %% [markdown]
# As in the dense case: the plain fit lands on the closed-form `ρ_bal` and predicts
# `1/ρ_bal` of the power after a generic change of `k1`; the penalised fit reaches `ρ = 1`
# at the same (exact) data fit and extrapolates like the truth (full run: plain ρ 2.194
# vs closed form 2.189, power 0.456; penalised ρ 1.0000, power 1.000; truth 1.009).

# %% [markdown]
# ## 5. A convolutional image generator, trained with and without the penalty
#
# `models.conv_generator`: a conditional decoder from the stroke's attributes (thickness,
# intensity, angle, position; the true laws of `models.morpho`) to a 20×20 image — a linear
# layer to a 16×5×5 feature map, then twice "upsample ×2, 5×5 convolution" (`conv1`:
# 16 → 8 channels, `conv2`: 8 → 1). With `record_features=True` the program also records
# `conv2`'s actual input, the upsampled feature map `(8, 20, 20)`, as a per-unit
# deterministic site `"features"`, and `icm_pairs=[("features", "decoder.conv2")]` makes
# the penalty the mean over the 8 channel pairs of `(log SDR)²`, with the input spectrum
# the *averaged periodogram of that feature map on each minibatch* — the same quantity
# `mechanism_genericity` measures afterwards, differentiable through `conv1` and the
# linear layer. (Without `icm_pairs`, `fit` would detect the pair `(conv1, conv2)` and
# use the spectrum `conv1` gives a *white* input, `Σ_j |k̂1_ij|²`, a different quantity:
# the real input of `conv1` is far from white. The previous version of this tutorial did
# that and saw no change in the mean |log SDR| pooled over all 136 conv channel pairs,
# 0.637 with the penalty and 0.636 without — a number dominated by the 128 unpenalised
# `linear → conv1` pairs; below, each pair is reported apart.) The per-row data
# loss is in the hundreds (400 pixels at noise scale 0.05), so λ = 100.

# %%
import hashlib

import scm_ppl.plotting.independence as plot_independence
from models import conv_generator as cg
from models import morpho
from scm_ppl import FittedSCM, mechanism_genericity
from scm_ppl.learn import stretch

IMAGE_ROWS = 200 if SMOKE else 3_000
IMAGE_EPOCHS = 1 if SMOKE else 40
PENALTY = 100.0
FEATURE_PAIR = [("features", "decoder.conv2")]


# Training the four decoders of §5–6 is most of this tutorial's time (≈ 4 of 5.5 minutes
# on 2 CPU cores). Full mode therefore keeps each trained decoder in `tutorials/cache/`
# (FittedSCM.save: arrays and JSON, no pickle; a few hundred kB in all), named by a hash of
# its training data and settings, and loads it on the next run; the files shipped there
# are exactly what `fit_images` below trains (training is deterministic on CPU: a fresh
# run reproduces every number printed below). `SCM_PPL_RETRAIN=1` trains them again.
CACHE = HERE / "cache"
RETRAIN = os.environ.get("SCM_PPL_RETRAIN") == "1"


def fit_images(data, penalty: float, seed: int = 0):
    """The conv decoder fitted to ``data``; with the penalty on conv2 vs its feature map."""
    kwargs: dict = {"seed": seed}
    if penalty:
        kwargs["record_features"] = True
    settings = (IMAGE_EPOCHS, 100, 3e-3, penalty, seed, FEATURE_PAIR)  # as passed to fit below
    digest = hashlib.sha256(repr(settings).encode())
    for name in sorted(data):
        digest.update(np.ascontiguousarray(data[name]).tobytes())
    cached = CACHE / f"06_decoder_{digest.hexdigest()[:16]}.npz"
    if not SMOKE and not RETRAIN and cached.exists():
        return FittedSCM.load(cached, cg.model, model_kwargs=kwargs)
    fitted = fit(
        cg.model,
        data,
        model_kwargs=kwargs,
        batch_size=100,
        num_epochs=IMAGE_EPOCHS,
        learning_rate=3e-3,
        validation_fraction=0.0,
        icm_penalty=penalty,
        icm_pairs=FEATURE_PAIR if penalty else None,
        progress=False,
    )
    if not SMOKE:
        CACHE.mkdir(exist_ok=True)
        fitted.save(cached)
    return fitted


images = morpho.sample(IMAGE_ROWS, seed=1)
image_fits = {
    label: fit_images(images, p) for label, p in (("plain", 0.0), ("ICM penalty", PENALTY))
}
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
    for (upstream, mechanism), ratios in zip(
        reports[label].pairs, reports[label].log_ratio_by_pair, strict=True
    ):
        values = np.ravel(ratios)
        print(
            f"{label:12s}: {upstream} → {mechanism}: log SDR {np.mean(values):+.3f} ± "
            f"{np.std(values):.3f} over {values.size} channel pairs"
        )
fig.savefig(OUTPUT / "06_image_generator_log_sdr.png", dpi=110)
plt.close(fig)

# %% [markdown]
# **Extrapolation: `stretch(2)` on the intermediate layer `conv1`.** `do_mechanism` dilates
# every 5×5 kernel of `conv1` by two (`ĥ(ν) → ĥ(2ν)`, resampled on the kernel's own
# grid). By default `stretch` then rescales each kernel so that its sum (its gain at zero
# frequency) is unchanged, because cutting the dilated tails lowers it — by at most
# ×α² = ×4, and only kernels with a real gain at zero frequency (sum ≥ a tenth of their
# absolute mass, same sign before and after); `keep_dc=False` skips that rescaling. We
# measure what each does to the generated strokes: thickness
# (Morpho-MNIST's area/length), the stroke's length along its principal axis
# (√(12 · variance)), total ink and mean brightness, on the same held-out attributes, for
# both trainings.


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


STRETCHES = {"stretch(2)": stretch(2.0), "stretch(2, keep_dc=False)": stretch(2.0, keep_dc=False)}


def stretched_images(fits: dict, units: dict) -> dict[tuple[str, str], np.ndarray]:
    """Mean images of each fit as fitted and under each stretch of conv1."""
    out = {}
    for label, fitted in fits.items():
        out[(label, "as fitted")] = cg.mean_images(fitted.params, units)
        for name, change in STRETCHES.items():
            program = do_mechanism(fitted, {"decoder.conv1": change})
            out[(label, name)] = cg.mean_images(program.params, units)
    return out


def print_stretch_table(images_by: dict, reference: np.ndarray, title: str) -> None:
    columns = list(stroke_measures(reference))
    print(f"{title:40s}" + "".join(f"{k:>11s}" for k in columns))
    print(
        f"{'  measured means':40s}"
        + "".join(f"{np.nanmean(v):11.3f}" for v in stroke_measures(reference).values())
    )
    for (label, version), pictures in images_by.items():
        if version == "as fitted":
            before = stroke_measures(pictures)
            print(
                f"{'  ' + label:40s}" + "".join(f"{np.nanmean(v):11.3f}" for v in before.values())
            )
            continue
        after = stroke_measures(pictures)
        ratios = (np.nanmean(after[k]) / np.nanmean(before[k]) for k in columns)
        print(f"{'    ' + version + ': ×':40s}" + "".join(f"{r:11.2f}" for r in ratios))


generated = stretched_images(image_fits, held_out)
print_stretch_table(generated, held_out["image"], "data / fit, then change under the stretch")
for label, fitted in image_fits.items():
    weight = fitted.params["decoder$params"].conv1.weight
    cut = np.asarray(STRETCHES["stretch(2, keep_dc=False)"](weight).sum(axis=(2, 3)))
    kept = np.asarray(STRETCHES["stretch(2)"](weight).sum(axis=(2, 3)))
    naive = np.abs(np.asarray(weight.sum(axis=(2, 3))) / cut)
    rescaled = ~np.isclose(kept, cut)
    print(
        f"{label:12s}: keep_dc rescales {rescaled.sum()} of conv1's {cut.size} kernels, by "
        f"×{np.median((kept / cut)[rescaled]):.2f} (median); old/new sums would reach "
        f"×{naive.max():.0f} on the kernels whose taps cancel"
    )

fig, axes = plt.subplots(7, 6, figsize=(9, 10.5), layout="constrained")
rows = [("data", held_out["image"])] + [
    (f"{label}\n{version}", pictures) for (label, version), pictures in generated.items()
]
for row, (title, pictures) in zip(axes, rows, strict=True):
    for k, ax in enumerate(row):
        ax.imshow(pictures[k], cmap="gray", vmin=0.0, vmax=1.0)
        ax.set_xticks([])
        ax.set_yticks([])
    row[0].set_ylabel(title, fontsize=7)
fig.suptitle("stretch(2) on the intermediate layer conv1: plain vs ICM-penalised training")
fig.savefig(OUTPUT / "06_stretch_images.png", dpi=110)
plt.close(fig)

# %% [markdown]
# **What the full run measures** (40 epochs on 3000 images, 2 CPU cores; one training
# each). Both trainings fit equally well (held-out pixel MSE 0.00173 plain, 0.00170
# penalised). The penalty does what it says: the measured `conv1 → conv2` log SDR is
# +0.009 ± 0.030 over the 8 channel pairs with it, +0.309 ± 0.503 without (the
# unpenalised `linear → conv1` pair stays at ≈ +0.6 ± 0.4 in both). But neither training
# makes strokes *thicker* under `stretch(2)` of `conv1`; both shrink and fade them:
#
# | change of conv1 | training | thickness | length | ink | brightness |
# |---|---|---|---|---|---|
# | `stretch(2)` | plain | ×0.60 | ×0.65 | ×0.27 | ×0.37 |
# | `stretch(2)` | penalised | ×0.60 | ×0.63 | ×0.24 | ×0.34 |
# | `stretch(2, keep_dc=False)` | plain | ×0.72 | ×0.65 | ×0.15 | ×0.20 |
# | `stretch(2, keep_dc=False)` | penalised | ×0.83 | ×0.70 | ×0.18 | ×0.21 |
#
# Two things to know, both measured. (i) Many learned 5×5 kernels of `conv1` have taps
# that nearly cancel; restoring *their* sum would multiply them by up to ×104 (plain) or
# ×407 (penalised) and let one channel pair dominate the image (an earlier version of
# `stretch` did that, and the penalised network's ink went ×38). `stretch` now leaves
# such kernels alone and bounds the rescaling by α². (ii) More fundamentally, there is
# nothing to compare with: the stroke images are drawn from a distance field
# (`models.morpho`), not by a chain of convolutions, so the data have no "true `conv1`"
# and no true answer to `stretch(2)` — the paper's claim is about generators whose
# mechanisms *are* generic. §6 builds such a truth.

# %% [markdown]
# ## 6. With a generic ground truth: a convolutional teacher
#
# On the stroke images there is no true `conv1` to stretch: `models.morpho` draws a stroke
# from a distance field, not through a chain of convolutions, so "what `stretch(2)` should
# do" has no ground truth and neither training can be said to extrapolate *correctly*. To
# test the paper's claim itself we need a generator that *is* a chain of generic
# mechanisms. We take the ICM-penalised decoder of §5 as the teacher (its measured
# `conv1 → conv2` log SDR is ≈ 0: a generic truth), draw new training images from it (same
# attributes, pixel noise 0.02), and fit two students from a different initialisation
# (`seed=1`), plain and penalised. Now the truth's answer to `stretch(2)` is known — the
# teacher's stretched images — and the *extrapolation error* is the mean squared
# difference between a student's stretched images and the teacher's, relative to the
# teacher's image power (the *fit error* is the same for the unstretched images).

# %%
teacher = image_fits["ICM penalty"]
teacher_data = dict(images)
noise = np.random.default_rng(5).standard_normal(images["image"].shape)
teacher_data["image"] = cg.mean_images(teacher.params, images) + 0.02 * noise.astype(np.float32)
students = {
    "teacher": teacher,
    "plain student": fit_images(teacher_data, 0.0, seed=1),
    "penalised student": fit_images(teacher_data, PENALTY, seed=1),
}
student_images = stretched_images(students, held_out)
print_stretch_table(student_images, student_images[("teacher", "as fitted")], "teacher / students")
for label in ("plain student", "penalised student"):
    network = students[label].params["decoder$params"]
    log_sdr = np.ravel(mechanism_genericity(network, inputs).log_ratio_by_pair[-1])
    cells = []
    for version in ("as fitted", *STRETCHES):
        truth_images = student_images[("teacher", version)]
        error = np.mean((student_images[(label, version)] - truth_images) ** 2)
        cells.append(f"{version} {error / np.mean(truth_images**2):.4f}")
    print(
        f"{label:18s} conv1→conv2 log SDR {np.mean(log_sdr):+.3f} ± {np.std(log_sdr):.3f}; "
        "relative error: " + ", ".join(cells)
    )

# %%
fig, axes = plt.subplots(3, 6, figsize=(9, 4.8), layout="constrained")
for row, label in zip(axes, students, strict=True):
    pictures = student_images[(label, "stretch(2, keep_dc=False)")]
    for k, ax in enumerate(row):
        # Each row on its own grey scale: the dilated strokes are faint.
        ax.imshow(pictures[k], cmap="gray", vmin=0.0, vmax=float(np.max(pictures[:6])))
        ax.set_xticks([])
        ax.set_yticks([])
    row[0].set_ylabel(label, fontsize=8)
fig.suptitle("stretch(2, keep_dc=False) on conv1: the generic teacher and its two students")
fig.savefig(OUTPUT / "06_teacher_students_stretch.png", dpi=110)
plt.close(fig)

# %% [markdown]
# **What the full run measures.** The generic teacher (log SDR +0.009 ± 0.030) is fitted
# by both students to the same relative error (1.41% plain, 1.48% penalised). The plain
# student is *not* generic although its truth is: log SDR +0.451 ± 0.429 (penalised
# student −0.008 ± 0.035) — plain SGD picked a different, non-generic factorisation of
# the same images, the paper's point. Under the pure dilation
# `stretch(2, keep_dc=False)` the penalised student follows the teacher more closely:
#
# | | thickness | length | ink | rel. extrapolation error |
# |---|---|---|---|---|
# | teacher (truth) | ×0.83 | ×0.70 | ×0.18 | — |
# | plain student | ×0.54 | ×0.51 | ×0.10 | 0.169 |
# | penalised student | ×0.75 | ×0.69 | ×0.16 | 0.113 |
#
# i.e. a third less extrapolation error at the same fit; the figure above (each row on its
# own grey scale) shows the penalised student's dilated strokes keeping the teacher's
# shape where the plain student's are more distorted. Under the default `stretch(2)`
# (with the DC renormalisation) the errors are larger for both, 0.590 plain and 0.484
# penalised — the penalised student again closer, by a sixth; the renormalisation
# depends on which kernels pass its low-pass test, a detail of each network's weights
# that a fit of the teacher's *outputs* does not pin down. Limits of this evidence: one
# teacher, one training per student, 40 epochs (neither student fits the teacher to the
# pixel noise), and only the `conv1 → conv2` pair is penalised.
