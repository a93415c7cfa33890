"""Genericity of every successive pair of mechanisms in a program or a network.

:func:`mechanism_genericity` estimates, for each mechanism in a chain, ``log ρ`` of its
weights with respect to samples of its input, i.e. of the output of the mechanism before
it: the trace ratio for dense layers, the spectral density ratio (per channel pair) for
convolutions. Two ways in:

* an Equinox network (``eqx.nn.MLP``, ``eqx.nn.Sequential`` or any module built of
  ``Linear`` / ``Conv`` / ``ConvTranspose`` layers) and a batch of its inputs: the layers
  are found and their inputs recorded automatically, in the order they are called;
* a NumPyro program or a :class:`~scm_ppl.FittedSCM` whose mechanisms are networks of
  :mod:`scm_ppl.mechanisms` (``additive_noise`` & co): every such network is found, run on
  the parents' values of the rows of ``data``, and its successive layers measured on their
  recorded inputs (:mod:`scm_ppl._genericity_program`);
* a program and ``layers={param: input_site}`` naming each mechanism's weight (a
  ``numpyro.param``) and the site that holds its input; the program is run (or the input
  site read from ``data``) for samples of those inputs.
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from scm_ppl._spectral import spectral_density_ratio
from scm_ppl._trace import trace_ratio
from scm_ppl.errors import GenericityError

__all__ = ["GenericityReport", "mechanism_genericity"]

_LAYER_TYPES = (eqx.nn.Linear, eqx.nn.Conv, eqx.nn.ConvTranspose)


@dataclass(frozen=True, eq=False)
class GenericityReport:
    """``log ρ`` for each successive pair of mechanisms.

    Attributes
    ----------
    pairs
        ``(upstream, mechanism)`` names: ``mechanism``'s ratio is taken with respect to
        its input, the output of ``upstream`` (a layer, or an input site).
    kinds
        ``"dense"`` (trace ratio) or ``"conv"`` (spectral density ratio), per pair.
    log_ratio_by_pair
        Per pair: a scalar (dense, single-channel conv) or an ``(out_ch, in_ch)`` table.
    num_samples
        Number of input samples each estimate used (the fewest, over pairs).
    skipped
        Mechanisms found in a program but not measured, each with the reason (a flow, a
        single-layer network, a module the program calls itself).
    """

    pairs: tuple[tuple[str, str], ...]
    kinds: tuple[str, ...]
    log_ratio_by_pair: tuple[np.ndarray, ...]
    num_samples: int
    skipped: tuple[str, ...] = ()

    @property
    def log_ratios(self) -> np.ndarray:
        """Every ``log ρ`` (all pairs, all channel pairs) in one flat array."""
        if not self.log_ratio_by_pair:
            return np.zeros(0)
        return np.concatenate([np.ravel(r) for r in self.log_ratio_by_pair])

    def table(self) -> list[dict[str, Any]]:
        """One record per pair and channel pair: ``upstream``, ``mechanism``, ``kind``,
        ``out_channel``, ``in_channel`` (``None`` without channels), ``log_ratio``."""
        rows = []
        for (upstream, mechanism), kind, ratios in zip(
            self.pairs, self.kinds, self.log_ratio_by_pair, strict=True
        ):
            cells = (
                [((None, None), ratios)]
                if np.ndim(ratios) == 0
                else [(index, ratios[index]) for index in np.ndindex(*np.shape(ratios))]
            )
            for (out_channel, in_channel), value in cells:
                rows.append(
                    {
                        "upstream": upstream,
                        "mechanism": mechanism,
                        "kind": kind,
                        "out_channel": out_channel,
                        "in_channel": in_channel,
                        "log_ratio": float(value),
                    }
                )
        return rows

    def __repr__(self) -> str:
        lines = [f"GenericityReport({len(self.pairs)} pairs, {self.num_samples} samples)"]
        for (upstream, mechanism), kind, ratios in zip(
            self.pairs, self.kinds, self.log_ratio_by_pair, strict=True
        ):
            values = np.ravel(ratios)
            spread = f" ± {np.std(values):.3g} over {values.size} channel pairs"
            lines.append(
                f"  {upstream} -> {mechanism} [{kind}]: log ρ = {np.mean(values):+.4f}"
                + (spread if values.size > 1 else "")
            )
        lines.extend(f"  skipped {note}" for note in self.skipped)
        return "\n".join(lines)


def _log_ratio(
    kind: str, weight: jax.Array, inputs: jax.Array, stride: Any = 1, dilation: Any = 1
) -> np.ndarray:
    """``log ρ`` of ``weight`` w.r.t. input samples (sample axis first)."""
    if kind == "dense":
        flat = jnp.reshape(inputs, (-1, weight.shape[-1]))
        centered = flat - jnp.mean(flat, axis=0)
        cov = centered.T @ centered / (flat.shape[0] - 1)
        return np.asarray(trace_ratio(weight, (cov + cov.T) / 2, log=True))
    channels = weight.ndim > 2 or (weight.ndim == 2 and inputs.ndim == 3)
    spatial_dims = weight.ndim - 2 if weight.ndim > 2 else weight.ndim
    if any(d > 1 for d in np.broadcast_to(dilation, (spatial_dims,))):
        weight = _dilated(weight, tuple(np.broadcast_to(dilation, (spatial_dims,))))
    trailing = spatial_dims + (1 if channels else 0)
    signals = jnp.reshape(inputs, (-1, *inputs.shape[inputs.ndim - trailing :]))
    return np.asarray(
        spectral_density_ratio(
            weight, input_signals=signals, spatial_dims=spatial_dims, stride=stride, log=True
        )
    )


def _dilated(kernel: jax.Array, dilation: tuple[int, ...]) -> jax.Array:
    """The kernel with ``dilation - 1`` zeros between taps: what a dilated conv applies."""
    spatial = kernel.shape[-len(dilation) :]
    dilated = ((k - 1) * d + 1 for k, d in zip(spatial, dilation, strict=True))
    shape = (*kernel.shape[: -len(dilation)], *dilated)
    index = (Ellipsis, *(slice(None, None, d) for d in dilation))
    return jnp.zeros(shape, kernel.dtype).at[index].set(kernel)


class _Recorder(eqx.Module):
    """Calls the wrapped layer and records its input (inside one trace, see below)."""

    layer: Any
    name: str = eqx.field(static=True)

    def __call__(self, x: jax.Array, *, key: Any = None) -> jax.Array:
        _RECORDED.append((self.name, x))
        return self.layer(x)


_RECORDED: list[tuple[str, jax.Array]] = []


def _network_pairs(module: eqx.Module, inputs: jax.Array) -> list[tuple]:
    """``[(name, layer, recorded inputs)]`` in call order, recorded under one ``vmap``."""

    def wrap(path: Any, node: Any) -> Any:
        if isinstance(node, _LAYER_TYPES):
            return _Recorder(node, jax.tree_util.keystr(path).lstrip("."))
        return node

    wrapped = jax.tree_util.tree_map_with_path(
        wrap, module, is_leaf=lambda n: isinstance(n, _LAYER_TYPES)
    )
    order: list[str] = []

    def run(x: jax.Array) -> dict[str, jax.Array]:
        _RECORDED.clear()
        try:
            wrapped(x)
            seen: dict[str, jax.Array] = {}
            for name, value in _RECORDED:
                if name not in seen:
                    order.append(name)
                    seen[name] = value
            return seen
        finally:
            _RECORDED.clear()

    # One compiled pass (``order`` fills while tracing) instead of op-by-op dispatch.
    recorded = jax.jit(jax.vmap(run))(inputs)
    layers = {
        jax.tree_util.keystr(path).lstrip("."): node
        for path, node in jax.tree_util.tree_flatten_with_path(
            module, is_leaf=lambda n: isinstance(n, _LAYER_TYPES)
        )[0]
        if isinstance(node, _LAYER_TYPES)
    }
    return [(name, layers[name], recorded[name]) for name in order]


def _network_genericity(module: eqx.Module, inputs: Any) -> GenericityReport:
    inputs_arr = jnp.asarray(inputs)
    if inputs_arr.ndim < 1 or inputs_arr.shape[0] < 2:
        raise GenericityError(
            f"data must be a batch of the network's inputs, shaped (n_samples, ...) with at "
            f"least 2 samples; got shape {inputs_arr.shape}."
        )
    if isinstance(module, eqx.nn.MLP) and module.scan:
        raise GenericityError("An MLP built with scan=True cannot be inspected; use scan=False.")
    found = _network_pairs(module, inputs_arr)
    if len(found) < 2:
        raise GenericityError(
            f"The network calls {len(found)} Linear/Conv/ConvTranspose layer(s); genericity "
            "needs at least two in a chain. Pass a program with layers={...} instead."
        )
    pairs, kinds, ratios = _chain_ratios(found)
    return GenericityReport(tuple(pairs), tuple(kinds), tuple(ratios), int(inputs_arr.shape[0]))


def _chain_ratios(found: list[tuple]) -> tuple[list, list, list]:
    """Pairs, kinds and ``log ρ`` of successive layers ``[(name, layer, inputs)]``."""
    pairs, kinds, ratios = [], [], []
    for (upstream, _, _), (name, layer, layer_inputs) in itertools.pairwise(found):
        if isinstance(layer, eqx.nn.Linear):
            # Equinox stores a "scalar" side as size 1, so the weight is always 2-D.
            kind, weight, stride, dilation = "dense", layer.weight, 1, 1
            layer_inputs = jnp.reshape(layer_inputs, (layer_inputs.shape[0], -1))
        else:
            if layer.groups != 1 or layer.num_spatial_dims > 2:
                raise GenericityError(
                    f"Layer {name!r} is a {layer.num_spatial_dims}-D convolution with "
                    f"groups={layer.groups}; genericity handles 1-D and 2-D convolutions "
                    "with groups=1."
                )
            kind, weight, dilation = "conv", layer.weight, layer.dilation
            # A strided Conv filters and then subsamples: the filter meets its input grid.
            # A strided ConvTranspose filters the zero-inserted input: the upsampled grid.
            stride = layer.stride if isinstance(layer, eqx.nn.ConvTranspose) else 1
        pairs.append((upstream, name))
        kinds.append(kind)
        ratios.append(_log_ratio(kind, weight, layer_inputs, stride, dilation))
    return pairs, kinds, ratios


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
        :mod:`scm_ppl.mechanisms` automatically (pairs named
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

    Programs without ``layers``: the networks of :mod:`scm_ppl.mechanisms` announce
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
        return _network_genericity(mechanisms, data)
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
    # Imported here: the program paths build on this module's report and network code.
    from scm_ppl._genericity_program import program_genericity

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
