"""How far do the data pin the mechanisms, and the answers on them, down?

The Fisher spectrum of a fit and its null directions, refit ensembles, posterior
contraction, and sharp bounds for discrete SCMs (:mod:`scm_ppl.howfar.bounds`).
"""

from scm_ppl.howfar.bounds import (
    Bounds,
    Conditional,
    ate_bounds,
    bounds,
    interventional_bounds,
    pn_bounds,
    pns_bounds,
    ps_bounds,
)
from scm_ppl.howfar.contraction import ContractionResult, contraction
from scm_ppl.howfar.fisher_report import (
    IdentifiabilityReport,
    intervened_mean,
    local_identifiability,
)
from scm_ppl.howfar.refits import RefitEnsemble, RefitSpread, refit_ensemble

__all__ = [
    "Bounds",
    "Conditional",
    "ContractionResult",
    "IdentifiabilityReport",
    "RefitEnsemble",
    "RefitSpread",
    "ate_bounds",
    "bounds",
    "contraction",
    "intervened_mean",
    "interventional_bounds",
    "local_identifiability",
    "pn_bounds",
    "pns_bounds",
    "ps_bounds",
    "refit_ensemble",
]
