"""A conditional VAE as an image mechanism: ``image = decoder(z, parents) + scale * r``.

Source: the conditional VAE mechanism of Pawlowski, Castro & Glocker, "Deep Structural
Causal Models for Tractable Counterfactual Inference" (NeurIPS 2020, §3.3): the
exogenous noise of the image is the latent code ``z ~ Normal(0, I)`` *and* the pixel
residual ``r ~ Normal(0, I)``. Abduction is amortised: ``z`` is the encoder's mean given
the image and its parents, and the residual is read off exactly,
``r = (image - decoder(z, parents)) / scale``, so the noise view's ``forward`` returns the
image under the factual parents (a null intervention is the identity) and a
counterfactual keeps the residual the factual image left unexplained.

The site is fitted by the evidence lower bound (one reparameterised draw of ``z`` per
image, analytic KL), evaluated by the distribution's ``log_prob``; ``fit`` minimises its
negative with minibatches like any other site. Pixel values live on ``[0, 1]``.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
import numpyro
import numpyro.distributions as dist
from jax.core import Tracer
from jax.typing import ArrayLike
from numpyro.contrib.module import eqx_module
from numpyro.distributions import constraints
from numpyro.primitives import Messenger

from scm_ppl.core.modes import is_fitting
from scm_ppl.core.noise import NoiseView, register_noise_view
from scm_ppl.core.validate import check_method
from scm_ppl.errors import DataError, InterventionError, SettingsError
from scm_ppl.learn.images.counterfactual_training import resample_parents
from scm_ppl.learn.images.stroke import StrokeDecoder

__all__ = [
    "ConditionalVAEImage",
    "ConvDecoder",
    "ConvEncoder",
    "check_image_value",
    "check_images",
    "conditional_vae",
    "sample_image",
]

IMAGE_SIZE = 28
DECODERS = ("conv", "stroke")
"""The decoders :func:`conditional_vae` offers."""


class ConvEncoder(eqx.Module):
    """``(image (28, 28), condition (c,)) -> (mean (k,), log_sd (k,))``: two stride-2
    convolutions (28 -> 14 -> 7) on the image stacked with its parents as constant
    channels, then a linear head."""

    conv1: eqx.nn.Conv2d
    conv2: eqx.nn.Conv2d
    head: eqx.nn.Linear
    latent_dim: int = eqx.field(static=True)

    def __init__(self, cond_dim: int, latent_dim: int, width: int, key: jax.Array) -> None:
        k1, k2, k3 = jax.random.split(key, 3)
        self.conv1 = eqx.nn.Conv2d(1 + cond_dim, width, 4, stride=2, padding=1, key=k1)
        self.conv2 = eqx.nn.Conv2d(width, 2 * width, 4, stride=2, padding=1, key=k2)
        self.head = eqx.nn.Linear(2 * width * 49, 2 * latent_dim, key=k3)
        self.latent_dim = latent_dim

    def __call__(self, image: jax.Array, condition: jax.Array) -> tuple[jax.Array, jax.Array]:
        planes = jnp.broadcast_to(condition[:, None, None], (condition.shape[0], *image.shape))
        h = jnp.concatenate([image[None], planes], axis=0)
        h = jax.nn.silu(self.conv2(jax.nn.silu(self.conv1(h))))
        out = self.head(h.reshape(-1))
        return out[: self.latent_dim], jnp.clip(out[self.latent_dim :], -8.0, 4.0)


class ConvDecoder(eqx.Module):
    """``(z (k,), condition (c,)) -> mean image (28, 28)`` in ``(0, 1)``: a linear map
    to 7x7 feature maps, two stride-2 transposed convolutions (7 -> 14 -> 28); the
    parents enter at the input and again as constant channels at 14x14. With ``film``,
    they also scale and shift every feature map at 7x7 and 14x14 (FiLM, Perez et al.,
    AAAI 2018): a stronger conditioning than the input alone."""

    lin: eqx.nn.Linear
    up1: eqx.nn.ConvTranspose2d
    up2: eqx.nn.ConvTranspose2d
    film: eqx.nn.Linear | None
    width: int = eqx.field(static=True)

    def __init__(
        self, cond_dim: int, latent_dim: int, width: int, key: jax.Array, film: bool = False
    ) -> None:
        k1, k2, k3 = jax.random.split(key, 3)
        self.lin = eqx.nn.Linear(latent_dim + cond_dim, 2 * width * 49, key=k1)
        self.up1 = eqx.nn.ConvTranspose2d(2 * width, width, 4, stride=2, padding=1, key=k2)
        self.up2 = eqx.nn.ConvTranspose2d(width + cond_dim, 1, 4, stride=2, padding=1, key=k3)
        # Its own key (not a fourth split): decoders without FiLM keep their weights.
        film_key = jax.random.fold_in(key, 1)
        self.film = eqx.nn.Linear(cond_dim, 6 * width, key=film_key) if film else None
        self.width = width

    def __call__(self, z: jax.Array, condition: jax.Array) -> jax.Array:
        w = self.width
        h = self.lin(jnp.concatenate([z, condition])).reshape(2 * w, 7, 7)
        g = None if self.film is None else self.film(condition)[:, None, None]
        if g is not None:
            h = h * (1.0 + g[: 2 * w]) + g[2 * w : 4 * w]
        h = self.up1(jax.nn.silu(h))
        if g is not None:
            h = h * (1.0 + g[4 * w : 5 * w]) + g[5 * w :]
        h = jax.nn.silu(h)
        planes = jnp.broadcast_to(condition[:, None, None], (condition.shape[0], *h.shape[1:]))
        h = self.up2(jnp.concatenate([h, planes], axis=0))
        return jax.nn.sigmoid(h[0])


def as_parents(condition: ArrayLike, who: str) -> jax.Array:
    """``condition`` as an array of parents ``(..., c)``, or a :class:`DataError` naming
    ``who`` asked and how to stack scalar parents."""
    condition = jnp.asarray(condition)
    if condition.ndim < 1:
        raise DataError(
            f"{who} expects parents shaped (n, c); got shape {condition.shape}. Stack the "
            "parents on a last axis, e.g. t[:, None]."
        )
    return condition


def _check_event(x: jax.Array, what: str) -> None:
    if x.ndim < 2 or tuple(x.shape[-2:]) != (IMAGE_SIZE, IMAGE_SIZE):
        raise DataError(
            f"{what} expects images shaped (..., {IMAGE_SIZE}, {IMAGE_SIZE}); got shape "
            f"{tuple(x.shape)}."
        )
    if not jnp.issubdtype(x.dtype, jnp.floating):
        raise DataError(
            f"{what} expects floating-point pixels on [0, 1]; got dtype {x.dtype}. Convert "
            "with images.astype('float32') / 255."
        )


class ConditionalVAEImage(dist.Distribution):
    """The law of an image given its parents under a conditional VAE mechanism.

    Parameters
    ----------
    encoder, decoder
        A :class:`ConvEncoder` and :class:`ConvDecoder` (or callables with their
        signatures), usually the program's parameters through ``eqx_module``.
    condition
        The parents, ``(..., c)``; the leading axes are the batch shape.
    scale
        Standard deviation of the pixel residual (a scalar or ``(28, 28)``).
    eps
        Standard normal draws ``(..., k)`` for the reparameterised ELBO in
        :meth:`log_prob`; ``None`` evaluates the bound at the encoder's mean.
    cf_loss, cf_condition
        Optional counterfactual training (:mod:`.counterfactual_training`): with ``eps``,
        :meth:`log_prob` subtracts ``cf_loss(x', cf_condition)``, ``x'`` the
        counterfactual of each image under parents ``cf_condition``.

    Examples
    --------
    >>> enc = ConvEncoder(2, 4, 4, jax.random.key(0))
    >>> dec = ConvDecoder(2, 4, 4, jax.random.key(1))
    >>> d = ConditionalVAEImage(enc, dec, jnp.zeros((3, 2)), 0.1)
    >>> x = d.sample(jax.random.key(2))
    >>> d.batch_shape, d.event_shape, d.to_noise(x).shape
    ((3,), (28, 28), (3, 788))
    >>> bool(jnp.allclose(d.from_noise(d.to_noise(x)), x, atol=1e-5))
    True
    """

    arg_constraints: dict[str, Any] = {}  # noqa: RUF012  (numpyro's class-level convention)
    # Observed images must be pixels on [0, 1] (fit checks its data against supports); a
    # drawn image may leave it by its Gaussian residual.
    support = constraints.independent(constraints.unit_interval, 2)  # type: ignore[assignment]
    pytree_data_fields = (
        "encoder",
        "decoder",
        "condition",
        "scale",
        "eps",
        "cf_loss",
        "cf_condition",
    )

    def __init__(
        self,
        encoder: Callable[..., tuple[jax.Array, jax.Array]],
        decoder: Callable[..., jax.Array],
        condition: ArrayLike,
        scale: ArrayLike,
        eps: ArrayLike | None = None,
        cf_loss: Callable[[jax.Array, jax.Array], jax.Array] | None = None,
        cf_condition: ArrayLike | None = None,
        *,
        validate_args: bool | None = None,
    ) -> None:
        condition = as_parents(condition, "ConditionalVAEImage")
        self.encoder, self.decoder = encoder, decoder
        self.condition = condition
        self.scale = jnp.asarray(scale)
        self.eps = None if eps is None else jnp.asarray(eps)
        self.cf_loss = cf_loss
        self.cf_condition = None if cf_condition is None else jnp.asarray(cf_condition)
        super().__init__(
            tuple(condition.shape[:-1]), (IMAGE_SIZE, IMAGE_SIZE), validate_args=validate_args
        )

    @property
    def latent_dim(self) -> int:
        """Size of the latent code ``z``."""
        return int(getattr(self.encoder, "latent_dim", 0)) or int(self.eps.shape[-1])  # type: ignore[union-attr]

    def encode(self, x: ArrayLike) -> tuple[jax.Array, jax.Array]:
        """The encoder's ``(mean, log_sd)`` of ``z`` given images ``(..., 28, 28)``."""
        x = jnp.asarray(x)
        _check_event(x, "ConditionalVAEImage.encode")
        return _encode(self.encoder, x, self.condition)

    def decode(self, z: ArrayLike) -> jax.Array:
        """Mean images ``(..., 28, 28)`` of latent codes ``(..., k)``."""
        return _decode(self.decoder, jnp.asarray(z), self.condition)

    def to_noise(self, x: ArrayLike) -> jax.Array:
        """Amortised abduction: ``[z, r]`` shaped ``(..., k + 784)``."""
        x = jnp.asarray(x)
        z, _ = self.encode(x)
        r = (x - self.decode(z)) / self.scale
        return jnp.concatenate([z, r.reshape(*r.shape[:-2], -1)], axis=-1)

    def from_noise(self, u: ArrayLike) -> jax.Array:
        """The image ``decoder(z, parents) + scale * r`` of noise ``u = [z, r]``."""
        u = jnp.asarray(u)
        k = u.shape[-1] - IMAGE_SIZE * IMAGE_SIZE
        r = u[..., k:].reshape(*u.shape[:-1], IMAGE_SIZE, IMAGE_SIZE)
        return self.decode(u[..., :k]) + self.scale * r

    def sample(self, key: jax.Array | None, sample_shape: tuple[int, ...] = ()) -> jax.Array:
        if key is None:
            raise DataError("ConditionalVAEImage.sample needs a JAX PRNG key.")
        shape = (*sample_shape, *self.batch_shape)
        k = self.latent_dim
        u = jax.random.normal(key, (*shape, k + IMAGE_SIZE * IMAGE_SIZE))
        return self.from_noise(u)

    def log_prob(self, value: ArrayLike, intermediates: Any = None) -> jax.Array:
        """The evidence lower bound of ``log p(value | parents)`` (one draw, analytic KL),
        less the counterfactual term while training with ``cf_loss`` and the decoder's
        ``training_penalty`` (if it has one) while training."""
        del intermediates  # numpyro's protocol; unused
        x = jnp.asarray(value)
        mean, log_sd = self.encode(x)
        z = mean if self.eps is None else mean + jnp.exp(log_sd) * self.eps
        decoded = self.decode(z)
        rec = dist.Normal(decoded, self.scale).log_prob(x).sum(axis=(-2, -1))
        kl = 0.5 * jnp.sum(jnp.exp(2 * log_sd) + mean**2 - 1.0 - 2 * log_sd, axis=-1)
        charge = getattr(self.decoder, "training_penalty", None)
        if charge is not None and self.eps is not None and is_fitting():  # fit's objective only
            rec = rec - jnp.vectorize(charge, signature="(k)->()")(z)
        if self.cf_loss is None or self.cf_condition is None or self.eps is None:
            return rec - kl
        # The image a counterfactual query returns: the residual carried over.
        moved = _decode(self.decoder, z, self.cf_condition) - decoded
        return rec - kl - self.cf_loss(jnp.clip(x + moved, 0.0, 1.0), self.cf_condition)


# Jitted so that an eager call (a trace outside ``jit``) compiles once per network and
# shape instead of once per primitive; inside a traced program these are inlined.


@eqx.filter_jit
def _encode(encoder: Any, x: jax.Array, condition: jax.Array) -> tuple[jax.Array, jax.Array]:
    return jnp.vectorize(encoder, signature="(h,w),(c)->(k),(k)")(x, condition)


@eqx.filter_jit
def _decode(decoder: Any, z: jax.Array, condition: jax.Array) -> jax.Array:
    return jnp.vectorize(decoder, signature="(k),(c)->(h,w)")(z, condition)


@register_noise_view(ConditionalVAEImage)
def _vae_view(d: ConditionalVAEImage) -> NoiseView:
    size = d.latent_dim + IMAGE_SIZE * IMAGE_SIZE
    zeros = jnp.zeros((*d.batch_shape, size), jnp.result_type(float))
    return NoiseView(dist.Normal(zeros, 1.0).to_event(1), d.from_noise, d.to_noise)


@functools.lru_cache(maxsize=16)
def _nets(
    cond_dim: int, latent_dim: int, width: int, seed: int, film: bool, decoder: str
) -> tuple[eqx.Module, eqx.Module]:
    with jax.ensure_compile_time_eval():
        k1, k2 = jax.random.split(jax.random.key(seed))
        dec = (
            StrokeDecoder(cond_dim, latent_dim, width, k2)
            if decoder == "stroke"
            else ConvDecoder(cond_dim, latent_dim, width, k2, film)
        )
        return ConvEncoder(cond_dim, latent_dim, width, k1), dec


def check_images(images: Any, name: str = "image") -> None:
    """Raise :class:`DataError` unless ``images`` are float pixels ``(..., 28, 28)`` on
    ``[0, 1]`` (the declared range of an image site; divide 0-255 images by 255).

    Examples
    --------
    >>> check_images(jnp.zeros((2, 28, 28)))
    >>> check_images(jnp.full((2, 28, 28), 255.0))  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    scm_ppl.errors.DataError: Images for 'image' must lie in [0, 1]; got values in [255.0, ...
    """
    x = jnp.asarray(images)
    _check_event(x, f"The image site {name!r}")
    low, high = float(jnp.min(x)), float(jnp.max(x))
    if not (low >= 0.0 and high <= 1.0):
        raise DataError(
            f"Images for {name!r} must lie in [0, 1]; got values in [{low}, {high}]. "
            "Divide 0-255 images by 255."
        )


class _check_observed(Messenger):
    """Checks the range of image site ``name`` where it is observed and concrete. Drawn
    images are not checked: a Gaussian residual may leave ``[0, 1]``, and a prior draw
    (``fit`` runs the program once to find its parameters) is no user input. The site's
    message is remembered before outer handlers rename it (a world's prefix, ``do``)."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.msg: Any = None
        super().__init__()

    def process_message(self, msg: Any) -> None:
        if msg["type"] == "sample" and msg["name"] == self.name:
            self.msg = msg

    def postprocess_message(self, msg: Any) -> None:
        if msg is not self.msg:
            return
        value = msg.get("value")
        if msg.get("is_observed") and not isinstance(value, Tracer):
            check_image_value(value, self.name)  # a non-image first: the clearer error
            check_images(value, self.name)


def sample_image(name: str, law: dist.Distribution) -> jax.Array:
    """``numpyro.sample(name, law)`` for an image site: any value (an intervention's too)
    must be shaped like images, and an observed concrete value must lie in ``[0, 1]``.

    Examples
    --------
    >>> from numpyro import handlers
    >>> enc, dec = ConvEncoder(1, 2, 2, jax.random.key(0)), ConvDecoder(1, 2, 2, jax.random.key(1))
    >>> law = ConditionalVAEImage(enc, dec, jnp.zeros((1, 1)), 0.1)
    >>> ones = {"im": jnp.ones((1, 28, 28))}
    >>> observed = handlers.condition(lambda: sample_image("im", law), ones)
    >>> handlers.seed(observed, 0)().shape
    (1, 28, 28)
    """
    with _check_observed(name):
        value = numpyro.sample(name, law)
    check_image_value(value, name)  # whatever set it, under whatever name
    return jnp.asarray(value)


def check_image_value(value: Any, name: str) -> None:
    """Raise :class:`InterventionError` unless ``value`` is shaped like images of the site
    (an intervention on an image site must set an image)."""
    shape = tuple(jnp.shape(value))
    if len(shape) < 2 or shape[-2:] != (IMAGE_SIZE, IMAGE_SIZE):
        raise InterventionError(
            f"The image site {name!r} holds images shaped (..., {IMAGE_SIZE}, {IMAGE_SIZE}); "
            f"its value (an intervention?) has shape {shape}. Intervene on the image's "
            "parents instead, or set whole images."
        )


def conditional_vae(
    name: str,
    condition: ArrayLike,
    *,
    latent_dim: int = 16,
    width: int = 16,
    scale: float = 0.1,
    key: int = 0,
    counterfactual_loss: Callable[[jax.Array, jax.Array], jax.Array] | None = None,
    film: bool = False,
    decoder: str = "conv",
) -> jax.Array:
    """A conditional VAE image mechanism as the sample site ``name`` (inside a plate).

    Learned parameters: ``"<name>.encoder$params"``, ``"<name>.decoder$params"`` and the
    residual scale ``"<name>.scale"``. The noise view (``[z, r]``) inverts exactly:
    abduction is amortised by the encoder, the residual carried over.

    Parameters
    ----------
    name
        The site's name.
    condition
        Parents, ``(n, c)``, roughly standardised.
    latent_dim, width
        Size of the latent code and channels of the first convolution.
    scale
        Initial residual standard deviation (pixels on ``[0, 1]``).
    key
        Seed of the initial weights.
    counterfactual_loss
        For training only: a
        :class:`~scm_ppl.learn.images.counterfactual_training.CounterfactualLoss` added
        to the objective (parents resampled within the minibatch; the module's notes).
        Leave it out in queries.
    film
        Condition every decoder feature map on the parents (:class:`ConvDecoder`).
    decoder
        ``"conv"`` (:class:`ConvDecoder`, any image) or ``"stroke"``
        (:class:`~scm_ppl.learn.images.stroke.StrokeDecoder`: the latent draws a
        skeleton, the parents set one pen width and ink level per image; for stroke
        images whose parents are global stroke attributes).

    Returns
    -------
    jax.Array
        Images ``(n, 28, 28)``.

    Examples
    --------
    >>> from numpyro import handlers
    >>> def model(n=2):
    ...     with numpyro.plate("unit", n):
    ...         t = numpyro.sample("t", dist.Normal(0.0, 1.0))
    ...         conditional_vae("image", t[:, None], latent_dim=4, width=4)
    >>> tr = handlers.trace(handlers.seed(model, 0)).get_trace()
    >>> tr["image"]["value"].shape, sorted(k for k in tr if "$" in k)
    ((2, 28, 28), ['image.decoder$params', 'image.encoder$params'])
    """
    check_method(decoder, DECODERS, what="VAE decoder")
    if film and decoder != "conv":
        raise SettingsError(
            f"film conditions the layers of the 'conv' decoder; got decoder={decoder!r}, "
            "whose parents act only through its pen. Drop film or use decoder='conv'."
        )
    condition = jnp.asarray(condition)
    enc0, dec0 = _nets(int(condition.shape[-1]), latent_dim, width, key, film, decoder)
    enc = eqx_module(f"{name}.encoder", enc0)
    dec = eqx_module(f"{name}.decoder", dec0)
    sd = numpyro.param(f"{name}.scale", jnp.asarray(scale), constraint=constraints.positive)
    rng = numpyro.prng_key()
    eps, cf_condition = None, None
    if rng is not None:
        if counterfactual_loss is not None:
            rng, cf_key = jax.random.split(rng)
            cf_condition = resample_parents(condition, cf_key)
        eps = jax.random.normal(rng, (*condition.shape[:-1], latent_dim))
    law = ConditionalVAEImage(enc, dec, condition, sd, eps, counterfactual_loss, cf_condition)
    return sample_image(name, law)
