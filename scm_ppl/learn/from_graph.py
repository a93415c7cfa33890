"""A program from a graph and a table: :func:`scm_from_graph`.

Each node gets a mechanism of its parents chosen by its type and scored by held-out
likelihood among the candidate families (as DoWhy's ``gcm.auto`` assigns mechanisms, but
by likelihood):

=============  ==========================================================================
type           candidates
=============  ==========================================================================
binary         ``logistic``: Bernoulli with logits linear in the features;
               ``mlp-logistic``: logits from a one-hidden-layer net beside the linear term
               (:mod:`~scm_ppl.learn.neural_logits`)
categorical    ``softmax``: Categorical with logits linear in the features;
               ``mlp-softmax``: the same with neural logits
continuous     ``linear`` (Normal); ``log-linear`` (LogNormal; positive data);
               ``hurdle`` (:class:`~scm_ppl.learn.hurdle.Hurdle`; non-negative data with
               at least 5 % exact zeros) and ``hurdle-sq`` (the same on the squares of
               the continuous parents too); ``mlp`` (additive-noise MLP) and
               ``mlp-loc-scale`` (location-scale MLP; :mod:`~scm_ppl.learn.flexible`);
               ``spline`` (linear location plus a monotone rational-quadratic spline of
               Normal noise, for skewed or multimodal noise;
               :mod:`~scm_ppl.learn.spline_candidate`)
=============  ==========================================================================

The nets, ``hurdle-sq`` and ``spline`` are tried with ``flexible=True`` only (the nets and
``hurdle-sq`` where the node has parents; ``mlp*`` and ``spline`` where fewer than 5 % of
the values are exact zeros, as they put no mass there). The candidate with the best
held-out log-likelihood per row wins, except that ``mlp-logistic``, ``mlp-softmax`` and
``spline`` (:data:`CHALLENGERS`) must beat the best of the others by two standard errors
of the paired per-row difference (:data:`MARGIN_SE`), on at least :data:`MIN_HELD_OUT`
held-out rows: where the simpler family is the truth, an overfitted flexible one would
otherwise win about half of the seeds by chance.
The reason of a challenger's win, with its gain, is in :attr:`MechanismChoice.reason`.

**Scale is handled inside.** Features are each parent standardised with the training
mean and standard deviation (plus a zero indicator for a parent with many zeros, and one
column per level for a categorical parent); a continuous target is standardised too (in
log space for the log families). The program carries these constants, so its answers are
in the data's units and the same fit results in dollars or in thousands of dollars. Every
mechanism starts at its maximum-likelihood fit on the data (noise scales from the
residuals), so the returned program answers queries at once; :func:`~scm_ppl.fit` refines
it like any program (its parameters are ``numpyro.param`` sites ``"<node>.weight"``, ...).
Discrete mechanisms take logits, never probabilities, so no unit's evidence underflows.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import networkx as nx
import numpy as np

from scm_ppl.core.frames import as_columns, is_frame, site_types
from scm_ppl.core.validate import check_method
from scm_ppl.errors import DataError, GraphError, SettingsError
from scm_ppl.learn.empirical import root_tables
from scm_ppl.learn.flexible import MLP_FAMILIES, fit_flexible, row_loglik_flexible
from scm_ppl.learn.glm import fit_family, row_loglik_family
from scm_ppl.learn.graph_scm import SQUARED, GraphSCM, MechanismChoice, features
from scm_ppl.learn.neural_logits import LOGIT_FAMILIES, fit_logits, row_loglik_logits
from scm_ppl.learn.spline_candidate import fit_spline, row_loglik_spline

__all__ = ["GraphSCM", "MechanismChoice", "scm_from_graph"]

FAMILIES = {
    "binary": ("logistic", "mlp-logistic"),
    "categorical": ("softmax", "mlp-softmax"),
    "continuous": ("linear", "log-linear", "hurdle", "hurdle-sq", *MLP_FAMILIES, "spline"),
}
LINEAR_SPACE = ("linear", *MLP_FAMILIES, "spline")  # families on the target's own scale
ROOTS = ("model", "empirical")
ZERO_SHARE = 0.05  # a non-negative column with this share of exact zeros gets a hurdle
CHALLENGERS = (*LOGIT_FAMILIES, "spline")  # picked only if they beat the rest by MARGIN_SE
MARGIN_SE = 2.0  # standard errors of the paired held-out difference per row
MIN_HELD_OUT = 30  # rows: below this the standard error means nothing, no challenger wins


def _squared(stats: Mapping, parents: tuple, columns: Mapping, feats: np.ndarray) -> np.ndarray:
    out = np.asarray(features(stats, parents, columns, np, square=True), np.float64)
    return np.broadcast_to(out, (feats.shape[0], out.shape[1]))


def _check_graph(graph: Any, columns: Mapping[str, Any]) -> tuple[str, ...]:
    if not isinstance(graph, nx.DiGraph):
        raise GraphError(f"graph must be a networkx.DiGraph; got {type(graph).__name__}.")
    try:
        cycle = nx.find_cycle(graph)
    except nx.NetworkXNoCycle:
        cycle = None
    if cycle:
        path = " -> ".join([str(u) for u, _ in cycle] + [str(cycle[0][0])])
        raise GraphError(
            f"The graph has a cycle {path}; a structural causal model here is acyclic. Remove "
            "or reverse one of its edges (say which, and why, in your analysis)."
        )
    nodes, cols = set(graph.nodes), set(columns)
    if nodes - cols:
        raise DataError(
            f"The graph has node(s) {sorted(map(str, nodes - cols))} with no column in the "
            f"data (columns: {sorted(cols)}). Add the columns, or drop the nodes."
        )
    if cols - nodes:
        raise DataError(
            f"The data have column(s) {sorted(cols - nodes)} that are not nodes of the graph. "
            "Drop them (df.drop(columns=[...])) or add them to the graph."
        )
    return tuple(nx.lexicographical_topological_sort(graph))


def _stats(name: str, y: np.ndarray, kind: str, levels: tuple | None) -> dict[str, Any]:
    yf = y.astype(np.float64)
    zeros = float(np.mean(yf == 0))
    s: dict[str, Any] = {"type": kind, "levels": levels, "zero_share": zeros}
    s["feature_mean"], s["feature_sd"] = float(yf.mean()), float(yf.std()) or 1.0
    s["zero_feature"] = kind == "continuous" and zeros >= ZERO_SHARE
    if kind == "continuous":
        positive = yf[yf > 0]
        s["log_ok"] = bool(len(positive) > 1 and (yf >= 0).all())
        base = np.log(positive) if s["log_ok"] else yf
        s["log_mean"], s["log_sd"] = float(base.mean()), float(base.std()) or 1.0
        s["mean"], s["sd"] = s["feature_mean"], s["feature_sd"]
    if kind != "continuous":
        s["levels"] = levels if levels is not None else tuple(range(int(yf.max()) + 1))
    return s


def _candidates(s: dict[str, Any], y: np.ndarray) -> tuple[tuple[str, ...], str]:
    if s["type"] != "continuous":
        return FAMILIES[s["type"]], f"{s['type']} column"
    if not s["log_ok"]:
        return ("linear",), "takes negative values: log families excluded"
    if s["zero_share"] >= ZERO_SHARE:
        return ("linear", "hurdle"), f"{s['zero_share']:.0%} exact zeros: hurdle is a candidate"
    if (y > 0).all():
        return ("linear", "log-linear"), "positive: log-linear is a candidate"
    return ("linear",), "a few zeros: log families excluded"


def _pick(rows: Mapping[str, np.ndarray]) -> tuple[str, str]:
    """The family with the best held-out likelihood, where a challenger (a flexible
    family new to a node type) must beat the best of the others by :data:`MARGIN_SE`
    standard errors of the paired per-row difference: on a mechanism the simpler family
    already fits, an overfitted net otherwise wins about half of the seeds by chance."""
    plain = [f for f in rows if f not in CHALLENGERS]
    if not plain:  # fixed by mechanisms=
        return next(iter(rows)), ""
    best = max(plain, key=lambda f: float(np.mean(rows[f])))
    gains = {}
    for family in rows:
        if family in CHALLENGERS and len(rows[family]) >= MIN_HELD_OUT:
            d = rows[family] - rows[best]
            se = float(np.std(d) / np.sqrt(max(len(d) - 1, 1)))
            if float(np.mean(d)) > MARGIN_SE * se:
                gains[family] = (float(np.mean(d)), se)
    if not gains:
        return best, ""
    won = max(gains, key=lambda f: gains[f][0])
    gain, se = gains[won]
    return won, f"; {won} beats {best} by {gain:.3g} +- {se:.2g} per row held out"


def scm_from_graph(
    graph: nx.DiGraph,
    data: Any,
    *,
    mechanisms: str | Mapping[str, str] = "auto",
    missing: str = "raise",
    validation_fraction: float = 0.2,
    seed: int = 0,
    plate: str = "unit",
    roots: str = "model",
    flexible: bool = True,
) -> GraphSCM:
    """A program with one learnable mechanism per node of ``graph``, fitted to ``data``.

    Parameters
    ----------
    graph
        A ``networkx.DiGraph`` whose nodes are the columns of ``data`` (acyclic).
    data
        A pandas DataFrame (or ``{column: array}``); dtypes decide the site types
        (:func:`scm_ppl.core.frames.site_types`).
    mechanisms
        ``"auto"`` (pick by held-out likelihood) or ``{node: family}`` to fix some nodes.
    missing
        ``"raise"`` or ``"drop"`` rows with missing values (with a warning and the count).
    validation_fraction
        Share of rows held out to score the candidates (the chosen one is then refitted
        on every row).
    roots
        ``"model"``: a root gets a mechanism like any node (a law with no parents, chosen
        by held-out likelihood). ``"empirical"``: the roots resample the data's rows
        jointly (:mod:`scm_ppl.learn.empirical`), so covariates need no invented law and
        keep their dependence; an observed root's abduction is exact. A continuous root's
        value that no training row holds (a new unit) is scored and replayed through the
        interpolated empirical CDF; a discrete root's unseen level is refused.
    flexible
        Whether continuous nodes with parents also try the additive-noise MLP (``"mlp"``)
        and the location-scale MLP (``"mlp-loc-scale"``; :mod:`scm_ppl.learn.flexible`),
        except where the data have many exact zeros (a Normal net puts no mass there);
        continuous nodes (roots too) the spline noise (``"spline"``) on the same terms;
        discrete nodes with parents the neural logits (``"mlp-logistic"``,
        ``"mlp-softmax"``). These must win by two standard errors (module docstring).

    Examples
    --------
    >>> import numpy as np, pandas as pd, networkx as nx
    >>> rng = np.random.default_rng(0)
    >>> x = rng.normal(size=500)
    >>> df = pd.DataFrame({"x": x, "y": np.exp(x + 0.3 * rng.normal(size=500))})
    >>> model = scm_from_graph(nx.DiGraph([("x", "y")]), df)
    >>> model.choices["y"].family
    'log-linear'
    """
    import pandas as pd

    check_method(roots, ROOTS, what="roots= option")
    frame = data if is_frame(data) else pd.DataFrame(dict(data))
    columns = as_columns(frame, missing=missing)
    kinds = site_types(frame)
    order = _check_graph(graph, columns)
    if isinstance(mechanisms, str) and mechanisms != "auto":
        raise SettingsError(f"mechanisms= must be 'auto' or {{node: family}}; got {mechanisms!r}.")
    fixed: dict[str, str] = {} if isinstance(mechanisms, str) else dict(mechanisms)
    for node, family in fixed.items():
        allowed = FAMILIES.get(kinds.get(node, ""), ())
        if family not in allowed:
            raise SettingsError(
                f"mechanisms[{node!r}] = {family!r} is not a family for this node (its type "
                f"{kinds.get(node, 'unknown: not a column')}); choose one of {allowed}."
            )
    n = len(next(iter(columns.values())))
    rng = np.random.default_rng(seed)
    held = rng.permutation(n)[: int(validation_fraction * n)]
    train = np.ones(n, bool)
    train[held] = False
    stats = {}
    for name in order:
        cats = (
            tuple(frame[name].cat.categories)
            if kinds[name] != "continuous" and hasattr(frame[name], "cat")
            else None
        )
        stats[name] = _stats(name, columns[name], kinds[name], cats)
    choices, params = {}, {}
    empirical = tuple(n for n in order if roots == "empirical" and not graph.in_degree(n))
    for node in empirical:
        reason = f"resamples the {n} rows jointly with the roots {list(empirical)}"
        choices[node] = MechanismChoice(node, stats[node]["type"], "empirical", (), {}, reason)
    for node in order:
        if node in choices:
            continue
        parents = tuple(sorted(graph.predecessors(node)))
        feats = np.asarray(features(stats, parents, columns, np), np.float64)
        feats = np.broadcast_to(feats, (n, feats.shape[1]))
        y, s = columns[node], stats[node]
        families, reason = _candidates(s, y)
        if s["type"] == "continuous" and parents and flexible and held.size:
            if "hurdle" in families and any(stats[p]["type"] == "continuous" for p in parents):
                families = (*families, "hurdle-sq")
            if s["zero_share"] < ZERO_SHARE:  # a Normal net puts no mass at zero: no contest
                families = (*families, *MLP_FAMILIES)
        if s["type"] == "continuous" and flexible and held.size and s["zero_share"] < ZERO_SHARE:
            families = (*families, "spline")  # a continuous law: no mass at zero either
        if s["type"] != "continuous" and not (parents and flexible and held.size):
            families = families[:1]  # a net of no features, or no rows to score it on
        if node in fixed:
            families, reason = (fixed[node],), "fixed by mechanisms="
        if s["type"] == "continuous" and not set(families) <= set(LINEAR_SPACE):
            s["mean"], s["sd"] = s["log_mean"], s["log_sd"]
        linear = {**s, "mean": s["feature_mean"], "sd": s["feature_sd"]}
        rows = {}  # held-out log-likelihood per row, by family
        for family in families:
            fs = linear if family in LINEAR_SPACE else s
            if family in MLP_FAMILIES:
                fitted = fit_flexible(family, feats, y, fs, train, seed)
                rows[family] = row_loglik_flexible(family, fitted, feats[~train], y[~train], fs)
                continue
            if family in LOGIT_FAMILIES:
                fitted = fit_logits(family, feats, y, s, train, seed)
                rows[family] = row_loglik_logits(family, fitted, feats[~train], y[~train])
                continue
            if family == "spline":
                fitted = fit_spline(feats, y, fs, train)
                rows[family] = row_loglik_spline(fitted, feats[~train], y[~train], fs)
                continue
            f = _squared(stats, parents, columns, feats) if family in SQUARED else feats
            base = SQUARED.get(family, family)
            fitted = fit_family(base, f[train], y[train], fs)
            rows[family] = row_loglik_family(base, fitted, f[~train], y[~train], fs)
        scores = {family: float(np.mean(r)) for family, r in rows.items()}
        best, why = _pick(rows) if held.size else (families[-1], "")
        reason += why
        if best in LINEAR_SPACE and s["type"] == "continuous":
            s["mean"], s["sd"] = s["feature_mean"], s["feature_sd"]
        if best in MLP_FAMILIES:
            final = fit_flexible(best, feats, y, s, np.ones(n, bool), seed)
        elif best in LOGIT_FAMILIES:
            final = fit_logits(best, feats, y, s, np.ones(n, bool), seed)
        elif best == "spline":
            final = fit_spline(feats, y, s, np.ones(n, bool))
        elif best in SQUARED:
            final = fit_family(SQUARED[best], _squared(stats, parents, columns, feats), y, s)
        else:
            final = fit_family(best, feats, y, s)
        for key, value in final.items():
            params[f"{node}.{key}"] = np.asarray(value, np.float32)
        choices[node] = MechanismChoice(node, s["type"], best, parents, scores, reason)
    return GraphSCM(
        graph=graph,
        order=order,
        choices=choices,
        params=params,
        stats=stats,
        plate=plate,
        empirical=root_tables(
            columns, empirical, tuple(r for r in empirical if stats[r]["type"] == "continuous")
        )
        if empirical
        else (),
    )
