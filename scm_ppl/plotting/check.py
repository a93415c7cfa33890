"""Plots of model checks and attributions (matplotlib, imported only here and lazily by
the caller). Every function takes ``ax=None`` (a new figure) and returns the Axes."""

from __future__ import annotations

from typing import Any

import networkx as nx
import numpy as np

__all__ = ["plot_attribution", "plot_attribution_graph", "plot_graph_check"]

_LABEL_BOX = {"boxstyle": "round,pad=0.2", "fc": "white", "ec": "none"}


def _axes(ax: Any, size: tuple[float, float] = (6, 4)) -> Any:
    if ax is None:
        import matplotlib.pyplot as plt

        _, ax = plt.subplots(figsize=size)
    return ax


def _per_node(result: Any, unit: int | None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    est, lo, hi = result.estimate, result.lower, result.upper
    if est.ndim == 2:
        if unit is None:
            return est.mean(0), lo.mean(0), hi.mean(0)
        return est[unit], lo[unit], hi[unit]
    return est, lo, hi


def plot_attribution(result: Any, *, unit: int | None = None, ax: Any = None) -> Any:
    """Bar chart of an :class:`~scm_ppl.attribution.Attribution`, one bar per node with its
    95% interval (anomaly attribution: one ``unit``, or the mean over units).

    Examples
    --------
    >>> import matplotlib
    >>> matplotlib.use("Agg")
    >>> import matplotlib.pyplot as plt, numpyro, numpyro.distributions as dist
    >>> from scm_ppl.attribution import arrow_strength
    >>> def model(n):
    ...     with numpyro.plate("unit", n):
    ...         x = numpyro.sample("x", dist.Normal(0.0, 1.0))
    ...         numpyro.sample("y", dist.Normal(2.0 * x, 1.0))
    >>> result = arrow_strength(model, "y")
    >>> ax = plot_attribution(result)
    >>> type(ax).__name__, ax.get_title()
    ('Axes', "arrow strength on 'y'")
    >>> [label.get_text() for label in ax.get_xticklabels()]
    ['x']
    >>> plt.close(ax.figure)
    """
    ax = _axes(ax)
    est, lo, hi = _per_node(result, unit)
    pos = np.arange(len(result.nodes))
    err = np.stack([est - lo, hi - est])
    colors = ["tab:red" if v == est.max() else "tab:blue" for v in est]
    ax.bar(pos, est, yerr=np.maximum(err, 0), capsize=4, color=colors, alpha=0.85)
    ax.set_xticks(pos, result.nodes, rotation=45 if len(pos) > 6 else 0)
    ax.axhline(0, color="k", lw=0.8)
    what = f", unit {unit}" if unit is not None else ""
    ax.set_title(f"{result.kind.replace('_', ' ')} on {result.target!r}{what}")
    ax.set_xlabel("node")
    ax.set_ylabel(f"contribution ({result.measure})")
    return ax


def _layout(g: nx.DiGraph) -> dict[str, Any]:
    for layer, nodes in enumerate(nx.topological_generations(g)):
        for n in nodes:
            g.nodes[n]["layer"] = layer
    return nx.multipartite_layout(g, subset_key="layer", align="horizontal", scale=1.0)


def plot_attribution_graph(
    result: Any, graph: nx.DiGraph | None = None, *, unit: int | None = None, ax: Any = None
) -> Any:
    """The causal graph with each node coloured by its contribution (grey: not a player).

    Colours diverge around zero (red: adds to the target's quantity, blue: takes from it),
    with a colour bar in the result's unit; each node's value is written beside it.
    ``graph`` defaults to the arrows among the result's nodes and target recorded in
    ``result.attrs["edges"]``; pass the program's graph (e.g. ``scm_ppl.graph(model, n=1)``)
    to show every node.

    Examples
    --------
    >>> import matplotlib
    >>> matplotlib.use("Agg")
    >>> import matplotlib.pyplot as plt, numpyro, numpyro.distributions as dist
    >>> from scm_ppl.attribution import arrow_strength
    >>> def model(n):
    ...     with numpyro.plate("unit", n):
    ...         x = numpyro.sample("x", dist.Normal(0.0, 1.0))
    ...         numpyro.sample("y", dist.Normal(2.0 * x, 1.0))
    >>> result = arrow_strength(model, "y")
    >>> ax = plot_attribution_graph(result)
    >>> type(ax).__name__, ax.get_title()
    ('Axes', "arrow strength on 'y'")
    >>> plt.close(ax.figure)
    """
    import matplotlib.pyplot as plt
    from matplotlib.colors import TwoSlopeNorm

    ax = _axes(ax, (6, 4.5))
    g = nx.DiGraph(graph) if graph is not None else nx.DiGraph(result.attrs.get("edges", []))
    g.add_nodes_from([*result.nodes, result.target])
    est, _, _ = _per_node(result, unit)
    value = dict(zip(result.nodes, est, strict=True))
    top = max(float(np.max(np.abs(est))), 1e-12)
    norm = TwoSlopeNorm(vcenter=0.0, vmin=-top, vmax=top)
    cmap = plt.get_cmap("RdBu_r")
    colors = [cmap(norm(value[n])) if n in value else "lightgrey" for n in g]
    pos = _layout(g)
    nx.draw_networkx_edges(g, pos, ax=ax, node_size=1400, arrowsize=15, edge_color="0.4")
    nx.draw_networkx_nodes(g, pos, ax=ax, node_color=colors, node_size=1400, edgecolors="k")
    nx.draw_networkx_labels(g, pos, ax=ax, font_size=8)
    for n, (x, y) in pos.items():
        if n in value:
            ax.annotate(f"{value[n]:.3g}", (x, y), xytext=(24, 0), textcoords="offset points",
                        ha="left", va="center", fontsize=8, bbox=_LABEL_BOX)  # fmt: skip
    bar = ax.figure.colorbar(plt.cm.ScalarMappable(norm=norm, cmap=cmap), ax=ax, shrink=0.8)
    bar.set_label(f"contribution ({result.measure})")
    what = f", unit {unit}" if unit is not None else ""
    ax.set_title(f"{result.kind.replace('_', ' ')} on {result.target!r}{what}")
    ax.margins(0.2)
    ax.set_axis_off()
    return ax


def plot_graph_check(check: Any, *, ax: Any = None) -> Any:
    """Each implied independence of a :class:`~scm_ppl.check.GraphCheck` with its
    ``-log10`` Holm-adjusted p-value; the dashed line is ``alpha``, red bars reject.

    Examples
    --------
    >>> import matplotlib
    >>> matplotlib.use("Agg")
    >>> import matplotlib.pyplot as plt, networkx as nx, numpy as np
    >>> from scm_ppl.check import graph
    >>> rng = np.random.default_rng(0)
    >>> x = rng.normal(size=500); z = x + rng.normal(size=500); y = z + rng.normal(size=500)
    >>> check = graph(nx.DiGraph([("x", "z"), ("z", "y")]), {"x": x, "z": z, "y": y})
    >>> ax = plot_graph_check(check)
    >>> type(ax).__name__, [label.get_text() for label in ax.get_yticklabels()]
    ('Axes', ['x ⊥ y | z'])
    >>> plt.close(ax.figure)
    """
    rows = check.rows
    ax = _axes(ax, (6, 0.35 * max(len(rows), 4) + 1))
    labels = [f"{r.x} ⊥ {r.y}" + (f" | {', '.join(r.given)}" if r.given else "") for r in rows]
    score = [-np.log10(max(r.p_adjusted, 1e-16)) for r in rows]
    colors = ["tab:red" if r.rejected else "tab:green" for r in rows]
    pos = np.arange(len(rows))
    ax.barh(pos, score, color=colors)
    ax.set_yticks(pos, labels, fontsize=8)
    ax.invert_yaxis()
    ax.axvline(-np.log10(check.alpha), ls="--", color="k", lw=1)
    ax.annotate(f"alpha = {check.alpha:g}", (-np.log10(check.alpha), 1.0), xytext=(3, -2),
                xycoords=("data", "axes fraction"), textcoords="offset points", va="top",
                fontsize=8)  # fmt: skip
    ax.set_xlabel("-log10 p (Holm-adjusted)")
    ax.set_ylabel("implied independence")
    verdict = "rejected" if check.rejected else "not rejected"
    ax.set_title(
        f"graph {verdict} ({check.test})\npermutation p = {check.permutation_p:.3g}", fontsize=10
    )
    return ax
