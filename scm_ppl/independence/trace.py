"""The trace ratio: genericity of a linear mechanism with respect to its input.

Besserve et al. (AAAI 2021) call a linear map ``A`` *generic* with respect to the
covariance ``Σ`` of its input when ``τ(A Σ Aᵀ) = τ(A Aᵀ) τ(Σ)``, with ``τ(M) = tr(M)/dim``:
the output power is what a randomly rotated ``A`` would give on average. The trace ratio

    ρ = τ(A Σ Aᵀ) / (τ(A Aᵀ) τ(Σ))

is 1 for generic pairs (and concentrates at 1 for random ones as the dimension grows);
``log ρ`` measures how far from generic a pair is.

The functions here are pure ``jax.numpy``: they run under ``jit``, ``grad`` and ``vmap``.
Shapes are checked always (they are static); values (finite, symmetric, PSD) only when
the arrays are concrete, so the same call works at the API boundary and inside a jitted
loss. :func:`trace_ratio_unchecked` is the unchecked core.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
from jax.core import Tracer
from jax.typing import ArrayLike

from scm_ppl.errors import GenericityError

__all__ = ["trace_ratio", "trace_ratio_from_samples"]


def _is_concrete(*arrays: ArrayLike) -> bool:
    """Whether every array holds values (not a tracer inside jit/grad/vmap)."""
    return not any(isinstance(a, Tracer) for a in arrays)


def _broadcast_batch(name_a: str, shape_a: tuple, name_b: str, shape_b: tuple) -> tuple:
    try:
        return np.broadcast_shapes(shape_a, shape_b)
    except ValueError:
        raise GenericityError(
            f"The leading (batch) dimensions of {name_a} {shape_a} and {name_b} {shape_b} "
            "do not broadcast; give one pair per batch entry or a single shared one."
        ) from None


def _check_finite(name: str, value: np.ndarray) -> None:
    if not np.all(np.isfinite(value)):
        raise GenericityError(
            f"{name} holds NaN or inf ({int(np.sum(~np.isfinite(value)))} entries); "
            "pass finite values."
        )


def _check_covariance(cov: np.ndarray, name: str = "cov") -> None:
    """Symmetric positive semi-definite (up to float round-off), with positive trace."""
    _check_finite(name, cov)
    scale = float(np.max(np.abs(cov))) if cov.size else 0.0
    tol = max(1e-4, 10 * cov.shape[-1] * float(np.finfo(cov.dtype).eps))
    asymmetry = float(np.max(np.abs(cov - np.swapaxes(cov, -1, -2)))) if cov.size else 0.0
    if asymmetry > tol * scale:
        raise GenericityError(
            f"{name} must be a symmetric covariance matrix; the largest |Σ - Σᵀ| is "
            f"{asymmetry:.3g} (entries up to {scale:.3g}). Symmetrise it, e.g. (Σ + Σᵀ)/2."
        )
    eigenvalues = np.linalg.eigvalsh(cov.astype(np.float64))
    if float(np.min(eigenvalues)) < -tol * max(float(np.max(eigenvalues)), 0.0):
        raise GenericityError(
            f"{name} must be positive semi-definite; its smallest eigenvalue is "
            f"{float(np.min(eigenvalues)):.3g} (largest {float(np.max(eigenvalues)):.3g}). "
            "Pass a covariance (e.g. X.T @ X / n), not an arbitrary symmetric matrix."
        )
    if np.any(np.trace(cov, axis1=-2, axis2=-1) <= 0):
        raise GenericityError(f"{name} is zero; the trace ratio needs an input with power.")


def trace_ratio_unchecked(A: jax.Array, cov: jax.Array, log: bool = False) -> jax.Array:
    """Unchecked core of :func:`trace_ratio` (batched over leading dims, jittable).

    ``n · Σ_ij A_ij (A Σ)_ij / (‖A‖²_F tr Σ)``: the output dimension cancels.

    Examples
    --------
    >>> import jax, jax.numpy as jnp
    >>> from scm_ppl.independence import trace_ratio_unchecked
    >>> A, cov = jnp.diag(jnp.array([0.0, 1.0])), jnp.diag(jnp.array([1.0, 3.0]))
    >>> float(jax.jit(trace_ratio_unchecked)(A, cov))  # inside jit: no input checks
    1.5
    """
    n = A.shape[-1]
    output_power = jnp.einsum("...ij,...ij->...", A, A @ cov)
    gain = jnp.sum(A * A, axis=(-2, -1))
    input_power = jnp.trace(cov, axis1=-2, axis2=-1)
    if log:
        return jnp.log(output_power) - jnp.log(gain) - jnp.log(input_power) + math.log(n)
    return n * output_power / (gain * input_power)


# One compiled call per shape instead of a dispatch per operation (inlined under a trace).
_trace_ratio_jit = jax.jit(trace_ratio_unchecked, static_argnames="log")


def trace_ratio(A: ArrayLike, cov: ArrayLike, *, log: bool = False) -> jax.Array:
    """Trace ratio ``ρ = τ(A Σ Aᵀ) / (τ(A Aᵀ) τ(Σ))`` of a linear map and its input.

    Parameters
    ----------
    A
        The linear mechanism, shaped ``(..., m, n)`` (maps ``n`` inputs to ``m`` outputs).
    cov
        Covariance ``Σ`` of the mechanism's input, shaped ``(..., n, n)``; symmetric PSD.
    log
        Return ``log ρ`` (the genericity gap Δ of the paper) instead of ``ρ``.

    Returns
    -------
    jax.Array
        ``ρ`` (or ``log ρ``) with the broadcast batch shape of ``A`` and ``cov``.

    Notes
    -----
    ``ρ = 1`` when ``A`` is a multiple of an orthogonal matrix or ``Σ ∝ I``; ``ρ > 1``
    when ``A`` amplifies the directions where the input has most power. Runs under
    ``jit``/``grad``/``vmap``: shapes are always checked, values only for concrete
    arrays (inside a traced function nothing is raised on values).

    Examples
    --------
    >>> import jax.numpy as jnp
    >>> from scm_ppl.independence import trace_ratio
    >>> float(trace_ratio(jnp.eye(3), jnp.diag(jnp.array([1.0, 2.0, 3.0]))))
    1.0
    >>> A, cov = jnp.diag(jnp.array([0.0, 1.0])), jnp.diag(jnp.array([1.0, 3.0]))
    >>> float(trace_ratio(A, cov))    # A keeps only the input's strong direction
    1.5
    """
    A_arr, cov_arr = jnp.asarray(A), jnp.asarray(cov)
    if A_arr.ndim < 2:
        raise GenericityError(
            f"A must be a matrix shaped (..., m, n); got shape {A_arr.shape}. "
            "Reshape a vector to a (1, n) row."
        )
    if cov_arr.ndim < 2 or cov_arr.shape[-1] != cov_arr.shape[-2]:
        raise GenericityError(f"cov must be square, shaped (..., n, n); got shape {cov_arr.shape}.")
    if cov_arr.shape[-1] != A_arr.shape[-1]:
        raise GenericityError(
            f"A maps {A_arr.shape[-1]} inputs but cov is {cov_arr.shape[-1]}×"
            f"{cov_arr.shape[-1]}; cov must be the covariance of A's input "
            f"(shape (..., {A_arr.shape[-1]}, {A_arr.shape[-1]}))."
        )
    if A_arr.shape[-1] == 0 or A_arr.shape[-2] == 0:
        raise GenericityError(f"A has an empty dimension: shape {A_arr.shape}.")
    _broadcast_batch("A", A_arr.shape[:-2], "cov", cov_arr.shape[:-2])
    if _is_concrete(A_arr, cov_arr):
        A_np = np.asarray(A_arr)
        _check_finite("A", A_np)
        if np.any(np.sum(A_np * A_np, axis=(-2, -1)) == 0):
            raise GenericityError("A is the zero map; the trace ratio is undefined for it.")
        _check_covariance(np.asarray(cov_arr))
    dtype = jnp.result_type(A_arr.dtype, cov_arr.dtype, jnp.float32)
    return _trace_ratio_jit(A_arr.astype(dtype), cov_arr.astype(dtype), log=log)


def _sample_moments(x: jax.Array, y: jax.Array) -> tuple[jax.Array, jax.Array]:
    """Least-squares map ``Â = Σ_YX Σ_X⁺`` and input covariance ``Σ_X`` from samples."""
    n_samples = x.shape[-2]
    xc = x - jnp.mean(x, axis=-2, keepdims=True)
    yc = y - jnp.mean(y, axis=-2, keepdims=True)
    cov_x = jnp.swapaxes(xc, -1, -2) @ xc / (n_samples - 1)
    cov_yx = jnp.swapaxes(yc, -1, -2) @ xc / (n_samples - 1)
    cov_x = (cov_x + jnp.swapaxes(cov_x, -1, -2)) / 2
    return cov_yx @ jnp.linalg.pinv(cov_x, hermitian=True), cov_x


def trace_ratio_from_samples_unchecked(x: jax.Array, y: jax.Array, log: bool = False) -> jax.Array:
    """Unchecked core of :func:`trace_ratio_from_samples`.

    Examples
    --------
    >>> import jax, jax.numpy as jnp
    >>> from scm_ppl.independence import trace_ratio_from_samples_unchecked
    >>> x = jax.random.normal(jax.random.key(0), (20_000, 2)) * jnp.array([1.0, 3.0])
    >>> A = jnp.array([[0.0, 1.0]])
    >>> round(float(jax.jit(trace_ratio_from_samples_unchecked)(x, x @ A.T)), 1)  # 1.8
    1.8
    """
    A_hat, cov_x = _sample_moments(x, y)
    return trace_ratio_unchecked(A_hat, cov_x, log=log)


_trace_ratio_from_samples_jit = jax.jit(trace_ratio_from_samples_unchecked, static_argnames="log")


def trace_ratio_from_samples(x: ArrayLike, y: ArrayLike, *, log: bool = False) -> jax.Array:
    """Trace ratio estimated from paired input/output samples of a linear mechanism.

    Uses the sample covariances: ``Â = Σ_YX Σ_X⁺`` (the least-squares linear map from
    ``x`` to ``y``) and ``ρ̂ = trace_ratio(Â, Σ_X)``.

    Parameters
    ----------
    x
        Mechanism inputs, shaped ``(..., n_samples, n)``.
    y
        The matching outputs, shaped ``(..., n_samples, m)``.
    log
        Return ``log ρ̂``.

    Returns
    -------
    jax.Array
        ``ρ̂`` (or ``log ρ̂``), one per batch entry.

    Notes
    -----
    Consistent as ``n_samples`` grows (error ``O(1/√n_samples)``). With fewer samples
    than input dimensions ``Σ_X`` is singular and ``Â`` sees only the sampled subspace.

    Examples
    --------
    >>> import jax, jax.numpy as jnp
    >>> from scm_ppl.independence import trace_ratio_from_samples
    >>> x = jax.random.normal(jax.random.key(0), (20_000, 2)) * jnp.array([1.0, 3.0])
    >>> A = jnp.array([[0.0, 1.0]])
    >>> round(float(trace_ratio_from_samples(x, x @ A.T)), 1)    # population value 1.8
    1.8
    """
    x_arr, y_arr = jnp.asarray(x), jnp.asarray(y)
    if x_arr.ndim < 2 or y_arr.ndim < 2:
        raise GenericityError(
            f"x and y must be shaped (..., n_samples, dim); got {x_arr.shape} and "
            f"{y_arr.shape}. Reshape scalar samples to (n_samples, 1)."
        )
    if x_arr.shape[-2] != y_arr.shape[-2]:
        raise GenericityError(
            f"x has {x_arr.shape[-2]} samples but y has {y_arr.shape[-2]}; the trace ratio "
            "estimator needs paired samples (row i of y is the output for row i of x)."
        )
    if x_arr.shape[-2] < 2:
        raise GenericityError(
            f"Need at least 2 paired samples to estimate covariances; got {x_arr.shape[-2]}."
        )
    _broadcast_batch("x", x_arr.shape[:-2], "y", y_arr.shape[:-2])
    if _is_concrete(x_arr, y_arr):
        _check_finite("x", np.asarray(x_arr))
        _check_finite("y", np.asarray(y_arr))
    dtype = jnp.result_type(x_arr.dtype, y_arr.dtype, jnp.float32)
    return _trace_ratio_from_samples_jit(x_arr.astype(dtype), y_arr.astype(dtype), log=log)
