"""Arrow strength: how much the target depends on one parent (Janzing, Balduzzi,
Grosse-Wentrup & Schölkopf, "Quantifying causal influences", Annals of Statistics 2013).

Removing the arrow ``X -> Y`` feeds ``Y``'s mechanism an independent copy ``X'`` of ``X``
drawn from its marginal, the other parents as they are. The strength compares the
target's conditional law before and after:

* ``measure="kl"`` (the paper's definition): ``E_pa KL(P(Y | pa) || P_cut(Y | pa))`` with
  ``P_cut(y | pa) = E_{X'} P(y | x', pa_rest)``; for ``Y = aX + ... + σN`` Gaussian it is
  ``½ log(1 + a² Var(X) / σ²)``;
* ``measure="variance"`` (DoWhy's default for continuous targets): the rise of the
  conditional variance, ``E_pa Var_cut(Y | pa) - E_pa Var(Y | pa)``; ``a² Var(X)`` in the
  linear case.

The parents' rows come from ``data`` or are simulated from the model; the mixture density
of the KL version is a mean over ``num_inner`` draws of ``X'`` (its log underestimates the
mixture by ``O(1/num_inner)``; a jackknife over the two halves of the draws removes that
term, leaving ``O(1/num_inner²)``).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import jax
import jax.numpy as jnp
from jax.scipy.special import logsumexp

from scm_ppl.attribution._common import check_positive, default_key, flat_target, replicate
from scm_ppl.attribution._results import Attribution, summarise
from scm_ppl.core.noise_simulation import Scm, as_scm, check_data, compiled
from scm_ppl.core.validate import check_method
from scm_ppl.errors import CriticismError, SettingsError

__all__ = ["arrow_strength"]

_MEASURES = ("variance", "kl")


def _log_prob(scm: Scm, values: list, g: dict, pa: dict, y: jax.Array, target: str, key: Any):
    """``log P(y | pa)`` per unit under the target's mechanism."""
    tr = scm.trace(values, y.shape[0], key, noise=g, condition={target: y}, intervene=pa)
    lp = tr[target]["fn"].log_prob(y)
    return jnp.reshape(lp, (y.shape[0], -1)).sum(axis=1)


def arrow_strength(
    model: Any,
    target: str,
    *,
    measure: str = "variance",
    data: Mapping[str, Any] | None = None,
    num_rows: int = 1024,
    num_inner: int = 128,
    num_replicates: int = 8,
    rng_key: jax.Array | None = None,
    plate: str | None = None,
    size_arg: str | None = None,
    model_kwargs: Mapping[str, Any] | None = None,
) -> Attribution:
    """The strength of each arrow into ``target``.

    Parameters
    ----------
    model
        A fitted SCM or a NumPyro program with fixed parameters (per-unit plate).
    target
        A per-unit scalar site with at least one parent.
    measure
        ``"variance"`` or ``"kl"`` (nats), see the module notes.
    data
        Rows of the parents (their joint law); default: ``num_rows`` rows simulated from the
        model in each replicate.
    num_rows, num_inner
        Rows of parents used per replicate, and draws of the cut parent (and of the
        target's noise) per row.
    num_replicates
        Independent replicates (one posterior draw of all mechanisms each for a Bayesian
        fit).
    rng_key, plate, size_arg, model_kwargs
        As for :func:`~scm_ppl.attribution.intrinsic_influence`.

    Returns
    -------
    Attribution
        ``estimate`` per parent of ``target``.

    Raises
    ------
    GraphError
        ``target`` is not a per-unit site.
    CriticismError
        ``target`` has no parents; a program without a per-unit plate.
    DataError
        ``data`` lacks a parent's column or holds NaN.

    Examples
    --------
    >>> import numpyro, numpyro.distributions as dist
    >>> def model(n):
    ...     with numpyro.plate("unit", n):
    ...         x = numpyro.sample("x", dist.Normal(0.0, 1.0))
    ...         numpyro.sample("y", dist.Normal(2.0 * x, 1.0))
    >>> round(arrow_strength(model, "y")["x"], 1)  # a² Var(X)
    4.0
    """
    check_method(measure, _MEASURES, what="measure")
    check_positive(num_rows=num_rows, num_inner=num_inner, num_replicates=num_replicates)
    if num_inner < 2:
        raise SettingsError(f"num_inner must be at least 2; got {num_inner}.")
    scm = as_scm(model, plate=plate, size_arg=size_arg, model_kwargs=model_kwargs)
    target = scm.check_target(target)
    parents = tuple(scm.parents(target))
    if not parents:
        raise CriticismError(f"Target '{target}' has no parents: it has no arrows to measure.")
    rows = None if data is None else check_data(data, list(parents), scm=scm)
    key = default_key(rng_key)
    static = (target, measure, num_rows, num_inner, num_replicates, rows is None)

    def make() -> Any:
        m, k = num_rows, num_inner

        def pick_rows(values: list, key: jax.Array, g: dict, table: Any) -> dict:
            if table is None:
                sim = scm.simulate(values, scm.unit_noise(values, m, key, g), g)
                return {p: sim[p] for p in parents}
            count = next(iter(table.values())).shape[0]
            idx = jax.random.randint(key, (m,), 0, count)
            return {p: table[p][idx] for p in parents}

        def variance(values: list, g: dict, pa: dict, key: jax.Array) -> Any:
            k_idx, k_noise = jax.random.split(key)
            rep = {p: jnp.repeat(v, k, axis=0) for p, v in pa.items()}
            idx = jax.random.randint(k_idx, (m * k,), 0, m)
            noise = scm.unit_noise(values, m * k, k_noise, g)
            own = {target: noise[target]} if target in noise else {}

            def spread(parents_: dict) -> Any:
                tr = scm.trace(values, m * k, k_noise, noise={**g, **own}, intervene=parents_)
                y = flat_target(tr[target]["value"]).reshape(m, k)
                return jnp.mean(jnp.var(y, axis=1, ddof=1))

            base = spread(rep)
            return jnp.stack([spread({**rep, p: pa[p][idx]}) - base for p in parents])

        def kl(values: list, g: dict, pa: dict, key: jax.Array) -> Any:
            k_y, k_idx, k_lp = jax.random.split(key, 3)
            tr = scm.trace(values, m, k_y, noise=g, intervene=pa)
            y = tr[target]["value"]
            full = _log_prob(scm, values, g, pa, y, target, k_lp)
            rep = {p: jnp.repeat(v, k, axis=0) for p, v in pa.items()}
            y_rep = jnp.repeat(y, k, axis=0)
            idx = jax.random.randint(k_idx, (m * k,), 0, m)
            out = []
            for p in parents:
                lp = _log_prob(scm, values, g, {**rep, p: pa[p][idx]}, y_rep, target, k_lp)
                lp = lp.reshape(m, k)
                # log of a mean of k densities is biased down by c / k: the jackknife over
                # the two halves removes that term (2 f_k - mean of the f_{k/2}).
                h = k // 2
                halves = logsumexp(lp[:, :h], axis=1) + logsumexp(lp[:, h : 2 * h], axis=1)
                cut = 2 * (logsumexp(lp, axis=1) - jnp.log(k)) - 0.5 * halves + jnp.log(h)
                out.append(jnp.mean(full - cut))
            return jnp.stack(out)

        def run(values: list, table: Any, key: jax.Array) -> Any:
            def kernel(key: jax.Array) -> Any:
                kg, kr, km = jax.random.split(key, 3)
                g = scm.global_noise(values, kg)
                pa = pick_rows(values, kr, g, table)
                fn = variance if measure == "variance" else kl
                return fn(values, g, pa, km)

            return replicate(kernel, key, num_replicates)

        return run

    run = compiled("arrow_strength", scm, static, make)
    table = None if rows is None else {p: jnp.asarray(v) for p, v in rows.items()}
    per_rep = run(scm.values, table, key)
    return summarise(
        per_rep,
        jnp.zeros_like(per_rep),
        bayesian=scm.bayesian,
        kind="arrow_strength",
        target=target,
        nodes=parents,
        measure=measure,
        attrs={
            "edges": scm.edges([*parents, target]),
            "num_rows": num_rows,
            "num_inner": num_inner,
            "num_replicates": num_replicates,
        },
    )
