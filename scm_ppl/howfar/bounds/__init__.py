"""Sharp bounds for discrete SCMs: the canonical (response-function) model of an ADMG and
a linear program over it, constrained by observational and experimental tables."""

from scm_ppl.howfar.bounds.counterfactual import counterfactual_bounds
from scm_ppl.howfar.bounds.queries import (
    ate_bounds,
    interventional_bounds,
    pn_bounds,
    pns_bounds,
    ps_bounds,
)
from scm_ppl.howfar.bounds.solve import Bounds, bounds
from scm_ppl.howfar.bounds.studies import Conditional
from scm_ppl.query.hooks import register_counterfactual_bounds

# counterfactual(..., bounds=...) reaches the solver through this hook (queries sit below).
register_counterfactual_bounds(counterfactual_bounds)

__all__ = [
    "Bounds",
    "Conditional",
    "ate_bounds",
    "bounds",
    "interventional_bounds",
    "pn_bounds",
    "pns_bounds",
    "ps_bounds",
]
