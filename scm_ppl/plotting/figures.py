"""Plots, with matplotlib: this module and the private ``_plot_*`` modules it re-exports
are the only ones in scm_ppl that import it, and ``import scm_ppl`` loads none of them.

Graphs and learning curves are drawn here; the Fisher spectrum, refit spread and
contraction curve (:mod:`scm_ppl.plotting.howfar`), bounds beside point answers
(:mod:`scm_ppl.plotting.bounds`) and genericity histograms
(:mod:`scm_ppl.plotting.independence`) live next to them.

The picture follows the usual conventions of graphical models:

* endogenous observed sites are filled, endogenous latent sites hollow;
* exogenous noise sites are smaller grey dashed circles;
* deterministic (noise-free) mechanisms are squares;
* intervened sites have a red outline (their cut incoming edges are already gone);
* bidirected edges (latent confounding, ``g.graph["bidirected"]``) are dashed and curved.
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping, Sequence
from typing import Any, Literal

import matplotlib.pyplot as plt
import networkx as nx
from matplotlib.axes import Axes
from matplotlib.legend_handler import HandlerPatch
from matplotlib.lines import Line2D
from matplotlib.patches import Circle, Ellipse, FancyArrowPatch, Patch, Rectangle

from scm_ppl.errors import GraphError, SettingsError

__all__ = ["plot_graph", "plot_learning_curve"]

_INK = "#2b3a4a"
_FILL = "#bcd4ea"
_NOISE = "#8a8a8a"
_RED = "#d62728"
_EDGE = "#4a4a4a"
_BIDIRECTED = "#7b4fa0"

_R = 0.34  # radius of an endogenous node, in data units
_GAP = 0.6  # free space between neighbouring nodes, in data units
_FONTSIZE = 10.5
_INCH_PER_UNIT = 0.7  # figure scale when plot_graph makes its own figure
_CHAR = _FONTSIZE * 0.62 / 72 / _INCH_PER_UNIT  # width of a label character, in data units

Position = tuple[float, float]


def _node_style(data: Mapping[str, Any]) -> dict[str, Any]:
    """The shape, size and patch properties of one node, from its attributes."""
    exogenous = data.get("role") == "exogenous"
    deterministic = data.get("kind") == "deterministic"
    observed = bool(data.get("observed", False))
    intervened = bool(data.get("intervened", False))
    style: dict[str, Any] = {
        "shape": "square" if deterministic else "circle",
        "scale": 0.75 if exogenous and not intervened else 1.0,
        "facecolor": _FILL if observed else "white",
        "edgecolor": _INK,
        "linewidth": 1.6,
        "linestyle": "-",
        "text": _INK,
    }
    if exogenous and not observed:
        style.update(facecolor="#f4f4f4", edgecolor=_NOISE, linestyle=(0, (3, 2)), text="#555555")
    if intervened:
        style.update(edgecolor=_RED, linewidth=2.6, text="#a01010")
    return style


def _half_size(label: str, style: Mapping[str, Any]) -> tuple[float, float]:
    """Half width and half height of a node: a circle, widened for long labels."""
    r = _R * style["scale"]
    return max(r, 0.5 * _CHAR * style["scale"] * len(label) + 0.14), r


def _layers(g: nx.DiGraph) -> list[list[Hashable]]:
    """Topological generations, each ordered by the mean position of its parents."""
    directed = nx.DiGraph()
    directed.add_nodes_from(g.nodes)
    directed.add_edges_from((u, v) for u, v in g.edges if u != v)
    try:
        generations = [list(gen) for gen in nx.topological_generations(directed)]
    except nx.NetworkXUnfeasible as err:
        raise GraphError(
            "plot_graph needs an acyclic graph for its layered layout; this graph has a "
            f"cycle {[e[:2] for e in nx.find_cycle(directed)]}. Pass positions as `layout`."
        ) from err
    order = {node: i for i, node in enumerate(g.nodes)}
    slot: dict[Hashable, float] = {}
    for generation in generations:

        def key(node: Hashable) -> tuple[float, int]:
            parents = [slot[p] for p in directed.predecessors(node)]
            return (sum(parents) / len(parents) if parents else -1.0, order[node])

        generation.sort(key=key)
        slot.update({node: i - (len(generation) - 1) / 2 for i, node in enumerate(generation)})
    return generations


def _spread(sizes: Sequence[float]) -> list[float]:
    """Centres of boxes of the given half sizes laid side by side, _GAP apart, centred."""
    centres, at = [], 0.0
    for i, size in enumerate(sizes):
        at += (sizes[i - 1] if i else 0.0) + size + (_GAP if i else 0.0)
        centres.append(at)
    middle = (centres[0] - sizes[0] + centres[-1] + sizes[-1]) / 2 if centres else 0.0
    return [c - middle for c in centres]


def _positions(
    g: nx.DiGraph,
    layout: str | Mapping[Hashable, Sequence[float]],
    direction: str,
    half: Mapping[Hashable, tuple[float, float]],
) -> dict[Hashable, Position]:
    if isinstance(layout, Mapping):
        missing = [node for node in g.nodes if node not in layout]
        if missing:
            raise GraphError(f"`layout` gives no position for nodes {missing}.")
        return {node: (float(layout[node][0]), float(layout[node][1])) for node in g.nodes}
    if layout != "layered":
        raise GraphError(f"Unknown layout {layout!r}; use 'layered' or a dict of positions.")
    if direction not in ("TB", "LR"):
        raise GraphError(f"Unknown direction {direction!r}; use 'TB' or 'LR'.")
    across, along = (0, 1) if direction == "TB" else (1, 0)
    layers = _layers(g)
    # Distance between layers: the largest node extent along the flow, plus room for arrows.
    depths = _spread([max(half[n][along] for n in layer) + 0.05 for layer in layers])
    pos: dict[Hashable, Position] = {}
    for depth, layer in zip(depths, layers, strict=True):
        for node, offset in zip(layer, _spread([half[n][across] for n in layer]), strict=True):
            pos[node] = (offset, -depth) if direction == "TB" else (depth, -offset)
    return pos


def _node_patch(xy: Position, style: Mapping[str, Any], size: tuple[float, float]) -> Patch:
    props = {k: style[k] for k in ("facecolor", "edgecolor", "linewidth", "linestyle")}
    hw, hh = size
    if style["shape"] == "square":
        hw, hh = hw * 0.88, hh * 0.88
        return Rectangle((xy[0] - hw, xy[1] - hh), 2 * hw, 2 * hh, **props)
    if hw > hh:
        return Ellipse(xy, 2 * hw, 2 * hh, **props)
    return Circle(xy, hh, **props)


_T = [i / 20 for i in range(1, 20)]  # where a curve is probed for collisions
_RADS = [0.0] + [sign * r for r in (0.2, 0.35, 0.5, 0.7, 0.9) for sign in (1.0, -1.0)]


def _curve(p0: Position, p1: Position, rad: float) -> list[Position]:
    """Points along matplotlib's ``arc3`` connection from p0 to p1 with curvature rad."""
    (x0, y0), (x1, y1) = p0, p1
    cx, cy = (x0 + x1) / 2 + rad * (y1 - y0), (y0 + y1) / 2 - rad * (x1 - x0)
    return [
        (
            (1 - t) ** 2 * x0 + 2 * t * (1 - t) * cx + t**2 * x1,
            (1 - t) ** 2 * y0 + 2 * t * (1 - t) * cy + t**2 * y1,
        )
        for t in _T
    ]


def _route(
    u: Hashable,
    v: Hashable,
    pos: Mapping[Hashable, Position],
    half: Mapping[Hashable, tuple[float, float]],
    drawn: list[Position],
    rads: Sequence[float],
) -> float:
    """The curvature in rads whose curve crosses fewest nodes, then fewest drawn edges."""
    best, best_cost = rads[0], float("inf")
    for rad in rads:
        curve = _curve(pos[u], pos[v], rad)
        hits = sum(
            any(
                ((x - cx) / (half[n][0] + 0.15)) ** 2 + ((y - cy) / (half[n][1] + 0.15)) ** 2 < 1
                for x, y in curve
            )
            for n, (cx, cy) in pos.items()
            if n not in (u, v)
        )
        crowd = sum(
            min(((x - a) ** 2 + (y - b) ** 2 for a, b in drawn), default=1.0) < 0.04
            for x, y in curve
        )
        cost = 10.0 * hits + crowd / len(_T) + abs(rad)
        if cost < best_cost:
            best, best_cost = rad, cost
    drawn.extend(_curve(pos[u], pos[v], best))
    return best


def _bends(
    g: nx.DiGraph,
    pos: Mapping[Hashable, Position],
    half: Mapping[Hashable, tuple[float, float]],
    bidirected: Sequence[tuple[Hashable, Hashable]],
) -> tuple[dict[tuple[Hashable, Hashable], float], list[tuple[tuple[Hashable, Hashable], float]]]:
    """The arc3 curvature of every edge and of every bidirected edge.

    Directed edges are straight unless that crosses a node or crowds an edge drawn
    before; bidirected edges always bend.
    """
    drawn: list[Position] = []
    bends = {(u, v): _route(u, v, pos, half, drawn, _RADS) for u, v in g.edges if u != v}
    twins = [((u, v), _route(u, v, pos, half, drawn, _RADS[1:])) for u, v in bidirected]
    return bends, twins


def _bounds(
    pos: Mapping[Hashable, Position],
    half: Mapping[Hashable, tuple[float, float]],
    curves: Sequence[tuple[tuple[Hashable, Hashable], float]],
) -> tuple[float, float, float, float]:
    """Data limits that hold every node and the furthest reach of every curved edge."""
    points = [
        (x + sx * half[n][0], y + sy * half[n][1])
        for n, (x, y) in pos.items()
        for sx in (-1, 1)
        for sy in (-1, 1)
    ]
    for (u, v), rad in curves:
        (x0, y0), (x1, y1) = pos[u], pos[v]
        points.append(((x0 + x1) / 2 + rad / 2 * (y1 - y0), (y0 + y1) / 2 - rad / 2 * (x1 - x0)))
    xs, ys = [p[0] for p in points] or [0.0], [p[1] for p in points] or [0.0]
    pad = 0.3
    return min(xs) - pad, max(xs) + pad, min(ys) - pad, max(ys) + pad


def _legend_patch(
    legend: Any,
    orig_handle: Patch,
    xdescent: float,
    ydescent: float,
    width: float,
    height: float,
    fontsize: float,
) -> Patch:
    """A legend key shaped like the node it stands for, small nodes drawn smaller."""
    r = 0.58 * height * (orig_handle.radius if isinstance(orig_handle, Circle) else 0.9)
    centre = (width / 2 - xdescent, height / 2 - ydescent)
    if isinstance(orig_handle, Rectangle):
        return Rectangle((centre[0] - r, centre[1] - r), 2 * r, 2 * r)
    return Circle(centre, r)


def _legend(ax: Axes, g: nx.DiGraph, bidirected: Sequence[tuple[Hashable, Hashable]]) -> None:
    """A legend of the node and edge styles that occur in the picture, and no others.

    Each key is drawn in the style of a node it stands for (an intervened node that is a
    square, as a hard intervention makes it, has a square key). Hollow endogenous nodes are
    "latent" only next to observed ones; in a graph without observations they are simply
    the endogenous sites.
    """
    data = [d for _, d in g.nodes(data=True)]
    any_observed = any(d.get("observed") for d in data)
    tests = {
        "observed": lambda d: d.get("observed") and d.get("role") != "exogenous",
        "latent" if any_observed else "endogenous": lambda d: (
            d.get("role") != "exogenous"
            and not d.get("observed")
            and d.get("kind") != "deterministic"
        ),
        "deterministic": lambda d: d.get("kind") == "deterministic",
        "exogenous noise": lambda d: _node_style(d)["edgecolor"] == _NOISE,
        "intervened": lambda d: d.get("intervened"),
    }
    canonical = {
        "observed": {"observed": True},
        "deterministic": {"kind": "deterministic"},
        "exogenous noise": {"role": "exogenous"},
    }
    keys: dict[str, dict[str, Any]] = {}
    for label, test in tests.items():
        found = next((d for d in data if test(d)), None)
        if found is None:
            continue
        if label == "intervened":  # in the shape the intervened node is drawn with
            keys[label] = {"intervened": True, "kind": found.get("kind")}
        else:
            keys[label] = canonical.get(label, {})
    handles: list[Patch | Line2D] = []
    labels = list(keys)
    for label in labels:
        style = _node_style(keys[label])
        handles.append(_node_patch((0.0, 0.0), style, (style["scale"], style["scale"])))
    if bidirected:
        handles.append(Line2D([], [], color=_BIDIRECTED, linestyle=(0, (4, 2)), linewidth=1.4))
        labels.append("latent confounding")
    if handles:
        ax.legend(
            handles,
            labels,
            handler_map={
                Circle: HandlerPatch(_legend_patch),
                Rectangle: HandlerPatch(_legend_patch),
            },
            loc="center left",
            bbox_to_anchor=(1.0, 0.5),
            frameon=False,
            fontsize=9,
            handlelength=1.6,
            handleheight=1.3,
            labelspacing=0.9,
        )


def plot_graph(
    g: nx.DiGraph,
    ax: Axes | None = None,
    *,
    layout: Literal["layered"] | Mapping[Hashable, Sequence[float]] = "layered",
    direction: Literal["TB", "LR"] = "TB",
    title: str | None = None,
) -> Axes:
    """Draw a causal graph, as built by :func:`scm_ppl.core.causal_graph.graph`.

    Parameters
    ----------
    g
        The graph. Node attributes ``kind``, ``role``, ``observed`` and ``intervened``
        set the style (missing ones mean an endogenous latent sample site); pairs in
        ``g.graph["bidirected"]`` are drawn as dashed curved two-headed edges.
    ax
        The axes to draw on; a new figure sized to the graph when ``None``.
    layout
        ``"layered"``: the topological generations of ``g`` as layers, nodes spread
        evenly in each; or a mapping from every node to its ``(x, y)`` position.
    direction
        ``"TB"``: layers from top to bottom; ``"LR"``: from left to right.
    title
        An optional title.

    Returns
    -------
    matplotlib.axes.Axes
        The axes drawn on. ``g`` is not modified and ``plt.show`` is not called.

    Raises
    ------
    GraphError
        If the layout is unknown or misses a node, a layered graph has a directed cycle, or
        a bidirected edge names a node that is not in ``g``.

    Examples
    --------
    >>> import matplotlib
    >>> matplotlib.use("Agg")
    >>> import networkx as nx
    >>> from scm_ppl.plotting.figures import plot_graph
    >>> g = nx.DiGraph([("z", "x"), ("x", "y")])
    >>> plot_graph(g, title="a chain").get_title()
    'a chain'
    """
    bidirected = [tuple(pair) for pair in g.graph.get("bidirected", [])]
    unknown = sorted({str(n) for pair in bidirected for n in pair if n not in g})
    if unknown:
        raise GraphError(
            f"Bidirected edges name nodes {unknown} that are not in the graph; "
            f"its nodes are {sorted(map(str, g.nodes))}."
        )
    styles = {node: _node_style(data) for node, data in g.nodes(data=True)}
    half = {node: _half_size(str(node), styles[node]) for node in g.nodes}
    pos = _positions(g, layout, direction, half)

    bends, twins = _bends(g, pos, half, bidirected)
    x_lo, x_hi, y_lo, y_hi = _bounds(pos, half, [*bends.items(), *twins])

    zoom = 1.0
    if ax is None:
        width = max(1.2, (x_hi - x_lo) * _INCH_PER_UNIT) + (2.3 if g.number_of_nodes() else 0.0)
        height = max(1.2, (y_hi - y_lo) * _INCH_PER_UNIT) + (0.35 if title else 0.0)
        _, ax = plt.subplots(figsize=(width, height), layout="constrained")
    elif (figure := ax.get_figure(root=True)) is not None:
        # On axes smaller than the graph wants, shrink labels and arrow heads with the nodes.
        box, (fig_w, fig_h) = ax.get_position(), figure.get_size_inches()
        shown = min(box.width * fig_w / (x_hi - x_lo), box.height * fig_h / (y_hi - y_lo))
        zoom = max(0.35, min(1.0, shown / _INCH_PER_UNIT))

    patches: dict[Hashable, Patch] = {}
    for node in g.nodes:
        style = styles[node]
        patch = _node_patch(pos[node], style, half[node])
        patch.set_gid(f"node:{node}")
        patch.set_zorder(3)
        ax.add_patch(patch)
        patches[node] = patch
        ax.text(
            *pos[node],
            str(node),
            ha="center",
            va="center",
            fontsize=zoom * _FONTSIZE * style["scale"] ** 0.5,
            color=style["text"],
            zorder=4,
        )

    arrow = {"mutation_scale": 13 * zoom**0.5, "shrinkA": 1.0, "shrinkB": 1.5, "linewidth": 1.3}
    directed = {"arrowstyle": "-|>", "color": _EDGE, "zorder": 2}
    twin = {"arrowstyle": "<|-|>", "color": _BIDIRECTED, "linestyle": (0, (4, 2)), "zorder": 1}
    for (u, v), rad, props, gid in [
        *(((u, v), rad, directed, f"edge:{u}->{v}") for (u, v), rad in bends.items()),
        *(((u, v), rad, twin, f"bidirected:{u}<->{v}") for (u, v), rad in twins),
    ]:
        edge = FancyArrowPatch(pos[u], pos[v], patchA=patches[u], patchB=patches[v], **arrow)
        edge.update({**props, "connectionstyle": f"arc3,rad={rad:.3f}", "gid": gid})
        ax.add_patch(edge)

    _legend(ax, g, bidirected)
    ax.set_xlim(x_lo, x_hi)
    ax.set_ylim(y_lo, y_hi)
    ax.set_aspect("equal")
    ax.set_axis_off()
    if title is not None:
        ax.set_title(title)
    return ax


def plot_learning_curve(fitted_or_losses: Any, ax: Axes | None = None) -> Axes:
    """Training (and validation) loss per epoch of a fit.

    Parameters
    ----------
    fitted_or_losses
        A :class:`~scm_ppl.learn.fitted.FittedSCM`, its ``history``, or a sequence of losses.
    ax
        Axes to draw on; a new figure when ``None``.

    Returns
    -------
    Axes
        With a ``"training"`` line, a ``"validation"`` line when the fit held rows out,
        a dotted vertical line at the best epoch when the fit stopped early, and, for a fit
        with ``icm_penalty``, a dashed ``"ICM penalty"`` line on a secondary (log) y-axis.

    Examples
    --------
    >>> from scm_ppl.plotting import plot_learning_curve
    >>> ax = plot_learning_curve([3.0, 2.0, 1.5, 1.4])     # or a FittedSCM, or its history
    >>> [line.get_label() for line in ax.get_lines()]
    ['training']
    """
    history = getattr(fitted_or_losses, "history", fitted_or_losses)
    losses = getattr(history, "losses", history)
    valid = getattr(history, "validation_losses", ())
    try:
        train = [float(x) for x in losses]
        valid = [float(x) for x in valid]
    except (TypeError, ValueError) as err:
        raise SettingsError(
            "plot_learning_curve expects a FittedSCM, its history, or a sequence of losses; "
            f"got {type(fitted_or_losses).__name__}."
        ) from err
    if ax is None:
        _, ax = plt.subplots(figsize=(5.0, 3.2), layout="constrained")
    epochs = range(1, len(train) + 1)
    ax.plot(epochs, train, color=_INK, linewidth=1.6, label="training")
    if valid:
        ax.plot(range(1, len(valid) + 1), valid, color=_RED, linewidth=1.6, label="validation")
    best = int(getattr(history, "best_epoch", 0) or 0)
    if best and getattr(history, "stopped_early", False):
        ax.axvline(best, color=_NOISE, linestyle=":", linewidth=1.2, label=f"best epoch ({best})")
    ax.set_xlabel("epoch")
    ax.set_ylabel("loss per row")
    handles, labels = ax.get_legend_handles_labels()
    penalties = [float(x) for x in getattr(history, "penalties", ())]
    if penalties:
        twin = ax.twinx()  # the penalty falls by orders of magnitude: its own log axis
        positive = [max(p, 1e-12) for p in penalties]
        (line,) = twin.plot(
            range(1, len(positive) + 1), positive, color=_NOISE, linestyle="--", linewidth=1.4
        )
        twin.set_yscale("log")
        twin.set_ylabel("ICM penalty λ Σ (log ρ)²")
        handles, labels = [*handles, line], [*labels, "ICM penalty"]
    if train:
        ax.legend(handles, labels, frameon=False)
    return ax
