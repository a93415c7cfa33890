"""Rung two and three: ``interventional`` and ``counterfactual`` queries.

``counterfactual`` is abduction–action–prediction:

1. **abduction** — the posterior over each mechanism's noise given the evidence: by
   exact inversion when every sample site that is an ancestor of the evidence is
   observed and invertible (``"exact"``); with the noise of non-invertible (discrete)
   mechanisms drawn from the set their value allows under a named coupling
   (``"coupling"``); otherwise by NUTS (or SVI) over the latent sites, then inversion per
   draw (``"nuts"``, ``"svi"``);
2. **action** — :class:`~scm_ppl.handlers.do` in each counterfactual world;
3. **prediction** — the worlds replay the abducted noise, vectorised over draws and
   units in one compiled pass (:mod:`scm_ppl.engine`).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import jax
import networkx as nx
import numpy as np

from scm_ppl._cache import LRUCache
from scm_ppl.abduction import (
    check_identified,
    choose_method,
    couplings_used,
    require_noise_views,
)
from scm_ppl.engine import InferenceSettings, run_query
from scm_ppl.errors import EvidenceError, InterventionError
from scm_ppl.handlers import do
from scm_ppl.intervention import Intervention, as_intervention, as_interventions, describe
from scm_ppl.prng import as_query_key
from scm_ppl.program import (
    ProgramInfo,
    as_kwargs,
    check_evidence,
    check_finite,
    check_interventions,
    inspect_program,
)
from scm_ppl.results import CausalResult
from scm_ppl.scaling import plan_chunks
from scm_ppl.worlds import NOISE_PREFIX, check_world_labels

__all__ = ["counterfactual", "interventional"]


def _check_key(rng_key: Any) -> jax.Array:
    if isinstance(rng_key, jax.Array) and (
        jax.dtypes.issubdtype(rng_key.dtype, jax.dtypes.prng_key)
        or (rng_key.shape == (2,) and rng_key.dtype == np.uint32)
    ):
        return as_query_key(rng_key)  # same numbers, drawn sooner on CPU
    raise TypeError(
        f"rng_key must be a JAX PRNG key such as jax.random.key(0); got {type(rng_key).__name__}."
    )


_SCALARS = LRUCache(1024)


def _classified(interventions: Any) -> dict[str, Intervention]:
    """:func:`as_interventions`, with plain Python numbers classified once: checking and
    moving ``1.0`` to the device again on every call of a small query costs more than
    the query's arithmetic."""
    if not isinstance(interventions, Mapping) or not all(
        isinstance(k, str) and type(v) in (float, int, bool) for k, v in interventions.items()
    ):
        return as_interventions(interventions)
    out = {}
    for site, value in interventions.items():
        key = (site, type(value), repr(value))  # repr tells -0.0 from 0.0
        iv = _SCALARS.get(key)
        out[site] = iv if iv is not None else _SCALARS.put(key, as_intervention(site, value))
    return out


_COUPLINGS = LRUCache(256)


def _couplings(info: ProgramInfo, worlds: Mapping[str, Mapping[str, Intervention]]) -> dict:
    """:func:`couplings_used`, once per program and worlds' sites and kinds (all it
    reads), rather than a walk of the graph per intervened site on every call."""
    key = (
        id(info),
        tuple((w, tuple((s, iv.kind) for s, iv in ivs.items())) for w, ivs in worlds.items()),
    )
    hit = _COUPLINGS.get(key)
    if hit is None or hit[0] is not info:  # the id of an evicted program may be reused
        hit = _COUPLINGS.put(key, (info, couplings_used(info, worlds)))
    return dict(hit[1])


def _worlds_from(interventions: Any, default_label: str) -> dict[str, dict[str, Intervention]]:
    """``{site: value}`` is one world; ``{label: {site: value}}`` several."""
    if interventions is None:
        return {default_label: {}}
    if not isinstance(interventions, Mapping):
        raise InterventionError(
            "Interventions must be a mapping {site: value}, or {label: {site: value}} for "
            f"several at once; got {type(interventions).__name__}."
        )
    if interventions and all(isinstance(v, Mapping) for v in interventions.values()):
        check_world_labels(interventions)
        return {label: _classified(iv) for label, iv in interventions.items()}
    return {default_label: _classified(interventions)}


def _settings_positive(**values: int) -> None:
    for name, value in values.items():
        if not isinstance(value, (int, np.integer)) or isinstance(value, bool) or value < 1:
            raise ValueError(f"{name} must be a positive integer; got {value!r}.")


def _dims(info: ProgramInfo, name: str, shape: tuple[int, ...]) -> list[str]:
    base = name.split(".", 1)[1] if name.startswith(f"{NOISE_PREFIX}.") else name
    site = info.sites.get(base)
    batch = list(site.batch_dims) if site is not None else []
    dims = [d or f"{name}_axis_{i}" for i, d in enumerate(batch[: len(shape)])]
    return dims + [f"{name}_event_{i}" for i in range(len(shape) - len(dims))]


def _graph_json(g: nx.DiGraph) -> dict[str, Any]:
    return {"nodes": list(g.nodes), "edges": [list(e) for e in g.edges]}


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
        ``"auto"`` (default), ``"exact"``, ``"coupling"``, ``"nuts"`` or ``"svi"``; the
        method used and why are in ``result.attrs``.
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
    chunk_size
        The most draw × unit rows one compiled pass holds (``None``: all at once); bounds
        memory for large queries (see :mod:`scm_ppl.scaling`). An exact answer runs
        ``chunk_size`` units at a time; a sampled one ``chunk_size // units`` draws at a
        time, each draw keeping its own key, so chunking never changes the answer.
    bounds
        For a discrete program with hard interventions and evidence shared by all units:
        ``True`` (the program's own observational distribution, from forward draws) or an
        observed distribution (rows or an ``xarray.DataArray``, as for
        :func:`~scm_ppl.bounds`) puts in ``attrs["bounds"]`` the range of
        ``P(site_world = value | evidence)`` over every SCM on the ADMG that fits it.
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
    from scm_ppl.batched import contains_sweep, counterfactual_sweep

    if contains_sweep(interventions):
        return counterfactual_sweep(
            model, evidence, interventions, rng_key=rng_key, method=method, mask=mask,
            num_samples=num_samples, num_warmup=num_warmup, num_chains=num_chains,
            svi_steps=svi_steps, strict=strict, chunk_size=chunk_size, model_args=model_args,
            model_kwargs=model_kwargs,
        )  # fmt: skip
    rng_key = _check_key(rng_key)
    _settings_positive(
        num_samples=num_samples, num_warmup=num_warmup, num_chains=num_chains, svi_steps=svi_steps
    )
    kwargs = as_kwargs(model_kwargs)
    info = inspect_program(model, tuple(model_args), kwargs)
    ev = check_evidence(info, evidence, finite=False)
    worlds = _worlds_from(interventions, "cf")
    masks = {}
    if mask is not None:
        if len(worlds) != 1:
            raise InterventionError("mask= applies to one world; give one interventions mapping.")
        masks = {next(iter(worlds)): dict(mask) if isinstance(mask, Mapping) else mask}
    for label, ivs in worlds.items():
        check_interventions(info, ivs, masks.get(label))
    require_noise_views(info)
    bound_attrs = {}
    if bounds is not False:
        from scm_ppl._bounds_counterfactual import counterfactual_bounds

        bound_attrs["bounds"] = counterfactual_bounds(
            model, ev, worlds, bounds, rng_key=rng_key, model_args=model_args, model_kwargs=kwargs
        )
    method, reason = choose_method(info, ev, method)
    if method in ("nuts", "svi"):  # before inference spends its time on bad evidence
        check_finite(ev)
    treatment = {site for ivs in worlds.values() for site in ivs}
    identification = check_identified(info, treatment, ev, strict=strict)
    sample_ev = {k: v for k, v in ev.items() if info.sites[k].kind == "sample"}
    observed = set(sample_ev) | {n for n, s in info.sites.items() if s.observed}
    latent = [n for n in info.sample_sites() if n not in observed]
    fresh = any(iv.kind == "stochastic" for ivs in worlds.values() for iv in ivs.values())
    determined = method == "exact" and not latent and not fresh
    extra = frozenset(latent + [f"{NOISE_PREFIX}.{n}" for n in info.sample_sites()])
    settings = InferenceSettings(num_samples, num_warmup, num_chains, svi_steps)
    num_draws = 1 if determined else num_samples * (num_chains if method == "nuts" else 1)
    units, draws_per_pass = plan_chunks(info, chunk_size, num_draws, determined, masks)
    draws = run_query(
        model,
        args=tuple(model_args),
        kwargs=kwargs,
        evidence=sample_ev,
        worlds=worlds,
        masks=masks,
        method=method,
        num_draws=1 if determined else num_samples,
        settings=settings,
        latent_sites=latent,
        sites=tuple(info.sites),
        extra=extra,
        rng_key=rng_key,
        units=units,
        draws_per_pass=draws_per_pass,
        defer_check=True,
    )
    predictions = draws.worlds
    labels = ["factual", *worlds]
    posterior = draws.other
    groups = {"posterior": posterior, "observed_data": ev, "predictions": predictions}
    dims = {
        "posterior": lambda name, shape: _dims(info, name, shape),
        "observed_data": lambda name, shape: _dims(info, name, shape),
        "predictions": lambda name, shape: ["world", *_dims(info, name, shape[1:])],
    }
    couplings = _couplings(info, worlds)
    attrs = {
        "query": "counterfactual",
        "method": method,
        "method_reason": reason,
        "couplings": couplings,
        "worlds": labels,
        "interventions": {label: describe(ivs) for label, ivs in worlds.items()},
        "evidence_sites": sorted(ev),
        "graph": _graph_json(info.graph),
        "exact": determined,
        **identification,
        **draws.diagnostics,
        **bound_attrs,
    }
    result = CausalResult(groups, dims, {"world": labels}, attrs, worlds=draws.by_world)
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
    from scm_ppl.batched import contains_sweep, interventional_sweep

    if contains_sweep(interventions):
        return interventional_sweep(
            model, interventions, rng_key=rng_key, num_samples=num_samples, evidence=evidence,
            method=method, mask=mask, strict=strict, model_args=model_args,
            model_kwargs=model_kwargs,
        )  # fmt: skip
    rng_key = _check_key(rng_key)
    _settings_positive(num_samples=num_samples, num_warmup=num_warmup, num_chains=num_chains)
    kwargs = as_kwargs(model_kwargs)
    info = inspect_program(model, tuple(model_args), kwargs)
    worlds = _worlds_from(interventions, "do")
    if mask is not None and len(worlds) != 1:
        raise InterventionError("mask= applies to one intervention; give one mapping.")
    for ivs in worlds.values():
        check_interventions(info, ivs, mask)
    ev = check_evidence(info, evidence)
    for label, ivs in worlds.items():
        clash = sorted(set(ivs) & set(ev))
        if clash:
            raise InterventionError(
                f"Site(s) {clash} are both intervened on and given as evidence in the same "
                f"world{'' if label == 'do' else f' ({label!r})'}: an intervened value is set, "
                "not observed. Drop them from the evidence, or ask a counterfactual question "
                "(evidence in the factual world) with scm_ppl.counterfactual."
            )
    identification = {}
    for label, ivs in worlds.items():  # a loop, not a comprehension: warnings name the caller
        identification[label] = check_identified(info, set(ivs), ev, strict=strict)
    settings = InferenceSettings(num_samples, num_warmup, num_chains, svi_steps)
    per_label, methods, diagnostics = {}, {}, {}
    keys = jax.random.split(rng_key, len(worlds))
    for key, (label, ivs) in zip(keys, worlds.items(), strict=True):
        if ev:
            sub_info = inspect_program(do(model, ivs, mask=mask), tuple(model_args), kwargs)
            chosen, _ = choose_method(sub_info, ev, method)
            observed = set(ev) | {n for n, s in sub_info.sites.items() if s.observed}
            latent = [n for n in sub_info.sample_sites() if n not in observed]
        else:
            chosen, latent = "forward", []
        draws = run_query(
            model,
            args=tuple(model_args),
            kwargs=kwargs,
            evidence={k: v for k, v in ev.items() if info.sites[k].kind == "sample"},
            worlds={},
            masks={},
            method=chosen,
            num_draws=num_samples,
            settings=settings,
            latent_sites=latent,
            sites=tuple(info.sites),
            extra=frozenset(),
            rng_key=key,
            factual=ivs,
            factual_mask=mask,
        )
        per_label[label] = draws.worlds
        methods[label] = chosen
        diagnostics.update(draws.diagnostics)
    labels = list(worlds)
    predictions = {
        name: jax.numpy.concatenate([per_label[label][name] for label in labels], axis=2)
        if len(labels) > 1
        else per_label[labels[0]][name]
        for name in info.sites
    }
    groups: dict[str, dict[str, Any]] = {"predictions": predictions}
    dims = {
        "predictions": {
            k: ["intervention", *_dims(info, k, tuple(v.shape[3:]))] for k, v in predictions.items()
        },
        "observed_data": {k: _dims(info, k, tuple(v.shape)) for k, v in ev.items()},
    }
    if ev:
        groups["observed_data"] = dict(ev)
    attrs = {
        "query": "interventional",
        "method": methods[labels[0]] if len(set(methods.values())) == 1 else "mixed",
        "methods": methods,
        "interventions": {label: describe(ivs) for label, ivs in worlds.items()},
        "evidence_sites": sorted(ev),
        "graph": _graph_json(info.graph),
        "identification": identification,
        **diagnostics,
    }
    return CausalResult(groups, dims, {"intervention": labels}, attrs)
