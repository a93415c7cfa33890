"""One identification rule for every query: the ADMG that :func:`scm_ppl.identify` uses.

**The rule.** A site is *observed* when the program observes it (``obs=``), when the
query gives evidence on it, when the query intervenes on it, or when it is not an
exogenous root (endogenous sites are the variables a user measures). The remaining
sites, the unobserved exogenous sample sites, are *latent*: projected out, a latent root
with two or more children becomes a bidirected edge (the default of
:func:`scm_ppl.admg`). The rule is the same with and without evidence: a query without
evidence does not make a latent confounder observed.

The interventional part of a query, ``P(descendants of the treatment | do(treatment))``,
is then checked with the complete ID algorithm; a counterfactual query is also checked
with ID*/IDC* (:func:`scm_ppl.identify_counterfactual`). Not identified: warn with
:class:`~scm_ppl.errors.NotIdentifiableWarning` (its subclass
:class:`~scm_ppl.errors.CounterfactualNotIdentifiedWarning` for the counterfactual), or raise
:class:`~scm_ppl.errors.NotIdentifiableError` under ``strict``; the message names the
latent roots whose measurement would identify the query (mark them observed with
``observed=`` in :func:`scm_ppl.identify`, ``obs=`` in the program, or give them as
evidence).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any

import networkx as nx
import numpy as np

from scm_ppl.core.intervention import Intervention
from scm_ppl.core.program import ProgramInfo
from scm_ppl.core.warn import warn_at_caller
from scm_ppl.errors import (
    CounterfactualNotIdentifiedWarning,
    GraphError,
    NotIdentifiableError,
    NotIdentifiableWarning,
    ScmPplError,
)

__all__ = [
    "RULE",
    "check_counterfactual_identified",
    "check_identified",
    "latent_sites",
    "world_margins_only",
]

# A context variable, not a warnings filter: a filter is process-wide, so one thread's
# ETT would silence another thread's genuine counterfactual warning.
_MARGINS_ONLY: ContextVar[bool] = ContextVar("scm_ppl_world_margins_only", default=False)


@contextmanager
def world_margins_only() -> Iterator[None]:
    """Within it, counterfactual queries are read one world's margin at a time (ETT, ATE
    over rows): the ID* verdict on the joint of the worlds is recorded in ``attrs`` but
    not warned about, since the estimate never reads that joint."""
    token = _MARGINS_ONLY.set(True)
    try:
        yield
    finally:
        _MARGINS_ONLY.reset(token)


RULE = (
    "observed: sites observed in the program, evidence, observed=, intervened sites and every "
    "endogenous site; latent: the other exogenous sample sites (latent roots with two or "
    "more children are bidirected edges), with or without evidence, as in scm_ppl.identify"
)


def latent_sites(info: ProgramInfo, seen: set[str], observed: Any = None) -> list[str]:
    """The sites the rule takes as latent: unobserved exogenous sample sites not in
    ``seen`` nor in the user's ``observed`` (checked: unknown names raise)."""
    g = info.graph
    extra = [observed] if isinstance(observed, str) else list(observed or ())
    unknown = sorted(str(n) for n in extra if n not in g)
    if unknown:
        raise GraphError(
            f"observed= names {unknown}, which are not sites of the program; its sites are "
            f"{sorted(g)}."
        )
    seen = seen | set(extra)
    return sorted(
        n
        for n, a in g.nodes(data=True)
        if a.get("role") == "exogenous" and not a.get("observed") and n not in seen
    )


def check_identified(
    info: ProgramInfo, treatment: set[str], evidence: Any, *, strict: bool, observed: Any = None
) -> dict[str, Any]:
    """Is ``P(descendants of treatment | do(treatment))`` identified on the program's ADMG?

    The ADMG is the one :func:`scm_ppl.identify` reads (see the module docstring), the
    same with or without evidence. Sites not downstream of the treatment are unaffected
    by it, so the question is the effect on its descendants. Not identified: warn, or
    raise under ``strict``. Returns JSON-ready metadata: the verdict, the sites taken as
    observed and as latent, and the rule that chose them.
    """
    seen = set(evidence or ()) | set(treatment)
    latent = latent_sites(info, seen, observed)
    observed = sorted(n for n in info.graph if n not in latent)
    meta: dict[str, Any] = {"observed": observed, "latent": latent, "observed_rule": RULE}
    if not latent:  # nothing hidden: the graph is its own ADMG, with no bidirected edge
        return {"identified": True, **meta}
    key = ("identified", frozenset(treatment), frozenset(latent))
    identified, result, outcome, roots = info.remember(
        key, lambda: _identify(info, treatment, latent)
    )
    if identified:
        extra = {} if result is None else {"estimand": result}
        return {"identified": True, **extra, **meta}
    hint = (
        f" If you measured {roots}, pass observed={roots} (to this query or to "
        "scm_ppl.identify; obs= in the program or evidence also count): the query is "
        "identified then."
        if roots
        else ""
    )
    message = (
        f"{outcome} is not identified from observational data on the program's ADMG "
        f"(latent {latent}; {result}): the answer rests on the program's parametric "
        f"assumptions; scm_ppl.bounds gives the range the data allow.{hint} Pass "
        "strict=True to make this an error."
    )
    if strict:
        raise NotIdentifiableError(message)
    warn_at_caller(message, NotIdentifiableWarning)
    return {"identified": False, "hedge": result, "identified_if_observed": roots, **meta}


def _identify(info: ProgramInfo, treatment: set[str], latent: list[str]) -> tuple:
    """(identified, estimand or hedge text, query text, roots that would identify it)."""
    from scm_ppl.graphical.id_algorithm import identify, roots_that_identify
    from scm_ppl.graphical.mixed_graph import admg

    projected = admg(info.graph, latent=latent)
    outcome = set().union(*(nx.descendants(projected.directed, t) for t in treatment)) - treatment
    if not projected.bidirected or not outcome or not treatment:
        return True, None, None, []
    result = identify(projected, sorted(treatment), sorted(outcome))
    if result.identifiable:
        return True, str(result.estimand), result.query, []
    roots = roots_that_identify(info.graph, latent, sorted(treatment), sorted(outcome))
    return False, str(result.hedge), result.query, roots


def check_counterfactual_identified(
    info: ProgramInfo,
    worlds: Mapping[str, Mapping[str, Intervention]],
    evidence: Mapping[str, Any],
    *,
    strict: bool,
    observed: Any = None,
    warn: bool = True,
) -> dict[str, Any]:
    """Is the counterfactual query identified from the graph alone (ID*/IDC*)?

    The query is the joint of every world's descendants of its interventions, given the
    evidence in the factual world, on the ADMG of the rule above. Values are coded per
    site: equal scalar values share a code, per-unit values and outcomes get codes of
    their own, so the verdict is the one for values that differ (units whose values
    coincide can only be easier). Identified: the answer does not rest on the program's
    functional form beyond its graph. Not identified: recorded, a
    :class:`~scm_ppl.errors.CounterfactualNotIdentifiedWarning` (unless ``warn`` is False:
    the caller has already warned that the interventional part is not identified), and an
    error under ``strict``; each points to :func:`scm_ppl.bounds`. Only hard interventions are
    checked; other worlds are recorded as not checked.
    """
    soft = sorted(s for ivs in worlds.values() for s, iv in ivs.items() if iv.kind != "hard")
    if soft:
        return {"checked": False, "reason": f"ID* covers hard interventions; {soft} are not"}
    treatment = {s for ivs in worlds.values() for s in ivs}
    latent = latent_sites(info, set(evidence) | treatment, observed)
    codes = _Codes()
    # The verdict depends on the query's structure and coded values only: work it out
    # once per record (the projection and ID* cost a millisecond; a query, much less).
    set_to = [{s: codes(s, iv.value) for s, iv in ivs.items()} for ivs in worlds.values()]
    given_codes = {s: codes(s, v) for s, v in evidence.items()}
    key = (
        "cf identified",
        tuple(tuple(sorted(w.items())) for w in set_to),
        tuple(sorted(given_codes.items())),
        frozenset(latent),
    )

    def verdict() -> Any:
        from scm_ppl.graphical.counterfactual_id import identify_counterfactual
        from scm_ppl.graphical.mixed_graph import admg

        g = admg(info.graph, latent=latent)
        query = []
        for world in set_to:
            outcome = set().union(*(nx.descendants(g.directed, s) for s in world)) - set(world)
            query.append((world, {s: codes(s, None) for s in sorted(outcome)}))
        given = [({}, given_codes)] if given_codes else None
        return identify_counterfactual(g, query, given)

    try:
        r = info.remember(key, verdict)
    except ScmPplError as error:  # e.g. evidence that contradicts an intervention's world
        return {"checked": False, "reason": str(error)}
    meta = {
        "checked": True,
        "query": r.query,
        "identified": r.identifiable,
        "codes": f"integer values as given; codes >= {_Codes.FRESH} stand for outcomes and "
        "for per-unit or non-integer values, each equal to no other value",
    }
    if r.identifiable:
        return {
            **meta,
            "estimand": str(r),
            "note": "identified from the graph: the answer does not rest on the "
            "program's functional form beyond its graph",
        }
    message = (
        f"The counterfactual {r.query} (values >= {_Codes.FRESH} stand for values equal to "
        f"no other) is not identified from the program's graph by ID*/IDC* ({r.witness}): "
        "the answer rests on the program's functional form. scm_ppl.bounds gives the "
        "range that the data allow."
    )
    if strict:
        raise NotIdentifiableError(message)
    if _MARGINS_ONLY.get():
        return {**meta, "witness": str(r.witness), "read": "each world's margin only"}
    if warn:
        warn_at_caller(
            f"This counterfactual is not identified from the program's graph (ID*: "
            f"{r.witness}), so the answer rests on the program's mechanisms, not on the "
            "graph and the data alone; for discrete variables scm_ppl.bounds gives the "
            "range the data allow. attrs['counterfactual_identification'] has the details; "
            "strict=True makes this an error; warnings.filterwarnings('ignore', category="
            "scm_ppl.errors.CounterfactualNotIdentifiedWarning) silences it.",
            CounterfactualNotIdentifiedWarning,
        )
    return {**meta, "witness": str(r.witness), "see": "scm_ppl.bounds"}


class _Codes:
    """Integer codes per site: a scalar integer value is its own code; every other value
    (per-unit, continuous, the outcomes) gets a fresh code from ``FRESH`` up, so it equals
    nothing else."""

    FRESH = 1000

    def __init__(self) -> None:
        self.seen: dict[str, dict[Any, int]] = {}

    def __call__(self, site: str, value: Any) -> int:
        table = self.seen.setdefault(site, {})
        # Only a scalar can be its own code: per-unit arrays are never read (they may be
        # large, on a device, or sharded over processes), just given a fresh code.
        scalar = value is not None and not callable(value) and np.ndim(value) == 0
        array = np.asarray(value) if scalar else None
        if array is not None and array.dtype.kind in "biuf":
            number = float(array)
            if number.is_integer() and 0 <= number < self.FRESH:
                return int(number)
            key: Any = number
        else:
            key = object()  # never equal to another value
        return table.setdefault(key, self.FRESH + len(table))
