"""The compiled core of every query: abduction by inference, then one vectorised pass.

A query is a program run in several worlds (:func:`scm_ppl.worlds.multi_world`),
conditioned on evidence, with its latent sites either sampled ancestrally (when they
are not ancestors of the evidence, their posterior is their prior) or substituted from a
NUTS or SVI posterior. The pass over draws is one ``vmap`` inside one ``jit``; the
jitted function is cached on the query's *structure* (program, argument shapes, evidence
and intervention shapes, the code of callable interventions), while intervention values,
evidence and keys are arguments, so a repeated query of the same shape never recompiles.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
from jax.sharding import NamedSharding, PartitionSpec
from numpyro import handlers
from numpyro.primitives import Messenger

from scm_ppl._cache import LRUCache
from scm_ppl._evidence_checks import (
    MARK_PREFIX,
    NonfiniteCheck,
    marks_of_trace,
    nonfinite_flags,
    not_known_finite,
    raise_for_marks,
)
from scm_ppl._inference import (  # nuts_* re-exported: fit's NUTS reports the same way
    Parametrised,
    key_of_program,
    nuts_diagnostics,
    nuts_problems,
    program_parts,
    run_nuts,
    run_svi,
    shapes,
    split_arguments,
)
from scm_ppl.handlers import do
from scm_ppl.intervention import Intervention
from scm_ppl.program import arguments_key
from scm_ppl.results import LazyGroup
from scm_ppl.worlds import multi_world

__all__ = [
    "Draws",
    "InferenceSettings",
    "Sweep",
    "UnitChunks",
    "nuts_diagnostics",
    "nuts_problems",
    "run_query",
    "trace_count",
]

_COMPILED = LRUCache(256)
_TRACES = [0]
_FACTUAL = "_factual"


def trace_count() -> int:
    """How many times a query function has been traced (compiled) in this process."""
    return _TRACES[0]


class InferenceSettings(NamedTuple):
    """How abduction runs when it needs inference."""

    num_samples: int = 1000
    num_warmup: int = 500
    num_chains: int = 1
    svi_steps: int = 2000
    svi_learning_rate: float = 0.01


class Draws(NamedTuple):
    """Site values from a query.

    ``worlds[site]`` is shaped ``(chain, draw, world, *site_shape)`` with the factual
    world first (for a sweep: the swept world only, ``(chain, draw, value, ...)``);
    ``other[name]`` (latent sites, noise) is ``(chain, draw, *shape)``; ``by_world`` holds
    each world's sites apart, ``{"factual": {...}, label: {...}}``. ``worlds`` and
    ``other`` are built when first read.
    """

    worlds: Mapping[str, jax.Array]
    other: Mapping[str, jax.Array]
    diagnostics: dict[str, float]
    by_world: dict[str, dict[str, jax.Array]]
    check: Callable[[], None] = lambda: None


Worlds = Mapping[str, Mapping[str, Intervention]]


def _callable_key(fn: Callable) -> Any:
    """Key a callable by what it computes, so an inline lambda re-created on every call
    hits the cache, while one reading changed closure or global values does not."""
    code = getattr(fn, "__code__", None)
    if code is None:
        return fn
    closure = tuple(cell.cell_contents for cell in (fn.__closure__ or ()))
    fn_globals = getattr(fn, "__globals__", {})
    used_globals = tuple((n, fn_globals[n]) for n in code.co_names if n in fn_globals)
    key = (code, closure, used_globals, fn.__defaults__)
    try:
        hash(key)
    except TypeError:
        return fn
    return key


def _split_worlds(worlds: Worlds) -> tuple[Any, dict[str, dict[str, Any]]]:
    """Static structure (cache key) and dynamic values (jit arguments) of the worlds."""
    static, dynamic = [], {}
    for label, ivs in worlds.items():
        parts, values = [], {}
        for site, iv in ivs.items():
            if iv.kind == "shift":
                parts.append((site, "shift", _callable_key(iv.value)))
                values[site] = None
            else:
                parts.append((site, iv.kind, *shapes(iv.value)))
                values[site] = iv.value
        static.append((label, tuple(parts)))
        dynamic[label] = values
    return tuple(static), dynamic


def _rebuild_worlds(worlds: Worlds, dynamic: dict[str, dict[str, Any]]) -> dict[str, dict]:
    return {
        label: {
            site: iv.value if iv.kind == "shift" else Intervention(iv.kind, dynamic[label][site])
            for site, iv in ivs.items()
        }
        for label, ivs in worlds.items()
    }


class Sweep(NamedTuple):
    """One site of one world takes a grid of values: the compiled call maps over them.

    ``values_per_pass`` bounds how many grid values one pass holds (``None``: all);
    ``reduce_to`` names an outcome site whose per-draw mean over its batch (unit) axes is
    all that leaves the compiled call, shaped ``(chain, draw, value)``.
    """

    label: str
    site: str
    values_per_pass: int | None = None
    reduce_to: str | None = None


class UnitChunks(NamedTuple):
    """Run the unit plate ``plate`` (``size`` units) ``per_pass`` units at a time.

    ``axes[name]`` is the position of the unit axis in the site ``name``, counted from
    the end (``-1``: the last axis; ``None``: the site is outside the plate); evidence,
    intervention values and masks are sliced along it, and each site's answer is
    written into its slot of the full array.
    """

    plate: str
    size: int
    per_pass: int
    axes: tuple[tuple[str, int | None], ...]


def run_query(
    model: Callable,
    *,
    args: tuple,
    kwargs: Mapping[str, Any],
    evidence: Mapping[str, jax.Array],
    worlds: Worlds,
    masks: Mapping[str, Mapping[str, Any]],
    method: str,
    num_draws: int,
    settings: InferenceSettings,
    latent_sites: list[str],
    sites: tuple[str, ...],
    extra: frozenset[str],
    rng_key: jax.Array,
    factual: Mapping[str, Intervention] | None = None,
    factual_mask: Mapping[str, Any] | None = None,
    sweep: Sweep | None = None,
    units: UnitChunks | None = None,
    draws_per_pass: int | None = None,
    defer_check: bool = False,
) -> Draws:
    """Run one query: ``sites`` in every world, and the ``extra`` sites of the trace.

    ``factual`` intervenes in the factual (evidence) world itself: the interventional
    queries ``P(V | do(...), evidence)``. ``sweep`` maps the query over a grid of values
    of one intervention (see :class:`Sweep`); ``units`` runs it in chunks of units,
    ``draws_per_pass`` in chunks of draws (each draw keeps its key: same answer).

    The compiled call returns each world's sites apart (evidence sites of the factual
    world are the evidence itself); :attr:`Draws.worlds` stacks them, and the ``extra``
    sites come from a second compiled call, both only when first read. NaN/inf evidence
    raises :class:`~scm_ppl.EvidenceError` before anything is returned: device arrays
    are checked by one fused reduction in a small compiled call dispatched with the
    query, once per array (JAX arrays are immutable: the verdict is kept), host arrays
    on every call. ``defer_check=True`` leaves the raise to the caller's
    :attr:`Draws.check` (called before it hands its answer back), so the caller's own
    Python work runs while the device computes rather than after a wait.
    """
    latents: dict[str, jax.Array] | None = None
    diagnostics: dict[str, float] = {}
    chains = 1
    if method in ("nuts", "svi"):
        infer_key, _ = jax.random.split(rng_key)
        # Intervention values are baked into this program, so its MCMC is not cached.
        base = do(model, factual, mask=factual_mask) if factual else model
        infer = run_nuts if method == "nuts" else run_svi
        latents, diagnostics = infer(
            base, args, kwargs, evidence, latent_sites, settings, infer_key, cache=not factual
        )
        chains = settings.num_chains if method == "nuts" else 1
    if latents is not None:
        latents = {k: v.reshape((-1, *v.shape[2:])) for k, v in latents.items()}
        num_draws = next(iter(latents.values())).shape[0] if latents else num_draws
    arrays, rebuild_args = split_arguments(args, kwargs)
    # A fit's learned arrays are arguments, not constants: fits of one program share a compile.
    parts = program_parts(model)
    program = model if parts is None else Parametrised(parts.build)
    if parts is not None:
        arrays = (arrays, parts.values)
    worlds = {_FACTUAL: dict(factual or {}), **worlds}
    masks = {_FACTUAL: dict(factual_mask or {}), **masks}
    static_worlds, dynamic_worlds = _split_worlds(worlds)
    key = (
        key_of_program(model, parts),
        arguments_key(args, kwargs),
        static_worlds,
        shapes(dict(evidence)),
        shapes(masks),
        None if latents is None else shapes(latents),
        num_draws,
        chains,
        sites,
        extra,
        sweep,
        units,
        draws_per_pass,
    )
    mesh_axis = _unit_mesh(evidence, units)
    key = (*key, mesh_axis)
    call = (rng_key, dict(evidence), latents, dynamic_worlds, dict(masks), arrays)
    compiled = _COMPILED.get(key)
    if compiled is None:
        layout = (chains, num_draws, sites, extra, sweep, units, draws_per_pass)
        if mesh_axis is None:
            query = _Query(program, worlds, rebuild_args, layout)
            compiled = (jax.jit(query.main), jax.jit(query.extras))
        else:
            compiled = _sharded_chunks(program, worlds, rebuild_args, layout, mesh_axis, call)
        compiled = _COMPILED.put(key, compiled)
    main, extras = compiled
    unchecked = not_known_finite(evidence)
    on_device = {k: v for k, v in unchecked.items() if isinstance(v, jax.Array)}
    check = NonfiniteCheck(unchecked, nonfinite_flags(on_device) if on_device else None)
    out = main(*call)
    by_world = out["done"] if "done" in out else _draw_axes(out["bare"], call, sweep, worlds)
    marks = out.get("marks")

    def check_all() -> None:
        check()  # NaN evidence first: it also makes its marks NaN
        if marks:
            raise_for_marks(marks)

    if not defer_check:
        check_all()
    labels = [label for label in worlds if label != _FACTUAL]
    computed = by_world[_FACTUAL]
    alone = sweep is None and not labels  # main left the factual world stacked already
    factual_values = LazyGroup(
        [s for s in sites if s in computed or s in evidence],
        build_one=lambda s: (
            (computed[s][:, :, 0] if alone else computed[s])
            if s in computed
            else _as_draws(evidence[s], chains, num_draws)
        ),
    )
    by_world = {"factual": factual_values, **{label: by_world[label] for label in labels}}
    if alone:  # the world axis is free inside the compiled call, a copy outside it
        stacked: Mapping[str, jax.Array] = LazyGroup(
            sites,
            build_one=lambda s: (
                computed[s]
                if s in computed
                else _as_draws(evidence[s], chains, num_draws)[:, :, None]
            ),
        )
    elif sweep is None:
        stacked = LazyGroup(sites, build_one=lambda s: _stack(*(by_world[w][s] for w in by_world)))
    else:
        stacked = by_world[sweep.label]
    other = LazyGroup(sorted(extra), build_all=lambda: extras(*call))
    return Draws(stacked, other, diagnostics, by_world, check_all)


# Values of the largest site: below this, one compiled call (no second dispatch) beats
# the better fusion of the bare layout.
_BARE_MIN_SIZE = 1 << 16


@functools.partial(jax.jit, static_argnames="alone", donate_argnums=0)
def _with_draw_axes_donated(by_world: dict, alone: bool) -> dict:
    return _with_draw_axes(by_world, alone)


_with_draw_axes_copied = jax.jit(
    lambda by_world, alone: _with_draw_axes(by_world, alone), static_argnames="alone"
)


def _with_draw_axes(by_world: dict, alone: bool) -> dict:
    """One draw's sites as ``(chain, draw, ...)``, the factual world alone ``(chain,
    draw, 1, ...)``."""
    out = {w: {s: v[None, None] for s, v in sites.items()} for w, sites in by_world.items()}
    if alone:
        out[_FACTUAL] = {s: v[:, :, None] for s, v in out[_FACTUAL].items()}
    return out


def _draw_axes(by_world: dict, call: tuple, sweep: Sweep | None, worlds: Mapping) -> dict:
    """Add the draw axes to a bare answer: a donated reshape, so no copy, unless an
    output is one of the call's own inputs handed back (donating it would delete it)."""
    alone = sweep is None and len(worlds) == 1
    inputs = {id(x) for x in jax.tree_util.tree_leaves(call)}
    if any(id(x) in inputs for x in jax.tree_util.tree_leaves(by_world)):
        return _with_draw_axes_copied(by_world, alone)
    return _with_draw_axes_donated(by_world, alone)


@jax.jit
def _stack(*values: jax.Array) -> jax.Array:
    return jnp.stack(values, axis=2)


def _as_draws(value: Any, chains: int, num_draws: int) -> jax.Array:
    """An evidence site as the factual world's ``(chain, draw, ...)`` values."""
    value = jnp.asarray(value)
    return jnp.broadcast_to(value, (chains, num_draws // chains, *value.shape))


def _unit_mesh(evidence: Mapping[str, Any], units: UnitChunks | None) -> tuple | None:
    """``(mesh, axis name, devices)`` when chunked evidence is split over devices along
    the unit axis (see :func:`scm_ppl.shard_units`); then each device runs its own
    units in chunks (``shard_map``), rather than the partitioner gathering them."""
    if units is None:
        return None
    axes = dict(units.axes)
    for name, value in evidence.items():
        sharding = getattr(value, "sharding", None)
        if not isinstance(sharding, NamedSharding) or axes.get(name) is None:
            continue
        axis = value.ndim + axes[name]
        spec = tuple(sharding.spec) + (None,) * (value.ndim - len(sharding.spec))
        mesh_axis = spec[axis]
        if isinstance(mesh_axis, str) and sharding.mesh.shape[mesh_axis] > 1:
            devices = sharding.mesh.shape[mesh_axis]
            if units.size % devices == 0 and units.size // devices >= 1:
                return sharding.mesh, mesh_axis, devices
    return None


def _sharded_chunks(model, worlds, rebuild_args, layout, mesh_axis, call) -> tuple:
    """The query under ``shard_map``: every device runs the chunked loop on its units."""
    mesh, axis_name, devices = mesh_axis
    units, draws_per_pass = layout[5], layout[6]
    local_size = units.size // devices
    local_units = units._replace(size=local_size, per_pass=min(units.per_pass, local_size))
    query = _Query(model, worlds, rebuild_args, (*layout[:5], local_units, draws_per_pass))
    axes = dict(units.axes)
    evidence = call[1]

    def spec_of(name: str, ndim: int, axis_from_end: int | None) -> PartitionSpec:
        if axis_from_end is None:
            return PartitionSpec()
        parts: list[str | None] = [None] * ndim
        parts[ndim + axis_from_end] = axis_name
        return PartitionSpec(*parts)

    ev_specs = {k: spec_of(k, jnp.ndim(v), axes.get(k)) for k, v in evidence.items()}
    in_specs = (
        PartitionSpec(),
        ev_specs,
        PartitionSpec(),
        PartitionSpec(),
        PartitionSpec(),
        PartitionSpec(),
    )

    def local(value: Any, spec: PartitionSpec) -> Any:
        shape = list(jnp.shape(value))
        for i, part in enumerate(spec):
            if part == axis_name:
                shape[i] //= devices
        return jax.ShapeDtypeStruct(tuple(shape), jnp.result_type(value))

    local_call = (call[0], {k: local(v, ev_specs[k]) for k, v in evidence.items()}, *call[2:])

    def out_specs(fn: Callable) -> Any:
        shapes = jax.eval_shape(fn, *local_call)
        return jax.tree_util.tree_map_with_path(
            lambda path, leaf: (
                spec_of("", leaf.ndim, axes.get(_base_site(str(path[-1].key))))
                if path and hasattr(path[-1], "key")
                else PartitionSpec(axis_name)
            ),
            shapes,
        )

    before = _TRACES[0]
    main_specs = out_specs(query.main)
    _TRACES[0] = before  # the shape probe is not a compilation
    main = jax.shard_map(
        query.main, mesh=mesh, in_specs=in_specs, out_specs=main_specs, check_vma=False
    )
    extras = jax.shard_map(
        query.extras,
        mesh=mesh,
        in_specs=in_specs,
        out_specs=out_specs(query.extras),
        check_vma=False,
    )
    return jax.jit(main), jax.jit(extras)


class _unit_window(Messenger):
    """Run the plate ``plate`` on units ``start .. start + size`` only (a subsample)."""

    def __init__(self, fn: Callable, plate: str, start: jax.Array, size: int) -> None:
        self.plate, self.start, self.size = plate, start, size
        super().__init__(fn)

    def process_message(self, msg: dict[str, Any]) -> None:
        if msg["type"] == "plate" and msg["name"] == self.plate:
            msg["value"] = self.start + jnp.arange(self.size)
            msg["args"] = (msg["args"][0], self.size)


def _base_site(name: str) -> str:
    return name.split(".", 1)[1] if "." in name else name


class _Query:
    """The compiled functions of one query structure (see :func:`run_query`)."""

    def __init__(
        self, model: Callable | Parametrised, worlds: Worlds, rebuild_args: Callable, layout: tuple
    ):
        self.model, self.worlds, self.rebuild_args = model, worlds, rebuild_args
        (self.chains, self.num_draws, self.sites, self.extra) = layout[:4]
        self.sweep, self.units, self.draws_per_pass = layout[4:]
        self.labels = [label for label in worlds if label != _FACTUAL]

    def _one_draw(self, keep, window, key, evidence, latents, dynamic_worlds, masks, arrays):
        model = self.model
        if isinstance(model, Parametrised):  # the program's values came as arguments
            arrays, values = arrays
            model = model.build(values)
        args, kwargs = self.rebuild_args(arrays)
        masks = dict(masks)
        rebuilt = _rebuild_worlds(self.worlds, dynamic_worlds)
        base = model
        if rebuilt[_FACTUAL]:
            base = do(model, rebuilt.pop(_FACTUAL), mask=masks.pop(_FACTUAL) or None)
        else:
            rebuilt.pop(_FACTUAL)
            masks.pop(_FACTUAL)
        program = multi_world(base, rebuilt, masks=masks)
        program = handlers.condition(program, data=evidence)
        if latents is not None:
            program = handlers.substitute(program, data=latents)
        if window is not None:
            program = _unit_window(program, self.units.plate, window, self.units.per_pass)
        tr = handlers.trace(handlers.seed(program, key)).get_trace(*args, **kwargs)
        kept = {
            name: site["value"]
            for name, site in tr.items()
            if site["type"] in ("sample", "deterministic") and name in keep
        }
        return {**kept, **marks_of_trace(tr, evidence, self.labels)}

    def _draws(self, keep, rng_key, evidence, latents, dynamic_worlds, masks, arrays, bare=False):
        """Every draw of the kept sites, ``(chain, draw, ...)``, in chunks of units;
        ``bare``: a single draw in the sites' own shapes."""
        _, predict_key = jax.random.split(rng_key)
        keys = jax.random.split(predict_key, self.num_draws)
        axes = (0, None, 0 if latents is not None else None, None, None, None)

        def pass_(window, evidence, dynamic_worlds, masks):
            one = lambda *a: self._one_draw(keep, window, *a)
            per_pass = self.draws_per_pass
            if self.num_draws == 1:
                # One draw (exact answers, W3-style single draws of many units): no vmap.
                # A vmapped key makes the bit generator run over a (1, n) counter, which
                # XLA compiles to a slower loop on CPU than the plain (n,) one; the bits
                # (and so the answer) are the same.
                first = None if latents is None else jax.tree.map(lambda x: x[0], latents)
                values = one(keys[0], evidence, first, dynamic_worlds, masks, arrays)
                if bare:
                    return values
                values = {k: jnp.expand_dims(v, 0) for k, v in values.items()}
            elif per_pass is None or per_pass >= self.num_draws:
                values = jax.vmap(one, in_axes=axes)(
                    keys, evidence, latents, dynamic_worlds, masks, arrays
                )
            else:  # lax.map vmaps within each batch of draws and loops over batches
                values = jax.lax.map(
                    lambda kl: one(kl[0], evidence, kl[1], dynamic_worlds, masks, arrays),
                    (keys, latents),
                    batch_size=per_pass,
                )
            return {k: v.reshape((self.chains, -1, *v.shape[1:])) for k, v in values.items()}

        if self.units is None:
            return pass_(None, evidence, dynamic_worlds, masks)
        return self._chunked(pass_, evidence, dynamic_worlds, masks)

    def _chunked(self, pass_, evidence, dynamic_worlds, masks):
        units = self.units
        axes = dict(units.axes)
        per, n = units.per_pass, units.size
        count = -(-n // per)

        def slice_all(start):
            ev = {k: _slice(v, axes.get(k), start, per, n) for k, v in evidence.items()}
            dyn = {
                label: {s: _slice(v, axes.get(s), start, per, n) for s, v in vals.items()}
                for label, vals in dynamic_worlds.items()
            }
            ms = {
                label: {s: _slice(v, axes.get(s), start, per, n) for s, v in vals.items()}
                for label, vals in masks.items()
            }
            return ev, dyn, ms

        shapes = jax.eval_shape(lambda s: pass_(s, *slice_all(s)), jnp.zeros((), jnp.int32))
        out = {
            name: jnp.zeros(_full_shape(sd.shape, axes.get(_base_site(name)), n), sd.dtype)
            for name, sd in shapes.items()
        }

        def body(i, out):
            # The last window ends at the last unit (it may overlap the one before: the
            # overlap is recomputed with the same answer, so no padding copy is needed).
            start = jnp.minimum(i * per, n - per)
            values = pass_(start, *slice_all(start))
            return {
                name: value
                if axes.get(_base_site(name)) is None
                else jax.lax.dynamic_update_slice_in_dim(
                    out[name], value, start, value.ndim + axes[_base_site(name)]
                )
                for name, value in values.items()
            }

        return jax.lax.fori_loop(0, count, body, out)

    def _keep(self, factual_sites):
        labelled = {f"{label}.{s}" for label in self.labels for s in self.sites}
        return frozenset(labelled | set(factual_sites))

    def main(self, rng_key, evidence, latents, dynamic_worlds, masks, arrays):
        _TRACES[0] += 1
        call = (rng_key, evidence, latents, dynamic_worlds, masks, arrays)
        factual_sites = [s for s in self.sites if s not in evidence]
        if self.sweep is None:
            # One forward draw (no evidence: every site is drawn) of many units leaves in
            # the sites' own shapes: XLA's CPU fusion then recomputes the noise transforms
            # inside their consumers rather than keeping them as intermediates (30% of
            # W3's time on the nonlinear SCM); _with_draw_axes adds the axes after, free.
            # Exact counterfactuals (no noise drawn) gain nothing from it and pay a
            # second dispatch.
            bare = self.num_draws == 1 and self.units is None and not evidence
            values = self._draws(self._keep(factual_sites), *call, bare=bare)
            marks = _pop_marks(values, () if bare else (0, 1))
            sizes = [v.size for v in values.values()]
            if bare and sizes and min(sizes) > 0 and max(sizes) >= _BARE_MIN_SIZE:
                return {"bare": self._by_world(values), "marks": marks}
            if bare:
                values = {k: v[None, None] for k, v in values.items()}
            by_world = self._by_world(values)
            if not self.labels:  # the factual world alone leaves stacked: (chain, draw, 1, ...)
                by_world[_FACTUAL] = {k: v[:, :, None] for k, v in by_world[_FACTUAL].items()}
            return {"done": by_world, "marks": marks}
        sweep = self.sweep
        grid = dynamic_worlds[sweep.label][sweep.site]
        first = self._at_first_value(dynamic_worlds)
        # Run even when every site is observed: the marks of impossible evidence come
        # from this pass (without marks XLA drops the unused work).
        factual = self._draws(
            frozenset(factual_sites), rng_key, evidence, latents, first, masks, arrays
        )
        marks = _pop_marks(factual, (0, 1))

        def at_value(value):
            dyn = {label: dict(v) for label, v in dynamic_worlds.items()}
            dyn[sweep.label][sweep.site] = value
            if sweep.reduce_to is not None:
                outcome = f"{sweep.label}.{sweep.reduce_to}"
                y = self._draws(
                    frozenset({outcome}), rng_key, evidence, latents, dyn, masks, arrays
                )[outcome]
                return jnp.mean(y, axis=tuple(range(2, y.ndim)))
            keep = frozenset(f"{sweep.label}.{s}" for s in self.sites)
            values = self._draws(keep, rng_key, evidence, latents, dyn, masks, arrays)
            _pop_marks(values, ())  # the evidence's marks came with `factual`
            return values

        mapped = jax.lax.map(at_value, grid, batch_size=sweep.values_per_pass)
        # (value, chain, draw, ...) -> (chain, draw, value, ...): a free reshape for one draw.
        mapped = jax.tree.map(lambda v: jnp.moveaxis(v, 0, 2), mapped)
        if sweep.reduce_to is not None:
            done = {_FACTUAL: factual, sweep.label: {sweep.reduce_to: mapped}}
            return {"done": done, "marks": marks}
        by_world = self._by_world(mapped)
        by_world[_FACTUAL] = factual
        return {"done": by_world, "marks": marks}

    def _at_first_value(self, dynamic_worlds):
        """The worlds with the swept site at its first value (for what does not depend
        on it: the factual world, the noise)."""
        assert self.sweep is not None
        out = {label: dict(v) for label, v in dynamic_worlds.items()}
        out[self.sweep.label][self.sweep.site] = out[self.sweep.label][self.sweep.site][0]
        return out

    def _by_world(self, values):
        out = {_FACTUAL: {s: values[s] for s in self.sites if s in values}}
        for label in self.labels:
            prefix = f"{label}."
            out[label] = {k[len(prefix) :]: v for k, v in values.items() if k.startswith(prefix)}
        return out

    def extras(self, rng_key, evidence, latents, dynamic_worlds, masks, arrays):
        if self.sweep is not None:  # the swept value does not reach the factual world
            dynamic_worlds = self._at_first_value(dynamic_worlds)
        values = self._draws(self.extra, rng_key, evidence, latents, dynamic_worlds, masks, arrays)
        _pop_marks(values, ())
        return values


def _pop_marks(values: dict[str, jax.Array], draw_axes: tuple[int, ...]) -> dict[str, Any]:
    """Take the checks' marks (see :mod:`scm_ppl._evidence_checks`) out of ``values``,
    summed over the draw axes: one value per unit, NaN where any draw is flagged."""
    names = [k for k in values if k.startswith(MARK_PREFIX)]
    return {k: jnp.sum(values.pop(k), axis=draw_axes) for k in names}


def _slice(value: Any, axis_from_end: int | None, start: jax.Array, per: int, n: int) -> Any:
    """The window of a per-unit array; arrays without the unit axis (scalars, broadcast
    values, sites outside the plate) pass unchanged."""
    if value is None or axis_from_end is None or not hasattr(value, "shape"):
        return value
    axis = value.ndim + axis_from_end
    if axis < 0 or value.shape[axis] != n:
        return value
    return jax.lax.dynamic_slice_in_dim(value, start, per, axis)


def _full_shape(chunk_shape: tuple[int, ...], axis_from_end: int | None, n: int) -> tuple:
    if axis_from_end is None:
        return tuple(chunk_shape)
    shape = list(chunk_shape)
    shape[len(shape) + axis_from_end] = n
    return tuple(shape)
