"""The independence-of-mechanisms penalty of ``fit(..., icm_penalty=λ)``.

Besserve et al. (AAAI 2021) call two successive mechanisms of a generator *generic* with
respect to each other when the genericity ratio of the second mechanism and the covariance
(or power spectrum) of its input, the first mechanism's output, is 1. The penalty adds
``λ · Σ_pairs (log ρ)²`` to the per-row training loss, with ρ computed differentiably from
the current parameters:

* a **dense** pair (a matrix ``W2``, e.g. a 2-D ``numpyro.param`` or an ``eqx.nn.Linear``):
  ``ρ = trace_ratio(W2, Σ)``;
* a **circular** pair (full-length 1-D kernels ``k2``): ``ρ = spectral_density_ratio(k2, S)``;
* a **conv** pair (``eqx.nn.Conv``/``ConvTranspose`` weights ``(out, in, *k)``): one ratio
  per channel pair, ``S`` per input channel, on the second layer's (upsampled) grid; the
  pair contributes the *mean* of ``(log ρ)²`` over channel pairs. When the second layer
  reads more channels than the first makes (parents concatenated as constant planes, as
  in the image decoders), the first layer's channels are taken to lead and only they
  are paired.

The input statistics ``Σ``/``S`` come from the first element of the pair: a **site** name
(a per-unit site holding the second mechanism's input) gives the minibatch's sample
covariance / averaged periodogram; a **parameter** (the first mechanism itself) gives the
statistics of its output for a white input, ``W1 W1ᵀ`` or ``Σ_j |k̂1_ij|²`` — the known
latent covariance when the first mechanism reads white noise, as in the paper's toy.
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping, Sequence
from typing import Any, NamedTuple

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from scm_ppl.errors import GenericityError
from scm_ppl.independence import (
    averaged_periodogram_unchecked,
    spectral_density_ratio_unchecked,
    trace_ratio_unchecked,
)
from scm_ppl.learn.param_names import get_path, path_keys, public_name, split_name

__all__ = ["IcmPair", "icm_penalty_value", "resolve_pairs"]

_CONV = (eqx.nn.Conv, eqx.nn.ConvTranspose)
_MIN_GRID = 16  # grid of a conv pair's ratio when its input statistics come from weights


class Layer(NamedTuple):
    """Where a mechanism's weight lives: ``params[param]`` then ``keys`` (then ``.weight``)."""

    name: str
    param: str
    keys: tuple[str | int, ...]
    kind: str  # "dense", "circular" or "conv"
    module: bool  # a Linear/Conv module (its weight is ``.weight``)
    stride: tuple[int, ...]


class IcmPair(NamedTuple):
    """One penalised pair: the input source (a layer or a site) and the second layer."""

    first: Layer | str
    second: Layer
    grid: tuple[int, ...]  # the DFT grid of a circular/conv ratio; () for dense


def _weight(params: Mapping[str, Any], layer: Layer) -> jax.Array:
    value = get_path(params[layer.param], layer.keys)
    return value.weight if layer.module else value


def _layer_of(value: Any, name: str, param: str, keys: tuple) -> Layer | None:
    stride: tuple[int, ...] = ()
    if isinstance(value, eqx.nn.Linear):
        kind, module = "dense", True
    elif isinstance(value, _CONV):
        kind, module = "conv", True
        if isinstance(value, eqx.nn.ConvTranspose):
            stride = tuple(value.stride)
    elif isinstance(value, (jax.Array, np.ndarray)):
        kind, module = {1: "circular", 2: "dense"}.get(np.ndim(value), "conv"), False
    else:
        return None
    return Layer(name=name, param=param, keys=keys, kind=kind, module=module, stride=stride)


def _detect(params: Mapping[str, Any]) -> list[Layer]:
    """Linear and conv layers in the order the program registers them: 2-D params, and
    ``eqx.nn.Linear``/``Conv``/``ConvTranspose`` layers inside modules."""
    layers = []
    for param, value in params.items():
        if isinstance(value, (jax.Array, np.ndarray)):
            if np.ndim(value) == 2:
                layers.append(
                    Layer(name=param, param=param, keys=(), kind="dense", module=False, stride=())
                )
            continue
        found = jax.tree_util.tree_flatten_with_path(
            value, is_leaf=lambda m: isinstance(m, (eqx.nn.Linear, *_CONV))
        )[0]
        for path, leaf in found:
            layer = _layer_of(leaf, "", param, ())
            if layer is None:
                continue
            keystr = jax.tree_util.keystr(path)
            keys = tuple(path_keys(keystr)) if keystr else ()
            layers.append(layer._replace(name=public_name(param) + keystr, keys=keys))
    return layers


def _compatible(first: Layer, second: Layer, params: Mapping[str, Any]) -> bool:
    if first.kind != second.kind:
        return False
    w1, w2 = _weight(params, first), _weight(params, second)
    if first.kind == "dense":
        return w2.shape[-1] == w1.shape[-2]
    # A conv may read more channels than the first layer makes (e.g. constant planes of
    # the parents concatenated after them): the first layer's channels lead, and only
    # they are paired.
    return w1.ndim == w2.ndim and (first.kind == "circular" or w2.shape[1] >= w1.shape[0])


def _resolve_layer(name: str, params: Mapping[str, Any]) -> Layer | None:
    by_public = {public_name(p): p for p in params}
    head, path = split_name(name, by_public)
    if head not in by_public:
        return None
    keys = tuple(path_keys(path)) if path else ()
    try:
        value = get_path(params[by_public[head]], keys)
    except (AttributeError, KeyError, IndexError, TypeError):
        return None
    return _layer_of(value, name, by_public[head], keys)


def resolve_pairs(
    pairs: Sequence[Sequence[str]] | None,
    params: Mapping[str, Any],
    unit_sites: Mapping[str, tuple[int, ...]],
) -> list[IcmPair]:
    """Check ``icm_pairs`` against the program (``params``: initial parameter values;
    ``unit_sites``: per-unit sites and their per-unit shapes), or detect pairs."""
    if pairs is None:
        layers = _detect(params)
        found = [(a, b) for a, b in itertools.pairwise(layers) if _compatible(a, b, params)]
        if not found:
            raise GenericityError(
                "icm_penalty needs successive mechanism pairs, and none were detected: the "
                f"program's parameters {sorted(public_name(p) for p in params)} hold no two "
                "successive linear (2-D params, eqx.nn.Linear) or convolution layers. Mark the "
                "pairs: icm_pairs=[(first, second)], first being a parameter/module path or the "
                "site holding the second mechanism's input."
            )
        return [_with_grid(a, b, params, unit_sites) for a, b in found]
    out = []
    for pair in pairs:
        if isinstance(pair, str) or len(pair) != 2:
            raise GenericityError(f"icm_pairs holds (first, second) name pairs; got {pair!r}.")
        first_name, second_name = pair
        second = _resolve_layer(second_name, params)
        if second is None:
            raise GenericityError(
                f"icm_pairs names '{second_name}' as a mechanism, but it is no parameter or "
                f"layer of the program; its parameters and modules are "
                f"{sorted(public_name(p) for p in params)}."
            )
        if first_name in unit_sites:
            first: Layer | str = first_name
        else:
            layer = _resolve_layer(first_name, params)
            if layer is None:
                raise GenericityError(
                    f"icm_pairs names '{first_name}' as the first mechanism, but it is neither a "
                    f"parameter/module ({sorted(public_name(p) for p in params)}) nor a "
                    f"per-unit site ({sorted(unit_sites)})."
                )
            if not _compatible(layer, second, params):
                raise GenericityError(
                    f"icm_pairs ({first_name!r}, {second_name!r}): a {layer.kind} layer of shape "
                    f"{_weight(params, layer).shape} cannot feed a {second.kind} layer of shape "
                    f"{_weight(params, second).shape}."
                )
            first = layer
        out.append(_with_grid(first, second, params, unit_sites))
    return out


def _with_grid(
    first: Layer | str,
    second: Layer,
    params: Mapping[str, Any],
    unit_sites: Mapping[str, tuple[int, ...]],
) -> IcmPair:
    w2 = _weight(params, second)
    if second.kind == "dense":
        need = (w2.shape[-1],)
        if isinstance(first, str) and int(np.prod(unit_sites[first])) != need[0]:
            raise GenericityError(
                f"Site '{first}' has {int(np.prod(unit_sites[first]))} values per unit, but "
                f"'{second.name}' of shape {w2.shape} reads {need[0]}."
            )
        return IcmPair(first, second, ())
    spatial = 1 if second.kind == "circular" else w2.ndim - 2
    if isinstance(first, str):
        shape = unit_sites[first]
        grid = tuple(shape[-spatial:])
        if second.kind == "conv" and (len(shape) != spatial + 1 or shape[0] != w2.shape[1]):
            raise GenericityError(
                f"Site '{first}' has per-unit shape {shape}; '{second.name}' reads "
                f"{w2.shape[1]} channels of a {spatial}-D grid: (channels, *grid) expected."
            )
    elif second.kind == "circular":
        grid = (_weight(params, first).shape[-1],)
    else:
        size = max(*_weight(params, first).shape[2:], *w2.shape[2:])
        grid = (max(_MIN_GRID, 2 * size),) * spatial
    if any(k > g for k, g in zip(w2.shape[-spatial:], grid, strict=True)):
        raise GenericityError(
            f"'{second.name}' has a kernel {w2.shape} longer than its grid {grid}."
        )
    return IcmPair(first, second, grid)


def _pair_log_ratio(pair: IcmPair, params: Mapping[str, Any], sites: Mapping) -> jax.Array:
    w2 = _weight(params, pair.second)
    spatial = len(pair.grid)
    if isinstance(pair.first, str):
        values = sites[pair.first]
        if pair.second.kind == "dense":
            x = values.reshape(values.shape[0], -1)
            x = x - jnp.mean(x, axis=0)
            stats = x.T @ x / max(x.shape[0] - 1, 1)
        else:
            stats = averaged_periodogram_unchecked(values, spatial)
    else:
        w1 = _weight(params, pair.first)
        if pair.second.kind == "dense":
            stats = w1 @ w1.T
        else:
            axes = tuple(range(-spatial, 0))
            gain = jnp.abs(jnp.fft.fftn(w1, s=pair.grid, axes=axes)) ** 2
            stats = gain if pair.second.kind == "circular" else jnp.sum(gain, axis=1)
            if pair.second.kind == "conv":
                w2 = w2[:, : stats.shape[0]]  # the channels the first layer feeds
    if pair.second.kind == "dense":
        return trace_ratio_unchecked(w2, stats, log=True)
    stride = pair.second.stride or None  # a transposed conv reads its input upsampled
    return spectral_density_ratio_unchecked(w2, stats, spatial, stride=stride, log=True)


def icm_penalty_value(
    pairs: Sequence[IcmPair], params: Mapping[str, Any], sites: Mapping[str, jax.Array]
) -> jax.Array:
    """``Σ_pairs mean((log ρ)²)`` (the mean runs over channel pairs of a conv pair)."""
    total = jnp.zeros(())
    for pair in pairs:
        total = total + jnp.mean(_pair_log_ratio(pair, params, sites) ** 2)
    return total


def captured_sites(pairs: Sequence[IcmPair]) -> tuple[str, ...]:
    """The sites whose minibatch values the penalty reads."""
    return tuple(sorted({p.first for p in pairs if isinstance(p.first, str)}))
