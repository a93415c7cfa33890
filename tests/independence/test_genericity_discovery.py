"""mechanism_genericity finds the networks of a program's neural mechanisms by itself.

Ground truths first: a hand-built mechanism whose second layer is orthogonal (ρ = 1 for
any input) or the inverse square root of its input's covariance (ρ = 1 / (τ(Σ⁻¹) τ(Σ)),
exactly for the sample covariance the data give); then the five-node nonlinear model of
``models/``, every value recomputed by hand from the parents' rows; then bad input.
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
from numpyro.contrib.module import eqx_module

from models import nonlinear
from scm_ppl import mechanism_genericity
from scm_ppl.errors import GenericityError
from scm_ppl.independence import trace_ratio
from scm_ppl.learn.mechanisms import additive_noise, location_scale

fit_module = importlib.import_module("scm_ppl.learn.fitting")
plot_independence = importlib.import_module("scm_ppl.plotting.independence")

PARENT_SCALES = np.array([1.0, 2.0, 0.5])


def identity(v):
    return v


def tau(m):
    return np.trace(m) / m.shape[-1]


def sample_cov(x):
    return np.cov(np.asarray(x, np.float64), rowvar=False)


def inverse_sqrt(cov):
    w, v = np.linalg.eigh(np.asarray(cov, np.float64))
    return (v / np.sqrt(w)) @ v.T


def parents(rows, seed=0):
    return np.random.default_rng(seed).standard_normal((rows, 3)) * PARENT_SCALES


def linear_mechanism(n=1, hidden=(4, 4), activation=identity):
    """One mechanism ``y = f(x) + u`` of three vector-valued parents ``x``."""
    with numpyro.plate("unit", n):
        x = numpyro.sample("x", dist.Normal(0.0, jnp.asarray(PARENT_SCALES)).to_event(1))
        additive_noise("y", x, hidden=hidden, activation=activation, key=1)


def initial_net(program, **kwargs):
    trace = handlers.trace(handlers.seed(program, 0)).get_trace(n=2, **kwargs)
    return trace["y.net$params"]["value"]


def with_weights(net, first, second):
    first_w, second_w = jnp.asarray(first, jnp.float32), jnp.asarray(second, jnp.float32)
    return eqx.tree_at(lambda m: (m.layers[0].weight, m.layers[1].weight), net, (first_w, second_w))


def fitted_scm(program, params):
    return fit_module.FittedSCM(
        base_model=program,
        params=params,
        point={},
        posterior_loc={},
        posterior_scale={},
        posterior_samples={},
        history=fit_module.FitHistory(np.zeros(0), np.zeros(0), 0, False, 0.0),
        settings={"method": "map", "size_arg": "n", "model_kwargs": None, "num_rows": 50},
    )


# --- ground truths ---------------------------------------------------------------------------


def test_orthogonal_second_layer_is_exactly_generic_whatever_its_input():
    q, _ = np.linalg.qr(np.random.default_rng(1).standard_normal((4, 4)))
    w0 = np.random.default_rng(2).standard_normal((4, 3))
    for activation in (identity, jax.nn.silu):
        net = with_weights(initial_net(linear_mechanism, activation=activation), w0, 2.5 * q)
        report = mechanism_genericity(
            linear_mechanism,
            {"x": parents(500)},
            params={"y.net$params": net},
            model_kwargs={"activation": activation},
        )
        assert report.pairs == (
            ("y.net.layers[0]", "y.net.layers[1]"),
            ("y.net.layers[1]", "y.net.layers[2]"),
        )
        assert report.kinds == ("dense", "dense") and report.num_samples == 500
        assert abs(float(report.log_ratio_by_pair[0])) < 1e-6


def test_whitening_second_layer_gives_the_closed_form():
    # With a linear first layer (3 -> 3, invertible) the hidden units are h = W0 x + b0.
    # W1 = S^{-1/2} of their sample covariance S gives exactly ρ = 1 / (τ(S⁻¹) τ(S));
    # against the population Σ = W0 D W0ᵀ the estimate is off only by sampling error.
    rows = 20_000
    x = parents(rows, seed=3)
    w0 = np.random.default_rng(4).standard_normal((3, 3))
    net = initial_net(linear_mechanism, hidden=(3, 3))
    hidden = x @ w0.T  # the bias does not change the covariance
    s = sample_cov(hidden)
    net = with_weights(net, w0, inverse_sqrt(s))
    report = mechanism_genericity(
        linear_mechanism, {"x": x}, params={"y.net$params": net}, model_kwargs={"hidden": (3, 3)}
    )
    exact = -np.log(tau(np.linalg.inv(s)) * tau(s))
    assert exact < -0.2  # far from generic, so the check means something
    assert float(report.log_ratio_by_pair[0]) == pytest.approx(exact, abs=1e-4)
    population = w0 @ np.diag(PARENT_SCALES**2) @ w0.T
    closed_form = -np.log(tau(np.linalg.inv(population)) * tau(population))
    # τ(S) and τ(S⁻¹) are averages of 3 variances: relative SE ≲ √(2/N) ≈ 0.01 each, and
    # the weight was built from S, so the gap is a few SE of the log of their product.
    assert float(report.log_ratio_by_pair[0]) == pytest.approx(closed_form, abs=0.05)
    # The last layer (3 -> 1) against the same hidden covariance passed through W1.
    last = np.asarray(net.layers[2].weight, np.float64)
    expected = trace_ratio(last, inverse_sqrt(s) @ s @ inverse_sqrt(s), log=True)
    assert float(report.log_ratio_by_pair[1]) == pytest.approx(float(expected), abs=1e-4)


def test_fitted_scm_is_measured_with_its_learned_networks():
    q, _ = np.linalg.qr(np.random.default_rng(5).standard_normal((4, 4)))
    net = with_weights(initial_net(linear_mechanism), np.ones((4, 3)) + np.eye(4, 3), q)
    fitted = fitted_scm(linear_mechanism, {"y.net$params": net, "y.scale": jnp.asarray(1.0)})
    data = {"x": parents(300, seed=6)}
    report = mechanism_genericity(fitted, data)
    by_hand = mechanism_genericity(linear_mechanism, data, params={"y.net$params": net})
    np.testing.assert_array_equal(report.log_ratios, by_hand.log_ratios)
    assert abs(float(report.log_ratio_by_pair[0])) < 1e-6  # the fit's orthogonal W1
    initial = mechanism_genericity(linear_mechanism, data)
    assert abs(float(initial.log_ratio_by_pair[0])) > 1e-3  # the initial W1 is not
    # ρ is scale-free: tripling the measured layer leaves its own log ρ unchanged.
    tripled = eqx.tree_at(lambda m: m.layers[1].weight, net, 3.0 * net.layers[1].weight)
    scaled = mechanism_genericity(linear_mechanism, data, params={"y.net$params": tripled})
    assert float(scaled.log_ratio_by_pair[0]) == pytest.approx(
        float(report.log_ratio_by_pair[0]), abs=1e-5
    )


def test_sequential_networks_and_bayesian_mechanisms_are_found():
    # Unequal hidden widths build an eqx.nn.Sequential (activations at odd positions).
    def program(n=1):
        with numpyro.plate("unit", n):
            x = numpyro.sample("x", dist.Normal(0.0, 1.0).expand([3]).to_event(1))
            additive_noise("y", x, hidden=(6, 4))
            location_scale("w", [x[..., 0]], hidden=(5,), prior_scale=1.0)

    report = mechanism_genericity(program, {"x": parents(400)}, key=2)
    assert report.pairs == (
        ("y.net.layers[0]", "y.net.layers[2]"),
        ("y.net.layers[2]", "y.net.layers[4]"),
        ("w.net.layers[0]", "w.net.layers[1]"),
    )
    # The Bayesian network runs with the weights drawn in that run (same key, same draw).
    trace = handlers.trace(
        handlers.seed(handlers.substitute(program, data={"x": parents(400)}), 2)
    ).get_trace(n=400)
    w0, b0 = trace["w.net/layers[0].weight"]["value"], trace["w.net/layers[0].bias"]["value"]
    w1 = trace["w.net/layers[1].weight"]["value"]
    hidden = jax.nn.silu(parents(400)[:, :1] @ np.asarray(w0).T + np.asarray(b0))
    expected = trace_ratio(w1, sample_cov(hidden).astype(np.float32), log=True)
    assert float(report.log_ratio_by_pair[2]) == pytest.approx(float(expected), abs=1e-4)


# --- the nonlinear model of models/ ------------------------------------------------------------

SMALL = {"hidden": (8, 8), "flow_layers": 1, "nn_width": 4, "knots": 4}


@pytest.fixture(scope="module")
def nonlinear_report():
    data = nonlinear.sample(2000, seed=0)
    return data, mechanism_genericity(nonlinear.learnable_model, data, model_kwargs=SMALL)


def test_nonlinear_model_networks_measured_on_their_hidden_activations(nonlinear_report):
    data, report = nonlinear_report
    sites = ("x2", "x3", "x4")
    assert report.pairs == tuple(
        (f"{s}.net.layers[{i}]", f"{s}.net.layers[{i + 1}]") for s in sites for i in (0, 1)
    )
    assert report.num_samples == 2000 and set(report.kinds) == {"dense"}
    assert len(report.skipped) == 1 and report.skipped[0].startswith("x5.flow$params")
    assert "skipped x5.flow$params" in repr(report)
    # Recompute x3's pairs by hand: its MLP on the data's (x1, x2), SiLU hidden layers.
    trace = handlers.trace(handlers.seed(nonlinear.learnable_model, 0)).get_trace(n=2, **SMALL)
    layers = trace["x3.net$params"]["value"].layers
    inputs = np.stack([data["x1"], data["x2"]], axis=-1).astype(np.float32)
    first = jax.nn.silu(inputs @ layers[0].weight.T + layers[0].bias)
    second = jax.nn.silu(first @ layers[1].weight.T + layers[1].bias)
    for value, weight, hidden in zip(
        report.log_ratio_by_pair[2:4],
        (layers[1].weight, layers[2].weight),
        (first, second),
        strict=True,
    ):
        expected = trace_ratio(weight, sample_cov(hidden).astype(np.float32), log=True)
        assert float(value) == pytest.approx(float(expected), abs=1e-4)
    rows = report.table()
    assert len(rows) == 6 and rows[2]["mechanism"] == "x3.net.layers[1]"


def test_plot_of_discovered_pairs(nonlinear_report):
    _, report = nonlinear_report
    ax = plot_independence.plot_genericity(report)
    try:
        labels = ax.get_legend_handles_labels()[1]
        assert len(labels) == 7 and labels[0].startswith("x2.net.layers[0] → x2.net.layers[1]")
    finally:
        plt.close(ax.figure)


# --- bad input --------------------------------------------------------------------------------


def test_programs_without_measurable_networks_are_explained():
    def raw_params(n=1):
        w = numpyro.param("W", jnp.eye(2))
        with numpyro.plate("unit", n):
            z = numpyro.sample("z", dist.Normal(0.0, 1.0).expand([2]).to_event(1))
            numpyro.deterministic("h", z @ w.T)

    with pytest.raises(GenericityError, match=r"Searched.*no module parameters.*layers=\{"):
        mechanism_genericity(raw_params, model_kwargs={"n": 5})
    with pytest.raises(GenericityError, match=r"y\.net \(one linear layer"):
        mechanism_genericity(linear_mechanism, {"x": parents(5)}, model_kwargs={"hidden": ()})

    def own_module(n=1):
        net = eqx_module("decoder", eqx.nn.MLP(2, 2, 4, 1, key=jax.random.key(0)))
        with numpyro.plate("unit", n):
            z = numpyro.sample("z", dist.Normal(0.0, 1.0).expand([2]).to_event(1))
            numpyro.deterministic("h", jax.vmap(net)(z))

    with pytest.raises(GenericityError, match=r"decoder\$params \(a module the program calls"):
        mechanism_genericity(own_module, model_kwargs={"n": 5})


def test_bad_data_params_and_sizes_are_refused():
    x = parents(10)
    with pytest.raises(GenericityError, match=r"data names \['q'\].*'x', 'y'"):
        mechanism_genericity(linear_mechanism, {"x": x, "q": x})
    with pytest.raises(GenericityError, match=r"params names \['z.net\$params'\]"):
        mechanism_genericity(linear_mechanism, {"x": x}, params={"z.net$params": 1.0})
    with pytest.raises(GenericityError, match="same number for every site"):
        mechanism_genericity(linear_mechanism, {"x": x, "y": np.zeros(4)})
    with pytest.raises(GenericityError, match="at least 2 rows"):
        mechanism_genericity(linear_mechanism, {"x": x[:1]})
    with pytest.raises(GenericityError, match="n must equal the number of rows"):
        mechanism_genericity(linear_mechanism, {"x": x}, model_kwargs={"n": 7})
    with pytest.raises(GenericityError, match="applied to 1 unit"):
        mechanism_genericity(linear_mechanism)
    fitted = fitted_scm(linear_mechanism, {})
    with pytest.raises(GenericityError, match="already runs with its learned params"):
        mechanism_genericity(fitted, {"x": x}, params={"y.scale": 1.0})
    with pytest.raises(GenericityError, match=r"params must be \{param: value\}.*list"):
        mechanism_genericity(linear_mechanism, {"x": x}, params=[("y.scale", 1.0)])


@pytest.mark.slow
def test_briefly_fitted_nonlinear_model_is_measured_with_the_learned_networks():
    data = nonlinear.sample(1000, seed=1)
    fitted = fit_module.fit(
        nonlinear.learnable_model, data, model_kwargs=SMALL, num_epochs=3, progress=False
    )
    report = mechanism_genericity(fitted, data)
    layers = fitted.params["x2.net$params"].layers
    first = jax.nn.silu(
        data["x1"][:, None].astype(np.float32) @ layers[0].weight.T + layers[0].bias
    )
    expected = trace_ratio(layers[1].weight, sample_cov(first).astype(np.float32), log=True)
    assert report.pairs[0] == ("x2.net.layers[0]", "x2.net.layers[1]")
    assert float(report.log_ratio_by_pair[0]) == pytest.approx(float(expected), abs=1e-4)
    initial = mechanism_genericity(nonlinear.learnable_model, data, model_kwargs=SMALL)
    assert np.max(np.abs(report.log_ratios - initial.log_ratios)) > 1e-3  # it did learn
