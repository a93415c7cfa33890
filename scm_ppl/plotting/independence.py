"""Histogram of the genericity ratios in a :class:`~scm_ppl.GenericityReport`.

Kept apart from ``scm_ppl.independence`` so that importing the package never loads
matplotlib.
"""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.axes import Axes

from scm_ppl.errors import GenericityError
from scm_ppl.independence.genericity import GenericityReport

__all__ = ["plot_genericity"]


def plot_genericity(report: GenericityReport, ax: Axes | None = None, bins: int = 30) -> Axes:
    """Histogram of ``log ρ`` per pair of mechanisms (one colour per pair).

    Pairs with a single value (dense layers, single-channel convolutions) appear as
    vertical lines; ``log ρ = 0`` (generic) is marked.

    Parameters
    ----------
    report
        The result of :func:`~scm_ppl.mechanism_genericity`.
    ax
        Axes to draw on; a new figure by default.
    bins
        Number of histogram bins (shared by all pairs).

    Returns
    -------
    matplotlib.axes.Axes

    Examples
    --------
    >>> import equinox as eqx, jax
    >>> from scm_ppl import mechanism_genericity
    >>> from scm_ppl.plotting import plot_genericity
    >>> net = eqx.nn.MLP(4, 4, 8, depth=2, key=jax.random.key(0))
    >>> rep = mechanism_genericity(net, jax.random.normal(jax.random.key(1), (500, 4)))
    >>> ax = plot_genericity(rep)
    >>> ax.get_xlabel() != ""
    True
    """
    if not isinstance(report, GenericityReport):
        raise GenericityError(
            f"plot_genericity draws a GenericityReport (from mechanism_genericity); got "
            f"{type(report).__name__}."
        )
    if ax is None:
        _, ax = plt.subplots(figsize=(6.0, 3.6))
    values = report.log_ratios
    finite = values[np.isfinite(values)]
    low, high = (float(finite.min()), float(finite.max())) if finite.size else (-1.0, 1.0)
    span = max(high - low, 1e-3)
    edges = np.linspace(min(low, 0.0) - 0.05 * span, max(high, 0.0) + 0.05 * span, bins + 1)
    colours = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for index, ((upstream, mechanism), kind, ratios) in enumerate(
        zip(report.pairs, report.kinds, report.log_ratio_by_pair, strict=True)
    ):
        colour = colours[index % len(colours)]
        label = f"{upstream} → {mechanism} ({kind})"
        flat = np.ravel(ratios)
        if flat.size == 1:
            ax.axvline(float(flat[0]), color=colour, lw=2.0, label=label)
        else:
            ax.hist(
                flat, bins=edges.tolist(), color=colour, alpha=0.55, label=f"{label}, n={flat.size}"
            )
    ax.axvline(0.0, color="#4a4a4a", ls="--", lw=1.0, label="generic (log ρ = 0)")
    ax.set_xlabel("log ρ (genericity ratio)")
    ax.set_ylabel("channel pairs" if values.size > len(report.pairs) else "count")
    ax.set_title("Independence of mechanisms: successive pairs")
    ax.legend(fontsize=8, frameon=False)
    return ax
