"""The conditional VAE image mechanism: its noise view, its site in a program, bad input."""

import jax
import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as dist
import pytest
from numpyro import handlers

from models.morpho_mnist import learnable_model, load
from scm_ppl import FittedSCM, counterfactual, do, fit, noise_view
from scm_ppl.errors import DataError, InterventionError
from scm_ppl.learn.images import (
    ConditionalVAEImage,
    ConvDecoder,
    ConvEncoder,
    StrokeDecoder,
    check_images,
    conditional_vae,
)
from tests._saved import assert_same_params

KW = {"latent_dim": 4, "width": 4}
DECODER_CLASSES = {"conv": ConvDecoder, "stroke": StrokeDecoder}


@pytest.fixture(scope="module", params=sorted(DECODER_CLASSES))
def tiny_fit(request) -> tuple[FittedSCM, dict[str, np.ndarray], dict]:
    """A two-epoch fit of each decoder, with the keyword arguments it was fitted with."""
    kw = {**KW, "decoder": request.param}
    d = load(256)
    data = {k: d[k] for k in ("thickness", "intensity", "image")}
    fitted = fit(
        learnable_model, data, num_epochs=2, batch_size=128, progress=False, model_kwargs=kw
    )
    assert isinstance(fitted.params["image.decoder$params"], DECODER_CLASSES[request.param])
    return fitted, data, kw


def _dist(n: int = 3) -> ConditionalVAEImage:
    enc = ConvEncoder(2, 4, 4, jax.random.key(0))
    dec = ConvDecoder(2, 4, 4, jax.random.key(1))
    return ConditionalVAEImage(enc, dec, jnp.linspace(-1, 1, 2 * n).reshape(n, 2), 0.05)


def test_noise_view_round_trips_and_has_the_stated_shapes() -> None:
    d = _dist()
    x = jnp.asarray(load(3)["image"])
    view = noise_view(d)
    assert view.inverse is not None
    u = view.inverse(x)
    assert u.shape == (3, 4 + 784) and u.dtype == jnp.float32
    assert view.base.batch_shape == (3,) and view.base.event_shape == (4 + 784,)
    # forward(inverse(x)) == x: the residual carries whatever the decoder misses.
    np.testing.assert_allclose(view.forward(u), x, atol=1e-5)
    s = d.sample(jax.random.key(3), (2,))
    assert s.shape == (2, 3, 28, 28) and s.dtype == jnp.float32
    assert d.log_prob(x).shape == (3,)


def test_null_counterfactual_returns_the_image_and_do_changes_it(tiny_fit) -> None:
    fitted, data, kw = tiny_fit
    ev = {k: v[:8] for k, v in data.items()}
    kw = {**kw, "n": 8}
    same = counterfactual(
        fitted, ev, {"thickness": ev["thickness"]}, rng_key=jax.random.key(0), model_kwargs=kw
    )
    assert same.method == "exact"
    np.testing.assert_allclose(same.world("cf")["image"][0, 0], ev["image"], atol=1e-5)
    moved = counterfactual(
        fitted, ev, {"thickness": ev["thickness"] + 2.0}, rng_key=jax.random.key(0), model_kwargs=kw
    )
    assert float(jnp.abs(moved.world("cf")["image"][0, 0] - ev["image"]).mean()) > 1e-4


def test_save_load_identity(tiny_fit, tmp_path) -> None:
    fitted, _, kw = tiny_fit
    path = tmp_path / "vae.npz"
    fitted.save(path)
    loaded = FittedSCM.load(path, learnable_model, model_kwargs=kw)
    assert_same_params(fitted, loaded)


def _program(n: int = 2) -> None:
    with numpyro.plate("unit", n):
        t = jnp.asarray(numpyro.sample("t", dist.Normal(0.0, 1.0)))
        conditional_vae("image", t[:, None], latent_dim=4, width=4)


def test_intervening_on_the_image_with_a_non_image_raises() -> None:
    with pytest.raises(InterventionError, match="holds images shaped"):
        handlers.trace(
            handlers.seed(handlers.condition(_program, {"image": jnp.ones(2)}), 0)
        ).get_trace()


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


def test_parents_must_have_a_feature_axis() -> None:
    with pytest.raises(DataError, match=r"parents shaped \(n, c\)"):
        ConditionalVAEImage(
            ConvEncoder(1, 4, 4, jax.random.key(0)),
            ConvDecoder(1, 4, 4, jax.random.key(1)),
            jnp.asarray(0.0),
            0.1,
        )


@pytest.mark.parametrize(
    ("x", "match"),
    [
        (np.full((2, 28, 28), 255.0), r"must lie in \[0, 1\]"),
        (-np.ones((2, 28, 28)), r"must lie in \[0, 1\]"),
        (np.zeros((2, 28, 28), np.uint8), "floating-point"),
        (np.zeros((2, 784)), r"shaped \(\.\.\., 28, 28\)"),
    ],
)
def test_images_outside_the_declared_range_raise(x: np.ndarray, match: str) -> None:
    with pytest.raises(DataError, match=match):
        check_images(x)
    program = handlers.condition(_program, {"image": jnp.asarray(x)})
    with pytest.raises((DataError, InterventionError)):
        handlers.trace(handlers.seed(program, 0)).get_trace()


def test_an_intervention_setting_a_non_image_raises_in_every_world_and_under_do() -> None:
    # The site is renamed by outer handlers (a world's prefix, numpyro's do): the check
    # must follow the site, not its name.
    with pytest.raises(InterventionError, match="holds images shaped"):
        counterfactual(
            _program, {"t": jnp.zeros(2)}, {"image": dist.Normal(0.0, 1.0)},
            rng_key=jax.random.key(0), model_kwargs={"n": 2},
        )  # fmt: skip
    with pytest.raises(InterventionError, match="holds images shaped"):
        handlers.trace(handlers.seed(handlers.do(_program, {"image": jnp.ones(2)}), 0)).get_trace()


@pytest.mark.parametrize("mask", [None, jnp.array([True, False])])
def test_scm_ppl_do_with_one_number_per_unit_on_the_image_raises(mask) -> None:
    # scm_ppl.do, eager: a value per unit shaped (n,) is not an image per unit.
    masks = None if mask is None else {"image": mask}
    with pytest.raises(InterventionError, match=r"'image'.*shape \(2,\).*\(2, 28, 28\)"):
        handlers.trace(
            handlers.seed(do(_program, {"image": jnp.ones(2)}, mask=masks), 0)
        ).get_trace()


def test_scm_ppl_do_with_a_mask_sets_whole_images_of_the_masked_units() -> None:
    mask = jnp.array([True, False])
    program = do(_program, {"image": jnp.full((2, 28, 28), 0.5)}, mask={"image": mask})
    tr = handlers.trace(handlers.seed(program, 0)).get_trace()
    np.testing.assert_array_equal(tr["image"]["value"][0], 0.5)
    np.testing.assert_array_equal(tr["image"]["value"][1], tr["image.natural"]["value"][1])


@pytest.mark.parametrize("mechanism", ["vae", "flow"])
def test_fitting_images_on_the_0_255_scale_raises_before_compiling(mechanism: str) -> None:
    d = load(8)
    data = {"thickness": d["thickness"], "intensity": d["intensity"], "image": d["image"] * 255}
    with pytest.raises(DataError, match=r"Data for 'image' hold .* outside the support"):
        fit(
            learnable_model, data, num_epochs=1, batch_size=8, progress=False,
            model_kwargs={"mechanism": mechanism, "latent_dim": 2, "width": 2},
        )  # fmt: skip


def test_evidence_images_on_the_0_255_scale_raise_before_compiling(tiny_fit) -> None:
    from scm_ppl.errors import EvidenceError

    fitted, data, kw = tiny_fit
    ev = {k: v[:4] for k, v in data.items()}
    ev["image"] = ev["image"] * 255
    with pytest.raises(EvidenceError, match=r"outside \[0, 1\].*Divide them by 255"):
        counterfactual(
            fitted, ev, {"thickness": ev["thickness"]}, rng_key=jax.random.key(0),
            model_kwargs={**kw, "n": 4},
        )  # fmt: skip
