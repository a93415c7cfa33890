"""Causal attribution: how much each arrow, noise term or mechanism contributes to a target.

* :func:`arrow_strength` — per parent, what removing the arrow does to the target
  (Janzing et al. 2013; ``measure="kl"`` or ``"variance"``);
* :func:`intrinsic_influence` — the Shapley share of the target's variance each node's
  own noise contributes (Janzing et al. 2024);
* :func:`anomaly` — per outlying unit, the Shapley share of its outlier score each node's
  noise takes (Budhathoki et al. ICML 2022);
* :func:`distribution_change` — the Shapley share of a change of the target's law each
  replaced mechanism takes (Budhathoki et al. AISTATS 2021).

Each takes a :class:`~scm_ppl.FittedSCM` or a NumPyro program with fixed parameters and
returns an :class:`Attribution` with uncertainty: posterior draws of all mechanisms at
once for a Bayesian fit, Monte-Carlo standard errors otherwise. Shapley values are exact
(every coalition, vectorised) up to 15 players, sampled with ``approximate=True``.
"""

from scm_ppl.attribution._results import Attribution
from scm_ppl.attribution.anomaly import anomaly
from scm_ppl.attribution.change import distribution_change, energy_distance
from scm_ppl.attribution.influence import intrinsic_influence
from scm_ppl.attribution.strength import arrow_strength

__all__ = [
    "Attribution",
    "anomaly",
    "arrow_strength",
    "distribution_change",
    "energy_distance",
    "intrinsic_influence",
]
