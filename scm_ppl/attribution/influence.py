"""Intrinsic causal influence: the share of a target's variance each node's own noise
contributes (Janzing, Blöbaum, Mastakouri, Faller & Budhathoki, "Quantifying intrinsic
causal contributions via structure preserving interventions", AISTATS 2024).

The players are the noise terms of the target and of its ancestors. A coalition ``S`` of
noise terms is worth the variance of the target it explains,
``v(S) = Var(Y) - E[Var(Y | N_S)]`` (law of total variance: ``Var(E[Y | N_S])``); the
Shapley values of ``v`` sum to ``Var(Y)``. For ``Y = sum_i c_i N_i`` (a linear SCM
unrolled), node ``i`` gets ``c_i^2 Var(N_i)``.

Estimation is nested Monte Carlo on shared noise: ``num_outer`` draws of the fixed noise,
``num_inner`` draws of the rest for each, the within-group variance (``ddof=1``, unbiased
for ``E[Var(Y | N_S)]``) averaged; every coalition sees the same draws (common random
numbers), all coalitions in one compiled call.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import jax
import jax.numpy as jnp

from scm_ppl.attribution._common import (
    batched_map,
    check_positive,
    default_key,
    flat_target,
    mix,
    replicate,
)
from scm_ppl.attribution._results import Attribution, summarise
from scm_ppl.attribution._shapley import check_players, shapley
from scm_ppl.core.noise_simulation import as_scm, compiled
from scm_ppl.errors import SettingsError

__all__ = ["intrinsic_influence"]


def intrinsic_influence(
    model: Any,
    target: str,
    *,
    num_outer: int = 512,
    num_inner: int = 32,
    num_replicates: int = 8,
    approximate: bool = False,
    num_permutations: int = 64,
    rng_key: jax.Array | None = None,
    plate: str | None = None,
    size_arg: str | None = None,
    model_kwargs: Mapping[str, Any] | None = None,
) -> Attribution:
    """Shapley share of ``target``'s variance that each node's own noise contributes.

    Parameters
    ----------
    model
        A fitted SCM or a NumPyro program with fixed parameters whose per-unit sites sit in
        ``numpyro.plate(plate, size_arg)`` (default ``"unit"``, ``n``; a fit knows its own).
    target
        A per-unit scalar site.
    num_outer, num_inner
        Draws of the coalition's noise, and of the other noise per outer draw.
    num_replicates
        Independent replicates; for a Bayesian fit each runs one posterior draw of all
        mechanisms, and the spread over replicates is the posterior uncertainty.
    approximate, num_permutations
        Sample Shapley values from antithetic permutations instead of enumerating all
        ``2^d`` coalitions (needed above 15 noise terms).
    rng_key
        A JAX PRNG key (default ``jax.random.key(0)``).
    plate, size_arg, model_kwargs
        The unit plate, the argument that sizes it and other program arguments.

    Returns
    -------
    Attribution
        ``estimate`` per node; ``total`` the target's variance.

    Raises
    ------
    GraphError
        ``target`` is not a per-unit site.
    CriticismError
        A program without a per-unit plate; too many players for exact Shapley values.

    Examples
    --------
    >>> import numpyro, numpyro.distributions as dist
    >>> def model(n):
    ...     with numpyro.plate("unit", n):
    ...         x = numpyro.sample("x", dist.Normal(0.0, 1.0))
    ...         numpyro.sample("y", dist.Normal(2.0 * x, 1.0))
    >>> r = intrinsic_influence(model, "y")
    >>> round(r["x"]), round(r["y"])  # 2² · 1 and 1² · 1
    (4, 1)
    """
    check_positive(
        num_outer=num_outer,
        num_inner=num_inner,
        num_replicates=num_replicates,
        num_permutations=num_permutations,
    )
    if num_inner < 2:
        raise SettingsError(f"num_inner must be at least 2 (a variance); got {num_inner}.")
    scm = as_scm(model, plate=plate, size_arg=size_arg, model_kwargs=model_kwargs)
    target = scm.check_target(target)
    up = set(scm.ancestors(target)) | {target}
    players = tuple(s for s in scm.noisy if s in up)
    check_players(len(players), approximate)
    key = default_key(rng_key)
    static = (target, num_outer, num_inner, num_replicates, approximate, num_permutations)

    def make() -> Any:
        m, k, d = num_outer, num_inner, len(players)

        def within(values: list, outer: dict, inner: dict, g: dict, mask: jax.Array) -> Any:
            fixed = {s: jnp.repeat(outer[s], k, axis=0) for s in players}
            y = flat_target(scm.simulate(values, mix(mask, players, fixed, inner), g)[target])
            return jnp.mean(jnp.var(y.reshape(m, k), axis=1, ddof=1))

        def run(values: list, key: jax.Array) -> Any:
            def kernel(key: jax.Array) -> Any:
                kg, ko, ki, ks = jax.random.split(key, 4)
                g = scm.global_noise(values, kg)
                outer = scm.unit_noise(values, m, ko, g)
                inner = scm.unit_noise(values, m * k, ki, g)
                one = lambda mask: within(values, outer, inner, g, mask)
                empty = one(jnp.zeros(d, bool))
                value_fn = lambda masks: empty - batched_map(one, masks, 16)
                phi, se = shapley(
                    value_fn, d, approximate=approximate, key=ks, num_permutations=num_permutations
                )
                return phi, se, empty

            return replicate(kernel, key, num_replicates)

        return run

    run = compiled("intrinsic_influence", scm, static, make)
    phi, se, total = run(scm.values, key)
    return summarise(
        phi,
        se,
        bayesian=scm.bayesian,
        kind="intrinsic_influence",
        target=target,
        nodes=players,
        measure="variance",
        total=float(jnp.mean(total)),
        attrs={
            "edges": scm.edges([*players, target]),
            "num_outer": num_outer,
            "num_inner": num_inner,
            "num_replicates": num_replicates,
            "shapley": "sampled" if approximate else "exact",
        },
    )
