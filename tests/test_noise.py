"""Tests of the noise view registry (scm_ppl/noise.py).

Law checks use fixed keys. Two-sample KS tests reject at p < 1e-3: under the null the
p-value is uniform, so each check would fail by chance once in a thousand seeds, and
with 4000 draws per side it still detects a shift of the CDF by about 0.045. Frequency
checks allow 4 standard errors of a binomial proportion (two-sided false-alarm rate
about 6e-5 per cell).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import numpyro.distributions as dist
import pytest
from numpyro.distributions import constraints, transforms
from scipy import stats

from scm_ppl.errors import NoiseViewError
from scm_ppl.noise import (
    GUMBEL_MAX,
    INVERSE_CDF,
    GumbelMaxPosterior,
    NoiseView,
    noise_view,
    register_noise_view,
)

N = 10_000
KS_ALPHA = 1e-4


def _key(i: int) -> jax.Array:
    return jax.random.key(i)


def _ks_columns(a: jax.Array, b: jax.Array) -> None:
    """Two-sample KS on each coordinate after the leading sample axis."""
    a2 = np.asarray(a).reshape(a.shape[0], -1)
    b2 = np.asarray(b).reshape(b.shape[0], -1)
    for j in range(a2.shape[1]):
        p = stats.ks_2samp(a2[:, j], b2[:, j]).pvalue
        assert p > KS_ALPHA, f"coordinate {j}: KS p-value {p:.2e}"


_COV = jnp.array([[2.0, 0.6, 0.0], [0.6, 1.0, -0.3], [0.0, -0.3, 0.5]])

INVERTIBLE = {
    "normal": lambda: dist.Normal(jnp.array([0.0, 3.0]), jnp.array([1.0, 0.1])).expand([4, 2]),
    "laplace": lambda: dist.Laplace(1.0, 2.0).expand([3]),
    "logistic": lambda: dist.Logistic(jnp.array([-1.0, 2.0]), 0.5),
    "cauchy": lambda: dist.Cauchy(0.5, 3.0).expand([2]),
    "gumbel": lambda: dist.Gumbel(jnp.array([0.0, 5.0]), jnp.array([1.0, 2.0])),
    "student_t": lambda: dist.StudentT(jnp.array([2.5, 10.0]), 1.0, 2.0),
    "lognormal": lambda: dist.LogNormal(jnp.array([0.0, 1.0]), 0.5).expand([3, 2]),
    "affine_exp": lambda: dist.TransformedDistribution(
        dist.Normal(0.0, 1.0).expand([3]),
        [transforms.AffineTransform(jnp.array([0.0, 1.0, -1.0]), 0.5), transforms.ExpTransform()],
    ),
    "mvn": lambda: dist.MultivariateNormal(jnp.array([1.0, 0.0, -2.0]), _COV).expand([2]),
    "exponential_cdf": lambda: dist.Exponential(jnp.array([0.5, 3.0])).expand([2, 2]),
    "halfcauchy_cdf": lambda: dist.HalfCauchy(2.0).expand([3]),
    "uniform": lambda: dist.Uniform(jnp.array([0.0, -2.0]), jnp.array([1.0, 5.0])),
    "independent": lambda: dist.Normal(jnp.arange(3.0), 2.0).to_event(1),
}


@pytest.mark.parametrize("name", sorted(INVERTIBLE))
def test_invertible_view(name: str) -> None:
    make = INVERTIBLE[name]
    d = make()
    view = noise_view(d)
    assert view.invertible and view.coupling is None
    assert view.base.batch_shape == d.batch_shape

    @jax.jit
    def run(key: jax.Array) -> dict[str, jax.Array]:
        # Built inside jit: the view must trace, and one compile per case keeps this fast.
        d = make()
        view = noise_view(d)
        assert view.inverse is not None
        k = jax.random.split(key, 4)
        x = d.sample(k[0], (7,))
        u = view.inverse(x)
        u0 = view.base.sample(k[1], (7,))
        return {
            "x": x,
            "u": u,
            "x_again": view.forward(u),
            "u0": u0,
            "u0_again": view.inverse(view.forward(u0)),
            "pushed": view.forward(view.base.sample(k[2], (N,))),
            "direct": d.sample(k[3], (N,)),
        }

    r = run(_key(0))
    assert r["u"].shape == (7, *view.base.batch_shape, *view.base.event_shape)
    assert bool(jnp.all(jnp.isfinite(r["u"])))
    np.testing.assert_allclose(r["x_again"], r["x"], rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(r["u0_again"], r["u0"], rtol=1e-4, atol=1e-5)
    assert r["pushed"].shape == r["direct"].shape
    _ks_columns(r["pushed"], r["direct"])


def test_mvn_noise_is_whitened_residual() -> None:
    d = dist.MultivariateNormal(jnp.array([1.0, 0.0, -2.0]), _COV)
    view = noise_view(d)
    x = jnp.array([2.0, -1.0, 0.5])
    tril = jnp.linalg.cholesky(_COV)
    np.testing.assert_allclose(view.inverse(x), jnp.linalg.solve(tril, x - d.loc), rtol=1e-5)
    assert view.base.event_shape == (3,) and view.base.batch_shape == ()


def test_transformed_distribution_with_event_transform_matches_mvn() -> None:
    tril = jnp.linalg.cholesky(_COV)
    loc = jnp.array([1.0, 0.0, -2.0])
    d = dist.TransformedDistribution(
        dist.Normal(jnp.zeros(3), 1.0).to_event(1), transforms.LowerCholeskyAffine(loc, tril)
    )
    view, ref = noise_view(d), noise_view(dist.MultivariateNormal(loc, _COV))
    x = jnp.array([[2.0, -1.0, 0.5], [0.0, 0.0, 0.0]])
    np.testing.assert_allclose(view.inverse(x), ref.inverse(x), rtol=1e-5, atol=1e-6)
    assert view.base.event_shape == (3,)


def test_transformed_batch_from_transform_parameters() -> None:
    d = dist.TransformedDistribution(
        dist.Normal(0.0, 1.0), transforms.AffineTransform(jnp.arange(3.0), 2.0)
    )
    view = noise_view(d)
    assert d.batch_shape == (3,) and view.base.batch_shape == (3,)
    np.testing.assert_allclose(view.inverse(jnp.array([2.0, 3.0, 4.0])), [1.0, 1.0, 1.0])


def test_location_scale_noise_is_standardised() -> None:
    view = noise_view(dist.Normal(jnp.array([1.0, 2.0]), jnp.array([2.0, 4.0])).expand([5, 2]))
    np.testing.assert_allclose(view.inverse(jnp.array([3.0, 10.0])), [1.0, 2.0])
    base = noise_view(dist.StudentT(4.0, 3.0, 2.0)).base
    assert isinstance(base, dist.StudentT)
    np.testing.assert_allclose([base.df, base.loc, base.scale], [4.0, 0.0, 1.0])


def test_masked_distribution_masks_the_noise() -> None:
    mask = jnp.array([True, False])
    view = noise_view(dist.Normal(jnp.zeros(2), 1.0).mask(mask))
    lp = view.base.log_prob(jnp.array([0.3, 0.3]))
    assert float(lp[1]) == 0.0 and float(lp[0]) < 0.0
    np.testing.assert_allclose(view.inverse(jnp.array([1.0, 2.0])), [1.0, 2.0])


def test_delta_ignores_the_noise() -> None:
    d = dist.Delta(jnp.array([[1.0, 2.0]]), event_dim=1).expand([3, 1])
    view = noise_view(d)
    assert view.base.batch_shape == (3, 1) and view.base.event_shape == (2,)
    u = view.base.sample(_key(0), (4,))
    x = view.forward(u + 5.0)
    assert x.shape == (4, 3, 1, 2)
    np.testing.assert_allclose(x, jnp.broadcast_to(jnp.array([1.0, 2.0]), x.shape))
    np.testing.assert_allclose(view.inverse(x), jnp.zeros(x.shape))


def test_degenerate_cases_stay_finite() -> None:
    uniform = noise_view(dist.Uniform(jnp.array([1.0, 0.0]), jnp.array([1.0, 2.0])))
    assert bool(jnp.all(jnp.isfinite(uniform.inverse(jnp.array([1.0, 1.0])))))
    np.testing.assert_allclose(uniform.forward(jnp.array([0.7, 0.5])), [1.0, 1.0])
    normal = noise_view(dist.Normal(1.0, 0.0, validate_args=False))
    assert float(normal.inverse(jnp.array(1.0))) == 0.0
    for d in (dist.HalfNormal(1.0), dist.Exponential(2.0), dist.HalfCauchy(1.0)):
        x = noise_view(d).forward(jnp.array([0.0, 1.0]))
        assert bool(jnp.all(jnp.isfinite(x))), type(d).__name__


# ----------------------------------------------------------------------------- discrete

DISCRETE = {
    "bernoulli_probs": lambda: dist.BernoulliProbs(jnp.array([0.0, 0.2, 0.7, 1.0])),
    "bernoulli_logits": lambda: dist.BernoulliLogits(jnp.array([-2.0, 0.0, 3.0])).expand([2, 3]),
    "poisson": lambda: dist.Poisson(jnp.array([0.0, 0.3, 4.0, 150.0])),
    "binomial_probs": lambda: dist.BinomialProbs(jnp.array([0.0, 0.3, 0.9, 1.0]), 12),
    "binomial_logits": lambda: dist.BinomialLogits(jnp.array([-1.0, 2.0]), jnp.array([5, 40])),
    "categorical_probs": lambda: dist.CategoricalProbs(
        jnp.array([[0.2, 0.3, 0.5], [0.9, 0.0, 0.1]])
    ),
    "categorical_logits": lambda: dist.CategoricalLogits(jnp.array([1.0, -2.0, 0.5, 0.0])).expand(
        [2]
    ),
    "negbinomial_fallback": lambda: dist.NegativeBinomial2(jnp.array([3.0, 40.0]), 2.0),
    "discrete_uniform_fallback": lambda: dist.DiscreteUniform(
        jnp.array([-2, 3]), jnp.array([1, 3])
    ),
}


GRID = jnp.arange(-2, 260)  # covers the support of every case above with room to spare


@pytest.mark.parametrize("name", sorted(DISCRETE))
def test_discrete_view(name: str) -> None:
    make = DISCRETE[name]
    d = make()
    view = noise_view(d)
    assert not view.invertible and view.noise_given_value is not None
    assert view.coupling == (GUMBEL_MAX if name.startswith("categorical") else INVERSE_CDF)
    assert view.base.batch_shape == d.batch_shape

    @jax.jit
    def run(key: jax.Array) -> dict[str, jax.Array]:
        d = make()
        view = noise_view(d)
        assert view.noise_given_value is not None
        k = jax.random.split(key, 4)
        pushed = view.forward(view.base.sample(k[0], (N,)))
        grid = GRID.reshape(-1, *(1,) * len(d.batch_shape))
        freq = jnp.mean(pushed[None] == grid[:, None], axis=1)
        # Traced, so numpyro does not warn about values outside the support; its
        # log_prob is nan or -inf there, i.e. mass 0.
        pmf = jnp.nan_to_num(jnp.exp(d.log_prob(grid.astype(pushed.dtype))), nan=0.0)
        x = d.sample(k[1], (N,))
        u = view.noise_given_value(x).sample(k[2])
        return {
            "pushed": pushed,
            "direct": d.sample(k[1]),
            "freq": freq,
            "pmf": pmf,
            "x": x,
            "u": u,
            "x_again": view.forward(u),
            "prior_u": view.base.sample(k[3], (N,)),
        }

    r = run(_key(4))
    assert r["pushed"].shape == (N, *d.batch_shape)
    assert r["pushed"].dtype == r["direct"].dtype
    # Frequencies within 4 binomial standard errors of the pmf, over the whole grid.
    assert bool(jnp.allclose(jnp.sum(r["pmf"], 0), 1.0, atol=1e-4))
    se = jnp.sqrt(r["pmf"] * (1 - r["pmf"]) / N)
    bad = jnp.abs(r["freq"] - r["pmf"]) > 4 * se + 1e-6
    assert not bool(jnp.any(bad)), (GRID[jnp.any(bad.reshape(len(GRID), -1), -1)], r["pmf"])
    # The noise drawn given the value reproduces the value exactly...
    assert r["u"].shape == (N, *view.base.batch_shape, *view.base.event_shape)
    assert bool(jnp.all(jnp.isfinite(r["u"])))
    assert bool(jnp.all(r["x_again"] == r["x"]))
    # ... and, with x ~ d, has the prior law of the noise.
    _ks_columns(r["u"], r["prior_u"])


def test_inverse_cdf_noise_is_uniform_on_the_cdf_step() -> None:
    d = dist.Poisson(2.0)
    posterior = noise_view(d).noise_given_value(jnp.array([0, 3]))
    np.testing.assert_allclose(posterior.low, [0.0, d.cdf(2.0)], rtol=1e-6, atol=1e-30)
    np.testing.assert_allclose(posterior.high, [d.cdf(0.0), d.cdf(3.0)], rtol=1e-6)
    bern = noise_view(dist.BernoulliProbs(0.3)).noise_given_value(jnp.array([0, 1]))
    np.testing.assert_allclose(bern.low, [0.0, 0.7], atol=1e-6)
    np.testing.assert_allclose(bern.high, [0.7, 1.0], atol=1e-6)


def test_impossible_discrete_values_stay_finite() -> None:
    for d, x in [
        (dist.BernoulliProbs(1.0), jnp.array(0)),
        (dist.BinomialProbs(0.0, 5), jnp.array(3)),
        (dist.CategoricalProbs(jnp.array([0.5, 0.0, 0.5])), jnp.array(1)),
    ]:
        u = noise_view(d).noise_given_value(x).sample(_key(0), (50,))
        assert bool(jnp.all(jnp.isfinite(u))), type(d).__name__


def test_gumbel_max_posterior_matches_rejection_sampling() -> None:
    logits = jnp.log(jnp.array([0.5, 0.3, 0.2]))
    value = 2
    prior = jax.random.gumbel(_key(8), (200_000, 3))
    kept = prior[jnp.argmax(logits + prior, -1) == value]  # about 40_000 draws
    post = GumbelMaxPosterior(logits, value).sample(_key(9), (40_000,))
    for stat in (lambda a: a, lambda a: a**2):
        a, b = stat(post), stat(kept)
        se = jnp.sqrt(jnp.var(a, 0) / a.shape[0] + jnp.var(b, 0) / b.shape[0])
        assert bool(jnp.all(jnp.abs(jnp.mean(a, 0) - jnp.mean(b, 0)) < 4 * se))
    # log_prob: prior density / P(x) on the consistent set, -inf off it.
    lp = GumbelMaxPosterior(logits, value).log_prob(post[:5])
    ref = jnp.sum(dist.Gumbel(0.0, 1.0).log_prob(post[:5]), -1) - jnp.log(0.2)
    np.testing.assert_allclose(lp, ref, rtol=1e-5)
    assert float(GumbelMaxPosterior(logits, 0).log_prob(post[0])) == -jnp.inf


def test_gumbel_max_posterior_is_exact_under_near_ties() -> None:
    logits = jnp.array([30.0, 30.0001, 29.9999, -50.0])
    for value in range(4):
        u = GumbelMaxPosterior(logits, value).sample(_key(value), (20_000,))
        assert bool(jnp.all(jnp.argmax(logits + u, -1) == value))


# ------------------------------------------------------------------------ jit and vmap


def test_forward_and_inverse_under_jit_and_vmap() -> None:
    def inverse(loc: jax.Array, x: jax.Array) -> jax.Array:
        return noise_view(dist.MultivariateNormal(loc, _COV)).inverse(x)

    loc = jnp.array([1.0, 0.0, -2.0])
    x = dist.MultivariateNormal(loc, _COV).sample(_key(0), (6,))
    eager = inverse(loc, x)
    np.testing.assert_allclose(jax.jit(inverse)(loc, x), eager, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(jax.vmap(inverse, (None, 0))(loc, x), eager, rtol=1e-5, atol=1e-6)

    for d in (dist.Poisson(jnp.array([0.5, 7.0])), dist.CategoricalLogits(jnp.zeros((2, 3)))):
        view = noise_view(d)
        u = view.base.sample(_key(1), (5,))
        ref = view.forward(u)
        np.testing.assert_array_equal(jax.jit(view.forward)(u), ref)
        np.testing.assert_array_equal(jax.vmap(view.forward)(u), ref)

    def lognormal_round_trip(mu: jax.Array, x: jax.Array) -> jax.Array:
        view = noise_view(dist.LogNormal(mu, 1.0))
        return view.forward(view.inverse(x))

    xs = jnp.array([0.5, 1.0, 3.0])
    np.testing.assert_allclose(jax.jit(jax.vmap(lognormal_round_trip))(xs, xs), xs, rtol=1e-5)


def test_noise_given_value_under_jit() -> None:
    view = noise_view(dist.BinomialProbs(jnp.array([0.2, 0.6]), 9))

    @jax.jit
    def redraw(key: jax.Array, x: jax.Array) -> jax.Array:
        return view.forward(view.noise_given_value(x).sample(key))

    x = jnp.array([[0, 9], [4, 5]])
    np.testing.assert_array_equal(redraw(_key(0), x), x)


# ---------------------------------------------------------------------------- registry


class _Shifted(dist.Distribution):
    """x = u + shift, u ~ Exponential(1); no cdf, so no fallback view."""

    support = constraints.real

    def __init__(self, shift: float):
        self.shift = jnp.asarray(shift)
        super().__init__(batch_shape=jnp.shape(self.shift))

    def sample(self, key, sample_shape=()):  # type: ignore[override]
        return self.shift + jax.random.exponential(key, sample_shape + self.batch_shape)

    def log_prob(self, value):  # type: ignore[override]
        return dist.Exponential(1.0).log_prob(value - self.shift)


class _ShiftedChild(_Shifted):
    pass


def test_user_registered_view_is_dispatched_by_mro() -> None:
    with pytest.raises(NoiseViewError, match="No noise view for distribution '_Shifted'"):
        noise_view(_Shifted(1.0))

    @register_noise_view(_Shifted)
    def _shifted_view(d: _Shifted) -> NoiseView:
        return NoiseView(
            dist.Exponential(jnp.ones(d.batch_shape)),
            lambda u: u + d.shift,
            lambda x: x - d.shift,
        )

    for d in (_Shifted(jnp.array([1.0, 2.0])), _ShiftedChild(jnp.array([1.0, 2.0]))):
        view = noise_view(d)
        np.testing.assert_allclose(view.inverse(jnp.array([3.0, 3.0])), [2.0, 1.0])
        _ks_columns(view.forward(view.base.sample(_key(0), (N,))), d.sample(_key(1), (N,)))


def test_registered_view_overrides_the_parent_family() -> None:
    class Centered(dist.Normal):
        pass

    register_noise_view(Centered)(
        lambda d: NoiseView(dist.Normal(0.0, 1.0), lambda u: u, lambda x: x, coupling="mine")
    )
    assert noise_view(Centered(5.0, 1.0)).coupling == "mine"
    assert noise_view(dist.Normal(5.0, 1.0)).coupling is None


@pytest.mark.parametrize(
    ("d", "reason"),
    [
        (dist.Dirichlet(jnp.ones(3)), "multivariate"),
        (dist.Weibull(1.0, 2.0), "cdf and icdf"),
        (dist.GeometricProbs(0.3), "discrete"),
    ],
)
def test_missing_view_error_says_how_to_register(d: dist.Distribution, reason: str) -> None:
    name = type(d).__name__
    with pytest.raises(NoiseViewError, match=rf"No noise view for distribution '{name}'") as err:
        noise_view(d)
    message = str(err.value)
    assert reason in message
    assert f"@scm_ppl.register_noise_view({name})" in message
    assert "NoiseView(base, forward, inverse)" in message
    assert isinstance(err.value, TypeError)


def test_bad_arguments_are_errors() -> None:
    with pytest.raises(NoiseViewError, match="expects a numpyro Distribution; got 'float'"):
        noise_view(1.0)  # type: ignore[arg-type]
    with pytest.raises(NoiseViewError, match="expects a distribution class"):
        register_noise_view(dist.Normal(0.0, 1.0))  # type: ignore[arg-type]
