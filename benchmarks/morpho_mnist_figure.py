"""The documentation's figure of tutorial 04, drawn from a full run's images.

Tutorial 04 in smoke mode (what ``docs/render_figures.sh`` runs) trains for seconds and
draws blurs; the site shows instead the held-out digits and counterfactuals that
``benchmarks/morpho_mnist.py`` saved (``benchmarks/results/morpho_mnist_cf.npz``), in the
tutorial's layout, each image labelled with its measured thickness.

Usage::

    .venv/bin/python benchmarks/morpho_mnist_figure.py \
        docs/tutorials/figures/04_counterfactual_images.png
"""

from __future__ import annotations

import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt
import numpy as np

from scm_ppl.learn.images import measure_thickness

NPZ = Path(__file__).parent / "results" / "morpho_mnist_cf.npz"
SHOWN = 8


def main(out: str) -> None:
    run = np.load(NPZ)
    rows = [
        ("factual", run["factual"]),
        ("do(t := t + 1)", run["thickness_images"]),
        ("do(i := i - 40)", run["intensity_images"]),
        ("do(t := 6)", run["extrapolation_images"]),
    ]
    fig, axes = plt.subplots(len(rows), SHOWN, figsize=(1.3 * SHOWN, 1.45 * len(rows)))
    box = {"facecolor": "white", "alpha": 0.8, "pad": 1, "linewidth": 0}
    for r, (label, images) in enumerate(rows):
        measured = measure_thickness(images[:SHOWN].astype(np.float64))
        for c in range(SHOWN):
            ax = axes[r, c]
            ax.imshow(images[c], cmap="gray", vmin=0, vmax=255)
            ax.set_xticks([])
            ax.set_yticks([])
            if r == 0:
                t, i = run["true_thickness"][c], run["true_intensity"][c]
                ax.set_title(f"t={t:.1f}, i={i:.0f}", fontsize=7)
            if label != "do(i := i - 40)":
                ax.text(0.5, 0.03, f"{measured[c]:.1f} px", transform=ax.transAxes,
                        ha="center", va="bottom", fontsize=7, bbox=box)  # fmt: skip
            if c == 0:
                ax.set_ylabel(label, fontsize=8)
    fig.suptitle("Held-out Morpho-MNIST digits and their counterfactuals (measured thickness)")
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    plt.close(fig)


if __name__ == "__main__":
    main(sys.argv[1])
