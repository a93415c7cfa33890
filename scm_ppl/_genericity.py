"""Genericity of every successive pair of mechanisms in a program or a network.

:func:`mechanism_genericity` estimates, for each mechanism in a chain, ``log ρ`` of its
weights with respect to samples of its input, i.e. of the output of the mechanism before
it: the trace ratio for dense layers, the spectral density ratio (per channel pair) for
convolutions. Two ways in:

* an Equinox network (``eqx.nn.MLP``, ``eqx.nn.Sequential`` or any module built of
  ``Linear`` / ``Conv`` / ``ConvTranspose`` layers) and a batch of its inputs: the layers
  are found and their inputs recorded automatically, in the order they are called;
* a NumPyro program or a :class:`~scm_ppl.FittedSCM` and ``layers={param: input_site}``
  naming each mechanism's weight (a ``numpyro.param``) and the site that holds its input;
  the program is run (or the input site read from ``data``) for samples of those inputs.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from numpyro import handlers

from scm_ppl._spectral import spectral_density_ratio
from scm_ppl._trace import trace_ratio
from scm_ppl.errors import GenericityError

__all__ = ["GenericityReport", "mechanism_genericity"]

_LAYER_TYPES = (eqx.nn.Linear, eqx.nn.Conv, eqx.nn.ConvTranspose)
_KINDS = ("auto", "dense", "conv")


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
        Number of input samples each estimate used.
    """

    pairs: tuple[tuple[str, str], ...]
    kinds: tuple[str, ...]
    log_ratio_by_pair: tuple[np.ndarray, ...]
    num_samples: int

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
    return GenericityReport(tuple(pairs), tuple(kinds), tuple(ratios), int(inputs_arr.shape[0]))


def _layer_spec(param: str, spec: Any) -> dict[str, Any]:
    """``"site"`` or ``{"input": site, "kind":, "transpose":, "stride":}`` -> a full spec."""
    full: dict[str, Any] = {"input": spec} if isinstance(spec, str) else dict(spec)
    unknown = set(full) - {"input", "kind", "transpose", "stride", "dilation"}
    if "input" not in full or unknown:
        raise GenericityError(
            f"layers[{param!r}] must be the name of the site holding the mechanism's input, "
            "or a dict with 'input' and optionally 'kind' ('auto', 'dense', 'conv'), "
            f"'transpose' (dense weights stored (in, out)), 'stride', 'dilation'; got {spec!r}."
        )
    full.setdefault("kind", "auto")
    full.setdefault("transpose", False)
    full.setdefault("stride", 1)
    full.setdefault("dilation", 1)
    if full["kind"] not in _KINDS:
        raise GenericityError(
            f"layers[{param!r}]['kind'] must be one of {list(_KINDS)}; got {full['kind']!r}."
        )
    return full


def _program_trace(program: Callable, args: tuple, kwargs: dict, key: Any) -> dict[str, Any]:
    seed = jax.random.key(key) if isinstance(key, int) else key
    return handlers.trace(handlers.seed(program, seed)).get_trace(*args, **kwargs)


def _program_genericity(
    program: Callable,
    data: Mapping[str, Any] | None,
    layers: Mapping[str, Any],
    model_args: tuple,
    model_kwargs: dict,
    key: Any,
) -> GenericityReport:
    specs = {param: _layer_spec(param, spec) for param, spec in layers.items()}
    data = dict(data or {})
    trace = _program_trace(program, model_args, model_kwargs, key)
    params = {n: m["value"] for n, m in trace.items() if m["type"] == "param"}
    sites = {n: m["value"] for n, m in trace.items() if m["type"] in ("sample", "deterministic")}
    pairs, kinds, ratios, counts = [], [], [], []
    upstream = None
    for param, spec in specs.items():
        if param not in params:
            raise GenericityError(
                f"Unknown mechanism parameter {param!r}; the program has params {sorted(params)}."
            )
        site = spec["input"]
        if site not in data and site not in sites:
            raise GenericityError(
                f"Unknown input site {site!r} for {param!r}; the program has sites "
                f"{sorted(sites)} (or pass its samples in data)."
            )
        weight = jnp.asarray(params[param])
        inputs = jnp.asarray(data[site] if site in data else sites[site])
        if spec["transpose"]:
            weight = weight.T
        kind = spec["kind"]
        if kind == "auto":
            kind = "dense" if weight.ndim == 2 else "conv"
        inputs = _as_samples(param, kind, weight, inputs)
        pairs.append((upstream or site, param))
        kinds.append(kind)
        ratios.append(_log_ratio(kind, weight, inputs, spec["stride"], spec["dilation"]))
        counts.append(inputs.shape[0])
        upstream = param
    return GenericityReport(tuple(pairs), tuple(kinds), tuple(ratios), int(min(counts)))


def _as_samples(param: str, kind: str, weight: jax.Array, inputs: jax.Array) -> jax.Array:
    """Input samples with the sample axis first (all leading axes of the site merged)."""
    if kind == "dense":
        if weight.ndim != 2 or inputs.ndim < 1 or inputs.shape[-1] != weight.shape[1]:
            raise GenericityError(
                f"Dense mechanism {param!r} has weight {weight.shape} (out, in) but its input "
                f"site has shape {inputs.shape}: the last axis must be {weight.shape[-1]}. "
                "For weights stored (in, out) (x @ W) pass {'input': ..., 'transpose': True}."
            )
        trailing = 1
    else:
        if weight.ndim not in (1, 2, 3, 4):
            raise GenericityError(
                f"Conv mechanism {param!r} has weight shape {weight.shape}; expected "
                "(k,), (kh, kw), (out, in, k) or (out, in, kh, kw)."
            )
        trailing = weight.ndim if weight.ndim <= 2 else weight.ndim - 1
    if (
        inputs.ndim < trailing
        or inputs.size // max(int(np.prod(inputs.shape[inputs.ndim - trailing :])), 1) < 2
    ):
        raise GenericityError(
            f"The input of {param!r} has shape {inputs.shape}; need at least 2 samples of "
            f"{trailing}-axis inputs. Run the program with more units (model_kwargs) or "
            "pass samples in data."
        )
    return jnp.reshape(inputs, (-1, *inputs.shape[inputs.ndim - trailing :]))


def mechanism_genericity(
    mechanisms: Any,
    data: Any = None,
    *,
    layers: Mapping[str, Any] | Sequence[tuple[str, Any]] | None = None,
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
        Network: a batch of its inputs, ``(n_samples, *in_shape)``. Program: optional
        ``{site: samples}`` for input sites (others are simulated by running the program).
    layers
        Program only: ``{param_name: input_site}`` in chain order, e.g.
        ``{"W1": "z", "W2": "h"}``; a value may also be a dict ``{"input": site, "kind":
        "dense" | "conv", "transpose": bool, "stride": int, "dilation": int}``. Dense weights
        are ``(out, in)`` (``y = W x``); conv kernels ``(k,)``, ``(out, in, k)``,
        ``(out, in, kh, kw)``, or ``(kh, kw)`` with ``"kind": "conv"`` (by default a
        2-D weight is dense). The first mechanism is measured against
        its input site, each later one against the output of the one before.
    model_args, model_kwargs
        Arguments of the program (choose the number of units, i.e. of samples, here). For
        a FittedSCM they default to the fit's ``model_kwargs``, with as many units as
        ``data`` has rows (or the fit had).
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
    if not layers:
        raise GenericityError(
            "For a program, name its mechanisms in chain order: layers={param: input_site}, "
            "e.g. layers={'W1': 'z', 'W2': 'h'} (the weight and the site holding its input)."
        )
    if data is not None and not isinstance(data, Mapping):
        raise GenericityError(
            f"For a program, data must be {{site: samples}}; got {type(data).__name__}."
        )
    kwargs = _fitted_kwargs(mechanisms, data, dict(model_kwargs or {}))
    return _program_genericity(program, data, dict(layers), tuple(model_args), kwargs, key)


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
