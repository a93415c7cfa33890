"""The conditional normalizing-flow image mechanism: exact noise view, exact density,
its site in a fitted program (save/load), bad input."""

import functools

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as dist
import pytest
from numpyro import handlers

from models.morpho_mnist import learnable_model, load
from scm_ppl import FittedSCM, counterfactual, fit, noise_view
from scm_ppl.errors import DataError, InterventionError, ProgramError, SettingsError
from scm_ppl.learn.images import ConditionalFlowImage, ImageFlow, conditional_flow
from tests._saved import assert_same_params

# One coupling layer per scale and mask kind: every code path, a fraction of the compile
# time of the default eight layers.
SHORT = ((0, "checker", 1), (1, "checker", 0), (1, "channel", 1), (2, "channel", 0))


@functools.cache
def _flow(width: int = 4) -> ImageFlow:
    """A flow whose couplings are not the identity (the last layers start at zero)."""
    flow = eqx.filter_jit(lambda k: ImageFlow(2, width, k, SHORT))(jax.random.key(0))
    keys = jax.random.split(jax.random.key(1), len(flow.nets))
    weights = [
        0.05 * jax.random.normal(k, n.conv3.weight.shape)
        for k, n in zip(keys, flow.nets, strict=True)
    ]
    flow = eqx.tree_at(lambda f: [n.conv3.weight for n in f.nets], flow, weights)
    return eqx.tree_at(lambda f: (f.loc, f.log_scale), flow, (flow.loc + 0.3, flow.log_scale - 0.2))


def _dist(n: int = 3) -> ConditionalFlowImage:
    return ConditionalFlowImage(_flow(), jnp.linspace(-1, 1, 2 * n).reshape(n, 2))


def _program(n: int = 2) -> None:
    loc = numpyro.param("t.loc", jnp.asarray(0.0))
    with numpyro.plate("unit", n):
        t = jnp.asarray(numpyro.sample("t", dist.Normal(loc, 1.0)))
        conditional_flow("image", t[:, None], width=4, layout=SHORT)


def test_noise_view_inverts_exactly_and_has_the_stated_shapes() -> None:
    d = _dist()
    x = jnp.asarray(load(3)["image"])
    view = noise_view(d)
    assert view.inverse is not None
    u = view.inverse(x)
    assert u.shape == (3, 784) and u.dtype == jnp.float32
    assert view.base.batch_shape == (3,) and view.base.event_shape == (784,)
    assert float(jnp.abs(u).max()) > 1.0  # a real transformation, not the identity
    # Every layer is a bijection: the round trip is float32 round-off, not a tolerance.
    np.testing.assert_allclose(view.forward(u), x, rtol=0, atol=2e-6)
    # Images outside [0, 1] (a counterfactual's) invert too: a counterfactual can itself
    # be evidence (reversibility).
    wild = 1.6 * x - 0.3
    np.testing.assert_allclose(view.forward(view.inverse(wild)), wild, rtol=0, atol=2e-6)
    s = d.sample(jax.random.key(3))
    assert s.shape == (3, 28, 28) and s.dtype == jnp.float32
    assert float(s.min()) >= 0.0 and float(s.max()) <= 1.0


def test_log_prob_is_the_change_of_variables_density() -> None:
    d = _dist(1)
    x = jnp.asarray(load(1)["image"])
    # log p(x) = log N(u(x); 0, I) + log|det du/dx|, the Jacobian taken by autodiff.
    jac = jax.jacfwd(lambda im: d.to_noise(im.reshape(1, 28, 28))[0])(x.reshape(-1))
    _, logdet = jnp.linalg.slogdet(jac)
    expected = dist.Normal(0.0, 1.0).log_prob(d.to_noise(x)).sum() + logdet
    np.testing.assert_allclose(d.log_prob(x), [expected], rtol=1e-4)
    # Dequantised: the density at (255 x + v) / 256.
    v = jax.random.uniform(jax.random.key(0), x.shape)
    deq = ConditionalFlowImage(d.flow, d.condition, v)
    np.testing.assert_allclose(deq.log_prob(x), d.log_prob((255 * x + v) / 256), rtol=1e-6)


@pytest.mark.slow  # compiling a fit of a flow: ~45 s on 2 cores
def test_fitted_flow_counterfactuals_are_exact_and_it_saves_and_loads(tmp_path) -> None:
    d = load(64)
    data = {"t": (d["thickness"] - 2.5) / 0.7, "image": d["image"]}
    fitted = fit(_program, data, num_epochs=1, batch_size=64, progress=False)
    assert np.all(np.isfinite(fitted.losses))
    ev = {k: v[:8] for k, v in data.items()}
    worlds = {"same": {"t": ev["t"]}, "thick": {"t": ev["t"] + 2}}
    r = counterfactual(fitted, ev, worlds, rng_key=jax.random.key(0), model_kwargs={"n": 8})
    assert r.method == "exact"
    np.testing.assert_allclose(r.world("same")["image"][0, 0], ev["image"], rtol=0, atol=2e-6)
    moved = r.world("thick")["image"][0, 0]
    assert moved.shape == (8, 28, 28) and float(jnp.abs(moved - ev["image"]).mean()) > 1e-5
    path = tmp_path / "flow.npz"
    fitted.save(path)
    loaded = FittedSCM.load(path, _program)
    assert set(fitted.params) >= {"image.flow$params", "t.loc"}
    assert_same_params(fitted, loaded)


@pytest.mark.parametrize(
    ("x", "match"),
    [
        (jnp.zeros((3, 20, 20)), r"shaped \(\.\.\., 28, 28\)"),
        (jnp.zeros((3, 28, 28), jnp.int32), "floating-point"),
    ],
)
def test_images_of_the_wrong_shape_or_dtype_raise(x: jax.Array, match: str) -> None:
    with pytest.raises(DataError, match=match):
        _dist().to_noise(x)


@pytest.mark.parametrize(
    ("x", "error", "match"),
    [
        (np.full((2, 28, 28), 255.0), DataError, r"must lie in \[0, 1\]"),
        (-np.ones((2, 28, 28)), DataError, r"must lie in \[0, 1\]"),
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
    with pytest.raises(DataError, match=r"parents shaped \(n, c\)"):
        handlers.seed(conditional_flow, 0)("image", jnp.asarray(0.5))
    with pytest.raises(SettingsError, match="width must be a positive integer"):
        handlers.seed(conditional_flow, 0)("image", jnp.zeros((2, 1)), width=0)
    with pytest.raises(DataError, match=r"parents shaped \(n, c\)"):
        ConditionalFlowImage(_flow(), jnp.asarray(0.0))
    for layout, match in [
        ([(0, "channel", 0)], "non-empty"),
        ([(1, "checker", 0), (0, "checker", 0)], "never decreasing"),
    ]:
        with pytest.raises(SettingsError, match=match):
            handlers.seed(conditional_flow, 0)("image", jnp.zeros((2, 1)), layout=layout)
    with pytest.raises(DataError, match="needs a JAX PRNG key"):
        _dist().sample(None)
    data = {k: v for k, v in load(4).items() if k != "label"}
    with pytest.raises((SettingsError, ProgramError), match="Unknown image mechanism 'gan'"):
        fit(learnable_model, data, num_epochs=1, progress=False, model_kwargs={"mechanism": "gan"})
