"""Empirical roots score and replay continuous values no training row holds (issue 18):
the interpolated empirical CDF, in closed form, and a counterfactual over new rows."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import networkx as nx
import numpy as np
import pandas as pd
import pytest
from numpyro import handlers

from scm_ppl.core.noise import noise_view
from scm_ppl.errors import EvidenceError
from scm_ppl.learn import scm_from_graph
from scm_ppl.learn.empirical import EmpiricalRoot, root_tables


def test_unseen_value_maps_to_its_interpolated_quantile_and_back():
    # Rows: g = 0 holds x in {0, 1, 3}; g = 1 holds x in {10, 20, 30, 40}.
    g = np.array([0, 0, 0, 1, 1, 1, 1])
    x = np.array([1.0, 0.0, 3.0, 40.0, 10.0, 30.0, 20.0])
    _, tx = root_tables({"g": g, "x": x}, ("g", "x"), continuous=("x",))
    law = EmpiricalRoot(tx, jnp.zeros(4, jnp.int32), jnp.ones(4, bool))
    value = jnp.array([2.0, 1.0, -1.0, 0.5])
    # 2 lies halfway between the 2nd and 3rd of 3 rows: F = (1 + 1/2 + 1/2) / 3 = 2/3, and
    # the density is 1 / (3 * gap 2); 1 is a row (mass 1/3); -1 lies below every row.
    np.testing.assert_allclose(np.exp(law.log_prob(value)), [1 / 6, 1 / 3, 0.0, 1 / 3], rtol=1e-6)
    view = noise_view(law)
    u = view.noise_given_value(value).sample(jax.random.key(0))
    assert float(u[0]) == pytest.approx(-2 / 3, abs=1e-5 / 3)  # unseen: minus its quantile
    assert 1 / 3 < float(u[1]) < 2 / 3  # seen: inside its own step, as before
    # Replay: within 1e-5 of a row step in quantile, i.e. 1e-5 of the gap of 2 here.
    np.testing.assert_allclose(view.forward(u)[:2], [2.0, 1.0], atol=2e-5)
    # The same quantile among the rows of g = 1 (4 rows): t = 2/3 * 4 - 1/2 = 13/6, i.e.
    # 1/6 of the way from 30 to 40.
    moved = EmpiricalRoot(tx, jnp.ones(1, jnp.int32), jnp.ones(1, bool))
    assert float(moved.forward(u[:1])[0]) == pytest.approx(30 + 10 / 6, abs=1e-3)
    # Sampling never draws a negative noise: generated units are still training rows.
    draws = law.sample(jax.random.key(1), (500,))
    assert set(np.asarray(draws).ravel().tolist()) <= {0.0, 1.0, 3.0}


def test_counterfactual_over_new_rows_with_unseen_root_values():
    """Linear-Gaussian y on an empirical root x and a binary t: a new row's counterfactual
    under do(t = 1) keeps its own x (no training row holds it) and moves y by exactly the
    mechanism's t-effect at that x: y' = y + loc(x, 1) - loc(x, 0)."""
    from scm_ppl import counterfactual

    rng = np.random.default_rng(0)
    n = 400
    x = rng.normal(size=n)
    t = (rng.random(n) < 1 / (1 + np.exp(-x))).astype(int)
    df = pd.DataFrame({"x": x, "t": t, "y": 1.0 + x + 2.0 * t + 0.5 * rng.normal(size=n)})
    graph = nx.DiGraph([("x", "t"), ("x", "y"), ("t", "y")])
    model = scm_from_graph(graph, df, roots="empirical", flexible=False)
    new_x = np.array([-0.8123, 0.0, 0.4567, 1.2345], np.float32)
    assert not np.isin(new_x, x.astype(np.float32)).any()
    new = pd.DataFrame({"x": new_x, "t": [0, 0, 1, 0], "y": [0.1, 1.5, 3.0, 2.0]})
    out = counterfactual(
        model, new, {"cf": {"t": 1}}, rng_key=jax.random.key(0), num_samples=4,
        model_kwargs={"n": 4},
    )  # fmt: skip
    # Replay error: float32 rounding of the quantile, ~ 400 * 1e-7 of a gap of ~ 0.005.
    cf_x = np.asarray(out.world("cf")["x"]).reshape(4, 4)
    np.testing.assert_allclose(cf_x, np.tile(new_x, (4, 1)), atol=1e-5)
    assert (cf_x[:, 1] == 0.0).all()  # a zero comes back as zero (the replay check is relative)

    def loc(tv):
        data = {"x": new_x, "t": np.full(4, tv)}
        with handlers.seed(rng_seed=0), handlers.condition(data=data):
            return np.asarray(handlers.trace(model).get_trace(n=4)["y"]["fn"].loc)

    expected = new["y"].to_numpy() + np.where(new["t"] == 1, 0.0, loc(1) - loc(0))
    np.testing.assert_allclose(
        np.asarray(out.world("cf")["y"]).reshape(4, 4), np.tile(expected, (4, 1)), atol=1e-4
    )
    outside = new.assign(x=[0.1, 0.2, float(x.max()) + 1.0, 0.3])
    with pytest.raises(
        EvidenceError, match=r"Evidence for 'x' has probability zero .* unit\(s\) \[2\]"
    ):
        counterfactual(
            model, outside, {"cf": {"t": 1}}, rng_key=jax.random.key(0), num_samples=4,
            model_kwargs={"n": 4},
        )  # fmt: skip


def test_a_discrete_roots_unseen_level_is_refused_before_any_compilation():
    from scm_ppl import counterfactual
    from scm_ppl.errors import DataError

    rng = np.random.default_rng(0)
    k = pd.Categorical(rng.choice(["a", "b"], size=200))
    df = pd.DataFrame({"k": k, "y": (k == "b") + rng.normal(size=200)})
    model = scm_from_graph(nx.DiGraph([("k", "y")]), df, roots="empirical", flexible=False)
    assert model.choices["k"].family == "empirical"
    new = pd.DataFrame({"k": pd.Categorical(["a", "c"]), "y": [0.1, 0.2]})
    with pytest.raises(DataError, match=r"Column 'k' holds level\(s\) \['c'\] unseen in training"):
        counterfactual(model, new, {"cf": {"k": "a"}}, rng_key=jax.random.key(0), num_samples=2)


def _two_roots():
    """Roots ``g`` (binary) and ``x`` (continuous) resampled jointly, ``y`` on both. Rows:
    ``g = 0`` holds ``x`` in {0, 1, 3}, ``g = 1`` holds ``x`` in {10, 20, 30, 40}."""
    g = np.array([0, 0, 0, 1, 1, 1, 1] * 20)
    x = np.array([1.0, 0.0, 3.0, 40.0, 10.0, 30.0, 20.0] * 20)
    y = 0.1 * x + g + np.random.default_rng(0).normal(size=g.size)
    df = pd.DataFrame({"g": g, "x": x, "y": y})
    graph = nx.DiGraph([("g", "y"), ("x", "y")])
    return scm_from_graph(graph, df, roots="empirical", flexible=False)


def test_a_latent_empirical_root_off_the_evidence_is_drawn_from_its_rows():
    """``x`` missing for new units, with evidence on ``g`` only: nothing downstream of ``x``
    is observed, so its posterior is its law given ``g``: uniform over the rows that hold
    that ``g`` (known answer), drawn, never scored."""
    from scm_ppl import counterfactual

    model = _two_roots()
    draws = 3000
    out = counterfactual(
        model, {"g": np.array([0, 1])}, {"cf": {"y": 0.0}}, rng_key=jax.random.key(0),
        num_samples=draws, model_kwargs={"n": 2},
    )  # fmt: skip
    x = np.asarray(out.world("cf")["x"]).reshape(draws, 2)
    for unit, rows in ((0, [0.0, 1.0, 3.0]), (1, [10.0, 20.0, 30.0, 40.0])):
        values, counts = np.unique(x[:, unit], return_counts=True)
        assert values.tolist() == rows
        p = 1 / len(rows)  # each row's share, within 4 binomial standard errors
        np.testing.assert_allclose(counts / draws, p, atol=4 * np.sqrt(p * (1 - p) / draws))


@pytest.mark.parametrize(("given", "latent"), [(("g", "y"), "x"), (("x", "y"), "g")])
def test_a_latent_empirical_root_upstream_of_the_evidence_is_refused(given, latent):
    # x latent with y observed: its posterior is over rows (masses), which NUTS would
    # weigh as a density; g latent with x observed: x's rows given g would be lost.
    from scm_ppl import counterfactual
    from scm_ppl.errors import AbductionError

    model = _two_roots()
    evidence = {"g": np.array([0, 1]), "x": np.array([1.0, 20.0]), "y": np.array([0.5, 3.0])}
    with pytest.raises(
        AbductionError,
        match=rf"empirical root\(s\) \['{latent}'\] are latent but upstream of the evidence "
        r".*roots='model'",
    ):
        counterfactual(
            model, {k: evidence[k] for k in given}, {"cf": {"y": 0.0}},
            rng_key=jax.random.key(0), num_samples=4, model_kwargs={"n": 2},
        )  # fmt: skip
