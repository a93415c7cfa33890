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
# # 4. Counterfactual images
#
# A small version of the Morpho-MNIST experiment of Pawlowski, Castro & Glocker
# ("Deep Structural Causal Models for Tractable Counterfactual Inference", NeurIPS 2020):
# a stroke's **thickness** causes its **intensity**, and both, with the stroke's pose
# (angle and position, exogenous), cause the **image**. `models.morpho` draws the
# strokes procedurally (nothing is downloaded).
#
# We learn the mechanisms from images, then ask of held-out images: *what would this
# image have looked like had the stroke been one pixel thicker?* The image mechanism is a
# per-pixel additive-noise model, `image = decoder(thickness, intensity, pose) + σ·u`,
# with an Equinox MLP decoder; the per-pixel residual is the noise, so abduction is exact.
#
# Set `SCM_PPL_SMOKE=1` for a quick run (used by the test suite).

# %%
import os
import time
from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import jax
import matplotlib.pyplot as plt
import numpy as np

from models import morpho
from scm_ppl import counterfactual, fit

SMOKE = os.environ.get("SCM_PPL_SMOKE") == "1"
NUM_ROWS, NUM_EPOCHS = (1500, 10) if SMOKE else (6000, 60)
NUM_SHOWN = 8

HERE = Path(__file__).resolve().parent if "__file__" in globals() else Path.cwd()
OUTPUT = HERE / "output"
OUTPUT.mkdir(exist_ok=True)

# %% [markdown]
# ## The data

# %%
data = morpho.sample(NUM_ROWS, seed=0)
print({k: v.shape for k, v in data.items()})
print(
    f"thickness {data['thickness'].mean():.2f} ± {data['thickness'].std():.2f} px, "
    f"intensity {data['intensity'].mean():.2f} ± {data['intensity'].std():.2f}"
)

# %% [markdown]
# ## Learning the mechanisms
#
# `learnable_model` declares a FlowJAX flow for the thickness, an additive-noise MLP for
# the intensity, the pose with its known law, and the image decoder. `fit` learns them
# all by minibatch MAP.

# %%
start = time.perf_counter()
fitted = fit(
    morpho.learnable_model,
    data,
    num_epochs=NUM_EPOCHS,
    batch_size=128,
    learning_rate=1e-2,
    progress=not SMOKE,
)
seconds = time.perf_counter() - start
print(f"{NUM_EPOCHS} epochs on {NUM_ROWS} images: {seconds / NUM_EPOCHS:.2f} s per epoch")
print(f"loss per image: first epoch {fitted.losses[0]:.1f}, last {fitted.losses[-1]:.1f}")

# %% [markdown]
# ## Counterfactuals: do(thickness + 1), do(intensity := 1)
#
# Held-out images with thickness below 3.2 px, so that `thickness + 1` stays within the
# range the decoder saw. Both worlds are answered in one compiled pass, by exact
# inversion of every mechanism.

# %%
test = morpho.sample(400, seed=1)
keep = test["thickness"] < 3.2
test = {k: v[keep] for k, v in test.items()}
n = len(test["thickness"])
worlds = {"thicker": {"thickness": lambda t: t + 1.0}, "brighter": {"intensity": 1.0}}
result = counterfactual(fitted, test, worlds, rng_key=jax.random.key(0), model_kwargs={"n": n})
print("abduction:", result.attrs["method"], "--", result.attrs["method_reason"])
pred = result.samples["predictions"]
thicker = np.asarray(pred["image"][0, 0, 1])
brighter = np.asarray(pred["image"][0, 0, 2])

# %% [markdown]
# ## Measured, not eyeballed
#
# We read thickness, intensity and pose back from the pixels and compare with the true
# counterfactual (`morpho.true_counterfactual`, which knows the renderer).

# %%
truth = morpho.true_counterfactual(test, thickness=lambda t: t + 1.0)
t_factual = morpho.measure_thickness(test["image"])
rise = morpho.measure_thickness(thicker) - t_factual
true_rise = morpho.measure_thickness(truth["image"]) - t_factual
i_change = morpho.measure_intensity(thicker) - morpho.measure_intensity(test["image"])
true_i_change = morpho.measure_intensity(truth["image"]) - morpho.measure_intensity(test["image"])
pf, pc = morpho.measure_pose(test["image"]), morpho.measure_pose(thicker)
centroid = np.hypot(pc.x - pf.x, pc.y - pf.y)
angle = np.degrees(np.abs(morpho.angle_difference(pc.angle, pf.angle)))
print(f"do(thickness + 1) on {n} held-out images:")
print(f"  measured thickness change {rise.mean():+.2f} ± {rise.std():.2f} px", end=" ")
print(f"(truth {true_rise.mean():+.2f})")
print(f"  measured intensity change {i_change.mean():+.3f} (truth {true_i_change.mean():+.3f})")
print(f"  centroid drift {centroid.mean():.3f} px (95%: {np.quantile(centroid, 0.95):.3f})")
print(f"  angle drift {angle.mean():.2f} deg (95%: {np.quantile(angle, 0.95):.2f})")
print(f"  pixel MAE to the true counterfactual {np.abs(thicker - truth['image']).mean():.4f}")
bright_i = morpho.measure_intensity(brighter)
print(f"do(intensity := 1): measured intensity {bright_i.mean():.3f} ± {bright_i.std():.3f}")

# %% [markdown]
# ## The grid

# %%
rows = [
    ("factual", test["image"]),
    ("do(thickness + 1)", thicker),
    ("true do(thickness + 1)", truth["image"]),
    ("do(intensity := 1)", brighter),
]
fig, axes = plt.subplots(len(rows), NUM_SHOWN, figsize=(1.3 * NUM_SHOWN, 1.45 * len(rows)))
for r, (label, images) in enumerate(rows):
    for c in range(NUM_SHOWN):
        ax = axes[r, c]
        ax.imshow(np.clip(images[c], 0, 1), cmap="gray", vmin=0, vmax=1)
        ax.set_xticks([])
        ax.set_yticks([])
        if r == 0:
            ax.set_title(f"t={test['thickness'][c]:.1f}", fontsize=8)
        if r == 1:  # inside its own image: a label between rows reads as the next row's
            box = {"facecolor": "white", "alpha": 0.8, "pad": 1, "linewidth": 0}
            ax.text(0.5, 0.03, f"{rise[c]:+.2f} px", transform=ax.transAxes, ha="center",
                    va="bottom", fontsize=7, bbox=box)  # fmt: skip
        if c == 0:
            ax.set_ylabel(label, fontsize=8)
fig.suptitle("Factual and counterfactual strokes (measured thickness change inside row 2)")
fig.tight_layout()
path = OUTPUT / "04_counterfactual_images.png"
fig.savefig(path, dpi=110)
plt.close(fig)
print("saved", path.relative_to(HERE.parent))

# %% [markdown]
# ## What still fails here, and real digits
#
# On these synthetic strokes the learned `do(thickness + 1)` raises the *measured*
# thickness by well under the true change (issue 19 measured +0.43 px where the truth
# moves +0.97 px, and intensity +0.32 where the truth moves +0.17): part of "thicker"
# comes out as "brighter", the MLP decoder entangling the two parents. The same experiment
# on real handwritten digits
# (Morpho-MNIST, vendored in `models/data/morphomnist/`) runs in
# `benchmarks/morpho_mnist.py` with a conditional-VAE image mechanism
# (`scm_ppl.learn.images.conditional_vae`, exact noise view: latent code + pixel
# residual) and Morpho-MNIST's morphometry (`scm_ppl.learn.images.measure_thickness`).
# Its first CPU run (9,500 digits, 12 epochs, 10 min) meets the composition (L1 0.00),
# reversibility (L1 2.0) and intensity-effectiveness (MAE 7.4 of 255) goals, but moves
# measured thickness only 0.61 px per asked pixel (MAE 0.50 px against the 0.25 goal) and
# reaches 5.0 px when asked for 6: see `benchmarks/results/morpho_mnist.md`.
