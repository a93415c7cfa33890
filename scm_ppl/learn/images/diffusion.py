"""A conditional diffusion model as an image mechanism, with DDIM inversion as its noise view.

Sources: the denoising objective of Ho, Jain & Abbeel, "Denoising Diffusion Probabilistic
Models" (NeurIPS 2020; ``L_simple``, noise prediction), the deterministic sampler and its
inversion of Song, Meng & Ermon, "Denoising Diffusion Implicit Models" (ICLR 2021, eq. 12
with sigma = 0, and its reversal), the cosine noise schedule of Nichol & Dhariwal (ICML
2021), and the use of DDIM inversion as abduction in diffusion SCMs (Sanchez &
Tsaftaris, "Diffusion Causal Models for Counterfactual Estimation", CLeaR 2022).

The mechanism is ``image = ddim(x_T, parents) + scale * r``: ``ddim`` runs the
deterministic sampler from the noise image ``x_T`` under the parents, and ``r`` is a pixel
residual. Its noise is ``u = [x_T, r]``, both standard normal, shaped ``(..., 1568)``.
Abduction inverts the sampler (``x_T`` by running the DDIM steps backwards from the image,
an approximation that gets closer with more steps and a better denoiser) and reads the
residual off exactly, ``r = (image - ddim(x_T, parents)) / scale``, so a null intervention
returns the image and a counterfactual keeps what the inversion left unexplained, as
:mod:`.vae`'s residual does. ``scale`` is a setting, not learned: it only shapes fresh
samples.

The site is fitted by the denoising objective, ``-1/2 ||eps - eps_hat(x_s, s, parents)||^2``
per image at one time ``s ~ Uniform(0, 1)`` and noise ``eps`` per fitting step: a bound on
the log density up to weights and constants (Ho et al., §3.4), not the log density itself;
:meth:`ConditionalDiffusionImage.log_prob` says so. Pixels on ``[0, 1]`` are centred to
``[-1, 1]`` inside.
"""

from __future__ import annotations

import functools
import itertools
import math
from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
import numpyro
import numpyro.distributions as dist
from jax.typing import ArrayLike
from numpyro.contrib.module import eqx_module
from numpyro.distributions import constraints

from scm_ppl.core.noise import NoiseView, register_noise_view
from scm_ppl.core.validate import positive_int
from scm_ppl.errors import DataError, SettingsError
from scm_ppl.learn.images.vae import IMAGE_SIZE, _check_event, as_parents, sample_image

__all__ = ["ConditionalDiffusionImage", "Denoiser", "conditional_diffusion", "noise_level"]

PIXELS = IMAGE_SIZE * IMAGE_SIZE
_EMBED = 16  # sinusoidal features of the diffusion time
_S_MAX = 0.995  # the cosine schedule's alpha_bar is 0 at s = 1: x_0 would not be readable
# The embedding's output is 10 w scales, then 10 w shifts; the six FiLM'd layers take 9 w of
# each, w spare: a layout kept so that the fits the benchmark reports reproduce.
_FILM_SLOTS = 10


def noise_level(s: ArrayLike) -> jax.Array:
    """``alpha_bar(s)``, the share of signal power left at diffusion time ``s`` in
    ``[0, 1]`` (Nichol & Dhariwal's cosine schedule, offset 0.008).

    Examples
    --------
    >>> [round(float(noise_level(s)), 4) for s in (0.0, 0.5, 0.995)]
    [1.0, 0.4938, 0.0001]
    """
    s = jnp.asarray(s)
    f = lambda v: jnp.cos((v + 0.008) / 1.008 * jnp.pi / 2) ** 2
    return f(s) / f(0.0)


def _time_features(s: jax.Array) -> jax.Array:
    freqs = jnp.exp(jnp.linspace(0.0, math.log(1000.0), _EMBED // 2))
    return jnp.concatenate([jnp.sin(s * freqs), jnp.cos(s * freqs)])


class Denoiser(eqx.Module):
    """``(x_s (28, 28), s, condition (c,)) -> eps_hat (28, 28)``: a small U-Net
    (28 -> 14 -> 7 -> 14 -> 28, skip connections) whose feature maps are scaled and
    shifted by an embedding of the time and the parents (FiLM, Perez et al., AAAI 2018),
    so the parents reach every layer."""

    stem: eqx.nn.Conv2d
    down1: eqx.nn.Conv2d
    down2: eqx.nn.Conv2d
    mid: eqx.nn.Conv2d
    up1: eqx.nn.ConvTranspose2d
    merge1: eqx.nn.Conv2d
    up2: eqx.nn.ConvTranspose2d
    out: eqx.nn.Conv2d
    embed: eqx.nn.MLP
    width: int = eqx.field(static=True)

    def __init__(self, cond_dim: int, width: int, key: jax.Array) -> None:
        w = width
        ks = jax.random.split(key, 9)
        self.stem = eqx.nn.Conv2d(1 + cond_dim, w, 3, padding=1, key=ks[0])
        self.down1 = eqx.nn.Conv2d(w, 2 * w, 4, stride=2, padding=1, key=ks[1])
        self.down2 = eqx.nn.Conv2d(2 * w, 2 * w, 4, stride=2, padding=1, key=ks[2])
        self.mid = eqx.nn.Conv2d(2 * w, 2 * w, 3, padding=1, key=ks[3])
        self.up1 = eqx.nn.ConvTranspose2d(2 * w, 2 * w, 4, stride=2, padding=1, key=ks[4])
        self.merge1 = eqx.nn.Conv2d(4 * w, w, 3, padding=1, key=ks[5])
        self.up2 = eqx.nn.ConvTranspose2d(w, w, 4, stride=2, padding=1, key=ks[6])
        self.out = eqx.nn.Conv2d(2 * w, 1, 3, padding=1, key=ks[7])
        # One (scale, shift) pair per channel of stem, down1, down2, mid, merge1, up2.
        out = 2 * _FILM_SLOTS * w
        self.embed = eqx.nn.MLP(_EMBED + cond_dim, out, 4 * w, 1, jax.nn.silu, key=ks[8])
        self.width = width

    def __call__(self, x: jax.Array, s: jax.Array, condition: jax.Array) -> jax.Array:
        w = self.width
        g = self.embed(jnp.concatenate([_time_features(s), condition]))
        sizes = (w, 2 * w, 2 * w, 2 * w, w, w)
        cuts = [0, *itertools.accumulate(sizes)]

        def film(h: jax.Array, k: int) -> jax.Array:
            a, b = cuts[k], cuts[k + 1]
            scale, shift = g[a:b], g[_FILM_SLOTS * w + a : _FILM_SLOTS * w + b]
            return jax.nn.silu(h * (1.0 + scale[:, None, None]) + shift[:, None, None])

        planes = jnp.broadcast_to(condition[:, None, None], (condition.shape[0], *x.shape))
        h0 = film(self.stem(jnp.concatenate([x[None], planes], axis=0)), 0)  # w, 28
        h1 = film(self.down1(h0), 1)  # 2w, 14
        h2 = film(self.down2(h1), 2)  # 2w, 7
        h2 = film(self.mid(h2), 3) + h2
        u1 = self.up1(h2)  # 2w, 14
        u1 = film(self.merge1(jnp.concatenate([u1, h1], axis=0)), 4)  # w, 14
        u0 = film(self.up2(u1), 5)  # w, 28
        return self.out(jnp.concatenate([u0, h0], axis=0))[0]


class ConditionalDiffusionImage(dist.Distribution):
    """The law of an image given its parents under a conditional diffusion mechanism.

    Parameters
    ----------
    denoiser
        A :class:`Denoiser` (or a callable with its signature), usually the program's
        parameter through ``eqx_module``.
    condition
        The parents, ``(..., c)``; the leading axes are the batch shape.
    scale
        Standard deviation of the pixel residual (pixels on ``[0, 1]``).
    num_steps
        DDIM steps of the sampler and of its inversion.
    training_key
        A PRNG key for the time and noise of :meth:`log_prob`'s denoising objective
        (``None``: a fixed key, so the objective is a deterministic function).

    Examples
    --------
    >>> net = Denoiser(2, 4, jax.random.key(0))
    >>> d = ConditionalDiffusionImage(net, jnp.zeros((3, 2)), 0.01, num_steps=4)
    >>> x = jnp.clip(d.sample(jax.random.key(1)), 0.0, 1.0)
    >>> d.batch_shape, d.event_shape, d.to_noise(x).shape
    ((3,), (28, 28), (3, 1568))
    >>> bool(jnp.allclose(d.from_noise(d.to_noise(x)), x, atol=1e-5))
    True
    """

    arg_constraints: dict[str, Any] = {}  # noqa: RUF012  (numpyro's class-level convention)
    support = constraints.independent(constraints.unit_interval, 2)  # type: ignore[assignment]
    pytree_data_fields = ("denoiser", "condition", "scale", "training_key")
    pytree_aux_fields = ("num_steps",)

    def __init__(
        self,
        denoiser: Any,
        condition: ArrayLike,
        scale: ArrayLike,
        num_steps: int = 50,
        training_key: jax.Array | None = None,
        *,
        validate_args: bool | None = None,
    ) -> None:
        condition = as_parents(condition, "ConditionalDiffusionImage")
        self.denoiser = denoiser
        self.condition = condition
        self.scale = jnp.asarray(scale)
        self.num_steps = positive_int("num_steps", num_steps)
        self.training_key = training_key
        super().__init__(
            tuple(condition.shape[:-1]), (IMAGE_SIZE, IMAGE_SIZE), validate_args=validate_args
        )

    def generate(self, x_T: ArrayLike) -> jax.Array:
        """The DDIM sampler: images ``(..., 28, 28)`` (on ``[0, 1]`` up to the model's
        error) from noise images ``x_T`` under the parents."""
        return _ddim(self.denoiser, jnp.asarray(x_T), self.condition, self.num_steps, False)

    def invert(self, x: ArrayLike) -> jax.Array:
        """DDIM inversion: the noise images ``x_T`` whose :meth:`generate` is close to
        the images ``x`` (pixels on ``[0, 1]``) under the parents."""
        x = jnp.asarray(x)
        _check_event(x, "ConditionalDiffusionImage.invert")
        return _ddim(self.denoiser, x, self.condition, self.num_steps, True)

    def to_noise(self, x: ArrayLike) -> jax.Array:
        """Abduction: ``[x_T, r]`` shaped ``(..., 1568)``."""
        x = jnp.asarray(x)
        x_T = self.invert(x)
        r = (x - self.generate(x_T)) / self.scale
        flat = lambda a: a.reshape(*a.shape[:-2], PIXELS)
        return jnp.concatenate([flat(x_T), flat(r)], axis=-1)

    def from_noise(self, u: ArrayLike) -> jax.Array:
        """The image ``ddim(x_T, parents) + scale * r`` of noise ``u = [x_T, r]``."""
        u = jnp.asarray(u)
        if u.shape[-1] != 2 * PIXELS:
            raise DataError(
                f"A diffusion image's noise is [x_T, r], {2 * PIXELS} numbers; got a last axis "
                f"of {u.shape[-1]}."
            )
        image = lambda a: a.reshape(*a.shape[:-1], IMAGE_SIZE, IMAGE_SIZE)
        return self.generate(image(u[..., :PIXELS])) + self.scale * image(u[..., PIXELS:])

    def sample(self, key: jax.Array | None, sample_shape: tuple[int, ...] = ()) -> jax.Array:
        if key is None:
            raise DataError("ConditionalDiffusionImage.sample needs a JAX PRNG key.")
        shape = (*sample_shape, *self.batch_shape, 2 * PIXELS)
        return self.from_noise(jax.random.normal(key, shape))

    def log_prob(self, value: ArrayLike, intermediates: Any = None) -> jax.Array:
        """The denoising objective ``-1/2 ||eps - eps_hat||^2`` of each image at one
        diffusion time and noise draw (from ``training_key``): what ``fit`` maximises. It
        bounds the log density up to weights and constants; it is not the log density."""
        del intermediates  # numpyro's protocol; unused
        x = 2.0 * jnp.asarray(value) - 1.0
        key = jax.random.key(0) if self.training_key is None else self.training_key
        k_time, k_noise = jax.random.split(key)
        batch = x.shape[:-2]
        s = jax.random.uniform(k_time, batch, maxval=_S_MAX)
        eps = jax.random.normal(k_noise, x.shape)
        a = noise_level(s)[..., None, None]
        x_s = jnp.sqrt(a) * x + jnp.sqrt(1.0 - a) * eps
        eps_hat = _predict_noise(
            self.denoiser,
            x_s,
            s,
            jnp.broadcast_to(self.condition, (*batch, self.condition.shape[-1])),
        )
        return -0.5 * jnp.sum((eps - eps_hat) ** 2, axis=(-2, -1))


@eqx.filter_jit
def _predict_noise(denoiser: Any, x: jax.Array, s: jax.Array, condition: jax.Array) -> jax.Array:
    return jnp.vectorize(denoiser, signature="(h,w),(),(c)->(h,w)")(x, s, condition)


@eqx.filter_jit  # steps and invert are Python values: static
def _ddim(denoiser: Any, x: jax.Array, condition: jax.Array, steps: int, invert: bool) -> jax.Array:
    """Deterministic DDIM steps (Song et al., eq. 12, sigma = 0) between pixels (s = 0)
    and noise (s = _S_MAX): towards the noise when ``invert``, else back to pixels.
    Inversion evaluates the denoiser at the step's start, the usual approximation."""
    times = jnp.linspace(0.0, _S_MAX, steps + 1)
    pairs = jnp.stack([times[:-1], times[1:]], axis=-1)
    if not invert:
        pairs = pairs[::-1, ::-1]
    batch = jnp.broadcast_shapes(x.shape[:-2], condition.shape[:-1])
    h = jnp.broadcast_to(2.0 * x - 1.0 if invert else x, (*batch, *x.shape[-2:]))
    cond = jnp.broadcast_to(condition, (*batch, condition.shape[-1]))

    def step(h: jax.Array, pair: jax.Array) -> tuple[jax.Array, None]:
        s_from, s_to = pair[0], pair[1]
        a_from, a_to = noise_level(s_from), noise_level(s_to)
        eps = _predict_noise(denoiser, h, jnp.broadcast_to(s_from, batch), cond)
        x0 = (h - jnp.sqrt(1.0 - a_from) * eps) / jnp.sqrt(a_from)
        return jnp.sqrt(a_to) * x0 + jnp.sqrt(1.0 - a_to) * eps, None

    h, _ = jax.lax.scan(step, h, pairs)
    return h if invert else (h + 1.0) / 2.0


@register_noise_view(ConditionalDiffusionImage)
def _diffusion_view(d: ConditionalDiffusionImage) -> NoiseView:
    zeros = jnp.zeros((*d.batch_shape, 2 * PIXELS), jnp.result_type(float))
    return NoiseView(dist.Normal(zeros, 1.0).to_event(1), d.from_noise, d.to_noise)


@functools.lru_cache(maxsize=16)
def _net(cond_dim: int, width: int, seed: int) -> eqx.Module:
    with jax.ensure_compile_time_eval():
        return Denoiser(cond_dim, width, jax.random.key(seed))


def conditional_diffusion(
    name: str,
    condition: ArrayLike,
    *,
    width: int = 16,
    num_steps: int = 50,
    scale: float = 0.01,
    key: int = 0,
) -> jax.Array:
    """A conditional diffusion image mechanism as the sample site ``name`` (inside a
    plate), with DDIM inversion as its noise view (the module's notes).

    Learned parameters: ``"<name>.denoiser$params"``. Abduction inverts the DDIM sampler
    and carries the pixel residual, so a null intervention returns the image.

    Parameters
    ----------
    name
        The site's name.
    condition
        Parents, ``(n, c)``, roughly standardised.
    width
        Channels of the denoiser's first convolution.
    num_steps
        DDIM steps of sampling and of inversion (each a pass of the denoiser: a query
        that abducts and predicts costs ``3 * num_steps`` passes per image).
    scale
        Standard deviation of the pixel residual of fresh samples (pixels on ``[0, 1]``).
    key
        Seed of the initial weights.

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
    ...         conditional_diffusion("image", t[:, None], width=4, num_steps=3)
    >>> tr = handlers.trace(handlers.seed(model, 0)).get_trace()
    >>> tr["image"]["value"].shape, sorted(k for k in tr if "$" in k)
    ((2, 28, 28), ['image.denoiser$params'])
    """
    positive_int("width", width)
    positive_int("num_steps", num_steps)
    if not (isinstance(scale, (int, float)) and math.isfinite(scale) and scale > 0):
        raise SettingsError(
            f"conditional_diffusion's scale is the residual's standard deviation, a positive "
            f"number; got {scale!r}."
        )
    condition = as_parents(condition, "conditional_diffusion")
    net = eqx_module(f"{name}.denoiser", _net(int(condition.shape[-1]), width, key))
    law = ConditionalDiffusionImage(net, condition, scale, num_steps, numpyro.prng_key())
    return sample_image(name, law)
