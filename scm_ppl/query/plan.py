"""Everything a query checks and decides before anything compiles: one :class:`QueryPlan`.

``counterfactual``, ``interventional``, their sweeps and ``dose_response`` differ in what
they ask, not in how a question is validated: the key, the settings, the program's
record, the evidence, the worlds and their interventions, the abduction method and why,
identification, the latent sites, and how the work is chunked. :func:`plan_query` does
all of it once, for every entry point, and hands the engine a frozen plan
(:func:`scm_ppl.query.engine.run_query` takes nothing else).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import jax
import networkx as nx

from scm_ppl.core.cache import LRUCache
from scm_ppl.core.frames import as_columns, site_levels
from scm_ppl.core.handlers import do
from scm_ppl.core.intervention import Intervention, as_intervention, as_interventions
from scm_ppl.core.prng import as_query_key
from scm_ppl.core.program import (
    ProgramInfo,
    as_kwargs,
    check_evidence,
    check_finite,
    check_interventions,
    inspect_program,
)
from scm_ppl.core.validate import check_method, check_prng_key, positive_int
from scm_ppl.errors import InterventionError
from scm_ppl.query._compiled import Sweep, UnitChunks
from scm_ppl.query.abduction import (
    METHODS,
    choose_method,
    couplings_used,
    require_noise_views,
)
from scm_ppl.query.grid import contains_sweep, split_sweep
from scm_ppl.query.identification import check_counterfactual_identified, check_identified
from scm_ppl.query.per_unit import per_unit_or_joint
from scm_ppl.query.scaling import check_chunk_size, plan_chunks, unit_plate
from scm_ppl.query.worlds import NOISE_PREFIX, check_world_labels

__all__ = ["InferenceSettings", "QueryPlan", "plan_query", "site_dims"]

SWEPT_WORLD = "cf"  # the label of the one world a sweep runs in


@dataclass(frozen=True)
class InferenceSettings:
    """How abduction runs when it needs inference."""

    num_samples: int = 1000
    num_warmup: int = 500
    num_chains: int = 1
    svi_steps: int = 2000
    svi_learning_rate: float = 0.01


@dataclass(frozen=True)
class QueryPlan:
    """A validated query and every choice made for it.

    ``worlds`` are the counterfactual worlds (label → interventions) that replay the
    factual world's noise; ``factual`` intervenes in the factual (evidence) world itself,
    as ``interventional`` does. ``latent`` are the sample sites abduction infers (or
    draws from their prior when they are not upstream of the evidence). ``determined``:
    every noise term is fixed by the evidence, so one draw is the exact answer.
    """

    model: Callable
    args: tuple
    kwargs: dict[str, Any]
    info: ProgramInfo
    rng_key: jax.Array
    evidence: dict[str, Any]
    worlds: dict[str, dict[str, Intervention]]
    masks: dict[str, dict[str, Any]]
    factual: dict[str, Intervention]
    factual_mask: Mapping[str, Any] | None
    method: str
    method_reason: str
    identification: dict[str, Any]
    latent: tuple[str, ...]
    settings: InferenceSettings
    determined: bool
    extra: frozenset[str]
    sweep: Sweep | None = None
    grid: jax.Array | None = None
    units: UnitChunks | None = None
    draws_per_pass: int | None = None
    label: str = "cf"  # an interventional run's label (its ``intervention`` coordinate)
    enumerate_all: bool = False  # method "enumerate": one draw per configuration, not sampled

    @property
    def sample_evidence(self) -> dict[str, Any]:
        """Evidence on sample sites (deterministic evidence is checked, not conditioned on)."""
        return {k: v for k, v in self.evidence.items() if self.info.sites[k].kind == "sample"}

    @property
    def sites(self) -> tuple[str, ...]:
        return tuple(self.info.sites)

    @property
    def chains(self) -> int:
        chained = ("nuts", "per_unit_nuts", "nuts+enumerate")
        return self.settings.num_chains if self.method in chained else 1

    @property
    def num_draws(self) -> int:
        """Draws per chain: one when the answer is determined."""
        return 1 if self.determined else self.settings.num_samples

    @property
    def couplings(self) -> dict[str, Any]:
        """The couplings that the worlds' answers rest on (discrete mechanisms)."""
        kinds = tuple(
            (w, tuple((s, iv.kind) for s, iv in ivs.items())) for w, ivs in self.worlds.items()
        )
        return dict(
            self.info.remember(("couplings", kinds), lambda: couplings_used(self.info, self.worlds))
        )


def plan_query(
    model: Callable,
    evidence: Mapping[str, Any] | None,
    interventions: Any,
    *,
    kind: str,
    rng_key: Any,
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
    reduce_to: str | None = None,
    observed: Any = None,
) -> list[QueryPlan]:
    """Validate a query and plan it: one plan per run.

    ``kind`` is ``"counterfactual"`` (evidence in the factual world, interventions in
    counterfactual worlds that share its noise; a :func:`~scm_ppl.sweep` runs its grid in
    one world), or ``"interventional"`` (interventions in the evidence world itself; each
    labelled intervention is its own run, so its own plan). ``reduce_to`` names the
    outcome a sweep's compiled call averages to (:func:`~scm_ppl.dose_response`).
    ``observed`` names sites the user has data on, beyond the evidence (identification).
    """
    check_method(method, METHODS)
    key = as_query_key(check_prng_key(rng_key))  # same numbers, drawn sooner on CPU
    settings = InferenceSettings(
        num_samples=positive_int("num_samples", num_samples),
        num_warmup=positive_int("num_warmup", num_warmup),
        num_chains=positive_int("num_chains", num_chains),
        svi_steps=positive_int("svi_steps", svi_steps),
    )
    check_chunk_size(chunk_size)
    args, kwargs = tuple(model_args), as_kwargs(model_kwargs)
    # A DataFrame: one row per unit; labels coded as the program's mechanisms were fitted.
    evidence = as_columns(evidence, what="evidence", levels=site_levels(model))
    info = inspect_program(model, args, kwargs)
    common = {"model": model, "args": args, "kwargs": kwargs, "info": info}
    if kind == "interventional":
        # {} is the program's own (observational) draws: P(V | do()) = P(V), on purpose.
        return _interventional_plans(evidence, interventions, key, method, mask, settings,
                                     strict, common, observed)  # fmt: skip
    if isinstance(interventions, Mapping) and not interventions:
        # An empty mapping is almost always a dropped argument, and its answer (the factual
        # world replayed) would pass for a counterfactual silently.
        raise InterventionError(
            "counterfactual(..., interventions={}) intervenes on nothing, so its world is the "
            "factual one. Give {site: value} for the counterfactual world, or "
            "interventions=None to ask for the factual world replayed on purpose."
        )
    ev = check_evidence(info, evidence, finite=False)
    swept = split_sweep(interventions) if contains_sweep(interventions) else None
    if swept is None:
        worlds = worlds_from(interventions, "cf")
    else:
        site, grid, fixed = swept
        worlds = {SWEPT_WORLD: {**as_interventions(fixed), site: Intervention("hard", grid.values)}}
    masks: dict[str, dict[str, Any]] = {}
    if mask is not None:
        if len(worlds) != 1:
            raise InterventionError("mask= applies to one world; give one interventions mapping.")
        masks = {next(iter(worlds)): dict(mask) if isinstance(mask, Mapping) else mask}
    for label, ivs in worlds.items():
        checked = dict(ivs)
        if swept is not None:  # each value of the grid is checked as the hard intervention it is
            checked[swept[0]] = Intervention("hard", swept[1].values[0])
        check_interventions(info, checked, masks.get(label))
    require_noise_views(info)
    chosen, reason = choose_method(info, ev, method)
    if chosen in ("nuts", "svi", "per_unit", "per_unit_nuts", "nuts+enumerate"):
        check_finite(ev)  # before inference on bad evidence
    if chosen in ("per_unit", "per_unit_nuts") or (chosen == "nuts" and method == "auto"):
        chosen, reason = per_unit_or_joint(common, ev, _latent(info, ev), key, chosen, reason)
    treatment = {site for ivs in worlds.values() for site in ivs}
    identification = check_identified(info, treatment, ev, strict=strict, observed=observed)
    identification["counterfactual_identification"] = check_counterfactual_identified(
        info, worlds, ev, strict=strict, observed=observed,
        warn=identification["identified"],  # one warning per query: the first says enough
    )  # fmt: skip
    latent = _latent(info, ev)
    fresh = any(iv.kind == "stochastic" for ivs in worlds.values() for iv in ivs.values())
    determined = chosen == "exact" and not latent and not fresh
    chains = settings.num_chains if chosen in ("nuts", "per_unit_nuts", "nuts+enumerate") else 1
    total = (1 if determined else settings.num_samples) * chains
    units, draws_per_pass, sweep, grid = None, None, None, None
    if swept is None:
        units, draws_per_pass = plan_chunks(info, chunk_size, total, determined, masks)
    else:
        grid = swept[1].values
        found = unit_plate(info)
        rows_per_value = total * (found[1] if found else 1)
        per_pass = _values_per_pass(chunk_size, rows_per_value, grid.shape[0])
        sweep = Sweep(SWEPT_WORLD, swept[0], per_pass, reduce_to=reduce_to)
    plan = QueryPlan(
        **common, rng_key=key, evidence=ev, worlds=worlds, masks=masks, factual={},
        factual_mask=None, method=chosen, method_reason=reason, identification=identification,
        latent=latent, settings=settings, determined=determined,
        extra=frozenset() if reduce_to else _noise_sites(info, latent), sweep=sweep, grid=grid,
        units=units, draws_per_pass=draws_per_pass,
    )  # fmt: skip
    return [plan]


def _interventional_plans(evidence, interventions, key, method, mask, settings, strict, common,
                          observed=None):  # fmt: skip
    info: ProgramInfo = common["info"]
    if contains_sweep(interventions):
        raise InterventionError("Plan a sweep as kind='counterfactual' (its own world).")
    worlds = worlds_from(interventions, "do")
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
        identification[label] = check_identified(info, set(ivs), ev, strict=strict,
                                                 observed=observed)  # fmt: skip
    plans = []
    keys = jax.random.split(key, len(worlds))
    for run_key, (label, ivs) in zip(keys, worlds.items(), strict=True):
        if ev:
            # The evidence lives in the intervened world: abduction reads that program.
            sub_info = inspect_program(do(common["model"], ivs, mask=mask), common["args"],
                                       common["kwargs"])  # fmt: skip
            chosen, reason = choose_method(sub_info, ev, method)
            latent = _latent(sub_info, ev)
        else:
            chosen, reason, latent = "forward", "no evidence: draws of the intervened program", ()
        plans.append(
            QueryPlan(
                **common,
                rng_key=run_key,
                evidence=ev,
                worlds={},
                masks={},
                factual=ivs,
                factual_mask=mask,
                method=chosen,
                method_reason=reason,
                identification=identification[label],
                latent=latent,
                settings=settings,
                determined=False,
                extra=frozenset(),
                label=label,
            )
        )
    return plans


def _latent(info: ProgramInfo, evidence: Mapping[str, Any]) -> tuple[str, ...]:
    sample_ev = {k for k in evidence if info.sites[k].kind == "sample"}
    observed = sample_ev | {n for n, s in info.sites.items() if s.observed}
    return tuple(n for n in info.sample_sites() if n not in observed)


def _noise_sites(info: ProgramInfo, latent: tuple[str, ...]) -> frozenset[str]:
    return frozenset([*latent, *(f"{NOISE_PREFIX}.{n}" for n in info.sample_sites())])


def _values_per_pass(chunk_size: int | None, rows_per_value: int, num_values: int) -> int | None:
    if chunk_size is None:
        return None
    per_pass = max(1, int(chunk_size) // rows_per_value)
    return per_pass if per_pass < num_values else None


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


def worlds_from(interventions: Any, default_label: str) -> dict[str, dict[str, Intervention]]:
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


def site_dims(info: ProgramInfo, name: str, shape: tuple[int, ...]) -> list[str]:
    """Dim names of a site's values (or its noise's, ``noise.<site>``): its plates'
    names, then ``<name>_event_<i>``."""
    # Worked out once per (site, shape), in one slot of the record's cache (a slot per
    # site could push compiled queries out): every read of a result's group asks again.
    known: dict = info.remember("site dims", dict)
    dims = known.get((name, shape))
    if dims is None:
        dims = known[(name, shape)] = _site_dims(info, name, shape)
    return list(dims)


def _site_dims(info: ProgramInfo, name: str, shape: tuple[int, ...]) -> tuple[str, ...]:
    base = name.split(".", 1)[1] if name.startswith(f"{NOISE_PREFIX}.") else name
    site = info.sites.get(base)
    batch = list(site.batch_dims) if site is not None else []
    dims = [d or f"{name}_axis_{i}" for i, d in enumerate(batch[: len(shape)])]
    return (*dims, *(f"{name}_event_{i}" for i in range(len(shape) - len(dims))))


def graph_json(g: nx.DiGraph) -> dict[str, Any]:
    return {"nodes": list(g.nodes), "edges": [list(e) for e in g.edges]}
