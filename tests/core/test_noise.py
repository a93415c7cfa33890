"""Tests of the noise view registry (scm_ppl/noise.py).

Exact checks come first and need no sampling: every invertible view must invert, and
push its base density to the distribution's (change of variables, with the Jacobian
from autodiff); every inverse-CDF view must be the quantile function (it agrees with
SciPy's ``ppf``), so its law is exact. Sampling checks follow, the costly ones marked
``slow``.

Each test traces its distributions inside one ``jax.jit`` and checks the results with
NumPy: on a small CPU every eager jax op and every random call site costs its own XLA
compile, and that, not arithmetic, is what a test here costs. Building the views
under ``jit`` is also how the package uses them.

Sampling checks use fixed keys and N = 10_000 draws. Two-sample KS tests reject at
p < 1e-4 per coordinate: under the null the p-value is uniform, so the ~90 of them
fail by chance with probability under 1%, and with N draws per side they still
detect CDFs 0.031 apart. Frequency checks allow 4 binomial standard errors per cell
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

from scm_ppl.core.noise import (
    GUMBEL_MAX,
    INVERSE_CDF,
    GumbelMaxPosterior,
    NoiseView,
    noise_view,
    register_noise_view,
)
from scm_ppl.errors import NoiseViewError, SettingsError

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


def _lattice(shape: tuple[int, ...]) -> np.ndarray:
    """Deterministic points spread over (0.02, 0.98): a golden-ratio sequence."""
    n = int(np.prod(shape))
    return (0.02 + 0.96 * ((np.arange(n) * 0.6180339887 + 0.1) % 1.0)).reshape(shape)


def _log_abs_det(
    forward: Callable[[jax.Array], jax.Array], u: jax.Array, batch: tuple[int, ...]
) -> jax.Array:
    """log|det| of d forward / d u for each sample and batch element (a view's forward
    acts on each batch element alone, so the Jacobian is block diagonal)."""
    b = int(np.prod(batch))

    def one(sample: jax.Array) -> jax.Array:
        e = sample.size // b
        jac = jax.jacfwd(forward)(sample).reshape(b, e, b, e)
        blocks = jac[np.arange(b), :, np.arange(b), :]
        return jnp.linalg.slogdet(blocks)[1].reshape(batch)

    return jax.vmap(one)(u)


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


def test_invertible_views_invert_and_push_the_density() -> None:
    def run() -> dict[str, dict[str, jax.Array]]:
        out = {}
        for name, make in INVERTIBLE.items():
            d = make()
            view = noise_view(d)
            assert view.invertible and view.inverse is not None and view.coupling is None, name
            assert view.base.batch_shape == d.batch_shape, name
            shape = (3, *view.base.batch_shape, *view.base.event_shape)
            u = jnp.asarray(_lattice(shape), jnp.float32)
            support = view.base.support
            if getattr(support, "base_constraint", support) is constraints.real:
                u = 6.0 * u - 3.0  # spread over (-2.9, 2.9) where the noise is real-valued
            x = view.forward(u)
            out[name] = {
                "u": u,
                "u_again": view.inverse(x),
                "x": x,
                "x_again": view.forward(view.inverse(x)),
                "log_p_x": d.log_prob(x),
                "log_p_u": view.base.log_prob(u) - _log_abs_det(view.forward, u, d.batch_shape),
            }
        return out

    for name, r in _run(run).items():
        np.testing.assert_allclose(r["u_again"], r["u"], rtol=1e-4, atol=1e-5, err_msg=name)
        np.testing.assert_allclose(r["x_again"], r["x"], rtol=1e-5, atol=1e-6, err_msg=name)
        # Change of variables: forward pushes the base law to exactly d's law.
        np.testing.assert_allclose(r["log_p_x"], r["log_p_u"], rtol=1e-4, atol=1e-4, err_msg=name)


@pytest.mark.parametrize(
    "name", [n if n == "normal" else pytest.param(n, marks=pytest.mark.slow) for n in INVERTIBLE]
)
def test_invertible_view_by_sampling(name: str) -> None:
    make = INVERTIBLE[name]

    def run(key: jax.Array) -> dict[str, jax.Array]:
        d = make()
        view = noise_view(d)
        assert view.inverse is not None
        k = jax.random.split(key)
        direct = d.sample(k[0], (N,))
        u = view.inverse(direct[:7])
        assert u.shape == (7, *view.base.batch_shape, *view.base.event_shape)
        return {
            "x": direct[:7],
            "x_again": view.forward(u),
            "pushed": view.forward(view.base.sample(k[1], (N,))),
            "direct": direct,
        }

    r = _run(run, jax.random.key(0))
    np.testing.assert_allclose(r["x_again"], r["x"], rtol=1e-5, atol=1e-6)
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


def _expit(a: list[float]) -> np.ndarray:
    return 1 / (1 + np.exp(-np.array(a)))


# Sites read through the inverse-CDF coupling, each with SciPy's version of its law.
# Counts stay moderate: in float32 jax's gammaincc/betainc lose accuracy for counts in
# the thousands (see the module notes).
INVERSE_CDF_CASES: dict[str, tuple[Callable[[], dist.Distribution], Any, tuple[int, ...]]] = {
    "bernoulli_probs": (
        lambda: dist.BernoulliProbs(jnp.array([0.0, 0.2, 0.7, 1.0])),
        stats.bernoulli(np.array([0.0, 0.2, 0.7, 1.0])),
        (4,),
    ),
    "bernoulli_logits": (
        lambda: dist.BernoulliLogits(jnp.array([-2.0, 0.0, 3.0])).expand([2, 3]),
        stats.bernoulli(_expit([-2.0, 0.0, 3.0])),
        (2, 3),
    ),
    "poisson": (
        lambda: dist.Poisson(jnp.array([0.0, 0.3, 4.0, 40.0])),
        stats.poisson(np.array([0.0, 0.3, 4.0, 40.0])),
        (4,),
    ),
    "binomial_probs": (
        lambda: dist.BinomialProbs(jnp.array([0.0, 0.3, 0.9, 1.0]), 12),
        stats.binom(12, np.array([0.0, 0.3, 0.9, 1.0])),
        (4,),
    ),
    "binomial_logits": (
        lambda: dist.BinomialLogits(jnp.array([-1.0, 2.0]), jnp.array([5, 40])),
        stats.binom(np.array([5, 40]), _expit([-1.0, 2.0])),
        (2,),
    ),
    "negbinomial_fallback": (
        lambda: dist.NegativeBinomial2(jnp.array([3.0, 40.0]), 2.0),
        stats.nbinom(2.0, 2.0 / (2.0 + np.array([3.0, 40.0]))),
        (2,),
    ),
    "discrete_uniform_fallback": (
        lambda: dist.DiscreteUniform(jnp.array([-2, 3]), jnp.array([1, 3])),
        stats.randint(np.array([-2, 3]), np.array([2, 4])),
        (2,),
    ),
}


@pytest.mark.parametrize(
    "name",
    [
        # The logits variant differs only in how p is read, and betainc compiles slowly.
        pytest.param(n, marks=pytest.mark.slow) if n == "binomial_logits" else n
        for n in INVERSE_CDF_CASES
    ],
)
def test_inverse_cdf_view_is_the_quantile_function(name: str) -> None:
    make, ref, batch = INVERSE_CDF_CASES[name]
    m = 300
    p = _lattice((m, *batch)).astype(np.float32)
    x_ref = np.broadcast_to(ref.ppf(p), p.shape)

    def run(key: jax.Array, p: jax.Array, x_ref: jax.Array) -> dict[str, jax.Array]:
        d = make()
        view = noise_view(d)
        assert not view.invertible and view.noise_given_value is not None
        assert view.coupling == INVERSE_CDF and view.base.batch_shape == d.batch_shape
        posterior = view.noise_given_value(x_ref)
        assert isinstance(posterior, dist.Uniform)
        # One forward call for both inputs: the cdf search is the costly compile.
        both = view.forward(jnp.concatenate([p, posterior.sample(key)]))
        assert both.dtype == jax.eval_shape(d.sample, key).dtype
        return {"x": both[:m], "x_again": both[m:], "low": posterior.low, "high": posterior.high}

    r = _run(run, jax.random.key(3), p, x_ref.astype(np.int32))
    # forward is the quantile function, so forward(U) has exactly the law of d; allow
    # float32 rounding of F only for points within 1e-5 of a step of the cdf.
    near_step = (ref.cdf(x_ref) - p < 1e-5) | (p - ref.cdf(x_ref - 1) < 1e-5)
    assert np.all((r["x"] == x_ref) | near_step)
    assert near_step.mean() < 0.01
    # u | x is uniform on the cdf step of x, and every draw maps back to x exactly.
    # (The tolerance is the float32 accuracy of gammaincc/betainc, not the 64-eps trim.)
    np.testing.assert_allclose(r["low"], ref.cdf(x_ref - 1), atol=1e-4)
    np.testing.assert_allclose(r["high"], ref.cdf(x_ref), atol=1e-4)
    np.testing.assert_array_equal(r["x_again"], x_ref)


# Every discrete entry, for the sampling checks.
DISCRETE: dict[str, Callable[[], dist.Distribution]] = {
    **{name: make for name, (make, _, _) in INVERSE_CDF_CASES.items()},
    "categorical_probs": lambda: dist.CategoricalProbs(
        jnp.array([[0.2, 0.3, 0.5], [0.9, 0.0, 0.1]])
    ),
    "categorical_logits": lambda: dist.CategoricalLogits(jnp.array([1.0, -2.0, 0.5, 0.0])).expand(
        [2]
    ),
    "poisson_large": lambda: dist.Poisson(jnp.array([150.0])),
}
GRID = np.arange(-2, 260)  # covers the support of every case above with room to spare


@pytest.mark.parametrize(
    "name",
    [n if n == "categorical_probs" else pytest.param(n, marks=pytest.mark.slow) for n in DISCRETE],
)
def test_discrete_view_by_sampling(name: str) -> None:
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
        bernoulli = noise_view(dist.BernoulliProbs(jnp.array([0.2, 0.7])).to_event(1))
        categorical = noise_view(
            dist.CategoricalLogits(jnp.zeros((2, 3))).expand([4, 2]).mask(jnp.array(True))
        )
        out = {}
        for name, view, u in (
            ("bernoulli", bernoulli, _lattice((5, 2))),
            ("categorical", categorical, 6.0 * _lattice((5, 4, 2, 3)) - 3.0),
        ):
            assert view.noise_given_value is not None and view.coupling is not None
            assert view.base.event_shape == u.shape[-1:]
            x = view.forward(jnp.asarray(u, jnp.float32))
            posterior = view.noise_given_value(x)
            assert posterior.event_shape == u.shape[-1:]
            out[name] = x
            out[name + "_again"] = view.forward(posterior.sample(key))
        return out

    r = _run(run, jax.random.key(0))
    assert r["bernoulli"].shape == (5, 2) and r["categorical"].shape == (5, 4, 2)
    np.testing.assert_array_equal(r["bernoulli_again"], r["bernoulli"])
    np.testing.assert_array_equal(r["categorical_again"], r["categorical"])


def test_impossible_discrete_values_stay_finite() -> None:
    def run(key: jax.Array) -> list[jax.Array]:
        out = []
        for d, x in [
            (dist.BernoulliProbs(1.0), 0),
            (dist.DiscreteUniform(0, 3), 7),
            (dist.CategoricalProbs(jnp.array([0.5, 0.0, 0.5])), 1),
        ]:
            given = noise_view(d).noise_given_value
            assert given is not None
            out.append(given(jnp.array(x)).sample(key, (50,)))
        return out

    for u in _run(run, jax.random.key(0)):
        assert np.all(np.isfinite(u))


def test_gumbel_max_posterior_is_exact_and_matches_rejection_sampling() -> None:
    # Row 0 has a category of probability zero, row 1 near ties at a large scale.
    logits = np.array(
        [[np.log(0.5), np.log(0.3), np.log(0.2), -np.inf], [30.0, 30.0001, 29.9999, -50.0]],
        np.float32,
    )[:, None, :]
    values = np.arange(4)

    def run(keys: jax.Array) -> dict[str, jax.Array]:
        posterior = GumbelMaxPosterior(logits, values)  # batch (2 rows, 4 values)
        draws = posterior.sample(keys[1], (20_000,))
        given_2 = GumbelMaxPosterior(logits[0, 0], 2)
        return {
            "prior": jax.random.gumbel(keys[0], (100_000, 4)),
            "post": draws,
            "chosen": jnp.argmax(logits + draws, -1),
            "lp": given_2.log_prob(draws[:5, 0, 2]),
            "lp_ref": jnp.sum(dist.Gumbel(0.0, 1.0).log_prob(draws[:5, 0, 2]), -1) - jnp.log(0.2),
            "lp_wrong": GumbelMaxPosterior(logits[0, 0], 0).log_prob(draws[:5, 0, 2]),
        }

    r = _run(run, _keys(8, 2))
    assert np.all(np.isfinite(r["post"]))
    # forward(u) == x for every draw, except value 3 of row 0, which has probability 0.
    hit = r["chosen"] == values
    assert hit[:, 1].all() and hit[:, 0, :3].all()
    # The law: moments of u given x = 2 in row 0 against rejection sampling from the prior.
    prior = r["prior"]
    kept = prior[np.argmax(logits[0, 0] + prior, -1) == 2]  # about 20_000 draws
    post = r["post"][:, 0, 2]
    for a, b in ((post, kept), (post**2, kept**2)):
        se = np.sqrt(a.var(0) / len(a) + b.var(0) / len(b))
        assert np.all(np.abs(a.mean(0) - b.mean(0)) < 4 * se)
    # log_prob: the prior density over P(x) on the consistent set, -inf off it.
    np.testing.assert_allclose(r["lp"], r["lp_ref"], rtol=1e-5)
    assert np.all(r["lp_wrong"] == -np.inf)


def test_posterior_noise_laws_need_a_key_to_sample() -> None:
    from scm_ppl.core.posterior_draws import PosteriorDraws

    with pytest.raises(SettingsError, match=r"GumbelMaxPosterior.sample needs a PRNG key"):
        GumbelMaxPosterior(jnp.zeros(3), 1).sample(None)
    with pytest.raises(SettingsError, match=r"PosteriorDraws.sample needs a PRNG key"):
        PosteriorDraws(jnp.zeros((4, 2))).sample(None)


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
        # The bisection (a fori_loop) runs under vmap; a cheap cdf keeps the compile short.
        search, categorical = forward("discrete_uniform_fallback"), forward("categorical_logits")
        return {
            "inverse": inverse(jnp.asarray(_LOC), x),
            "inverse_vmap": jax.vmap(inverse, (None, 0))(jnp.asarray(_LOC), x),
            "search": search(u),
            "search_vmap": jax.vmap(search)(u),
            "categorical": categorical(g),
            "categorical_vmap": jax.vmap(categorical)(g),
        }

    rng = np.random.default_rng(0)
    x = np.array([[2.0, -1.0, 0.5], [0.0, 0.0, 0.0], [1.0, 1.0, 1.0]], np.float32)
    u = rng.uniform(size=(5, 2)).astype(np.float32)
    g = rng.gumbel(size=(5, 2, 4)).astype(np.float32)
    r = _run(run, x, u, g)
    whitened = np.linalg.solve(np.linalg.cholesky(_COV), (x - _LOC).T).T
    np.testing.assert_allclose(r["inverse"], whitened, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(r["inverse_vmap"], whitened, rtol=1e-5, atol=1e-6)
    ref = INVERSE_CDF_CASES["discrete_uniform_fallback"][1]
    np.testing.assert_array_equal(r["search"], ref.ppf(u))
    np.testing.assert_array_equal(r["search_vmap"], r["search"])
    logits = np.array([1.0, -2.0, 0.5, 0.0], np.float32)
    np.testing.assert_array_equal(r["categorical"], np.argmax(logits + g, -1))
    np.testing.assert_array_equal(r["categorical_vmap"], r["categorical"])


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


def test_a_cdf_fallback_whose_icdf_cannot_run_is_refused_up_front():
    # numpyro's Gamma.icdf needs tensorflow_probability, which scm_ppl does not depend on
    with pytest.raises(NoiseViewError, match=r"'Gamma' \(its icdf cannot run here: ImportError"):
        noise_view(dist.Gamma(2.0, 1.0))


def test_a_transform_that_is_not_one_to_one_has_no_view():
    # FoldedDistribution is |X|: two noise values give each value, so nothing inverts
    with pytest.raises(NoiseViewError, match=r"'FoldedDistribution' \(its transform AbsTransform"):
        noise_view(dist.FoldedDistribution(dist.Normal(0.0, 1.0)))
