"""Many what-ifs in one compiled call: a grid of intervention values, mapped inside JIT.

``counterfactual(model, evidence, {"X3": sweep(grid)}, ...)`` answers the counterfactual
for every value of ``grid`` at once: abduction runs once, and the prediction pass is
mapped over the values inside one compiled function (``jax.lax.map``, vectorised within
batches of values), not once per value. ``predictions`` carry an ``intervention`` dim
whose coordinates are the values. :func:`dose_response` reduces inside the same
compiled function, so only the mean outcome per value (per draw) ever leaves it, and
with ``chunk_size`` no more than a chunk of the full answer ever exists.

Every value sees the same abducted noise and the same random numbers (common random
numbers): curves are smooth in the value, and how the grid is chunked cannot change
them.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from scm_ppl.core.intervention import describe
from scm_ppl.errors import InterventionError
from scm_ppl.query.engine import Draws, run_query
from scm_ppl.query.grid import sweep
from scm_ppl.query.plan import SWEPT_WORLD, QueryPlan, graph_json, plan_query, site_dims
from scm_ppl.query.results import CausalResult

__all__ = ["DoseResponse", "dose_response", "sweep_result"]

_DEFAULT_ROWS_PER_PASS = 1 << 18  # dose_response: 1 MB per float32 site per pass (cache-sized)


def _coords(grid: jax.Array) -> list[Any]:
    return np.asarray(grid).tolist() if grid.ndim == 1 else list(range(grid.shape[0]))


def sweep_result(
    plan: QueryPlan, draws: Draws, query: str = "counterfactual_sweep"
) -> CausalResult:
    """The result of a swept query: ``predictions`` hold the swept world only, dims
    ``chain, draw, intervention, ...`` (coordinates: the values, or their index for
    non-scalar values); the factual world is ``observed_data`` plus the latent sites and
    noise in ``posterior``."""
    assert plan.sweep is not None and plan.grid is not None
    info, ev, grid, site = plan.info, plan.evidence, plan.grid, plan.sweep.site
    groups = {"posterior": draws.other, "observed_data": ev, "predictions": draws.worlds}
    dims = {
        "posterior": lambda name, shape: site_dims(info, name, shape),
        "observed_data": {k: site_dims(info, k, tuple(v.shape)) for k, v in ev.items()},
        "predictions": lambda name, shape: ["intervention", *site_dims(info, name, shape[1:])],
    }
    fixed = {k: v for k, v in plan.worlds[SWEPT_WORLD].items() if k != site}
    attrs = {
        "query": query,
        "method": plan.method,
        "method_reason": plan.method_reason,
        "swept_site": site,
        "interventions": {SWEPT_WORLD: describe(fixed)},
        "evidence_sites": sorted(ev),
        "graph": graph_json(info.graph),
        "exact": plan.determined,
        "values_per_pass": plan.sweep.values_per_pass or int(grid.shape[0]),
        **plan.identification,
        **draws.diagnostics,
    }
    coords = {"intervention": _coords(grid)}
    return CausalResult(groups=groups, dims=dims, coords=coords, attrs=attrs, worlds=draws.by_world)


class DoseResponse(NamedTuple):
    """The mean outcome per intervention value.

    Attributes
    ----------
    values
        The grid, ``(num_values, ...)``.
    mean
        ``(num_values,)``: the outcome averaged over units and draws.
    draws
        ``(chain, draw, num_values)``: the outcome averaged over units, per draw (its
        spread is the posterior uncertainty of the average; one draw when exact).
    attrs
        The method used and why, the sites, the values per compiled pass.

    Examples
    --------
    >>> import jax, numpy as np, numpyro, numpyro.distributions as dist
    >>> from scm_ppl import dose_response
    >>> def model(n=2):
    ...     with numpyro.plate("unit", n):
    ...         x = numpyro.sample("x", dist.Normal(0.0, 1.0))
    ...         numpyro.sample("y", dist.Normal(2.0 * x, 1.0))
    >>> dr = dose_response(model, {"x": np.zeros(2), "y": np.array([1.0, -1.0])}, "x",
    ...                    np.array([0.0, 1.0]), "y", rng_key=jax.random.key(0))
    >>> [round(float(m), 4) for m in dr.mean], dr.draws.shape  # exact: one draw
    ([0.0, 2.0], (1, 1, 2))
    """

    values: jax.Array
    mean: jax.Array
    draws: jax.Array
    attrs: dict[str, Any]


def dose_response(
    model: Callable,
    evidence: Mapping[str, Any] | None,
    site: str,
    values: Any,
    outcome: str,
    *,
    rng_key: jax.Array,
    interventions: Mapping[str, Any] | None = None,
    method: str = "auto",
    num_samples: int = 1000,
    num_warmup: int = 500,
    num_chains: int = 1,
    svi_steps: int = 2000,
    strict: bool = False,
    chunk_size: int | None = _DEFAULT_ROWS_PER_PASS,
    model_args: tuple = (),
    model_kwargs: Mapping[str, Any] | None = None,
) -> DoseResponse:
    """The mean ``outcome`` under ``do(site := v)`` for every ``v`` in ``values``.

    With evidence, the counterfactual dose–response of those units (abduction as in
    :func:`~scm_ppl.counterfactual`); with ``evidence=None``, the interventional one,
    ``E[outcome | do(site := v)]``, over ``num_samples`` draws of the units. The mean
    over units is taken inside the compiled call, ``chunk_size`` draw × unit × value rows
    at a time (default ``2**18``; ``None``: all values in one pass), so the full
    ``values × draws × units`` answer never exists.

    Parameters
    ----------
    site, values
        The intervened site and its grid, shaped ``(num_values, *value_shape)``.
    outcome
        The site whose mean is reported.
    interventions
        Further hard (or shift, stochastic) interventions held fixed across the grid.

    Examples
    --------
    >>> import jax, numpy as np, numpyro, numpyro.distributions as dist
    >>> def model(n=3):
    ...     with numpyro.plate("unit", n):
    ...         x = numpyro.sample("x", dist.Normal(0.0, 1.0))
    ...         numpyro.sample("y", dist.Normal(2.0 * x, 1.0))
    >>> data = {"x": np.array([0.0, 1.0, 2.0]), "y": np.array([0.5, 2.5, 3.5])}
    >>> dr = dose_response(model, data, "x", np.array([0.0, 1.0]), "y",
    ...                    rng_key=jax.random.key(0))
    >>> [round(float(m), 3) for m in dr.mean]  # 2 v + mean noise of y, (0.5 + 0.5 - 0.5) / 3
    [0.167, 2.167]
    """
    if not isinstance(site, str):
        raise InterventionError(f"site must be a site name (str); got {site!r}.")
    fixed = dict(interventions or {})
    if site in fixed:
        raise InterventionError(
            f"'{site}' is both swept and in interventions=; drop it from interventions."
        )
    plan = plan_query(
        model, evidence, {**fixed, site: sweep(values)}, kind="counterfactual", rng_key=rng_key,
        method=method, num_samples=num_samples, num_warmup=num_warmup, num_chains=num_chains,
        svi_steps=svi_steps, strict=strict, chunk_size=chunk_size, model_args=model_args,
        model_kwargs=model_kwargs, reduce_to=outcome,
    )[0]  # fmt: skip
    assert plan.sweep is not None and plan.grid is not None
    if not isinstance(outcome, str) or outcome not in plan.info.sites:
        raise InterventionError(
            f"Unknown outcome site {outcome!r}; the program has sites {plan.info.names()}."
        )
    draws = run_query(plan)
    per_draw = draws.by_world[SWEPT_WORLD][outcome]
    attrs = {
        "query": "dose_response",
        "counterfactual": bool(plan.evidence),
        "method": plan.method,
        "method_reason": plan.method_reason,
        "site": site,
        "outcome": outcome,
        "values_per_pass": plan.sweep.values_per_pass or int(plan.grid.shape[0]),
        **plan.identification,
        **draws.diagnostics,
    }
    return DoseResponse(
        values=plan.grid, mean=_mean_over_draws(per_draw), draws=per_draw, attrs=attrs
    )


@jax.jit
def _mean_over_draws(per_draw: jax.Array) -> jax.Array:
    return jnp.mean(per_draw, axis=(0, 1))
