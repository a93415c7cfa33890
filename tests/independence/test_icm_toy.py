"""The seed paper's toy finding, reproduced with ``fit`` on the linear generator.

Besserve et al. (AAAI 2021): gradient descent from small initialisation fits a two-layer
linear generator ``x = W2 W1 z`` with a *balanced* factorisation, which is not generic
(ρ > 1) and mispredicts extrapolation; the ICM penalty gives ρ ≈ 1 at the same data fit and
extrapolates like the truth. The closed forms are derived in tutorial 06:

* balanced ratio ``ρ_bal = τ(Σ_X) / τ(Σ_X^{1/2})²`` (dense), ``⟨S_X⟩ / ⟨√S_X⟩²`` (conv);
* under ``W1 → Q W1`` with ``Q`` Haar-orthogonal, ``E_Q τ(Σ_X') = τ(W2 W2ᵀ) τ(Σ_H) =
  τ(Σ_X) / ρ`` exactly, so a fit with ratio ρ predicts ``1/ρ`` of the observed power.
"""

from __future__ import annotations

import importlib

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from models import linear_generator as lg
from scm_ppl import do_mechanism, fit
from scm_ppl.errors import GenericityError, SettingsError
from scm_ppl.independence import spectral_density_ratio, trace_ratio
from scm_ppl.learn import rotate

DIM = 12
TRUTH_KEY = 1  # ground truth with balanced ratio 1.76 and its own ratio 0.998 (generic)
CONV_TRUTH_KEY = 162  # circular kernels: own ratio 0.991, balanced ratio 2.19
NUM_ROWS = 2_000
NUM_ROTATIONS = 32
FIT_SETTINGS = dict(
    batch_size=200,
    num_epochs=120,
    validation_fraction=0.0,
    progress=False,
    rng_key=jax.random.key(3),
)


def _optimizer(learning_rate: float = 0.3) -> optax.GradientTransformation:
    # Plain SGD; the clip only acts on the penalty's first steps, whose gradient scales
    # like 1/‖W‖ at a small initialisation (log ρ is scale-invariant).
    return optax.chain(optax.clip_by_global_norm(1.0), optax.sgd(learning_rate))


def _data(truth: dict, kind: str = "dense") -> dict[str, np.ndarray]:
    z = np.asarray(jax.random.normal(jax.random.key(100), (NUM_ROWS, DIM)))
    if kind == "dense":
        x = z @ np.asarray(lg.product(truth)).T
    else:
        x = np.asarray(lg.circular_convolve(truth["k2"], lg.circular_convolve(truth["k1"], z)))
    return {"z": z, "x": x}


@pytest.fixture(scope="module")
def truth() -> dict:
    return lg.ground_truth(jax.random.key(TRUTH_KEY), DIM)


@pytest.fixture(scope="module")
def fits(truth: dict) -> dict:
    data = _data(truth)
    kwargs = {"dim": DIM, "init_scale": 1e-3}
    plain = fit(lg.model, data, model_kwargs=kwargs, optimizer=_optimizer(), **FIT_SETTINGS)
    penalised = fit(
        lg.model,
        data,
        model_kwargs=kwargs,
        optimizer=_optimizer(),
        icm_penalty=1.0,
        **FIT_SETTINGS,
    )
    return {"plain": plain, "penalised": penalised}


def _ratio(w: dict) -> float:
    return float(trace_ratio(w["W2"], w["W1"] @ w["W1"].T))


def _relative_fit(w: dict, truth: dict) -> float:
    m, m_true = lg.product(w), lg.product(truth)
    return float(jnp.sum((m - m_true) ** 2) / jnp.sum(m_true**2))


def _haar_rotations(seed: int) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(NUM_ROTATIONS):
        q, r = np.linalg.qr(rng.standard_normal((DIM, DIM)))
        out.append(q * np.sign(np.diag(r)))  # the sign fix makes Q Haar-distributed
    return out


def _extrapolated_power(program_or_weights, seed: int) -> float:
    """Mean output power τ(Σ_X') over Haar rotations ``W1 → Q W1`` of the first layer's
    output: on a fit through do_mechanism, on the truth's weights directly."""
    powers = []
    for q in _haar_rotations(seed):
        change = rotate(q, side="output")
        if isinstance(program_or_weights, dict):
            weights = {**program_or_weights, "W1": change(program_or_weights["W1"])}
        else:
            weights = do_mechanism(program_or_weights, {"W1": change}).params
        m = np.asarray(weights["W2"]) @ np.asarray(weights["W1"])
        powers.append(np.sum(m**2) / DIM)  # τ(M Mᵀ): the output power for white z
    return float(np.mean(powers))


def test_ground_truth_is_generic_and_its_balanced_ratio_is_large(truth: dict) -> None:
    assert lg.balanced_ratio(truth) >= 1.5
    assert abs(_ratio(truth) - 1.0) < 0.01


def test_balanced_factors_attain_the_closed_form(truth: dict) -> None:
    balanced = lg.balanced_factors(truth)
    np.testing.assert_allclose(
        balanced["W2"].T @ balanced["W2"], balanced["W1"] @ balanced["W1"].T, atol=1e-5
    )
    np.testing.assert_allclose(lg.product(balanced), lg.product(truth), atol=1e-5)
    assert _ratio(balanced) == pytest.approx(lg.balanced_ratio(truth), rel=1e-4)


def test_gradient_descent_from_small_init_is_balanced_and_not_generic(
    fits: dict, truth: dict
) -> None:
    w = fits["plain"].params
    closed = lg.balanced_ratio(truth)
    assert _relative_fit(w, truth) < 1e-3
    gap = w["W2"].T @ w["W2"] - w["W1"] @ w["W1"].T  # conserved by gradient flow: ≈ 0
    assert float(jnp.linalg.norm(gap)) < 0.05 * float(jnp.linalg.norm(w["W1"] @ w["W1"].T))
    assert _ratio(w) >= 1.3
    assert _ratio(w) == pytest.approx(closed, rel=0.15)


def test_penalty_makes_the_fit_generic_at_the_same_data_fit(fits: dict, truth: dict) -> None:
    w = fits["penalised"].params
    assert _ratio(w) == pytest.approx(1.0, abs=0.02)
    assert _relative_fit(w, truth) < 1e-3
    history = fits["penalised"].history
    assert len(history.penalties) == len(history.losses) == FIT_SETTINGS["num_epochs"]
    assert history.penalties[-1] < 1e-3 < history.penalties[0]
    assert len(fits["plain"].history.penalties) == 0


def test_extrapolation_follows_the_ratio(fits: dict, truth: dict) -> None:
    seed = 11
    observed = float(jnp.trace(lg.output_covariance(truth))) / DIM
    true_power = _extrapolated_power(dict(truth), seed)
    plain_power = _extrapolated_power(fits["plain"], seed)
    penalised_power = _extrapolated_power(fits["penalised"], seed)
    assert penalised_power == pytest.approx(true_power, rel=0.10)
    assert plain_power == pytest.approx(observed / _ratio(fits["plain"].params), rel=0.15)
    assert plain_power < 0.75 * true_power  # the plain fit is off by about 1/ρ


@pytest.fixture(scope="module")
def conv_truth() -> dict:
    return lg.ground_truth(jax.random.key(CONV_TRUTH_KEY), DIM, kind="conv")


@pytest.fixture(scope="module")
def conv_fits(conv_truth: dict) -> dict:
    # A kernel tap moves n entries of the circulant: n times smaller SGD steps than dense.
    settings = dict(
        model_kwargs={"dim": DIM, "kind": "conv", "init_scale": 1e-3},
        optimizer=_optimizer(0.3 / DIM),
        **FIT_SETTINGS,
    )
    data = _data(conv_truth, "conv")
    return {
        "plain": fit(lg.model, data, **settings),
        "penalised": fit(lg.model, data, icm_penalty=1.0, icm_pairs=[("k1", "k2")], **settings),
    }


def _spectral_ratio(w: dict) -> float:
    return float(spectral_density_ratio(w["k2"], jnp.abs(jnp.fft.fft(w["k1"])) ** 2))


def _relative_conv_fit(w: dict, truth: dict) -> float:
    m, m_true = lg.product(w, "conv"), lg.product(truth, "conv")
    return float(jnp.sum((m - m_true) ** 2) / jnp.sum(m_true**2))


def test_conv_ground_truth_is_generic_and_its_balanced_ratio_is_large(conv_truth: dict) -> None:
    assert lg.balanced_ratio(conv_truth, kind="conv") >= 1.5
    assert _spectral_ratio(conv_truth) == pytest.approx(1.0, abs=0.01)


def test_shifted_power_averages_to_the_observed_power_over_the_ratio(conv_truth: dict) -> None:
    balanced = lg.balanced_factors(conv_truth, "conv")
    for w in (conv_truth, balanced):
        powers = lg.shifted_output_power(w)
        observed = float(jnp.trace(lg.output_covariance(w, "conv"))) / DIM
        assert powers[0] == pytest.approx(observed, rel=1e-5)
        assert np.mean(powers) == pytest.approx(observed / _spectral_ratio(w), rel=1e-5)


def test_convolutional_toy_is_balanced_with_the_spectral_closed_form(
    conv_fits: dict, conv_truth: dict
) -> None:
    w = conv_fits["plain"].params
    closed = lg.balanced_ratio(conv_truth, kind="conv")
    assert _relative_conv_fit(w, conv_truth) < 1e-3
    gap = jnp.abs(jnp.fft.fft(w["k1"])) ** 2 - jnp.abs(jnp.fft.fft(w["k2"])) ** 2
    assert float(jnp.max(jnp.abs(gap))) < 0.05 * float(jnp.max(jnp.abs(jnp.fft.fft(w["k1"])) ** 2))
    assert _spectral_ratio(w) >= 1.3
    assert _spectral_ratio(w) == pytest.approx(closed, rel=0.15)


def test_conv_penalty_is_generic_at_the_same_fit_and_extrapolates_like_the_truth(
    conv_fits: dict, conv_truth: dict
) -> None:
    plain, penalised = conv_fits["plain"].params, conv_fits["penalised"].params
    assert _spectral_ratio(penalised) == pytest.approx(1.0, abs=0.02)
    assert _relative_conv_fit(penalised, conv_truth) < 1e-3
    true_power = float(np.mean(lg.shifted_output_power(conv_truth)))
    observed = float(jnp.trace(lg.output_covariance(conv_truth, "conv"))) / DIM
    assert float(np.mean(lg.shifted_output_power(penalised))) == pytest.approx(true_power, rel=0.1)
    plain_power = float(np.mean(lg.shifted_output_power(plain)))
    assert plain_power == pytest.approx(observed / _spectral_ratio(plain), rel=0.15)
    assert plain_power < 0.75 * true_power


def test_penalty_on_a_program_without_pairs_is_an_error() -> None:
    linear_chain = importlib.import_module("models.linear_chain")
    data = {f"x{k}": np.ones(4) for k in range(1, 5)}
    with pytest.raises(GenericityError, match="none were detected"):
        fit(linear_chain.model, data, icm_penalty=1.0, num_epochs=1, progress=False)


def test_bad_icm_pairs_are_errors(truth: dict) -> None:
    data = _data(truth)
    kwargs = {"model_kwargs": {"dim": DIM}, "num_epochs": 1, "progress": False}
    with pytest.raises(GenericityError, match="no parameter or layer"):
        fit(lg.model, data, icm_penalty=1.0, icm_pairs=[("W1", "W9")], **kwargs)
    with pytest.raises(GenericityError, match="neither a parameter"):
        fit(lg.model, data, icm_penalty=1.0, icm_pairs=[("q", "W2")], **kwargs)
    with pytest.raises(SettingsError, match=r"icm_penalty must be a finite number >= 0; got -1\.0"):
        fit(lg.model, data, icm_penalty=-1.0, **kwargs)
    with pytest.raises(SettingsError, match="icm_penalty must be a finite number >= 0; got 'x'"):
        fit(lg.model, data, icm_penalty="x", **kwargs)
    with pytest.raises(SettingsError, match="without icm_penalty"):
        fit(lg.model, data, icm_pairs=[("W1", "W2")], **kwargs)
    with pytest.raises(SettingsError, match="icm_penalty shapes a gradient fit"):
        fit(lg.model, data, icm_penalty=1.0, method="nuts", **kwargs)


@pytest.mark.slow
def test_penalty_from_the_hidden_site_uses_minibatch_samples(truth: dict) -> None:
    fitted = fit(
        lg.model,
        _data(truth),
        model_kwargs={"dim": DIM, "init_scale": 1e-3},
        optimizer=_optimizer(),
        icm_penalty=1.0,
        icm_pairs=[("h", "W2")],
        **FIT_SETTINGS,
    )
    w = fitted.params
    assert fitted.settings["icm_pairs"] == [["h", "W2"]]
    # The sample covariance of z (2000 rows) is close to I: ρ from samples ≈ population ρ.
    assert _ratio(w) == pytest.approx(1.0, abs=0.05)
    assert _relative_fit(w, truth) < 1e-3


def test_learning_curve_plot_shows_the_penalty(fits: dict) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from scm_ppl.plotting import plot_learning_curve

    ax = plot_learning_curve(fits["penalised"])
    labels = [t.get_text() for t in ax.get_legend().get_texts()]
    assert labels == ["training", "ICM penalty"]
    twin = [a for a in ax.figure.axes if a is not ax]
    assert len(twin) == 1 and twin[0].get_yscale() == "log"
    plt.close(ax.figure)


def test_penalty_curve_survives_save_and_load(fits: dict, tmp_path) -> None:
    path = tmp_path / "penalised.npz"
    fits["penalised"].save(path)
    loaded = type(fits["penalised"]).load(path, lg.model)
    np.testing.assert_allclose(loaded.history.penalties, fits["penalised"].history.penalties)
    assert loaded.settings["icm_pairs"] == [["W1", "W2"]]


@pytest.mark.slow
def test_conv_layers_of_a_module_are_detected_and_penalised() -> None:
    conv_generator = importlib.import_module("models.conv_generator")
    fit_icm = importlib.import_module("scm_ppl.learn.icm_penalty")
    params = {"decoder$params": conv_generator.decoder((4, 3), 0)}
    pairs = fit_icm.resolve_pairs(None, params, {})
    assert [(p.first.name, p.second.name) for p in pairs] == [("decoder.conv1", "decoder.conv2")]
    assert pairs[0].grid == (16, 16)
    value = fit_icm.icm_penalty_value(pairs, params, {})
    assert np.isfinite(float(value)) and float(value) > 0.0
    # A delta kernel in conv1 makes conv2's input white: every channel pair has ρ = 1.
    net = params["decoder$params"]
    delta = jnp.zeros_like(net.conv1.weight).at[:, :, 2, 2].set(1.0)
    white = {"decoder$params": eqx.tree_at(lambda m: m.conv1.weight, net, delta)}
    assert float(fit_icm.icm_penalty_value(pairs, white, {})) == pytest.approx(0.0, abs=1e-10)
    grads = jax.grad(lambda p: fit_icm.icm_penalty_value(pairs, p, {}))(params)
    assert float(jnp.abs(grads["decoder$params"].conv2.weight).sum()) > 0.0


@pytest.mark.slow
def test_conv_penalty_from_the_recorded_feature_map_matches_the_measured_ratio() -> None:
    conv_generator = importlib.import_module("models.conv_generator")
    morpho = importlib.import_module("models.morpho")
    fit_icm = importlib.import_module("scm_ppl.learn.icm_penalty")
    from numpyro import handlers

    from scm_ppl import mechanism_genericity

    net = conv_generator.decoder((4, 3), 0)
    params = {"decoder$params": net}
    pairs = fit_icm.resolve_pairs(
        [("features", "decoder.conv2")], params, {"features": (3, 20, 20)}
    )
    assert pairs[0].first == "features" and pairs[0].grid == (20, 20)
    program = handlers.seed(conv_generator.model, jax.random.key(0))
    trace = handlers.trace(program).get_trace(64, channels=(4, 3), record_features=True)
    features = trace["features"]["value"]
    assert features.shape == (64, 3, 20, 20)
    # The penalty reads the same input spectrum mechanism_genericity measures for conv2.
    attributes = {k: trace[k]["value"] for k in morpho.NODES}
    inputs = morpho.decoder_inputs(
        attributes["thickness"],
        attributes["intensity"],
        (attributes["angle"], attributes["shift_x"], attributes["shift_y"]),
    )
    measured = mechanism_genericity(net, inputs).log_ratio_by_pair[-1]
    value = fit_icm.icm_penalty_value(pairs, params, {"features": features})
    assert float(value) == pytest.approx(float(np.mean(measured**2)), rel=1e-4)
    # Differentiable through the feature map: conv1 (upstream of the site) gets a gradient.

    def penalty(p: dict) -> jax.Array:
        feats = jax.vmap(p["decoder$params"].features)(inputs)
        return fit_icm.icm_penalty_value(pairs, p, {"features": feats})

    grads = jax.grad(penalty)(params)["decoder$params"]
    assert float(jnp.abs(grads.conv1.weight).sum()) > 0.0
    assert float(jnp.abs(grads.conv2.weight).sum()) > 0.0


@pytest.mark.slow
def test_fit_penalises_the_conv_generator_against_its_feature_map() -> None:
    conv_generator = importlib.import_module("models.conv_generator")
    morpho = importlib.import_module("models.morpho")
    fitted = fit(
        conv_generator.model,
        morpho.sample(200, seed=1),
        model_kwargs={"channels": (4, 3), "record_features": True},
        icm_penalty=10.0,
        icm_pairs=[("features", "decoder.conv2")],
        batch_size=100,
        num_epochs=2,
        validation_fraction=0.0,
        progress=False,
    )
    assert fitted.settings["icm_pairs"] == [["features", "decoder.conv2"]]
    penalties = fitted.history.penalties
    assert len(penalties) == 2 and np.all(np.isfinite(penalties)) and penalties[0] > 0.0


def test_icm_pairs_name_layers_of_the_networks_of_scm_ppl_mechanisms() -> None:
    # Their parameters carry dots ("y.net$params"): the layer path starts after the name.
    fit_icm = importlib.import_module("scm_ppl.learn.icm_penalty")
    mlp = eqx.nn.MLP(3, 1, 6, 2, key=jax.random.key(0))
    params = {"y.net$params": mlp, "y.scale": jnp.asarray(1.0)}
    pairs = fit_icm.resolve_pairs([("y.net.layers[0]", "y.net.layers[1]")], params, {})
    assert (pairs[0].first.param, pairs[0].second.keys) == ("y.net$params", ("layers", 1))
    assert float(fit_icm.icm_penalty_value(pairs, params, {})) >= 0.0
