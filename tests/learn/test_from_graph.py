"""scm_from_graph (issue 18): the family chosen by held-out likelihood, scale handled
inside, and the bad inputs a graph and a table can bring."""

from __future__ import annotations

import jax
import networkx as nx
import numpy as np
import pandas as pd
import pytest

from models.real_data import sachs_graph
from scm_ppl import interventional
from scm_ppl.errors import DataError, GraphError, SettingsError
from scm_ppl.learn import scm_from_graph
from scm_ppl.query import ett

GRAPH = nx.DiGraph([("x", "b"), ("x", "k"), ("x", "z"), ("x", "h"), ("b", "z")])


def _synthetic(seed: int, n: int = 800) -> pd.DataFrame:
    """One column per type, each from a known family given x."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=n)
    b = (rng.random(n) < 1 / (1 + np.exp(-x))).astype(int)
    logits = np.stack([np.zeros(n), x, -x], axis=1)
    k = (
        rng.random(n)[:, None] > np.cumsum(np.exp(logits) / np.exp(logits).sum(1, keepdims=True), 1)
    ).sum(1)
    zero = rng.random(n) < 1 / (1 + np.exp(-(0.5 - x)))  # zero-inflated, 30-60 % zeros
    z = np.where(zero, 0.0, np.exp(1.0 + 0.5 * x + 0.3 * b + 0.5 * rng.normal(size=n)))
    h = np.exp(2.0 + 0.4 * x + 1.0 * rng.normal(size=n))  # heavy-tailed positive
    return pd.DataFrame({"x": x, "b": b, "k": pd.Categorical(k), "z": z, "h": h})


def test_auto_assignment_picks_the_true_family_in_90_percent_of_seeds():
    truth = {"b": "logistic", "k": "softmax", "z": "hurdle", "h": "log-linear", "x": "linear"}
    hits = {node: 0 for node in truth}
    seeds = range(10)
    for seed in seeds:
        model = scm_from_graph(GRAPH, _synthetic(seed), seed=seed)
        for node, family in truth.items():
            hits[node] += model.choices[node].family == family
    assert all(h >= 0.9 * len(seeds) for h in hits.values()), hits
    assert "hurdle" in model.summary() and "Hurdle(" in model.source()


@pytest.mark.slow
def test_scale_invariance_of_the_att():
    """The same ATT (per row, by abduction) in dollars and in thousands of dollars."""
    rng = np.random.default_rng(1)
    n = 300
    x = rng.normal(size=n)
    t = (rng.random(n) < 1 / (1 + np.exp(-x))).astype(int)
    y = np.where(
        rng.random(n) < 0.3, 0.0, np.exp(8.0 + 0.5 * x + 0.4 * t + 0.5 * rng.normal(size=n))
    )
    graph = nx.DiGraph([("x", "t"), ("x", "y"), ("t", "y")])
    answers = []
    for unit in (1.0, 1000.0):
        df = pd.DataFrame({"x": x, "t": t, "y": y / unit})
        model = scm_from_graph(graph, df)
        est = ett(
            model,
            "t",
            "y",
            rows=df,
            rng_key=jax.random.key(0),
            control=0,
            treated=1,
            num_samples=200,
        )
        answers.append(est.value * unit)
    # Same key and the same standardised parameters: equal up to float32 rounding.
    assert answers[0] == pytest.approx(answers[1], rel=1e-3)
    assert answers[0] > 0


def test_a_cycle_is_named():
    graph = sachs_graph()
    df = pd.DataFrame({node: np.ones(3) for node in graph})
    with pytest.raises(
        GraphError,
        match=r"cycle .*PIP3.*plcg.*PIP2|cycle .*PIP2.*PIP3.*plcg|cycle .*plcg.*PIP2.*PIP3",
    ):
        scm_from_graph(graph, df)


def test_columns_and_nodes_must_match():
    df = _synthetic(0, n=50)
    with pytest.raises(DataError, match=r"column\(s\) \['extra'\] that are not nodes"):
        scm_from_graph(GRAPH, df.assign(extra=1.0))
    with pytest.raises(DataError, match=r"node\(s\) \['h'\] with no column"):
        scm_from_graph(GRAPH, df.drop(columns=["h"]))
    with pytest.raises(GraphError, match=r"networkx\.DiGraph"):
        scm_from_graph([("x", "b")], df)


def test_missing_values_and_settings():
    df = _synthetic(0, n=50)
    df.loc[3, "h"] = np.nan
    with pytest.raises(DataError, match=r"1 row\(s\): per column \{'h': 1\}"):
        scm_from_graph(GRAPH, df)
    with pytest.warns(match="Dropped 1 of 50"):
        scm_from_graph(GRAPH, df, missing="drop", flexible=False)
    with pytest.raises(SettingsError, match=r"mechanisms\['b'\] = 'linear' is not a family"):
        scm_from_graph(GRAPH, df.dropna(), mechanisms={"b": "linear"})
    with pytest.raises(SettingsError, match="mechanisms= must be 'auto'"):
        scm_from_graph(GRAPH, df.dropna(), mechanisms="mlp")


def test_query_time_levels_follow_training_and_unseen_ones_are_refused():
    """Labels are coded as in training whatever the evidence table's own category order;
    a level the mechanisms never saw is an error naming the column, level and levels."""
    import types

    from scm_ppl import counterfactual
    from scm_ppl.core.frames import site_levels

    rng = np.random.default_rng(0)
    k = rng.integers(0, 3, 300)
    df = pd.DataFrame({
        "k": pd.Categorical(np.array(["a", "b", "c"])[k]),
        "y": 2.0 * k + 0.1 * rng.normal(size=300),
    })  # fmt: skip
    model = scm_from_graph(nx.DiGraph([("k", "y")]), df, flexible=False)
    assert model.levels == {"k": ("a", "b", "c")}
    assert site_levels(types.SimpleNamespace(base_model=model)) == model.levels  # a fit
    kw = {"rng_key": jax.random.key(0), "model_kwargs": {"n": 2}, "num_samples": 4}
    # Categories in another order ('c' is code 0 of this frame) and plain strings.
    reordered = pd.DataFrame({"k": pd.Categorical(["c", "a"], ["c", "a"]), "y": [4.0, 0.0]})
    strings = pd.DataFrame({"k": ["c", "a"], "y": [4.0, 0.0]})
    codes = {"k": np.array([2, 0]), "y": np.array([4.0, 0.0])}
    answers = [
        np.asarray(counterfactual(model, ev, {"y": 1.0}, **kw).world("cf")["k"])
        for ev in (reordered, strings, codes)
    ]
    assert (answers[2].reshape(-1, 2) == [2, 0]).all()  # a root keeps its factual level
    np.testing.assert_array_equal(answers[0], answers[2])
    np.testing.assert_array_equal(answers[1], answers[2])
    unseen = pd.DataFrame({"k": pd.Categorical(["a", "z"]), "y": [0.1, 0.2]})
    match = r"Column 'k' holds level\(s\) \['z'\] unseen in training \(levels \['a', 'b', 'c'\]\)"
    with pytest.raises(DataError, match=match):
        counterfactual(model, unseen, {"y": 1.0}, **kw)
    with pytest.raises(DataError, match=r"'k' holds code\(s\) \[7\] unseen .*codes 0\.\.2"):
        counterfactual(model, unseen.assign(k=[0, 7]), {"y": 1.0}, **kw)
    with pytest.raises(DataError, match=match):
        ett(model, "k", "y", rows=unseen, rng_key=jax.random.key(0), treated="b", control="a")


def test_empirical_roots_resample_rows_jointly_and_replay_when_observed():
    """A bimodal root and a binary root tied to it: generated units keep both the modes and
    the dependence (Monte-Carlo error of 4,000 draws: share 0.5 +- 0.008, corr +- 0.01);
    observed roots replay exactly, and the ETT over rows is the linear effect 2."""
    from scm_ppl import counterfactual, interventional

    rng = np.random.default_rng(0)
    n = 1000
    x = np.where(rng.random(n) < 0.5, -3.0, 3.0) + 0.3 * rng.normal(size=n)
    b = (x > 0).astype(int) ^ (rng.random(n) < 0.1)
    t = (rng.random(n) < 1 / (1 + np.exp(-0.5 * x))).astype(int)
    df = pd.DataFrame({"x": x, "b": b, "t": t, "y": 1.0 + x + 2.0 * t + rng.normal(size=n)})
    graph = nx.DiGraph([("x", "t"), ("b", "t"), ("x", "y"), ("t", "y"), ("b", "y")])
    model = scm_from_graph(graph, df, roots="empirical", flexible=False)
    assert model.choices["x"].family == "empirical" and "resamples the 1000 rows" in (
        model.summary()
    )
    assert "EmpiricalRoot(rows | b)" in model.source()
    out = interventional(model, None, rng_key=jax.random.key(0), num_samples=1,
                         model_kwargs={"n": 4000})  # fmt: skip
    xs, bs = (np.asarray(out.world("do")[c]).ravel() for c in ("x", "b"))
    assert set(np.round(xs, 5)) <= set(np.round(x.astype(np.float32), 5))  # rows, not a law
    assert abs(np.mean(xs > 0) - np.mean(x > 0)) < 0.04
    assert abs(np.mean(np.abs(xs) < 1.5)) < 0.01  # nothing between the modes
    assert abs(np.corrcoef(xs, bs)[0, 1] - np.corrcoef(x, b)[0, 1]) < 0.05
    worlds = {"treated": {"t": 1}, "control": {"t": 0}}
    kw = {"rng_key": jax.random.key(1), "model_kwargs": {"n": 5}, "num_samples": 10}
    cf = counterfactual(model, df.iloc[:5], worlds, **kw)
    np.testing.assert_array_equal(
        np.asarray(cf.world("treated")["x"]).reshape(-1, 5),
        np.tile(x[:5].astype(np.float32), (10, 1)),
    )
    effect = np.asarray(cf.world("treated")["y"]) - np.asarray(cf.world("control")["y"])
    np.testing.assert_allclose(effect, effect.ravel()[0], rtol=1e-5)  # linear: one effect
    assert float(effect.ravel()[0]) == pytest.approx(2.0, abs=0.15)  # the slope: 2 +- 3 se
    with pytest.raises(SettingsError, match=r"Unknown roots= option 'rows'"):
        scm_from_graph(graph, df, roots="rows")


def test_flexible_candidates_win_where_the_mechanism_bends():
    """y = sin(2x) + x/2 + noise: an MLP family beats linear by held-out likelihood in
    every one of 10 seeds (the goal: 90 %); inhibit acts on an MLP's hidden layer too."""
    from scm_ppl.learn import inhibit

    graph = nx.DiGraph([("x", "y")])
    picks = []
    for seed in range(10):
        rng = np.random.default_rng(seed)
        x = rng.normal(size=400)
        y = np.sin(2 * x) + 0.5 * x + 0.3 * rng.normal(size=400)
        model = scm_from_graph(graph, pd.DataFrame({"x": x, "y": y}), seed=seed)
        choice = model.choices["y"]
        picks.append(choice.family)
        assert max(choice.scores["mlp"], choice.scores["mlp-loc-scale"]) > choice.scores["linear"]
    assert sum(p in ("mlp", "mlp-loc-scale") for p in picks) >= 9, picks
    assert "tanh(" in model.source() and "mlp" in model.summary()
    cut = inhibit(model, "y", "x", factor=0.0)
    out = interventional(cut, None, rng_key=jax.random.key(0), num_samples=1,
                         model_kwargs={"n": 2000})  # fmt: skip
    # y no longer listens to x: its spread is its own noise (0.3 +- 0.05 for the fit).
    assert float(np.asarray(out.world("do")["y"]).std()) == pytest.approx(0.3, abs=0.05)


def test_hurdle_on_squared_parents_is_picked_where_the_log_level_bends():
    from scm_ppl.errors import InterventionError
    from scm_ppl.learn import inhibit

    rng = np.random.default_rng(0)
    x = rng.normal(size=1000)
    zero = rng.random(1000) < 0.3
    y = np.where(zero, 0.0, np.exp(1.0 + 0.8 * x**2 + 0.3 * rng.normal(size=1000)))
    model = scm_from_graph(nx.DiGraph([("x", "y")]), pd.DataFrame({"x": x, "y": y}))
    scores = model.choices["y"].scores
    assert model.choices["y"].family == "hurdle-sq" and scores["hurdle-sq"] > scores["hurdle"]
    assert "features_and_squares(x)" in model.source()
    with pytest.raises(InterventionError, match=r"'y' is not a parent of 'x'"):
        inhibit(model, "x", "y")  # hurdle-sq is accepted (tests/learn/test_inhibit.py)
