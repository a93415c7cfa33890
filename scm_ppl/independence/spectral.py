"""The spectral density ratio: genericity of a convolution with respect to its input.

For a stationary input with power spectral density ``S`` and a filter with frequency
response ``ĥ`` the output power is ``⟨|ĥ|² S⟩`` (``⟨·⟩`` = mean over the frequency grid);
the pair is generic (Besserve et al., AAAI 2021) when that equals ``⟨|ĥ|²⟩⟨S⟩``, what a
randomly phase-shifted (frequency-shuffled) filter would give on average. The ratio

    ρ = ⟨|ĥ|² S⟩ / (⟨|ĥ|²⟩ ⟨S⟩)

is computed on the DFT grid of ``S``, with the kernel zero-padded to that grid (1-D and
2-D). A transposed (upsampling) convolution of stride ``s`` filters the zero-inserted input,
whose spectrum is ``S`` tiled ``s`` times: the ratio is then taken on that upsampled grid.

Pure ``jax.numpy``: shapes are checked always, values only for concrete arrays, so the
public function also runs inside a jitted loss; :func:`spectral_density_ratio_unchecked` is the
unchecked core.
"""

from __future__ import annotations

from collections.abc import Sequence

import jax
import jax.numpy as jnp
import numpy as np
from jax.typing import ArrayLike

from scm_ppl.errors import GenericityError
from scm_ppl.independence.trace import _broadcast_batch, _check_finite, _is_concrete

__all__ = ["averaged_periodogram", "spectral_density_ratio"]


def _spatial_axes(spatial_dims: int) -> tuple[int, ...]:
    return tuple(range(-spatial_dims, 0))


def _upsampled(input_psd: jax.Array, stride: tuple[int, ...]) -> jax.Array:
    """PSD of the zero-inserted input of a stride-``s`` transposed convolution (up to a
    constant factor, which the ratio ignores): ``S`` repeated periodically ``s`` times."""
    if all(s == 1 for s in stride):
        return input_psd
    return jnp.tile(input_psd, (1,) * (input_psd.ndim - len(stride)) + tuple(stride))


def averaged_periodogram_unchecked(
    signals: jax.Array, spatial_dims: int, center: bool = True
) -> jax.Array:
    """Unchecked core of :func:`averaged_periodogram`.

    Examples
    --------
    >>> import jax, jax.numpy as jnp
    >>> from scm_ppl.independence import averaged_periodogram_unchecked
    >>> x = jnp.array([[1.0, -1.0, 1.0, -1.0], [-1.0, 1.0, -1.0, 1.0]])  # (signals, grid)
    >>> jax.jit(averaged_periodogram_unchecked, static_argnums=1)(x, 1).tolist()
    [0.0, 0.0, 4.0, 0.0]
    """
    if center:
        signals = signals - jnp.mean(signals, axis=0, keepdims=True)
    axes = _spatial_axes(spatial_dims)
    grid_size = int(np.prod(signals.shape[-spatial_dims:]))
    power = jnp.abs(jnp.fft.fftn(signals, axes=axes)) ** 2 / grid_size
    return jnp.mean(power, axis=0)


def _powers_by_fft(kernel: jax.Array, input_psd: jax.Array, spatial_dims: int) -> tuple:
    """``(⟨|ĥ|² S⟩, ⟨|ĥ|²⟩, ⟨S⟩)`` with ``|ĥ|²`` from the FFT of the zero-padded kernel."""
    axes = _spatial_axes(spatial_dims)
    grid = input_psd.shape[-spatial_dims:]
    gain = jnp.abs(jnp.fft.fftn(kernel, s=grid, axes=axes)) ** 2
    output_power = jnp.mean(gain * input_psd, axis=axes)
    return output_power, jnp.mean(gain, axis=axes), jnp.mean(input_psd, axis=axes)


def _powers_by_lags(kernel: jax.Array, input_psd: jax.Array, spatial_dims: int) -> tuple:
    """The same three powers in the lag domain: ``⟨|ĥ|² S⟩ = Σ_τ r_h(τ) R(τ)``.

    ``r_h`` is the kernel's autocorrelation (``(2k - 1)`` lags per axis) and ``R`` the
    input's autocovariance on the grid (inverse DFT of ``S``, periodic, so a lag wraps
    modulo the grid exactly as ``|ĥ|²`` on that grid aliases). Exact, like the FFT route,
    and far cheaper for small kernels on a large grid: no grid-sized array per kernel.
    """
    axes = _spatial_axes(spatial_dims)
    grid = input_psd.shape[-spatial_dims:]
    lags = tuple(2 * k - 1 for k in kernel.shape[-spatial_dims:])
    # A (2k-1)-point circular autocorrelation of the zero-padded kernel is the linear one.
    autocorrelation = jnp.real(
        jnp.fft.ifftn(jnp.abs(jnp.fft.fftn(kernel, s=lags, axes=axes)) ** 2, axes=axes)
    )
    autocovariance = jnp.real(jnp.fft.ifftn(input_psd, axes=axes))
    for axis, (n_lags, n_grid) in enumerate(zip(lags, grid, strict=True)):
        index = np.arange(n_lags)
        signed = np.where(index < (n_lags + 1) // 2, index, index - n_lags)
        autocovariance = jnp.take(
            autocovariance, signed % n_grid, axis=autocovariance.ndim - spatial_dims + axis
        )
    output_power = jnp.sum(autocorrelation * autocovariance, axis=axes)
    origin = (Ellipsis, *(0,) * spatial_dims)
    return output_power, autocorrelation[origin], autocovariance[origin]


def spectral_density_ratio_unchecked(
    kernel: jax.Array,
    input_psd: jax.Array,
    spatial_dims: int,
    stride: tuple[int, ...] | None = None,
    log: bool = False,
) -> jax.Array:
    """Unchecked core of :func:`spectral_density_ratio` (batched, jittable).

    ``kernel`` is ``(..., *kernel_size)``, ``input_psd`` is ``(..., *grid)`` with
    ``spatial_dims`` trailing spatial axes; leading dims broadcast. Small kernels go
    through the lag domain, kernels about as large as the grid through the FFT (same
    value; the choice depends on static shapes only).

    Examples
    --------
    >>> import jax, jax.numpy as jnp
    >>> from scm_ppl.independence import spectral_density_ratio_unchecked
    >>> psd = jnp.array([4.0, 1.0, 0.5, 1.0])
    >>> ratio = jax.jit(spectral_density_ratio_unchecked, static_argnums=2)
    >>> float(ratio(jnp.array([0.0, 1.0]), psd, 1))     # a delay passes every frequency: generic
    1.0
    """
    if stride is not None:
        input_psd = _upsampled(input_psd, stride)
    n_lags = np.prod([2 * k - 1 for k in kernel.shape[-spatial_dims:]])
    by_lags = n_lags < np.prod(input_psd.shape[-spatial_dims:])
    powers = _powers_by_lags if by_lags else _powers_by_fft
    output_power, mean_gain, mean_psd = powers(kernel, input_psd, spatial_dims)
    if log:
        return jnp.log(output_power) - jnp.log(mean_gain) - jnp.log(mean_psd)
    return output_power / (mean_gain * mean_psd)


def _resolve_spatial_dims(spatial_dims: int | None, default: int, what: str) -> int:
    dims = default if spatial_dims is None else spatial_dims
    if dims not in (1, 2):
        hint = (
            f"{what} has {default} dimensions; pass spatial_dims=1 or 2 to say how many "
            "trailing axes are the signal grid (the leading ones are batch/channels)."
            if spatial_dims is None
            else f"got spatial_dims={spatial_dims}."
        )
        raise GenericityError(f"Spectral density ratios are 1-D or 2-D; {hint}")
    return dims


def _resolve_stride(stride: int | Sequence[int], spatial_dims: int) -> tuple[int, ...]:
    strides = (stride,) * spatial_dims if isinstance(stride, int) else tuple(stride)
    if len(strides) != spatial_dims or not all(
        isinstance(s, int | np.integer) and s >= 1 for s in strides
    ):
        raise GenericityError(
            f"stride must be a positive int or {spatial_dims} positive ints (one per spatial "
            f"axis); got {stride!r}."
        )
    return tuple(int(s) for s in strides)


def _check_signals(signals: jax.Array, spatial_dims: int, name: str) -> None:
    if signals.ndim < spatial_dims + 1 or signals.shape[0] < 2:
        raise GenericityError(
            f"{name} must be shaped (n_signals, ..., *grid) with at least 2 signals and "
            f"{spatial_dims} grid axes; got shape {signals.shape}."
        )
    if _is_concrete(signals):
        _check_finite(name, np.asarray(signals))


def averaged_periodogram(
    signals: ArrayLike, *, spatial_dims: int | None = None, center: bool = True
) -> jax.Array:
    """Power spectral density estimated by averaging periodograms over signals.

    Parameters
    ----------
    signals
        Shaped ``(n_signals, ..., *grid)``: axis 0 indexes independent realisations, the
        last ``spatial_dims`` axes are the 1-D or 2-D grid, any axes between (channels)
        are kept.
    spatial_dims
        1 or 2; by default ``signals.ndim - 1``.
    center
        Subtract the mean signal (over axis 0) first, so the estimate is that of the
        covariance, as in :func:`trace_ratio_from_samples`.

    Returns
    -------
    jax.Array
        ``mean_n |DFT(x_n)|² / grid_size``, shaped ``(..., *grid)``.

    Examples
    --------
    >>> import jax.numpy as jnp
    >>> from scm_ppl.independence import averaged_periodogram
    >>> x = jnp.array([[1.0, -1.0, 1.0, -1.0], [-1.0, 1.0, -1.0, 1.0]])  # (signals, grid)
    >>> averaged_periodogram(x).tolist()    # all power at the highest frequency
    [0.0, 0.0, 4.0, 0.0]
    """
    signals_arr = jnp.asarray(signals)
    dims = _resolve_spatial_dims(spatial_dims, signals_arr.ndim - 1, "signals")
    _check_signals(signals_arr, dims, "signals")
    return _averaged_periodogram_jit(
        signals_arr.astype(jnp.result_type(signals_arr, 1.0)), dims, center
    )


# One compiled call per shape instead of a dispatch per operation (inlined under a trace).
_spectral_density_ratio_jit = jax.jit(
    spectral_density_ratio_unchecked, static_argnames=("spatial_dims", "stride", "log")
)
_averaged_periodogram_jit = jax.jit(
    averaged_periodogram_unchecked, static_argnames=("spatial_dims", "center")
)


def spectral_density_ratio(
    kernel: ArrayLike,
    input_psd: ArrayLike | None = None,
    *,
    input_signals: ArrayLike | None = None,
    stride: int | Sequence[int] = 1,
    spatial_dims: int | None = None,
    center: bool = True,
    log: bool = False,
) -> jax.Array:
    """Spectral density ratio ``ρ = ⟨|ĥ|² S⟩ / (⟨|ĥ|²⟩⟨S⟩)`` of a convolution and its input.

    Parameters
    ----------
    kernel
        Convolution kernel, shaped ``(..., *kernel_size)``; a conv layer's weight
        ``(out_ch, in_ch, kh, kw)`` gives one ratio per channel pair.
    input_psd
        Power spectral density ``S`` of the input on its DFT grid, ``(..., *grid)``,
        non-negative; its leading dims broadcast against the kernel's (e.g. one PSD per
        input channel, ``(in_ch, H, W)``).
    input_signals
        Instead of ``input_psd``: input samples ``(n_signals, ..., *grid)``; ``S`` is
        their averaged periodogram (:func:`averaged_periodogram`).
    stride
        Stride of a transposed (upsampling) convolution, an int or one per axis: the ratio
        is taken on the upsampled grid ``stride × grid``, where the zero-inserted input's
        spectrum is ``S`` repeated ``stride`` times.
    spatial_dims
        Number of trailing grid axes, 1 or 2. By default the PSD's ``ndim`` (an unbatched
        PSD) or ``input_signals.ndim - 1``; pass it when the PSD or signals carry
        batch/channel axes.
    center
        With ``input_signals``: subtract the mean signal before the periodogram.
    log
        Return ``log ρ``.

    Returns
    -------
    jax.Array
        ``ρ`` (or ``log ρ``), shaped like the broadcast leading dims of kernel and PSD.

    Notes
    -----
    ``ρ = 1`` for a delta or pure-delay kernel, and for a white input (flat ``S``). Runs
    under ``jit``/``grad``/``vmap``: shapes are checked always, values (finite,
    non-negative) only for concrete arrays.

    Examples
    --------
    >>> import jax.numpy as jnp
    >>> from scm_ppl.independence import spectral_density_ratio
    >>> psd = jnp.array([4.0, 1.0, 0.5, 1.0])
    >>> float(spectral_density_ratio(jnp.array([0.0, 1.0]), psd))    # a delay: generic
    1.0
    >>> round(float(spectral_density_ratio(jnp.array([1.0, 1.0]), psd)), 4)  # low-pass
    1.5385
    """
    if (input_psd is None) == (input_signals is None):
        raise GenericityError(
            "Pass exactly one of input_psd (the input's power spectral density) and "
            "input_signals (input samples, whose averaged periodogram is used)."
        )
    kernel_arr = jnp.asarray(kernel)
    if input_signals is not None:
        signals = jnp.asarray(input_signals)
        dims = _resolve_spatial_dims(spatial_dims, signals.ndim - 1, "input_signals")
        _check_signals(signals, dims, "input_signals")
        psd = _averaged_periodogram_jit(signals.astype(jnp.result_type(signals, 1.0)), dims, center)
    else:
        psd = jnp.asarray(input_psd)
        dims = _resolve_spatial_dims(spatial_dims, psd.ndim, "input_psd")
        if psd.ndim < dims:
            raise GenericityError(
                f"input_psd must have at least {dims} grid axes; got shape {psd.shape}."
            )
    strides = _resolve_stride(stride, dims)
    if kernel_arr.ndim < dims:
        raise GenericityError(
            f"kernel must have at least {dims} spatial axes (shape (..., *kernel_size)); "
            f"got shape {kernel_arr.shape}."
        )
    grid = tuple(g * s for g, s in zip(psd.shape[-dims:], strides, strict=True))
    kernel_size = kernel_arr.shape[-dims:]
    if any(k > g for k, g in zip(kernel_size, grid, strict=True)) or min(kernel_size) == 0:
        raise GenericityError(
            f"The kernel's spatial size {kernel_size} must be non-empty and fit the "
            f"{'upsampled ' if max(strides) > 1 else ''}grid {grid}: a kernel longer than "
            "the grid wraps around. Use a longer input or a shorter kernel."
        )
    _broadcast_batch("kernel", kernel_arr.shape[:-dims], "input_psd", psd.shape[:-dims])
    if input_signals is None and _is_concrete(psd):
        _check_psd(np.asarray(psd), dims)
    if _is_concrete(kernel_arr):
        kernel_np = np.asarray(kernel_arr)
        _check_finite("kernel", kernel_np)
        if np.any(np.all(kernel_np == 0, axis=_spatial_axes(dims))):
            raise GenericityError("kernel is zero (for some batch entry); ρ is undefined.")
    dtype = jnp.result_type(kernel_arr.dtype, psd.dtype, jnp.float32)
    return _spectral_density_ratio_jit(
        kernel_arr.astype(dtype), psd.astype(dtype), dims, strides, log=log
    )


def _check_psd(psd: np.ndarray, spatial_dims: int) -> None:
    _check_finite("input_psd", psd)
    largest = float(np.max(psd)) if psd.size else 0.0
    # Round-off in a PSD computed by FFT can dip a hair below zero; more is an error.
    if psd.size and float(np.min(psd)) < -1e-6 * max(largest, 0.0):
        raise GenericityError(
            f"input_psd must be non-negative (a power spectrum); its smallest entry is "
            f"{float(np.min(psd)):.3g}. Pass |DFT(x)|² averages, or input_signals=."
        )
    if np.any(np.max(psd, axis=_spatial_axes(spatial_dims)) <= 0):
        raise GenericityError("input_psd is zero (for some batch entry); the input has no power.")
