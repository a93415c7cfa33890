"""Genericity ratios (trace ratio, spectral density ratio) and mechanism_genericity.

Closed forms first (Besserve et al., AAAI 2021): ρ = 1 for orthogonal maps, white inputs,
delays; forward/backward identities; a hand-computed 3-tap value. Then concentration for
random pairs, the sample estimators' convergence, batching, gradients and bad input.
"""

import importlib

import equinox as eqx
import jax
import jax.numpy as jnp
import matplotlib.pyplot as plt
import numpy as np
import numpyro
import numpyro.distributions as dist
import pytest
from numpyro import handlers

from scm_ppl import mechanism_genericity
from scm_ppl.errors import GenericityError
from scm_ppl.independence import (
    GenericityReport,
    averaged_periodogram,
    spectral_density_ratio,
    spectral_density_ratio_unchecked,
    trace_ratio,
    trace_ratio_from_samples,
    trace_ratio_unchecked,
)

plot_independence = importlib.import_module("scm_ppl.plotting.independence")


def tau(m):
    return np.trace(m) / m.shape[-1]


def normal(seed, shape):
    """Test inputs from NumPy: a jax.random draw compiles once per shape (seconds here)."""
    return jnp.asarray(np.random.default_rng(seed).standard_normal(shape), jnp.float32)


def uniform(seed, shape, minval=0.0, maxval=1.0):
    return jnp.asarray(np.random.default_rng(seed).uniform(minval, maxval, shape), jnp.float32)


def orthogonal(seed, n):
    q, r = np.linalg.qr(np.random.default_rng(seed).standard_normal((n, n)))
    return jnp.asarray(q * np.sign(np.diag(r)), jnp.float32)


def wishart(seed, n, dof=None):
    g = np.random.default_rng(seed).standard_normal((n, dof or n))
    return jnp.asarray(g @ g.T / (dof or n), jnp.float32)


def sqrtm_inv(cov):
    w, v = np.linalg.eigh(np.asarray(cov, np.float64))
    return (v / np.sqrt(w)) @ v.T


KEYS = list(range(8))  # seeds of the NumPy test inputs; jax.random keys where JAX needs one


# --- trace ratio: closed forms -------------------------------------------------------------


def test_trace_ratio_is_one_for_orthogonal_scaled_orthogonal_and_white_input():
    cov = wishart(KEYS[0], 8)
    q = orthogonal(KEYS[1], 8)
    assert trace_ratio(q, cov).dtype == jnp.float32
    assert abs(float(trace_ratio(q, cov)) - 1.0) < 1e-6
    assert abs(float(trace_ratio(3.7 * q, cov)) - 1.0) < 1e-6
    a = normal(2, (5, 8))  # rectangular maps too
    assert abs(float(trace_ratio(a, jnp.eye(8))) - 1.0) < 1e-6
    assert abs(float(trace_ratio(q, cov, log=True))) < 1e-6


def test_trace_ratio_hand_value_and_whitening_map():
    a, cov = jnp.diag(jnp.array([0.0, 1.0])), jnp.diag(jnp.array([1.0, 3.0]))
    assert float(trace_ratio(a, cov)) == pytest.approx(1.5, rel=1e-6)  # 3 / (0.5 * 2)
    cov = np.asarray(wishart(KEYS[3], 6, dof=10), np.float64)
    expected = 1.0 / (tau(np.linalg.inv(cov)) * tau(cov))
    assert float(trace_ratio(sqrtm_inv(cov), cov)) == pytest.approx(expected, rel=1e-5)
    assert expected < 1.0  # the whitening map is anti-aligned with its input


def test_trace_ratio_forward_backward_identity():
    a = np.asarray(normal(4, (6, 6)), np.float64)
    cov = np.asarray(wishart(KEYS[5], 6), np.float64)
    forward = float(trace_ratio(a, cov, log=True))
    backward = float(trace_ratio(np.linalg.inv(a), a @ cov @ a.T, log=True))
    aat = a @ a.T
    expected = -np.log(tau(aat) * tau(np.linalg.inv(aat)))
    assert forward + backward == pytest.approx(expected, abs=2e-4)
    assert expected < -0.1  # a non-trivial check: the two directions cannot both be generic


# --- spectral density ratio: closed forms --------------------------------------------------


PSD_1D = jnp.array([4.0, 1.0, 0.5, 1.0])


def test_spectral_ratio_is_one_for_delta_delay_and_white_input():
    psd = uniform(0, (16,), minval=0.1, maxval=3.0)
    for kernel in ([1.0, 0.0, 0.0], [0.0, 0.0, 2.5], [0.0] * 15 + [1.0]):
        assert float(spectral_density_ratio(jnp.array(kernel), psd)) == pytest.approx(1, abs=1e-6)
    psd_2d = uniform(1, (8, 8), minval=0.1, maxval=3.0)
    delay_2d = jnp.zeros((3, 3)).at[2, 1].set(-1.0)
    assert float(spectral_density_ratio(delay_2d, psd_2d)) == pytest.approx(1, abs=1e-6)
    kernel = normal(2, (5, 5))
    assert float(spectral_density_ratio(kernel, jnp.ones((8, 8)))) == pytest.approx(1, abs=1e-6)
    assert float(spectral_density_ratio(kernel[0], jnp.full(12, 2.0), log=True)) == pytest.approx(
        0, abs=1e-6
    )


def test_spectral_ratio_hand_computed_three_tap_kernel():
    # ĥ(k) = 1 + 2 e^{-iπk/2} + e^{-iπk}: |ĥ|² = [16, 4, 0, 4]; ⟨|ĥ|²S⟩ = 18, ⟨|ĥ|²⟩ = 6,
    # ⟨S⟩ = 6.5/4, so ρ = 18 / (6 · 1.625) = 24/13.
    rho = spectral_density_ratio(jnp.array([1.0, 2.0, 1.0]), PSD_1D)
    assert float(rho) == pytest.approx(24 / 13, rel=1e-6)


@pytest.mark.parametrize("shape", [(16,), (8, 6)])
def test_spectral_ratio_forward_backward_identity(shape):
    axes = tuple(range(len(shape)))
    kernel = jnp.zeros(shape).at[(0,) * len(shape)].set(2.0)
    support = np.ix_(*(np.arange(n) < 3 for n in shape))  # a 3-tap (3×3) perturbation
    kernel = kernel.at[support].add(0.2 * normal(3, (3,) * len(shape)))
    gain = jnp.abs(jnp.fft.fftn(kernel, axes=axes)) ** 2
    assert float(gain.min()) > 0.1  # invertible
    psd = uniform(4, shape, minval=0.2, maxval=2.0)
    inverse = jnp.real(jnp.fft.ifftn(1.0 / jnp.fft.fftn(kernel, axes=axes), axes=axes))
    forward = spectral_density_ratio(kernel, psd, log=True)
    backward = spectral_density_ratio(inverse, gain * psd, log=True)
    expected = -jnp.log(jnp.mean(gain) * jnp.mean(1.0 / gain))
    assert float(forward + backward) == pytest.approx(float(expected), abs=1e-5)
    assert float(expected) < -0.01


@pytest.mark.parametrize(
    ("kernel_shape", "grid"),
    [((3,), (16,)), ((5,), (7,)), ((7,), (7,)), ((2, 3, 3), (8, 8)), ((4, 5), (4, 6))],
)
def test_lag_domain_and_fft_routes_agree(kernel_shape, grid):
    # Small kernels are measured through autocorrelations (r_h · R summed over lags); the
    # lags wrap modulo the grid exactly as |ĥ|² aliases on it, so both routes are exact.
    spectral = importlib.import_module("scm_ppl.independence.spectral")
    kernel, psd = normal(1, kernel_shape), uniform(2, grid, 0.1, 2.0)
    by_lags = spectral._powers_by_lags(kernel, psd, len(grid))
    by_fft = spectral._powers_by_fft(kernel, psd, len(grid))
    for lag_value, fft_value in zip(by_lags, by_fft, strict=True):
        np.testing.assert_allclose(lag_value, fft_value, rtol=2e-5)


def test_stride_measures_on_the_upsampled_grid():
    kernel = jnp.array([1.0, 2.0, 1.0, 0.5])
    psd = jnp.array([4.0, 1.0, 0.5, 1.0])
    upsampled = jnp.tile(psd, 2)
    strided = spectral_density_ratio(kernel, psd, stride=2)
    assert float(strided) == pytest.approx(float(spectral_density_ratio(kernel, upsampled)))
    assert float(strided) != pytest.approx(float(spectral_density_ratio(kernel, psd)))
    # A 6-tap kernel does not fit the 4-point grid but fits its stride-2 upsampling.
    long_kernel = jnp.arange(1.0, 7.0)
    assert jnp.isfinite(spectral_density_ratio(long_kernel, psd, stride=2))
    psd_2d = uniform(5, (4, 6), minval=0.5)
    kernel_2d = normal(6, (3, 3))
    assert float(spectral_density_ratio(kernel_2d, psd_2d, stride=(2, 1))) == pytest.approx(
        float(spectral_density_ratio(kernel_2d, jnp.tile(psd_2d, (2, 1))))
    )


def test_input_signals_use_the_averaged_periodogram_and_converge():
    # x = g ⊛ white noise has PSD |ĝ|²; 4000 periodograms: ρ to within ~1%.
    n, length = 4000, 32
    g = jnp.array([1.0, 0.9, 0.5])
    noise = normal(7, (n, length))
    signals = jnp.real(jnp.fft.ifft(jnp.fft.fft(noise) * jnp.fft.fft(g, length)))
    kernel = jnp.array([1.0, -0.5])
    estimate = spectral_density_ratio(kernel, input_signals=signals)
    assert float(estimate) == pytest.approx(
        float(spectral_density_ratio(kernel, averaged_periodogram(signals)))
    )
    truth = spectral_density_ratio(kernel, jnp.abs(jnp.fft.fft(g, length)) ** 2)
    assert float(estimate) == pytest.approx(float(truth), rel=0.03)
    assert float(truth) < 0.8  # a high-pass filter on a low-pass input: far from generic


# --- concentration, estimators, batching ---------------------------------------------------


def _random_log_ratios(key, n, pairs):
    rng = np.random.default_rng(key)
    a = rng.standard_normal((pairs, n, n)).astype(np.float32)
    g = rng.standard_normal((pairs, n, n))
    cov = (g @ np.swapaxes(g, -1, -2) / n).astype(np.float32)  # Wishart(n, I/n)
    return np.asarray(trace_ratio(a, cov, log=True))


def test_random_pairs_concentrate_at_one():
    dims = [8, 16, 32, 64]
    sds = []
    for i, n in enumerate(dims):
        log_rho = _random_log_ratios(10 + i, n, 400)
        assert abs(log_rho.mean()) < 0.02, (n, log_rho.mean())
        sds.append(log_rho.std())
    slope = np.polyfit(np.log(dims), np.log(sds), 1)[0]
    # Measured: sd ≈ 1.4/n (slope ≈ -1.0): tr(AΣAᵀ)/n fluctuates at rate 1/n, not 1/√n.
    assert -1.2 < slope < -0.8, slope
    assert all(np.diff(sds) < 0)


def test_sample_estimator_converges_to_population_value():
    a = normal(0, (4, 6))
    cov = wishart(KEYS[1], 6, dof=8)
    truth = float(trace_ratio(a, cov))
    chol = jnp.linalg.cholesky(cov)
    errors = []
    for size in (200, 2000, 20000):
        reps = []
        for rep in range(6):
            x = normal(100 * size + rep, (size, 6)) @ chol.T
            noise = 0.1 * normal(rep, (size, 4))
            reps.append(float(trace_ratio_from_samples(x, x @ a.T + noise)) - truth)
        errors.append(np.sqrt(np.mean(np.square(reps))))
    # O(1/√size): a tenfold larger sample shrinks the error about √10 ≈ 3.2 times.
    assert errors[2] < errors[1] < errors[0]
    assert errors[0] / errors[2] > 4
    assert errors[2] < 0.02 * truth


def test_batched_calls_equal_the_loop():
    a = normal(2, (2, 3, 5, 5))
    cov = jnp.stack([wishart(30 + k, 5) for k in range(3)])
    batched = trace_ratio(a, cov)  # (2, 3) pairs, cov broadcast over the first axis
    assert batched.shape == (2, 3)
    for i in range(2):
        for j in range(3):
            assert float(batched[i, j]) == pytest.approx(float(trace_ratio(a[i, j], cov[j])))
    kernels = normal(4, (3, 2, 3, 3))  # (out_ch, in_ch, kh, kw)
    psd = uniform(5, (2, 8, 8), minval=0.1)  # one PSD per input channel
    table = spectral_density_ratio(kernels, psd, spatial_dims=2)
    assert table.shape == (3, 2)
    for o in range(3):
        for i in range(2):
            value = float(spectral_density_ratio(kernels[o, i], psd[i]))
            assert float(table[o, i]) == pytest.approx(value, rel=1e-6)
    x = normal(6, (2, 300, 5))
    y = x @ a[0, :2].swapaxes(-1, -2)
    separate = [float(trace_ratio_from_samples(x[b], y[b])) for b in range(2)]
    assert np.allclose(trace_ratio_from_samples(x, y), separate, rtol=1e-5)


# --- jit and gradients ---------------------------------------------------------------------


def test_jit_matches_eager_and_traced_values_are_not_checked():
    a, cov = normal(0, (4, 4)), wishart(KEYS[1], 4)
    assert float(jax.jit(trace_ratio)(a, cov)) == pytest.approx(float(trace_ratio(a, cov)))
    assert float(jax.jit(trace_ratio_unchecked)(a, cov)) == pytest.approx(
        float(trace_ratio(a, cov))
    )
    kernel, psd = jnp.array([1.0, 2.0, 1.0]), PSD_1D
    jitted = jax.jit(lambda k, s: spectral_density_ratio(k, s, stride=2, log=True))
    core = jax.jit(spectral_density_ratio_unchecked, static_argnums=(2, 3, 4))
    eager = float(spectral_density_ratio(kernel, psd, stride=2, log=True))
    assert float(jitted(kernel, psd)) == pytest.approx(eager)
    assert float(core(kernel, psd, 1, (2,), True)) == pytest.approx(eager)
    # Inside a trace only shapes are checked: a non-PSD covariance does not raise there.
    bad = -jnp.eye(4)
    with pytest.raises(GenericityError, match="positive semi-definite"):
        trace_ratio(a, bad)
    assert jax.jit(trace_ratio)(a, bad).shape == ()


def _finite_difference(f, x, eps=1e-6):
    flat = np.asarray(x, np.float64).ravel()
    grad = np.zeros_like(flat)
    for i in range(flat.size):
        up, down = flat.copy(), flat.copy()
        up[i] += eps
        down[i] -= eps
        grad[i] = (f(up.reshape(x.shape)) - f(down.reshape(x.shape))) / (2 * eps)
    return grad.reshape(x.shape)


def test_gradients_match_finite_differences():
    with jax.enable_x64(True):
        a = np.asarray(normal(2, (3, 4)), np.float64)
        cov = np.asarray(wishart(KEYS[3], 4), np.float64)
        f_a = lambda m: float(trace_ratio(m, cov, log=True))
        grad_a = jax.grad(lambda m: trace_ratio(m, cov, log=True))(jnp.asarray(a))
        np.testing.assert_allclose(grad_a, _finite_difference(f_a, a), rtol=1e-5, atol=1e-8)
        grad_cov = jax.grad(lambda c: trace_ratio(a, c))(jnp.asarray(cov))
        fd_cov = _finite_difference(lambda c: float(trace_ratio(a, c)), cov)
        np.testing.assert_allclose(grad_cov, fd_cov, rtol=1e-5, atol=1e-8)
        kernel = np.array([[1.0, 0.3], [-0.2, 0.8]])
        psd = np.asarray(uniform(4, (6, 6), minval=0.2), np.float64)
        f_k = lambda k: float(spectral_density_ratio(k, psd, stride=2, log=True))
        grad_k = jax.grad(lambda k: spectral_density_ratio(k, psd, stride=2, log=True))(
            jnp.asarray(kernel)
        )
        np.testing.assert_allclose(grad_k, _finite_difference(f_k, kernel), rtol=1e-5, atol=1e-8)
        f_s = lambda s: float(spectral_density_ratio(kernel, s))
        grad_s = jax.grad(lambda s: spectral_density_ratio(kernel, s))(jnp.asarray(psd))
        np.testing.assert_allclose(grad_s, _finite_difference(f_s, psd), rtol=1e-5, atol=1e-8)


# --- mechanism_genericity ------------------------------------------------------------------


def _sample_cov(x):
    x = np.asarray(x, np.float64).reshape(-1, x.shape[-1])
    return np.cov(x, rowvar=False)


def chain_program(n=1, w1=None, w2=None, k2=None):
    w1 = numpyro.param("W1", w1)
    w2 = numpyro.param("W2", w2)
    kernel = numpyro.param("k2", k2)
    with numpyro.plate("unit", n):
        z = numpyro.sample("z", dist.Normal(0.0, 1.0).expand([6]).to_event(1))
        h = numpyro.deterministic("h", z @ w1.T)
        numpyro.deterministic("g", jnp.real(jnp.fft.ifft(jnp.fft.fft(kernel) * jnp.fft.fft(h))))
        return numpyro.sample("x", dist.Normal(h @ w2.T, 0.1).to_event(1))


def test_program_genericity_matches_the_ratios_of_simulated_inputs():
    w1, w2 = normal(0, (6, 6)), normal(1, (3, 6))
    k2 = jnp.array([1.0, 0.5, 0.0, 0.0, 0.0, 0.2])
    kwargs = {"n": 20000, "w1": w1, "w2": w2, "k2": k2}
    report = mechanism_genericity(
        chain_program, layers={"W1": "z", "W2": "h"}, model_kwargs=kwargs, key=3
    )
    assert report.pairs == (("z", "W1"), ("W1", "W2")) and report.kinds == ("dense", "dense")
    assert report.num_samples == 20000
    h = handlers.trace(handlers.seed(chain_program, jax.random.key(3))).get_trace(**kwargs)["h"]
    exact = trace_ratio(w2, _sample_cov(h["value"]).astype(np.float32), log=True)
    assert float(report.log_ratio_by_pair[1]) == pytest.approx(float(exact), abs=1e-5)
    # The population value log ρ(W2, W1 W1ᵀ), to Monte-Carlo accuracy (~1/√20000 relative).
    population = float(trace_ratio(w2, w1 @ w1.T, log=True))
    assert float(report.log_ratio_by_pair[1]) == pytest.approx(population, abs=0.03)
    assert abs(float(report.log_ratio_by_pair[0])) < 0.03  # W1 on a white latent: generic
    # Given samples of the input site in data, those are used instead of simulating.
    z = normal(2, (500, 6)) * jnp.arange(1.0, 7.0)
    given = mechanism_genericity(
        chain_program, {"z": z}, layers={"W1": "z"}, model_kwargs={**kwargs, "n": 2}
    )
    assert float(given.log_ratio_by_pair[0]) == pytest.approx(
        float(trace_ratio(w1, _sample_cov(z).astype(np.float32), log=True)), abs=1e-5
    )
    conv = mechanism_genericity(chain_program, layers={"k2": "h"}, model_kwargs=kwargs, key=3)
    assert conv.kinds == ("conv",)
    expected = spectral_density_ratio(k2, input_signals=h["value"], log=True)
    assert float(conv.log_ratio_by_pair[0]) == pytest.approx(float(expected), abs=1e-5)
    transposed = mechanism_genericity(  # weights stored (in, out), applied as z @ W
        chain_program,
        {"z": z},
        layers={"W1": {"input": "z", "transpose": True}},
        model_kwargs=kwargs,
    )
    assert float(transposed.log_ratio_by_pair[0]) == pytest.approx(
        float(trace_ratio(w1.T, _sample_cov(z).astype(np.float32), log=True)), abs=1e-5
    )


def test_fitted_scm_is_measured_with_its_learned_params():
    fit_module = importlib.import_module("scm_ppl.learn.fitting")
    w1, w2 = normal(3, (6, 6)), normal(4, (3, 6))
    fitted = fit_module.FittedSCM(
        base_model=chain_program,
        params={"W1": w1, "W2": w2, "k2": jnp.ones(6)},
        point={},
        posterior_loc={},
        posterior_scale={},
        posterior_samples={},
        history=fit_module.FitHistory(np.zeros(0), np.zeros(0), 0, False, 0.0),
        settings={"method": "map", "size_arg": "n", "model_kwargs": None, "num_rows": 50},
    )
    kwargs = {"w1": jnp.eye(6), "w2": jnp.ones((3, 6)), "k2": jnp.ones(6)}
    # As many simulated units as the data have rows; the learned W1, W2 replace the args.
    report = mechanism_genericity(
        fitted, {"x": np.zeros((20000, 3))}, layers={"W2": "h"}, model_kwargs=kwargs
    )
    assert report.num_samples == 20000
    population = float(trace_ratio(w2, w1 @ w1.T, log=True))
    assert float(report.log_ratio_by_pair[0]) == pytest.approx(population, abs=0.03)
    small = mechanism_genericity(fitted, layers={"W2": "h"}, model_kwargs=kwargs)
    assert small.num_samples == 50  # the fit's number of rows


def test_network_layers_are_found_and_measured_on_their_recorded_inputs():
    mlp = eqx.nn.MLP(5, 3, 7, depth=2, key=jax.random.key(5))
    x = normal(6, (3000, 5)) * jnp.array([1.0, 2.0, 0.5, 1.0, 3.0])
    report = mechanism_genericity(mlp, x)
    assert report.pairs == (("layers[0]", "layers[1]"), ("layers[1]", "layers[2]"))
    hidden = jax.nn.relu(x @ mlp.layers[0].weight.T + mlp.layers[0].bias)
    expected = trace_ratio(mlp.layers[1].weight, _sample_cov(hidden).astype(np.float32), log=True)
    assert float(report.log_ratio_by_pair[0]) == pytest.approx(float(expected), abs=1e-5)
    rows = report.table()
    assert len(rows) == 2 and rows[1]["mechanism"] == "layers[2]" and rows[1]["kind"] == "dense"
    assert report.log_ratios.shape == (2,)
    assert "layers[0] -> layers[1] [dense]" in repr(report)


def test_conv_network_gives_a_table_per_channel_pair():
    net = eqx.nn.Sequential(
        [
            eqx.nn.ConvTranspose2d(2, 4, 4, stride=2, key=jax.random.key(0)),
            eqx.nn.Lambda(jax.nn.relu),
            eqx.nn.Conv2d(4, 3, 3, padding=1, key=jax.random.key(1)),
            eqx.nn.Lambda(jnp.tanh),
            eqx.nn.Conv2d(3, 2, 3, dilation=2, key=jax.random.key(2)),
        ]
    )
    x = normal(3, (64, 2, 6, 6))
    report = mechanism_genericity(net, x)
    assert report.pairs == (("layers[0]", "layers[2]"), ("layers[2]", "layers[4]"))
    assert [r.shape for r in report.log_ratio_by_pair] == [(3, 4), (2, 3)]
    assert len(report.table()) == 12 + 6 and report.log_ratios.shape == (18,)
    first = jax.nn.relu(jax.jit(jax.vmap(net.layers[0]))(x))
    expected = spectral_density_ratio(
        net.layers[2].weight, input_signals=first, spatial_dims=2, log=True
    )
    np.testing.assert_allclose(report.log_ratio_by_pair[0], expected, atol=1e-5)
    second = jnp.tanh(jax.jit(jax.vmap(net.layers[2]))(first))
    dilated = jnp.zeros((2, 3, 5, 5)).at[..., ::2, ::2].set(net.layers[4].weight)
    expected = spectral_density_ratio(dilated, input_signals=second, spatial_dims=2, log=True)
    np.testing.assert_allclose(report.log_ratio_by_pair[1], expected, atol=1e-5)


def test_plot_genericity_draws_a_histogram():
    net = eqx.nn.Sequential(
        [
            eqx.nn.Conv1d(3, 4, 3, key=jax.random.key(4)),
            eqx.nn.Conv1d(4, 5, 3, key=jax.random.key(5)),
        ]
    )
    report = mechanism_genericity(net, normal(6, (40, 3, 16)))
    ax = plot_independence.plot_genericity(report)
    assert len(ax.patches) > 0 and ax.get_xlabel().startswith("log ρ")
    plt.close(ax.figure)
    dense = mechanism_genericity(eqx.nn.MLP(3, 2, 4, 2, key=jax.random.key(7)), normal(0, (50, 3)))
    _, ax = plt.subplots()
    assert plot_independence.plot_genericity(dense, ax=ax) is ax
    plt.close(ax.figure)
    with pytest.raises(GenericityError, match="GenericityReport"):
        plot_independence.plot_genericity([0.1, 0.2])


# --- bad input -----------------------------------------------------------------------------


def test_trace_ratio_rejects_bad_input():
    a, cov = jnp.ones((3, 4)), jnp.eye(4)
    with pytest.raises(GenericityError, match="must be square"):
        trace_ratio(a, jnp.ones((4, 3)))
    with pytest.raises(GenericityError, match="A maps 4 inputs but cov is 3"):
        trace_ratio(a, jnp.eye(3))
    with pytest.raises(GenericityError, match="must be a matrix"):
        trace_ratio(jnp.ones(4), cov)
    with pytest.raises(GenericityError, match="do not broadcast"):
        trace_ratio(jnp.ones((2, 3, 4)), jnp.stack([cov] * 3))
    with pytest.raises(GenericityError, match="symmetric"):
        trace_ratio(a, cov.at[0, 1].set(0.5))
    with pytest.raises(GenericityError, match="positive semi-definite"):
        trace_ratio(a, jnp.diag(jnp.array([1.0, 1.0, -1.0, 1.0])))
    with pytest.raises(GenericityError, match="NaN or inf"):
        trace_ratio(a.at[0, 0].set(jnp.nan), cov)
    with pytest.raises(GenericityError, match="NaN or inf"):
        trace_ratio(a, cov.at[1, 1].set(jnp.inf))
    with pytest.raises(GenericityError, match="zero map"):
        trace_ratio(jnp.zeros((3, 4)), cov)
    with pytest.raises(GenericityError, match="cov is zero"):
        trace_ratio(a, jnp.zeros((4, 4)))
    with pytest.raises(GenericityError, match="paired samples"):
        trace_ratio_from_samples(jnp.ones((10, 2)), jnp.ones((9, 2)))
    with pytest.raises(GenericityError, match="at least 2 paired samples"):
        trace_ratio_from_samples(jnp.ones((1, 2)), jnp.ones((1, 2)))
    with pytest.raises(GenericityError, match="n_samples, dim"):
        trace_ratio_from_samples(jnp.ones(10), jnp.ones(10))


def test_spectral_density_ratio_rejects_bad_input():
    kernel = jnp.array([1.0, 0.5])
    with pytest.raises(GenericityError, match="non-negative"):
        spectral_density_ratio(kernel, PSD_1D.at[2].set(-0.5))
    with pytest.raises(GenericityError, match="NaN or inf"):
        spectral_density_ratio(kernel, PSD_1D.at[2].set(jnp.nan))
    with pytest.raises(GenericityError, match="NaN or inf"):
        spectral_density_ratio(kernel.at[0].set(jnp.inf), PSD_1D)
    with pytest.raises(GenericityError, match="input_psd is zero"):
        spectral_density_ratio(kernel, jnp.zeros(4))
    with pytest.raises(GenericityError, match="kernel is zero"):
        spectral_density_ratio(jnp.zeros(2), PSD_1D)
    with pytest.raises(GenericityError, match=r"must be non-empty and fit the grid \(4,\)"):
        spectral_density_ratio(jnp.ones(5), PSD_1D)
    with pytest.raises(GenericityError, match="upsampled grid"):
        spectral_density_ratio(jnp.ones((3, 9)), jnp.ones((4, 4)), stride=2)
    with pytest.raises(GenericityError, match="exactly one"):
        spectral_density_ratio(kernel)
    with pytest.raises(GenericityError, match="exactly one"):
        spectral_density_ratio(kernel, PSD_1D, input_signals=jnp.ones((3, 4)))
    with pytest.raises(GenericityError, match="pass spatial_dims=1 or 2"):
        spectral_density_ratio(jnp.ones((2, 2, 2)), jnp.ones((4, 4, 4)))
    with pytest.raises(GenericityError, match="got spatial_dims=3"):
        spectral_density_ratio(jnp.ones((2, 2, 2)), jnp.ones((4, 4, 4)), spatial_dims=3)
    with pytest.raises(GenericityError, match="stride must be"):
        spectral_density_ratio(kernel, PSD_1D, stride=0)
    with pytest.raises(GenericityError, match="stride must be"):
        spectral_density_ratio(kernel, PSD_1D, stride=(2, 2))
    with pytest.raises(GenericityError, match="at least 2 signals"):
        spectral_density_ratio(kernel, input_signals=jnp.ones((1, 4)))
    with pytest.raises(GenericityError, match="do not broadcast"):
        spectral_density_ratio(jnp.ones((3, 2)), jnp.ones((2, 4)), spatial_dims=1)
    with pytest.raises(GenericityError, match="spatial axes"):
        spectral_density_ratio(jnp.ones(2), jnp.ones((4, 4)))


def test_mechanism_genericity_rejects_bad_input():
    kwargs = {"n": 10, "w1": jnp.eye(6), "w2": jnp.ones((3, 6)), "k2": jnp.ones(6)}
    with pytest.raises(GenericityError, match="name its mechanisms"):
        mechanism_genericity(chain_program, model_kwargs=kwargs)
    with pytest.raises(GenericityError, match=r"Unknown mechanism parameter 'W3'.*'W1', 'W2'"):
        mechanism_genericity(chain_program, layers={"W3": "h"}, model_kwargs=kwargs)
    with pytest.raises(GenericityError, match=r"Unknown input site 'q'.*'g', 'h', 'x', 'z'"):
        mechanism_genericity(chain_program, layers={"W2": "q"}, model_kwargs=kwargs)
    with pytest.raises(GenericityError, match="transpose"):
        mechanism_genericity(chain_program, layers={"W2": "x"}, model_kwargs=kwargs)
    with pytest.raises(GenericityError, match=r"\['kind'\] must be one of"):
        mechanism_genericity(
            chain_program, layers={"W2": {"input": "h", "kind": "fft"}}, model_kwargs=kwargs
        )
    with pytest.raises(GenericityError, match="the name of the site"):
        mechanism_genericity(chain_program, layers={"W2": {"site": "h"}}, model_kwargs=kwargs)
    with pytest.raises(GenericityError, match="at least 2 samples"):
        mechanism_genericity(chain_program, layers={"W2": "h"}, model_kwargs={**kwargs, "n": 1})
    with pytest.raises(GenericityError, match=r"data must be \{site: samples\}"):
        mechanism_genericity(chain_program, jnp.ones(3), layers={"W2": "h"}, model_kwargs=kwargs)
    mlp = eqx.nn.MLP(3, 2, 4, 2, key=jax.random.key(0))
    with pytest.raises(GenericityError, match="batch of the network's inputs"):
        mechanism_genericity(mlp)
    with pytest.raises(GenericityError, match="found automatically"):
        mechanism_genericity(mlp, jnp.ones((4, 3)), layers={"a": "b"})
    with pytest.raises(GenericityError, match="at least 2 samples"):
        mechanism_genericity(mlp, jnp.ones((1, 3)))
    with pytest.raises(GenericityError, match="needs at least two"):
        mechanism_genericity(eqx.nn.Linear(3, 2, key=jax.random.key(1)), jnp.ones((4, 3)))
    with pytest.raises(GenericityError, match="scan=True"):
        mechanism_genericity(
            eqx.nn.MLP(3, 2, 4, 3, scan=True, key=jax.random.key(2)), jnp.ones((4, 3))
        )
    grouped = eqx.nn.Sequential(
        [
            eqx.nn.Conv1d(2, 2, 3, key=jax.random.key(3)),
            eqx.nn.Conv1d(2, 2, 3, groups=2, key=jax.random.key(4)),
        ]
    )
    with pytest.raises(GenericityError, match="groups=1"):
        mechanism_genericity(grouped, jnp.ones((4, 2, 8)))
    with pytest.raises(GenericityError, match="Equinox network, a NumPyro program"):
        mechanism_genericity(42, layers={"W2": "h"})


def test_report_is_a_frozen_record():
    report = GenericityReport((("a", "b"),), ("dense",), (np.asarray(0.25),), 10)
    assert report.table() == [
        {
            "upstream": "a",
            "mechanism": "b",
            "kind": "dense",
            "out_channel": None,
            "in_channel": None,
            "log_ratio": 0.25,
        }
    ]
    with pytest.raises(AttributeError):
        report.num_samples = 3  # type: ignore[misc]
