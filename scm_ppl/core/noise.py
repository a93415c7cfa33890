"""The noise view of a distribution: a sample site read as a mechanism.

A site ``x ~ d`` is read as ``x = forward(u)`` with exogenous noise ``u ~ base``.
``base.batch_shape == d.batch_shape``; a value ``x`` of shape
``sample_shape + batch_shape + event_shape`` has noise of shape
``sample_shape + batch_shape + noise_event_shape``, and ``forward`` / ``inverse``
broadcast over any extra leading dims. The noise event shape is ``d.event_shape``
except for Categorical (``(K,)`` Gumbel noise for a scalar value) and transforms that
change the event shape.

Where ``forward`` cannot be inverted (discrete sites) the view names the *coupling*,
the assumption that picks the noise, and gives the law of the noise given the value.
Discrete views use the convention ``x = min{k : F(k) >= u}``, so
``u | x ~ Uniform(F(x - 1), F(x))`` (trimmed by 64 eps at each end so that float
rounding of ``F`` cannot move ``u`` to a neighbouring value).

Views are looked up by distribution type, most derived class first; add one with
:func:`register_noise_view`.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable
from typing import Any, TypeVar

import jax
import jax.numpy as jnp
import numpyro.distributions as dist
from jax.scipy.linalg import solve_triangular
from jax.scipy.special import betainc
from jax.typing import ArrayLike
from numpyro.distributions import constraints
from numpyro.distributions.distribution import (
    Distribution,
    ExpandedDistribution,
    Independent,
    MaskedDistribution,
)

from scm_ppl.core._discrete import GumbelMaxPosterior, gumbel_max, smallest_k, uniform_between
from scm_ppl.errors import NoiseViewError

__all__ = [
    "GUMBEL_MAX",
    "INVERSE_CDF",
    "GumbelMaxPosterior",
    "NoiseView",
    "noise_view",
    "register_noise_view",
]

INVERSE_CDF = "inverse-CDF (monotone)"
GUMBEL_MAX = "Gumbel-max"

_ViewFn = TypeVar("_ViewFn", bound=Callable[..., "NoiseView"])


@dataclasses.dataclass(frozen=True)
class NoiseView:
    """A distribution read as a mechanism ``x = forward(u)`` with noise ``u ~ base``.

    Attributes
    ----------
    base : Distribution
        Law of the noise ``u``; ``base.batch_shape == d.batch_shape``.
    forward : Callable
        ``u -> x``; if ``u ~ base`` then ``forward(u) ~ d``.
    inverse : Callable or None
        ``x -> u`` exactly, or ``None`` when ``forward`` is not invertible.
    noise_given_value : Callable or None
        ``x -> `` law of ``u`` given ``x`` (non-invertible views only).
    coupling : str or None
        Name of the assumption that picks the noise of a non-invertible view.

    Examples
    --------
    >>> import jax.numpy as jnp
    >>> import numpyro.distributions as dist
    >>> view = NoiseView(dist.Normal(0.0, 1.0), lambda u: 2.0 * u, lambda x: x / 2.0)
    >>> view.invertible, float(view.inverse(jnp.array(3.0)))
    (True, 1.5)
    """

    base: Distribution
    forward: Callable[[jax.Array], jax.Array]
    inverse: Callable[[jax.Array], jax.Array] | None
    noise_given_value: Callable[[jax.Array], Distribution] | None = None
    coupling: str | None = None

    @property
    def invertible(self) -> bool:
        """Whether ``inverse`` recovers the noise from the value exactly."""
        return self.inverse is not None


@functools.singledispatch
def _dispatch(d: object) -> NoiseView:
    raise NoiseViewError(
        f"noise_view expects a numpyro Distribution; got {type(d).__name__!r}: {d!r}."
    )


def noise_view(d: Distribution) -> NoiseView:
    """The noise view of ``d``, looked up by its type (most derived class first).

    Parameters
    ----------
    d : Distribution
        The distribution of a sample site.

    Returns
    -------
    NoiseView
        ``base``, ``forward`` and, where it exists, ``inverse``.

    Raises
    ------
    NoiseViewError
        If no view is registered for ``type(d)`` and the CDF fallback does not apply.

    Examples
    --------
    >>> import jax.numpy as jnp
    >>> import numpyro.distributions as dist
    >>> view = noise_view(dist.Normal(1.0, 2.0))
    >>> float(view.inverse(jnp.array(5.0))), float(view.forward(jnp.array(2.0)))
    (2.0, 5.0)
    """
    return _dispatch(d)


def register_noise_view(cls: type) -> Callable[[_ViewFn], _ViewFn]:
    """Register the noise view of a distribution class (and of its subclasses).

    Examples
    --------
    >>> import jax.numpy as jnp
    >>> import numpyro.distributions as dist
    >>> class Shifted(dist.Normal):
    ...     pass
    >>> @register_noise_view(Shifted)
    ... def _(d):
    ...     return NoiseView(dist.Normal(0.0, 1.0), lambda u: u + 1.0, lambda x: x - 1.0)
    >>> float(noise_view(Shifted(0.0, 1.0)).inverse(jnp.array(3.0)))
    2.0
    """
    if not isinstance(cls, type):
        raise NoiseViewError(
            f"register_noise_view expects a distribution class; got {cls!r}. "
            "Use it as `@register_noise_view(MyDist)`."
        )

    def decorator(fn: _ViewFn) -> _ViewFn:
        _dispatch.register(cls, fn)
        return fn

    return decorator


# ----------------------------------------------------------------------------- helpers


def _float_dtype(*xs: Any) -> Any:
    return jnp.result_type(*xs, float)


def _int_dtype() -> Any:
    # What numpyro's discrete samplers return: int32, or int64 under x64.
    return jnp.result_type(int)


def _open_unit(u: ArrayLike) -> jax.Array:
    """``u`` clipped into (0, 1) so quantile functions stay finite at the ends."""
    u = jnp.asarray(u)
    u = u.astype(_float_dtype(u))
    fi = jnp.finfo(u.dtype)
    # 1 - eps, not 1 - eps/2: icdfs such as HalfNormal's map u to (1 + u) / 2 first.
    return jnp.clip(u, fi.tiny, 1 - fi.eps)


def _nonzero(scale: ArrayLike) -> jax.Array:
    # A zero scale makes the site deterministic; any finite noise then reproduces it.
    return jnp.where(jnp.asarray(scale) == 0, 1, scale)


def _standard_uniform(batch_shape: tuple[int, ...], dtype: Any = None) -> Distribution:
    zeros = jnp.zeros(batch_shape, _float_dtype() if dtype is None else dtype)
    return dist.Uniform(zeros, jnp.ones_like(zeros))


def _match_batch(base: Distribution, batch_shape: tuple[int, ...]) -> Distribution:
    extra = len(base.batch_shape) - len(batch_shape)
    if extra > 0:
        base = base.to_event(extra)
    if tuple(base.batch_shape) != tuple(batch_shape):
        base = base.expand(batch_shape)
    return base


def _no_view(d: Distribution, reason: str) -> NoiseViewError:
    name = type(d).__name__
    return NoiseViewError(
        f"No noise view for distribution '{name}' ({reason}). Register one with "
        f"`@scm_ppl.register_noise_view({name})` returning a `NoiseView(base, forward, "
        "inverse)`, or model the site as a deterministic function of an explicit noise site."
    )


# ------------------------------------------------------------------------------ wrappers


@register_noise_view(ExpandedDistribution)
def _expanded(d: ExpandedDistribution) -> NoiseView:
    view = noise_view(d.base_dist)
    return dataclasses.replace(view, base=view.base.expand(d.batch_shape))


@register_noise_view(Independent)
def _independent(d: Independent) -> NoiseView:
    view = noise_view(d.base_dist)
    n = d.reinterpreted_batch_ndims
    given = view.noise_given_value
    return dataclasses.replace(
        view,
        base=view.base.to_event(n),
        noise_given_value=None if given is None else (lambda x: given(x).to_event(n)),
    )


@register_noise_view(MaskedDistribution)
def _masked(d: MaskedDistribution) -> NoiseView:
    # The mask only switches scoring off; the noise is scored where the value is.
    view = noise_view(d.base_dist)
    return dataclasses.replace(view, base=view.base.mask(jnp.asarray(d._mask)))


@register_noise_view(dist.TransformedDistribution)
def _transformed(d: dist.TransformedDistribution) -> NoiseView:
    transforms = list(d.transforms)
    folding = [t for t in transforms if isinstance(t, dist.transforms.AbsTransform)]
    if folding:  # |x| is two-to-one: the value no longer pins the noise down
        raise _no_view(d, f"its transform {type(folding[0]).__name__} is not one-to-one")
    view = noise_view(d.base_dist)
    base_forward, base_inverse, base_given = view.forward, view.inverse, view.noise_given_value

    def forward(u: ArrayLike) -> jax.Array:
        y = base_forward(jnp.asarray(u))
        for t in transforms:
            y = jnp.asarray(t(y))
        return y

    def pull_back(x: ArrayLike) -> jax.Array:
        y = jnp.asarray(x)
        for t in reversed(transforms):
            y = jnp.asarray(t.inv(y))
        return y

    return NoiseView(
        base=_match_batch(view.base, d.batch_shape),
        forward=forward,
        inverse=None if base_inverse is None else (lambda x: base_inverse(pull_back(x))),
        noise_given_value=None if base_given is None else (lambda x: base_given(pull_back(x))),
        coupling=view.coupling,
    )


# -------------------------------------------------------------------- continuous entries


def _location_scale(standard: Callable[..., Distribution]) -> Callable[[Any], NoiseView]:
    def view(d: Any) -> NoiseView:
        loc, scale = d.loc, d.scale
        zeros = jnp.zeros(d.batch_shape, _float_dtype(loc, scale))
        return NoiseView(
            standard(zeros, jnp.ones_like(zeros)),
            lambda u: loc + scale * jnp.asarray(u),
            lambda x: (jnp.asarray(x) - loc) / _nonzero(scale),
        )

    return view


for _family in (dist.Normal, dist.Laplace, dist.Logistic, dist.Cauchy, dist.Gumbel):
    register_noise_view(_family)(_location_scale(_family))


@register_noise_view(dist.StudentT)
def _student_t(d: dist.StudentT) -> NoiseView:
    df = jnp.broadcast_to(jnp.asarray(d.df), d.batch_shape)
    return _location_scale(lambda zeros, ones: dist.StudentT(df, zeros, ones))(d)


@register_noise_view(dist.Uniform)
def _uniform(d: dist.Uniform) -> NoiseView:
    low, high = jnp.asarray(d.low), jnp.asarray(d.high)
    width = high - low
    return NoiseView(
        _standard_uniform(d.batch_shape, _float_dtype(low, high)),
        lambda u: low + width * jnp.asarray(u),
        lambda x: jnp.clip((jnp.asarray(x) - low) / _nonzero(width), 0, 1),
    )


@register_noise_view(dist.MultivariateNormal)
def _multivariate_normal(d: dist.MultivariateNormal) -> NoiseView:
    loc, tril = jnp.asarray(d.loc), jnp.asarray(d.scale_tril)
    k = d.event_shape[0]
    zeros = jnp.zeros((*d.batch_shape, k), _float_dtype(loc, tril))

    def inverse(x: ArrayLike) -> jax.Array:
        r = jnp.asarray(x) - loc
        batch = jnp.broadcast_shapes(r.shape[:-1], tril.shape[:-2])
        lower = jnp.broadcast_to(tril, (*batch, k, k))
        return solve_triangular(lower, jnp.broadcast_to(r, (*batch, k))[..., None], lower=True)[
            ..., 0
        ]

    return NoiseView(
        dist.Normal(zeros, 1.0).to_event(1),
        lambda u: loc + jnp.einsum("...ij,...j->...i", tril, jnp.asarray(u)),
        inverse,
    )


@register_noise_view(dist.Delta)
def _delta(d: dist.Delta) -> NoiseView:
    v = jnp.asarray(d.v)
    dtype = _float_dtype()
    base = dist.Delta(jnp.zeros((*d.batch_shape, *d.event_shape), dtype), event_dim=d.event_dim)
    return NoiseView(
        base,
        lambda u: jnp.broadcast_to(v, jnp.broadcast_shapes(jnp.shape(u), v.shape)),
        lambda x: jnp.zeros(jnp.shape(x), dtype),
    )


# ---------------------------------------------------------------------- discrete entries


def _inverse_cdf_view(
    d: Distribution,
    cdf: Callable[[jax.Array], jax.Array],
    lower: ArrayLike,
    upper: ArrayLike | None,
    dtype: Any,
) -> NoiseView:
    """Inverse-CDF coupling for an integer-valued site with support in ``[lower, upper]``."""

    def safe_cdf(k: jax.Array) -> jax.Array:
        # Many cdfs are nan below the support (e.g. gammaincc(0, .)); F is 0 there.
        below = k < lower
        return jnp.where(below, 0, cdf(jnp.where(below, jnp.asarray(lower, dtype), k)))

    def forward(u: ArrayLike) -> jax.Array:
        u = jnp.asarray(u).astype(dtype)
        return smallest_k(safe_cdf, u, lower, upper).astype(_int_dtype())

    def noise_given_value(x: ArrayLike) -> Distribution:
        x = jnp.asarray(x).astype(dtype)
        # One cdf call on both ends: incomplete gamma/beta functions are slow to compile.
        low, high = safe_cdf(jnp.stack([x - 1, x]))
        return uniform_between(low, high)

    return NoiseView(
        base=_standard_uniform(d.batch_shape, dtype),
        forward=forward,
        inverse=None,
        noise_given_value=noise_given_value,
        coupling=INVERSE_CDF,
    )


def _bernoulli(d: Any, f0: jax.Array) -> NoiseView:
    """``x = 1[u > F(0)]`` with ``F(0) = 1 - p``."""
    dtype = _float_dtype(f0)
    view = _inverse_cdf_view(d, lambda k: jnp.where(k < 1, f0, 1), 0, 1, dtype)
    forward = lambda u: (jnp.asarray(u) > f0).astype(_int_dtype())
    return dataclasses.replace(view, forward=forward)


@register_noise_view(dist.BernoulliProbs)
def _bernoulli_probs(d: dist.BernoulliProbs) -> NoiseView:
    return _bernoulli(d, 1 - jnp.asarray(d.probs))


@register_noise_view(dist.BernoulliLogits)
def _bernoulli_logits(d: dist.BernoulliLogits) -> NoiseView:
    # sigmoid(-logits) keeps 1 - p accurate when p is close to 1.
    return _bernoulli(d, jax.nn.sigmoid(-jnp.asarray(d.logits)))


@register_noise_view(dist.Poisson)
def _poisson(d: dist.Poisson) -> NoiseView:
    rate = jnp.asarray(d.rate)
    # Beyond rate + 40 sd + 40 the Poisson tail is far below float eps.
    upper = jnp.floor(rate + 40 * jnp.sqrt(rate) + 40)
    return _inverse_cdf_view(d, d.cdf, 0, upper, _float_dtype(rate))


def _binomial(d: Any) -> NoiseView:
    n, p = jnp.asarray(d.total_count), jnp.asarray(d.probs)
    dtype = _float_dtype(p)

    def cdf(k: jax.Array) -> jax.Array:
        # F(k) = I_{1-p}(n - k, k + 1) for 0 <= k < n; the `where`s keep betainc's
        # arguments positive where that formula is not used.
        inside = k < n
        a = jnp.where(inside, n - k, 1)
        return jnp.where(inside, betainc(a, k + 1, 1 - p), 1)

    return _inverse_cdf_view(d, cdf, 0, n, dtype)


register_noise_view(dist.BinomialProbs)(_binomial)
register_noise_view(dist.BinomialLogits)(_binomial)


def _categorical(d: Any) -> NoiseView:
    logits = jnp.asarray(d.logits)
    zeros = jnp.zeros((*d.batch_shape, logits.shape[-1]), _float_dtype(logits))
    return NoiseView(
        base=dist.Gumbel(zeros, jnp.ones_like(zeros)).to_event(1),
        forward=lambda u: gumbel_max(logits, u),
        inverse=None,
        noise_given_value=lambda x: GumbelMaxPosterior(logits, x),
        coupling=GUMBEL_MAX,
    )


register_noise_view(dist.CategoricalProbs)(_categorical)
register_noise_view(dist.CategoricalLogits)(_categorical)


# ------------------------------------------------------------------------------ fallback


def _overrides(d: Distribution, method: str) -> bool:
    return getattr(type(d), method) is not getattr(Distribution, method)


def _integer_bounds(support: Any) -> tuple[Any, Any] | None:
    if support is constraints.boolean:
        return 0, 1
    lower = getattr(support, "lower_bound", None)
    return None if lower is None else (lower, getattr(support, "upper_bound", None))


_ICDF_PROBLEMS: dict[type, str | None] = {}


def _check_icdf_runs(d: Distribution) -> None:
    """Some icdfs exist but need an optional package (numpyro's Gamma and Beta want
    tensorflow_probability); find out once per class, by tracing, not at query time."""
    cls = type(d)
    if cls not in _ICDF_PROBLEMS:
        probe = jax.ShapeDtypeStruct(tuple(d.batch_shape), _float_dtype())
        try:
            jax.eval_shape(d.icdf, probe)
            _ICDF_PROBLEMS[cls] = None
        except (ImportError, NotImplementedError) as err:
            _ICDF_PROBLEMS[cls] = f"its icdf cannot run here: {type(err).__name__}: {err}"
    problem = _ICDF_PROBLEMS[cls]
    if problem:
        raise _no_view(d, problem)


@register_noise_view(Distribution)
def _from_cdf(d: Distribution) -> NoiseView:
    if d.event_shape:
        raise _no_view(d, f"it is multivariate, event shape {d.event_shape}")
    support = d.support
    if support is not None and support.is_discrete:
        bounds = _integer_bounds(support)
        if not _overrides(d, "cdf") or bounds is None:
            raise _no_view(d, "it is discrete without both a cdf and a lower bound")
        return _inverse_cdf_view(d, d.cdf, bounds[0], bounds[1], _float_dtype())
    if not (_overrides(d, "cdf") and _overrides(d, "icdf")):
        raise _no_view(d, "it does not implement both cdf and icdf")
    _check_icdf_runs(d)
    return NoiseView(
        _standard_uniform(d.batch_shape),
        lambda u: d.icdf(_open_unit(u)),
        lambda x: jnp.clip(d.cdf(x), 0, 1),
    )
