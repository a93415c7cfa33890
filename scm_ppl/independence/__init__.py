"""Independence of mechanisms: genericity ratios between a mechanism and its input.

Besserve, Sun, Janzing, Schölkopf, "A theory of independent mechanisms for extrapolation in
generative models" (AAAI 2021). A generative model is a chain of mechanisms; observational
data fix only its output, and among the factorisations that fit, the ones whose successive
mechanisms are *generic* with respect to each other extrapolate well. Genericity is measured
by group-invariance ratios, 1 for a generic pair:

* :func:`trace_ratio` for a linear map ``A`` and its input covariance ``Σ``;
* :func:`spectral_density_ratio` for a convolution kernel and its input's power spectrum;
* :func:`trace_ratio_from_samples` and ``spectral_density_ratio(..., input_signals=...)``
  estimate them from samples;
* :func:`mechanism_genericity` measures every successive pair of layers of a fitted program.

Using the ratios inside a jitted loss
-------------------------------------
The public functions are pure ``jax.numpy`` and can be called inside ``jit``/``grad``:
shapes are always checked (they are static), values (finite, PSD, non-negative) only when
the arrays are concrete, so a traced call never raises on values. The unchecked cores
:func:`trace_ratio_unchecked`, :func:`trace_ratio_from_samples_unchecked` and
:func:`spectral_density_ratio_unchecked`
skip the checks altogether (for a penalty whose inputs are validated once, up front).
"""

from __future__ import annotations

from scm_ppl.independence.genericity import GenericityReport, mechanism_genericity
from scm_ppl.independence.spectral import (
    averaged_periodogram,
    averaged_periodogram_unchecked,
    spectral_density_ratio,
    spectral_density_ratio_unchecked,
)
from scm_ppl.independence.trace import (
    trace_ratio,
    trace_ratio_from_samples,
    trace_ratio_from_samples_unchecked,
    trace_ratio_unchecked,
)

__all__ = [
    "GenericityReport",
    "averaged_periodogram",
    "averaged_periodogram_unchecked",
    "mechanism_genericity",
    "spectral_density_ratio",
    "spectral_density_ratio_unchecked",
    "trace_ratio",
    "trace_ratio_from_samples",
    "trace_ratio_from_samples_unchecked",
    "trace_ratio_unchecked",
]
