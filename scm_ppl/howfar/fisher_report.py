"""How far do the data pin the mechanisms down? Mechanism-level identifiability.

Observational data fix a distribution, not the mechanisms that produce it. Three tools
measure the leftover freedom of a learned SCM, and whether a causal answer depends on it:

* :func:`local_identifiability`: the Fisher information of the observational likelihood
  over every mechanism parameter at a fit, its eigen-spectrum, the null directions (that
  change no unit's likelihood) and :meth:`IdentifiabilityReport.sensitivity`, how fast a
  query moves along them (0: locally identified);
* :func:`refit_ensemble`: independent fits from different starting points, which of them
  fit the data equally well, and how far their answers spread
  (:meth:`RefitEnsemble.spread`);
* :func:`contraction`: for Bayesian mechanisms, whether a query's posterior shrinks like
  ``n^{-1/2}`` as the data grow (identified) or plateaus (not).

:func:`intervened_mean` writes an interventional mean that is differentiable in the
parameters (a fixed key: common random numbers), the usual query for
:meth:`~IdentifiabilityReport.sensitivity`.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from numpyro import handlers

from scm_ppl.core.handlers import do
from scm_ppl.core.validate import check_callable, check_method, positive_int
from scm_ppl.errors import IdentifiabilityError, InferenceWarning, SettingsError
from scm_ppl.howfar.contraction import ContractionResult, contraction
from scm_ppl.howfar.fisher import (
    Likelihood,
    build_likelihood,
    dense_spectrum,
    matrix_free_spectrum,
)
from scm_ppl.howfar.refits import RefitEnsemble, RefitSpread, refit_ensemble

__all__ = [
    "ContractionResult",
    "IdentifiabilityReport",
    "RefitEnsemble",
    "RefitSpread",
    "contraction",
    "intervened_mean",
    "local_identifiability",
    "refit_ensemble",
]

_MAX_DENSE = 2000  # parameters up to which "auto" builds the Fisher matrix densely
_DEFAULT_RTOL = {"dense": 1e-6, "matrix-free": 1e-5}  # float32 products: coarser floor


@dataclass(frozen=True, eq=False, repr=False)
class IdentifiabilityReport:
    """The local identifiability of a fit: the Fisher spectrum and its null space.

    Attributes
    ----------
    eigenvalues
        Eigenvalues of the Fisher information, descending. ``method="dense"``: all of
        them; ``"matrix-free"``: the largest and the smallest ``num_eigs`` (their
        positions in the full spectrum are :attr:`eigenvalue_ranks`).
    eigenvalue_ranks
        0-based position of each eigenvalue in the full descending spectrum.
    null_dim
        Directions whose eigenvalue is at most :attr:`tolerance` in absolute value
        (``rtol`` times the largest absolute eigenvalue).
    null_dim_exact
        False when every bottom eigenvalue found was null, so there may be more
        (matrix-free only: raise ``num_eigs``).
    null_basis
        ``(num_params, null_dim)`` orthonormal null directions (matrix-free: those found).
    rtol, tolerance
        The relative tolerance and the absolute threshold it gives.
    method, kind
        ``"dense"`` or ``"matrix-free"`` (Lanczos), and ``"score"`` (outer product of the
        per-unit scores) or ``"hessian"`` (minus the Hessian of the log-likelihood).
    num_params, num_rows
        Size of the flat parameter vector (unconstrained space) and rows of data used.
    param_slices
        ``{site: (start, stop)}``: where each parameter site sits in the flat vector.

    Examples
    --------
    >>> import jax, numpyro, numpyro.distributions as dist
    >>> from scm_ppl import fit
    >>> from scm_ppl.howfar import local_identifiability
    >>> def chain(n):
    ...     a, b = numpyro.param("a", 1.0), numpyro.param("b", 1.0)
    ...     with numpyro.plate("unit", n):
    ...         x = numpyro.sample("x", dist.Normal(0.0, 1.0))
    ...         numpyro.sample("y", dist.Normal(b * a * x, 0.5))
    >>> x = jax.random.normal(jax.random.key(0), (200,))
    >>> data = {"x": x, "y": 1.5 * x}
    >>> fitted = fit(chain, data, num_epochs=50, batch_size=None, progress=False)
    >>> rep = local_identifiability(fitted, data)
    >>> rep.num_params, rep.null_dim     # a * b is seen, a / b is not: one null direction
    (2, 1)
    """

    eigenvalues: np.ndarray
    eigenvalue_ranks: np.ndarray
    null_dim: int
    null_dim_exact: bool
    null_basis: np.ndarray
    rtol: float
    tolerance: float
    method: str
    kind: str
    num_params: int
    num_rows: int
    param_slices: dict[str, tuple[int, int]]
    _range_basis: np.ndarray | None = field(default=None)
    _likelihood: Likelihood | None = field(default=None)

    def null_loadings(self) -> dict[str, float]:
        """Share of the null space carried by each parameter site (sums to 1; ``{}`` when
        the null space is empty): which mechanisms the data leave free."""
        if self.null_dim == 0 or self.null_basis.shape[1] == 0:
            return {}
        energy = np.sum(self.null_basis**2, axis=1)
        total = float(energy.sum())
        return {k: float(energy[a:b].sum() / total) for k, (a, b) in self.param_slices.items()}

    def query_gradient(self, query: Callable[[Any], Any]) -> np.ndarray:
        """Gradient of ``query(scm)`` with respect to the flat parameters (float64)."""
        check_callable("query", query, what="a function of the fitted SCM returning a scalar")
        lik = self._likelihood
        assert lik is not None  # set by local_identifiability
        value = query(lik.to_scm(lik.theta))
        if jnp.size(value) != 1 or not jnp.issubdtype(jnp.result_type(value), jnp.floating):
            raise IdentifiabilityError(
                f"query must return one real number (a scalar); it returned "
                f"{jnp.result_type(value)} of shape {jnp.shape(value)}. Reduce it, e.g. "
                "with jnp.mean, or ask about one entry."
            )
        try:
            gradient = jax.grad(lambda t: jnp.reshape(query(lik.to_scm(t)), ()))(lik.theta)
        except jax.errors.ConcretizationTypeError as err:
            raise IdentifiabilityError(
                "query cannot be differentiated with respect to the parameters (it converts a "
                "traced value to NumPy or Python). Write it with jax.numpy; for interventional "
                "means use scm_ppl.intervened_mean."
            ) from err
        except jax.errors.TracerArrayConversionError as err:
            raise IdentifiabilityError(
                "query cannot be differentiated with respect to the parameters (it converts a "
                "traced value to NumPy). Write it with jax.numpy; for interventional means use "
                "scm_ppl.intervened_mean."
            ) from err
        return np.asarray(gradient, np.float64)

    def sensitivity(self, query: Callable[[Any], Any], *, relative: bool = False) -> float:
        """Norm of the query's parameter gradient projected onto the null space.

        0 (up to rounding) means the query is locally identified: no direction the data
        leave free moves it. ``relative=True`` divides by the gradient's norm (a number in
        [0, 1]: the share of the query's first-order change the data cannot see).

        Parameters
        ----------
        query
            ``query(scm) -> scalar``, differentiable in the parameters: ``scm`` is a
            :class:`~scm_ppl.FittedSCM` holding traced parameter values (e.g.
            ``lambda scm: intervened_mean(scm, {"x": 1.0}, "y")``).
        """
        gradient = self.query_gradient(query)
        if self._range_basis is not None:  # the whole range is known: exact complement
            null_part = gradient - self._range_basis @ (self._range_basis.T @ gradient)
        else:
            null_part = self.null_basis @ (self.null_basis.T @ gradient)
        value = float(np.linalg.norm(null_part))
        if relative:
            norm = float(np.linalg.norm(gradient))
            return value / norm if norm > 0 else 0.0
        return value

    def __repr__(self) -> str:
        exact = "" if self.null_dim_exact else ">="
        return (
            f"IdentifiabilityReport(num_params={self.num_params}, null_dim={exact}"
            f"{self.null_dim}, rtol={self.rtol:g}, method={self.method!r}, kind={self.kind!r})"
        )


def local_identifiability(
    fitted: Any,
    data: Mapping[str, Any],
    *,
    kind: str = "score",
    method: str = "auto",
    rtol: float | None = None,
    num_eigs: int = 20,
    num_particles: int = 64,
    model_kwargs: Mapping[str, Any] | None = None,
    rng_key: jax.Array | None = None,
) -> IdentifiabilityReport:
    """The Fisher information of the observational likelihood at a fit, and its null space.

    Parameters
    ----------
    fitted
        A :class:`~scm_ppl.FittedSCM`; its ``numpyro.param`` sites (Equinox/FlowJAX
        modules included) and MAP global latents (posterior means for Bayesian fits) are
        the parameters, in the unconstrained space the fit optimised in.
    data
        ``{site: rows}`` as for :func:`~scm_ppl.fit` (observational rows).
    kind
        ``"score"``: the sum of outer products of per-unit scores (positive semi-definite
        at any parameter value); ``"hessian"``: minus the Hessian of the log-likelihood.
    method
        ``"dense"`` (every eigenpair; ``n x P`` memory), ``"matrix-free"`` (Lanczos on
        Fisher-vector products: the top and bottom ``num_eigs`` eigenpairs, ``O(P k)``
        memory) or ``"auto"`` (dense up to 2000 parameters).
    rtol
        An eigenvalue at most ``rtol`` times the largest counts as null (default 1e-6
        dense, 1e-5 matrix-free: products run in float32).
    num_eigs
        Eigenpairs at each end of the spectrum (matrix-free).
    num_particles, rng_key
        Per-unit latent sites are integrated out by importance sampling from their prior
        with this many draws under a fixed key (default ``jax.random.key(0)``).
    model_kwargs
        The program's static arguments, when the fit could not save them as JSON.

    Returns
    -------
    IdentifiabilityReport

    Examples
    --------
    >>> import numpyro, numpyro.distributions as dist
    >>> from scm_ppl import fit
    >>> def chain(n):  # y = b (a x) + noise: only the product a b is seen
    ...     a, b = numpyro.param("a", 1.0), numpyro.param("b", 1.0)
    ...     with numpyro.plate("unit", n):
    ...         x = numpyro.sample("x", dist.Normal(0.0, 1.0))
    ...         numpyro.sample("y", dist.Normal(b * a * x, 0.5))
    >>> x = jax.random.normal(jax.random.key(0), (200,))
    >>> data = {"x": x, "y": 1.5 * x}
    >>> fitted = fit(chain, data, num_epochs=50, batch_size=None, progress=False)
    >>> rep = local_identifiability(fitted, data)
    >>> rep.null_dim
    1
    >>> rep.sensitivity(lambda scm: intervened_mean(scm, {"x": 1.0}, "y")) < 1e-4
    True
    """
    from scm_ppl.learn.fitting import FittedSCM

    if not isinstance(fitted, FittedSCM):
        raise SettingsError(
            f"fitted must be a FittedSCM (the result of scm_ppl.fit); got {type(fitted).__name__}."
        )
    check_method(kind, ("score", "hessian"), what="kind")
    check_method(method, ("auto", "dense", "matrix-free"))
    if rtol is not None and not (isinstance(rtol, (int, float)) and 0 < rtol < 1):
        raise IdentifiabilityError(f"rtol must be a number in (0, 1); got {rtol!r}.")
    positive_int("num_eigs", num_eigs)
    positive_int("num_particles", num_particles)
    key = jax.random.key(0) if rng_key is None else rng_key
    lik = build_likelihood(fitted, data, model_kwargs, num_particles, key)
    size = int(lik.theta.size)
    if size == 0:
        raise IdentifiabilityError(
            "The fit has no parameters (no numpyro.param sites or global latents) to diagnose."
        )
    chosen = method if method != "auto" else ("dense" if size <= _MAX_DENSE else "matrix-free")
    if chosen == "matrix-free" and size < 3:
        chosen = "dense"  # Lanczos needs room for k < size - 1 eigenpairs
    tol_rel = _DEFAULT_RTOL[chosen] if rtol is None else float(rtol)
    if chosen == "dense":
        values, vectors = dense_spectrum(lik, kind)
        ranks = np.arange(size)
        tolerance = tol_rel * float(np.max(np.abs(values)))
        null = np.abs(values) <= tolerance
        null_dim, exact, null_basis = int(null.sum()), True, vectors[:, null]
        range_basis: np.ndarray | None = None  # the null basis is complete: project onto it
    else:
        k = min(num_eigs, size - 2)
        top, top_vectors, bottom, bottom_vectors, converged = matrix_free_spectrum(
            lik, kind, k, 0, tol_rel
        )
        if not converged:
            warnings.warn(
                f"The iterative eigensolvers (Lanczos, LOBPCG) did not converge for every one "
                f"of the {k} eigenpairs at each end of the spectrum; the null dimension is from "
                "their last iterate. Try another num_eigs or method='dense'.",
                InferenceWarning,
                stacklevel=2,
            )
        tolerance = tol_rel * float(max(np.max(np.abs(top)), np.max(np.abs(bottom), initial=0.0)))
        null = np.abs(bottom) <= tolerance
        null_basis = bottom_vectors[:, null]
        if np.abs(top[-1]) <= tolerance:  # every non-null eigenvalue is among the top k
            null_dim, exact = size - int(np.sum(np.abs(top) > tolerance)), True
            range_basis = top_vectors[:, np.abs(top) > tolerance]
        else:
            null_dim, exact, range_basis = int(null.sum()), bool(not null.all()), None
        ranks = np.concatenate([np.arange(k), np.arange(size - k, size)])
        # top and bottom may overlap when the spectrum is small: keep each rank once
        unique = np.unique(ranks, return_index=True)[1]
        values, ranks = np.concatenate([top, bottom])[unique], ranks[unique]
    return IdentifiabilityReport(
        eigenvalues=values,
        eigenvalue_ranks=ranks,
        null_dim=null_dim,
        null_dim_exact=exact,
        null_basis=null_basis,
        rtol=tol_rel,
        tolerance=tolerance,
        method=chosen,
        kind=kind,
        num_params=size,
        num_rows=lik.num_rows,
        param_slices=lik.slices,
        _range_basis=range_basis,
        _likelihood=lik,
    )


def intervened_mean(
    scm: Any,
    interventions: Mapping[str, Any],
    site: str,
    *,
    num_samples: int = 10_000,
    rng_key: jax.Array | None = None,
    model_kwargs: Mapping[str, Any] | None = None,
) -> jax.Array:
    """``E[site | do(interventions)]`` by Monte Carlo with a fixed key: differentiable in
    the SCM's parameters (common random numbers), so it can be a query for
    :meth:`IdentifiabilityReport.sensitivity` and :meth:`RefitEnsemble.spread`.

    Parameters
    ----------
    scm
        A :class:`~scm_ppl.FittedSCM` (or any program ``model(n, ...)`` whose units sit
        in one plate sized by ``n``).
    interventions
        ``{site: value}`` as for :class:`~scm_ppl.do`.
    site
        The site whose mean is asked for (its entries are averaged over units and over
        the site's own shape).
    num_samples
        Units drawn.
    rng_key
        Default ``jax.random.key(0)``.

    Examples
    --------
    >>> import jax, numpyro, numpyro.distributions as dist
    >>> from scm_ppl import fit
    >>> def chain(n):
    ...     a, b = numpyro.param("a", 1.0), numpyro.param("b", 1.0)
    ...     with numpyro.plate("unit", n):
    ...         x = numpyro.sample("x", dist.Normal(0.0, 1.0))
    ...         numpyro.sample("y", dist.Normal(b * a * x, 0.5))
    >>> x = jax.random.normal(jax.random.key(0), (200,))
    >>> data = {"x": x, "y": 1.5 * x}
    >>> fitted = fit(chain, data, num_epochs=50, batch_size=None, progress=False)
    >>> round(float(intervened_mean(fitted, {"x": 1.0}, "y")), 1)   # a * b * 1
    1.5
    """
    settings = getattr(scm, "settings", {})
    size_arg = settings.get("size_arg", "n")
    kwargs = dict(settings.get("model_kwargs") or {}) if model_kwargs is None else model_kwargs
    key = jax.random.key(0) if rng_key is None else rng_key
    program = do(getattr(scm, "model", scm), dict(interventions))
    tr = handlers.trace(handlers.seed(program, key)).get_trace(**{size_arg: num_samples}, **kwargs)
    if site not in tr:
        raise IdentifiabilityError(f"Unknown site {site!r}; the program has sites {sorted(tr)}.")
    return jnp.mean(tr[site]["value"])
