"""A neural SCM learned from data, graded against the truth (``models.nonlinear``).

``learnable_model`` (MLP additive-noise and location-scale mechanisms, a spline flow) is
fitted by ``scm_ppl.fit`` to 10k observational rows of the true five-node nonlinear SCM;
its interventional means and its counterfactuals for held-out units are then compared
with the truth: Monte Carlo on the true mechanisms, and exact counterfactuals by
inverting them unit by unit.

Tolerances
----------
Interventional means: ``Z`` combined Monte-Carlo standard errors (of the learned SCM's
draws and of the truth's) plus a model-error allowance ``MEAN_ALLOWANCE = 0.08``. The
values are on the unit scale (interventional sds 0.3-0.7); with 10k rows the
statistical error of a learned conditional mean is ~0.01 and the fits below land within
0.045 of the truth (measured: 0.005-0.04), so the allowance has a 2x margin yet catches
a wrong mechanism (e.g. a linear ``x2`` or a homoscedastic ``x3`` miss by > 0.1).

Counterfactuals: mean absolute error per node below ``CF_BOUND = 0.1`` over 1000
held-out units. Why reachable: every mechanism inverts, so abduction recovers each
unit's noise and the noise cancels. For an additive node ``x = f(pa) + σu`` the
counterfactual error is ``|Δf̂ - Δf|``, the error of the learned *change* of ``f``, not
of the noise: a few hundredths where the data are dense. A predictor that ignored the
unit's noise would err by ``E|σu| = 0.8 σ ≈ 0.24`` on ``x4`` (σ = 0.3); the bound is a
third of the smallest additive noise sd and the fits measure 0.01-0.03.

Speed (2 shared CPU cores, printed with ``-s``): ~0.07-0.2 s per epoch at 10k rows
(18 steps of 512 rows); a 100k-unit counterfactual on the learned SCM ~1 s compiled.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from numpyro import handlers

import scm_ppl
from models import nonlinear as nl
from scm_ppl import FittedSCM, counterfactual, fit, interventional

Z = 5.0  # Monte-Carlo tolerance in standard errors (fixed keys: deterministic tests)
MEAN_ALLOWANCE = 0.08  # model error allowed on an interventional mean (see module notes)
CF_BOUND = 0.1  # mean absolute counterfactual error per node (see module notes)

NUM_ROWS = 10_000
NUM_HELD_OUT = 1_000
NUM_EPOCHS = 150
BATCH_SIZE = 512
LEARNING_RATE = 0.01
VALIDATION_FRACTION = 0.1
STEPS = NUM_EPOCHS * -(-round(NUM_ROWS * (1 - VALIDATION_FRACTION)) // BATCH_SIZE)
# Adam on a cosine-decayed rate: a short fit that settles instead of wandering.
OPTIMIZER = optax.adam(optax.cosine_decay_schedule(LEARNING_RATE, STEPS, alpha=0.05))
SETTINGS: dict[str, Any] = {
    "batch_size": BATCH_SIZE,
    "optimizer": OPTIMIZER,
    "validation_fraction": VALIDATION_FRACTION,
    "progress": False,
    "rng_key": jax.random.key(0),
}

INTERVENTIONS = {"do_x1": {"x1": -1.0}, "do_x3": {"x3": -0.5}}


def world(result: Any, index: int = 1) -> dict[str, np.ndarray]:
    """One world's values of a counterfactual result (one exact draw), by site."""
    pred = result.samples["predictions"]
    return {site: np.asarray(pred[site][0, 0, index], np.float64) for site in nl.NODES}


def as_float32(values: Mapping[str, np.ndarray]) -> dict[str, jax.Array]:
    return {k: jnp.asarray(v, jnp.float32) for k, v in values.items()}


@pytest.fixture(scope="module")
def data() -> dict[str, np.ndarray]:
    return nl.sample(NUM_ROWS, seed=0)


@pytest.fixture(scope="module")
def held_out() -> dict[str, np.ndarray]:
    return nl.sample(NUM_HELD_OUT, seed=1)


@pytest.fixture(scope="module")
def fitted(data: dict[str, np.ndarray]) -> FittedSCM:
    # A 2-epoch fit first compiles the epoch (cached on the fit's structure), so the
    # main fit's history.seconds is training time alone.
    start = time.perf_counter()
    fit(nl.learnable_model, data, num_epochs=2, **SETTINGS)
    compile_s = time.perf_counter() - start
    result = fit(nl.learnable_model, data, num_epochs=NUM_EPOCHS, **SETTINGS)
    per_epoch = result.history.seconds / NUM_EPOCHS
    print(
        f"\nfit at {NUM_ROWS} rows: {1e3 * per_epoch:.0f} ms per epoch "
        f"({NUM_EPOCHS} epochs, batch {BATCH_SIZE}); compile + 2 epochs {compile_s:.1f} s"
    )
    return result


# ---------------------------------------------------------------- the truth itself


@pytest.mark.parametrize("interventions", [{}, {"x2": 0.5}, {"x1": -1.0, "x4": 0.2}, {"x5": 1.0}])
def test_counterfactual_truth_matches_twin_simulation(interventions: dict[str, float]) -> None:
    # The same key replays the same noise in the true program with and without do():
    # the twin world is the counterfactual, to float32 rounding.
    n = 200
    key = jax.random.key(7)
    factual = handlers.trace(handlers.seed(nl.model, key)).get_trace(n)
    do: dict[str, Any] = {k: jnp.full(n, v) for k, v in interventions.items()}
    twin = handlers.trace(handlers.seed(handlers.do(nl.model, data=do), key)).get_trace(n)
    observed = {k: np.asarray(factual[k]["value"], np.float64) for k in nl.NODES}
    expected = nl.counterfactual_truth(observed, interventions)
    for site in nl.NODES:
        got = interventions.get(site, np.asarray(twin[site]["value"]))
        np.testing.assert_allclose(expected[site], got, rtol=1e-4, atol=1e-4, err_msg=site)


def test_truth_helpers_reject_unknown_sites() -> None:
    with pytest.raises(KeyError, match=r"Unknown intervened site\(s\) \['x9'\]"):
        nl.sample(3, interventions={"x9": 0.0})
    with pytest.raises(KeyError, match="missing"):
        nl.counterfactual_truth({"x1": np.zeros(2)}, {})


# ---------------------------------------------------------------- the learned SCM


def test_learned_interventional_means_match_truth(fitted: FittedSCM) -> None:
    num_draws, num_units = 20, 10_000
    result = interventional(
        fitted,
        INTERVENTIONS,
        rng_key=jax.random.key(1),
        num_samples=num_draws,
        model_kwargs={"n": num_units},
    )
    pred = result.samples["predictions"]
    for i, (label, ivs) in enumerate(INTERVENTIONS.items()):
        (target,) = ivs
        for site in nl.NODES[nl.NODES.index(target) + 1 :]:
            draws = np.asarray(pred[site][:, :, i], np.float64).ravel()
            truth = nl.interventional_mean(site, ivs, n_mc=1_000_000, seed=2)
            se = np.hypot(draws.std() / np.sqrt(draws.size), truth.se)
            error = abs(draws.mean() - truth.mean)
            print(f"{label} {site}: learned {draws.mean():+.4f} truth {truth.mean:+.4f}")
            assert error <= Z * se + MEAN_ALLOWANCE, (label, site, error, se)


@pytest.mark.parametrize("shift", ["x2", "x3"])
def test_learned_counterfactuals_of_held_out_units(
    fitted: FittedSCM, held_out: dict[str, np.ndarray], shift: str
) -> None:
    # do(x2 := x2 + 0.3) per unit, or do(x3 := 0): each keeps the unit's own noise.
    value = held_out["x2"] + 0.3 if shift == "x2" else np.zeros(NUM_HELD_OUT)
    result = counterfactual(
        fitted,
        as_float32(held_out),
        {shift: jnp.asarray(value, jnp.float32)},
        rng_key=jax.random.key(3),
        model_kwargs={"n": NUM_HELD_OUT},
    )
    assert result.method == "exact"
    assert result.attrs["exact"]
    factual, cf = world(result, 0), world(result, 1)
    truth = nl.counterfactual_truth(held_out, {shift: value})
    for site in nl.NODES:  # the factual world reproduces the evidence
        np.testing.assert_allclose(factual[site], held_out[site], atol=1e-4)
    errors = {site: float(np.mean(np.abs(cf[site] - truth[site]))) for site in nl.NODES}
    print(f"do({shift}) counterfactual MAE: {errors}")
    upstream = nl.NODES[: nl.NODES.index(shift)]
    assert all(errors[site] < 1e-6 for site in upstream), errors
    assert max(errors.values()) < CF_BOUND, errors


def test_save_load_gives_the_same_counterfactual_to_the_bit(
    fitted: FittedSCM, held_out: dict[str, np.ndarray], tmp_path: Any
) -> None:
    path = tmp_path / "nonlinear.npz"
    fitted.save(path)
    loaded = FittedSCM.load(path, nl.learnable_model)
    evidence = as_float32(held_out)
    answers = [
        counterfactual(
            model,
            evidence,
            {"x2": 0.5},
            rng_key=jax.random.key(4),
            model_kwargs={"n": NUM_HELD_OUT},
        )
        for model in (fitted, loaded)
    ]
    for site in nl.NODES:
        np.testing.assert_array_equal(
            np.asarray(answers[1].samples["predictions"][site]),
            np.asarray(answers[0].samples["predictions"][site]),
        )


def test_counterfactual_of_100k_units_in_one_compiled_pass(fitted: FittedSCM) -> None:
    n = 100_000
    timings, traces = [], []
    for seed in (5, 6):  # new evidence and intervention values, same shapes
        evidence = as_float32(nl.sample(n, seed=seed))
        before = scm_ppl.query.engine.trace_count()
        start = time.perf_counter()
        result = counterfactual(
            fitted,
            evidence,
            {"x3": jnp.asarray(float(seed) / 10)},
            rng_key=jax.random.key(seed),
            model_kwargs={"n": n},
        )
        jax.block_until_ready(result.samples["predictions"]["x5"])
        timings.append(time.perf_counter() - start)
        traces.append(scm_ppl.query.engine.trace_count() - before)
    print(
        f"\n100k-unit counterfactual: first {timings[0]:.2f} s (compiles), "
        f"repeat {timings[1]:.2f} s (compiled pass)"
    )
    assert result.method == "exact"
    assert traces[1] == 0, traces
