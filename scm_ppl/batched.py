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

from scm_ppl.abduction import check_identified, choose_method, require_noise_views
from scm_ppl.counterfactual import _check_key, _dims, _graph_json, _settings_positive
from scm_ppl.engine import InferenceSettings, Sweep, run_query
from scm_ppl.errors import InterventionError
from scm_ppl.intervention import Intervention, as_interventions, describe
from scm_ppl.program import (
    as_kwargs,
    check_evidence,
    check_finite,
    check_interventions,
    inspect_program,
)
from scm_ppl.results import CausalResult
from scm_ppl.scaling import check_chunk_size, unit_plate
from scm_ppl.worlds import NOISE_PREFIX

__all__ = [
    "DoseResponse",
    "SweepValues",
    "contains_sweep",
    "counterfactual_sweep",
    "dose_response",
    "interventional_sweep",
    "sweep",
]

_LABEL = "cf"
_DEFAULT_ROWS_PER_PASS = 1 << 18  # dose_response: 1 MB per float32 site per pass (cache-sized)


class SweepValues(NamedTuple):
    """A grid of hard intervention values for one site; ``values[i]`` is the ``i``-th."""

    values: jax.Array


def sweep(values: Any) -> SweepValues:
    """Mark an array as a grid of intervention values, one query per leading index.

    Parameters
    ----------
    values
        Shape ``(num_values, *value_shape)``; each ``values[i]`` must broadcast to the
        site's shape (a scalar per value for the usual dose grid).

    Examples
    --------
    >>> import jax, numpy as np, numpyro, numpyro.distributions as dist
    >>> from scm_ppl import counterfactual
    >>> def model():
    ...     x = numpyro.sample("x", dist.Normal(0.0, 1.0))
    ...     numpyro.sample("y", dist.Normal(2.0 * x, 1.0))
    >>> grid = np.array([0.0, 1.0, 2.0])
    >>> cf = counterfactual(model, {"x": 0.5, "y": 1.5}, {"x": sweep(grid)},
    ...                     rng_key=jax.random.key(0))
    >>> [round(float(y), 3) for y in cf.samples["predictions"]["y"][0, 0]]
    [0.5, 2.5, 4.5]
    """
    if isinstance(values, SweepValues):
        return values
    try:
        array = np.asarray(values)
    except Exception as err:  # ragged lists fail in many ways
        raise InterventionError(f"A sweep takes an array of values; {err}.") from err
    if array.dtype == object or not np.issubdtype(array.dtype, np.number):
        raise InterventionError(
            f"A sweep takes numbers, shaped (num_values, ...); got dtype {array.dtype}."
        )
    if array.ndim == 0 or array.shape[0] == 0:
        raise InterventionError(
            f"A sweep needs a leading axis of at least one value; got shape {array.shape}. "
            "For one value, pass it without sweep()."
        )
    if np.issubdtype(array.dtype, np.inexact) and not np.all(np.isfinite(array)):
        raise InterventionError("A sweep holds NaN/inf values; every value must be finite.")
    return SweepValues(jnp.asarray(array))


def contains_sweep(interventions: Any) -> bool:
    """Whether ``{site: value}`` or ``{label: {site: value}}`` holds a :func:`sweep`."""
    if not isinstance(interventions, Mapping):
        return False
    for value in interventions.values():
        if isinstance(value, SweepValues):
            return True
        if isinstance(value, Mapping) and any(isinstance(v, SweepValues) for v in value.values()):
            return True
    return False


def _split_sweep(interventions: Mapping[str, Any]) -> tuple[str, SweepValues, dict[str, Any]]:
    if any(isinstance(v, Mapping) for v in interventions.values()):
        raise InterventionError(
            "A sweep applies to one counterfactual world: give {site: sweep(values), ...}, "
            "not several labelled worlds."
        )
    swept = [name for name, v in interventions.items() if isinstance(v, SweepValues)]
    if len(swept) != 1:
        raise InterventionError(
            f"One site can be swept per query; got sweeps on {swept}. Stack the grids "
            "into one site's values, or run one query per swept site."
        )
    fixed = {name: v for name, v in interventions.items() if name != swept[0]}
    return swept[0], interventions[swept[0]], fixed


def _prepare(
    model: Callable,
    evidence: Mapping[str, Any] | None,
    interventions: Mapping[str, Any],
    *,
    rng_key: Any,
    method: str,
    mask: Mapping[str, Any] | None,
    settings: InferenceSettings,
    strict: bool,
    model_args: tuple,
    model_kwargs: Mapping[str, Any] | None,
) -> dict[str, Any]:
    """Validate a sweep query and work out its plan (shared by the two entry points)."""
    rng_key = _check_key(rng_key)
    _settings_positive(
        num_samples=settings.num_samples,
        num_warmup=settings.num_warmup,
        num_chains=settings.num_chains,
        svi_steps=settings.svi_steps,
    )
    if not isinstance(interventions, Mapping):
        raise InterventionError(
            f"Interventions must be a mapping {{site: value}}; got {type(interventions).__name__}."
        )
    site, grid, fixed = _split_sweep(interventions)
    kwargs = as_kwargs(model_kwargs)
    info = inspect_program(model, tuple(model_args), kwargs)
    ev = check_evidence(info, evidence, finite=False)
    ivs = as_interventions(fixed)
    # Each value of the grid is checked as the hard intervention it will be.
    check_interventions(info, {**ivs, site: Intervention("hard", grid.values[0])}, mask)
    ivs[site] = Intervention("hard", grid.values)
    require_noise_views(info)
    method, reason = choose_method(info, ev, method)
    if method in ("nuts", "svi"):
        check_finite(ev)
    identification = check_identified(info, set(ivs), ev, strict=strict)
    sample_ev = {k: v for k, v in ev.items() if info.sites[k].kind == "sample"}
    observed = set(sample_ev) | {n for n, s in info.sites.items() if s.observed}
    latent = [n for n in info.sample_sites() if n not in observed]
    determined = method == "exact" and not latent
    chains = settings.num_chains if method == "nuts" else 1
    num_draws = 1 if determined else settings.num_samples * chains
    found = unit_plate(info)
    return {
        "rng_key": rng_key,
        "site": site,
        "grid": grid.values,
        "ivs": ivs,
        "info": info,
        "evidence": ev,
        "sample_ev": sample_ev,
        "method": method,
        "reason": reason,
        "identification": identification,
        "latent": latent,
        "determined": determined,
        "rows_per_value": num_draws * (found[1] if found else 1),
        "kwargs": kwargs,
    }


def _values_per_pass(chunk_size: int | None, rows_per_value: int, num_values: int) -> int | None:
    check_chunk_size(chunk_size)
    if chunk_size is None:
        return None
    per_pass = max(1, int(chunk_size) // rows_per_value)
    return per_pass if per_pass < num_values else None


def _run(plan: dict[str, Any], model, mask, settings, model_args, sweep_spec: Sweep, extra):
    info = plan["info"]
    return run_query(
        model,
        args=tuple(model_args),
        kwargs=plan["kwargs"],
        evidence=plan["sample_ev"],
        worlds={_LABEL: plan["ivs"]},
        masks={_LABEL: dict(mask)} if mask else {},
        method=plan["method"],
        num_draws=1 if plan["determined"] else settings.num_samples,
        settings=settings,
        latent_sites=plan["latent"],
        sites=tuple(info.sites),
        extra=extra,
        rng_key=plan["rng_key"],
        sweep=sweep_spec,
    )


def _coords(grid: jax.Array) -> list[Any]:
    return np.asarray(grid).tolist() if grid.ndim == 1 else list(range(grid.shape[0]))


def counterfactual_sweep(
    model: Callable,
    evidence: Mapping[str, Any] | None,
    interventions: Mapping[str, Any],
    *,
    rng_key: jax.Array,
    method: str = "auto",
    mask: Mapping[str, Any] | None = None,
    num_samples: int = 1000,
    num_warmup: int = 500,
    num_chains: int = 1,
    svi_steps: int = 2000,
    strict: bool = False,
    chunk_size: int | None = None,
    model_args: tuple = (),
    model_kwargs: Mapping[str, Any] | None = None,
) -> CausalResult:
    """:func:`~scm_ppl.counterfactual` with a :func:`sweep`: every value in one call.

    ``predictions`` hold the counterfactual world only, dims ``chain, draw,
    intervention, ...`` (coordinates: the values, or their index for non-scalar
    values); the factual world is ``observed_data`` plus the latent sites and noise in
    ``posterior``. ``chunk_size`` bounds the draw × unit × value rows one pass holds.
    """
    settings = InferenceSettings(num_samples, num_warmup, num_chains, svi_steps)
    plan = _prepare(
        model, evidence, interventions, rng_key=rng_key, method=method, mask=mask,
        settings=settings, strict=strict, model_args=model_args, model_kwargs=model_kwargs,
    )  # fmt: skip
    info, grid = plan["info"], plan["grid"]
    per_pass = _values_per_pass(chunk_size, plan["rows_per_value"], grid.shape[0])
    extra = frozenset(plan["latent"] + [f"{NOISE_PREFIX}.{n}" for n in info.sample_sites()])
    draws = _run(
        plan, model, mask, settings, model_args, Sweep(_LABEL, plan["site"], per_pass), extra
    )
    ev = plan["evidence"]
    groups = {"posterior": draws.other, "observed_data": ev, "predictions": draws.worlds}
    dims = {
        "posterior": lambda name, shape: _dims(info, name, shape),
        "observed_data": {k: _dims(info, k, tuple(v.shape)) for k, v in ev.items()},
        "predictions": lambda name, shape: ["intervention", *_dims(info, name, shape[1:])],
    }
    attrs = {
        "query": "counterfactual_sweep",
        "method": plan["method"],
        "method_reason": plan["reason"],
        "swept_site": plan["site"],
        "interventions": {
            _LABEL: describe({k: v for k, v in plan["ivs"].items() if k != plan["site"]})
        },
        "evidence_sites": sorted(ev),
        "graph": _graph_json(info.graph),
        "exact": plan["determined"],
        "values_per_pass": per_pass or int(grid.shape[0]),
        **plan["identification"],
        **draws.diagnostics,
    }
    return CausalResult(groups, dims, {"intervention": _coords(grid)}, attrs, worlds=draws.by_world)


def interventional_sweep(
    model: Callable,
    interventions: Mapping[str, Any],
    *,
    rng_key: jax.Array,
    num_samples: int = 1000,
    evidence: Mapping[str, Any] | None = None,
    method: str = "auto",
    mask: Mapping[str, Any] | None = None,
    strict: bool = False,
    chunk_size: int | None = None,
    model_args: tuple = (),
    model_kwargs: Mapping[str, Any] | None = None,
) -> CausalResult:
    """:func:`~scm_ppl.interventional` with a :func:`sweep`: ``P(V | do(site := v))``
    for every ``v``, ``num_samples`` draws each, all values on the same noise draws."""
    if evidence:
        raise InterventionError(
            "A sweep in interventional() takes no evidence (abduction would run once per "
            "value); for evidence in the factual world use counterfactual() with the sweep."
        )
    result = counterfactual_sweep(
        model, None, interventions, rng_key=rng_key, method=method, mask=mask,
        num_samples=num_samples, strict=strict, chunk_size=chunk_size, model_args=model_args,
        model_kwargs=model_kwargs,
    )  # fmt: skip
    result.attrs["query"] = "interventional_sweep"
    return result


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
    settings = InferenceSettings(num_samples, num_warmup, num_chains, svi_steps)
    plan = _prepare(
        model, evidence, {**fixed, site: sweep(values)}, rng_key=rng_key, method=method,
        mask=None, settings=settings, strict=strict, model_args=model_args,
        model_kwargs=model_kwargs,
    )  # fmt: skip
    info, grid = plan["info"], plan["grid"]
    if not isinstance(outcome, str) or outcome not in info.sites:
        raise InterventionError(
            f"Unknown outcome site {outcome!r}; the program has sites {info.names()}."
        )
    per_pass = _values_per_pass(chunk_size, plan["rows_per_value"], grid.shape[0])
    spec = Sweep(_LABEL, site, per_pass, reduce_to=outcome)
    draws = _run(plan, model, None, settings, model_args, spec, frozenset())
    per_draw = draws.by_world[_LABEL][outcome]
    attrs = {
        "query": "dose_response",
        "counterfactual": bool(plan["evidence"]),
        "method": plan["method"],
        "method_reason": plan["reason"],
        "site": site,
        "outcome": outcome,
        "values_per_pass": per_pass or int(grid.shape[0]),
        **plan["identification"],
        **draws.diagnostics,
    }
    return DoseResponse(grid, _mean_over_draws(per_draw), per_draw, attrs)


@jax.jit
def _mean_over_draws(per_draw: jax.Array) -> jax.Array:
    return jnp.mean(per_draw, axis=(0, 1))
