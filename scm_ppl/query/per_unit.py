"""Per-unit abduction: latents that are independent across units, in closed form.

NUTS over every unit's latents jointly scales badly with the number of units, although
the units' latents are usually independent given the program's constants. When the log
density of the latent sites given the evidence is *quadratic* and *separates over
units* (a linear-Gaussian program: a conjugate model), each unit's posterior is the
Gaussian whose precision is minus that unit's block of the Hessian, and its mean is one
Newton step from any point. Both properties are checked numerically, on this evidence,
before the closed form is used:

* quadratic: the gradient at a second, random point equals the gradient at the first
  plus the Hessian times their difference (to float round-off);
* separable: the Hessian times a random vector equals the per-unit blocks times it
  (no term couples two units);
* every unit's precision is positive definite (its Cholesky factor is finite).

The unit axis is the leading axis every latent site shares; without one, the whole
latent vector is one unit. Anything else falls back to the joint NUTS path, with the
reason in the result's ``attrs``. Draws are exact and independent (no Markov chain).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from typing import Any

import jax
import jax.numpy as jnp
from numpyro import handlers
from numpyro.distributions import constraints

from scm_ppl.core.cache import LRUCache
from scm_ppl.core.inference import split_arguments
from scm_ppl.errors import AbductionError
from scm_ppl.query.per_unit_common import chain_diagnostics, compiled_per_unit
from scm_ppl.query.per_unit_nuts import unit_sampler
from scm_ppl.query.scaling import unit_plate

__all__ = ["per_unit_choice", "per_unit_latents", "per_unit_or_joint"]

_UNROLL = 8
"""Latent values per unit up to which the draws' product is unrolled (its terms grow as
the square)."""

_RTOL = 1e-3
"""Quadratic/separable checks, relative to the gradient's scale: float32 round-off
in a gradient of a few sites sits near 1e-6 of that scale; a non-quadratic density
misses by O(1)."""

AUTO_MIN_UNITS, AUTO_MAX_UNITS = 32, 300
"""The numbers of units for which ``"auto"`` takes per-unit NUTS over the joint chain.
Measured on 2 shared cores, per-unit and joint in the same run
(``benchmarks/w8_latent.py --tanh``: ``X ~ N(tanh 2U, 0.3)``, 500 + 1000 draws, steady
state; ``benchmarks/results/per_unit_window.md``, three runs, load 2-7): per-unit over
joint 0.43x at 100 units, 0.28x-0.41x at 150-200, 0.35x-0.61x at 250-300, then 1.06x at
350, 1.34x-2.33x at 400, 1.44x at 700 and 1.86x at 1,000 (earlier: 0.25x at 100 units and
3.7x at 10,000). Under ``vmap`` every unit waits for the longest tree of the iteration, so
the cost follows the hardest unit, and more units hold a harder one; with fewer than 32
the joint chain's cheaper compile wins. ``method="per_unit_nuts"`` still asks for it past
the bound (its ESS holds up per unit; the joint chain's shrinks with the dimension)."""

_COMPILED = LRUCache(64)


def _latent_shapes(model, args, kwargs, evidence, latent) -> dict[str, tuple] | str:
    conditioned = handlers.condition(model, data=dict(evidence))
    trace = handlers.trace(handlers.seed(conditioned, jax.random.key(0))).get_trace(*args, **kwargs)
    out = {}
    for name in latent:
        site = trace.get(name)
        if site is None or site["type"] != "sample":
            return f"latent site {name!r} is not a sample site of the program"
        support = site["fn"].support
        if support not in (constraints.real, constraints.real_vector):
            return f"latent site {name!r} has support {support}, not the real line"
        out[name] = tuple(jnp.shape(site["value"]))
    return out


def _moments_fn(model, rebuild, evidence_names, site_shapes: dict[str, tuple]) -> tuple:
    names = list(site_shapes)
    counted = [*names, *evidence_names]
    leads = {s[0] if s else None for s in site_shapes.values()}
    lead = leads.pop() if len(leads) == 1 else None
    n: int = int(lead) if lead is not None else 1
    sizes = [math.prod(s) // n for s in site_shapes.values()]
    d = sum(sizes)

    def unflatten(z: jax.Array) -> dict[str, jax.Array]:  # z: (n, d)
        out, start = {}, 0
        for name, size in zip(names, sizes, strict=True):
            out[name] = z[:, start : start + size].reshape(site_shapes[name])
            start += size
        return out

    def moments(evidence, arrays, key):
        args, kwargs = rebuild(arrays)
        conditioned = handlers.condition(model, data=evidence)

        def logp(z):
            # Only the latents and the evidence: sites downstream of both integrate out.
            program = handlers.seed(handlers.substitute(conditioned, unflatten(z)), rng_seed=0)
            trace = handlers.trace(program).get_trace(*args, **kwargs)
            return sum(
                jnp.sum(trace[name]["fn"].log_prob(trace[name]["value"]))
                for name in counted
                if trace[name]["type"] == "sample"
            )

        grad = jax.grad(logp)
        z0 = jnp.zeros((n, d))
        g0 = grad(z0)

        def hvp(v):
            return jax.jvp(grad, (z0,), (v,))[1]

        columns = jax.vmap(hvp)(jnp.eye(d)[:, None, :] * jnp.ones((1, n, 1)))  # (d, n, d)
        hessian = jnp.moveaxis(columns, 0, -1)  # (n, d, d): unit i's block
        k1, k2 = jax.random.split(key)
        z1 = jax.random.normal(k1, (n, d))
        v = jax.random.normal(k2, (n, d))
        scale = 1.0 + jnp.max(jnp.abs(g0)) + jnp.max(jnp.abs(hessian))
        quad_gap = jnp.max(jnp.abs(grad(z1) - g0 - jnp.einsum("nij,nj->ni", hessian, z1)))
        sep_gap = jnp.max(jnp.abs(hvp(v) - jnp.einsum("nij,nj->ni", hessian, v)))
        chol = jnp.linalg.cholesky(-hessian)  # precision = chol chol^T
        mean = jax.scipy.linalg.cho_solve((chol, True), g0[..., None])[..., 0]
        return mean, chol, quad_gap / scale, sep_gap / scale, jnp.all(jnp.isfinite(chol))

    def draws(evidence, arrays, key, num_draws):
        mean, chol, *_ = moments(evidence, arrays, key)
        # Value-major noise, (d, draws, n): each latent value's draws come out contiguous,
        # so the sites are views, not gathers from an interleaved (draws, n, d) array.
        eps = jax.random.normal(key, (d, num_draws, n))
        # z = mean + chol^{-T} eps has covariance (chol chol^T)^{-1}, the posterior's; one
        # small inverse per unit, then one product over all draws.
        inverse = jax.scipy.linalg.solve_triangular(
            chol, jnp.broadcast_to(jnp.eye(d), chol.shape), lower=True
        )
        if d <= _UNROLL:
            # Unrolled over the d x d entries: XLA's CPU dot over a batch of n tiny blocks
            # loops over the batch (4x slower at d = 2 and 10^4 units).
            z = [mean[:, i] + sum(inverse[:, j, i] * eps[j] for j in range(d)) for i in range(d)]
        else:
            z = list(mean.T[:, None, :] + jnp.einsum("nji,jsn->isn", inverse, eps))
        out, start = {}, 0
        for name, size in zip(names, sizes, strict=True):
            value = z[start] if size == 1 else jnp.stack(z[start : start + size], axis=-1)
            out[name] = value.reshape(1, num_draws, *site_shapes[name])
            start += size
        return out

    return jax.jit(moments), jax.jit(draws, static_argnums=3), n, d


def _compiled(model, args, kwargs, evidence, latent) -> tuple | str:
    return compiled_per_unit(
        _COMPILED, model, args, kwargs, evidence, latent, _latent_shapes,
        lambda rebuild, site_shapes: _moments_fn(model, rebuild, sorted(evidence), site_shapes),
        lambda found: found[3], "closed form",
    )  # fmt: skip


def per_unit_choice(
    model: Callable,
    args: tuple,
    kwargs: Mapping[str, Any],
    evidence: Mapping[str, Any],
    latent: tuple[str, ...],
    rng_key: jax.Array,
) -> tuple[bool, str]:
    """Can the latents be abducted unit by unit in closed form? ``(yes, reason)``.

    Examples
    --------
    >>> import jax, numpyro, numpyro.distributions as dist
    >>> def model(n):
    ...     with numpyro.plate("unit", n):
    ...         u = numpyro.sample("u", dist.Normal(0.0, 1.0))
    ...         numpyro.sample("x", dist.Normal(u, 1.0))
    >>> ok, why = per_unit_choice(model, (3,), {}, {"x": jax.numpy.ones(3)}, ("u",),
    ...                           jax.random.key(0))
    >>> ok
    True
    """
    found = _compiled(model, args, kwargs, evidence, latent)
    if isinstance(found, str):
        return False, found
    moments, _, n, d = found
    arrays, _ = split_arguments(args, kwargs)
    _, _, quad, sep, definite = moments(dict(evidence), arrays, rng_key)
    if not float(quad) <= _RTOL:
        return False, f"the log density is not quadratic in the latents (gap {float(quad):.2g})"
    if not float(sep) <= _RTOL:
        return False, f"the units' latents are coupled (gap {float(sep):.2g})"
    if not bool(definite):
        return False, "the latents' posterior precision is not positive definite"
    return True, (
        f"per-unit closed form: the log density of {list(latent)} is quadratic and separates "
        f"over {n} unit(s) of {d} latent value(s) (checked numerically on this evidence), "
        "so each unit's posterior is Gaussian; exact independent draws"
    )


def per_unit_latents(
    model: Callable,
    args: tuple,
    kwargs: Mapping[str, Any],
    evidence: Mapping[str, Any],
    latent: tuple[str, ...],
    num_draws: int,
    rng_key: jax.Array,
) -> tuple[dict[str, jax.Array], dict[str, float]]:
    """Exact posterior draws of the latents, ``(1, num_draws, *shape)`` per site, for a
    program :func:`per_unit_choice` accepted (one chain: the draws are independent), and
    their diagnostics (max split r_hat and min ESS over every unit, as for NUTS).

    Examples
    --------
    >>> import jax, numpyro, numpyro.distributions as dist
    >>> def model(n):
    ...     with numpyro.plate("unit", n):
    ...         u = numpyro.sample("u", dist.Normal(0.0, 1.0))
    ...         numpyro.sample("x", dist.Normal(u, 1.0))
    >>> z, _ = per_unit_latents(model, (3,), {}, {"x": jax.numpy.ones(3)}, ("u",), 10,
    ...                         jax.random.key(0))
    >>> z["u"].shape
    (1, 10, 3)
    >>> sorted(_)
    ['divergences', 'max_r_hat', 'min_ess']
    """
    found = _compiled(model, args, kwargs, evidence, latent)
    if isinstance(found, str):
        raise AbductionError(f"method='per_unit' does not apply: {found}. Use method='nuts'.")
    _, draws, _, _ = found
    arrays, _ = split_arguments(args, kwargs)
    latents = draws(dict(evidence), arrays, rng_key, num_draws)
    if num_draws < 4:
        return latents, {}
    # Exact independent draws, but judged like any sampled result: the same estimators,
    # site by site (no copy of the draws into one array).
    per_site = [chain_diagnostics(v.reshape(1, num_draws, -1)) for v in latents.values()]
    return latents, {
        "divergences": 0.0,
        "max_r_hat": max(d["max_r_hat"] for d in per_site),
        "min_ess": min(d["min_ess"] for d in per_site),
    }


def per_unit_or_joint(
    common: Mapping[str, Any],
    evidence: Mapping[str, Any],
    latent: tuple[str, ...],
    rng_key: jax.Array,
    chosen: str,
    reason: str,
) -> tuple[str, str]:
    """``(method, reason)`` once the per-unit structure is checked: ``"per_unit"`` where
    :func:`per_unit_choice` accepts (closed form), else ``"per_unit_nuts"`` where
    :func:`~scm_ppl.query.per_unit_nuts.unit_sampler` accepts (the units' latents
    separate), else the joint ``"nuts"``. Asked for ``method="per_unit"`` or
    ``"per_unit_nuts"`` where it does not apply: an :class:`~scm_ppl.AbductionError`
    saying why not."""
    model, args, kwargs = common["model"], common["args"], common["kwargs"]
    if chosen == "per_unit":
        ok, why = per_unit_choice(model, args, kwargs, evidence, latent, rng_key)
        if not ok:
            raise AbductionError(
                f"method='per_unit' needs a Gaussian posterior that separates over units, "
                f"but {why}. Use method='per_unit_nuts' when only the separation holds, "
                "'nuts' otherwise (or 'auto', which picks)."
            )
        return chosen, why
    if chosen == "per_unit_nuts":
        ok, why = unit_sampler(model, args, kwargs, evidence, latent, rng_key)
        if not ok:
            raise AbductionError(
                f"method='per_unit_nuts' needs the units' latents to separate, but {why}. "
                "Use method='nuts' (or 'auto', which falls back to it)."
            )
        return chosen, why
    try:
        ok, why = per_unit_choice(model, args, kwargs, evidence, latent, rng_key)
    except Exception as error:
        ok, why = False, f"the check could not run ({type(error).__name__})"
    if ok:
        return "per_unit", why
    found = unit_plate(common["info"])
    units = found[1] if found else 1
    if not AUTO_MIN_UNITS <= units <= AUTO_MAX_UNITS:
        return chosen, (
            f"{reason}; per-unit closed form not used: {why}; per-unit NUTS not tried for "
            f"{units} unit(s) ('auto' takes it for {AUTO_MIN_UNITS} to {AUTO_MAX_UNITS:,} "
            "units, where it was measured faster than the joint chain; method="
            "'per_unit_nuts' asks for it)"
        )
    try:
        separate, why_not = unit_sampler(model, args, kwargs, evidence, latent, rng_key)
    except Exception as error:
        separate, why_not = False, f"the check could not run ({type(error).__name__})"
    if separate:
        return "per_unit_nuts", f"{why_not}; closed form not used: {why}"
    return (
        chosen,
        f"{reason}; per-unit closed form not used: {why}; per-unit NUTS not used: {why_not}",
    )
