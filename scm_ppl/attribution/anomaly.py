"""Anomaly attribution: which node's noise made a unit an outlier (Budhathoki, Minorics,
Blöbaum & Janzing, "Causal structure-based root cause analysis of outliers", ICML 2022).

A unit's target value ``y`` gets the information-theoretic outlier score
``S(y) = -log P(τ(Y) >= τ(y))`` with ``τ(y) = |y - E Y| / sd(Y)`` (moments of the model's
own law of ``Y``). The unit's noise terms are abducted from its row; a coalition ``S`` of
them is worth ``v(S) = log P(τ(Y) >= τ(y) | N_S = n_S)``, the other noise resampled, so
``v(all) = 0`` and ``v(∅) = -S(y)``: the Shapley values share the outlier score, and a
root cause takes most of it. Probabilities are tail counts over ``num_samples`` draws of
the free noise with one added to numerator and denominator (so ``v`` stays finite and
scores are at most ``log(num_samples + 1)``).

Every unit, coalition and draw runs in one compiled call: units are mapped in batches,
coalitions and draws vectorised.
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
from scm_ppl.core.noise_simulation import as_scm, check_data, compiled

__all__ = ["anomaly"]


def anomaly(
    model: Any,
    rows: Mapping[str, Any],
    target: str,
    *,
    num_samples: int = 512,
    num_reference: int = 8192,
    num_replicates: int = 4,
    approximate: bool = False,
    num_permutations: int = 32,
    batch_size: int = 8,
    rng_key: jax.Array | None = None,
    plate: str | None = None,
    size_arg: str | None = None,
    model_kwargs: Mapping[str, Any] | None = None,
) -> Attribution:
    """Attribute each unit's outlier score on ``target`` to the noise of each node.

    Parameters
    ----------
    model
        A fitted SCM or a NumPyro program with fixed parameters (per-unit plate).
    rows
        The anomalous units: ``{site: array}``, one row per unit, with every per-unit
        sample site that is ``target`` or one of its ancestors.
    target
        A per-unit scalar site.
    num_samples
        Draws of the free noise per unit and coalition.
    num_reference
        Draws of ``Y`` that fix ``τ`` and give the units' outlier scores (``attrs``).
    num_replicates
        Independent replicates (one posterior draw of all mechanisms each for a Bayesian
        fit; discrete noise is abducted anew in each).
    approximate, num_permutations
        Sampled instead of exact Shapley values (needed above 15 noise terms).
    batch_size
        Units per vectorised batch (bounds memory: ``batch_size × 2^d × num_samples``).
    rng_key, plate, size_arg, model_kwargs
        As for :func:`~scm_ppl.attribution.intrinsic_influence`.

    Returns
    -------
    Attribution
        ``estimate`` shaped ``(unit, node)``, each row summing to the unit's outlier score
        (``attrs["scores"]``); :meth:`~Attribution.top` names the root cause per unit.

    Raises
    ------
    GraphError
        ``target`` is not a per-unit site.
    DataError
        A needed column is missing, rows of unequal length, NaN/inf.
    CriticismError
        Too many players for exact Shapley values; a program without a per-unit plate.

    Examples
    --------
    >>> import numpyro, numpyro.distributions as dist
    >>> def model(n):
    ...     with numpyro.plate("unit", n):
    ...         x = numpyro.sample("x", dist.Normal(0.0, 1.0))
    ...         numpyro.sample("y", dist.Normal(x, 0.1))
    >>> r = anomaly(model, {"x": [4.0], "y": [4.0]}, "y", num_replicates=1)
    >>> r.top()
    ['x']
    """
    check_positive(
        num_samples=num_samples,
        num_reference=num_reference,
        num_replicates=num_replicates,
        num_permutations=num_permutations,
        batch_size=batch_size,
    )
    scm = as_scm(model, plate=plate, size_arg=size_arg, model_kwargs=model_kwargs)
    target = scm.check_target(target)
    up = set(scm.ancestors(target)) | {target}
    players = tuple(s for s in scm.noisy if s in up)
    check_players(len(players), approximate)
    table = check_data(rows, list(players), what="rows", scm=scm)
    key = default_key(rng_key)
    static = (target, num_samples, num_reference, num_replicates, approximate)
    static += (num_permutations, batch_size, tuple(table))

    def make() -> Any:
        d, k = len(players), num_samples

        def run(values: list, table: dict, key: jax.Array) -> Any:
            def kernel(key: jax.Array) -> Any:
                kg, ka, kr, kf, ks = jax.random.split(key, 5)
                g = scm.global_noise(values, kg)
                own, tr = scm.abduct(values, table, ka, g)
                y_obs = flat_target(tr[target]["value"])
                ref_noise = scm.unit_noise(values, num_reference, kr, g)
                y_ref = flat_target(scm.simulate(values, ref_noise, g)[target])
                mu, sd = jnp.mean(y_ref), jnp.std(y_ref)
                tau = lambda y: jnp.abs(y - mu) / sd
                tail = lambda t, ys: (1 + jnp.sum(tau(ys) >= t, axis=-1)) / (ys.shape[-1] + 1)
                scores = -jnp.log(tail(tau(y_obs)[:, None], y_ref[None, :]))
                fresh = scm.unit_noise(values, k, kf, g)

                def per_unit(args: Any) -> Any:
                    noise_u, t_u, key_u = args

                    def value_one(mask: jax.Array) -> Any:
                        y = scm.simulate(values, mix(mask, players, noise_u, fresh), g)[target]
                        return jnp.log(tail(t_u, flat_target(y)))

                    value_fn = jax.vmap(value_one)
                    return shapley(
                        value_fn,
                        d,
                        approximate=approximate,
                        key=key_u,
                        num_permutations=num_permutations,
                    )

                units = y_obs.shape[0]
                noise_units = {s: own[s][:, None] for s in players}
                args = (noise_units, tau(y_obs), jax.random.split(ks, units))
                phi, se = batched_map(per_unit, args, batch_size)
                return phi, se, scores

            return replicate(kernel, key, num_replicates)

        return run

    run = compiled("anomaly", scm, static, make)
    phi, se, scores = run(scm.values, {s: jnp.asarray(v) for s, v in table.items()}, key)
    return summarise(
        phi,
        se,
        bayesian=scm.bayesian,
        kind="anomaly",
        target=target,
        nodes=players,
        measure="it-score",
        total=float(jnp.mean(scores)),
        attrs={
            "edges": scm.edges([*players, target]),
            "scores": jax.device_get(jnp.mean(scores, axis=0)),
            "num_samples": num_samples,
            "num_reference": num_reference,
            "num_replicates": num_replicates,
            "shapley": "sampled" if approximate else "exact",
        },
    )
