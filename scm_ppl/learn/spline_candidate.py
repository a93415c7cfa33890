"""A spline-noise candidate for continuous nodes of :func:`~scm_ppl.learn.scm_from_graph`
(``"spline"``): the linear location of ``"linear"`` plus a noise whose law is learned,

    z = x @ weight + bias + scale * T(u),    u ~ Normal(0, 1),

on the standardised target ``z``, with ``T`` a monotone rational-quadratic spline
(Durkan et al. 2019, "Neural spline flows") on ``[-INTERVAL, INTERVAL]`` with
:data:`BINS` bins, the identity outside (slopes 1 at both ends, so the tails are Gaussian
and the map is smooth). A skewed or bimodal noise, which a Normal misreads as one wide
bump, is one such ``T``.

Why a 1-D spline on a linear location and not a FlowJAX conditional flow: the noise stays
additive, so the location keeps the meaning of ``"linear"`` (``inhibit`` and
``do_mechanism`` act on ``weight`` as there), its parameters are a few plain arrays
(``numpyro.param`` sites ``"<node>.spline_widths"``, ...) that :func:`~scm_ppl.fit`
refines and the program prints, and training costs one Adam loop over a 3 x ``BINS``
parameter spline (the flows of :mod:`scm_ppl.learn.flows` train a conditioner network
per layer). The price: the noise law does not change with the parents (a location–scale
effect is ``"mlp-loc-scale"``'s job). ``T`` has a closed-form inverse, so the noise view
abducts exactly: ``u = T^{-1}((z - loc) / scale)``.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import numpyro.distributions as dist
from jax.typing import ArrayLike
from numpyro.distributions import constraints

from scm_ppl.core.noise import NoiseView, register_noise_view
from scm_ppl.learn.flexible import L2, train_adam

__all__ = ["BINS", "INTERVAL", "SplineNoise", "fit_spline", "row_loglik_spline", "spline"]

BINS = 12
INTERVAL = 4.0  # in units of the standard-normal noise u: 99.99 % of it is inside
MIN_SIZE = 1e-3  # of a bin's width or height, as a share of the interval
MIN_SLOPE = 1e-3
SPLINE_PARAMS = ("spline_widths", "spline_heights", "spline_slopes")


def _knots(raw: jax.Array) -> jax.Array:
    size = MIN_SIZE + (1 - MIN_SIZE * BINS) * jax.nn.softmax(raw)
    edges = jnp.concatenate([jnp.zeros(1), jnp.cumsum(size)])
    return INTERVAL * (2 * edges.at[-1].set(1.0) - 1)


def _slopes(raw: jax.Array) -> jax.Array:
    inner = MIN_SLOPE + jax.nn.softplus(raw + np.log(np.expm1(1.0 - MIN_SLOPE)))  # 0 -> 1
    return jnp.concatenate([jnp.ones(1), inner, jnp.ones(1)])


def spline(p: Any, v: ArrayLike, inverse: bool = False) -> tuple[jax.Array, jax.Array]:
    """``(T(v), log T'(v))``, or with ``inverse`` ``(T^{-1}(v), log T'(T^{-1}(v)))``, for
    the spline with parameters ``p`` (``spline_widths``, ``spline_heights``,
    ``spline_slopes``); every zero is the identity.

    Examples
    --------
    >>> import jax.numpy as jnp
    >>> p = {"spline_widths": jnp.zeros(BINS), "spline_heights": jnp.arange(BINS) / 4.0,
    ...      "spline_slopes": jnp.ones(BINS - 1)}
    >>> u = jnp.linspace(-5.0, 5.0, 7)
    >>> back, _ = spline(p, spline(p, u)[0], inverse=True)
    >>> bool(jnp.allclose(back, u, atol=1e-4))
    True
    """
    xs, ys = _knots(jnp.asarray(p["spline_widths"])), _knots(jnp.asarray(p["spline_heights"]))
    d = _slopes(jnp.asarray(p["spline_slopes"]))
    v = jnp.asarray(v)
    inside = jnp.abs(v) < INTERVAL
    c = jnp.clip(v, -INTERVAL, INTERVAL)
    # compare_all: BINS + 1 knots, so one comparison each beats a loop (and compiles fast)
    k = jnp.searchsorted(ys if inverse else xs, c, method="compare_all")
    k = jnp.clip(k - 1, 0, BINS - 1)
    xk, wk, yk, hk = xs[k], xs[k + 1] - xs[k], ys[k], ys[k + 1] - ys[k]
    sk, dk, dk1 = hk / wk, d[k], d[k + 1]
    if inverse:  # the root in [0, 1] of the quadratic in xi (eq. 6-8 of Durkan et al.)
        t = (c - yk) * (dk1 + dk - 2 * sk)
        a, b, cc = hk * (sk - dk) + t, hk * dk - t, -sk * (c - yk)
        xi = jnp.clip(2 * cc / (-b - jnp.sqrt(jnp.maximum(b**2 - 4 * a * cc, 0.0))), 0.0, 1.0)
        out = xk + xi * wk
    else:
        xi = (c - xk) / wk
        out = yk + hk * (sk * xi**2 + dk * xi * (1 - xi)) / (
            sk + (dk1 + dk - 2 * sk) * xi * (1 - xi)
        )
    den = sk + (dk1 + dk - 2 * sk) * xi * (1 - xi)
    slope = sk**2 * (dk1 * xi**2 + 2 * sk * xi * (1 - xi) + dk * (1 - xi) ** 2) / den**2
    return jnp.where(inside, out, v), jnp.where(inside, jnp.log(slope), 0.0)


class SplineNoise(dist.Distribution):
    """``loc + scale * T(u)`` with ``u ~ Normal(0, 1)`` and ``T`` the spline with
    parameters ``widths``, ``heights``, ``slopes`` (shared by every unit).

    Its noise view (:func:`scm_ppl.noise_view`) has base ``Normal(0, 1)`` and inverts
    ``T`` in closed form, so abduction through it is exact.

    Examples
    --------
    >>> import jax, jax.numpy as jnp
    >>> d = SplineNoise(jnp.zeros(3), 2.0, jnp.zeros(BINS), jnp.zeros(BINS), jnp.zeros(BINS - 1))
    >>> x = jnp.array([0.0, 1.0, 5.0])  # every parameter zero: T is the identity
    >>> bool(jnp.allclose(d.log_prob(x), dist.Normal(0.0, 2.0).log_prob(x), atol=1e-6))
    True
    """

    arg_constraints: dict[str, Any] = {}  # noqa: RUF012  (numpyro's class-level convention)
    support = constraints.real  # type: ignore[assignment]
    pytree_data_fields = ("loc", "scale", "widths", "heights", "slopes")

    def __init__(
        self,
        loc: ArrayLike,
        scale: ArrayLike,
        widths: ArrayLike,
        heights: ArrayLike,
        slopes: ArrayLike,
        *,
        validate_args: bool | None = None,
    ) -> None:
        self.loc, self.scale = jnp.broadcast_arrays(jnp.asarray(loc), jnp.asarray(scale))
        self.widths, self.heights = jnp.asarray(widths), jnp.asarray(heights)
        self.slopes = jnp.asarray(slopes)
        super().__init__(jnp.shape(self.loc), validate_args=validate_args)

    @property
    def _p(self) -> dict[str, jax.Array]:
        return dict(zip(SPLINE_PARAMS, (self.widths, self.heights, self.slopes), strict=True))

    def from_noise(self, u: ArrayLike) -> jax.Array:
        """The value of noise ``u``."""
        return self.loc + self.scale * spline(self._p, u)[0]

    def to_noise(self, x: ArrayLike) -> jax.Array:
        """The noise of value ``x`` (exact)."""
        return spline(self._p, (jnp.asarray(x) - self.loc) / self.scale, inverse=True)[0]

    def sample(self, key: jax.Array | None, sample_shape: tuple[int, ...] = ()) -> jax.Array:
        assert key is not None
        return self.from_noise(jax.random.normal(key, sample_shape + self.batch_shape))

    def log_prob(self, value: ArrayLike, intermediates: Any = None) -> jax.Array:
        del intermediates
        u, log_slope = spline(self._p, (jnp.asarray(value) - self.loc) / self.scale, inverse=True)
        return -0.5 * u**2 - 0.5 * np.log(2 * np.pi) - log_slope - jnp.log(self.scale)


@register_noise_view(SplineNoise)
def _spline_view(d: SplineNoise) -> Any:
    zeros = jnp.zeros(d.batch_shape, jnp.result_type(float))
    return NoiseView(dist.Normal(zeros, jnp.ones_like(zeros)), d.from_noise, d.to_noise)


def _row_nll(p: dict, feats: jax.Array, z: jax.Array) -> jax.Array:
    scale = jnp.exp(p["log_scale"])
    u, log_slope = spline(p, (z - feats @ p["weight"] - p["bias"]) / scale, inverse=True)
    return 0.5 * u**2 + log_slope + jnp.log(scale)


_jit_row_nll = jax.jit(_row_nll)  # one compilation per shape, not one per operation


def _loss(p: dict, feats: jax.Array, z: jax.Array, w: jax.Array, family: str) -> jax.Array:
    del family
    penalty = sum(jnp.sum(p[k] ** 2) for k in SPLINE_PARAMS)  # toward the identity
    return jnp.sum(w * _row_nll(p, feats, z)) / jnp.sum(w) + L2 * penalty


def fit_spline(
    features: np.ndarray, y: np.ndarray, stats: dict, train: np.ndarray
) -> dict[str, np.ndarray]:
    """The spline-noise mechanism fitted to the rows ``train`` (a boolean mask) of ``y``
    in the target's standardisation ``stats``, from the least-squares line and ``T = id``.

    Examples
    --------
    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> x = rng.normal(size=1000)
    >>> y = x + np.where(rng.random(1000) < 0.5, -2.0, 2.0) + 0.3 * rng.normal(size=1000)
    >>> s = {"mean": y.mean(), "sd": y.std()}
    >>> p = fit_spline(x[:, None], y, s, np.ones(1000, bool))
    >>> lines = -0.5 * np.log(2 * np.pi * np.e * (y - x).var())  # a Normal's best
    >>> bool(row_loglik_spline(p, x[:, None], y, s).mean() > lines + 0.3)  # two modes seen
    True
    """
    z = (y - stats["mean"]) / stats["sd"]
    design = np.column_stack([features[train], np.ones(int(train.sum()))])
    coef = np.linalg.lstsq(design, z[train], rcond=None)[0]
    resid = z[train] - design @ coef
    p = {
        "weight": jnp.asarray(coef[:-1], jnp.float32),
        "bias": jnp.asarray(coef[-1], jnp.float32),
        "log_scale": jnp.asarray(np.log(max(float(resid.std()), 1e-3)), jnp.float32),
        "spline_widths": jnp.zeros(BINS, jnp.float32),
        "spline_heights": jnp.zeros(BINS, jnp.float32),
        "spline_slopes": jnp.zeros(BINS - 1, jnp.float32),
    }
    feats = jnp.asarray(features, jnp.float32)
    w = jnp.asarray(train, jnp.float32)
    fitted = train_adam(p, feats, jnp.asarray(z, jnp.float32), w, "spline", _loss)
    out = {k: np.asarray(v, np.float64) for k, v in fitted.items()}
    out["scale"] = np.exp(out.pop("log_scale"))
    return out


def row_loglik_spline(params: dict, features: np.ndarray, y: np.ndarray, stats: dict) -> np.ndarray:
    """Log-likelihood of each row of ``y`` (data units) under the fitted mechanism."""
    p = {**params, "log_scale": np.log(params["scale"])}
    z = (np.asarray(y) - stats["mean"]) / stats["sd"]
    nll = _jit_row_nll(p, jnp.asarray(features, jnp.float32), jnp.asarray(z, jnp.float32))
    return -np.asarray(nll, np.float64) - 0.5 * np.log(2 * np.pi) - np.log(stats["sd"])
