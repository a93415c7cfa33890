"""Abduction by inference: NUTS or SVI over a program's latent sites given evidence.

The queries of :mod:`scm_ppl.query.engine` substitute the draws these return into their
compiled prediction pass. Only array arguments of the program are traced; plate sizes
and flags stay Python values, so one compiled sampler serves every evidence value.
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

from scm_ppl.core.cache import LRUCache
from scm_ppl.core.program import arguments_key
from scm_ppl.errors import InferenceWarning

__all__ = [
    "Parametrised",
    "ProgramParts",
    "nuts_diagnostics",
    "nuts_problems",
    "program_parts",
    "run_nuts",
    "run_svi",
    "shapes",
    "split_arguments",
]

_MCMC = LRUCache(32)


def split_arguments(args: tuple, kwargs: Mapping[str, Any]) -> tuple[list, Callable]:
    """Array arguments are traced; everything else (plate sizes, flags) is static."""
    leaves, treedef = jax.tree_util.tree_flatten((tuple(args), dict(kwargs)))
    is_array = [isinstance(x, (np.ndarray, jax.Array)) for x in leaves]
    arrays = [x for x, a in zip(leaves, is_array, strict=True) if a]

    def rebuild(traced: list) -> tuple[tuple, dict]:
        it = iter(traced)
        full = [next(it) if a else x for x, a in zip(leaves, is_array, strict=True)]
        return jax.tree_util.tree_unflatten(treedef, full)

    return arrays, rebuild


def shapes(tree: Any) -> Any:
    """A hashable description of a pytree's structure, shapes and dtypes."""
    leaves, treedef = jax.tree_util.tree_flatten(tree)
    return treedef, tuple(_leaf_signature(x) for x in leaves)


def _leaf_signature(x: Any) -> tuple[tuple[int, ...], Any]:
    # Arrays carry their shape and dtype: reading them is ~50x cheaper than
    # jnp.result_type, which matters on every call of a small query. A weakly typed
    # array shares its dtype with a strong one; jit tells the two apart itself.
    if isinstance(x, (jax.Array, np.ndarray)):
        return x.shape, x.dtype
    return jnp.shape(x), jnp.result_type(x)


class ProgramParts(NamedTuple):
    """A program split into what is compiled and what is passed to the compiled call.

    ``build(values)`` is the program with ``values`` (arrays, traced inside a compiled
    function) in place of the ``values`` given here; ``key`` (hashable) is equal for two
    programs exactly when ``build`` makes the same program from values of the same shapes.
    A query cache keys on ``key`` and the values' shapes and passes ``values`` as
    arguments, so programs that differ only in those values (fits of one program) share
    one compilation.
    """

    key: Any
    values: list
    build: Callable[[list], Callable]


def program_parts(model: Any) -> ProgramParts | None:
    """The parts of a program that splits (its class has ``_program_parts``, which
    returns a :class:`ProgramParts` or ``None``: a :class:`~scm_ppl.learn.fitted.FittedSCM`);
    ``None`` for any other program, which is compiled whole."""
    split = getattr(type(model), "_program_parts", None)
    return None if split is None else split(model)


class Parametrised:
    """A program built inside the compiled function from values passed to it: ``build``
    of :class:`ProgramParts`, called with the traced values."""

    def __init__(self, build: Callable[[list], Callable]) -> None:
        self.build = build


def key_of_program(model: Any, parts: ProgramParts | None) -> Any:
    """What a compiled function of ``model`` is cached on (see :class:`ProgramParts`)."""
    return model if parts is None else (parts.key, shapes(parts.values))


def _conditioned(
    model: Callable, args: tuple, kwargs: Mapping[str, Any], parts: ProgramParts | None = None
) -> tuple[Callable, Any]:
    """The program conditioned on evidence, taking ``(evidence, array_arguments)``.

    Only array arguments are traced: plate sizes and flags stay Python values, so
    ``jit_model_args`` can reuse one compiled sampler across evidence values. With
    ``parts``, the program's values are traced too (``array_arguments`` is then
    ``(arrays, values)``), so one sampler serves every fit of a program.
    """
    arrays, rebuild = split_arguments(args, kwargs)

    def conditioned(evidence, arrays):
        program = model
        if parts is not None:
            arrays, values = arrays
            # numpyro's initialize_model substitutes the param sites' values of its first
            # run into the potential it keeps for later runs: hidden, the values passed
            # to each run are the ones used.
            program = handlers.block(parts.build(values), hide_fn=_is_param)
        args, kwargs = rebuild(arrays)
        return handlers.condition(program, data=evidence)(*args, **kwargs)

    return conditioned, (arrays if parts is None else (arrays, parts.values))


def _is_param(site: Mapping[str, Any]) -> bool:
    return site["type"] == "param"


def run_nuts(model, args, kwargs, evidence, latent_sites, settings, rng_key, cache=True):
    parts = program_parts(model)
    program_key = key_of_program(model, parts)
    key = (program_key, arguments_key(args, kwargs), shapes(dict(evidence)), settings)
    mcmc = _MCMC.get(key) if cache else None
    conditioned, arrays = _conditioned(model, args, kwargs, parts)
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


def process_local(array: Any) -> tuple[np.ndarray, bool]:
    """``array`` as NumPy, and whether it is whole: a global array sharded over processes
    (along its last, unit axis) cannot be fetched, so this process's units stand for it."""
    if getattr(array, "is_fully_addressable", True):
        return np.asarray(array), True
    shards = sorted(array.addressable_shards, key=lambda s: s.index[-1].start or 0)
    return np.concatenate([np.asarray(s.data) for s in shards], axis=-1), False


def nuts_diagnostics(samples: Mapping[str, Any], diverging: Any) -> dict[str, Any]:
    """Divergences, max split r_hat and min ESS of ``(chain, draw, ...)`` samples (over
    this process's units when they are sharded over processes; ``diagnostics_scope``
    says so)."""
    from numpyro.diagnostics import effective_sample_size, split_gelman_rubin

    flags, whole = process_local(diverging)
    out: dict[str, Any] = {"divergences": float(np.sum(flags))}
    if samples:
        arrays = [process_local(v) for v in samples.values()]
        whole = whole and all(w for _, w in arrays)
        with np.errstate(invalid="ignore", divide="ignore"):  # constant sites: NaN, below
            r_hat = [np.ravel(split_gelman_rubin(a)) for a, _ in arrays]
            ess = [np.ravel(_floored_ess(a, effective_sample_size)) for a, _ in arrays]
        out["max_r_hat"] = _over_defined(np.concatenate(r_hat), np.max)
        out["min_ess"] = _over_defined(np.concatenate(ess), np.min)
    if not whole:
        out["diagnostics_scope"] = "this process's units"
    return out


def _over_defined(values: np.ndarray, reduce: Callable) -> float:
    """``reduce`` over the values that are defined: a constant site has no r_hat or ESS
    (NaN), and must neither hide the others nor raise NumPy's all-NaN warning."""
    defined = values[~np.isnan(values)]
    return float(reduce(defined)) if defined.size else float("nan")


def _floored_ess(draws: np.ndarray, effective_sample_size: Callable) -> np.ndarray:
    """numpyro's ESS with Stan's floor on the autocorrelation time (tau >= 1 / log10 N,
    so ESS <= N log10 N): numpyro puts none, and an antithetic chain (lag-1 correlation
    near -0.5, common for NUTS on near-Gaussian targets) gives tau <= 0, a negative ESS."""
    ess = np.asarray(effective_sample_size(draws))
    total = draws.shape[0] * draws.shape[1]
    cap = total * np.log10(total)
    return np.where(np.isnan(ess) | ((ess > 0) & (ess <= cap)), ess, cap)


def nuts_problems(diagnostics: Mapping[str, float], min_ess: float | None) -> list[str]:
    """What looks wrong in :func:`nuts_diagnostics` (ESS is judged only if ``min_ess``)."""
    problems = []
    if diagnostics.get("divergences", 0) > 0:
        problems.append(f"{int(diagnostics['divergences'])} divergent transitions")
    r_hat, ess = diagnostics.get("max_r_hat", 1.0), diagnostics.get("min_ess", np.inf)
    if r_hat > 1.05 or np.isnan(r_hat):  # NaN: every checked value was constant
        problems.append(f"max r_hat {r_hat:.3f} > 1.05" if r_hat > 1.05 else "r_hat undefined")
    if min_ess is not None and (ess < min_ess or np.isnan(ess)):
        problems.append(f"min ESS {ess:.0f}" if ess < min_ess else "ESS undefined")
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


def run_svi(model, args, kwargs, evidence, latent_sites, settings, rng_key, cache=True):
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
