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
# # 4. Counterfactual images of real handwritten digits
#
# Morpho-MNIST (Castro et al., JMLR 2019) as used by Pawlowski, Castro & Glocker ("Deep
# Structural Causal Models for Tractable Counterfactual Inference", NeurIPS 2020): 10,000
# real MNIST digits re-rendered by a *known* SCM, vendored in `models/data/morphomnist/`
# (nothing is downloaded):
#
# ```
# thickness = 0.5 + Gamma(10, rate 5)                                     (pixels)
# intensity = 64 + 191 sigmoid(e),  e ~ Normal(2 (thickness - 2.5), 0.5)  (0-255)
# image     = SetIntensity(SetThickness(digit, thickness), intensity)
# ```
#
# The digit is the image's exogenous *style*. We learn the program thickness → intensity →
# image from the pictures, then ask of held-out digits: *what would this digit have looked
# like had its stroke been one pixel thicker? Or 40 grey levels darker? Or 6 px thick, far
# beyond most training digits?* and measure the answers with Morpho-MNIST's own
# morphometry, against the axioms of Monteiro et al. (ICLR 2023).
#
# Set `SCM_PPL_SMOKE=1` for a quick run (used by the test suite): a tiny subset and one
# epoch, whose images are blurs; the numbers in the last section come from full runs.

# %%
import os
import time
from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import jax
import matplotlib.pyplot as plt
import numpy as np
from numpyro import handlers

from models import morpho_mnist
from scm_ppl import counterfactual, fit
from scm_ppl.learn.images import measure_intensity, measure_thickness

SMOKE = os.environ.get("SCM_PPL_SMOKE") == "1"
NUM_TRAIN, NUM_EPOCHS, NUM_TEST = (256, 1, 16) if SMOKE else (9500, 48, 500)
MODEL_KWARGS = {
    "mechanism": "vae",
    "latent_dim": 4 if SMOKE else 32,
    "width": 4 if SMOKE else 16,
    "decoder": "stroke",  # the latent draws the digit, the parents set the pen
}
NUM_SHOWN = 8

HERE = Path(__file__).resolve().parent if "__file__" in globals() else Path.cwd()
OUTPUT = HERE / "output"
OUTPUT.mkdir(exist_ok=True)

# %% [markdown]
# ## The data and the true SCM
#
# `morpho_mnist.load` reads the vendored files: images on [0, 1], each digit's true
# thickness and intensity, and its label. The last 500 digits are held out. The true SCM
# of the two parents is an ordinary NumPyro program, `morpho_mnist.true_model`; its draws
# match the data's attributes.

# %%
train = morpho_mnist.load(NUM_TRAIN)
test = morpho_mnist.load(NUM_TEST, held_out=True)
draws = handlers.trace(handlers.seed(morpho_mnist.true_model, 0)).get_trace(10_000)
for site in ("thickness", "intensity"):
    sim = np.asarray(draws[site]["value"])
    print(
        f"{site:9s} data {train[site].mean():6.2f} ± {train[site].std():5.2f}   "
        f"true SCM {sim.mean():6.2f} ± {sim.std():5.2f}"
    )

# %% [markdown]
# ## The learned program
#
# `morpho_mnist.learnable_model` declares the parents in their true parametric families
# (a shifted log-normal for the thickness, the logistic-normal intensity) with learned
# parameters, and the image as a conditional VAE on both parents
# (`scm_ppl.learn.images.conditional_vae`): its noise is the latent code *and* the pixel
# residual, so abduction (the encoder, then the residual read off exactly) returns every
# factual image unchanged. The digit label is not a parent: it is part of the image's
# noise, which abduction recovers from the pixels.
#
# The decoder here is the *stroke* decoder (`decoder="stroke"`,
# `scm_ppl.learn.images.StrokeDecoder`): a convolutional network draws the digit's ink
# from the latent code alone, and the parents act only through a pen, one half-width and
# one ink level per image (each a softplus of a learned affine map of the parents), that
# inks every pixel within the half-width of the drawing (a soft distance, one
# convolution). That is the form of Morpho-MNIST's own rendering (a skeleton dilated by a
# disc, then scaled in intensity), built into the mechanism: an assumption, stated, that
# fits strokes whose parents are global stroke attributes. While fitting, each inked
# pixel costs half a nat, so the network draws a thin skeleton and leaves the width to
# the pen. The generic decoder (`decoder="conv"`, optionally `film=True`) assumes nothing
# about the image and follows the parents less (the last section). `mechanism="flow"`
# swaps in an exactly invertible conditional normalizing flow (`conditional_flow`).
# `fit` trains all mechanisms jointly with minibatches.

# %%
data = {k: train[k] for k in ("thickness", "intensity", "image")}
start = time.perf_counter()
fitted = fit(
    morpho_mnist.learnable_model,
    data,
    num_epochs=NUM_EPOCHS,
    batch_size=128,
    learning_rate=2e-3,
    progress=not SMOKE,
    model_kwargs=MODEL_KWARGS,
)
print(f"{NUM_EPOCHS} epochs on {NUM_TRAIN} digits: {time.perf_counter() - start:.0f} s")
print("intensity mechanism: weight", float(fitted.params["intensity.weight"]), "(truth 2.0)")

# %% [markdown]
# ## Four worlds, one query
#
# Factual held-out digits as evidence; the worlds: a null intervention (thickness set to
# its own value), do(thickness := t + 1), do(intensity := i − 40, clipped to [70, 250]),
# and do(thickness := 6). One call answers them all from the same abducted noise;
# reversibility needs a second: intervene on the thicker world, then set the thickness
# back.

# %%
evidence = {k: test[k] for k in data}
t, i = test["thickness"], test["intensity"]
i_asked = np.clip(i - 40.0, 70.0, 250.0)
worlds = {
    "null": {"thickness": t},
    "thicker": {"thickness": t + 1.0},
    "darker": {"intensity": i_asked},
    "six": {"thickness": np.full_like(t, 6.0)},
}
kwargs = {**MODEL_KWARGS, "n": len(t)}
result = counterfactual(fitted, evidence, worlds, rng_key=jax.random.key(0), model_kwargs=kwargs)
print("abduction:", result.method)
cf = {w: {k: np.asarray(v[0, 0]) for k, v in result.world(w).items()} for w in worlds}
# The thicker world's image is evidence now: an image, so its pixels are clipped to [0, 1]
# (the carried residual can push a few past 1; evidence outside the site's support is
# refused).
back_evidence = {k: cf["thicker"][k] for k in data}
back_evidence["image"] = np.clip(back_evidence["image"], 0.0, 1.0)
back = counterfactual(
    fitted, back_evidence, {"thickness": t}, rng_key=jax.random.key(0), model_kwargs=kwargs
)
reversed_images = np.asarray(back.world("cf")["image"][0, 0])

# %% [markdown]
# ## Measured, not eyeballed: the axiom table
#
# Morpho-MNIST's morphometry (thickness from the medial axis and distance transform,
# intensity as the median of the stroke) of each counterfactual image on the 0–255 scale.
# The floor is the generator's own thickness step applied to the factual digits: what a
# perfect counterfactual of this generator would score.
# Effectiveness: does the image show what was asked? Composition: does the null
# intervention return the image? Reversibility: does going there and back?

# %%


def px(images: np.ndarray) -> np.ndarray:
    return np.clip(images, 0.0, 1.0) * 255.0


factual = px(test["image"])
thick_measured = measure_thickness(px(cf["thicker"]["image"]))
six_measured = measure_thickness(px(cf["six"]["image"]))
rows = [
    ("thickness effectiveness, do(t := t+1): MAE px", np.mean(np.abs(thick_measured - (t + 1))),
     "<= 0.25"),
    ("intensity effectiveness, do(i := i-40): MAE",
     np.mean(np.abs(measure_intensity(px(cf["darker"]["image"])) - i_asked)), "<= 8"),
    ("intensity under do(t) vs the SCM's own, MAE",
     np.mean(np.abs(measure_intensity(px(cf["thicker"]["image"])) - cf["thicker"]["intensity"])),
     "<= 5"),
    ("composition (null), L1 per pixel", np.mean(np.abs(px(cf["null"]["image"]) - factual)),
     "<= 3"),
    ("reversibility, L1 per pixel", np.mean(np.abs(px(reversed_images) - factual)), "<= 5"),
    ("extrapolation do(t := 6): mean measured px", np.nanmean(six_measured), "6 ± 0.75"),
    ("(morphometry of the factual digits vs truth, MAE px)",
     np.mean(np.abs(measure_thickness(factual) - t)), ""),
    ("(floor: the generator's own do(t := t+1), MAE px)",
     np.mean(np.abs(measure_thickness(morpho_mnist.set_thickness(factual, t + 1)) - (t + 1))), ""),
]  # fmt: skip
print(f"{'metric':55s} {'value':>8s}  goal")
for name, value, goal in rows:
    print(f"{name:55s} {value:8.2f}  {goal}")

# %% [markdown]
# ## The grid

# %%
shown = [
    ("factual", test["image"], measure_thickness(factual)),
    ("do(t := t + 1)", cf["thicker"]["image"], thick_measured),
    ("do(i := i - 40)", cf["darker"]["image"], None),
    ("do(t := 6)", cf["six"]["image"], six_measured),
]
fig, axes = plt.subplots(len(shown), NUM_SHOWN, figsize=(1.3 * NUM_SHOWN, 1.45 * len(shown)))
box = {"facecolor": "white", "alpha": 0.8, "pad": 1, "linewidth": 0}
for r, (label, images, measured) in enumerate(shown):
    for c in range(NUM_SHOWN):
        ax = axes[r, c]
        ax.imshow(np.clip(images[c], 0, 1), cmap="gray", vmin=0, vmax=1)
        ax.set_xticks([])
        ax.set_yticks([])
        if r == 0:
            ax.set_title(f"t={t[c]:.1f}, i={i[c]:.0f}", fontsize=7)
        if measured is not None:  # inside its own image: a label between rows misleads
            ax.text(0.5, 0.03, f"{measured[c]:.1f} px", transform=ax.transAxes, ha="center",
                    va="bottom", fontsize=7, bbox=box)  # fmt: skip
        if c == 0:
            ax.set_ylabel(label, fontsize=8)
fig.suptitle("Held-out Morpho-MNIST digits and their counterfactuals (measured thickness)")
fig.tight_layout()
path = OUTPUT / "04_counterfactual_images.png"
fig.savefig(path, dpi=110)
plt.close(fig)
print("saved", path.relative_to(HERE.parent))

# %% [markdown]
# ## What still fails
#
# Full run (9,500 digits, 48 epochs, stroke decoder, latent 32, width 16; 12 min on 2 CPU
# cores; run 17 of `benchmarks/results/morpho_mnist.md`, whose images are
# `benchmarks/results/morpho_mnist_cf.npz`). The thickness is measured as Morpho-MNIST
# measures it (medial axis). Against it stands a floor: the generator's own thickness
# step (`models.morpho_mnist.set_thickness`), asked the same of the factual digits.
#
# * **Every goal is met in this run.** do(thickness + 1) is measured 0.23 px off the
#   asked value (goal 0.25; the generator's own step, 0.22); do(intensity − 40) 7.9 off
#   (goal 8); under do(thickness) the intensity stays within 4.4 of what the SCM implies
#   (goal 5); the null intervention returns the digit exactly (L1 0.00: the noise view
#   carries the pixel residual) and going to t + 1 and back costs 1.2 per pixel of 255;
#   the digit is read right on 97.2 % of do(thickness) and 97.6 % of do(intensity)
#   images (goal 97 %; the classifier reads 98.0 % of the unchanged digits). Asked for
#   6 px (thicker than 99 % of the training digits), the digits measure 6.27 px on
#   average and 0.71 px off per digit (the generator's own step: 6.99 and 1.03).
# * **It is one run.** Another seed meets five goals of seven and misses two narrowly:
#   intensity effectiveness 8.1 and the digit under do(thickness) 96.6 % (thickness
#   0.25 px, do(t := 6) 6.56 px). The digit goal is stricter than the truth: the
#   classifier reads only 96.4 % of the generator's own do(thickness := t + 1) digits.
#   Intensity stays near 8 because the pen's ink follows the intensity at 0.85 of
#   proportion; the rest rides on the latent code, which do(intensity) leaves alone.
#   Shorter fits missed more: 24 epochs with two seeds gave thickness 0.27 and 0.33 px,
#   the digit under do(thickness) 96.8 and 96.4 %, the intensity held 5.3 and 5.7 (with
#   an earlier pen, whose half-width was a `softplus` and widened the thinnest strokes
#   half as much: 0.28 px at 48 epochs).
# * **What is still visible**: loops that close at 6 px (the 8 above) read as blobs, for
#   the truth as for the model; thin strokes still widen a little less than thick ones.
# * **What the stroke decoder assumes**: the parents act only through one pen width and
#   one ink level per image. That is how Morpho-MNIST draws its digits; for images that
#   are not strokes, or parents that move or restyle the drawing, use the generic
#   decoder (`decoder="conv"`, `film=True`). It moved thickness less (0.48–0.66 px, on
#   session 6's re-implemented morphometry) and lost the digit under do(thickness) more
#   often (86.6–93.2 %); a counterfactual training term (`CounterfactualLoss`) made
#   every one of its metrics worse.
# * The exactly invertible flow (`mechanism="flow"`) composes *and reverses* exactly (L1
#   0.00: no residual, no encoder), but after 3 epochs (7 min on CPU, eight coupling
#   layers of width 16) it barely follows the parents: do(thickness + 1) makes strokes
#   *brighter*, not thicker (measured thickness −0.2 px, MAE 1.30, session 6's
#   morphometry), do(intensity − 40)
#   moves intensity by −15 of the asked −37, and asked for 6 px it draws bright 2 px
#   strokes. It learned thickness through its correlate, intensity.
