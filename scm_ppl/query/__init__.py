"""Rungs two and three: interventional and counterfactual queries.

One :class:`~scm_ppl.query.plan.QueryPlan` holds every check and choice a query makes;
the engine turns it into one compiled call (abduction, action, prediction, vectorised
over draws and units); worlds, sweeps, results and the estimates built on them (ATE, ETT,
PN, PS, PNS) live here too.
"""

from scm_ppl.query.estimates import Estimate, ate, ett, pn, pns, ps
from scm_ppl.query.exact import EnumeratedCounterfactual, enumerated_counterfactual
from scm_ppl.query.grid import sweep
from scm_ppl.query.over_rows import RowsEstimate, effect_over_rows
from scm_ppl.query.queries import counterfactual, interventional
from scm_ppl.query.results import CausalResult
from scm_ppl.query.scaling import shard_units
from scm_ppl.query.sweeps import DoseResponse, dose_response
from scm_ppl.query.worlds import multi_world, twin_world

__all__ = [
    "CausalResult",
    "DoseResponse",
    "EnumeratedCounterfactual",
    "Estimate",
    "RowsEstimate",
    "ate",
    "counterfactual",
    "dose_response",
    "effect_over_rows",
    "enumerated_counterfactual",
    "ett",
    "interventional",
    "multi_world",
    "pn",
    "pns",
    "ps",
    "shard_units",
    "sweep",
    "twin_world",
]
