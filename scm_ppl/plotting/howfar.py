"""Plots of the identifiability diagnostics: the Fisher spectrum with its null block, the
spread of a query across refits, and the posterior contraction curve (matplotlib, loaded
only when a plot is asked for)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import matplotlib.pyplot as plt
import numpy as np

from scm_ppl.errors import SettingsError

__all__ = ["plot_contraction", "plot_fisher_spectrum", "plot_refit_spread"]

_NULL_COLOR = "#d62728"
_RANGE_COLOR = "#1f77b4"


def _note(ax: Any, text: str, x: float, y: float, **style: Any) -> None:
    """Small text at ``x`` in axes fraction (0: left edge, 1: right edge) and ``y`` in data."""
    ax.annotate(text, xy=(x, y), xycoords=("axes fraction", "data"), fontsize=8, **style)


def plot_fisher_spectrum(report: Any, ax: Any = None) -> Any:
    """Eigenvalues of the Fisher information (log scale, descending), the null block in red
    below the dashed tolerance line.

    Null eigenvalues are zero up to rounding; they are drawn at a floor a few decades under
    the tolerance so that the log axis can show them.

    Examples
    --------
    >>> import jax, numpyro, numpyro.distributions as dist
    >>> from scm_ppl import fit, local_identifiability
    >>> from scm_ppl.plotting import plot_fisher_spectrum
    >>> def chain(n):
    ...     a, b = numpyro.param("a", 1.0), numpyro.param("b", 1.0)
    ...     with numpyro.plate("unit", n):
    ...         x = numpyro.sample("x", dist.Normal(0.0, 1.0))
    ...         numpyro.sample("y", dist.Normal(b * a * x, 0.5))
    >>> x = jax.random.normal(jax.random.key(0), (200,))
    >>> data = {"x": x, "y": 1.5 * x}
    >>> fitted = fit(chain, data, num_epochs=50, batch_size=None, progress=False)
    >>> ax = plot_fisher_spectrum(local_identifiability(fitted, data))
    >>> [t.get_text()[:7] for t in ax.get_legend().get_texts()]   # one identified, one null
    ['identif', 'null: 1']
    """
    if ax is None:
        _, ax = plt.subplots(figsize=(6.0, 3.6))
    values = np.asarray(report.eigenvalues, np.float64)
    ranks = np.asarray(report.eigenvalue_ranks) + 1
    tol = float(report.tolerance)
    floor = tol * 1e-3 if tol > 0 else 1e-12
    shown = np.maximum(values, floor)
    null = values <= tol
    ax.scatter(ranks[~null], shown[~null], s=18, color=_RANGE_COLOR, label="identified")
    count = f"{report.null_dim}{'' if report.null_dim_exact else '+'}"
    plural = "" if report.null_dim == 1 and report.null_dim_exact else "s"
    label = f"null: {count} direction{plural} (~0, drawn at the floor)"
    ax.scatter(ranks[null], shown[null], s=18, color=_NULL_COLOR, marker="x", label=label)
    if null.any():
        ax.axvspan(ranks[null].min() - 0.5, ranks[null].max() + 0.5, color=_NULL_COLOR, alpha=0.1)
    ax.axhline(tol, color="0.3", linestyle="--", linewidth=1.0)
    _note(ax, f"tolerance = {report.rtol:g} x largest", 0.02, tol, va="bottom", color="0.3")
    ax.set_yscale("log")
    ax.set_xlabel("eigenvalue rank")
    ax.set_ylabel("Fisher eigenvalue")
    ax.set_title(
        f"Fisher spectrum ({report.num_params} parameters, {report.method}, {report.kind})",
        fontsize=10,
    )
    if ranks.size <= 30:
        ax.set_xticks(ranks)
    # Outside the axes: inside, any corner can hide eigenvalues (a descending spectrum
    # fills the upper left, its null block the lower right).
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=8, frameon=False)
    return ax


def plot_refit_spread(
    spreads: Mapping[str, Any], ax: Any = None, truth: Mapping[str, float] | None = None
) -> Any:
    """One row per query: each refit's answer as a dot (tied fits filled, others hollow),
    the range over tied fits as a bar, and the true value where it is known.

    Parameters
    ----------
    spreads
        ``{query label: RefitSpread}`` (scalar queries).
    ax
        Axes to draw on (default: a new figure).
    truth
        ``{query label: true value}`` for the rows whose answer is known (a simulation),
        drawn as a red diamond so that the spread is read against it.

    Examples
    --------
    >>> import jax, numpyro, numpyro.distributions as dist
    >>> from scm_ppl import refit_ensemble
    >>> from scm_ppl.plotting import plot_refit_spread
    >>> def chain(n):
    ...     a, b = numpyro.param("a", 1.0), numpyro.param("b", 1.0)
    ...     with numpyro.plate("unit", n):
    ...         x = numpyro.sample("x", dist.Normal(0.0, 1.0))
    ...         numpyro.sample("y", dist.Normal(b * a * x, 0.5))
    >>> x = jax.random.normal(jax.random.key(0), (200,))
    >>> ens = refit_ensemble(chain, {"x": x, "y": 1.5 * x}, 3, rng_key=jax.random.key(1),
    ...                      num_epochs=100, learning_rate=0.05)
    >>> spreads = {"a * b": ens.spread(lambda s: s.params["a"] * s.params["b"]),
    ...            "a": ens.spread(lambda s: s.params["a"])}
    >>> ax = plot_refit_spread(spreads, truth={"a * b": 1.5})
    >>> [t.get_text() for t in ax.get_yticklabels()]
    ['a * b', 'a']
    """
    truth = dict(truth or {})
    unknown = sorted(set(truth) - set(spreads))
    if unknown:
        raise SettingsError(
            f"truth has label(s) {unknown} that are not in spreads {sorted(spreads)}; use the "
            "same query labels."
        )
    if ax is None:
        _, ax = plt.subplots(figsize=(6.0, 0.9 + 0.7 * len(spreads)))
    labels = list(spreads)
    for row, label in enumerate(labels):
        spread = spreads[label]
        values = np.asarray(spread.values, np.float64).reshape(len(spread.values), -1)[:, 0]
        tied = np.asarray(spread.tied, bool)
        jitter = np.linspace(-0.12, 0.12, len(values))
        y = row + jitter
        ax.plot(
            [values[tied].min(), values[tied].max()],
            [row, row],
            color="0.6",
            linewidth=6,
            alpha=0.5,
            solid_capstyle="butt",
        )
        ax.scatter(values[tied], y[tied], s=22, color=_RANGE_COLOR, zorder=3)
        if (~tied).any():
            ax.scatter(values[~tied], y[~tied], s=22, facecolors="none", edgecolors="0.4", zorder=3)
        _note(ax, f"range {spread.summary['range']:.3g}", 1.02, row, va="center")
        if label in truth:
            ax.scatter([float(truth[label])], [row], s=60, marker="D", color=_NULL_COLOR, zorder=4)
    ax.set_yticks(range(len(labels)))
    ax.set_yticklabels(labels)
    ax.set_ylim(-0.6, len(labels) - 0.4)
    ax.invert_yaxis()
    key = "; red diamond: the truth" if truth else ""
    ax.set_xlabel(f"answer of each refit (filled: tied with the best fit{key})")
    ax.set_title("Spread of answers across equally good refits", fontsize=10)
    ax.margins(x=0.1)
    return ax


def plot_contraction(results: Mapping[str, Any], ax: Any = None) -> Any:
    """Posterior sd of each query against the number of rows (log-log), with the fitted
    line, its slope, and a dotted ``n^{-1/2}`` reference.

    Parameters
    ----------
    results
        ``{query label: ContractionResult}``.

    Examples
    --------
    >>> import numpy as np
    >>> from scm_ppl.howfar import ContractionResult
    >>> from scm_ppl.plotting import plot_contraction
    >>> n = np.array([100, 400, 1600])
    >>> res = ContractionResult(sizes=n, posterior_sd=n ** -0.5, posterior_mean=np.zeros(3),
    ...                         slope=-0.5, intercept=0.0, verdict="identified",
    ...                         slope_tolerance=0.15, method="nuts", num_draws=500)
    >>> ax = plot_contraction({"w": res})
    >>> ax.get_xscale(), ax.get_yscale()
    ('log', 'log')
    """
    if ax is None:
        _, ax = plt.subplots(figsize=(5.5, 3.8))
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for i, (label, res) in enumerate(results.items()):
        color = colors[i % len(colors)]
        n = np.asarray(res.sizes, np.float64)
        ax.scatter(n, res.posterior_sd, color=color, zorder=3)
        grid = np.geomspace(n.min(), n.max(), 50)
        ax.plot(
            grid,
            np.exp(res.intercept) * grid**res.slope,
            color=color,
            label=f"{label}: slope {res.slope:+.2f} ({res.verdict})",
        )
    first = next(iter(results.values()))
    n = np.asarray(first.sizes, np.float64)
    ref = first.posterior_sd[0] * (n / n[0]) ** -0.5
    ax.plot(n, ref, color="0.5", linestyle=":", label="reference slope -1/2")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("rows of data n")
    ax.set_ylabel("posterior sd of the query")
    ax.set_title("Posterior contraction", fontsize=10)
    ax.legend(fontsize=8, loc="upper center", bbox_to_anchor=(0.5, -0.2), ncol=1)
    return ax
