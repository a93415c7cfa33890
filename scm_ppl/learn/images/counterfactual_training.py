"""Counterfactual training of an image mechanism: decoded counterfactuals must *measure* as asked.

An image mechanism trained by its likelihood alone learns to reconstruct images; nothing
asks it to put a change of a parent into the pixels. With a latent code free to carry a
parent (thickness is visible in the pixels the encoder reads), the decoder can ignore the
parent and a counterfactual barely moves (Morpho-MNIST: one asked pixel of thickness
moved the measured stroke 0.6 px). The remedy here follows the "counterfactual
training" of Ribeiro et al. (ICML 2023, §3.3) with a frozen, differentiable
*morphometry surrogate* in place of their anti-causal predictors:

1. :func:`train_parent_regressor` fits a small CNN that reads the standardised parents
   off factual images (the true values are known for the training images);
2. :class:`CounterfactualLoss` (given to :func:`~scm_ppl.learn.images.conditional_vae`)
   adds to the mechanism's training objective, per image, ``weight * |regressor(x') -
   c'|²`` where ``c'`` are parents resampled within the minibatch (each parent permuted
   independently, so combinations off the factual joint are asked too) and ``x'`` the
   counterfactual image the query would return: ``x + decoder(z, c') - decoder(z, c)``
   (the residual carried over), clipped to ``[0, 1]``.

The term is part of the mechanism's objective (``log_prob`` returns the evidence bound
minus it while training, when the site draws its reparameterisation noise); queries do
not pass it, so it changes nothing but the learned weights. The regressor stays frozen:
it is a constant of the program, not a learned parameter.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax.typing import ArrayLike

from scm_ppl.core.validate import positive_int
from scm_ppl.errors import DataError, SettingsError

__all__ = ["CounterfactualLoss", "ParentRegressor", "train_parent_regressor"]


class ParentRegressor(eqx.Module):
    """``image (28, 28) -> parents (c,)``: three stride-2 convolutions and a linear head.

    Examples
    --------
    >>> net = ParentRegressor(2, jax.random.key(0))
    >>> net(jnp.zeros((28, 28))).shape
    (2,)
    """

    convs: tuple[eqx.nn.Conv2d, ...]
    head: eqx.nn.Linear

    def __init__(self, num_parents: int, key: jax.Array, width: int = 16) -> None:
        k = jax.random.split(key, 4)
        chans = ((1, width), (width, 2 * width), (2 * width, 2 * width))
        self.convs = tuple(
            eqx.nn.Conv2d(a, b, 3, stride=2, padding=1, key=kk)
            for (a, b), kk in zip(chans, k[:3], strict=True)
        )
        self.head = eqx.nn.Linear(2 * width * 16, num_parents, key=k[3])

    def __call__(self, image: jax.Array) -> jax.Array:
        h = image[None]
        for conv in self.convs:  # 28 -> 14 -> 7 -> 4
            h = jax.nn.silu(conv(h))
        return self.head(h.reshape(-1))


def train_parent_regressor(
    images: ArrayLike,
    parents: ArrayLike,
    *,
    num_epochs: int = 4,
    batch_size: int = 128,
    learning_rate: float = 2e-3,
    width: int = 16,
    seed: int = 0,
) -> ParentRegressor:
    """A :class:`ParentRegressor` fitted by least squares to ``parents`` of ``images``.

    Parameters
    ----------
    images
        ``(N, 28, 28)`` floating pixels on ``[0, 1]``.
    parents
        ``(N, c)``, standardised as the image mechanism sees them.
    num_epochs, batch_size, learning_rate, width, seed
        Adam on minibatches (the last partial batch dropped: one compiled shape).

    Examples
    --------
    >>> x = jnp.zeros((64, 28, 28)).at[:32, 10:18, 10:18].set(1.0)
    >>> c = jnp.where(jnp.arange(64) < 32, 1.0, -1.0)[:, None]
    >>> net = train_parent_regressor(x, c, num_epochs=30, batch_size=32, width=4)
    >>> bool(jnp.abs(net(x[0])[0] - 1.0) < 0.3)
    True
    """
    x = jnp.asarray(images)
    c = jnp.asarray(parents)
    if x.ndim != 3 or x.shape[1:] != (28, 28) or not jnp.issubdtype(x.dtype, jnp.floating):
        raise DataError(
            "train_parent_regressor expects float images shaped (N, 28, 28); got "
            f"{x.dtype} {tuple(x.shape)}."
        )
    if c.ndim != 2 or c.shape[0] != x.shape[0]:
        raise DataError(
            f"train_parent_regressor expects parents shaped (N, c) with N = {x.shape[0]} "
            f"(the images); got {tuple(c.shape)}. Stack the parents as columns."
        )
    num_epochs = positive_int("num_epochs", num_epochs)
    batch_size = min(positive_int("batch_size", batch_size), int(x.shape[0]))
    net = ParentRegressor(int(c.shape[1]), jax.random.key(seed), width)
    opt = optax.adam(learning_rate)
    state = opt.init(eqx.filter(net, eqx.is_array))

    @eqx.filter_jit
    def step(net, state, xb, cb):
        def loss(m):
            return jnp.mean((jax.vmap(m)(xb) - cb) ** 2)

        g = eqx.filter_grad(loss)(net)
        upd, state = opt.update(g, state, eqx.filter(net, eqx.is_array))
        return eqx.apply_updates(net, upd), state

    rng = np.random.default_rng(seed)
    for _ in range(num_epochs):
        order = rng.permutation(int(x.shape[0]))
        for k in range(0, len(order) - batch_size + 1, batch_size):
            idx = order[k : k + batch_size]
            net, state = step(net, state, x[idx], c[idx])
    return net


class CounterfactualLoss(eqx.Module):
    """The counterfactual term of an image mechanism's training objective (module notes).

    Parameters
    ----------
    regressor
        A frozen ``image (28, 28) -> parents (c,)`` map, e.g. from
        :func:`train_parent_regressor`.
    weight
        ``> 0``: the per-image penalty is ``weight * |regressor(x') - c'|²``.

    Examples
    --------
    >>> loss = CounterfactualLoss(ParentRegressor(2, jax.random.key(0)), weight=10.0)
    >>> loss(jnp.zeros((3, 28, 28)), jnp.zeros((3, 2))).shape
    (3,)
    """

    regressor: Callable[[jax.Array], jax.Array]
    weight: float = eqx.field(static=True)
    # A digest of the regressor's weights, as static data: losses with regressors of one
    # shape then differ even under a cache that keys arrays by shape only
    # (``arguments_key``); ``fit``'s own epoch cache keys them by value as well.
    fingerprint: str = eqx.field(static=True)

    def __init__(self, regressor: Callable[[jax.Array], jax.Array], weight: float) -> None:
        if not callable(regressor):
            raise SettingsError(
                f"CounterfactualLoss needs a callable regressor (image -> parents); got "
                f"{type(regressor).__name__}. Use train_parent_regressor."
            )
        if not (np.isfinite(weight) and weight > 0):
            raise SettingsError(
                f"CounterfactualLoss weight must be a positive finite number; got {weight}."
            )
        self.regressor = regressor
        self.weight = float(weight)
        digest = hashlib.sha256()
        for leaf in jax.tree_util.tree_leaves(eqx.filter(regressor, eqx.is_array)):
            digest.update(np.asarray(leaf).tobytes())
        self.fingerprint = digest.hexdigest()[:16]

    def __call__(self, images: jax.Array, asked: jax.Array) -> jax.Array:
        """Per-image penalty of counterfactual ``images (..., 28, 28)`` asked to show
        parents ``asked (..., c)``."""
        regressor = jax.lax.stop_gradient(self.regressor)
        read = jnp.vectorize(regressor, signature="(h,w)->(c)")(images)
        return self.weight * jnp.sum((read - asked) ** 2, axis=-1)


def resample_parents(condition: jax.Array, key: jax.Array) -> jax.Array:
    """Each parent column of ``condition (n, c)`` permuted independently over units.

    Examples
    --------
    >>> c = jnp.arange(8.0).reshape(4, 2)
    >>> out = resample_parents(c, jax.random.key(0))
    >>> sorted(out[:, 0].tolist()) == c[:, 0].tolist(), out.shape
    (True, (4, 2))
    """
    flat = condition.reshape(-1, condition.shape[-1])
    keys = jax.random.split(key, flat.shape[-1])
    cols = [jax.random.permutation(k, flat[:, j]) for j, k in enumerate(keys)]
    return jnp.stack(cols, axis=-1).reshape(condition.shape)
