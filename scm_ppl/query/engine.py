"""The compiled core of every query: abduction by inference, then one vectorised pass.

A query is a program run in several worlds (:func:`scm_ppl.query.worlds.multi_world`),
conditioned on evidence, with its latent sites either sampled ancestrally (when they
are not ancestors of the evidence, their posterior is their prior) or substituted from a
NUTS or SVI posterior. The pass over draws is one ``vmap`` inside one ``jit``; the
jitted function is cached on the query's *structure* (program, argument shapes, evidence
and intervention shapes, the code of callable interventions), while intervention values,
evidence and keys are arguments, so a repeated query of the same shape never recompiles.
A fitted SCM is keyed on its program and the shapes of its learned arrays, which are
arguments too: fits of one program share compiled queries. The compiled functions
themselves live in :mod:`scm_ppl.query._compiled`, the checks that must raise in
:mod:`scm_ppl.query._evidence_checks`.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
from jax.sharding import NamedSharding, PartitionSpec

from scm_ppl.core.handlers import do
from scm_ppl.core.inference import (
    Parametrised,
    key_of_program,
    program_parts,
    run_nuts,
    run_svi,
    shapes,
    split_arguments,
)
from scm_ppl.core.program import arguments_key, inspect_program
from scm_ppl.query._compiled import (
    _FACTUAL,
    _TRACES,
    Layout,
    Sweep,
    UnitChunks,
    _base_site,
    _Query,
    _split_worlds,
)
from scm_ppl.query._evidence_checks import (
    NonfiniteCheck,
    nonfinite_flags,
    not_known_finite,
    raise_for_marks,
)
from scm_ppl.query.enumeration import EnumeratedPosterior, enumerate_posterior, enumerated_sites
from scm_ppl.query.mixed import run_nuts_enumerate
from scm_ppl.query.per_unit import per_unit_latents
from scm_ppl.query.per_unit_nuts import per_unit_nuts_latents, warn_if_unreliable
from scm_ppl.query.plan import QueryPlan
from scm_ppl.query.results import LazyGroup
from scm_ppl.query.scaling import unit_plate

__all__ = ["Draws", "run_query", "trace_count"]


def trace_count() -> int:
    """How many times a query function has been traced (compiled) in this process."""
    return _TRACES[0]


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
    enumerated: EnumeratedPosterior | None = None  # method "enumerate": the exact posterior


def run_query(plan: QueryPlan, *, defer_check: bool = False) -> Draws:
    """Run one planned query: every site in every world, and the plan's ``extra`` sites.

    The plan's ``factual`` interventions act in the factual (evidence) world itself: the
    interventional queries ``P(V | do(...), evidence)``. Its ``sweep`` maps the query over a
    grid of values of one intervention (see :class:`~scm_ppl.query._compiled.Sweep`);
    ``units`` runs it in chunks of units, ``draws_per_pass`` in chunks of draws (each draw
    keeps its key: same answer).

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
    model, args, kwargs, sites, extra = plan.model, plan.args, plan.kwargs, plan.sites, plan.extra
    evidence, settings, sweep, units = plan.sample_evidence, plan.settings, plan.sweep, plan.units
    factual, factual_mask, num_draws = plan.factual, plan.factual_mask, plan.num_draws
    latents: dict[str, jax.Array] | None = None
    diagnostics: dict[str, float] = {}
    chains = 1
    if plan.method in ("nuts", "svi"):
        infer_key, _ = jax.random.split(plan.rng_key)
        # Intervention values are baked into this program, so its MCMC is not cached.
        base = do(model, factual, mask=factual_mask) if factual else model
        infer = run_nuts if plan.method == "nuts" else run_svi
        latents, diagnostics = infer(
            base, args, kwargs, evidence, list(plan.latent), settings, infer_key,
            cache=not factual,
        )  # fmt: skip
        chains = plan.chains
    if plan.method == "per_unit":
        base = do(model, factual, mask=factual_mask) if factual else model
        latents, diagnostics = per_unit_latents(
            base, args, kwargs, evidence, plan.latent, num_draws, jax.random.split(plan.rng_key)[0]
        )
    if plan.method == "per_unit_nuts":
        base = do(model, factual, mask=factual_mask) if factual else model
        latents, diagnostics = per_unit_nuts_latents(
            base, args, kwargs, evidence, plan.latent, settings, jax.random.split(plan.rng_key)[0]
        )
        warn_if_unreliable(diagnostics, settings.num_chains)
        chains = plan.chains
    enumerated = None
    if plan.method == "nuts+enumerate":
        base = do(model, factual, mask=factual_mask) if factual else model
        info = inspect_program(base, args, kwargs) if factual else plan.info
        upstream = enumerated_sites(info, plan.evidence)
        discrete = [n for n in upstream if info.sites[n].discrete]
        # Latent sites not upstream of the evidence keep their prior: the pass draws them.
        continuous = [n for n in upstream if not info.sites[n].discrete]
        latents, diagnostics = run_nuts_enumerate(
            base, args, kwargs, info, plan.evidence, discrete, continuous, unit_plate(info),
            settings, jax.random.split(plan.rng_key)[0],
        )  # fmt: skip
        chains = plan.chains
    if plan.method == "enumerate":
        base = do(model, factual, mask=factual_mask) if factual else model
        info = inspect_program(base, args, kwargs) if factual else plan.info
        enumerated = enumerate_posterior(
            base, args, kwargs, info, plan.evidence, unit_plate(info), every=plan.enumerate_all
        )
        if plan.enumerate_all:  # every configuration once: exact sums over the support
            latents = dict(enumerated.configurations)
        else:
            latents = enumerated.sample(jax.random.split(plan.rng_key)[0], num_draws)
        diagnostics = {"support_size": float(enumerated.size)}
    if latents is not None:
        latents = {k: v.reshape((-1, *v.shape[2:])) for k, v in latents.items()}
        num_draws = next(iter(latents.values())).shape[0] if latents else num_draws
    arrays, rebuild_args = split_arguments(args, kwargs)
    # A fit's learned arrays are arguments, not constants: fits of one program share a compile.
    parts = program_parts(model)
    program = model if parts is None else Parametrised(parts.build)
    if parts is not None:
        arrays = (arrays, parts.values)
    worlds = {_FACTUAL: dict(factual), **plan.worlds}
    masks = {_FACTUAL: dict(factual_mask or {}), **plan.masks}
    static_worlds, dynamic_worlds = _split_worlds(worlds)
    layout = Layout(
        chains=chains, num_draws=num_draws, sites=sites, extra=extra, sweep=sweep, units=units,
        draws_per_pass=plan.draws_per_pass,
    )  # fmt: skip
    key = (
        key_of_program(model, parts),
        arguments_key(args, kwargs),
        static_worlds,
        shapes(dict(evidence)),
        shapes(masks),
        None if latents is None else shapes(latents),
        layout,
    )
    mesh_axis = _unit_mesh(evidence, units)
    key = (*key, mesh_axis)
    call = (plan.rng_key, dict(evidence), latents, dynamic_worlds, dict(masks), arrays)

    def build() -> tuple[Callable, Callable]:
        if mesh_axis is None:
            query = _Query(program, worlds, rebuild_args, layout)
            return jax.jit(query.main), jax.jit(query.extras)
        return _sharded_chunks(program, worlds, rebuild_args, layout, mesh_axis, call)

    compiled = plan.info.remember(("compiled query", key), build)
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
    return Draws(
        worlds=stacked,
        other=other,
        diagnostics=diagnostics,
        by_world=by_world,
        check=check_all,
        enumerated=enumerated,
    )


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


def _sharded_chunks(model, worlds, rebuild_args, layout: Layout, mesh_axis, call) -> tuple:
    """The query under ``shard_map``: every device runs the chunked loop on its units."""
    mesh, axis_name, devices = mesh_axis
    units = layout.units
    assert units is not None  # only chunked queries are sharded
    local_size = units.size // devices
    local_units = units._replace(size=local_size, per_pass=min(units.per_pass, local_size))
    query = _Query(model, worlds, rebuild_args, layout._replace(units=local_units))
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
