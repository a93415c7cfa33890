"""Genericity of every successive pair of mechanisms in a program or a network.

:func:`mechanism_genericity` estimates, for each mechanism in a chain, ``log ρ`` of its
weights with respect to samples of its input, i.e. of the output of the mechanism before
it: the trace ratio for dense layers, the spectral density ratio (per channel pair) for
convolutions. Two ways in:

* an Equinox network (``eqx.nn.MLP``, ``eqx.nn.Sequential`` or any module built of
  ``Linear`` / ``Conv`` / ``ConvTranspose`` layers) and a batch of its inputs: the layers
  are found and their inputs recorded automatically, in the order they are called;
* a NumPyro program or a :class:`~scm_ppl.FittedSCM` whose mechanisms are networks of
  :mod:`scm_ppl.learn.mechanisms` (``additive_noise`` & co): every such network is found, run on
  the parents' values of the rows of ``data``, and its successive layers measured on their
  recorded inputs (:mod:`scm_ppl.independence.discovery`);
* a program and ``layers={param: input_site}`` naming each mechanism's weight (a
  ``numpyro.param``) and the site that holds its input; the program is run (or the input
  site read from ``data``) for samples of those inputs.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import equinox as eqx
import numpy as np

from scm_ppl.errors import GenericityError
from scm_ppl.independence.discovery import program_genericity
from scm_ppl.independence.layers import GenericityReport, network_genericity

__all__ = ["GenericityReport", "mechanism_genericity"]


def mechanism_genericity(
    mechanisms: Any,
    data: Any = None,
    *,
    layers: Mapping[str, Any] | Sequence[tuple[str, Any]] | None = None,
    params: Mapping[str, Any] | None = None,
    model_args: tuple = (),
    model_kwargs: Mapping[str, Any] | None = None,
    key: Any = 0,
) -> GenericityReport:
    """``log ρ`` of each successive pair of mechanisms, estimated from input samples.

    For each mechanism of a chain, its genericity ratio with respect to its input (the
    output of the mechanism before it): :func:`~scm_ppl.trace_ratio` with the inputs'
    sample covariance for dense weights, :func:`~scm_ppl.spectral_density_ratio` with their
    averaged periodogram for convolutions (per channel pair). ``log ρ ≈ 0``: generic.

    Parameters
    ----------
    mechanisms
        An Equinox network (``eqx.nn.MLP``, ``eqx.nn.Sequential``, any module of
        ``Linear``/``Conv``/``ConvTranspose`` layers), or a NumPyro program or
        :class:`~scm_ppl.FittedSCM`.
    data
        Network: a batch of its inputs, ``(n_samples, *in_shape)``. Program without
        ``layers``: ``{site: rows}`` substituted into the program, so that each network
        meets the parents' values of these rows (optional: without it the program
        simulates its units). Program with ``layers``: optional ``{site: samples}`` for
        input sites (others are simulated by running the program).
    layers
        Program only; leave out to find the networks of the program's
        :mod:`scm_ppl.learn.mechanisms` automatically (pairs named
        ``("<site>.net.layers[i]", "<site>.net.layers[i+1]")``: the module's param
        ``"<site>.net$params"`` and the layer's path in it; flows and modules the program
        calls itself are listed in ``skipped``). Otherwise ``{param_name: input_site}`` in
        chain order, e.g. ``{"W1": "z", "W2": "h"}``; a value may also be a dict
        ``{"input": site, "kind": "dense" | "conv", "transpose": bool, "stride": int,
        "dilation": int}``. Dense weights are ``(out, in)`` (``y = W x``); conv kernels
        ``(k,)``, ``(out, in, k)``, ``(out, in, kh, kw)``, or ``(kh, kw)`` with ``"kind":
        "conv"`` (by default a 2-D weight is dense). The first mechanism is measured
        against its input site, each later one against the output of the one before.
    params
        Plain program only: ``{param: value}`` to run it with (default: its initial
        values), e.g. ``{"x2.net$params": net}``.
    model_args, model_kwargs
        Arguments of the program (choose the number of units, i.e. of samples, here). For
        a FittedSCM they default to the fit's ``model_kwargs``, with as many units as
        ``data`` has rows (or the fit had); a program found by discovery that takes ``n``
        runs ``n`` = the data's rows unless set here.
    key
        PRNG key (or int seed) for running the program.

    Returns
    -------
    GenericityReport
        ``.table()`` (records), ``.log_ratios`` (flat), per-pair values; plot with
        ``plot_genericity(report)`` (``scm_ppl._plot_independence``).

    Notes
    -----
    Networks: layers are found automatically and paired in the order they are called
    (their inputs recorded under one ``vmap``); padding is ignored (the circular
    approximation), dilation is honoured, and a strided ``ConvTranspose`` is measured on
    its upsampled grid.

    Programs without ``layers``: the networks of :mod:`scm_ppl.learn.mechanisms` announce
    themselves while the program runs once on ``data`` (its rows substituted for their
    sites), so each network is applied to the parents' values of those rows and its layers'
    inputs (the hidden activations) are recorded as for a network passed by hand. Flows
    and modules a program registers and calls itself (``numpyro.contrib.module``) are not
    visible this way: they are listed in ``report.skipped``; measure such a network with
    ``mechanism_genericity(net, inputs)``.

    Examples
    --------
    >>> import equinox as eqx, jax
    >>> from scm_ppl import mechanism_genericity
    >>> net = eqx.nn.MLP(8, 8, 16, depth=2, key=jax.random.key(0))
    >>> rep = mechanism_genericity(net, jax.random.normal(jax.random.key(1), (2000, 8)))
    >>> [pair for pair in rep.pairs]
    [('layers[0]', 'layers[1]'), ('layers[1]', 'layers[2]')]
    """
    if isinstance(mechanisms, eqx.Module) and not callable(getattr(mechanisms, "model", None)):
        if layers is not None:
            raise GenericityError(
                "layers= names params of a program; a network's layers are found automatically."
            )
        if data is None:
            raise GenericityError(
                "Pass a batch of the network's inputs as data, shaped (n_samples, *in_shape)."
            )
        return network_genericity(mechanisms, data)
    program = getattr(mechanisms, "model", mechanisms)
    if not callable(program):
        raise GenericityError(
            f"mechanisms must be an Equinox network, a NumPyro program or a FittedSCM; got "
            f"{type(mechanisms).__name__}."
        )
    if data is not None and not isinstance(data, Mapping):
        raise GenericityError(
            f"For a program, data must be {{site: samples}}; got {type(data).__name__}."
        )
    if params is not None and program is not mechanisms:
        raise GenericityError(
            f"A {type(mechanisms).__name__} already runs with its learned params; params= "
            "is for a plain program (pass fitted.base_model to substitute other values)."
        )
    if params is not None and not isinstance(params, Mapping):
        raise GenericityError(
            f"params must be {{param: value}} to run the program with; got {type(params).__name__}."
        )
    kwargs = _fitted_kwargs(mechanisms, data, dict(model_kwargs or {}))
    settings = getattr(mechanisms, "settings", None)
    size_arg = (settings.get("size_arg") if isinstance(settings, Mapping) else None) or "n"
    return program_genericity(
        program, data, layers, params, tuple(model_args), kwargs, key, size_arg
    )


def _fitted_kwargs(fitted: Any, data: Mapping[str, Any] | None, kwargs: dict) -> dict:
    """A FittedSCM's saved model kwargs, and as many units as ``data`` has rows (or the
    fit had), unless the caller chose: the input samples come from the fitted program."""
    settings = getattr(fitted, "settings", None)
    if not isinstance(settings, Mapping):
        return kwargs
    merged = {**(settings.get("model_kwargs") or {}), **kwargs}
    size_arg = settings.get("size_arg")
    if size_arg and size_arg not in kwargs:
        rows = [np.shape(v)[0] for v in (data or {}).values() if np.ndim(v) > 0]
        units = rows[0] if rows else settings.get("num_rows")
        if units:
            merged[size_arg] = int(units)
    return merged
