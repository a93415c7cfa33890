"""A two-layer linear generator ``x = W2 W1 z``: the toy model of independent mechanisms.

Source: the linear toy setting of Besserve, Sun, Janzing & Schölkopf, "A theory of
independent mechanisms for extrapolation in generative models" (AAAI 2021): a generator is
a chain of mechanisms (layers) whose intermediate node is never observed, so the data fix
the product ``M = W2 W1`` and not its factors::

    z ~ Normal(0, diag(latent_scales**2))          (the latent code, n-dimensional)
    h = W1 z                                        (the hidden layer: a deterministic site)
    x ~ Normal(W2 h, noise_scale)                   (the output, n-dimensional)

Two kinds of layer:

* ``kind="dense"``: ``W1``, ``W2`` are ``n x n`` matrices (params ``"W1"``, ``"W2"``);
* ``kind="conv"``: circular convolutions with full-length kernels ``k1``, ``k2``
  (params ``"k1"``, ``"k2"``, length ``n``): ``h = k1 ⊛ z``, ``x = k2 ⊛ h`` (by FFT).

:func:`model` with ``weights=None`` has learnable parameters initialised i.i.d.
``Normal(0, init_scale**2)`` (small ``init_scale``: the "small initialisation" of gradient
descent); ``weights={...}`` fixes them (the ground truth). :func:`ground_truth` draws a
generic truth: entries i.i.d. ``Normal(0, 1) / sqrt(n)``.

Known truths (derived in ``tutorials/06_independent_mechanisms.py``)
------------------------------------------------------------------
* :func:`balanced_ratio`: the genericity ratio of the *balanced* factorisation
  ``W2ᵀW2 = W1W1ᵀ`` that gradient descent from small initialisation converges to,
  ``τ(Σ_X) / τ(Σ_X^{1/2})²`` (dense) and ``⟨S_X⟩ / ⟨√S_X⟩²`` (conv), for white ``z``;
* :func:`balanced_factors`: that factorisation itself;
* :func:`output_covariance`: ``Σ_X = M diag(s²) Mᵀ`` (plus the output noise);
* :func:`shifted_output_power`: the output power after a generic change of the first
  convolution (its frequency response shifted by every ``Δ``); the mean over ``Δ`` is
  ``⟨|k̂2|²⟩⟨|k̂1|²⟩ = τ(Σ_X) / ρ`` exactly.

Learning rate (measured, see ``benchmarks/icm_toy.py``): a kernel tap is shared by the
``n`` entries of a circulant diagonal, so an SGD step on ``k1``, ``k2`` moves ``M`` ``n``
times as far as the same step on dense ``W1``, ``W2``. Use ``n`` times smaller steps for
``kind="conv"`` (``0.3 / n`` where dense takes ``0.3``); at the dense step the strongest
frequency cannot settle (relative fit stuck at 0.047 for ``n = 12``).
"""

from __future__ import annotations

from collections.abc import Mapping

import jax
import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as dist
from jax.typing import ArrayLike

__all__ = [
    "EDGES",
    "KINDS",
    "NODES",
    "balanced_factors",
    "balanced_ratio",
    "circulant",
    "ground_truth",
    "model",
    "output_covariance",
    "product",
    "shifted_output_power",
]

NODES: tuple[str, ...] = ("z", "h", "x")
"""Site names in topological order (``"h"`` is deterministic: the hidden layer)."""

EDGES: frozenset[tuple[str, str]] = frozenset({("z", "h"), ("h", "x")})
"""Directed parent -> child edges among the sites."""

KINDS: tuple[str, ...] = ("dense", "conv")
"""The two kinds of layer."""

PARAMS: dict[str, tuple[str, str]] = {"dense": ("W1", "W2"), "conv": ("k1", "k2")}
"""Parameter names of the first and the second mechanism, by kind."""


def _check_kind(kind: str) -> tuple[str, str]:
    if kind not in PARAMS:
        raise ValueError(f"Unknown kind {kind!r}; choose one of {list(KINDS)}.")
    return PARAMS[kind]


def circular_convolve(kernel: ArrayLike, signal: ArrayLike) -> jax.Array:
    """``(kernel ⊛ signal)[t] = Σ_s kernel[s] signal[t - s mod n]`` along the last axis."""
    kernel, signal = jnp.asarray(kernel), jnp.asarray(signal)
    n = signal.shape[-1]
    return jnp.fft.irfft(jnp.fft.rfft(kernel, n) * jnp.fft.rfft(signal, n), n)


def circulant(kernel: ArrayLike) -> jax.Array:
    """The ``n x n`` matrix ``C`` with ``C @ z = kernel ⊛ z`` (circular convolution)."""
    k = jnp.asarray(kernel)
    n = k.shape[-1]
    index = (jnp.arange(n)[:, None] - jnp.arange(n)[None, :]) % n
    return k[index]


def model(
    n: int = 1,
    dim: int = 8,
    kind: str = "dense",
    weights: Mapping[str, ArrayLike] | None = None,
    init_scale: float = 0.01,
    noise_scale: float = 1.0,
    latent_scales: ArrayLike | None = None,
) -> jax.Array:
    """Sample ``n`` units: sites ``"z"`` ``(n, dim)``, ``"h"`` ``(n, dim)``, ``"x"`` ``(n, dim)``.

    Parameters
    ----------
    n
        Number of units (size of the ``"unit"`` plate).
    dim
        Dimension of ``z``, ``h`` and ``x``.
    kind
        ``"dense"`` (matrices ``W1``, ``W2``) or ``"conv"`` (circular kernels ``k1``, ``k2``).
    weights
        ``{name: array}`` fixing both mechanisms; ``None``: learnable ``numpyro.param``
        sites initialised i.i.d. ``Normal(0, init_scale**2)``.
    init_scale
        Scale of the random initialisation of learnable parameters.
    noise_scale
        Standard deviation of the output noise (it only scales the likelihood when the
        data are noise-free).
    latent_scales
        Per-coordinate standard deviations of ``z`` (default: ones, a white latent).
    """
    first, second = _check_kind(kind)
    shape = (dim, dim) if kind == "dense" else (dim,)
    if weights is None:
        w1 = jnp.asarray(
            numpyro.param(first, lambda key: init_scale * jax.random.normal(key, shape))
        )
        w2 = jnp.asarray(
            numpyro.param(second, lambda key: init_scale * jax.random.normal(key, shape))
        )
    else:
        w1, w2 = jnp.asarray(weights[first]), jnp.asarray(weights[second])
    scales = jnp.ones(dim) if latent_scales is None else jnp.asarray(latent_scales)
    with numpyro.plate("unit", n):
        z = numpyro.sample("z", dist.Normal(jnp.zeros(dim), scales).to_event(1))
        if kind == "dense":
            h = numpyro.deterministic("h", z @ w1.T)
            mean = h @ w2.T
        else:
            h = numpyro.deterministic("h", circular_convolve(w1, z))
            mean = circular_convolve(w2, h)
        return jnp.asarray(numpyro.sample("x", dist.Normal(mean, noise_scale).to_event(1)))


def ground_truth(key: jax.Array, dim: int, kind: str = "dense") -> dict[str, jax.Array]:
    """A generic truth: both mechanisms with entries i.i.d. ``Normal(0, 1) / sqrt(dim)``."""
    first, second = _check_kind(kind)
    shape = (dim, dim) if kind == "dense" else (dim,)
    k1, k2 = jax.random.split(key)
    scale = 1.0 / np.sqrt(dim)
    return {
        first: scale * jax.random.normal(k1, shape),
        second: scale * jax.random.normal(k2, shape),
    }


def product(weights: Mapping[str, ArrayLike], kind: str = "dense") -> jax.Array:
    """The end-to-end matrix ``M = W2 W1`` (for ``"conv"``: the circulant of ``k2 ⊛ k1``)."""
    first, second = _check_kind(kind)
    w1, w2 = jnp.asarray(weights[first]), jnp.asarray(weights[second])
    if kind == "dense":
        return w2 @ w1
    return circulant(circular_convolve(w2, w1))


def output_covariance(
    weights: Mapping[str, ArrayLike],
    kind: str = "dense",
    latent_scales: ArrayLike | None = None,
    noise_scale: float = 0.0,
) -> jax.Array:
    """``Σ_X = M diag(s²) Mᵀ + noise_scale² I`` of the program with these weights."""
    m = product(weights, kind)
    s = jnp.ones(m.shape[0]) if latent_scales is None else jnp.asarray(latent_scales)
    return (m * s**2) @ m.T + noise_scale**2 * jnp.eye(m.shape[0])


def balanced_ratio(weights: Mapping[str, ArrayLike], kind: str = "dense") -> float:
    """The genericity ratio of the balanced factorisation of ``M = W2 W1`` (white ``z``).

    Dense: ``τ(Σ_X) / τ(Σ_X^{1/2})² = mean(s²) / mean(s)²`` with ``s`` the singular values
    of ``M``. Conv: ``⟨S_X⟩ / ⟨√S_X⟩²`` with ``S_X = |m̂|²`` the output spectrum. Both are
    ``>= 1`` (Cauchy–Schwarz), with equality only when ``M`` is a multiple of an isometry.
    """
    first, second = _check_kind(kind)
    if kind == "dense":
        s = np.linalg.svd(np.asarray(product(weights, kind)), compute_uv=False)
    else:
        w1, w2 = np.asarray(weights[first]), np.asarray(weights[second])
        s = np.abs(np.fft.fft(w2) * np.fft.fft(w1))  # |m̂| on the full DFT grid
    return float(np.mean(s**2) / np.mean(s) ** 2)


def balanced_factors(weights: Mapping[str, ArrayLike], kind: str = "dense") -> dict[str, jax.Array]:
    """A balanced factorisation of the same product: ``W2ᵀW2 = W1W1ᵀ``.

    Dense: ``M = U S Vᵀ``, ``W1 = S^{1/2} Vᵀ``, ``W2 = U S^{1/2}`` (any ``W1 → O W1``,
    ``W2 → W2 Oᵀ`` with ``O`` orthogonal is balanced too, with the same ratio).
    Conv: ``|k̂1| = |k̂2| = |m̂|^{1/2}`` per frequency (``k1`` zero-phase, ``k2`` the phase).
    """
    first, second = _check_kind(kind)
    if kind == "dense":
        u, s, vt = np.linalg.svd(np.asarray(product(weights, kind)))
        root = np.sqrt(s)
        return {first: jnp.asarray(root[:, None] * vt), second: jnp.asarray(u * root)}
    w1, w2 = np.asarray(weights[first]), np.asarray(weights[second])
    n = w1.shape[-1]
    m_hat = np.fft.rfft(w2) * np.fft.rfft(w1)
    root = np.sqrt(np.abs(m_hat))
    safe = np.where(root > 0, root, 1.0)
    return {
        first: jnp.asarray(np.fft.irfft(root, n)),
        second: jnp.asarray(np.fft.irfft(m_hat / safe, n)),
    }


def shifted_output_power(weights: Mapping[str, ArrayLike]) -> np.ndarray:
    """Output power (white ``z``) after shifting ``k1``'s frequency response by ``Δ`` bins.

    The change ``k1[t] → exp(2πiΔt/n) k1[t]`` (``k̂1(ν) → k̂1(ν - Δ)``) is a generic change
    of the first mechanism for the spectral density ratio: averaged over all ``n`` shifts
    the output power ``⟨|k̂2(ν)|² |k̂1(ν - Δ)|²⟩`` is exactly ``⟨|k̂2|²⟩⟨|k̂1|²⟩``, i.e. the
    observed power ``⟨|k̂2|² |k̂1|²⟩`` divided by ``ρ = spectral_density_ratio(k2,
    |k̂1|²)``.

    Parameters
    ----------
    weights
        ``{"k1": (n,), "k2": (n,)}`` (``kind="conv"``).

    Returns
    -------
    np.ndarray
        ``(n,)``: the power for ``Δ = 0, …, n - 1`` (``Δ = 0``: the observed power).
    """
    gain1 = np.abs(np.fft.fft(np.asarray(weights["k1"]))) ** 2
    gain2 = np.abs(np.fft.fft(np.asarray(weights["k2"]))) ** 2
    return np.array([np.mean(gain2 * np.roll(gain1, delta)) for delta in range(gain1.size)])
