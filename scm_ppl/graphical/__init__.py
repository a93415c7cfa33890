"""Graphical identification: ADMGs and latent projection, the complete ID/IDC algorithms,
back-door and front-door adjustment, symbolic estimands and their evaluation on tables and
samples.

It reads programs through :mod:`scm_ppl.core` only (never through queries), so every
query can ask it whether its answer is identified.
"""

from scm_ppl.graphical.adjustment import (
    AdjustmentFormula,
    backdoor_sets,
    find_adjustment,
    frontdoor_sets,
    is_adjustment_set,
    is_backdoor_set,
    is_frontdoor_set,
)
from scm_ppl.graphical.counterfactual_id import (
    CounterfactualIdentification,
    CounterfactualWitness,
    identify_counterfactual,
)
from scm_ppl.graphical.id_algorithm import Hedge, IdentificationResult, identify
from scm_ppl.graphical.joint import DiscreteJoint
from scm_ppl.graphical.mixed_graph import ADMG, admg, latent_projection

__all__ = [
    "ADMG",
    "AdjustmentFormula",
    "CounterfactualIdentification",
    "CounterfactualWitness",
    "DiscreteJoint",
    "Hedge",
    "IdentificationResult",
    "admg",
    "backdoor_sets",
    "find_adjustment",
    "frontdoor_sets",
    "identify",
    "identify_counterfactual",
    "is_adjustment_set",
    "is_backdoor_set",
    "is_frontdoor_set",
    "latent_projection",
]
