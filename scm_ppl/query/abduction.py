"""Abduction planning: which method recovers the noise for this evidence, and why.

The rule, from the program's graph alone: abduction is *exact* when every sample site
upstream of the evidence is observed and invertible (noise of sites not upstream of the
evidence keeps its prior); a *coupling* draw when some of those observed mechanisms are
discrete; *NUTS* (or SVI) when a latent sample site sits upstream of the evidence.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import networkx as nx

from scm_ppl.core.intervention import Intervention
from scm_ppl.core.program import ProgramInfo
from scm_ppl.core.validate import check_method
from scm_ppl.errors import (
    AbductionError,
    EvidenceError,
    NoiseViewError,
)

__all__ = [
    "METHODS",
    "choose_method",
    "couplings_used",
    "require_noise_views",
]

METHODS = (
    "auto",
    "exact",
    "coupling",
    "nuts",
    "svi",
    "per_unit",
    "per_unit_nuts",
    "enumerate",
    "nuts+enumerate",
)


def choose_method(info: ProgramInfo, evidence: Any, method: str = "auto") -> tuple[str, str]:
    """Pick the abduction method for evidence on a program, and say why.

    Returns
    -------
    (method, reason)
    """
    check_method(method, METHODS)
    if method in ("per_unit", "per_unit_nuts"):  # NUTS's graph rules; plan_query checks theirs
        return method, choose_method(info, evidence, "nuts")[1]
    key = ("abduction method", frozenset(evidence), method)
    return info.remember(key, lambda: _choose_method(info, set(evidence), method))


def _choose_method(info: ProgramInfo, evidence: set[str], method: str) -> tuple[str, str]:
    observed = {n for n, s in info.sites.items() if s.kind == "sample" and s.observed} | evidence
    latent = [n for n in info.sample_sites() if n not in observed]
    relevant = info.ancestors(evidence) | evidence
    # Sites drawn from a Bayesian fit's posterior already hold the data: they are drawn
    # as they are, never conditioned again on one unit's evidence.
    from_fit = [n for n in latent if n in relevant and info.sites[n].fit_posterior]
    latent_ancestors = [n for n in latent if n in relevant and n not in from_fit]
    _refuse_latent_rows(info, latent_ancestors, evidence)
    stuck = [n for n in sorted(evidence) if info.sites[n].kind == "deterministic"]
    stuck = [n for n in stuck if any(a in latent for a in info.ancestors([n]))]
    # Finite discrete latent causes are enumerated: deterministic evidence is then
    # ordinary evidence (a configuration that does not reproduce it has weight zero).
    enumerable = bool(latent_ancestors) and all(info.sites[n].discrete for n in latent_ancestors)
    mixed = any(info.sites[n].discrete for n in latent_ancestors) and not enumerable
    if method == "auto" and (enumerable or (mixed and not stuck)):
        method = "enumerate" if enumerable else "nuts+enumerate"
    if method in ("enumerate", "nuts+enumerate"):
        return _enumerate_choice(info, latent_ancestors, stuck, from_fit, method)
    if stuck:
        raise EvidenceError(
            f"Evidence on deterministic site(s) {stuck} cannot be used: they have unobserved "
            f"sample-site ancestors, and {method!r} abduction cannot condition on a noise-free "
            "mechanism. Use method='enumerate' (or 'auto') when those ancestors are finite "
            "discrete sites; otherwise model them as sample sites with (small) noise, or drop "
            "them from the evidence."
        )
    non_invertible = [
        n
        for n in info.sample_sites()
        if n in observed and n in relevant and not info.sites[n].invertible
    ]
    if method == "auto":
        method = "nuts" if latent_ancestors else ("coupling" if non_invertible else "exact")
    if method in ("exact", "coupling") and latent_ancestors:
        raise AbductionError(
            f"Abduction by {method!r} needs every sample site upstream of the evidence to be "
            f"observed, but {latent_ancestors} {'is' if len(latent_ancestors) == 1 else 'are'} "
            "latent; use method='nuts' (or 'svi') to infer them."
        )
    if method == "exact" and non_invertible:
        site = info.sites[non_invertible[0]]
        raise AbductionError(
            f"Exact abduction needs invertible mechanisms, but '{site.name}' "
            f"({site.distribution}) does not invert: its noise given its value is a set "
            f"(coupling: {site.coupling}). Use method='coupling' to draw the noise from that "
            "set, or method='nuts'."
        )
    if method == "svi" and not latent:
        raise AbductionError(
            "SVI has nothing to infer here: every sample site of the program is observed "
            "(evidence or obs=), so no guide can be built. Use method='auto' (it takes "
            "'exact' or 'coupling' for such evidence)."
        )
    if method in ("nuts", "svi"):
        draws = [n for n in from_fit if info.sites[n].distribution == "PosteriorDraws"]
        if draws:
            raise AbductionError(
                f"{method.upper()} abduction would have to move the weights {draws}, which "
                "hold a NUTS fit's posterior draws (no density to move them by), because the "
                f"latent site(s) {latent_ancestors or latent} are upstream of the evidence. "
                "Fit with method='svi' (a density over the weights), give evidence for the "
                "latent sites, or query the fit by its posterior mean."
            )
        discrete = [n for n in latent if info.sites[n].discrete]
        if discrete:
            raise AbductionError(
                f"{method.upper()} cannot infer the discrete latent site(s) {discrete}; use "
                "method='enumerate' when every latent site upstream of the evidence is finite "
                "discrete, give evidence for them, or make the program continuous in its "
                "latent sites."
            )
    reasons = {
        "exact": "every sample site upstream of the evidence is observed and invertible",
        "coupling": f"the noise of {non_invertible} is drawn from the set its value allows",
        "nuts": f"latent site(s) {latent_ancestors} are upstream of the evidence",
        "svi": f"latent site(s) {latent_ancestors} are upstream of the evidence (SVI asked for)",
    }
    if from_fit and method in ("exact", "coupling"):
        reasons[method] += (
            f"; the fit's posterior of {from_fit} is drawn as it is (one draw per sample), "
            "not updated by this evidence"
        )
    return method, reasons[method]


def _enumerate_choice(
    info: ProgramInfo,
    latent_ancestors: list[str],
    stuck: list[str],
    from_fit: list[str],
    method: str,
) -> tuple[str, str]:
    from scm_ppl.query.enumeration import enumerable_support
    from scm_ppl.query.scaling import unit_plate

    if not latent_ancestors:
        raise AbductionError(
            "Enumeration needs latent sites upstream of the evidence, but there are none: "
            "use method='exact' or 'coupling' (or 'auto')."
        )
    continuous = [n for n in latent_ancestors if not info.sites[n].discrete]
    discrete = [n for n in latent_ancestors if info.sites[n].discrete]
    if method == "nuts+enumerate":
        if not continuous or not discrete or stuck:
            raise AbductionError(
                "method='nuts+enumerate' needs both discrete and continuous latent sites "
                f"upstream of the evidence and no evidence on deterministic sites; here "
                f"discrete {discrete}, continuous {continuous}, deterministic evidence "
                f"{stuck}. Use method='enumerate' (all discrete) or 'nuts' (all continuous)."
            )
        size = enumerable_support(info, discrete, unit_plate(info))
        return method, (
            f"the discrete latent site(s) {discrete} are enumerated ({size} joint "
            f"configurations per unit) inside the density NUTS samples for the continuous "
            f"latent site(s) {continuous}; per draw the discrete ones are drawn from their "
            "exact conditional"
        )
    if continuous:
        raise AbductionError(
            f"Enumeration covers discrete latent sites only, but {continuous} upstream of "
            "the evidence are continuous; use method='nuts' for a continuous program, or "
            "give evidence for them."
        )
    if from_fit:
        raise AbductionError(
            f"Enumeration cannot move the fit's posterior sites {from_fit}; query the fit "
            "by its posterior mean or give evidence for the latent sites."
        )
    size = enumerable_support(info, latent_ancestors, unit_plate(info))
    reason = (
        f"the discrete latent site(s) {latent_ancestors} upstream of the evidence are "
        f"enumerated ({size} joint configurations per unit): the posterior weights are exact"
    )
    if stuck:
        reason += f"; evidence on the deterministic site(s) {stuck} is ordinary evidence"
    return "enumerate", reason


def _refuse_latent_rows(info: ProgramInfo, latent_ancestors: list[str], evidence: set[str]) -> None:
    """An empirical root (``roots="empirical"``) weighs a value a row holds by its mass and
    an unseen one by a density, and looks its later roots up by exact row values: no
    sampler that moves it through the reals (NUTS, SVI) infers it right. Its posterior
    matters only when it is upstream of the evidence; elsewhere it keeps its prior (the
    rows), which is drawn, not inferred."""
    rows = [n for n in latent_ancestors if info.sites[n].distribution == "EmpiricalRoot"]
    if rows:
        raise AbductionError(
            f"The empirical root(s) {rows} are latent but upstream of the evidence "
            f"{sorted(evidence)}: their law is the training rows (a mass on each row's "
            "value), which no abduction method here infers (NUTS or SVI would weigh a moving "
            "value by a density and lose its rows). Give evidence for them on every unit, "
            "drop the evidence downstream of them, or build the program with roots='model' "
            "(a fitted law with a density)."
        )


def require_noise_views(info: ProgramInfo) -> None:
    for site in info.sites.values():
        if site.noise_error:
            raise NoiseViewError(
                f"Site '{site.name}' has no noise view, so it cannot be shared across worlds. "
                + site.noise_error
            )


def couplings_used(info: ProgramInfo, worlds: Mapping[str, Mapping[str, Intervention]]) -> dict:
    """The couplings an answer rests on: those of non-invertible mechanisms whose value can
    change between worlds (downstream of an intervention, or shifted themselves). The
    others replay their factual value whatever noise is drawn for them."""
    changed: set[str] = set()
    for ivs in worlds.values():
        for name, iv in ivs.items():
            changed |= nx.descendants(info.graph, name)
            if iv.kind == "shift":
                changed.add(name)
    return {
        n: info.sites[n].coupling
        for n in info.sample_sites()
        if n in changed and not info.sites[n].invertible
    }
