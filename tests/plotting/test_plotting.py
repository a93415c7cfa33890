"""Tests for scm_ppl.plotting: drawing causal graphs."""

from __future__ import annotations

import copy
from collections.abc import Iterator

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt
import networkx as nx
import numpy as np
import pytest
from matplotlib.axes import Axes
from matplotlib.colors import to_rgba
from matplotlib.figure import Figure
from matplotlib.patches import (
    ArrowStyle,
    Circle,
    ConnectionStyle,
    Ellipse,
    FancyArrowPatch,
    Patch,
    Rectangle,
)

from scm_ppl.core.causal_graph import graph
from scm_ppl.errors import GraphError
from scm_ppl.plotting.figures import plot_graph
from tests.core.test_graph import N, _fake_do, confounded_model, design_model


@pytest.fixture(autouse=True)
def _close_figures() -> Iterator[None]:
    yield
    plt.close("all")


def _patches(ax: Axes, prefix: str) -> dict[str, Patch]:
    return {
        str(p.get_gid()).removeprefix(prefix): p
        for p in ax.patches
        if str(p.get_gid()).startswith(prefix)
    }


def _centre(patch: Patch) -> tuple[float, float]:
    """The centre of a node patch in data coordinates."""
    unit = [(0.5, 0.5)] if isinstance(patch, Rectangle) else [(0.0, 0.0)]
    x, y = patch.get_patch_transform().transform(unit)[0]
    return float(x), float(y)


def _rad(arrow: Patch) -> float:
    assert isinstance(arrow, FancyArrowPatch)
    style = arrow.get_connectionstyle()
    assert isinstance(style, ConnectionStyle.Arc3)
    return style.rad


def _legend_labels(ax: Axes) -> list[str]:
    legend = ax.get_legend()
    return [] if legend is None else [t.get_text() for t in legend.get_texts()]


def test_design_model_draws_every_node_and_edge(tmp_path) -> None:
    g = graph(design_model, N)
    ax = plot_graph(g, title="design")
    assert isinstance(ax, Axes)
    nodes, edges = _patches(ax, "node:"), _patches(ax, "edge:")
    assert set(nodes) == set(g.nodes)
    assert set(edges) == {f"{u}->{v}" for u, v in g.edges}
    assert all(isinstance(e, FancyArrowPatch) for e in edges.values())
    # Arrows are clipped at the node outlines, not drawn to the centres.
    x_to_w = edges["x->w"]
    assert isinstance(x_to_w, FancyArrowPatch)
    assert x_to_w.patchA is nodes["x"] and x_to_w.patchB is nodes["w"]
    assert isinstance(nodes["y"], Rectangle)  # deterministic: a square
    assert isinstance(nodes["x"], Circle)
    assert nodes["z"].get_linestyle() != "-"  # exogenous: dashed
    assert isinstance(nodes["z"], Circle) and nodes["z"].radius < nodes["x"].radius
    assert sorted(t.get_text() for t in ax.texts) == ["w", "x", "y", "z"]
    assert _legend_labels(ax) == ["endogenous", "deterministic", "exogenous noise"]
    assert ax.get_title() == "design"
    assert not ax.axison
    assert ax.get_aspect() == 1.0
    path = tmp_path / "design.png"
    figure = ax.get_figure(root=True)
    assert isinstance(figure, Figure)
    figure.savefig(path)
    assert path.stat().st_size > 1000


def test_layers_run_top_to_bottom_or_left_to_right() -> None:
    g = graph(design_model, N)
    order = ["z", "x", "y", "w"]
    tb = _patches(plot_graph(g), "node:")
    ys = [_centre(tb[n])[1] for n in order]
    assert ys == sorted(ys, reverse=True)
    lr = _patches(plot_graph(g, direction="LR"), "node:")
    xs = [_centre(lr[n])[0] for n in order]
    assert xs == sorted(xs)


def test_nodes_of_a_layer_are_spread_evenly() -> None:
    g = nx.DiGraph([("r", "a"), ("r", "b"), ("r", "c")])
    nodes = _patches(plot_graph(g), "node:")
    xs = sorted(_centre(nodes[n])[0] for n in "abc")
    assert np.isclose(xs[1] - xs[0], xs[2] - xs[1])
    assert np.isclose(xs[1], _centre(nodes["r"])[0])


def test_draws_on_given_axes_and_never_shows(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(plt, "show", lambda *a, **k: pytest.fail("plt.show was called"))
    fig, axes = plt.subplots(1, 2)
    g = graph(confounded_model, N, t=np.zeros(N), y=np.ones(N))
    ax = plot_graph(g, ax=axes[1])
    assert ax is axes[1]
    assert len(fig.axes) == 2 and not axes[0].patches
    nodes = _patches(ax, "node:")
    assert nodes["t"].get_facecolor() != nodes["u"].get_facecolor()  # observed: filled
    assert _legend_labels(ax) == ["observed", "exogenous noise"]


def test_intervened_node_is_outlined_in_red() -> None:
    g = graph(_fake_do(design_model, site="x", how="shift", value=lambda x: x + 1.0), N)
    ax = plot_graph(g)
    nodes = _patches(ax, "node:")
    red = to_rgba("#d62728")
    assert nodes["x"].get_edgecolor() == red
    assert all(nodes[n].get_edgecolor() != red for n in "zyw")
    assert "intervened" in _legend_labels(ax)


def test_bidirected_edges_are_dashed_curved_and_two_headed() -> None:
    g = nx.DiGraph([("t", "m"), ("m", "y")])
    g.graph["bidirected"] = [("t", "y")]
    ax = plot_graph(g)
    twins = _patches(ax, "bidirected:")
    assert list(twins) == ["t<->y"]
    (twin,) = twins.values()
    assert isinstance(twin, FancyArrowPatch)
    assert twin.get_linestyle() != "-"
    assert isinstance(twin.get_arrowstyle(), ArrowStyle.CurveFilledAB)
    assert _rad(twin) != 0.0
    assert len(_patches(ax, "edge:")) == 2
    assert _legend_labels(ax) == ["endogenous", "latent confounding"]


def test_edge_that_would_cross_a_node_is_curved() -> None:
    g = nx.DiGraph([("a", "b"), ("b", "c"), ("a", "c")])
    edges = _patches(plot_graph(g), "edge:")
    assert _rad(edges["a->c"]) != 0.0
    assert _rad(edges["a->b"]) == 0.0


def test_explicit_positions_and_long_labels() -> None:
    g = nx.DiGraph([("treatment", "outcome")])
    ax = plot_graph(g, layout={"treatment": (0.0, 0.0), "outcome": (3.0, 1.0)})
    nodes = _patches(ax, "node:")
    outcome = nodes["outcome"]
    assert np.allclose(_centre(outcome), (3.0, 1.0))
    assert isinstance(outcome, Ellipse) and outcome.get_width() > outcome.get_height()


def test_empty_graph_gives_empty_axes() -> None:
    ax = plot_graph(nx.DiGraph())
    assert not ax.patches and ax.get_legend() is None


def test_plot_graph_does_not_mutate_graph() -> None:
    g = graph(design_model, N)
    g.graph["bidirected"] = [("x", "w")]
    before = copy.deepcopy(g)
    plot_graph(g)
    assert list(g.nodes(data=True)) == list(before.nodes(data=True))
    assert list(g.edges(data=True)) == list(before.edges(data=True))
    assert g.graph == before.graph


def test_errors() -> None:
    g = nx.DiGraph([("a", "b")])
    with pytest.raises(GraphError, match=r"Unknown layout 'spring'; use 'layered'"):
        plot_graph(g, layout="spring")  # type: ignore[arg-type]
    with pytest.raises(GraphError, match=r"Unknown direction 'BT'; use 'TB' or 'LR'"):
        plot_graph(g, direction="BT")  # type: ignore[arg-type]
    with pytest.raises(GraphError, match=r"no position for nodes \['b'\]"):
        plot_graph(g, layout={"a": (0.0, 0.0)})
    with pytest.raises(GraphError, match=r"acyclic graph.*cycle"):
        plot_graph(nx.DiGraph([("a", "b"), ("b", "a")]))
    g.graph["bidirected"] = [("a", "q")]
    with pytest.raises(GraphError, match=r"Bidirected edges name nodes \['q'\]"):
        plot_graph(g)
