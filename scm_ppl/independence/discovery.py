"""Genericity of the mechanisms of a program: named layers, or networks found by themselves.

Named layers (``layers={param: input_site}``): each weight, a ``numpyro.param``, is
measured against samples of its input site, simulated by running the program or read from
``data``.

Found networks (no ``layers``): the neural mechanisms of :mod:`scm_ppl.learn.mechanisms`
(``additive_noise``, ``location_scale``, ``categorical``, ``bernoulli``) each apply an
Equinox MLP to their site's parents, and show that network, with the parents it is applied
to, to any handler on the NumPyro stack that has a ``record_network`` method.
:func:`discovered_genericity` runs the program once under such a handler, with the rows of
``data`` substituted for their sites, so each network meets the parents' values of those
rows. The network's layers then run on those parents under one ``vmap`` that records every
layer's actual input (the hidden activations), and each successive pair of layers is
measured as for a network passed by hand: ``log ρ`` of the later layer's weight against
the sample covariance (or periodogram) of its recorded input.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from numpyro import handlers
from numpyro.primitives import Messenger

from scm_ppl.errors import GenericityError
from scm_ppl.independence.layers import GenericityReport, chain_ratios, log_ratio, network_pairs

__all__ = ["discovered_genericity", "program_genericity"]

_KINDS = ("auto", "dense", "conv")

_MODULE_SUFFIX = "$params"  # where numpyro.contrib.module keeps a module's arrays
_HELPERS = "additive_noise, location_scale, categorical, bernoulli"


def program_genericity(
    program: Callable,
    data: Mapping[str, Any] | None,
    layers: Mapping[str, Any] | Sequence[tuple[str, Any]] | None,
    params: Mapping[str, Any] | None,
    model_args: tuple,
    model_kwargs: dict,
    key: Any,
    size_arg: str,
) -> GenericityReport:
    """The named ``layers`` of ``program`` (``{param: input_site}``), or, without them,
    the networks its mechanisms show while it runs on ``data``."""
    if not layers:
        return discovered_genericity(program, data, params, model_args, model_kwargs, key, size_arg)
    if params:
        program = handlers.substitute(program, data=dict(params))
    return _named_genericity(program, data, dict(layers), model_args, model_kwargs, key)


# --------------------------------------------------------------------------- named layers


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


def _named_genericity(
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
        ratios.append(log_ratio(kind, weight, inputs, spec["stride"], spec["dilation"]))
        counts.append(inputs.shape[0])
        upstream = param
    return GenericityReport(
        pairs=tuple(pairs),
        kinds=tuple(kinds),
        log_ratio_by_pair=tuple(ratios),
        num_samples=int(min(counts)),
    )


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


# ------------------------------------------------------------------------- found networks


class _NetworkRecorder(Messenger):
    """Collects ``{site: (network, inputs)}`` from the mechanisms run beneath it."""

    def __init__(self) -> None:
        super().__init__()
        self.networks: dict[str, tuple[Any, jax.Array]] = {}

    def record_network(self, name: str, module: Any, inputs: jax.Array) -> None:
        self.networks[name] = (module, inputs)


def _rows(data: Mapping[str, Any]) -> int | None:
    """The data's common number of rows (units); ``None`` without data."""
    if not data:
        return None
    shapes = {site: np.shape(value) for site, value in data.items()}
    rows = {shape[0] for shape in shapes.values() if shape}
    if len(rows) != 1 or min(rows) < 2 or any(not shape for shape in shapes.values()):
        raise GenericityError(
            "data must hold at least 2 rows (units) of each site, the same number for every "
            f"site, as {{site: (n_rows, ...) array}}; got shapes {shapes}."
        )
    return rows.pop()


def _sized_kwargs(program: Callable, kwargs: dict, rows: int | None, size_arg: str) -> dict:
    """Run as many units as the data have rows, through the program's size argument."""
    if rows is None:
        return kwargs
    if size_arg not in kwargs:
        try:
            takes_size = size_arg in inspect.signature(program).parameters
        except (TypeError, ValueError):  # a callable without a signature
            takes_size = False
        return {**kwargs, size_arg: rows} if takes_size else kwargs
    if kwargs[size_arg] != rows:
        raise GenericityError(
            f"model_kwargs sets {size_arg}={kwargs[size_arg]!r} units but data have {rows} "
            f"rows; the networks are run on the parents' values of the data's rows, so "
            f"{size_arg} must equal the number of rows (or leave it out)."
        )
    return kwargs


def _unknown_names(
    names: Mapping[str, Any], trace: Mapping[str, Any], types: tuple[str, ...], what: str
) -> None:
    known = sorted(n for n, m in trace.items() if m["type"] in types)
    unknown = sorted(set(names) - set(known))
    if unknown:
        raise GenericityError(
            f"{what} names {unknown}, which the program does not have; its "
            f"{'/'.join(types)} sites are {known}."
        )


def _unmeasured(trace: Mapping[str, Any], networks: Mapping[str, Any]) -> list[str]:
    """Modules registered in the program that were not shown to the recorder."""
    shown = {f"{site}.net{_MODULE_SUFFIX}" for site in networks}
    notes = []
    for name, msg in trace.items():
        if msg["type"] != "param" or not name.endswith(_MODULE_SUFFIX) or name in shown:
            continue
        if name.endswith(f".flow{_MODULE_SUFFIX}"):
            notes.append(
                f"{name} (a normalizing flow: its conditioners are not a chain of layers "
                "applied to the parents)"
            )
        else:
            notes.append(
                f"{name} (a module the program calls itself: its inputs are not visible; "
                "pass the network and a batch of its inputs, mechanism_genericity(net, x))"
            )
    return notes


def discovered_genericity(
    program: Callable,
    data: Mapping[str, Any] | None,
    params: Mapping[str, Any] | None,
    model_args: tuple,
    model_kwargs: dict,
    key: Any,
    size_arg: str = "n",
) -> GenericityReport:
    """``log ρ`` of every successive layer pair of every mechanism network of ``program``.

    Parameters
    ----------
    program
        A NumPyro program (a FittedSCM's ``model`` holds its learned parameters).
    data
        ``{site: rows}`` substituted into the program, so the networks see the parents'
        values of these rows; ``None``: the program simulates its own units.
    params
        ``{param: value}`` substituted into the program (e.g. ``"x2.net$params"``).
    model_args, model_kwargs, key
        Arguments of the program and the PRNG key (or int seed) for running it.
    size_arg
        The program's argument that sets its number of units: set to the data's rows.
    """
    data = dict(data or {})
    rows = _rows(data)
    kwargs = _sized_kwargs(program, model_kwargs, rows, size_arg)
    runnable = program
    if params:
        runnable = handlers.substitute(runnable, data=dict(params))
    if data:
        values = {site: jnp.asarray(value) for site, value in data.items()}
        runnable = handlers.substitute(runnable, data=values)
    recorder = _NetworkRecorder()
    with recorder:
        trace = _program_trace(runnable, model_args, kwargs, key)
    _unknown_names(data, trace, ("sample", "deterministic"), "data")
    _unknown_names(params or {}, trace, ("param", "sample"), "params")
    pairs, kinds, ratios, counts = [], [], [], []
    skipped = _unmeasured(trace, recorder.networks)
    for site, (module, inputs) in recorder.networks.items():
        if inputs.shape[0] < 2:
            raise GenericityError(
                f"The network of {site!r} was applied to {inputs.shape[0]} unit(s); genericity "
                "needs at least 2 samples of each layer's input. Pass data with more rows, or "
                f"run more units (model_kwargs={{{size_arg!r}: ...}})."
            )
        layers = network_pairs(module, inputs)
        if len(layers) < 2:
            skipped.append(
                f"{site}.net (one linear layer, e.g. hidden=(): no successive pair of layers)"
            )
            continue
        site_pairs, site_kinds, site_ratios = chain_ratios(layers)
        pairs += [(f"{site}.net.{first}", f"{site}.net.{second}") for first, second in site_pairs]
        kinds += site_kinds
        ratios += site_ratios
        counts.append(int(inputs.shape[0]))
    if not pairs:
        found = "; ".join(skipped) if skipped else "no module parameters (<name>$params)"
        raise GenericityError(
            "Found no network with two or more layers in the program to measure. Searched "
            f"the networks of its neural mechanisms ({_HELPERS} from scm_ppl.mechanisms) and "
            f"its registered modules: {found}. For a program, name its mechanisms in chain "
            "order instead, layers={param: input_site} (e.g. layers={'W1': 'z', 'W2': 'h'}), "
            "or pass a network and a batch of its inputs: mechanism_genericity(net, x)."
        )
    return GenericityReport(
        pairs=tuple(pairs),
        kinds=tuple(kinds),
        log_ratio_by_pair=tuple(ratios),
        num_samples=min(counts),
        skipped=tuple(skipped),
    )
