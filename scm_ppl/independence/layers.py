"""Genericity of the layers of a network: which successive layers pair up, each pair's log
genericity ratio on its real input, and the report that holds them."""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from scm_ppl.errors import GenericityError
from scm_ppl.independence.spectral import spectral_density_ratio
from scm_ppl.independence.trace import trace_ratio

__all__ = ["GenericityReport", "chain_ratios", "log_ratio", "network_genericity", "network_pairs"]

_RECORDED: list[tuple[str, jax.Array]] = []


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

    Examples
    --------
    >>> import equinox as eqx, jax
    >>> from scm_ppl import mechanism_genericity
    >>> net = eqx.nn.MLP(4, 4, 8, depth=2, key=jax.random.key(0))
    >>> rep = mechanism_genericity(net, jax.random.normal(jax.random.key(1), (1000, 4)))
    >>> rep.kinds, rep.num_samples, len(rep.log_ratio_by_pair)
    (('dense', 'dense'), 1000, 2)
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


def log_ratio(
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


def network_pairs(module: eqx.Module, inputs: jax.Array) -> list[tuple]:
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


def network_genericity(module: eqx.Module, inputs: Any) -> GenericityReport:
    inputs_arr = jnp.asarray(inputs)
    if inputs_arr.ndim < 1 or inputs_arr.shape[0] < 2:
        raise GenericityError(
            f"data must be a batch of the network's inputs, shaped (n_samples, ...) with at "
            f"least 2 samples; got shape {inputs_arr.shape}."
        )
    if isinstance(module, eqx.nn.MLP) and module.scan:
        raise GenericityError("An MLP built with scan=True cannot be inspected; use scan=False.")
    found = network_pairs(module, inputs_arr)
    if len(found) < 2:
        raise GenericityError(
            f"The network calls {len(found)} Linear/Conv/ConvTranspose layer(s); genericity "
            "needs at least two in a chain. Pass a program with layers={...} instead."
        )
    pairs, kinds, ratios = chain_ratios(found)
    return GenericityReport(
        pairs=tuple(pairs),
        kinds=tuple(kinds),
        log_ratio_by_pair=tuple(ratios),
        num_samples=int(inputs_arr.shape[0]),
    )


def chain_ratios(found: list[tuple]) -> tuple[list, list, list]:
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
        ratios.append(log_ratio(kind, weight, layer_inputs, stride, dilation))
    return pairs, kinds, ratios
