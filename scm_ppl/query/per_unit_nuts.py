"""Per-unit NUTS: one sampler per unit, all units in lockstep under ``vmap``.

When each unit's latents are independent of every other unit's given the program's
constants, the posterior factorises over units, and one joint chain over all units'
latents is the wrong tool: its step size and mass matrix must suit the worst unit, and
its trees grow with the dimension. Here every unit runs its own NUTS chain, with its own
step size and diagonal mass matrix (numpyro's functional ``hmc(algo="NUTS")``: dual
averaging and windowed adaptation, per unit), vectorised over units (and chains) by
``jax.vmap``, so the whole run is one compiled loop.

The program itself is written for all units at once (a plate), so one unit cannot be
evaluated alone; a unit's log density is read off the batched evaluation instead. The
potential every unit's sampler calls is a ``custom_vmap`` function whose batching rule
evaluates the program once on all units and hands each unit its own energy and gradient
(``custom_jvp`` supplies that gradient to NUTS). It applies when, checked numerically on
this evidence at a random point:

* every latent site has the same leading unit axis, indexed by one plate;
* the log density's Hessian is block-diagonal over units (no term couples two units):
  its blocks reproduce a random Hessian-vector product, and a tangent on a random half
  of the units moves the gradient of the other half by exactly zero;
* the terms outside the unit plate do not depend on the latents (zero gradient).

Anything else falls back to the joint NUTS path, with the reason in ``attrs``.

Keys (:func:`unit_keys`): each unit's chain has a key folded from its index on the
query's unit axis, so a unit keeps its draws when units are appended after it (the first
16 units alone draw as they do among 24); a unit that moves on the axis (units 8-23
queried alone) gets another key.
Units sharded over devices or processes keep their keys too (as a split of the key would
under ``jit``), but not their draws bit for bit: XLA rounds the sharded program's
step-size adaptation differently in the last bit (1e-7 after two iterations; numpyro's own
NUTS under ``vmap`` does the same), and NUTS trajectories amplify it. Sharded draws are
the same posterior, not the same numbers.

Cost: in lockstep, every unit waits for the iteration's longest tree, and the batched
tree building costs more per leapfrog step than one joint chain's. Measured on CPU it
wins up to 300 units and loses from 350 on (see ``AUTO_MAX_UNITS`` in
:mod:`scm_ppl.query.per_unit`), so ``"auto"`` takes it only from 32 to 300 units.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Mapping
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
from jax.custom_batching import custom_vmap
from numpyro import handlers
from numpyro.distributions import constraints
from numpyro.infer.hmc import hmc

from scm_ppl.core.cache import LRUCache
from scm_ppl.core.inference import nuts_problems, split_arguments
from scm_ppl.errors import InferenceWarning
from scm_ppl.query.per_unit_common import chain_diagnostics, compiled_per_unit

__all__ = [
    "UnitSampler",
    "chain_diagnostics",
    "per_unit_nuts_latents",
    "unit_keys",
    "unit_sampler",
    "warn_if_unreliable",
]

_RTOL = 1e-3
"""Separability checks, relative to the gradient's and Hessian's scale (float32
round-off sits near 1e-6 of it; a coupling term misses by O(1))."""

_HALVES = 8
"""Random halves of the units the exact no-leak check perturbs."""

_COMPILED = LRUCache(32)


class UnitSampler(NamedTuple):
    """A program's latents laid out as ``(unit, value)`` and its per-unit density.

    ``check(evidence, arrays, key)`` returns ``(coupling gap, outside-plate gradient)``;
    ``sample(evidence, arrays, key, warmup, draws, chains)`` returns ``(z, diverging)``
    shaped ``(chains, draws, units, values)`` and ``(chains, draws, units)``.
    """

    units: int
    values: int
    check: Callable
    sample: Callable
    unflatten: Callable[[jax.Array], dict[str, jax.Array]]


def _unit_layout(model, args, kwargs, evidence, latent) -> tuple[dict, str] | str:
    """Latent shapes and the unit plate's name, or why there is no per-unit layout."""
    conditioned = handlers.condition(model, data=dict(evidence))
    trace = handlers.trace(handlers.seed(conditioned, jax.random.key(0))).get_trace(*args, **kwargs)
    out, plates = {}, set()
    for name in latent:
        site = trace.get(name)
        if site is None or site["type"] != "sample":
            return f"latent site {name!r} is not a sample site of the program"
        if site["fn"].support not in (constraints.real, constraints.real_vector):
            return f"latent site {name!r} has support {site['fn'].support}, not the real line"
        shape = tuple(jnp.shape(site["value"]))
        batch = len(shape) - site["fn"].event_dim
        leading = [f.name for f in site["cond_indep_stack"] if batch + f.dim == 0 and shape]
        if not leading:
            return f"latent site {name!r} has no plate on its leading axis (no unit axis)"
        plates.add((leading[0], shape[0]))
        out[name] = shape
    if len(plates) != 1:
        return f"the latent sites do not share one unit plate (plates {sorted(plates)})"
    (plate, n), *_ = plates
    if n < 2:
        return "there is one unit: the joint sampler is the per-unit one"
    return out, plate


def _split_by_unit(trace, names, plate: str, n: int) -> tuple[jax.Array, jax.Array]:
    """``(per-unit log density (n,), the rest)`` of the sites ``names``."""
    per_unit, rest = jnp.zeros(n), jnp.zeros(())
    for name in names:
        site = trace[name]
        if site["type"] != "sample":
            continue
        lp = site["fn"].log_prob(site["value"])
        frames = [f for f in site["cond_indep_stack"] if f.name == plate]
        axis = jnp.ndim(lp) + frames[0].dim if frames else None
        if axis is None or axis < 0 or jnp.shape(lp)[axis] != n:
            rest = rest + jnp.sum(lp)
            continue
        lp = jnp.moveaxis(lp, axis, 0)
        per_unit = per_unit + lp.reshape(n, -1).sum(1)
    return per_unit, rest


def _build(model, rebuild, evidence_names, site_shapes, plate: str) -> UnitSampler:
    names = list(site_shapes)
    n = next(iter(site_shapes.values()))[0]
    sizes = [math.prod(s) // n for s in site_shapes.values()]
    d = sum(sizes)
    counted = [*names, *evidence_names]

    def unflatten(z: jax.Array) -> dict[str, jax.Array]:  # z: (n, d)
        out, start = {}, 0
        for name, size in zip(names, sizes, strict=True):
            out[name] = z[:, start : start + size].reshape(site_shapes[name])
            start += size
        return out

    def parts(evidence, arrays, z):
        args, kwargs = rebuild(arrays)
        conditioned = handlers.condition(model, data=evidence)
        program = handlers.seed(handlers.substitute(conditioned, unflatten(z)), rng_seed=0)
        trace = handlers.trace(program).get_trace(*args, **kwargs)
        return _split_by_unit(trace, counted, plate, n)

    def check(evidence, arrays, key):
        z1 = jax.random.normal(key, (n, d))
        v = jax.random.normal(jax.random.fold_in(key, 1), (n, d))

        def grad(z):
            return jax.grad(lambda z: jnp.sum(parts(evidence, arrays, z)[0]))(z)

        def hvp(u):
            return jax.jvp(grad, (z1,), (u,))[1]

        columns = jax.vmap(hvp)(jnp.eye(d)[:, None, :] * jnp.ones((1, n, 1)))  # (d, n, d)
        blocks = jnp.moveaxis(columns, 0, -1)  # (n, d, d): unit i's block
        scale = 1.0 + jnp.max(jnp.abs(grad(z1))) + jnp.max(jnp.abs(blocks))
        coupling = jnp.max(jnp.abs(hvp(v) - jnp.einsum("nij,nj->ni", blocks, v))) / scale
        # A weak coupling (a mean over units: O(1/n)) hides under any relative tolerance,
        # but a separable program's derivatives carry none of it: a tangent on some units
        # moves the gradient of the others by exactly zero. Random halves catch any
        # coupled pair with probability 1 - 2^-_HALVES.
        halves = jax.random.bernoulli(jax.random.fold_in(key, 2), 0.5, (_HALVES, n, 1))
        leaks = jax.vmap(lambda m: jnp.max(jnp.abs(jnp.where(m, 0.0, hvp(v * m)))))(halves)
        outside = jnp.max(jnp.abs(jax.grad(lambda z: parts(evidence, arrays, z)[1])(z1)))
        return jnp.maximum(coupling, jnp.max(leaks)), outside

    def sample(evidence, arrays, key, warmup: int, draws: int, chains: int):
        def energy_and_grad(z, evidence, arrays):  # z: (chains * n, d): every unit, chain
            z = z.reshape(chains, n, d)

            def one_chain(z):
                def total(z):
                    per_unit = parts(evidence, arrays, z)[0]
                    return jnp.sum(per_unit), per_unit

                (_, per_unit), g = jax.value_and_grad(total, has_aux=True)(z)
                return -per_unit, -g

            energy, grad = jax.vmap(one_chain)(z)
            return energy.reshape(-1), grad.reshape(-1, d)

        # Evidence and arrays are arguments, not closures: custom_vmap traces its body
        # on its own and cannot close over the tracers of this jitted function.
        @custom_vmap
        def unit_energy(z, context):  # never run unbatched: one unit alone has no program
            return jnp.full((), jnp.nan), jnp.full_like(z, jnp.nan)

        @unit_energy.def_vmap
        def _(axis_size, in_batched, z, context):
            del axis_size, in_batched  # always every unit of every chain, batched
            return energy_and_grad(z, *context), (True, True)

        @jax.custom_jvp
        def energy(z, context):
            return unit_energy(z, context)[0]

        @energy.defjvp
        def _(primals, tangents):
            value, grad = unit_energy(*primals)
            return value, jnp.sum(grad * tangents[0])

        def potential(z):
            return energy(z, (evidence, arrays))

        init_kernel, sample_kernel = hmc(potential_fn=potential, algo="NUTS")

        def run_one(z0, key):
            state = init_kernel(z0, warmup, rng_key=key)
            kept = (jnp.zeros((draws, d), z0.dtype), jnp.zeros(draws, bool))

            # One loop over warmup and draws, keeping draws as they come: the NUTS kernel
            # is compiled once (a warmup loop and a sampling loop would compile it twice).
            def step(i, carry):
                state, (zs, diverging) = carry
                state = sample_kernel(state)
                at, keep = jnp.maximum(i - warmup, 0), i >= warmup
                zs = zs.at[at].set(jnp.where(keep, state.z, zs[at]))
                diverging = diverging.at[at].set(jnp.where(keep, state.diverging, diverging[at]))
                return state, (zs, diverging)

            return jax.lax.fori_loop(0, warmup + draws, step, (state, kept))[1]

        keys = unit_keys(key, chains, n)
        # numpyro's own default start: uniform in (-2, 2) on the unconstrained scale.
        z0 = jax.vmap(lambda k: jax.random.uniform(k, (d,), minval=-2.0, maxval=2.0))(
            jax.vmap(lambda k: jax.random.fold_in(k, 0))(keys)
        )
        runs = jax.vmap(lambda k: jax.random.fold_in(k, 1))(keys)
        z, diverging = jax.vmap(run_one)(z0, runs)
        z = jnp.moveaxis(z.reshape(chains, n, draws, d), 2, 1)
        return z, jnp.moveaxis(diverging.reshape(chains, n, draws), 2, 1)

    return UnitSampler(
        units=n,
        values=d,
        check=jax.jit(check),
        sample=jax.jit(sample, static_argnums=(3, 4, 5)),
        unflatten=unflatten,
    )


def unit_keys(key: jax.Array, chains: int, units: int) -> jax.Array:
    """One key per chain and unit, ``(chains * units,)`` chain-major, each folded from the
    unit's *global* index: a unit's chain draws the same numbers however the unit axis is
    sharded over devices or processes (a split of the key over the units would tie them
    to the layout).

    Examples
    --------
    >>> import jax
    >>> keys = unit_keys(jax.random.key(0), 2, 3)
    >>> keys.shape, bool((jax.random.key_data(keys[4]) == jax.random.key_data(
    ...     jax.random.fold_in(jax.random.fold_in(jax.random.key(0), 1), 1))).all())
    ((6,), True)
    """
    per_chain = jax.vmap(lambda c: jax.random.fold_in(key, c))(jnp.arange(chains))
    per_unit = jax.vmap(lambda k: jax.vmap(lambda i: jax.random.fold_in(k, i))(jnp.arange(units)))
    return per_unit(per_chain).reshape(chains * units)


def _sampler(model, args, kwargs, evidence, latent) -> UnitSampler | str:
    return compiled_per_unit(
        _COMPILED, model, args, kwargs, evidence, latent, _unit_layout,
        lambda rebuild, layout: _build(model, rebuild, sorted(evidence), *layout),
        lambda sampler: sampler.values, "checked",
    )  # fmt: skip


def unit_sampler(
    model: Callable,
    args: tuple,
    kwargs: Mapping[str, Any],
    evidence: Mapping[str, Any],
    latent: tuple[str, ...],
    rng_key: jax.Array,
) -> tuple[bool, str]:
    """Can each unit's latents be sampled by its own NUTS chain? ``(yes, reason)``.

    Examples
    --------
    >>> import jax, numpyro, numpyro.distributions as dist
    >>> def model(n):
    ...     with numpyro.plate("unit", n):
    ...         u = numpyro.sample("u", dist.Normal(0.0, 1.0))
    ...         numpyro.sample("x", dist.Normal(jax.numpy.tanh(u), 0.3))
    >>> ok, why = unit_sampler(model, (3,), {}, {"x": jax.numpy.ones(3)}, ("u",),
    ...                        jax.random.key(0))
    >>> ok
    True
    """
    found = _sampler(model, args, kwargs, evidence, latent)
    if isinstance(found, str):
        return False, found
    arrays, _ = split_arguments(args, kwargs)
    coupling, outside = (float(g) for g in found.check(dict(evidence), arrays, rng_key))
    if not coupling <= _RTOL:
        return False, f"the units' latents are coupled (gap {coupling:.2g})"
    if outside != 0.0:  # a site that does not depend on the latents has zero gradient
        return False, f"a site outside the unit plate depends on the latents (gap {outside:.2g})"
    return True, (
        f"per-unit NUTS: the log density of {list(latent)} separates over {found.units} "
        f"units of {found.values} latent value(s) (checked numerically on this evidence), "
        "so each unit runs its own NUTS chain (own step size and diagonal mass matrix), "
        "vectorised over units"
    )


def per_unit_nuts_latents(
    model: Callable,
    args: tuple,
    kwargs: Mapping[str, Any],
    evidence: Mapping[str, Any],
    latent: tuple[str, ...],
    settings: Any,
    rng_key: jax.Array,
) -> tuple[dict[str, jax.Array], dict[str, float]]:
    """Posterior draws ``(chain, draw, *shape)`` per latent site from per-unit NUTS, and
    the diagnostics over every unit (divergences, max split r_hat, min ESS).

    Examples
    --------
    >>> import jax, numpyro, numpyro.distributions as dist
    >>> from scm_ppl.query.plan import InferenceSettings
    >>> def model(n):
    ...     with numpyro.plate("unit", n):
    ...         u = numpyro.sample("u", dist.Normal(0.0, 1.0))
    ...         numpyro.sample("x", dist.Normal(jax.numpy.tanh(u), 0.3))
    >>> z, diag = per_unit_nuts_latents(model, (3,), {}, {"x": jax.numpy.ones(3)}, ("u",),
    ...     InferenceSettings(num_samples=20, num_warmup=20), jax.random.key(0))
    >>> z["u"].shape, sorted(diag)
    ((1, 20, 3), ['divergences', 'max_r_hat', 'min_ess'])
    """
    found = _sampler(model, args, kwargs, evidence, latent)
    if isinstance(found, str):  # plan_query checked; a direct caller may not have
        raise ValueError(f"per-unit NUTS does not apply: {found}")
    arrays, _ = split_arguments(args, kwargs)
    chains, draws = settings.num_chains, settings.num_samples
    z, diverging = found.sample(dict(evidence), arrays, rng_key, settings.num_warmup, draws, chains)
    flat = jax.vmap(found.unflatten)(z.reshape(chains * draws, found.units, found.values))
    latents = {k: v.reshape(chains, draws, *v.shape[1:]) for k, v in flat.items()}
    diagnostics = {"divergences": float(jnp.sum(diverging))}
    diagnostics.update(chain_diagnostics(z.reshape(chains, draws, -1)))
    return latents, diagnostics


def warn_if_unreliable(diagnostics: Mapping[str, float], num_chains: int) -> None:
    """Warn (:class:`~scm_ppl.InferenceWarning`) as the joint NUTS path does: divergences,
    max r_hat over 1.05 or min ESS under 100 per chain, over every unit.

    Examples
    --------
    >>> warn_if_unreliable({"divergences": 0.0, "max_r_hat": 1.01, "min_ess": 800.0}, 1)
    """
    problems = nuts_problems(diagnostics, min_ess=100 * num_chains)
    if problems:
        warnings.warn(
            "Per-unit NUTS abduction may be unreliable: " + "; ".join(problems) + " (over "
            "every unit). Increase num_warmup/num_samples, reparametrise the program, or "
            "check the evidence.",
            InferenceWarning,
            stacklevel=4,  # the user's call: counterfactual -> ... -> run_query -> here
        )
