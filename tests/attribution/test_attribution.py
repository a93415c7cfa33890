"""Causal attribution against closed forms, planted root causes and planted changes.

Closed forms (linear-Gaussian ``X -> Z -> Y``, ``X -> Y``):

* arrow strength, variance measure: ``a² Var(X)`` — the measure DoWhy's
  ``gcm.arrow_strength`` uses by default for continuous targets (DoWhy user guide,
  "Direct Effect: Quantifying Arrow Strength": "by default, the measurement unit ... is
  variance for a continuous real-valued target",
  https://www.pywhy.org/dowhy/main/user_guide/causal_tasks/estimating_causal_effects/direct_indirect_effects/quantify_arrow_strength.html);
  KL measure: ``½ log(1 + a² Var(X) / σ²)`` (Janzing et al., Ann. Statist. 2013, Example 4);
* intrinsic causal influence with variance as the uncertainty measure (DoWhy's
  ``gcm.intrinsic_causal_influence``, user guide "Quantifying intrinsic causal influence",
  https://www.pywhy.org/dowhy/main/user_guide/causal_tasks/quantify_causal_influence/icc.html;
  Janzing et al. AISTATS 2024, PMLR 238:2188-2196, linear case; the guide: the
  contributions "sum up to the variance of Z"): for ``Y = Σ c_i N_i``, node ``i`` gets
  ``c_i² Var(N_i)``.

Tolerances: each estimate carries its Monte-Carlo standard error (spread of 8 independent
replicates); we accept ``4 se`` (a false alarm below 1e-4 per number) plus 2% of the value
for the known finite-sample biases (the parents' empirical marginal of 1024 rows; the
jackknifed mixture density of the KL estimate).
"""

from __future__ import annotations

import doctest
import importlib

import jax
import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as dist
import pytest

from scm_ppl import FittedSCM, attribution
from scm_ppl.errors import CriticismError, DataError, GraphError
from scm_ppl.learn import FitHistory

A, B, C = 1.5, 0.8, -1.2  # y = A x + C z + σ_y N_y, z = B x + σ_z N_z
SX, SZ, SY = 1.3, 0.7, 0.9


def linear(n: int) -> None:
    with numpyro.plate("unit", n):
        x = numpyro.sample("x", dist.Normal(0.0, SX))
        z = numpyro.sample("z", dist.Normal(B * x, SZ))
        numpyro.sample("y", dist.Normal(A * x + C * z, SY))


def close(est: float, se: float, truth: float) -> bool:
    return abs(est - truth) <= 4 * se + 0.02 * abs(truth)


def test_arrow_strength_variance_matches_closed_form() -> None:
    r = attribution.arrow_strength(linear, "y", rng_key=jax.random.key(1))
    var_x, var_z = SX**2, B**2 * SX**2 + SZ**2
    assert r.nodes == ("x", "z")
    for node, truth in {"x": A**2 * var_x, "z": C**2 * var_z}.items():
        i = r.nodes.index(node)
        assert close(r.estimate[i], r.std_error[i], truth), (node, r.estimate[i], truth)
    assert r.uncertainty == "monte-carlo"


@pytest.mark.slow
def test_arrow_strength_kl_matches_closed_form() -> None:
    r = attribution.arrow_strength(linear, "y", measure="kl", rng_key=jax.random.key(2))
    var_x, var_z = SX**2, B**2 * SX**2 + SZ**2
    for node, gain in {"x": A**2 * var_x, "z": C**2 * var_z}.items():
        i = r.nodes.index(node)
        truth = 0.5 * np.log1p(gain / SY**2)
        assert close(r.estimate[i], r.std_error[i], truth), (node, r.estimate[i], truth)


def test_intrinsic_influence_matches_closed_form() -> None:
    r = attribution.intrinsic_influence(linear, "y", rng_key=jax.random.key(3))
    truth = {"x": (A + C * B) ** 2 * SX**2, "z": C**2 * SZ**2, "y": SY**2}
    for i, node in enumerate(r.nodes):
        assert close(r.estimate[i], r.std_error[i], truth[node]), (node, r.estimate[i])
    # Shapley efficiency: the shares sum to Var(Y).
    assert abs(r.estimate.sum() - sum(truth.values())) < 0.05 * sum(truth.values())


@pytest.mark.slow
def test_sampled_shapley_agrees_with_exact() -> None:
    exact = attribution.intrinsic_influence(linear, "y", num_replicates=2)
    sampled = attribution.intrinsic_influence(
        linear, "y", num_replicates=2, approximate=True, num_permutations=16
    )
    assert sampled.attrs["shapley"] == "sampled"
    np.testing.assert_allclose(sampled.estimate, exact.estimate, rtol=0.05)


# --------------------------------------------------------------------- random SCMs

D = 4


def _random_scm(kind: str):
    def model(n: int) -> None:
        w = numpyro.param("W", jnp.zeros((D, D)))
        b = numpyro.param("b", jnp.zeros(D))
        xs: list = []
        with numpyro.plate("unit", n):
            for j in range(D):
                loc = b[j]
                for i in range(j):
                    f = xs[i] if kind == "linear" else xs[i] + 0.5 * jnp.tanh(xs[i])
                    loc = loc + w[j, i] * f
                xs.append(numpyro.sample(f"x{j}", dist.Normal(loc, 1.0)))

    return model


MODELS = {kind: _random_scm(kind) for kind in ("linear", "nonlinear")}


def _fitted(model, w: np.ndarray, b: np.ndarray | None = None) -> FittedSCM:
    history = FitHistory(np.zeros(0), np.zeros(0), 0, False, 0.0)
    settings = {"method": "map", "plate": "unit", "size_arg": "n", "model_kwargs": {}}
    params = {"W": jnp.asarray(w), "b": jnp.asarray(np.zeros(D) if b is None else b)}
    return FittedSCM(model, params, {}, {}, {}, {}, history, settings)


def _weights(rng: np.random.Generator) -> np.ndarray:
    w = np.zeros((D, D))
    for j in range(1, D):
        w[j, j - 1] = rng.uniform(0.8, 1.5)  # a chain: every node is an ancestor of the sink
        for i in range(j - 1):
            if rng.random() < 0.4:
                w[j, i] = rng.uniform(0.8, 1.5)
    return w


def _simulate(w: np.ndarray, noise: np.ndarray, kind: str) -> np.ndarray:
    x = np.zeros_like(noise)
    for j in range(D):
        f = x[:, :j] if kind == "linear" else x[:, :j] + 0.5 * np.tanh(x[:, :j])
        x[:, j] = f @ w[j, :j] + noise[:, j]
    return x


@pytest.mark.slow
def test_anomaly_finds_the_planted_root_cause() -> None:
    """200 outliers (10 linear and 10 nonlinear SCMs, 10 units each), each with one node's
    noise pushed out so that the sink moves by 6 of its standard deviations."""
    rng = np.random.default_rng(0)
    hits = total = 0
    for kind, model in MODELS.items():
        for _ in range(10):
            w = _weights(rng)
            effect = np.linalg.inv(np.eye(D) - w)[D - 1]  # total linear effect on the sink
            sd_y = np.sqrt(np.sum(effect**2))
            culprit = rng.integers(0, D, 10)
            noise = rng.normal(size=(10, D))
            sign = rng.choice([-1.0, 1.0], 10)
            noise[np.arange(10), culprit] = sign * 6 * sd_y / effect[culprit]
            x = _simulate(w, noise, kind)
            rows = {f"x{j}": x[:, j] for j in range(D)}
            r = attribution.anomaly(_fitted(model, w), rows, f"x{D - 1}", num_replicates=1)
            hits += int(np.sum(np.argmax(r.estimate, axis=1) == culprit))
            total += 10
    assert total == 200
    assert hits >= 0.95 * total, hits


def test_distribution_change_lands_on_the_changed_mechanism() -> None:
    rng = np.random.default_rng(1)
    model = MODELS["nonlinear"]
    for _ in range(5):
        w = _weights(rng)
        j = int(rng.integers(0, D))
        shift = np.zeros(D)
        shift[j] = rng.choice([-1.0, 1.0]) * 2.0
        r = attribution.distribution_change(
            _fitted(model, w), _fitted(model, w, shift), f"x{D - 1}", num_replicates=2
        )
        share = r.estimate[r.nodes.index(f"x{j}")] / r.estimate.sum()
        assert share >= 0.9, (j, r)


@pytest.mark.slow
def test_distribution_change_from_two_data_sets() -> None:
    def model(n: int) -> None:
        w = numpyro.param("w", 0.0)
        b = numpyro.param("b", jnp.zeros(2))
        with numpyro.plate("unit", n):
            x = numpyro.sample("x", dist.Normal(b[0], 1.0))
            numpyro.sample("y", dist.Normal(b[1] + w * x, 1.0))

    rng = np.random.default_rng(2)
    x0 = rng.normal(size=2000)
    x1 = x0  # the same causes: only y's mechanism differs between the data sets
    before = {"x": x0, "y": 2 * x0 + rng.normal(size=2000)}
    after = {"x": x1, "y": 2 * x1 + 1.5 + rng.normal(size=2000)}  # y's mechanism shifted
    kw = {"batch_size": None, "num_epochs": 500, "learning_rate": 0.1}
    r = attribution.distribution_change(before, after, "y", model=model, fit_kwargs=kw)
    assert r["y"] / r.total >= 0.9 and abs(r.total - 1.5) < 0.2


# ------------------------------------------------------------------------ bad input


def test_target_not_in_graph() -> None:
    with pytest.raises(GraphError, match="Target 'w' is not a per-unit site"):
        attribution.intrinsic_influence(linear, "w")


def test_missing_column_and_nan() -> None:
    with pytest.raises(DataError, match=r"lacks the column\(s\) \['z'\]"):
        attribution.anomaly(linear, {"x": [1.0], "y": [1.0]}, "y")
    with pytest.raises(DataError, match="1 NaN/inf"):
        attribution.anomaly(linear, {"x": [np.nan], "z": [0.0], "y": [1.0]}, "y")


def test_too_many_players_for_exact_shapley() -> None:
    def chain(n: int) -> None:
        with numpyro.plate("unit", n):
            x = numpyro.sample("x0", dist.Normal(0.0, 1.0))
            for k in range(1, 16):
                x = numpyro.sample(f"x{k}", dist.Normal(x, 1.0))

    with pytest.raises(CriticismError, match=r"16 players .* limit of 15 players"):
        attribution.intrinsic_influence(chain, "x15")


def test_program_without_unit_plate() -> None:
    def scalar() -> None:
        x = numpyro.sample("x", dist.Normal(0.0, 1.0))
        numpyro.sample("y", dist.Normal(x, 1.0))

    with pytest.raises(CriticismError, match=r"per-unit sites sit in numpyro\.plate"):
        attribution.arrow_strength(scalar, "y")


def test_target_without_parents() -> None:
    with pytest.raises(CriticismError, match="has no parents"):
        attribution.arrow_strength(linear, "x")


@pytest.mark.parametrize(
    "name",
    [
        "influence",
        "strength",
        pytest.param("anomaly", marks=pytest.mark.slow),
        pytest.param("change", marks=pytest.mark.slow),
    ],
)
def test_docstring_examples(name: str) -> None:
    module = importlib.import_module(f"scm_ppl.attribution.{name}")
    assert doctest.testmod(module).failed == 0
