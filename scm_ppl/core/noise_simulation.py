"""A program read as a per-unit SCM: the sites of its unit plate, their noise, and the
runs (simulate, abduct, intervene) that model criticism and attribution are built from.

Everything here is written to run *inside* one compiled function: a program with learned
arrays (a :class:`~scm_ppl.FittedSCM`) is split into what is compiled and the arrays
passed to the compiled call, so fits of one program share compilations (see
:func:`compiled`).

Global sample sites (outside the unit plate: the weights of a Bayesian fit) get their
noise once per *replicate*: a NUTS fit's first weight site carries the index of the
posterior draw, so one replicate runs one draw of all mechanisms.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import jax
import jax.numpy as jnp
import networkx as nx
import numpy as np
from numpyro import handlers

from scm_ppl.core.handlers import do, replay_noise
from scm_ppl.core.inference import program_parts
from scm_ppl.core.noise import noise_view
from scm_ppl.core.program import hashable, inspect_program
from scm_ppl.core.validate import check_callable
from scm_ppl.errors import CriticismError, DataError, GraphError, ProgramError

__all__ = ["Scm", "as_scm", "check_data", "compiled"]

_PROBE = 3  # units in the abstract run that reads the program's structure


@dataclass(frozen=True, eq=False)
class Scm:
    """A program's per-unit structure and how to build it from its learned arrays."""

    program: Callable
    key: Any
    values: list
    build: Callable[[list], Callable]
    plate: str
    size_arg: str
    kwargs: dict[str, Any]
    nodes: tuple[str, ...]  # sites in the unit plate, topological order
    noisy: tuple[str, ...]  # sample sites in the unit plate (each has its own noise)
    globals: tuple[str, ...]  # sample sites outside the plate (noise drawn per replicate)
    graph: nx.DiGraph  # over ``nodes``
    discrete: frozenset[str]
    unit_shape: dict[str, tuple[int, ...]]  # a site's per-unit value shape
    noise_shape: dict[str, tuple[int, ...]]  # a site's per-unit noise shape
    dtypes: dict[str, Any]
    bayesian: bool

    def check_target(self, target: Any) -> str:
        if not isinstance(target, str) or target not in self.nodes:
            raise GraphError(
                f"Target {target!r} is not a per-unit site of the program; its sites in the "
                f"'{self.plate}' plate are {list(self.nodes)}."
            )
        if self.unit_shape[target] not in ((), (1,)):
            raise CriticismError(
                f"Target '{target}' has per-unit shape {self.unit_shape[target]}; attribution "
                "needs a scalar per unit. Add a deterministic site for the quantity of interest."
            )
        return target

    def edges(self, nodes: Any) -> list[list[str]]:
        """The arrows among ``nodes`` (for plots)."""
        return [list(e) for e in self.graph.subgraph(list(nodes)).edges]

    def parents(self, node: str) -> list[str]:
        return [p for p in self.nodes if self.graph.has_edge(p, node)]

    def ancestors(self, node: str) -> list[str]:
        up = nx.ancestors(self.graph, node)
        return [p for p in self.nodes if p in up]

    # ------------------------------------------------------------------ runs (traced)

    def trace(
        self,
        values: list,
        n: int,
        key: jax.Array,
        *,
        noise: Mapping[str, Any] | None = None,
        condition: Mapping[str, Any] | None = None,
        intervene: Mapping[str, Any] | None = None,
    ) -> dict[str, Any]:
        """One run of the program on ``n`` units (inside a compiled function)."""
        model = self.build(values)
        if intervene:
            model = do(model, dict(intervene))
        if condition:
            model = handlers.condition(model, data=dict(condition))
        if noise:
            model = replay_noise(model, dict(noise))
        return handlers.trace(handlers.seed(model, key)).get_trace(
            **{self.size_arg: n}, **self.kwargs
        )

    def global_noise(self, values: list, key: jax.Array) -> dict[str, Any]:
        """Noise of the global sample sites: one draw of all mechanisms."""
        if not self.globals:
            return {}
        tr = self.trace(values, 1, key)
        keys = jax.random.split(key, len(self.globals))
        return {
            s: noise_view(tr[s]["fn"]).base.sample(k)
            for s, k in zip(self.globals, keys, strict=True)
        }

    def unit_noise(
        self, values: list, n: int, key: jax.Array, g: Mapping[str, Any]
    ) -> dict[str, Any]:
        """Fresh noise of every per-unit sample site for ``n`` units."""
        k_run, k_noise = jax.random.split(key)
        tr = self.trace(values, n, k_run, noise=g)
        keys = jax.random.split(k_noise, len(self.noisy))
        return {
            s: noise_view(tr[s]["fn"]).base.sample(k) for s, k in zip(self.noisy, keys, strict=True)
        }

    def simulate(
        self,
        values: list,
        noise: Mapping[str, Any],
        g: Mapping[str, Any],
        *,
        intervene: Mapping[str, Any] | None = None,
        key: jax.Array | None = None,
    ) -> dict[str, jax.Array]:
        """Every per-unit site computed from the given noise (units: the noise's axis 0)."""
        n = int(jnp.shape(next(iter(noise.values())))[0])
        key = jax.random.key(0) if key is None else key
        tr = self.trace(values, n, key, noise={**g, **noise}, intervene=intervene)
        return {s: tr[s]["value"] for s in self.nodes}

    def abduct(
        self, values: list, data: Mapping[str, Any], key: jax.Array, g: Mapping[str, Any]
    ) -> tuple[dict[str, jax.Array], dict[str, Any]]:
        """The noise of each per-unit sample site given a full row of data (exact for
        invertible mechanisms, drawn from the set the value allows for discrete ones), and
        the run's trace (each site's distribution given its parents' data)."""
        n = int(jnp.shape(next(iter(data.values())))[0])
        k_run, k_noise = jax.random.split(key)
        tr = self.trace(values, n, k_run, noise=g, condition=data)
        keys = jax.random.split(k_noise, len(self.noisy))
        noise = {}
        for s, k in zip(self.noisy, keys, strict=True):
            view = noise_view(tr[s]["fn"])
            x = tr[s]["value"]
            if view.inverse is not None:
                noise[s] = view.inverse(x)
            else:
                assert view.noise_given_value is not None
                noise[s] = view.noise_given_value(x).sample(k)
        return noise, tr


def _settings_of(model: Any) -> dict[str, Any]:
    settings = getattr(model, "settings", None)
    return dict(settings) if isinstance(settings, Mapping) else {}


def as_scm(
    model: Any,
    *,
    plate: str | None = None,
    size_arg: str | None = None,
    model_kwargs: Mapping[str, Any] | None = None,
) -> Scm:
    """Read ``model`` (a program or a fit) as a per-unit SCM."""
    check_callable("model", model, what="a NumPyro program or a FittedSCM")
    settings = _settings_of(model)
    plate = str(plate or settings.get("plate") or "unit")
    size_arg = str(size_arg or settings.get("size_arg") or "n")
    kwargs = {**dict(settings.get("model_kwargs") or {}), **dict(model_kwargs or {})}
    parts = program_parts(model)
    kw_key = tuple(sorted((k, hashable(v)) for k, v in kwargs.items()))
    if parts is None:
        key: Any = ("program", hashable(model), plate, size_arg, kw_key)
        values: list = []
        build: Callable[[list], Callable] = lambda _values: model
    else:
        shapes = tuple((jnp.shape(v), str(jnp.result_type(v))) for v in parts.values)
        key = ("fit", parts.key, shapes, plate, size_arg, kw_key)
        values, build = list(parts.values), parts.build
    try:
        info = inspect_program(model, (), {size_arg: _PROBE, **kwargs})
    except ProgramError as err:
        raise CriticismError(
            f"Could not run the program with {size_arg}={_PROBE}: checks and attributions "
            f"need a program whose per-unit sites sit in numpyro.plate('{plate}', "
            f"{size_arg}) sized by the argument '{size_arg}' (plate= and size_arg= name "
            f"others). The run raised: {err}"
        ) from err
    unit = [n for n, s in info.sites.items() if plate in s.batch_dims]
    if not unit:
        raise CriticismError(
            f"The program has no sites in a plate named '{plate}': checks and attributions "
            f"compare units, so its per-unit sites must sit in numpyro.plate('{plate}', "
            f"{size_arg}) (plate= names another plate)."
        )
    for name in unit:
        if info.sites[name].batch_dims[0] != plate or info.sites[name].shape[0] != _PROBE:
            raise CriticismError(
                f"Site '{name}' has the '{plate}' plate on an inner axis; put the unit axis "
                "first (numpyro.plate(..., dim=-1) as the outermost batch dimension)."
            )
    sub = nx.DiGraph(info.graph.subgraph(unit))
    order = [n for n in nx.topological_sort(sub)]
    noisy = tuple(n for n in order if info.sites[n].kind == "sample")
    globals_ = tuple(
        n
        for n, s in info.sites.items()
        if s.kind == "sample" and plate not in s.batch_dims and not s.observed
    )
    shapes_: dict[str, tuple[int, ...]] = {}

    def probe() -> None:
        tr = handlers.trace(handlers.seed(model, 0)).get_trace(**{size_arg: _PROBE}, **kwargs)
        for name in noisy:
            shapes_[name] = tuple(noise_view(tr[name]["fn"]).base.shape())[1:]

    jax.eval_shape(probe)
    return Scm(
        program=model,
        key=key,
        values=values,
        build=build,
        plate=plate,
        size_arg=size_arg,
        kwargs=kwargs,
        nodes=tuple(order),
        noisy=noisy,
        globals=globals_,
        graph=sub,
        discrete=frozenset(n for n in order if info.sites[n].discrete),
        unit_shape={n: tuple(info.sites[n].shape[1:]) for n in order},
        noise_shape=shapes_,
        dtypes={n: info.sites[n].dtype for n in order},
        bayesian=any(info.sites[n].fit_posterior for n in globals_),
    )


_COMPILED: dict[Any, Callable] = {}


def compiled(tag: str, scm: Scm, static: Any, make: Callable[[], Callable]) -> Callable:
    """``jax.jit(make())``, kept per program structure and static settings: the function
    takes the program's learned arrays as its first argument, so every fit of one program
    (and every call) reuses one compilation."""
    key = (tag, scm.key, static)
    fn = _COMPILED.get(key)
    if fn is None:
        if len(_COMPILED) > 256:
            _COMPILED.clear()
        fn = _COMPILED[key] = jax.jit(make())
    return fn


def check_data(
    data: Any, sites: Any, *, what: str = "data", scm: Scm | None = None
) -> dict[str, np.ndarray]:
    """``data`` as ``{site: array}`` with every site in ``sites``, equal rows, no NaN/inf."""
    if not isinstance(data, Mapping):
        raise DataError(
            f"{what} must be a mapping {{site: array}} with one row per unit; got "
            f"{type(data).__name__}."
        )
    missing = [s for s in sites if s not in data]
    if missing:
        raise DataError(
            f"{what} lacks the column(s) {missing}; it has {sorted(map(str, data))}. Every "
            "site the check or attribution reads must be given, one row per unit."
        )
    out: dict[str, np.ndarray] = {}
    rows = None
    for s in sites:
        arr = np.asarray(data[s])
        if arr.ndim == 0 or arr.shape[0] == 0:
            raise DataError(f"{what}['{s}'] has no rows; give one value per unit.")
        if not (np.issubdtype(arr.dtype, np.number) or arr.dtype == bool):
            raise DataError(f"{what}['{s}'] has dtype {arr.dtype}; expected numbers.")
        if arr.dtype.kind == "f" and not np.all(np.isfinite(arr)):
            bad = int(np.sum(~np.isfinite(arr)))
            raise DataError(
                f"{what}['{s}'] holds {bad} NaN/inf value(s); drop or impute those rows first."
            )
        if rows is None:
            rows = arr.shape[0]
        elif arr.shape[0] != rows:
            raise DataError(
                f"{what} columns differ in length: '{s}' has {arr.shape[0]} rows, "
                f"'{sites[0]}' has {rows}."
            )
        if scm is not None and s in scm.unit_shape and arr.shape[1:] != scm.unit_shape[s]:
            raise DataError(
                f"{what}['{s}'] has per-row shape {arr.shape[1:]}; the site has "
                f"{scm.unit_shape[s]}."
            )
        if scm is not None and s in scm.dtypes:
            arr = arr.astype(scm.dtypes[s])
        out[s] = arr
    return out
