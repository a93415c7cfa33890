"""do_mechanism: interventions on mechanisms (parameters, modules), and its transforms."""

from __future__ import annotations

import importlib

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import numpyro
import pytest
from numpyro import handlers
from numpyro.contrib.module import eqx_module

from models import linear_generator as lg
from scm_ppl import FittedSCM, counterfactual, do, do_mechanism, interventional
from scm_ppl.errors import InterventionError, SettingsError
from scm_ppl.learn import rotate, scale, stretch

DIM = 6
TRUTH = lg.ground_truth(jax.random.key(0), DIM)
KEY = jax.random.key(5)


def generator(n: int = 1, latent_scales=None, noise_scale: float = 0.1):
    """The linear generator with the truth's weights as learnable parameters."""
    w1 = numpyro.param("W1", TRUTH["W1"])
    w2 = numpyro.param("W2", TRUTH["W2"])
    with numpyro.plate("unit", n):
        scales = jnp.ones(DIM) if latent_scales is None else jnp.asarray(latent_scales)
        z = numpyro.sample("z", numpyro.distributions.Normal(0.0, scales).to_event(1))
        h = numpyro.deterministic("h", z @ w1.T)
        return numpyro.sample("x", numpyro.distributions.Normal(h @ w2.T, noise_scale).to_event(1))


def _trace(program, **kwargs):
    return handlers.trace(handlers.seed(program, KEY)).get_trace(**kwargs)


def _weights(program, **kwargs) -> dict:
    tr = _trace(program, **kwargs)
    return {"W1": tr["W1"]["value"], "W2": tr["W2"]["value"]}


def _random_rotation(seed: int) -> np.ndarray:
    q, r = np.linalg.qr(np.random.default_rng(seed).standard_normal((DIM, DIM)))
    return q * np.sign(np.diag(r))


CONV = eqx.nn.Conv2d(2, 3, 5, padding=2, key=jax.random.key(1))
NET = eqx.nn.Sequential([eqx.nn.Linear(4, 4, key=jax.random.key(2)), eqx.nn.Lambda(jnp.tanh)])


def module_program():
    conv = eqx_module("conv", CONV)
    net = eqx_module("net", NET)
    image = numpyro.deterministic("image", conv(jnp.ones((2, 8, 8))))
    return numpyro.deterministic("y", net(jnp.ones(4)).sum() + image.sum())


# --- changes that change nothing -----------------------------------------------------------


@pytest.mark.parametrize(
    "changes",
    [{"W1": rotate(np.eye(DIM))}, {"W2": rotate(np.eye(DIM), side="output")}, {"W1": scale(1.0)}],
)
def test_identity_changes_leave_the_generator_unchanged(changes) -> None:
    before, after = _trace(generator, n=5), _trace(do_mechanism(generator, changes), n=5)
    np.testing.assert_array_equal(before["x"]["value"], after["x"]["value"])


@pytest.mark.parametrize(
    "changes", [{"conv": stretch(1.0)}, {"conv.weight": stretch(1.0)}, {"net": rotate(np.eye(4))}]
)
def test_identity_changes_leave_modules_unchanged(changes) -> None:
    before, after = _trace(module_program), _trace(do_mechanism(module_program, changes))
    np.testing.assert_array_equal(before["image"]["value"], after["image"]["value"])
    np.testing.assert_array_equal(before["y"]["value"], after["y"]["value"])


# --- the transforms -------------------------------------------------------------------------


def test_stretch_dilates_a_kernel_and_its_frequency_response() -> None:
    kernel = jnp.array([0.0, 1.0, 2.0, 1.0, 0.0])
    # h'(t) = h(c + (t - c)/2) / 2: a wider, lower kernel (linear interpolation) ...
    cut = [0.5, 0.75, 1.0, 0.75, 0.5]
    np.testing.assert_allclose(stretch(2.0, keep_dc=False)(kernel), cut)
    # ... whose sum ĥ(0) is restored by default (the tails beyond the support are cut).
    np.testing.assert_allclose(stretch(2.0)(kernel), np.asarray(cut) * 4.0 / 3.5, rtol=1e-6)
    # A smooth kernel that still fits after stretching: ĥ'(ν) = ĥ(2ν) (linear interpolation
    # attenuates by about sinc²(ν), under 1% where ĥ(2ν) holds most of its energy).
    t = np.arange(33) - 16
    wide = jnp.asarray(np.exp(-(t**2) / (2 * 2.0**2)))
    stretched = stretch(2.0)(wide)
    nu = np.linspace(0.0, 0.1, 6)

    def response(h: jax.Array, f: np.ndarray) -> np.ndarray:
        return np.abs(np.exp(-2j * np.pi * np.outer(f, t)) @ np.asarray(h))

    expected = response(wide, 2 * nu)
    np.testing.assert_allclose(response(stretched, nu), expected, atol=0.02 * expected[0])


def test_stretch_acts_on_the_spatial_axes_of_conv_modules() -> None:
    weight = do_mechanism(module_program, {"conv": stretch(2.0)})
    tr = _trace(weight)
    new = tr["conv$params"]["value"].weight
    np.testing.assert_allclose(new, stretch(2.0, axes=(2, 3))(CONV.weight), rtol=1e-6)
    cut = stretch(2.0, axes=(2, 3), keep_dc=False)(CONV.weight)
    sums, old, cut_sums = (jnp.sum(w, axis=(2, 3)) for w in (new, CONV.weight, cut))
    mass = lambda w: jnp.sum(jnp.abs(w), axis=(2, 3))
    lowpass = (jnp.abs(old) >= 0.1 * mass(CONV.weight)) & (jnp.abs(cut_sums) >= 0.1 * mass(cut))
    lowpass = lowpass & (old * cut_sums > 0)
    assert 0 < int(lowpass.sum()) < lowpass.size  # random kernels: both kinds occur
    ratio = sums / jnp.where(lowpass, cut_sums, 1.0)
    # a kernel with a real gain at zero frequency keeps its sum, up to the alpha**2 bound
    kept = lowpass & (old / cut_sums <= 4.0) & (old / cut_sums >= 0.25)
    np.testing.assert_allclose(sums[kept], old[kept], rtol=1e-4, atol=1e-6)
    assert bool(jnp.all((ratio[lowpass] >= 0.25 - 1e-6) & (ratio[lowpass] <= 4.0 + 1e-6)))
    np.testing.assert_allclose(new[~lowpass], cut[~lowpass], rtol=1e-6)  # left as they are
    assert new.shape == CONV.weight.shape


def test_stretch_leaves_a_kernel_whose_taps_cancel_unscaled() -> None:
    # Its sum, 0.01, is noise next to its mass: rescaling by old/new sums would be ~x30.
    kernel = jnp.array([-1.0, 0.0, 1.01, 0.0, 0.0])
    np.testing.assert_allclose(stretch(2.0)(kernel), stretch(2.0, keep_dc=False)(kernel))


def test_rotate_and_scale_on_sub_module_paths() -> None:
    q = _random_rotation(0)[:4, :4]
    tr = _trace(do_mechanism(module_program, {"net.layers[0]": rotate(q), "conv.bias": scale(0.0)}))
    linear = tr["net$params"]["value"].layers[0]
    np.testing.assert_allclose(linear.weight, NET.layers[0].weight @ q, rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(linear.bias, NET.layers[0].bias)
    assert float(jnp.abs(tr["conv$params"]["value"].bias).max()) == 0.0


def test_a_replacement_value_replaces_the_parameter() -> None:
    w = _weights(do_mechanism(generator, {"W1": jnp.eye(DIM)}), n=2)
    np.testing.assert_array_equal(w["W1"], np.eye(DIM))


# --- the rotation invariance, by construction ------------------------------------------------


def test_input_rotation_of_the_first_layer_keeps_the_covariance_for_isotropic_latents() -> None:
    q = _random_rotation(1)
    changed = _weights(do_mechanism(generator, {"W1": rotate(q)}), n=2)
    np.testing.assert_allclose(changed["W1"], TRUTH["W1"] @ q, rtol=1e-5, atol=1e-6)
    # Σ_X = W2 W1 Q Qᵀ W1ᵀ W2ᵀ = Σ_X since Q Qᵀ = I: the change is invisible in the data.
    np.testing.assert_allclose(
        lg.output_covariance(changed), lg.output_covariance(TRUTH), rtol=1e-4, atol=1e-6
    )


@pytest.mark.slow
def test_input_rotation_keeps_the_sampled_covariance() -> None:
    q = _random_rotation(1)
    # 20000 units: the sd of a sample covariance entry is ≈ 0.01 here; tolerance 0.05.
    samples = _trace(do_mechanism(generator, {"W1": rotate(q)}), n=20_000)["x"]["value"]
    np.testing.assert_allclose(
        np.cov(np.asarray(samples).T), lg.output_covariance(TRUTH, noise_scale=0.1), atol=0.05
    )


def test_rotation_changes_the_covariance_when_latents_are_anisotropic_or_on_the_output() -> None:
    q = _random_rotation(2)
    scales = jnp.linspace(0.5, 2.0, DIM)
    changed = _weights(do_mechanism(generator, {"W1": rotate(q)}), n=2, latent_scales=scales)
    before = lg.output_covariance(TRUTH, latent_scales=scales)
    after = lg.output_covariance(changed, latent_scales=scales)
    assert float(jnp.linalg.norm(after - before)) > 0.1 * float(jnp.linalg.norm(before))
    output_side = _weights(do_mechanism(generator, {"W1": rotate(q, side="output")}), n=2)
    np.testing.assert_allclose(output_side["W1"], q @ TRUTH["W1"], rtol=1e-5, atol=1e-6)
    before, after = lg.output_covariance(TRUTH), lg.output_covariance(output_side)
    assert float(jnp.linalg.norm(after - before)) > 0.1 * float(jnp.linalg.norm(before))


# --- composition with the queries -------------------------------------------------------------


def _fitted() -> FittedSCM:
    return FittedSCM(generator, dict(TRUTH), {}, {}, {}, {}, _empty_history(), {"method": "map"})


def _empty_history():
    from scm_ppl.learn import FitHistory

    return FitHistory(np.zeros(0), np.zeros(0), 0, False, 0.0)


def test_do_mechanism_on_a_fitted_scm_returns_a_fitted_scm() -> None:
    q = _random_rotation(3)
    changed = do_mechanism(_fitted(), {"W1": rotate(q, side="output")})
    assert isinstance(changed, FittedSCM)
    np.testing.assert_allclose(changed.params["W1"], q @ TRUTH["W1"], rtol=1e-5, atol=1e-6)
    assert changed.settings["changed_mechanisms"] == ["W1"]
    tr = _trace(changed, n=3)
    np.testing.assert_allclose(tr["W1"]["value"], q @ TRUTH["W1"], rtol=1e-5, atol=1e-6)


@pytest.mark.slow
def test_composes_with_do_and_interventional() -> None:
    z = jnp.arange(1.0, DIM + 1.0)
    changed = do_mechanism(generator, {"W2": scale(2.0)})
    h = _trace(do(changed, {"z": z}), n=1)["h"]["value"]
    np.testing.assert_allclose(h[0], TRUTH["W1"] @ z, rtol=1e-5)
    result = interventional(changed, {"z": z}, rng_key=KEY, num_samples=2000, model_kwargs={})
    x = np.asarray(result.samples["predictions"]["x"]).reshape(-1, DIM)
    np.testing.assert_allclose(x.mean(0), 2.0 * TRUTH["W2"] @ TRUTH["W1"] @ z, atol=0.02)


def test_counterfactual_under_a_changed_layer_replays_the_noise() -> None:
    """Abduction in the factual world (original W1), prediction with W1 → Q W1: the unit's
    output noise u = x - W2 W1 z carries over, x' = W2 Q W1 z + u."""
    q = _random_rotation(4)
    n = 50
    data = {k: v for k, v in _trace(generator, n=n).items() if k in ("z", "x")}
    evidence = {k: v["value"] for k, v in data.items()}
    changed = do_mechanism(_fitted(), {"W1": rotate(q, side="output")}, world="cf")
    cf = counterfactual(changed, evidence, None, rng_key=KEY, model_kwargs={"n": n})
    assert cf.method == "exact"
    z, x = np.asarray(evidence["z"]), np.asarray(evidence["x"])
    w1, w2 = np.asarray(TRUTH["W1"]), np.asarray(TRUTH["W2"])
    expected = x - z @ (w2 @ w1).T + z @ (w2 @ q @ w1).T
    got = np.asarray(cf.samples["predictions"]["x"])[0, 0]
    np.testing.assert_allclose(got[0], x, atol=1e-5)  # factual world unchanged
    np.testing.assert_allclose(got[1], expected, atol=1e-4)


# --- bad input -----------------------------------------------------------------------------------


def test_unknown_mechanism_lists_the_programs_parameters() -> None:
    with pytest.raises(InterventionError, match=r"'W3'.*\['W1', 'W2'\]"):
        _trace(do_mechanism(generator, {"W3": scale(2.0)}), n=2)
    with pytest.raises(InterventionError, match=r"\['W1', 'W2'\]"):
        do_mechanism(_fitted(), {"layer9": scale(2.0)})
    with pytest.raises(InterventionError, match=r"no part '.layers\[3\]'.*\.layers\[0\]\.weight"):
        _trace(do_mechanism(module_program, {"net.layers[3]": scale(2.0)}))


def test_a_change_of_shape_is_an_error() -> None:
    with pytest.raises(InterventionError, match=r"returned shape \(3, 3\).*\(6, 6\)"):
        _trace(do_mechanism(generator, {"W1": lambda w: w[:3, :3]}), n=2)
    with pytest.raises(InterventionError, match="different structure"):
        _trace(do_mechanism(module_program, {"net": lambda m: m.layers[0].weight}))
    with pytest.raises(InterventionError, match="cannot act on a parameter of shape"):
        _trace(do_mechanism(generator, {"W1": rotate(np.eye(3))}), n=2)


def test_bad_transforms_are_errors() -> None:
    with pytest.raises(InterventionError, match="alpha > 0"):
        stretch(0.0)
    with pytest.raises(InterventionError, match="square matrix"):
        rotate(np.ones((2, 3)))
    with pytest.raises(InterventionError, match="'input' or 'output'"):
        rotate(np.eye(2), side="left")
    with pytest.raises(InterventionError, match="convolution kernels"):
        _trace(do_mechanism(module_program, {"net": stretch(2.0)}))
    with pytest.raises(InterventionError, match="parameter/module names"):
        do_mechanism(generator, [("W1", scale(2.0))])  # type: ignore[arg-type]
    with pytest.raises(SettingsError, match="do_mechanism needs a NumPyro program or a FittedSCM"):
        do_mechanism("generator", {"W1": scale(2.0)})  # type: ignore[arg-type]


def test_models_package_exports_the_linear_generator() -> None:
    models = importlib.import_module("models")
    assert models.linear_generator is lg


# --- names with dots: the networks of scm_ppl.mechanisms ---------------------------------------


def _mlp_program(n: int = 4) -> None:
    from scm_ppl import additive_noise

    with numpyro.plate("unit", n):
        x = numpyro.sample("x", numpyro.distributions.Normal(0.0, 1.0))
        additive_noise("y", [x], hidden=(8,))  # params "y.net$params" and "y.scale"


def test_dotted_parameter_and_module_names_are_addressable() -> None:
    changes = {"y.net.layers[1].weight": scale(0.0), "y.scale": scale(2.0)}
    tr = _trace(do_mechanism(_mlp_program, changes), n=4)
    assert float(tr["y.scale"]["value"]) == pytest.approx(
        2.0 * float(_trace(_mlp_program)["y.scale"]["value"])
    )
    assert not np.any(np.asarray(tr["y.net$params"]["value"].layers[1].weight))
    params = {k: v["value"] for k, v in _trace(_mlp_program).items() if v["type"] == "param"}
    fitted = FittedSCM(_mlp_program, params, {}, {}, {}, {}, _empty_history(), {"method": "map"})
    changed = do_mechanism(fitted, changes)
    assert not np.any(np.asarray(changed.params["y.net$params"].layers[1].weight))
    assert float(changed.params["y.scale"]) == pytest.approx(2.0 * float(params["y.scale"]))
    with pytest.raises(InterventionError, match=r"'y.net.layerz\[1\]' has no part '.layerz\[1\]'"):
        _trace(do_mechanism(_mlp_program, {"y.net.layerz[1]": scale(2.0)}))
    with pytest.raises(InterventionError, match=r"'q\.net'.*\['x', 'y'\]|names 'q'"):
        do_mechanism(fitted, {"q.net": scale(2.0)})
