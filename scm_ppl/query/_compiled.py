"""The compiled functions of one query structure: the program run in every world for
each draw, in chunks of units or draws, over a grid of intervention values (see
:func:`scm_ppl.query.engine.run_query`, which caches them and calls them).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
from numpyro import handlers
from numpyro.primitives import Messenger

from scm_ppl.core.handlers import do
from scm_ppl.core.inference import Parametrised, shapes
from scm_ppl.core.intervention import Intervention
from scm_ppl.query._evidence_checks import MARK_PREFIX, marks_of_trace
from scm_ppl.query.worlds import multi_world

_TRACES = [0]  # how many query structures have been traced (tests read it)
_FACTUAL = "_factual"

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


class Layout(NamedTuple):
    """The static shape of a query's compiled call: what it draws and what it returns."""

    chains: int
    num_draws: int
    sites: tuple[str, ...]
    extra: frozenset[str]
    sweep: Sweep | None
    units: UnitChunks | None
    draws_per_pass: int | None


# Values of the largest site: below this, one compiled call (no second dispatch) beats
# the better fusion of the bare layout.
_BARE_MIN_SIZE = 1 << 16


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
        self, model: Callable | Parametrised, worlds: Worlds, rebuild_args: Callable, layout: Layout
    ):
        self.model, self.worlds, self.rebuild_args = model, worlds, rebuild_args
        self.chains, self.num_draws = layout.chains, layout.num_draws
        self.sites, self.extra, self.sweep = layout.sites, layout.extra, layout.sweep
        self.units, self.draws_per_pass = layout.units, layout.draws_per_pass
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
            assert self.units is not None  # a window exists only for chunked units
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
        assert units is not None  # called only for chunked queries
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
    """Take the checks' marks (see :mod:`scm_ppl.query._evidence_checks`) out of ``values``,
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
