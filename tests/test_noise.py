"""Tests of the noise view registry (scm_ppl/noise.py).

Each test traces its distributions inside one ``jax.jit`` and checks the results with
NumPy: on a small CPU every eager jax op is its own compile, and that, not arithmetic,
is what a test here costs. Building the views under ``jit`` is also what the package
does with them.

Law checks use fixed keys and N = 10_000 draws. Two-sample KS tests reject at
p < 1e-4 per coordinate: under the null the p-value is uniform, so the ~70 of them here
fail by chance with probability under 1%, and with N draws per side they still detect
CDFs 0.031 apart. Frequency checks allow 4 binomial standard errors per cell
(two-sided false-alarm rate 6e-5), the standard error floored at that of p = 1/N so
that a far-tail cell may hold a few stray draws.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

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


def _keys(seed: int, n: int) -> jax.Array:
    return jax.random.split(jax.random.key(seed), n)


def _run(fn: Callable[..., Any], *args: Any) -> Any:
    """``jit(fn)(*args)`` with the outputs as NumPy arrays."""
    return jax.tree.map(np.asarray, jax.jit(fn)(*args))


def _ks_columns(a: np.ndarray, b: np.ndarray) -> None:
    """Two-sample KS on each coordinate after the leading sample axis."""
    a2, b2 = a.reshape(a.shape[0], -1), b.reshape(b.shape[0], -1)
    for j in range(a2.shape[1]):
        p = stats.ks_2samp(a2[:, j], b2[:, j], method="asymp").pvalue
        assert p > KS_ALPHA, f"coordinate {j}: KS p-value {p:.2e}"


_COV = np.array([[2.0, 0.6, 0.0], [0.6, 1.0, -0.3], [0.0, -0.3, 0.5]], np.float32)
_LOC = np.array([1.0, 0.0, -2.0], np.float32)

INVERTIBLE: dict[str, Callable[[], dist.Distribution]] = {
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
    "mvn": lambda: dist.MultivariateNormal(_LOC, _COV).expand([2]),
    "exponential_cdf": lambda: dist.Exponential(jnp.array([0.5, 3.0])).expand([2, 2]),
    "halfcauchy_cdf": lambda: dist.HalfCauchy(2.0).expand([3]),
    "uniform": lambda: dist.Uniform(jnp.array([0.0, -2.0]), jnp.array([1.0, 5.0])),
    "independent": lambda: dist.Normal(jnp.arange(3.0), 2.0).to_event(1),
}


@pytest.mark.parametrize("name", sorted(INVERTIBLE))
def test_invertible_view(name: str) -> None:
    make = INVERTIBLE[name]

    def run(key: jax.Array) -> dict[str, jax.Array]:
        d = make()
        view = noise_view(d)
        assert view.invertible and view.inverse is not None and view.coupling is None
        assert view.base.batch_shape == d.batch_shape
        k = jax.random.split(key)
        # Two draws in all: on CPU each random call site costs a fraction of a second
        # of XLA compile time, the arithmetic nothing.
        u_all = view.base.sample(k[0], (N,))
        direct = d.sample(k[1], (N,))
        x, u0 = direct[:7], u_all[:7]
        u = view.inverse(x)
        assert u.shape == (7, *view.base.batch_shape, *view.base.event_shape)
        return {
            "x": x,
            "u": u,
            "x_again": view.forward(u),
            "u0": u0,
            "u0_again": view.inverse(view.forward(u0)),
            "pushed": view.forward(u_all),
            "direct": direct,
        }

    r = _run(run, jax.random.key(0))
    assert np.all(np.isfinite(r["u"]))
    np.testing.assert_allclose(r["x_again"], r["x"], rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(r["u0_again"], r["u0"], rtol=1e-4, atol=1e-5)
    assert r["pushed"].shape == r["direct"].shape
    _ks_columns(r["pushed"], r["direct"])


def test_affine_views_have_the_closed_form_noise() -> None:
    tril = np.linalg.cholesky(_COV)
    x = np.array([[2.0, -1.0, 0.5], [0.0, 0.0, 0.0]], np.float32)

    def run(x: jax.Array) -> dict[str, jax.Array]:
        mvn = noise_view(dist.MultivariateNormal(_LOC, _COV))
        flow = noise_view(
            dist.TransformedDistribution(
                dist.Normal(jnp.zeros(3), 1.0).to_event(1),
                transforms.LowerCholeskyAffine(_LOC, tril),
            )
        )
        shifted = noise_view(
            dist.TransformedDistribution(
                dist.Normal(0.0, 1.0), transforms.AffineTransform(jnp.arange(3.0), 2.0)
            )
        )
        normal = noise_view(
            dist.Normal(jnp.array([1.0, 2.0]), jnp.array([2.0, 4.0])).expand([5, 2])
        )
        assert mvn.base.event_shape == flow.base.event_shape == (3,)
        assert shifted.base.batch_shape == (3,) and normal.base.batch_shape == (5, 2)
        assert mvn.inverse and flow.inverse and shifted.inverse and normal.inverse
        return {
            "mvn": mvn.inverse(x),
            "flow": flow.inverse(x),
            "shifted": shifted.inverse(jnp.array([2.0, 3.0, 4.0])),
            "normal": normal.inverse(jnp.array([3.0, 10.0])),
        }

    r = _run(run, x)
    whitened = np.linalg.solve(tril, (x - _LOC).T).T
    np.testing.assert_allclose(r["mvn"], whitened, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(r["flow"], whitened, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(r["shifted"], [1.0, 1.0, 1.0])
    np.testing.assert_allclose(r["normal"], [1.0, 2.0])


def test_student_t_base_is_standard() -> None:
    base = noise_view(dist.StudentT(4.0, 3.0, 2.0)).base
    assert isinstance(base, dist.StudentT)
    np.testing.assert_allclose([base.df, base.loc, base.scale], [4.0, 0.0, 1.0])


def test_masked_and_delta_views() -> None:
    def run(u: jax.Array) -> dict[str, jax.Array]:
        masked = noise_view(dist.Normal(jnp.zeros(2), 1.0).mask(jnp.array([True, False])))
        delta = noise_view(dist.Delta(jnp.array([[1.0, 2.0]]), event_dim=1).expand([3, 1]))
        assert delta.base.batch_shape == (3, 1) and delta.base.event_shape == (2,)
        assert masked.inverse and delta.inverse
        x = delta.forward(u)
        return {
            "masked_lp": masked.base.log_prob(jnp.array([0.3, 0.3])),
            "masked_u": masked.inverse(jnp.array([1.0, 2.0])),
            "delta_x": x,
            "delta_u": delta.inverse(x),
        }

    r = _run(run, jnp.full((4, 3, 1, 2), 5.0))
    # The mask switches the noise's score off where it switches the value's off.
    assert r["masked_lp"][1] == 0.0 and r["masked_lp"][0] < 0.0
    np.testing.assert_allclose(r["masked_u"], [1.0, 2.0])
    assert r["delta_x"].shape == (4, 3, 1, 2)
    np.testing.assert_allclose(r["delta_x"], np.broadcast_to([1.0, 2.0], (4, 3, 1, 2)))
    np.testing.assert_allclose(r["delta_u"], 0.0)


def test_degenerate_cases_stay_finite() -> None:
    def run(ends: jax.Array) -> dict[str, jax.Array]:
        uniform = noise_view(dist.Uniform(jnp.array([1.0, 0.0]), jnp.array([1.0, 2.0])))
        normal = noise_view(dist.Normal(1.0, 0.0, validate_args=False))
        assert uniform.inverse and normal.inverse
        return {
            "uniform_u": uniform.inverse(jnp.array([1.0, 1.0])),
            "uniform_x": uniform.forward(jnp.array([0.7, 0.5])),
            "normal_u": normal.inverse(jnp.array(1.0)),
            **{
                type(d).__name__: noise_view(d).forward(ends)
                for d in (dist.HalfNormal(1.0), dist.Exponential(2.0), dist.HalfCauchy(1.0))
            },
        }

    r = _run(run, jnp.array([0.0, 1.0]))
    for name, value in r.items():
        assert np.all(np.isfinite(value)), name
    np.testing.assert_allclose(r["uniform_x"], [1.0, 1.0])
    assert r["normal_u"] == 0.0


# ----------------------------------------------------------------------------- discrete

DISCRETE: dict[str, Callable[[], dist.Distribution]] = {
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
GRID = np.arange(-2, 260)  # covers the support of every case above with room to spare


@pytest.mark.parametrize("name", sorted(DISCRETE))
def test_discrete_view(name: str) -> None:
    make = DISCRETE[name]
    coupling = GUMBEL_MAX if name.startswith("categorical") else INVERSE_CDF

    def run(key: jax.Array) -> dict[str, jax.Array]:
        d = make()
        view = noise_view(d)
        assert not view.invertible and view.noise_given_value is not None
        assert view.coupling == coupling and view.base.batch_shape == d.batch_shape
        k = jax.random.split(key)
        x = view.forward(view.base.sample(k[0], (N,)))
        assert x.shape == (N, *d.batch_shape)
        assert x.dtype == jax.eval_shape(d.sample, k[0]).dtype
        u = view.noise_given_value(x).sample(k[1])
        assert u.shape == (N, *view.base.batch_shape, *view.base.event_shape)
        grid = jnp.asarray(GRID, x.dtype).reshape(-1, *(1,) * len(d.batch_shape))
        return {
            "x": x,
            "freq": jnp.mean(x[None] == grid[:, None], axis=1),
            # Traced, so numpyro does not warn about values outside the support; its
            # log_prob is nan or -inf there, i.e. mass 0.
            "pmf": jnp.nan_to_num(jnp.exp(d.log_prob(grid)), nan=0.0),
            "u": u,
            "x_again": view.forward(u),
        }

    r = _run(run, jax.random.key(4))
    p = np.clip(r["pmf"], 0.0, 1.0)
    np.testing.assert_allclose(p.sum(0), 1.0, atol=1e-4)
    se = np.sqrt(np.maximum(p, 1 / N) * (1 - p) / N)
    bad = np.abs(r["freq"] - p) > 4 * se
    assert not bad.any(), GRID[bad.reshape(len(GRID), -1).any(-1)]
    # The noise drawn given the value reproduces the value exactly...
    assert np.all(np.isfinite(r["u"]))
    np.testing.assert_array_equal(r["x_again"], r["x"])
    # ... and, with x ~ d, has the prior law of the noise.
    prior = stats.gumbel_r if coupling == GUMBEL_MAX else stats.uniform
    u = r["u"].reshape(N, -1)
    for j in range(u.shape[1]):
        assert stats.kstest(u[:, j], prior.cdf).pvalue > KS_ALPHA, j


def test_wrapped_discrete_views_keep_the_coupling() -> None:
    def run(key: jax.Array) -> dict[str, jax.Array]:
        k = jax.random.split(key, 4)
        bernoulli = noise_view(dist.BernoulliProbs(jnp.array([0.2, 0.7])).to_event(1))
        categorical = noise_view(
            dist.CategoricalLogits(jnp.zeros((2, 3))).expand([4, 2]).mask(jnp.array(True))
        )
        out = {}
        for name, view, event in (
            ("bernoulli", bernoulli, (2,)),
            ("categorical", categorical, (3,)),
        ):
            assert view.noise_given_value is not None and view.coupling is not None
            assert view.base.event_shape == event
            x = view.forward(view.base.sample(k[0], (5,)))
            posterior = view.noise_given_value(x)
            assert posterior.event_shape == event
            out[name] = x
            out[name + "_again"] = view.forward(posterior.sample(k[1]))
        return out

    r = _run(run, jax.random.key(0))
    assert r["bernoulli"].shape == (5, 2) and r["categorical"].shape == (5, 4, 2)
    np.testing.assert_array_equal(r["bernoulli_again"], r["bernoulli"])
    np.testing.assert_array_equal(r["categorical_again"], r["categorical"])


def test_inverse_cdf_noise_is_uniform_on_the_cdf_step() -> None:
    def run(x: jax.Array) -> dict[str, jax.Array]:
        poisson = noise_view(dist.Poisson(2.0)).noise_given_value
        bernoulli = noise_view(dist.BernoulliProbs(0.3)).noise_given_value
        assert poisson and bernoulli
        p, b = poisson(x), bernoulli(x)
        assert isinstance(p, dist.Uniform) and isinstance(b, dist.Uniform)
        return {"poisson": jnp.stack([p.low, p.high]), "bernoulli": jnp.stack([b.low, b.high])}

    r = _run(run, jnp.array([0, 1]))
    cdf = stats.poisson(2.0).cdf
    # Up to the 64-eps trim that keeps forward(u) == x robust to cdf rounding.
    np.testing.assert_allclose(r["poisson"], [[0.0, cdf(0)], [cdf(0), cdf(1)]], atol=1e-5)
    np.testing.assert_allclose(r["bernoulli"], [[0.0, 0.7], [0.7, 1.0]], atol=1e-5)


def test_impossible_discrete_values_stay_finite() -> None:
    def run(key: jax.Array) -> list[jax.Array]:
        out = []
        for d, x in [
            (dist.BernoulliProbs(1.0), 0),
            (dist.BinomialProbs(0.0, 5), 3),
            (dist.Poisson(0.0), 2),
        ]:
            given = noise_view(d).noise_given_value
            assert given is not None
            posterior = given(jnp.array(x))
            assert isinstance(posterior, dist.Uniform)
            out += [posterior.low, posterior.high]
        categorical = noise_view(dist.CategoricalProbs(jnp.array([0.5, 0.0, 0.5])))
        assert categorical.noise_given_value is not None
        return [*out, categorical.noise_given_value(jnp.array(1)).sample(key, (50,))]

    for value in _run(run, jax.random.key(0)):
        assert np.all(np.isfinite(value))


def test_gumbel_max_posterior_matches_rejection_sampling() -> None:
    logits = np.log(np.array([0.5, 0.3, 0.2], np.float32))

    def run(keys: jax.Array) -> dict[str, jax.Array]:
        posterior = GumbelMaxPosterior(logits, 2)
        draws = posterior.sample(keys[1], (40_000,))
        return {
            "prior": jax.random.gumbel(keys[0], (200_000, 3)),
            "post": draws,
            "lp": posterior.log_prob(draws[:5]),
            "lp_ref": jnp.sum(dist.Gumbel(0.0, 1.0).log_prob(draws[:5]), -1) - jnp.log(0.2),
            "lp_wrong": GumbelMaxPosterior(logits, 0).log_prob(draws[:5]),
        }

    r = _run(run, _keys(8, 2))
    kept = r["prior"][np.argmax(logits + r["prior"], -1) == 2]  # about 40_000 draws
    post = r["post"]
    for a, b in ((post, kept), (post**2, kept**2)):
        se = np.sqrt(a.var(0) / len(a) + b.var(0) / len(b))
        assert np.all(np.abs(a.mean(0) - b.mean(0)) < 4 * se)
    # log_prob: the prior density over P(x) on the consistent set, -inf off it.
    np.testing.assert_allclose(r["lp"], r["lp_ref"], rtol=1e-5)
    assert np.all(r["lp_wrong"] == -np.inf)


def test_gumbel_max_posterior_is_exact_under_near_ties() -> None:
    logits = np.array([30.0, 30.0001, 29.9999, -50.0], np.float32)
    values = np.arange(4)

    def run(key: jax.Array) -> jax.Array:
        u = GumbelMaxPosterior(logits, values).sample(key, (N,))  # (N, 4 values, 4 logits)
        return jnp.argmax(logits + u, -1)

    np.testing.assert_array_equal(_run(run, jax.random.key(9)), np.broadcast_to(values, (N, 4)))


# ------------------------------------------------------------------------ jit and vmap


def test_forward_and_inverse_under_jit_and_vmap() -> None:
    def inverse(loc: jax.Array, x: jax.Array) -> jax.Array:
        view = noise_view(dist.MultivariateNormal(loc, _COV))
        assert view.inverse is not None
        return view.inverse(x)

    def forward(name: str) -> Callable[[jax.Array], jax.Array]:
        return lambda u: noise_view(DISCRETE[name]()).forward(u)

    def run(x: jax.Array, u: jax.Array, g: jax.Array) -> dict[str, jax.Array]:
        # vmap over the leading axis must agree with the broadcast call.
        poisson, categorical = forward("poisson"), forward("categorical_logits")
        return {
            "inverse": inverse(jnp.asarray(_LOC), x),
            "inverse_vmap": jax.vmap(inverse, (None, 0))(jnp.asarray(_LOC), x),
            "poisson": poisson(u),
            "poisson_vmap": jax.vmap(poisson)(u),
            "categorical": categorical(g),
            "categorical_vmap": jax.vmap(categorical)(g),
        }

    rng = np.random.default_rng(0)
    x = np.array([[2.0, -1.0, 0.5], [0.0, 0.0, 0.0], [1.0, 1.0, 1.0]], np.float32)
    u = rng.uniform(size=(5, 4)).astype(np.float32)
    g = rng.gumbel(size=(5, 2, 4)).astype(np.float32)
    r = _run(run, x, u, g)
    whitened = np.linalg.solve(np.linalg.cholesky(_COV), (x - _LOC).T).T
    np.testing.assert_allclose(r["inverse"], whitened, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(r["inverse_vmap"], whitened, rtol=1e-5, atol=1e-6)
    rate = np.array([0.0, 0.3, 4.0, 150.0])
    np.testing.assert_array_equal(r["poisson"], stats.poisson(rate).ppf(u))
    np.testing.assert_array_equal(r["poisson_vmap"], r["poisson"])
    logits = np.array([1.0, -2.0, 0.5, 0.0], np.float32)
    np.testing.assert_array_equal(r["categorical"], np.argmax(logits + g, -1))
    np.testing.assert_array_equal(r["categorical_vmap"], r["categorical"])


def test_noise_given_value_under_jit() -> None:
    def redraw(key: jax.Array, x: jax.Array) -> jax.Array:
        view = noise_view(dist.BinomialProbs(jnp.array([0.2, 0.6]), 9))
        assert view.noise_given_value is not None
        return view.forward(view.noise_given_value(x).sample(key))

    x = np.array([[0, 9], [4, 5]])
    np.testing.assert_array_equal(_run(redraw, jax.random.key(0), x), x)


# ---------------------------------------------------------------------------- registry


class _Shifted(dist.Distribution):
    """x = u + shift, u ~ Exponential(1); no cdf, so no fallback view."""

    support = constraints.real

    def __init__(self, shift: jax.Array):
        self.shift = shift
        super().__init__(batch_shape=jnp.shape(shift))

    def sample(self, key, sample_shape=()):  # type: ignore[override]
        return self.shift + jax.random.exponential(key, sample_shape + self.batch_shape)


class _ShiftedChild(_Shifted):
    pass


def test_user_registered_view_is_dispatched_by_mro() -> None:
    shift = np.array([1.0, 2.0], np.float32)
    with pytest.raises(NoiseViewError, match="No noise view for distribution '_Shifted'"):
        noise_view(_Shifted(shift))

    @register_noise_view(_Shifted)
    def _shifted_view(d: _Shifted) -> NoiseView:
        return NoiseView(
            dist.Exponential(jnp.ones(d.batch_shape)),
            lambda u: u + d.shift,
            lambda x: x - d.shift,
        )

    def run(keys: jax.Array) -> list[jax.Array]:
        out = []
        for d in (_Shifted(shift), _ShiftedChild(shift)):
            view = noise_view(d)
            assert view.inverse is not None
            out += [
                view.inverse(jnp.array([3.0, 3.0])),
                view.forward(view.base.sample(keys[0], (N,))),
                d.sample(keys[1], (N,)),
            ]
        return out

    r = _run(run, _keys(0, 2))
    for inverse, pushed, direct in (r[:3], r[3:]):
        np.testing.assert_allclose(inverse, [2.0, 1.0])
        _ks_columns(pushed, direct)


def test_registered_view_overrides_the_parent_family() -> None:
    class Centered(dist.Normal):
        pass

    register_noise_view(Centered)(
        lambda d: NoiseView(dist.Normal(0.0, 1.0), lambda u: u, lambda x: x, coupling="mine")
    )
    assert noise_view(Centered(5.0, 1.0)).coupling == "mine"
    assert noise_view(dist.Normal(5.0, 1.0)).coupling is None


@pytest.mark.parametrize(
    ("make", "reason"),
    [
        (lambda: dist.Dirichlet(jnp.ones(3)), "multivariate"),
        (lambda: dist.Weibull(1.0, 2.0), "cdf and icdf"),
        (lambda: dist.GeometricProbs(0.3), "discrete"),
    ],
)
def test_missing_view_error_says_how_to_register(
    make: Callable[[], dist.Distribution], reason: str
) -> None:
    d = make()
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
