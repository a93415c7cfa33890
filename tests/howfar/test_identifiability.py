"""Mechanism-level identifiability: the Fisher null space and query sensitivity
(``scm_ppl.identifiability.local_identifiability``), against closed forms."""

from __future__ import annotations

import dataclasses
import importlib

import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as dist
import pytest

from models import hidden_mediator as hm
from scm_ppl import additive_noise, fit
from scm_ppl.errors import DataError, IdentifiabilityError, SettingsError
from scm_ppl.howfar.fisher_report import intervened_mean, local_identifiability

identifiability = importlib.import_module("scm_ppl.howfar.fisher_report")


def _fit(model, data, epochs=150, **kwargs):
    return fit(
        model,
        data,
        num_epochs=epochs,
        batch_size=None,
        learning_rate=0.05,
        progress=False,
        validation_fraction=0.0,
        **kwargs,
    )


@pytest.fixture(scope="module")
def chain_data():
    return hm.sample(400, seed=3)


@pytest.fixture(scope="module")
def chain_fit(chain_data):
    return _fit(hm.chain_model, chain_data)


def _at(fitted, **params):
    values = {k: jnp.asarray(v, jnp.float32) for k, v in {**fitted.params, **params}.items()}
    return dataclasses.replace(fitted, params=values)


def _effect_of_x(scm):
    return intervened_mean(scm, {"x": 1.0}, "y", num_samples=2000)


def _effect_of_m(scm):
    return intervened_mean(scm, {"m": 1.0}, "y", num_samples=2000)


@pytest.mark.parametrize("a, b", [(None, None), (0.7, 2.1), (-1.3, 0.4)])
def test_hidden_chain_has_one_null_direction_along_the_rescaling(chain_fit, chain_data, a, b):
    """``y = b (a x) + noise``: the likelihood depends on ``a b`` only, so the orbit
    ``c -> (c a, b / c)`` has tangent ``(a, -b)`` at ``c = 1``: one null direction, at any
    parameter value (the score-outer-product Fisher is rank-deficient everywhere)."""
    fitted = chain_fit if a is None else _at(chain_fit, a=a, b=b)
    rep = local_identifiability(fitted, chain_data)
    assert rep.null_dim == 1 and rep.null_dim_exact
    assert rep.method == "dense" and rep.kind == "score"
    assert rep.eigenvalues[1] > 1e3 * rep.tolerance  # the two other directions are seen
    a_, b_ = float(fitted.params["a"]), float(fitted.params["b"])
    direction = np.array([a_, -b_, 0.0]) / np.hypot(a_, b_)  # flat order: a, b, sigma
    assert abs(abs(rep.null_basis[:, 0] @ direction) - 1.0) < 1e-6
    assert rep.null_loadings()["sigma"] < 1e-10


@pytest.mark.parametrize("a, b", [(None, None), (0.7, 2.1)])
def test_effect_of_x_is_insensitive_and_effect_of_m_is_not(chain_fit, chain_data, a, b):
    """``E[y | do(x=1)] = a b`` has gradient ``(b, a, .)``, orthogonal to ``(a, -b, 0)``;
    ``E[y | do(m=1)] = b`` has gradient ``(0, 1, .)``, whose projection onto the null
    direction has norm ``b / sqrt(a^2 + b^2)``."""
    fitted = chain_fit if a is None else _at(chain_fit, a=a, b=b)
    rep = local_identifiability(fitted, chain_data)
    assert rep.sensitivity(_effect_of_x, relative=True) < 1e-6
    a_, b_ = float(fitted.params["a"]), float(fitted.params["b"])
    expected = abs(b_) / np.hypot(a_, b_)
    assert rep.sensitivity(_effect_of_m) == pytest.approx(expected, rel=1e-5)


def test_one_weight_chain_has_no_null_direction(chain_data):
    rep = local_identifiability(_fit(hm.direct_model, chain_data), chain_data)
    assert rep.null_dim == 0 and rep.num_params == 2
    assert rep.null_loadings() == {}
    assert rep.sensitivity(_effect_of_x) == 0.0


@pytest.mark.parametrize("dims", [(3, 2, 3), (4, 3, 5)])
def test_mixing_matrix_null_dimension_is_that_of_its_symmetry_group(dims):
    """``m = A x`` (hidden, ``A`` is ``k x p``), ``y ~ N(B m, s^2 I)`` (``B`` is ``q x k``).

    The likelihood depends on ``(A, B)`` only through ``M = B A``. For every invertible
    ``G`` in ``GL(k)``, ``(G A, B G^{-1})`` gives the same ``M``: the fibre through a point
    contains the orbit of ``GL(k)``, a group of dimension ``k^2``. When ``k <= min(p, q)``
    and ``A``, ``B`` have full rank ``k``, the stabiliser is trivial (``G A = A`` with
    ``A`` of full row rank forces ``G = I``), so the orbit has dimension ``k^2``; and the
    fibre is exactly the orbit (two factorisations of a rank-``k`` matrix differ by an
    element of ``GL(k)``). The map ``(A, B) -> B A`` then has rank
    ``pk + qk - k^2`` (the dimension of the rank-``k`` ``q x p`` matrices), so the Fisher
    information, whose null space is the kernel of the differential of that map, has
    null dimension exactly ``k^2``.
    """
    p, k, q = dims
    data = hm.sample_mixing(500, seed=1, dim_x=p, dim_m=k, dim_y=q)
    kwargs = {"dim_x": p, "dim_m": k, "dim_y": q}
    fitted = _fit(hm.mixing_model, data, epochs=100, model_kwargs=kwargs)
    rep = local_identifiability(fitted, data)
    assert rep.num_params == p * k + q * k
    assert rep.null_dim == k * k
    assert rep.eigenvalues[p * k + q * k - k * k - 1] > 1e4 * rep.tolerance  # a clear gap


@pytest.mark.slow  # Lanczos + LOBPCG against the dense spectrum, ~10 s
def test_matrix_free_matches_dense_on_a_mid_size_model():
    p, k, q = 10, 6, 10  # 120 parameters, null dimension 36, rank 84
    data = hm.sample_mixing(400, seed=2, dim_x=p, dim_m=k, dim_y=q)
    kwargs = {"dim_x": p, "dim_m": k, "dim_y": q}
    fitted = _fit(hm.mixing_model, data, epochs=60, model_kwargs=kwargs)
    dense = local_identifiability(fitted, data, method="dense")
    full = local_identifiability(fitted, data, method="matrix-free", num_eigs=90)
    few = local_identifiability(fitted, data, method="matrix-free", num_eigs=10)
    assert dense.null_dim == k * k
    assert full.method == "matrix-free" and full.null_dim_exact and full.null_dim == k * k
    np.testing.assert_allclose(few.eigenvalues[:10], dense.eigenvalues[:10], rtol=1e-4)
    assert few.null_dim == 10 and not few.null_dim_exact  # all 10 bottom ones null: a bound

    # sensitivity of a query that moves A alone: exact on both paths
    def query(scm):
        return jnp.sum(scm.params["A"][0] ** 2)

    expected = dense.sensitivity(query)
    assert expected > 0.1
    assert full.sensitivity(query) == pytest.approx(expected, rel=1e-3)


def test_neural_mechanism_parameters_are_flattened():
    def model(n):
        with numpyro.plate("unit", n):
            x = numpyro.sample("x", dist.Normal(0.0, 1.0))
            additive_noise("y", x[..., None], hidden=(4,))

    data = hm.sample(100)
    fitted = _fit(model, data, epochs=5)
    rep = local_identifiability(fitted, data)
    # MLP 1 -> 4 -> 1: 4 + 4 + 4 + 1 weights and biases, plus the noise scale
    assert rep.num_params == 14
    assert set(rep.param_slices) == {"y.net$params", "y.scale"}
    assert rep.eigenvalues[0] > 0


def test_hessian_kind_sees_curvature_away_from_the_optimum(chain_fit, chain_data):
    """Minus the Hessian of ``f(a b)`` is ``-f'' g g^T - f' [[0, 1], [1, 0]]``: away from an
    optimum (``f' != 0``) the second term gives the null direction a nonzero eigenvalue,
    which the score form does not."""
    moved = _at(chain_fit, a=0.5, b=0.5)
    hess = local_identifiability(moved, chain_data, kind="hessian")
    score = local_identifiability(moved, chain_data)
    assert hess.kind == "hessian" and hess.null_dim == 0
    assert hess.eigenvalues[-1] < -hess.tolerance  # not a maximum: negative curvature
    assert score.null_dim == 1


# ------------------------------------------------------------------------- bad input


def test_bad_inputs_are_clear_errors(chain_fit, chain_data):
    with pytest.raises(SettingsError, match="fitted must be a FittedSCM"):
        local_identifiability(hm.chain_model, chain_data)  # type: ignore[arg-type]
    with pytest.raises(DataError, match=r"lack the per-unit sample site\(s\) \['y'\]"):
        local_identifiability(chain_fit, {"x": chain_data["x"]})
    with pytest.raises(DataError, match="not sites of the program"):
        local_identifiability(chain_fit, {**chain_data, "q": chain_data["x"]})
    with pytest.raises(SettingsError, match=r"Unknown kind 'fisher'; choose one of \['score'"):
        local_identifiability(chain_fit, chain_data, kind="fisher")
    with pytest.raises(SettingsError, match=r"Unknown method 'lanczos'; choose one of \['auto'"):
        local_identifiability(chain_fit, chain_data, method="lanczos")
    with pytest.raises(IdentifiabilityError, match="rtol must be a number in"):
        local_identifiability(chain_fit, chain_data, rtol=2.0)
    with pytest.raises(SettingsError, match="num_eigs must be a positive integer"):
        local_identifiability(chain_fit, chain_data, num_eigs=0)
    with pytest.raises(SettingsError, match=r"num_particles must be a positive integer; got 1\.5"):
        local_identifiability(chain_fit, chain_data, num_particles=1.5)  # type: ignore[arg-type]


def test_bad_queries_are_clear_errors(chain_fit, chain_data):
    rep = local_identifiability(chain_fit, chain_data)
    with pytest.raises(IdentifiabilityError, match=r"one real number \(a scalar\).*shape \(2,\)"):
        rep.sensitivity(lambda scm: jnp.stack([scm.params["a"], scm.params["b"]]))
    with pytest.raises(IdentifiabilityError, match="cannot be differentiated"):
        rep.sensitivity(lambda scm: float(np.asarray(scm.params["a"])))
    with pytest.raises(SettingsError, match="query must be a function of the fitted SCM"):
        rep.sensitivity(3.0)  # type: ignore[arg-type]
    with pytest.raises(IdentifiabilityError, match="Unknown site 'z'"):
        intervened_mean(chain_fit, {"x": 1.0}, "z")


def test_public_names():
    import scm_ppl

    for name in ("local_identifiability", "refit_ensemble", "contraction", "intervened_mean"):
        assert getattr(scm_ppl.howfar, name) is getattr(identifiability, name)
