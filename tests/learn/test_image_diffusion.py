"""The conditional diffusion image mechanism: the DDIM sampler and its inversion against
the closed-form flow of Gaussian pixels, the denoising objective against its closed-form
minimum, the noise view's round trip, its site in a fitted program (save/load), bad input."""

import jax
import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as dist
import pytest
from numpyro import handlers
from scipy import integrate

from models.morpho_mnist import learnable_model, load
from scm_ppl import FittedSCM, counterfactual, fit, noise_view
from scm_ppl.errors import DataError, InterventionError, SettingsError
from scm_ppl.learn.images import ConditionalDiffusionImage, Denoiser, conditional_diffusion
from scm_ppl.learn.images.diffusion import _S_MAX, noise_level
from tests._saved import assert_same_params

# Gaussian pixels: on the centred scale y = 2 x - 1, y ~ Normal(MEAN + SHIFT * c, SD^2).
MEAN, SHIFT, SD = -0.4, 0.3, 0.5


def _oracle(y: jax.Array, s: jax.Array, condition: jax.Array) -> jax.Array:
    """The exact noise prediction E[eps | y_s] for Gaussian pixels (a linear regression:
    y_s = sqrt(a) y + sqrt(1 - a) eps)."""
    a = noise_level(s)
    m = MEAN + SHIFT * condition[0]
    return jnp.sqrt(1.0 - a) * (y - jnp.sqrt(a) * m) / (a * SD**2 + 1.0 - a)


def _probability_flow(y_T: jax.Array, condition: jax.Array) -> jax.Array:
    """Where the probability-flow ODE takes y_T at s = _S_MAX back to s = 0 for Gaussian
    pixels: the affine map between the two marginals."""
    a = noise_level(_S_MAX)
    m = MEAN + SHIFT * condition[..., None, None]
    return m + SD * (y_T - jnp.sqrt(a) * m) / jnp.sqrt(a * SD**2 + 1.0 - a)


def test_ddim_sampler_and_inversion_follow_the_probability_flow_of_gaussian_pixels() -> None:
    cond = jnp.array([[-1.0], [0.0], [2.0]])
    y_T = jax.random.normal(jax.random.key(0), (3, 28, 28))
    expected = (_probability_flow(y_T, cond[:, 0]) + 1.0) / 2.0

    def errors(steps: int) -> tuple[float, float]:
        d = ConditionalDiffusionImage(_oracle, cond, 0.01, num_steps=steps)
        off = float(jnp.abs(d.generate(y_T) - expected).max())
        return off, float(jnp.abs(d.invert(expected) - y_T).max())

    generated, inverted = errors(400)
    assert generated < 5e-3 and inverted < 2e-2  # pixels on [0, 1]; noise of sd 1
    # DDIM is a first-order solver of the flow (Song et al., §4.3): a quarter of the
    # steps, four times the error, both ways.
    coarse = errors(100)
    assert 3.5 < coarse[0] / generated < 4.5 and 3.5 < coarse[1] / inverted < 4.5


def test_denoising_objective_has_its_closed_form_minimum_at_the_oracle() -> None:
    n = 4000
    cond = jnp.zeros((n, 1))
    y = MEAN + SD * jax.random.normal(jax.random.key(1), (n, 28, 28))
    x = (y + 1.0) / 2.0
    d = ConditionalDiffusionImage(_oracle, cond, 0.01, training_key=jax.random.key(2))
    per_pixel = -2.0 * d.log_prob(x) / 784
    # E ||eps - E[eps | y_s]||^2 per pixel = a SD^2 / (a SD^2 + 1 - a), averaged over s.
    a = lambda s: float(noise_level(s))
    expected = integrate.quad(lambda s: a(s) * SD**2 / (a(s) * SD**2 + 1 - a(s)), 0, _S_MAX)[0]
    expected /= _S_MAX
    # n images, one time each: the mean's standard error is ~0.3 / sqrt(n) = 0.005.
    np.testing.assert_allclose(float(per_pixel.mean()), expected, atol=0.02)
    # A worse denoiser scores worse; the objective is deterministic without a key.
    wrong = ConditionalDiffusionImage(
        lambda y, s, c: 0.0 * y, cond, 0.01, training_key=d.training_key
    )
    assert float(wrong.log_prob(x).mean()) < float(d.log_prob(x).mean()) - 50.0
    plain = ConditionalDiffusionImage(_oracle, cond[:3], 0.01)
    np.testing.assert_array_equal(plain.log_prob(x[:3]), plain.log_prob(x[:3]))


def test_noise_view_round_trips_real_digits_and_has_the_stated_shapes() -> None:
    net = Denoiser(2, 4, jax.random.key(0))
    x = jnp.asarray(load(3)["image"])
    d = ConditionalDiffusionImage(net, jnp.linspace(-1, 1, 6).reshape(3, 2), 0.01, num_steps=5)
    view = noise_view(d)
    assert view.inverse is not None
    u = view.inverse(x)
    assert u.shape == (3, 1568) and u.dtype == jnp.float32
    assert view.base.batch_shape == (3,) and view.base.event_shape == (1568,)
    # The residual carries what the inversion misses: the round trip is float32 round-off.
    np.testing.assert_allclose(view.forward(u), x, rtol=0, atol=1e-5)
    s = d.sample(jax.random.key(3))
    assert s.shape == (3, 28, 28) and s.dtype == jnp.float32


def _program(n: int = 2) -> None:
    loc = numpyro.param("t.loc", jnp.asarray(0.0))
    with numpyro.plate("unit", n):
        t = jnp.asarray(numpyro.sample("t", dist.Normal(loc, 1.0)))
        conditional_diffusion("image", t[:, None], width=4, num_steps=4)


@pytest.mark.slow  # compiling a fit and DDIM queries: ~30 s on 2 cores
def test_fitted_diffusion_counterfactuals_compose_and_it_saves_and_loads(tmp_path) -> None:
    d = load(64)
    data = {"t": (d["thickness"] - 2.5) / 0.7, "image": d["image"]}
    fitted = fit(_program, data, num_epochs=2, batch_size=32, progress=False)
    assert np.all(np.isfinite(fitted.losses))
    ev = {k: v[:8] for k, v in data.items()}
    worlds = {"same": {"t": ev["t"]}, "thick": {"t": ev["t"] + 2}}
    r = counterfactual(fitted, ev, worlds, rng_key=jax.random.key(0), model_kwargs={"n": 8})
    assert r.method == "exact"
    np.testing.assert_allclose(r.world("same")["image"][0, 0], ev["image"], rtol=0, atol=1e-5)
    moved = r.world("thick")["image"][0, 0]
    assert moved.shape == (8, 28, 28) and float(jnp.abs(moved - ev["image"]).mean()) > 1e-4
    path = tmp_path / "diffusion.npz"
    fitted.save(path)
    loaded = FittedSCM.load(path, _program)
    assert set(fitted.params) >= {"image.denoiser$params", "t.loc"}
    assert_same_params(fitted, loaded)


def test_images_of_the_wrong_shape_or_dtype_raise() -> None:
    d = ConditionalDiffusionImage(_oracle, jnp.zeros((3, 1)), 0.01, num_steps=2)
    with pytest.raises(DataError, match=r"shaped \(\.\.\., 28, 28\)"):
        d.to_noise(jnp.zeros((3, 20, 20)))
    with pytest.raises(DataError, match="floating-point"):
        d.to_noise(jnp.zeros((3, 28, 28), jnp.int32))
    with pytest.raises(DataError, match="1568 numbers"):
        d.from_noise(jnp.zeros((3, 784)))


@pytest.mark.parametrize(
    ("x", "error", "match"),
    [
        (np.full((2, 28, 28), 255.0), DataError, r"must lie in \[0, 1\]"),
        (np.zeros((2, 28, 28), np.uint8), DataError, "floating-point"),
        (np.ones(2), InterventionError, "holds images shaped"),
    ],
)
def test_observed_or_set_images_outside_the_declared_range_raise(
    x: np.ndarray, error: type, match: str
) -> None:
    program = handlers.condition(_program, {"image": jnp.asarray(x)})
    with pytest.raises(error, match=match):
        handlers.trace(handlers.seed(program, 0)).get_trace()


def test_bad_settings_raise() -> None:
    seeded = handlers.seed(conditional_diffusion, 0)
    with pytest.raises(DataError, match=r"parents shaped \(n, c\)"):
        seeded("image", jnp.asarray(0.5))
    with pytest.raises(SettingsError, match="width must be a positive integer"):
        seeded("image", jnp.zeros((2, 1)), width=0)
    with pytest.raises(SettingsError, match="num_steps must be a positive integer"):
        seeded("image", jnp.zeros((2, 1)), num_steps=0)
    with pytest.raises(SettingsError, match="positive number"):
        seeded("image", jnp.zeros((2, 1)), scale=-0.1)
    with pytest.raises(DataError, match=r"ConditionalDiffusionImage expects parents shaped"):
        ConditionalDiffusionImage(_oracle, jnp.asarray(0.0), 0.01)
    with pytest.raises(DataError, match="needs a JAX PRNG key"):
        ConditionalDiffusionImage(_oracle, jnp.zeros((2, 1)), 0.01).sample(None)
    tr = handlers.trace(handlers.seed(learnable_model, 0)).get_trace(
        2, mechanism="diffusion", width=4, num_steps=2
    )
    assert tr["image"]["value"].shape == (2, 28, 28) and "image.denoiser$params" in tr
