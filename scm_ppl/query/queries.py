"""Rung two and three: ``interventional`` and ``counterfactual`` queries.

``counterfactual`` is abduction–action–prediction:

1. **abduction** — the posterior over each mechanism's noise given the evidence: by
   exact inversion when every sample site that is an ancestor of the evidence is
   observed and invertible (``"exact"``); with the noise of non-invertible (discrete)
   mechanisms drawn from the set their value allows under a named coupling
   (``"coupling"``); otherwise by NUTS (or SVI) over the latent sites, then inversion per
   draw (``"nuts"``, ``"svi"``);
2. **action** — :class:`~scm_ppl.core.handlers.do` in each counterfactual world;
3. **prediction** — the worlds replay the abducted noise, vectorised over draws and
   units in one compiled pass (:mod:`scm_ppl.query.engine`).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import jax
import numpy as np

from scm_ppl.core.intervention import describe
from scm_ppl.core.program import ProgramInfo
from scm_ppl.errors import EvidenceError, InterventionError
from scm_ppl.query.engine import run_query
from scm_ppl.query.grid import contains_sweep
from scm_ppl.query.hooks import counterfactual_bounds
from scm_ppl.query.plan import graph_json, plan_query, site_dims
from scm_ppl.query.results import CausalResult
from scm_ppl.query.sweeps import sweep_result

__all__ = ["counterfactual", "interventional"]


def counterfactual(
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
    bounds: Any = False,
    model_args: tuple = (),
    model_kwargs: Mapping[str, Any] | None = None,
    observed: Sequence[str] | None = None,
) -> CausalResult:
    """The counterfactual posterior: what would have happened, given what did.

    Parameters
    ----------
    model
        A NumPyro program; its sample sites are mechanisms with their own noise.
    evidence
        ``{site: observed values}``, per unit (shaped like the site) or broadcast.
    interventions
        ``{site: value}`` for one counterfactual world ``"cf"``, or
        ``{label: {site: value}}`` for several. Values as in :class:`~scm_ppl.do`; a
        :func:`~scm_ppl.sweep` of values answers for every value of a grid in one
        compiled call (``predictions`` then carry an ``intervention`` dim).
    rng_key
        A JAX PRNG key.
    method
        ``"auto"`` (default), ``"exact"``, ``"coupling"``, ``"nuts"``, ``"svi"``,
        ``"per_unit"`` (each unit's Gaussian posterior in closed form; ``"auto"`` takes it
        where the check in :mod:`scm_ppl.query.per_unit` passes), ``"per_unit_nuts"`` (one
        NUTS chain per unit, vectorised over units, where the units' latents separate but
        their posterior is not Gaussian; ``"auto"`` takes it where the check in
        :mod:`scm_ppl.query.per_unit_nuts` passes, for 32 to 300 units),
        ``"enumerate"`` (finite discrete latent causes: their joint support enumerated per
        unit, exact posterior weights, draws from it; evidence on deterministic sites is
        then ordinary evidence;
        exact sums in :func:`~scm_ppl.query.enumerated_counterfactual`) or
        ``"nuts+enumerate"`` (discrete latents summed out inside NUTS over the continuous
        ones); ``"auto"`` picks these when the latent sites upstream of the evidence are
        discrete. The method used and why are in ``result.attrs``.
    mask
        ``{site: boolean array}`` to intervene on some units only (one world).
    num_samples, num_warmup, num_chains, svi_steps
        Inference settings when abduction needs inference; ``num_samples`` is also the
        number of draws when the answer is random but needs no inference. When every
        mechanism inverts and all noise is determined, the answer is one exact draw.
    strict
        Raise :class:`~scm_ppl.NotIdentifiableError` instead of warning with
        :class:`~scm_ppl.NotIdentifiableWarning` when the interventional part of the
        query is not identified from observational data on the program's ADMG. (A
        counterfactual also rests on the mechanisms' functional form and, for discrete
        mechanisms, on the couplings named in ``attrs``.)
        Identification is judged on the ADMG that :func:`~scm_ppl.identify` reads, with
        or without evidence: sites observed in the program, evidence, intervened and
        endogenous sites are observed; the other exogenous sample sites are latent (one
        with two or more children is a latent confounder). ``attrs["identification"]``
        lists the sites taken as observed and as latent and the rule; the warning names
        the latent roots whose measurement would identify the query.
        The counterfactual itself is checked with ID*/IDC*
        (:func:`~scm_ppl.identify_counterfactual`, hard interventions):
        ``attrs["counterfactual_identification"]`` says whether it is identified from the
        graph alone; one that is not warns with
        :class:`~scm_ppl.errors.CounterfactualNotIdentifiedWarning` (a subclass of
        :class:`~scm_ppl.NotIdentifiableWarning`, to filter on its own: most
        counterfactuals with evidence on an outcome are not identified, and the answer is
        then the program's), or under ``strict`` raises, each pointing to
        :func:`~scm_ppl.bounds`.
    chunk_size
        The most draw × unit rows one compiled pass holds (``None``: all at once); bounds
        memory for large queries (see :mod:`scm_ppl.query.scaling`). An exact answer runs
        ``chunk_size`` units at a time; a sampled one ``chunk_size // units`` draws at a
        time, each draw keeping its own key, so chunking never changes the answer.
    bounds
        For a discrete program with hard interventions and evidence shared by all units:
        ``True`` (the program's own observational distribution, from forward draws) or an
        observed distribution (rows or an ``xarray.DataArray``, as for
        :func:`~scm_ppl.bounds`) puts in ``attrs["bounds"]`` the range of
        ``P(site_world = value | evidence)`` over every SCM on the ADMG that fits it.
    observed
        Sites you have data on besides the evidence (e.g. a measured root confounder):
        identification treats them as observed instead of latent.
    model_args, model_kwargs
        Arguments of the program (e.g. ``{"n": 1000}`` to size its unit plate).

    Returns
    -------
    CausalResult
        ``predictions`` holds every site in every world (dims ``chain, draw, world,
        ...``; the first world is ``"factual"``); ``posterior`` holds latent sites and the
        abducted noise ``"noise.<site>"``.

    Examples
    --------
    >>> import jax, numpyro, numpyro.distributions as dist
    >>> def model():
    ...     x = numpyro.sample("x", dist.Normal(0.0, 1.0))
    ...     numpyro.sample("y", dist.Normal(2.0 * x, 1.0))
    >>> cf = counterfactual(model, {"x": 0.5, "y": 1.5}, {"x": 1.0}, rng_key=jax.random.key(0))
    >>> cf.method, float(cf.samples["predictions"]["y"][0, 0, 1])
    ('exact', 2.5)
    """
    plan = plan_query(
        model, evidence, interventions, kind="counterfactual", rng_key=rng_key, method=method,
        mask=mask, num_samples=num_samples, num_warmup=num_warmup, num_chains=num_chains,
        svi_steps=svi_steps, strict=strict, chunk_size=chunk_size, model_args=model_args,
        model_kwargs=model_kwargs, observed=observed,
    )[0]  # fmt: skip
    if plan.sweep is not None:
        return sweep_result(plan, run_query(plan))
    bound_attrs = {}
    if bounds is not False:
        bound_attrs["bounds"] = counterfactual_bounds(
            model, plan.evidence, plan.worlds, bounds, rng_key=plan.rng_key,
            model_args=plan.args, model_kwargs=plan.kwargs,
        )  # fmt: skip
    draws = run_query(plan, defer_check=True)
    info, ev, worlds = plan.info, plan.evidence, plan.worlds
    predictions = draws.worlds
    labels = ["factual", *worlds]
    posterior = draws.other
    groups = {"posterior": posterior, "observed_data": ev, "predictions": predictions}
    dims = {
        "posterior": lambda name, shape: site_dims(info, name, shape),
        "observed_data": lambda name, shape: site_dims(info, name, shape),
        "predictions": lambda name, shape: ["world", *site_dims(info, name, shape[1:])],
    }
    attrs = {
        "query": "counterfactual",
        "method": plan.method,
        "method_reason": plan.method_reason,
        "couplings": plan.couplings,
        "worlds": labels,
        "interventions": {label: describe(ivs) for label, ivs in worlds.items()},
        "evidence_sites": sorted(ev),
        "graph": graph_json(info.graph),
        "exact": plan.determined,
        **plan.identification,
        **draws.diagnostics,
        **bound_attrs,
    }
    result = CausalResult(
        groups=groups, dims=dims, coords={"world": labels}, attrs=attrs, worlds=draws.by_world,
        stacked=("predictions", "world", labels),
    )  # fmt: skip
    # Built while the compiled call runs; only now wait for its evidence check.
    draws.check()
    _check_deterministic_evidence(info, ev, draws.by_world["factual"])
    return result


def _check_deterministic_evidence(
    info: ProgramInfo, evidence: Mapping[str, Any], values: Mapping[str, Any]
) -> None:
    for name, observed in evidence.items():
        if info.sites[name].kind != "deterministic":
            continue
        gap = float(np.max(np.abs(np.asarray(values[name]) - np.asarray(observed))))
        scale = 1e-4 * (1.0 + float(np.max(np.abs(np.asarray(observed)))))
        if not gap <= scale:
            raise EvidenceError(
                f"Evidence for deterministic site '{name}' disagrees with its mechanism by up "
                f"to {gap:.3g}: a noise-free mechanism's value is fixed by its parents. Drop "
                "it from the evidence or model the site with noise."
            )


def interventional(
    model: Callable,
    interventions: Mapping[str, Any],
    *,
    rng_key: jax.Array,
    num_samples: int = 1000,
    evidence: Mapping[str, Any] | None = None,
    method: str = "auto",
    mask: Mapping[str, Any] | None = None,
    num_warmup: int = 500,
    num_chains: int = 1,
    svi_steps: int = 2000,
    strict: bool = False,
    model_args: tuple = (),
    model_kwargs: Mapping[str, Any] | None = None,
    observed: Sequence[str] | None = None,
) -> CausalResult:
    """Samples of the program under intervention: ``P(V | do(...))``, optionally given
    evidence in the intervened world, ``P(V | do(...), evidence)``.

    Parameters
    ----------
    interventions
        ``{site: value}``, or ``{label: {site: value}}`` for several interventions side by
        side (the ``intervention`` dim of ``predictions``); a :func:`~scm_ppl.sweep` of
        values runs a whole grid in one compiled call, every value on the same noise.
    num_samples
        Number of draws (each draw runs every unit of the program's plates).
    evidence
        Optional observations *in the intervened world*; abduction then runs as in
        :func:`counterfactual` (the method used is in ``attrs``).
    strict
        Raise :class:`~scm_ppl.NotIdentifiableError` instead of warning with
        :class:`~scm_ppl.NotIdentifiableWarning` when ``P(. | do(...))`` is not identified
        from observational data on the program's ADMG (unobserved exogenous sites shared
        by several mechanisms are latent confounders).
        Identification is judged on the ADMG that :func:`~scm_ppl.identify` reads, with
        or without evidence: sites observed in the program, evidence, intervened and
        endogenous sites are observed; the other exogenous sample sites are latent (one
        with two or more children is a latent confounder). ``attrs["identification"]``
        lists the sites taken as observed and as latent and the rule; the warning names
        the latent roots whose measurement would identify the query.
    observed
        Sites you have data on besides the evidence (e.g. a measured root confounder):
        identification treats them as observed instead of latent.
    model_args, model_kwargs
        Arguments of the program.

    Returns
    -------
    CausalResult
        ``predictions`` with dims ``chain, draw, intervention, ...``.

    Examples
    --------
    >>> import jax, numpyro, numpyro.distributions as dist
    >>> def model():
    ...     x = numpyro.sample("x", dist.Normal(0.0, 1.0))
    ...     numpyro.sample("y", dist.Normal(2.0 * x, 1.0))
    >>> r = interventional(model, {"x": 1.0}, num_samples=4000, rng_key=jax.random.key(0))
    >>> round(float(r.samples["predictions"]["y"].mean()), 1)
    2.0
    """
    if contains_sweep(interventions):
        if evidence:
            raise InterventionError(
                "A sweep in interventional() takes no evidence (abduction would run once per "
                "value); for evidence in the factual world use counterfactual() with the sweep."
            )
        plan = plan_query(
            model, None, interventions, kind="counterfactual", rng_key=rng_key, method=method,
            mask=mask, num_samples=num_samples, strict=strict, model_args=model_args,
            model_kwargs=model_kwargs, observed=observed,
        )[0]  # fmt: skip
        return sweep_result(plan, run_query(plan), query="interventional_sweep")
    plans = plan_query(
        model, evidence, interventions, kind="interventional", rng_key=rng_key, method=method,
        mask=mask, num_samples=num_samples, num_warmup=num_warmup, num_chains=num_chains,
        svi_steps=svi_steps, strict=strict, model_args=model_args, model_kwargs=model_kwargs,
        observed=observed,
    )  # fmt: skip
    per_label, by_label, methods, diagnostics = {}, {}, {}, {}
    for plan in plans:
        draws = run_query(plan)
        per_label[plan.label] = draws.worlds
        by_label[plan.label] = draws.by_world["factual"]
        methods[plan.label] = plan.method
        diagnostics.update(draws.diagnostics)
    labels = [plan.label for plan in plans]
    info, ev = plans[0].info, plans[0].evidence
    predictions = {
        name: jax.numpy.concatenate([per_label[label][name] for label in labels], axis=2)
        if len(labels) > 1
        else per_label[labels[0]][name]
        for name in info.sites
    }
    groups: dict[str, dict[str, Any]] = {"predictions": predictions}
    dims = {
        "predictions": {
            k: ["intervention", *site_dims(info, k, tuple(v.shape[3:]))]
            for k, v in predictions.items()
        },
        "observed_data": {k: site_dims(info, k, tuple(v.shape)) for k, v in ev.items()},
    }
    if ev:
        groups["observed_data"] = dict(ev)
    attrs = {
        "query": "interventional",
        "method": methods[labels[0]] if len(set(methods.values())) == 1 else "mixed",
        "methods": methods,
        "interventions": {plan.label: describe(plan.factual) for plan in plans},
        "evidence_sites": sorted(ev),
        "graph": graph_json(info.graph),
        "identification": {plan.label: plan.identification for plan in plans},
        **diagnostics,
    }
    return CausalResult(
        groups=groups, dims=dims, coords={"intervention": labels}, attrs=attrs, worlds=by_label
    )
