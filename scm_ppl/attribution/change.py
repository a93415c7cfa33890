"""Distribution change: which mechanisms changed a target's distribution (Budhathoki,
Janzing, Blöbaum & Ng, "Why did the distribution change?", AISTATS 2021).

The players are the mechanisms of the target and of its ancestors. A coalition ``S``
runs the SCM with the mechanisms in ``S`` taken from ``after`` and the rest from
``before``, on shared noise; it is worth the change of a statistic of the target's law
against all-``before``: the mean (``measure="mean"``), the variance (``"variance"``) or
the energy distance of the two laws (``"energy"``, any change of distribution). The
Shapley values share the change between ``before`` and ``after``.

Given two data sets instead of two fits, both are fitted with :func:`scm_ppl.fit`
(``model=`` and ``fit_kwargs=``).
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
    replicate,
)
from scm_ppl.attribution._results import Attribution, summarise
from scm_ppl.attribution._shapley import check_players, shapley
from scm_ppl.core.noise_simulation import Scm, as_scm, compiled
from scm_ppl.core.validate import check_method
from scm_ppl.errors import CriticismError

__all__ = ["distribution_change"]

_MEASURES = ("mean", "variance", "energy")


def energy_distance(x: jax.Array, y: jax.Array) -> jax.Array:
    """The energy distance of two 1-D samples, ``2 ∫ (F_x - F_y)²``, by sorting.

    Zero for samples with the same empirical law; for two point masses ``a`` and ``b`` it
    is ``2 |a - b|``.

    Examples
    --------
    >>> import jax.numpy as jnp
    >>> float(energy_distance(jnp.array([0.0, 1.0]), jnp.array([1.0, 0.0])))
    0.0
    >>> float(energy_distance(jnp.array([0.0]), jnp.array([1.5])))
    3.0
    """
    z = jnp.concatenate([x, y])
    order = jnp.argsort(z)
    zs = z[order]
    step = jnp.where(order < x.shape[0], 1.0 / x.shape[0], -1.0 / y.shape[0])
    gap = jnp.cumsum(step)[:-1]
    return 2.0 * jnp.sum(gap**2 * jnp.diff(zs))


def _as_fit(source: Any, model: Any, fit_kwargs: Mapping[str, Any] | None, label: str) -> Any:
    if isinstance(source, Mapping):
        if model is None:
            raise CriticismError(
                f"{label} is a data set; pass the program to fit to it as model=..."
            )
        from scm_ppl.learn import fit

        return fit(model, source, **{"progress": False, **dict(fit_kwargs or {})})
    return source


def _composite(
    b: Scm, a: Scm, order: tuple[str, ...], vals: tuple[list, list], noise: dict, gs: tuple
) -> Any:
    """Each mechanism of ``order`` from ``after`` (mask true) or ``before``, on ``noise``."""

    def run(mask: jax.Array) -> dict:
        out: dict[str, jax.Array] = {}
        n = next(iter(noise.values())).shape[0]
        for i, j in enumerate(order):
            pa = {p: out[p] for p in b.parents(j) if p in out}
            own = {j: noise[j]} if j in noise else {}
            key = jax.random.key(i)
            vb = b.trace(vals[0], n, key, noise={**gs[0], **own}, intervene=pa)[j]["value"]
            va = a.trace(vals[1], n, key, noise={**gs[1], **own}, intervene=pa)[j]["value"]
            out[j] = jnp.where(mask[i], va, vb)
        return out

    return run


def distribution_change(
    before: Any,
    after: Any,
    target: str,
    *,
    measure: str = "mean",
    model: Any = None,
    fit_kwargs: Mapping[str, Any] | None = None,
    num_samples: int = 8192,
    num_replicates: int = 8,
    approximate: bool = False,
    num_permutations: int = 64,
    rng_key: jax.Array | None = None,
    plate: str | None = None,
    size_arg: str | None = None,
    model_kwargs: Mapping[str, Any] | None = None,
) -> Attribution:
    """Attribute the change of ``target``'s distribution to the mechanisms that changed.

    Parameters
    ----------
    before, after
        Two fits (or programs with fixed parameters) of one program, or two data sets
        ``{site: array}`` to fit ``model`` to.
    target
        A per-unit scalar site.
    measure
        ``"mean"`` (signed), ``"variance"`` (signed) or ``"energy"`` (energy distance).
    model, fit_kwargs
        The program to fit when ``before``/``after`` are data (default
        ``progress=False``).
    num_samples
        Units simulated per coalition (shared noise across coalitions).
    num_replicates
        Independent replicates (one posterior draw of each fit's mechanisms each).
    approximate, num_permutations
        Sampled instead of exact Shapley values (needed above 15 mechanisms).
    rng_key, plate, size_arg, model_kwargs
        As for :func:`~scm_ppl.attribution.intrinsic_influence`.

    Returns
    -------
    Attribution
        ``estimate`` per mechanism; ``total`` the change between ``before`` and ``after``.

    Raises
    ------
    GraphError
        ``target`` is not a per-unit site.
    CriticismError
        The two programs have different per-unit graphs; data without ``model``; too many
        mechanisms for exact Shapley values.

    Examples
    --------
    >>> import numpyro, numpyro.distributions as dist
    >>> def make(shift):
    ...     def model(n):
    ...         with numpyro.plate("unit", n):
    ...             x = numpyro.sample("x", dist.Normal(shift, 1.0))
    ...             numpyro.sample("y", dist.Normal(x, 1.0))
    ...     return model
    >>> r = distribution_change(make(0.0), make(1.0), "y")
    >>> round(r["x"], 2), round(r["y"], 2)
    (1.0, 0.0)
    """
    check_method(measure, _MEASURES, what="measure")
    check_positive(
        num_samples=num_samples, num_replicates=num_replicates, num_permutations=num_permutations
    )
    before = _as_fit(before, model, fit_kwargs, "before")
    after = _as_fit(after, model, fit_kwargs, "after")
    opts = {"plate": plate, "size_arg": size_arg, "model_kwargs": model_kwargs}
    b, a = as_scm(before, **opts), as_scm(after, **opts)
    if b.nodes != a.nodes or set(b.graph.edges) != set(a.graph.edges):
        raise CriticismError(
            "before and after must be one program (the same per-unit sites and arrows); "
            f"got nodes {list(b.nodes)} with arrows {sorted(b.graph.edges)} and "
            f"{list(a.nodes)} with {sorted(a.graph.edges)}."
        )
    target = b.check_target(target)
    up = set(b.ancestors(target)) | {target}
    players = tuple(s for s in b.nodes if s in up)
    check_players(len(players), approximate, "mechanisms")
    key = default_key(rng_key)
    static = (target, measure, num_samples, num_replicates, approximate, num_permutations)
    bayesian = b.bayesian or a.bayesian

    def make() -> Any:
        d = len(players)

        def stat(y: jax.Array, y0: jax.Array) -> jax.Array:
            if measure == "mean":
                return jnp.mean(y) - jnp.mean(y0)
            if measure == "variance":
                return jnp.var(y, ddof=1) - jnp.var(y0, ddof=1)
            return energy_distance(y, y0)

        def run(vb: list, va: list, key: jax.Array) -> Any:
            def kernel(key: jax.Array) -> Any:
                kb, ka, kn, ks = jax.random.split(key, 4)
                gs = (b.global_noise(vb, kb), a.global_noise(va, ka))
                noise = b.unit_noise(vb, num_samples, kn, gs[0])
                world = _composite(b, a, players, (vb, va), noise, gs)
                y0 = flat_target(world(jnp.zeros(d, bool))[target])
                one = lambda mask: stat(flat_target(world(mask)[target]), y0)
                y1 = flat_target(world(jnp.ones(d, bool))[target])
                value_fn = lambda masks: batched_map(one, masks, 16)
                phi, se = shapley(
                    value_fn, d, approximate=approximate, key=ks, num_permutations=num_permutations
                )
                return phi, se, stat(y1, y0)

            return replicate(kernel, key, num_replicates)

        return run

    run = compiled(f"distribution_change/{a.key!r}", b, static, make)
    phi, se, total = run(b.values, a.values, key)
    return summarise(
        phi,
        se,
        bayesian=bayesian,
        kind="distribution_change",
        target=target,
        nodes=players,
        measure=measure,
        total=float(jnp.mean(total)),
        attrs={
            "edges": b.edges([*players, target]),
            "num_samples": num_samples,
            "num_replicates": num_replicates,
            "shapley": "sampled" if approximate else "exact",
        },
    )
