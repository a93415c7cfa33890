"""The interval plot of bounds beside the point answers of fitted models (matplotlib)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.axes import Axes
from matplotlib.lines import Line2D

from scm_ppl.errors import BoundsError
from scm_ppl.howfar.bounds.solve import Bounds

__all__ = ["plot_bounds"]

_SHARP = "#2b6cb0"
_OUTER = "#a0aec0"
_MARKERS = "oDs^v<>P*X"


def _as_rows(results: Any) -> list[tuple[str, Bounds]]:
    if isinstance(results, Bounds):
        return [(results.query, results)]
    if isinstance(results, Mapping):
        rows = [(str(k), v) for k, v in results.items()]
    elif isinstance(results, Sequence) and not isinstance(results, str):
        rows = [(b.query if isinstance(b, Bounds) else str(i), b) for i, b in enumerate(results)]
    else:
        rows = [("", results)]
    bad = [label for label, b in rows if not isinstance(b, Bounds)]
    if bad or not rows:
        raise BoundsError(
            "plot_bounds takes a Bounds, a list of them, or a dict {label: Bounds}; "
            f"entries {bad or 'none'} are not Bounds."
        )
    return [(label, b) for label, b in rows if isinstance(b, Bounds)]


def plot_bounds(
    results: Bounds | Sequence[Bounds] | Mapping[str, Bounds],
    points: Mapping[str, Any] | None = None,
    *,
    ax: Axes | None = None,
) -> Axes:
    """Each query's bounds as a horizontal bar, with point answers as markers.

    Parameters
    ----------
    results
        One :class:`~scm_ppl.Bounds`, a list, or ``{label: Bounds}``.
    points
        Point answers of fitted models, ``{model name: value}`` (one query) or
        ``{model name: {label: value}}`` / ``{model name: [value per query]}``.
    ax
        Axes to draw on; a new figure when None.

    Returns
    -------
    matplotlib.axes.Axes
        Sharp bounds are drawn solid, outer (not proven sharp) bounds pale.

    Examples
    --------
    >>> import networkx as nx, numpy as np, xarray as xr
    >>> from scm_ppl.graphical.mixed_graph import ADMG
    >>> from scm_ppl.howfar import ate_bounds
    >>> from scm_ppl.plotting import plot_bounds
    >>> g = ADMG(nx.DiGraph([("X", "Y")]), bidirected=[("X", "Y")])
    >>> p = xr.DataArray(np.array([[0.3, 0.2], [0.1, 0.4]]), dims=("X", "Y"),
    ...                  coords={"X": [0, 1], "Y": [0, 1]})
    >>> ax = plot_bounds({"ATE": ate_bounds(g, p, "X", "Y")}, points={"ATE": 0.4})
    >>> ax.figure.savefig("bounds.png")  # doctest: +SKIP
    """
    rows = _as_rows(results)
    if ax is None:
        _, ax = plt.subplots(figsize=(6.0, 0.6 + 0.55 * len(rows)))
    ys = np.arange(len(rows))[::-1].astype(float)
    for y, (_, b) in zip(ys, rows, strict=True):
        color = _SHARP if b.sharp else _OUTER
        ax.plot([b.lower, b.upper], [y, y], color=color, linewidth=7, solid_capstyle="butt")
        if b.width < 1e-9:
            ax.plot([b.lower], [y], marker="|", markersize=18, color=color)
    handles = [
        Line2D([], [], color=color, linewidth=7, label=label)
        for color, label, kind in ((_SHARP, "sharp bounds", True), (_OUTER, "outer bounds", False))
        if any(b.sharp is kind for _, b in rows)
    ]
    ends = [v for _, b in rows for v in (b.lower, b.upper)]
    labels = [label for label, _ in rows]
    for i, (model, answer) in enumerate((points or {}).items()):
        if isinstance(answer, Mapping):
            values = [answer.get(label, np.nan) for label in labels]
        elif np.ndim(answer) == 0:
            values = [float(answer)] + [np.nan] * (len(rows) - 1)
        else:
            values = list(np.asarray(answer, dtype=float))
        if len(values) != len(rows):
            raise BoundsError(
                f"Point answers of {model!r} have {len(values)} values for {len(rows)} queries."
            )
        offset = 0.18 * (i - (len(points or {}) - 1) / 2) / max(len(points or {}), 1)
        marker = _MARKERS[i % len(_MARKERS)]
        ends += [v for v in values if np.isfinite(v)]
        ax.plot(np.asarray(values, float), ys + offset, linestyle="none", marker=marker,
                markersize=7, markeredgecolor="black", zorder=3)  # fmt: skip
        handles.append(Line2D([], [], linestyle="none", marker=marker, label=str(model),
                              markeredgecolor="black"))  # fmt: skip
    ax.set_yticks(ys, labels)
    ax.set_ylim(ys.min() - 0.7, ys.max() + 0.7)
    ax.set_xlim(min(0.0, *ends) - 0.03, max(1.0, *ends) + 0.03)
    ax.set_xlabel("probability" if min(ends) >= 0 else "value")
    ax.grid(axis="x", alpha=0.3)
    ax.legend(handles=handles, loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=8,
              frameon=False)  # fmt: skip
    return ax
