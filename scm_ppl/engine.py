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

import warnings
from collections.abc import Callable, Mapping
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from numpyro import handlers
from numpyro.infer import MCMC, NUTS, SVI, Trace_ELBO
from numpyro.infer.autoguide import AutoNormal
from numpyro.optim import Adam

from scm_ppl._cache import LRUCache
from scm_ppl.errors import InferenceWarning
from scm_ppl.handlers import do
from scm_ppl.intervention import Intervention
from scm_ppl.program import arguments_key
from scm_ppl.worlds import multi_world

__all__ = ["Draws", "InferenceSettings", "run_query", "trace_count"]

_COMPILED = LRUCache(256)
_MCMC = LRUCache(32)
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
    world first; ``other[name]`` (latent sites, noise) is ``(chain, draw, *shape)``.
    """

    worlds: dict[str, jax.Array]
    other: dict[str, jax.Array]
    diagnostics: dict[str, float]


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
                leaves, treedef = jax.tree_util.tree_flatten(iv.value)
                shapes = tuple((np.shape(x), str(jnp.result_type(x))) for x in leaves)
                parts.append((site, iv.kind, treedef, shapes))
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


def _split_arguments(args: tuple, kwargs: Mapping[str, Any]) -> tuple[list, Callable]:
    """Array arguments are traced; everything else (plate sizes, flags) is static."""
    leaves, treedef = jax.tree_util.tree_flatten((tuple(args), dict(kwargs)))
    is_array = [isinstance(x, (np.ndarray, jax.Array)) for x in leaves]
    arrays = [x for x, a in zip(leaves, is_array, strict=True) if a]

    def rebuild(traced: list) -> tuple[tuple, dict]:
        it = iter(traced)
        full = [next(it) if a else x for x, a in zip(leaves, is_array, strict=True)]
        return jax.tree_util.tree_unflatten(treedef, full)

    return arrays, rebuild


def _shapes(tree: Any) -> Any:
    """A hashable description of a pytree's structure, shapes and dtypes."""
    leaves, treedef = jax.tree_util.tree_flatten(tree)
    return treedef, tuple((jnp.shape(x), str(jnp.result_type(x))) for x in leaves)


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
) -> Draws:
    """Run one query: ``sites`` in every world, and the ``extra`` sites of the trace.

    ``factual`` intervenes in the factual (evidence) world itself: the interventional
    queries ``P(V | do(...), evidence)``.
    """
    infer_key, predict_key = jax.random.split(rng_key)
    latents: dict[str, jax.Array] | None = None
    diagnostics: dict[str, float] = {}
    chains = 1
    if method in ("nuts", "svi"):
        # Intervention values are baked into this program, so its MCMC is not cached.
        base = do(model, factual, mask=factual_mask) if factual else model
        infer = _nuts if method == "nuts" else _svi
        latents, diagnostics = infer(
            base, args, kwargs, evidence, latent_sites, settings, infer_key, cache=not factual
        )
        chains = settings.num_chains if method == "nuts" else 1
    if latents is not None:
        latents = {k: v.reshape((-1, *v.shape[2:])) for k, v in latents.items()}
        num_draws = next(iter(latents.values())).shape[0] if latents else num_draws
    arrays, rebuild_args = _split_arguments(args, kwargs)
    worlds = {_FACTUAL: dict(factual or {}), **worlds}
    masks = {_FACTUAL: dict(factual_mask or {}), **masks}
    static_worlds, dynamic_worlds = _split_worlds(worlds)
    key = (
        model,
        arguments_key(args, kwargs),
        static_worlds,
        _shapes(dict(evidence)),
        _shapes(masks),
        None if latents is None else _shapes(latents),
        num_draws,
        chains,
        sites,
        extra,
    )
    compiled = _COMPILED.get(key)
    if compiled is None:
        layout = (chains, sites, extra)
        compiled = _COMPILED.put(
            key, _build(model, worlds, rebuild_args, layout, latents is not None)
        )
    keys = jax.random.split(predict_key, num_draws)
    stacked, other = compiled(keys, dict(evidence), latents, dynamic_worlds, dict(masks), arrays)
    return Draws(stacked, other, diagnostics)


def _build(
    model: Callable,
    worlds: Worlds,
    rebuild_args: Callable,
    layout: tuple[int, tuple[str, ...], frozenset[str]],
    with_latents: bool,
) -> Callable:
    chains, sites, extra = layout
    labels = [label for label in worlds if label != _FACTUAL]
    keep = set(extra) | set(sites) | {f"{label}.{s}" for label in labels for s in sites}

    def one_draw(key, evidence, latents, dynamic_worlds, masks, arrays):
        args, kwargs = rebuild_args(arrays)
        masks = dict(masks)
        rebuilt = _rebuild_worlds(worlds, dynamic_worlds)
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
        tr = handlers.trace(handlers.seed(program, key)).get_trace(*args, **kwargs)
        return {
            name: site["value"]
            for name, site in tr.items()
            if site["type"] in ("sample", "deterministic") and name in keep
        }

    def all_draws(keys, evidence, latents, dynamic_worlds, masks, arrays):
        _TRACES[0] += 1
        axes = (0, None, 0 if with_latents else None, None, None, None)
        values = jax.vmap(one_draw, in_axes=axes)(
            keys, evidence, latents, dynamic_worlds, masks, arrays
        )
        # Lay results out inside the compiled call: outside it, each reshape and stack
        # would be a separate dispatch costing more than the arithmetic itself.
        values = {k: v.reshape((chains, -1, *v.shape[1:])) for k, v in values.items()}
        stacked = {
            s: jnp.stack([values[s]] + [values[f"{label}.{s}"] for label in labels], axis=2)
            for s in sites
        }
        return stacked, {k: values[k] for k in extra}

    return jax.jit(all_draws)


def _conditioned(model: Callable, args: tuple, kwargs: Mapping[str, Any]) -> tuple[Callable, list]:
    """The program conditioned on evidence, taking ``(evidence, array_arguments)``.

    Only array arguments are traced: plate sizes and flags stay Python values, so
    ``jit_model_args`` can reuse one compiled sampler across evidence values.
    """
    arrays, rebuild = _split_arguments(args, kwargs)

    def conditioned(evidence, arrays):
        args, kwargs = rebuild(arrays)
        return handlers.condition(model, data=evidence)(*args, **kwargs)

    return conditioned, arrays

    return conditioned


def _nuts(model, args, kwargs, evidence, latent_sites, settings, rng_key, cache=True):
    key = (model, arguments_key(args, kwargs), _shapes(dict(evidence)), settings)
    mcmc = _MCMC.get(key) if cache else None
    conditioned, arrays = _conditioned(model, args, kwargs)
    if mcmc is None:
        chain_method = (
            "parallel" if jax.local_device_count() >= settings.num_chains else "vectorized"
        )
        mcmc = MCMC(
            NUTS(conditioned),
            num_warmup=settings.num_warmup,
            num_samples=settings.num_samples,
            num_chains=settings.num_chains,
            chain_method=chain_method,
            progress_bar=False,
            jit_model_args=True,
        )
        if cache:
            _MCMC.put(key, mcmc)
    mcmc.run(rng_key, dict(evidence), arrays, extra_fields=("diverging",))
    samples = mcmc.get_samples(group_by_chain=True)
    latents = {name: samples[name] for name in latent_sites if name in samples}
    diagnostics = nuts_diagnostics(latents, mcmc.get_extra_fields()["diverging"])
    _warn_if_unreliable(diagnostics, settings.num_chains)
    return latents, diagnostics


def nuts_diagnostics(samples: Mapping[str, Any], diverging: Any) -> dict[str, float]:
    """Divergences, max split r_hat and min ESS of ``(chain, draw, ...)`` samples."""
    from numpyro.diagnostics import effective_sample_size, split_gelman_rubin

    out = {"divergences": float(np.sum(np.asarray(diverging)))}
    if samples:
        arrays = [np.asarray(v) for v in samples.values()]
        out["max_r_hat"] = max(float(np.nanmax(split_gelman_rubin(a))) for a in arrays)
        out["min_ess"] = min(float(np.nanmin(effective_sample_size(a))) for a in arrays)
    return out


def nuts_problems(diagnostics: Mapping[str, float], min_ess: float | None) -> list[str]:
    """What looks wrong in :func:`nuts_diagnostics` (ESS is judged only if ``min_ess``)."""
    problems = []
    if diagnostics.get("divergences", 0) > 0:
        problems.append(f"{int(diagnostics['divergences'])} divergent transitions")
    if diagnostics.get("max_r_hat", 1.0) > 1.05:
        problems.append(f"max r_hat {diagnostics['max_r_hat']:.3f} > 1.05")
    if min_ess is not None and diagnostics.get("min_ess", np.inf) < min_ess:
        problems.append(f"min ESS {diagnostics['min_ess']:.0f}")
    return problems


def _warn_if_unreliable(diagnostics: Mapping[str, float], num_chains: int) -> None:
    problems = nuts_problems(diagnostics, min_ess=100 * num_chains)
    if problems:
        warnings.warn(
            "NUTS abduction may be unreliable: " + "; ".join(problems) + ". Increase "
            "num_warmup/num_samples, reparametrise the program, or check the evidence.",
            InferenceWarning,
            stacklevel=5,  # the user's call: counterfactual -> run_query -> _nuts -> here
        )


def _svi(model, args, kwargs, evidence, latent_sites, settings, rng_key, cache=True):
    del cache  # SVI state is rebuilt per query: its cost is the optimisation, not tracing
    conditioned, arrays = _conditioned(model, args, kwargs)
    guide = AutoNormal(conditioned)
    svi = SVI(conditioned, guide, Adam(settings.svi_learning_rate), Trace_ELBO())
    fit_key, sample_key = jax.random.split(rng_key)
    result = svi.run(fit_key, settings.svi_steps, dict(evidence), arrays, progress_bar=False)
    guide_draws = guide.sample_posterior(
        sample_key, result.params, dict(evidence), arrays, sample_shape=(settings.num_samples,)
    )
    draws: dict[str, Any] = guide_draws  # type: ignore[assignment]  # numpyro types it loosely
    latents = {name: draws[name][None] for name in latent_sites if name in draws}
    tail = np.asarray(result.losses[-max(1, settings.svi_steps // 10) :])
    return latents, {"final_elbo_loss": float(np.mean(tail))}
