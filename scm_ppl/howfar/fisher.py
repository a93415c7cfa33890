"""The observational log-likelihood of a fitted SCM as a function of one flat parameter
vector, and the spectrum of its Fisher information (dense or matrix-free).

The vector holds every mechanism parameter of a :class:`~scm_ppl.FittedSCM` in the
unconstrained space the optimiser works in: ``numpyro.param`` sites (Equinox and FlowJAX
modules are pytrees of arrays, flattened leaf by leaf) and MAP global latent sites.

Two Fisher informations, both ``P x P`` and evaluated at the fit:

* ``"score"`` (default): the outer product of the per-unit scores, ``J^T J`` with
  ``J[i] = d log p(row_i) / d theta``. Positive semi-definite at any parameter value, and
  its null space is the set of directions that change no unit's likelihood to first order,
  whether or not the fit sits exactly at the optimum.
* ``"hessian"``: the observed information, minus the Hessian of the total log-likelihood.
  It equals the score form in expectation at the true parameters; away from an optimum it
  can have negative eigenvalues (the spectrum then reports them).

Dense: the matrix is built column block by column block from Jacobian-vector products
(memory ``n x P`` for ``J``), then ``numpy.linalg.eigh`` in float64. Matrix-free: the
implicitly restarted Lanczos method of ARPACK (:func:`scipy.sparse.linalg.eigsh`) on the
jitted product ``v -> F v`` (one forward and one reverse pass over the data), for the top
and bottom eigenpairs; memory ``O(P k)`` for ``k`` eigenpairs.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax.flatten_util import ravel_pytree
from numpyro import handlers
from numpyro.distributions.transforms import biject_to

from scm_ppl.learn.data import discover, prepare

__all__ = ["Likelihood", "build_likelihood", "dense_spectrum", "fit_at", "matrix_free_spectrum"]

_COLUMN_BLOCK = 64  # basis vectors per vmapped block when a dense matrix is assembled


@dataclass(frozen=True)
class Likelihood:
    """The per-unit log-likelihood of the data as a function of the flat parameters."""

    theta: jax.Array
    per_unit: Callable[[jax.Array], jax.Array]
    to_scm: Callable[[jax.Array], Any]
    slices: dict[str, tuple[int, int]]
    num_rows: int


def _unit_log_likelihood(tr: Mapping[str, Any], plate: str, n: int, skip: frozenset) -> jax.Array:
    """Per-unit log density ``(n,)`` of the observed sample sites in the unit plate."""
    total = jnp.zeros(n)
    for name, site in tr.items():
        if site["type"] != "sample" or name in skip or not site["is_observed"]:
            continue
        frame = next((f for f in site["cond_indep_stack"] if f.name == plate), None)
        if frame is None:
            continue
        lp = site["fn"].log_prob(site["value"])
        axis = jnp.ndim(lp) + frame.dim
        total = total + jnp.sum(lp, axis=tuple(i for i in range(jnp.ndim(lp)) if i != axis))
    return total


def fit_at(fitted: Any, params: dict[str, Any], point: dict[str, Any]) -> Any:
    """``fitted`` at other values: ``params`` and MAP ``point`` values of its global latent
    sites, with no posterior; its program, history and settings kept."""
    from scm_ppl.learn.fitting import FittedSCM

    return FittedSCM(
        base_model=fitted.base_model,
        params=params,
        point=point,
        posterior_loc={},
        posterior_scale={},
        posterior_samples={},
        history=fitted.history,
        settings=fitted.settings,
    )


def build_likelihood(
    fitted: Any,
    data: Mapping[str, Any],
    model_kwargs: Mapping[str, Any] | None,
    num_particles: int,
    rng_key: jax.Array,
) -> Likelihood:
    """The observational log-likelihood of ``data`` under ``fitted``'s program.

    Per-unit latent sites are integrated out by importance sampling from their prior with
    ``num_particles`` draws under the fixed key ``rng_key`` (a smooth, deterministic
    function of the parameters); without them the likelihood is exact.
    """
    settings = fitted.settings
    plate, size_arg = settings["plate"], settings["size_arg"]
    kwargs = (
        dict(settings.get("model_kwargs") or {}) if model_kwargs is None else dict(model_kwargs)
    )
    latent = tuple(settings.get("latent", ()))
    model = fitted.base_model
    prepared = prepare(model, data, None, None, latent, plate, size_arg, kwargs)
    structure = discover(model, plate, size_arg, kwargs, jax.random.key(0))
    columns: dict[str, Any] = {k: jnp.asarray(v) for k, v in prepared.columns.items()}
    n = len(prepared.labels)
    point = dict(fitted.point) or {k: jnp.asarray(v) for k, v in fitted.posterior_mean.items()}
    unconstrained = {
        "params": {
            k: jax.tree.map(biject_to(structure.constraints[k]).inv, v)
            for k, v in fitted.params.items()
        },
        "point": {k: biject_to(structure.supports[k]).inv(v) for k, v in point.items()},
    }
    theta, unravel = ravel_pytree(unconstrained)
    slices, start = {}, 0
    for group in ("params", "point"):
        for k in sorted(unconstrained[group]):
            size = ravel_pytree(unconstrained[group][k])[0].size
            slices[k] = (start, start + size)
            start += size

    def constrain(flat: jax.Array) -> tuple[dict[str, Any], dict[str, Any]]:
        tree = unravel(flat)
        params = {
            k: jax.tree.map(biject_to(structure.constraints[k]), v)
            for k, v in tree["params"].items()
        }
        values = {k: biject_to(structure.supports[k])(v) for k, v in tree["point"].items()}
        return params, values

    skip = frozenset(latent)

    def per_unit(flat: jax.Array) -> jax.Array:
        params, values = constrain(flat)
        program = handlers.condition(
            handlers.substitute(model, data={**params, **values}), data=columns
        )

        def once(key: jax.Array) -> jax.Array:
            tr = handlers.trace(handlers.seed(program, key)).get_trace(**{size_arg: n}, **kwargs)
            return _unit_log_likelihood(tr, plate, n, skip)

        if not latent:
            return once(rng_key)
        draws = jax.vmap(once)(jax.random.split(rng_key, num_particles))
        return jax.nn.logsumexp(draws, axis=0) - math.log(num_particles)

    def to_scm(flat: jax.Array) -> Any:
        return fit_at(fitted, *constrain(flat))

    return Likelihood(theta=theta, per_unit=per_unit, to_scm=to_scm, slices=slices, num_rows=n)


def fisher_vector_product(lik: Likelihood, kind: str) -> Callable[[jax.Array], jax.Array]:
    """``v -> F v`` at the fit, jitted: ``J^T (J v)`` (score) or ``-H v`` (hessian)."""
    theta = lik.theta
    if kind == "score":
        _, pullback = jax.vjp(lik.per_unit, theta)

        def product(v: jax.Array) -> jax.Array:
            _, jv = jax.jvp(lik.per_unit, (theta,), (v,))
            return pullback(jv)[0]

    else:

        def total(flat: jax.Array) -> jax.Array:
            return jnp.sum(lik.per_unit(flat))

        def product(v: jax.Array) -> jax.Array:
            return -jax.jvp(jax.grad(total), (theta,), (v,))[1]

    return jax.jit(product)


def _blocks(fn: Callable[[jax.Array], jax.Array], size: int) -> np.ndarray:
    """``fn`` applied to every basis vector of R^size, stacked as rows (float64)."""
    block = min(_COLUMN_BLOCK, size)
    batched = jax.jit(jax.vmap(fn))
    rows = []
    for start in range(0, size, block):
        index = np.arange(start, min(start + block, size))
        basis = np.zeros((block, size), np.float32)
        basis[np.arange(len(index)), index] = 1.0
        rows.append(np.asarray(batched(jnp.asarray(basis)), np.float64)[: len(index)])
    return np.concatenate(rows, axis=0)


def dense_spectrum(lik: Likelihood, kind: str) -> tuple[np.ndarray, np.ndarray]:
    """Every eigenpair of the Fisher information, eigenvalues descending (float64)."""
    size = lik.theta.size
    if kind == "score":
        jacobian_t = _blocks(lambda v: jax.jvp(lik.per_unit, (lik.theta,), (v,))[1], size)
        matrix = jacobian_t @ jacobian_t.T  # (P, n) @ (n, P): J^T J in float64
    else:
        matrix = _blocks(fisher_vector_product(lik, kind), size)
        matrix = 0.5 * (matrix + matrix.T)
    values, vectors = np.linalg.eigh(matrix)
    return values[::-1], vectors[:, ::-1]


def matrix_free_spectrum(
    lik: Likelihood, kind: str, num_eigs: int, rng_seed: int, rtol: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, bool]:
    """The ``num_eigs`` largest and smallest eigenpairs (descending), and whether the
    iterations converged for all of them.

    The bottom eigenpairs are iterated until each residual ``|F v - lambda v|`` is at most
    ``rtol`` times the largest eigenvalue: then every Ritz value below that threshold
    certifies a true eigenvalue below twice it (and one above it, one above zero).

    The top end by implicitly restarted Lanczos (ARPACK). The bottom end by LOBPCG, a block
    method: null eigenvalues come in clusters of equal (zero) values, which single-vector
    Lanczos resolves one copy at a time, while a block of ``num_eigs`` vectors finds a
    cluster of that many at once.
    """
    from scipy.sparse import linalg

    # scipy's stubs mistype these signatures (tol: int; LinearOperator's keywords)
    make_operator: Any = linalg.LinearOperator
    eigsh: Any = linalg.eigsh

    size = lik.theta.size
    product = fisher_vector_product(lik, kind)
    block_product = jax.jit(jax.vmap(product, in_axes=1, out_axes=1))

    def matmat(v: np.ndarray) -> np.ndarray:
        v2 = np.asarray(v).reshape(size, -1)
        return np.asarray(block_product(jnp.asarray(v2, jnp.float32)), np.float64)

    operator = make_operator(
        (size, size), matvec=lambda v: matmat(v).ravel(), matmat=matmat, dtype=np.float64
    )
    rng = np.random.default_rng(rng_seed)
    k = min(num_eigs, size - 1)
    converged = True
    try:
        top_values, top_vectors = eigsh(
            operator, k=k, which="LA", v0=rng.standard_normal(size), tol=1e-6, maxiter=50 * size
        )
    except linalg.ArpackNoConvergence as err:  # keep what converged, say so
        converged = False
        top_values, top_vectors = err.eigenvalues, err.eigenvectors
    largest = float(np.max(np.abs(top_values))) if top_values.size else 1.0
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # its own convergence notes: judged below instead
        bottom_values, bottom_vectors = linalg.lobpcg(
            operator,
            rng.standard_normal((size, k)),
            largest=False,
            tol=0.1 * rtol * largest,
            maxiter=max(500, 20 * k),
        )
    residuals = np.linalg.norm(matmat(bottom_vectors) - bottom_vectors * bottom_values, axis=0)
    converged = converged and bool(np.all(residuals <= rtol * largest))
    top = np.argsort(top_values)[::-1]
    bottom = np.argsort(bottom_values)[::-1]
    return (
        top_values[top],
        top_vectors[:, top],
        bottom_values[bottom],
        bottom_vectors[:, bottom],
        converged,
    )
