"""The stroke decoder: its geometry (soft distance, pen width vs measured thickness), its
site in a program, save/load, bad settings; slow: a short training follows thickness."""

import jax
import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as dist
import pytest
from numpyro import handlers

from models.morpho_mnist import learnable_model, load
from scm_ppl import counterfactual, fit, noise_view
from scm_ppl.errors import DataError, SettingsError
from scm_ppl.learn.images import (
    ConditionalVAEImage,
    ConvEncoder,
    StrokeDecoder,
    conditional_vae,
    measure_thickness,
)
from scm_ppl.learn.images.stroke import render_strokes, soft_distance

KW = {"latent_dim": 4, "width": 4, "decoder": "stroke"}


def _line() -> jax.Array:
    return jnp.zeros((28, 28)).at[4:24, 14].set(1.0)


def test_soft_distance_is_one_lipschitz_on_random_ink() -> None:
    ink = jax.random.uniform(jax.random.key(0), (28, 28)) ** 8  # sparse, graded ink
    d = np.asarray(soft_distance(ink))
    assert np.max(np.abs(np.diff(d, axis=0))) <= 1.0 + 1e-5
    assert np.max(np.abs(np.diff(d, axis=1))) <= 1.0 + 1e-5


def test_soft_distance_of_a_dot_is_the_distance_within_the_window_and_empty_beyond() -> None:
    dot = jnp.zeros((28, 28)).at[0, 0].set(1.0)
    d = np.asarray(soft_distance(dot))[0, :10]
    np.testing.assert_allclose(d[:7], np.arange(7.0), atol=1e-4)
    assert np.all(d[7:] >= 29.9)
    # However wide the pen asked for (the half-width is capped at 5 px), nothing beyond.
    huge = np.asarray(render_strokes(dot, 100.0, 1.0, 0.3))
    assert abs(float(huge[0, 5]) - 0.5) < 1e-3 and float(huge[0, 7:].max()) < 1e-6  # edge at 5


@pytest.mark.parametrize("half_width", [1.0, 1.5, 2.0, 2.5, 3.0])
def test_a_line_drawn_with_half_width_w_measures_two_w_plus_at_most_a_pixel(
    half_width: float,
) -> None:
    # Known by construction: the pen's disc of radius w swept along a one-pixel line is
    # 2w wide plus the line's own pixel, less what the 28x28 grid and the half-maximum
    # threshold of the morphometry round off (measured: 0.5 at w <= 1.5, 0.9-1.0 above).
    img = np.asarray(render_strokes(_line(), half_width, 1.0, 0.3)) * 255
    assert 0.4 <= float(measure_thickness(img)) - 2 * half_width <= 1.1


def test_a_wider_pen_never_darkens_a_pixel_and_the_background_stays_empty() -> None:
    ink = jax.nn.relu(jax.random.normal(jax.random.key(1), (28, 28)) - 2.0)
    ink = ink.at[:, :6].set(0.0)
    thin = np.asarray(render_strokes(ink, 1.0, 1.0, 0.3))
    wide = np.asarray(render_strokes(ink, 3.0, 1.0, 0.3))
    assert np.all(wide >= thin - 1e-6)
    # More than radius 6 from any ink: nothing, however wide the pen.
    far = np.asarray(render_strokes(jnp.zeros((28, 28)).at[0, 0].set(1.0), 3.0, 1.0, 0.3))
    assert float(far[20:, 20:].max()) < 1e-6


def test_the_stroke_decoder_noise_view_round_trips_with_the_stated_shapes() -> None:
    enc = ConvEncoder(2, 4, 4, jax.random.key(0))
    dec = StrokeDecoder(2, 4, 4, jax.random.key(1))
    law = ConditionalVAEImage(enc, dec, jnp.linspace(-1, 1, 6).reshape(3, 2), 0.05)
    x = jnp.asarray(load(3)["image"])
    view = noise_view(law)
    assert view.inverse is not None
    u = view.inverse(x)
    assert u.shape == (3, 4 + 784) and u.dtype == jnp.float32
    np.testing.assert_allclose(view.forward(u), x, atol=1e-5)
    assert law.sample(jax.random.key(2), (2,)).shape == (2, 3, 28, 28)


def _program(n: int = 2, **kw) -> None:
    with numpyro.plate("unit", n):
        t = jnp.asarray(numpyro.sample("t", dist.Normal(0.0, 1.0)))
        conditional_vae("image", t[:, None], latent_dim=4, width=4, **kw)


@pytest.mark.parametrize(
    ("kw", "match"),
    [
        ({"decoder": "resnet"}, "VAE decoder"),
        ({"decoder": "stroke", "film": True}, "film conditions the layers of the 'conv'"),
    ],
)
def test_bad_decoder_settings_raise(kw: dict, match: str) -> None:
    with pytest.raises(SettingsError, match=match):
        handlers.trace(handlers.seed(_program, 0)).get_trace(**kw)


def test_decoder_is_a_vae_option_of_the_morpho_program() -> None:
    with pytest.raises(SettingsError, match="options of the VAE image mechanism"):
        handlers.trace(handlers.seed(learnable_model, 0)).get_trace(
            mechanism="flow", decoder="stroke"
        )


def test_drawn_images_may_leave_the_pixel_range_observed_ones_may_not() -> None:
    # A prior draw (as fit's first run of the program makes) carries a Gaussian
    # residual: it is not user input and must not be refused.
    tr = handlers.trace(handlers.seed(_program, 0)).get_trace(decoder="stroke", scale=5.0)
    assert float(jnp.max(jnp.abs(tr["image"]["value"]))) > 1.0
    observed = handlers.condition(_program, {"image": jnp.full((2, 28, 28), 255.0)})
    with pytest.raises(DataError, match=r"must lie in \[0, 1\]"):
        handlers.trace(handlers.seed(observed, 0)).get_trace(decoder="stroke")


@pytest.mark.slow
def test_short_training_of_the_stroke_decoder_moves_thickness_by_half_the_asked() -> None:
    kw = {"latent_dim": 16, "width": 8, "decoder": "stroke"}
    d = load(4000)
    data = {k: d[k] for k in ("thickness", "intensity", "image")}
    fitted = fit(
        learnable_model, data, num_epochs=8, batch_size=128, progress=False, model_kwargs=kw
    )
    test = load(60, held_out=True)
    ev = {k: test[k] for k in data}
    asked = 1.0
    r = counterfactual(
        fitted,
        ev,
        {"thickness": ev["thickness"] + asked},
        rng_key=jax.random.key(0),
        model_kwargs={**kw, "n": 60},
    )
    cf = np.clip(np.asarray(r.world("cf")["image"][0, 0]), 0, 1)
    moved = measure_thickness(cf) - measure_thickness(test["image"])
    # The test: at least half the asked amount, in the asked direction.
    assert np.mean(moved) >= asked / 2, np.mean(moved)


def test_the_ink_charge_is_part_of_fits_objective_only() -> None:
    from scm_ppl.core.modes import fitting

    x = jnp.asarray(load(2)["image"])
    conditioned = handlers.seed(handlers.condition(_program, {"image": x}), 0)
    law = handlers.trace(conditioned).get_trace(decoder="stroke")["image"]["fn"]
    in_query = law.log_prob(x)
    with fitting():
        in_fit = law.log_prob(x)
    mean, log_sd = law.encode(x)
    charge = jax.vmap(law.decoder.training_penalty)(mean + jnp.exp(log_sd) * law.eps)
    assert float(jnp.min(charge)) > 0.0
    # A query's (or NUTS abduction's) density is the plain bound, uncharged.
    np.testing.assert_allclose(in_query - in_fit, charge, atol=2e-3)  # ELBOs ~1e3 in float32
