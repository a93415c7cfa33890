"""Model criticism: does the model deserve trust?

* :func:`graph` — every independence the graph implies, tested (Holm-corrected), with a
  node-permutation baseline (Eulig et al. 2023);
* :func:`mechanisms` — per mechanism: held-out NLL against a marginal baseline, PIT
  calibration through the noise view, independence of the abducted noise from the
  parents, posterior predictive checks for Bayesian fits;
* :func:`interventions` — predicted against observed interventional distributions
  (energy distance, permutation p-value).
"""

from scm_ppl.check.graph_check import GraphCheck, ImpliedTest, graph, implied_independences
from scm_ppl.check.intervention_check import InterventionCheck, RegimeRow, interventions
from scm_ppl.check.mechanism_check import MechanismCheck, MechanismRow, mechanisms

__all__ = [
    "GraphCheck",
    "ImpliedTest",
    "InterventionCheck",
    "MechanismCheck",
    "MechanismRow",
    "RegimeRow",
    "graph",
    "implied_independences",
    "interventions",
    "mechanisms",
]
