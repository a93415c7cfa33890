"""What a program looks like, learnt once without running any arithmetic, and the checks
of queries against it.

:func:`inspect_program` traces the program abstractly (``jax.eval_shape``) and records
each site's kind, shape, dtype, plates and noise view; the queries validate evidence and
interventions against that record *before* anything is compiled, so bad input ends in a
message that names the site and the fix.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import jax
import jax.numpy as jnp
import networkx as nx
import numpy as np
from numpyro import handlers
from numpyro.distributions import constraints

from scm_ppl.core.cache import LRUCache
from scm_ppl.core.causal_graph import distribution_name
from scm_ppl.core.causal_graph import graph as program_graph
from scm_ppl.core.intervention import Intervention
from scm_ppl.core.noise import noise_view
from scm_ppl.core.posterior_draws import FIT_POSTERIOR
from scm_ppl.errors import (
    EvidenceError,
    InterventionError,
    NoiseViewError,
    ProgramError,
    SettingsError,
)

__all__ = [
    "ProgramInfo",
    "SiteInfo",
    "check_evidence",
    "check_finite",
    "check_interventions",
    "inspect_program",
]


@dataclass(frozen=True)
class SiteInfo:
    """One sample or deterministic site of a program."""

    name: str
    kind: str  # "sample" | "deterministic"
    shape: tuple[int, ...]
    dtype: Any
    observed: bool
    distribution: str
    discrete: bool
    invertible: bool
    coupling: str | None
    noise_error: str | None  # why the site has no noise view, if it has none
    batch_dims: tuple[str | None, ...]  # plate name of each batch axis (None: no plate)
    fit_posterior: bool = False  # a global site drawn from a Bayesian fit's posterior
    support: Any = None  # the support constraint of a discrete sample site


@dataclass(frozen=True)
class ProgramInfo:
    """Sites in program order and the causal graph of a program."""

    sites: dict[str, SiteInfo]
    graph: nx.DiGraph
    # What queries work out for this program (abduction method, identification, couplings,
    # compiled query functions) is kept with its record: it lives as long as the record (an
    # entry of the record cache) and no longer, and a long session's many query shapes stay
    # bounded per program.
    derived: LRUCache = field(default_factory=lambda: LRUCache(128), compare=False, repr=False)

    def remember(self, key: Any, compute: Callable[[], Any]) -> Any:
        """``compute()``, once per ``key`` for this program record (``None`` is not kept)."""
        value = self.derived.get(key)
        return value if value is not None else self.derived.put(key, compute())

    def names(self) -> list[str]:
        return list(self.sites)

    def sample_sites(self) -> list[str]:
        return [n for n, s in self.sites.items() if s.kind == "sample"]

    def ancestors(self, names: Any) -> set[str]:
        out: set[str] = set()
        for name in names:
            out |= nx.ancestors(self.graph, name)
        return out


def _batch_dims(site: Mapping[str, Any], batch_ndim: int) -> tuple[str | None, ...]:
    names: list[str | None] = [None] * batch_ndim
    for frame in site.get("cond_indep_stack", []):
        axis = batch_ndim + frame.dim
        if 0 <= axis < batch_ndim:
            names[axis] = frame.name
    return tuple(names)


def _site_info(name: str, site: Mapping[str, Any]) -> SiteInfo:
    value = site["value"]
    shape, dtype = tuple(jnp.shape(value)), jnp.result_type(value)
    if site["type"] == "deterministic":
        return SiteInfo(
            name=name,
            kind="deterministic",
            shape=shape,
            dtype=dtype,
            observed=False,
            distribution="Deterministic",
            discrete=False,
            invertible=False,
            coupling=None,
            noise_error=None,
            batch_dims=_batch_dims(site, len(shape)),
        )
    fn = site["fn"]
    event_ndim = len(fn.event_shape)
    discrete = bool(getattr(fn.support, "is_discrete", False))
    invertible, coupling, error = False, None, None
    try:
        view = noise_view(fn)
        invertible, coupling = view.inverse is not None, view.coupling
    except NoiseViewError as err:
        error = str(err)
    return SiteInfo(
        name=name,
        kind="sample",
        shape=shape,
        dtype=dtype,
        observed=bool(site["is_observed"]),
        distribution=distribution_name(fn),
        discrete=discrete,
        invertible=invertible,
        coupling=coupling,
        noise_error=error,
        batch_dims=_batch_dims(site, len(shape) - event_ndim),
        fit_posterior=bool((site.get("infer") or {}).get(FIT_POSTERIOR)),
        support=fn.support if discrete or _on_unit_interval(fn.support) else None,
    )


def _elementwise(support: Any) -> Any:
    """The constraint on each value of an event (``independent`` unwrapped)."""
    while isinstance(support, constraints.independent):
        support = support.base_constraint
    return support


def _on_unit_interval(support: Any) -> bool:
    """Values on [0, 1] (probabilities, pixels): evidence outside is checked, since a
    0-255 image or a percentage would otherwise be scored, silently, as something else."""
    return _elementwise(support) is constraints.unit_interval


def hashable(obj: Any) -> Any:
    try:
        hash(obj)
    except TypeError:
        return ("id", id(obj))
    return obj


_INFO_CACHE = LRUCache(256)


def as_kwargs(model_kwargs: Any) -> dict[str, Any]:
    """``model_kwargs`` as a dict, or a clear error for anything that is not a mapping."""
    if model_kwargs is None:
        return {}
    if not isinstance(model_kwargs, Mapping) or not all(isinstance(k, str) for k in model_kwargs):
        raise SettingsError(
            "model_kwargs must be a mapping of the program's keyword arguments, e.g. "
            f"{{'n': 100}}; got {type(model_kwargs).__name__}: {model_kwargs!r:.80}."
        )
    return dict(model_kwargs)


def arguments_key(args: tuple, kwargs: Mapping[str, Any]) -> Any:
    """A hashable key of a program's arguments: arrays by shape and dtype, the rest by value."""
    leaves, treedef = jax.tree_util.tree_flatten((args, dict(kwargs)))
    parts = []
    for leaf in leaves:
        if isinstance(leaf, (np.ndarray, jax.Array)):
            parts.append(("array", tuple(leaf.shape), str(leaf.dtype)))
        else:
            parts.append(hashable(leaf))
    return (treedef, tuple(parts))


def baked_arguments_key(args: tuple, kwargs: Mapping[str, Any]) -> Any:
    """A hashable key of arguments that a compiled function closes over (bakes in as
    constants): arrays by shape, dtype *and* a digest of their values, since two calls
    with equal shapes must not share code that holds the first one's numbers."""
    leaves, treedef = jax.tree_util.tree_flatten((args, dict(kwargs)))
    parts = []
    for leaf in leaves:
        if isinstance(leaf, jax.Array) and not leaf.is_fully_addressable:
            parts.append(("id", id(leaf)))  # another process holds part of it: by identity
        elif isinstance(leaf, jax.Array) and jnp.issubdtype(leaf.dtype, jax.dtypes.prng_key):
            data = np.asarray(jax.random.key_data(leaf))  # a typed key has no NumPy view
            digest = hashlib.blake2b(data.tobytes(), digest_size=16).hexdigest()
            parts.append(("key", leaf.shape, str(leaf.dtype), digest))
        elif isinstance(leaf, (np.ndarray, jax.Array)):
            values = np.ascontiguousarray(leaf)
            digest = hashlib.blake2b(values.tobytes(), digest_size=16).hexdigest()
            parts.append(("array", values.shape, str(values.dtype), digest))
        else:
            parts.append(hashable(leaf))
    return (treedef, tuple(parts))


def _program_identity(model: Callable) -> Any:
    """What a program's description depends on: for a fit (a class with
    ``_program_parts``, see :class:`scm_ppl.core.inference.ProgramParts`) its program and the
    shapes of its learned arrays, not their values, so refits are inspected once."""
    split = getattr(type(model), "_program_parts", None)
    parts = None if split is None else split(model)
    if parts is None:
        return hashable(model)
    return parts.key, tuple((jnp.shape(v), jnp.result_type(v)) for v in parts.values)


def inspect_program(
    model: Callable, args: tuple = (), kwargs: Mapping[str, Any] | None = None
) -> ProgramInfo:
    """Trace ``model(*args, **kwargs)`` abstractly and describe its sites and graph.

    The result is cached per program and argument shapes, so repeated queries pay for it
    once.
    """
    kwargs = dict(kwargs or {})
    key = (_program_identity(model), arguments_key(args, kwargs))
    cached = _INFO_CACHE.get(key)
    if cached is not None:
        return cached
    sites: dict[str, SiteInfo] = {}

    def run() -> None:
        tr = handlers.trace(handlers.seed(model, 0)).get_trace(*args, **kwargs)
        for name, site in tr.items():
            if site["type"] in ("sample", "deterministic"):
                sites[name] = _site_info(name, site)

    try:
        jax.eval_shape(run)
    except (NoiseViewError, ProgramError):
        raise
    except Exception as err:
        label = getattr(model, "__name__", repr(model))
        raise ProgramError(
            f"Running the program '{label}' raised {type(err).__name__}: {err}. "
            + _missing_argument_hint(err)
            + "Check the program runs on its own: numpyro.handlers.seed(model, 0)(*args)."
        ) from err
    if not sites:
        raise ProgramError("The program has no sample or deterministic sites: nothing to model.")
    info = ProgramInfo(sites, program_graph(model, *args, **kwargs))
    return _INFO_CACHE.put(key, info)


def _missing_argument_hint(err: Exception) -> str:
    """The fix for the commonest first mistake, ``def model(n):`` queried without its
    arguments: name them as the ``model_kwargs=`` that every query and ``fit`` accept."""
    if not isinstance(err, TypeError):
        return ""
    match = re.search(
        r"missing \d+ required (?:positional|keyword-only) arguments?: (.*)", str(err)
    )
    if match is None:
        return ""
    names = re.findall(r"'(\w+)'", match.group(1))
    if not names:
        return ""
    shown = ", ".join(f"{name!r}: ..." for name in names)
    return f"Pass the program's arguments to the query: model_kwargs={{{shown}}}. "


def _unknown_site_message(what: str, unknown: list[str], info: ProgramInfo) -> str:
    noun = "site" if len(unknown) == 1 else "sites"
    shown = ", ".join(repr(u) for u in unknown)
    return f"Unknown {what} {noun} {shown}; the program has sites {info.names()}."


def check_evidence(
    info: ProgramInfo, evidence: Mapping[str, Any] | None, *, finite: bool = True
) -> dict[str, Any]:
    """Validate evidence against the program and return it as arrays of the site's shape.

    ``finite=False`` leaves the NaN/inf check to the caller: the queries count non-finite
    values inside their compiled call (no extra pass over device-resident evidence) and
    raise before returning an answer; see :func:`check_finite` for the standalone check.
    """
    if evidence is None:
        return {}
    if not isinstance(evidence, Mapping):
        raise EvidenceError(
            "Evidence must be a mapping from site name to observed values, e.g. "
            f"{{'x': 0.3}}; got {type(evidence).__name__}."
        )
    unknown = [name for name in evidence if name not in info.sites]
    if unknown:
        raise EvidenceError(_unknown_site_message("evidence", unknown, info))
    out: dict[str, Any] = {}
    for name, value in evidence.items():
        site = info.sites[name]
        if (
            isinstance(value, jax.Array)
            and value.shape == site.shape
            and value.dtype == site.dtype
            and site.support is None
            and value.size
        ):
            out[name] = value  # already the site's shape and dtype: nothing to convert
            continue
        on_device = isinstance(value, jax.Array)
        xp: Any = jnp if on_device else np  # device arrays are checked where they live
        try:
            array = value if on_device else np.asarray(value)
        except Exception as err:  # ragged lists and odd objects fail in many ways
            raise EvidenceError(f"Evidence for '{name}' is not an array: {err}.") from err
        if not (np.issubdtype(array.dtype, np.number) or np.issubdtype(array.dtype, np.bool_)):
            raise EvidenceError(f"Evidence for '{name}' has dtype {array.dtype}; expected numbers.")
        if array.size == 0:
            raise EvidenceError(f"Evidence for '{name}' is empty; give at least one value.")
        try:
            fits = np.broadcast_shapes(array.shape, site.shape) == site.shape
        except ValueError:
            fits = False
        if not fits:
            plates = ", ".join(f"{p}" for p in site.batch_dims if p) or "none"
            raise EvidenceError(
                f"Evidence for '{name}' has shape {array.shape}, but the site has shape "
                f"{site.shape} (plates: {plates}). Pass the program arguments that size its "
                "plates (e.g. model_kwargs={'n': len(values)}) or reshape the evidence."
            )
        if site.support is not None:
            _check_support(name, site, array, xp)
        if array.shape != site.shape or array.dtype != site.dtype:
            # numpy arrays reach the device in one batch with the compiled call's arguments
            array = xp.broadcast_to(array.astype(site.dtype), site.shape)
        out[name] = array
    if finite:
        check_finite(out)
    return out


def _check_support(name: str, site: SiteInfo, array: Any, xp: Any) -> None:
    """Discrete evidence must be values the mechanism can take: casting 0.5 or 2 to the
    site's dtype would otherwise answer a question about another value, silently.
    Continuous evidence on [0, 1] must lie there."""
    values = xp.broadcast_to(array, site.shape)
    if not site.discrete:
        inside = _elementwise(site.support)(values)
        outside = ~np.asarray(inside) & np.isfinite(np.asarray(values))
        if outside.any():
            bad = np.asarray(values)[outside]
            raise EvidenceError(
                f"Evidence for '{name}' holds {bad.size} value(s) outside [0, 1], the support "
                f"of its {site.distribution} mechanism, e.g. {bad.ravel()[:3].tolist()}. "
                "Pixels on a 0-255 scale? Divide them by 255."
            )
        return
    if array.dtype.kind == "f" and not bool(xp.all(xp.isfinite(values))):
        # Checked here, before the cast to the site's integer dtype would hide them.
        count = int(np.sum(~np.isfinite(np.asarray(values))))
        raise EvidenceError(
            f"Evidence for '{name}' holds {count} NaN/inf value(s); drop those units or "
            "give observed values."
        )
    inside = xp.asarray(site.support(values))
    if array.dtype.kind == "f":
        inside = inside & (values == xp.round(values))
    if not bool(xp.all(inside)):
        bad = np.asarray(values)[~np.asarray(inside)]
        raise EvidenceError(
            f"Evidence for '{name}' holds {bad.size} value(s) its {site.distribution} "
            f"mechanism cannot take (support: {site.support}), e.g. {bad.ravel()[:3].tolist()}. "
            "A discrete site's evidence must be one of its values (integer codes)."
        )


@jax.jit
def _nonfinite_counts(arrays: dict[str, jax.Array]) -> dict[str, jax.Array]:
    return {k: jnp.sum(~jnp.isfinite(v)) for k, v in arrays.items()}


def check_finite(evidence: Mapping[str, Any]) -> None:
    """Raise :class:`~scm_ppl.EvidenceError` naming each evidence site with NaN/inf."""
    inexact = {k: v for k, v in evidence.items() if jnp.issubdtype(v.dtype, jnp.inexact)}
    on_device = {k: v for k, v in inexact.items() if isinstance(v, jax.Array)}
    counts = {k: int(np.sum(~np.isfinite(v))) for k, v in inexact.items() if k not in on_device}
    if on_device:  # one dispatch and one transfer for all device arrays
        counts |= {k: int(c) for k, c in _nonfinite_counts(on_device).items()}
    for name, bad in counts.items():
        if bad:
            raise EvidenceError(
                f"Evidence for '{name}' holds {bad} NaN/inf value(s) out of "
                f"{evidence[name].size}; drop those units or impute them before the query."
            )


def check_interventions(
    info: ProgramInfo,
    interventions: Mapping[str, Intervention],
    mask: Mapping[str, Any] | None = None,
) -> None:
    """Validate classified interventions (and masks) against the program's sites."""
    unknown = [name for name in interventions if name not in info.sites]
    if unknown:
        raise InterventionError(_unknown_site_message("intervention", unknown, info))
    for name, iv in interventions.items():
        site = info.sites[name]
        if iv.kind == "hard":
            _check_broadcast(name, "value", np.shape(iv.value), site.shape)
        elif iv.kind == "shift":
            probe = jax.ShapeDtypeStruct(site.shape, site.dtype)
            try:
                out = jax.eval_shape(iv.value, probe)
            except Exception as err:
                raise InterventionError(
                    f"The callable intervention on '{name}' raised {type(err).__name__} when "
                    f"called with a value of shape {site.shape}: {err}. It must map the "
                    "natural value to the intervened value, elementwise, e.g. lambda x: x + 1."
                ) from err
            if tuple(getattr(out, "shape", ())) != site.shape:
                raise InterventionError(
                    f"The callable intervention on '{name}' changes the shape: it maps a value "
                    f"of shape {site.shape} to shape {tuple(getattr(out, 'shape', ()))}. "
                    "It must return a value of the same shape (work elementwise)."
                )
        else:
            shape = tuple(iv.value.batch_shape) + tuple(iv.value.event_shape)
            _check_broadcast(name, "distribution's shape", shape, site.shape)
    if mask is not None and not isinstance(mask, Mapping):
        raise InterventionError(
            f"mask= must be a mapping {{site: boolean array}}; got {type(mask).__name__}."
        )
    for name, m in (mask or {}).items():
        if name not in interventions:
            raise InterventionError(
                f"Mask given for {[name]}, which is not intervened on; masks must name sites "
                f"in {sorted(interventions)}."
            )
        _check_broadcast(name, "mask", np.shape(m), info.sites[name].shape)


def _check_broadcast(name: str, what: str, shape: tuple, site_shape: tuple) -> None:
    try:
        fits = np.broadcast_shapes(tuple(shape), site_shape) == site_shape
    except ValueError:
        fits = False
    if not fits:
        raise InterventionError(
            f"The intervention {what} for '{name}' has shape {tuple(shape)}, which does not "
            f"broadcast to the site's shape {site_shape}."
        )
