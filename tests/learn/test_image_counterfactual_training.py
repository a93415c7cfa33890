"""Counterfactual training of the VAE image mechanism: the term, its wiring, bad settings."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from numpyro import handlers

from models.morpho_mnist import learnable_model, load
from scm_ppl.core.program import arguments_key, baked_arguments_key
from scm_ppl.errors import DataError, SettingsError
from scm_ppl.learn.images import ConditionalVAEImage, ConvDecoder, ConvEncoder
from scm_ppl.learn.images.counterfactual_training import (
    CounterfactualLoss,
    ParentRegressor,
    resample_parents,
    train_parent_regressor,
)


def _parts() -> tuple[ConvEncoder, ConvDecoder, jax.Array, jax.Array]:
    enc = ConvEncoder(2, 4, 4, jax.random.key(0))
    dec = ConvDecoder(2, 4, 4, jax.random.key(1))
    cond = jnp.linspace(-1, 1, 6).reshape(3, 2)
    x = jnp.asarray(load(3)["image"])
    return enc, dec, cond, x


def test_the_term_is_the_weighted_squared_error_of_the_counterfactual_read_off() -> None:
    enc, dec, cond, x = _parts()
    eps = jnp.zeros((3, 4))
    asked = cond[::-1]
    reg = ParentRegressor(2, jax.random.key(2), width=4)
    loss = CounterfactualLoss(reg, weight=7.0)
    plain = ConditionalVAEImage(enc, dec, cond, 0.1, eps).log_prob(x)
    with_cf = ConditionalVAEImage(enc, dec, cond, 0.1, eps, loss, asked).log_prob(x)
    d = ConditionalVAEImage(enc, dec, cond, 0.1)
    z, _ = d.encode(x)  # eps = 0: z is the encoder's mean
    cf = jnp.clip(x + ConditionalVAEImage(enc, dec, asked, 0.1).decode(z) - d.decode(z), 0, 1)
    expected = 7.0 * jnp.sum((jax.vmap(reg)(cf) - asked) ** 2, axis=-1)
    np.testing.assert_allclose(plain - with_cf, expected, rtol=1e-4)
    # Without training noise (evaluation), the term is left out: log_prob is the bound.
    no_eps = ConditionalVAEImage(enc, dec, cond, 0.1, None, loss, asked).log_prob(x)
    np.testing.assert_allclose(no_eps, ConditionalVAEImage(enc, dec, cond, 0.1).log_prob(x))


def test_the_program_resamples_parents_only_when_training_with_the_term() -> None:
    loss = CounterfactualLoss(ParentRegressor(2, jax.random.key(0), width=4), 1.0)
    kw = {"n": 4, "latent_dim": 4, "width": 4}
    tr = handlers.trace(handlers.seed(learnable_model, 0)).get_trace(**kw, counterfactual_loss=loss)
    law = tr["image"]["fn"]
    assert law.cf_condition is not None and law.cf_condition.shape == (4, 2)
    for j in range(2):  # each parent column permuted: the same values, another order
        np.testing.assert_allclose(
            np.sort(law.cf_condition[:, j]), np.sort(law.condition[:, j]), rtol=1e-6
        )
    plain = handlers.trace(handlers.seed(learnable_model, 0)).get_trace(**kw)
    assert plain["image"]["fn"].cf_condition is None


def test_resample_parents_is_a_permutation_per_column() -> None:
    c = jnp.stack([jnp.arange(10.0), 100 + jnp.arange(10.0)], axis=-1)
    out = resample_parents(c, jax.random.key(3))
    assert sorted(out[:, 0].tolist()) == c[:, 0].tolist()
    assert sorted(out[:, 1].tolist()) == c[:, 1].tolist()
    assert not bool(jnp.all(out[:, 0] + 100 == out[:, 1]))  # the columns move apart


@pytest.mark.slow
def test_parent_regressor_learns_a_parent_visible_in_the_pixels() -> None:
    d = load(384)
    cond = jnp.asarray((d["thickness"] - 2.5) / 0.7)[:, None]
    reg = train_parent_regressor(d["image"], cond, num_epochs=6, width=8)
    read = jax.vmap(reg)(jnp.asarray(d["image"]))[:, 0]
    # Thickness is in the pixels: the training fit must explain most of its variance.
    assert float(jnp.corrcoef(read, cond[:, 0])[0, 1]) > 0.8


@pytest.mark.parametrize(
    ("regressor", "weight", "match"),
    [
        ("not callable", 1.0, "callable regressor"),
        (ParentRegressor(2, jax.random.key(0), width=4), 0.0, "positive finite"),
        (ParentRegressor(2, jax.random.key(0), width=4), float("nan"), "positive finite"),
    ],
)
def test_counterfactual_loss_refuses_bad_settings(regressor, weight, match) -> None:
    with pytest.raises(SettingsError, match=match):
        CounterfactualLoss(regressor, weight)


def test_train_parent_regressor_refuses_bad_shapes() -> None:
    x = jnp.zeros((4, 28, 28))
    with pytest.raises(DataError, match=r"float images shaped \(N, 28, 28\)"):
        train_parent_regressor(jnp.zeros((4, 28, 27)), jnp.zeros((4, 1)))
    with pytest.raises(DataError, match=r"float images"):
        train_parent_regressor(jnp.zeros((4, 28, 28), jnp.int32), jnp.zeros((4, 1)))
    with pytest.raises(DataError, match=r"parents shaped \(N, c\) with N = 4"):
        train_parent_regressor(x, jnp.zeros((3, 1)))
    with pytest.raises(DataError, match=r"parents shaped \(N, c\)"):
        train_parent_regressor(x, jnp.zeros(4))


def test_the_flow_refuses_the_counterfactual_term() -> None:
    loss = CounterfactualLoss(ParentRegressor(2, jax.random.key(0), width=4), 1.0)
    with pytest.raises(SettingsError, match="options of the VAE image mechanism"):
        handlers.trace(handlers.seed(learnable_model, 0)).get_trace(
            2, mechanism="flow", counterfactual_loss=loss
        )
    with pytest.raises(SettingsError, match="options of the VAE image mechanism"):
        handlers.trace(handlers.seed(learnable_model, 0)).get_trace(2, mechanism="flow", film=True)


def test_film_conditions_the_decoder_and_leaves_the_plain_decoder_as_it_was() -> None:
    plain = ConvDecoder(2, 4, 4, jax.random.key(1))
    film = ConvDecoder(2, 4, 4, jax.random.key(1), film=True)
    assert plain.film is None and film.film is not None
    np.testing.assert_array_equal(plain.lin.weight, film.lin.weight)
    z, c = jnp.zeros(4), jnp.array([0.5, -0.5])
    out = film(z, c)
    assert out.shape == (28, 28) and bool(jnp.all((out > 0) & (out < 1)))
    assert not bool(jnp.allclose(out, plain(z, c)))  # the parents scale the feature maps


def test_two_regressors_of_one_shape_do_not_share_a_compiled_fit() -> None:
    # fit's epoch cache (baked_arguments_key) and the shape-keyed query caches alike.
    a = CounterfactualLoss(ParentRegressor(2, jax.random.key(0), width=4), 1.0)
    b = CounterfactualLoss(ParentRegressor(2, jax.random.key(1), width=4), 1.0)
    same = CounterfactualLoss(ParentRegressor(2, jax.random.key(0), width=4), 1.0)
    for keyed in (arguments_key, baked_arguments_key):
        a_key, b_key, same_key = (keyed((), {"counterfactual_loss": x}) for x in (a, b, same))
        assert a_key != b_key
        assert a_key == same_key
