"""Legends never hide what they describe, and their keys look like what is drawn (issue 20).

The overlap checks work in display coordinates after a draw: a legend's bounding box
against every plotted point (scatter offsets) and every node patch. They catch the whole
class of defect ("upper right" over a spectrum's tail), not one figure's instance.
"""

from __future__ import annotations

from collections.abc import Iterator
from types import SimpleNamespace

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt
import networkx as nx
import numpy as np
import pytest
from matplotlib.axes import Axes
from matplotlib.patches import Circle, Rectangle

from scm_ppl.errors import SettingsError
from scm_ppl.plotting import plot_fisher_spectrum, plot_graph, plot_refit_spread


@pytest.fixture(autouse=True)
def _close_figures() -> Iterator[None]:
    yield
    plt.close("all")


def _legend_box(ax: Axes):
    ax.figure.canvas.draw()
    legend = ax.get_legend()
    assert legend is not None
    return legend.get_window_extent()


def _points(ax: Axes) -> np.ndarray:
    """Every scatter point of the axes, in display coordinates."""
    found = [
        c.get_offset_transform().transform(np.asarray(c.get_offsets()))
        for c in ax.collections
        if len(c.get_offsets())
    ]
    return np.concatenate(found) if found else np.zeros((0, 2))


def _hidden(ax: Axes) -> np.ndarray:
    box = _legend_box(ax)
    pts = _points(ax)
    inside = (
        (pts[:, 0] >= box.x0)
        & (pts[:, 0] <= box.x1)
        & (pts[:, 1] >= box.y0)
        & (pts[:, 1] <= box.y1)
    )
    return pts[inside]


def _spectrum(values: list[float], tol: float) -> SimpleNamespace:
    v = np.asarray(values)
    null = int(np.sum(v <= tol))
    return SimpleNamespace(eigenvalues=v, eigenvalue_ranks=np.arange(v.size), tolerance=tol,
                           null_dim=null, null_dim_exact=True, rtol=tol / v[0],
                           num_params=v.size, method="map", kind="observed")  # fmt: skip


@pytest.mark.parametrize(
    "values",
    [
        # tutorial 07's right panel: eight eigenvalues, a slow tail, three null directions
        [40.0, 9.0, 3.0, 1.2, 0.9, 1e-12, 1e-13, 1e-14],
        # a flat spectrum fills the top of the axes from left to right
        [1.0, 0.99, 0.98, 0.97, 0.96, 0.95, 0.94, 0.93],
        # a spectrum whose tail sits at the upper right corner of a log axis
        [1.0, 1.0, 1.0, 1.0, 1e-14, 1e-14, 1.0, 1.0],
    ],
)
def test_fisher_spectrum_legend_hides_no_eigenvalue(values: list[float]) -> None:
    _, axes = plt.subplots(1, 2, figsize=(9, 3.4))  # a narrow panel, as in tutorial 07
    ax = plot_fisher_spectrum(_spectrum(values, tol=1e-6), ax=axes[1])
    assert len(_points(ax)) == len(values)
    assert not len(_hidden(ax)), f"legend covers points at {_hidden(ax)}"


def test_graph_legend_covers_no_node() -> None:
    g = nx.DiGraph([("z", "x"), ("x", "y"), ("z", "y"), ("y", "w"), ("x", "w")])
    g.nodes["x"]["observed"] = True
    ax = plot_graph(g)
    box = _legend_box(ax)
    for patch in ax.patches:
        if str(patch.get_gid()).startswith("node:"):
            assert not box.overlaps(patch.get_window_extent()), patch.get_gid()


def _key(ax: Axes, label: str):
    legend = ax.get_legend()
    labels = [t.get_text() for t in legend.get_texts()]
    return legend.legend_handles[labels.index(label)]


def test_hard_intervened_square_has_a_square_key() -> None:
    # A hard intervention makes the site a constant, drawn as a (red) square.
    g = nx.DiGraph([("x", "y")])
    g.nodes["x"].update(intervened=True, kind="deterministic")
    ax = plot_graph(g)
    assert isinstance(_key(ax, "intervened"), Rectangle)
    g.nodes["x"].update(kind="sample")
    ax = plot_graph(g)
    assert isinstance(_key(ax, "intervened"), Circle)


def test_endogenous_nodes_are_latent_only_next_to_observed_ones() -> None:
    g = nx.DiGraph([("x", "y")])
    labels = [t.get_text() for t in plot_graph(g).get_legend().get_texts()]
    assert "endogenous" in labels and "latent" not in labels
    g.nodes["x"]["observed"] = True
    labels = [t.get_text() for t in plot_graph(g).get_legend().get_texts()]
    assert "latent" in labels and "endogenous" not in labels


def _spread(values: list[float]) -> SimpleNamespace:
    v = np.asarray(values)
    return SimpleNamespace(values=v, tied=np.ones(v.size, bool),
                           summary={"range": float(v.max() - v.min())})  # fmt: skip


def test_refit_spread_marks_the_truth() -> None:
    spreads = {"a": _spread([0.9, 1.1, 1.0]), "b": _spread([-1.0, 1.0, 0.0])}
    ax = plot_refit_spread(spreads, truth={"b": 0.5})
    diamonds = [c for c in ax.collections if c.get_offsets().shape == (1, 2)]
    assert len(diamonds) == 1
    np.testing.assert_allclose(diamonds[0].get_offsets(), [[0.5, 1.0]])
    assert "truth" in ax.get_xlabel()
    assert "truth" not in plot_refit_spread(spreads).get_xlabel()


def test_refit_spread_truth_for_an_unknown_query_is_refused() -> None:
    with pytest.raises(SettingsError, match=r"truth has label\(s\) \['c'\].*same query labels"):
        plot_refit_spread({"a": _spread([1.0, 2.0])}, truth={"c": 1.0})
