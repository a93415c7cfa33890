"""Queries on fits of one program share one compiled function: the learned values are
arguments of the compiled call, not constants baked into it."""

from __future__ import annotations

import importlib
import warnings
from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as dist
import pytest
from numpyro.contrib.module import eqx_module

from scm_ppl import FittedSCM, counterfactual, do_mechanism, interventional
from scm_ppl.learn import FitHistory, scale
from scm_ppl.query.engine import trace_count

engine = importlib.import_module("scm_ppl.query.engine")
program_module = importlib.import_module("scm_ppl.core.program")
inference = importlib.import_module("scm_ppl.core.inference")
cache = importlib.import_module("scm_ppl.core.cache")

KEY = jax.random.key(3)
X = jnp.array([0.3, -1.2, 0.8, 2.0])
Y = jnp.array([1.0, -0.5, 2.5, 0.1])
X_CF = 1.5
NOISE = 0.5


def linear(n: int = 1, width: int = 2) -> None:
    """``y = w x + sum(c) + noise``: ``c``'s length is set by the fit, not the data."""
    w = jnp.asarray(numpyro.param("w", 1.0))
    c = jnp.asarray(numpyro.param("c", jnp.zeros(width)))
    with numpyro.plate("unit", n):
        x = numpyro.sample("x", dist.Normal(0.0, 1.0))
        numpyro.sample("y", dist.Normal(w * x + jnp.sum(c), NOISE))


def with_global_latent(n: int = 1) -> None:
    """``y = w x + noise`` with a prior on the weight ``w`` (a global latent site)."""
    w = numpyro.sample("w", dist.Normal(0.0, 2.0))
    with numpyro.plate("unit", n):
        x = numpyro.sample("x", dist.Normal(0.0, 1.0))
        numpyro.sample("y", dist.Normal(w * x, NOISE))


def with_network(n: int = 1) -> None:
    """``y = net(x) + noise`` with an Equinox network as the mechanism."""
    net: Any = eqx_module("net", _network(jax.random.key(0), jnp.tanh))
    with numpyro.plate("unit", n):
        x = jnp.asarray(numpyro.sample("x", dist.Normal(0.0, 1.0)))
        numpyro.sample("y", dist.Normal(jax.vmap(net)(x[:, None])[:, 0], NOISE))


def _network(key: jax.Array, activation) -> eqx.nn.Sequential:
    first, second = jax.random.split(key)
    return eqx.nn.Sequential(
        [eqx.nn.Linear(1, 4, key=first), eqx.nn.Lambda(activation), eqx.nn.Linear(4, 1, key=second)]
    )


def _fitted(program, params=None, method: str = "map", **groups) -> FittedSCM:
    history = FitHistory(np.zeros(0), np.zeros(0), 0, False, 0.0)
    point, loc, scale, samples = (groups.get(g, {}) for g in ("point", "loc", "scale", "samples"))
    return FittedSCM(
        program, dict(params or {}), point, loc, scale, samples, history, {"method": method}
    )


def _linear_fit(w: float, c: list[float]) -> FittedSCM:
    # Fits hold strongly typed arrays (a weak type would make jit trace again).
    return _fitted(linear, {"w": jnp.array(w, jnp.float32), "c": jnp.array(c, jnp.float32)})


def _cf_y(fitted: FittedSCM, **kwargs) -> np.ndarray:
    cf = counterfactual(
        fitted, {"x": X, "y": Y}, {"x": X_CF}, rng_key=KEY, model_kwargs={"n": 4, **kwargs}
    )
    return np.asarray(cf.predictions["y"][0, 0, 1])


def _fresh(monkeypatch: pytest.MonkeyPatch, query):
    """``query()`` compiled anew, as in a new process."""
    with monkeypatch.context() as patch:
        patch.setattr(program_module, "_INFO_CACHE", cache.LRUCache(256))
        patch.setattr(inference, "_MCMC", cache.LRUCache(32))
        return query()


def test_a_second_fit_of_one_program_does_not_recompile(monkeypatch):
    first, second = _linear_fit(2.0, [0.5, 0.0]), _linear_fit(-1.0, [0.25, 1.0])
    _cf_y(first)
    before = trace_count()
    answer = _cf_y(second)
    assert trace_count() == before
    # Abduction recovers y's noise exactly: y' = y + w (x' - x).
    np.testing.assert_allclose(answer, Y - 1.0 * (X_CF - X), rtol=1e-6, atol=1e-6)
    np.testing.assert_array_equal(answer, _fresh(monkeypatch, lambda: _cf_y(second)))


def test_values_as_arguments_match_values_baked_in(monkeypatch):
    """The old path (values as constants) agrees to float rounding: XLA may fold a
    constant differently (a division by a constant, say), hence no bitwise match."""
    fitted = _linear_fit(3.0, [0.5, -0.25])
    answer = _cf_y(fitted)
    monkeypatch.setattr(engine, "program_parts", lambda model: None)
    baked = _fresh(monkeypatch, lambda: _cf_y(fitted))
    np.testing.assert_allclose(answer, baked, rtol=1e-6, atol=1e-6)


def test_do_mechanism_on_a_fit_hits_the_cache():
    fitted = _linear_fit(2.0, [0.5, 0.0])
    _cf_y(fitted)
    before = trace_count()
    doubled = _cf_y(do_mechanism(fitted, {"w": scale(2.0)}))
    assert trace_count() == before
    np.testing.assert_allclose(doubled, Y + 4.0 * (X_CF - X), rtol=1e-6, atol=1e-6)


def test_values_of_another_shape_recompile():
    _cf_y(_linear_fit(2.0, [0.5, 0.0]))
    before = trace_count()
    answer = _cf_y(_linear_fit(2.0, [0.5, 0.0, 1.0]), width=3)
    assert trace_count() == before + 1
    np.testing.assert_allclose(answer, Y + 2.0 * (X_CF - X), rtol=1e-6, atol=1e-6)


def test_python_numbers_stay_constants_and_key_by_type_and_value():
    """A Python number is static: another value, or another type of an equal value,
    compiles anew (1 == 1.0, but an int param makes integer arithmetic)."""
    as_float = _fitted(linear, {"w": 2.0, "c": jnp.zeros(2)})
    _cf_y(as_float)
    before = trace_count()
    np.testing.assert_allclose(
        _cf_y(_fitted(linear, {"w": 3.0, "c": jnp.zeros(2)})), Y + 3.0 * (X_CF - X), rtol=1e-6
    )
    assert trace_count() == before + 1
    _cf_y(_fitted(linear, {"w": 2, "c": jnp.zeros(2)}))
    assert trace_count() == before + 2


def test_equinox_networks_of_one_architecture_share_a_compile(monkeypatch):
    def query(fitted: FittedSCM) -> np.ndarray:
        result = interventional(fitted, {"x": X}, num_samples=8, rng_key=KEY, model_kwargs={"n": 4})
        return np.asarray(result.samples["predictions"]["y"])

    def net_fit(seed: int) -> FittedSCM:
        # As eqx_module registers it: the arrays, with None for the static leaves.
        weights, _ = eqx.partition(_network(jax.random.key(seed), jnp.tanh), eqx.is_inexact_array)
        return _fitted(with_network, {"net$params": weights})

    first = query(net_fit(1))
    before = trace_count()
    second = net_fit(2)
    answer = query(second)
    assert trace_count() == before
    np.testing.assert_array_equal(answer, _fresh(monkeypatch, lambda: query(second)))
    assert not np.array_equal(answer, first)


def test_map_global_latents_are_arguments_too():
    fitted = [_fitted(with_global_latent, point={"w": jnp.asarray(w)}) for w in (2.0, -0.5)]
    _cf_y(fitted[0])
    before = trace_count()
    answer = _cf_y(fitted[1])
    assert trace_count() == before
    np.testing.assert_allclose(answer, Y - 0.5 * (X_CF - X), rtol=1e-6, atol=1e-6)


def _nuts_fit(seed: int) -> FittedSCM:
    draws = 2.0 + 0.1 * jax.random.normal(jax.random.key(seed), (50,))
    return _fitted(
        with_global_latent,
        method="nuts",
        samples={"w": draws},
        loc={"w": jnp.mean(draws)},
        scale={"w": jnp.std(draws)},
    )


def test_bayesian_fits_share_a_compile_and_replay_one_draw_per_world(monkeypatch):
    def query(fitted: FittedSCM):
        return counterfactual(
            fitted, {"x": X, "y": Y}, {"x": X_CF}, rng_key=KEY, num_samples=16,
            model_kwargs={"n": 4},
        )  # fmt: skip

    query(_nuts_fit(0))
    before = trace_count()
    fitted = _nuts_fit(1)
    cf = query(fitted)
    assert trace_count() == before
    y_cf = np.asarray(cf.predictions["y"][0, :, 1])
    # Each draw of the counterfactual uses one posterior draw of w: y' = y + w (x' - x).
    w = (y_cf - np.asarray(Y)) / (X_CF - np.asarray(X))
    np.testing.assert_allclose(w, w[:, :1] * np.ones_like(w), rtol=1e-4)
    draws = np.asarray(fitted.posterior_samples["w"])
    assert np.min(np.abs(w[:, :1] - draws[None]), axis=1).max() < 1e-4
    again = _fresh(monkeypatch, lambda: query(fitted))
    np.testing.assert_array_equal(y_cf, np.asarray(again.predictions["y"][0, :, 1]))


def test_svi_fits_share_a_compile():
    def svi_fit(loc: float) -> FittedSCM:
        return _fitted(
            with_global_latent,
            method="svi",
            loc={"w": jnp.asarray(loc)},
            scale={"w": jnp.asarray(1e-4)},
        )

    def query(fitted: FittedSCM) -> np.ndarray:
        result = interventional(
            fitted, {"x": X}, num_samples=64, rng_key=KEY, model_kwargs={"n": 4}
        )
        return np.asarray(result.samples["predictions"]["y"])

    query(svi_fit(1.0))
    before = trace_count()
    y = query(svi_fit(-2.0))
    assert trace_count() == before
    # w ~ Normal(-2, 1e-4): the mean of y under do(x) is -2 x, up to the noise's MC error.
    np.testing.assert_allclose(y.mean(axis=(0, 1, 2)), -2.0 * X, atol=4 * NOISE / 8)


def test_nuts_abduction_reuses_its_sampler_across_fits(monkeypatch):
    """A latent cause of the evidence: abduction runs NUTS, whose sampler is cached on
    the program's parts (as the query is), not on the fit object."""

    def confounded(n: int = 1) -> None:
        w = jnp.asarray(numpyro.param("w", 1.0))
        with numpyro.plate("unit", n):
            u = numpyro.sample("u", dist.Normal(0.0, 1.0))
            numpyro.sample("y", dist.Normal(w * u, 1.0))

    def query(fitted: FittedSCM) -> np.ndarray:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # few draws: NUTS diagnostics may complain
            cf = counterfactual(
                fitted, {"y": jnp.array([0.5, 1.0])}, {"u": 1.0}, method="nuts",
                num_samples=20, num_warmup=20, rng_key=KEY, model_kwargs={"n": 2},
            )  # fmt: skip
        return np.asarray(cf.predictions["y"])

    monkeypatch.setattr(inference, "_MCMC", cache.LRUCache(32))
    query(_fitted(confounded, {"w": jnp.asarray(2.0)}))
    samplers, before = len(inference._MCMC), trace_count()
    second = _fitted(confounded, {"w": jnp.asarray(-1.0)})
    answer = query(second)
    assert (len(inference._MCMC), trace_count()) == (samplers, before)
    fresh = _fresh(monkeypatch, lambda: query(second))
    np.testing.assert_array_equal(answer, fresh)


def test_a_second_fit_of_one_program_is_not_inspected_again():
    program = importlib.import_module("scm_ppl.core.program")
    first, second = _linear_fit(1.5, [0.5, 0.0]), _linear_fit(-0.5, [0.25, 1.0])
    info = program.inspect_program(first, (), {"n": 4})
    assert program.inspect_program(second, (), {"n": 4}) is info
    wider = _linear_fit(1.5, [0.5, 0.0, 1.0])  # other shapes: described anew
    assert program.inspect_program(wider, (), {"n": 4, "width": 3}) is not info
