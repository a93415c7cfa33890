"""scm_ppl: structural causal models as NumPyro programs.

Every NumPyro program is an SCM: sample sites are mechanisms with their own exogenous
noise, deterministic sites are noise-free mechanisms. Intervene with :func:`do`, ask
interventional and counterfactual questions with :func:`interventional` and
:func:`counterfactual`, read the causal graph with :func:`graph`.
"""

from typing import TYPE_CHECKING

from scm_ppl.adjustment import (
    AdjustmentFormula,
    backdoor_sets,
    find_adjustment,
    frontdoor_sets,
    is_adjustment_set,
    is_backdoor_set,
    is_frontdoor_set,
)
from scm_ppl.admg import ADMG, admg
from scm_ppl.counterfactual import counterfactual, interventional
from scm_ppl.engine import trace_count
from scm_ppl.errors import (
    AbductionError,
    DataError,
    EstimandError,
    EvidenceError,
    FitError,
    GraphError,
    InferenceWarning,
    InterventionError,
    NoiseViewError,
    NotIdentifiableError,
    NotIdentifiableWarning,
    ProgramError,
    ScmPplError,
    ScmPplWarning,
    SerializationError,
)
from scm_ppl.fit import FitHistory, FittedSCM, fit
from scm_ppl.graph import graph
from scm_ppl.handlers import do, replay_noise
from scm_ppl.identify import Hedge, IdentificationResult, identify
from scm_ppl.joint import DiscreteJoint
from scm_ppl.mechanisms import (
    FlowDistribution,
    additive_noise,
    bernoulli,
    categorical,
    flow,
    location_scale,
)
from scm_ppl.noise import NoiseView, noise_view, register_noise_view
from scm_ppl.queries import Estimate, ate, ett, pn, pns, ps
from scm_ppl.results import CausalResult
from scm_ppl.worlds import multi_world, twin_world

__all__ = [
    "ADMG",
    "AbductionError",
    "AdjustmentFormula",
    "CausalResult",
    "DataError",
    "DiscreteJoint",
    "EstimandError",
    "Estimate",
    "EvidenceError",
    "FitError",
    "FitHistory",
    "FittedSCM",
    "FlowDistribution",
    "GraphError",
    "Hedge",
    "IdentificationResult",
    "InferenceWarning",
    "InterventionError",
    "NoiseView",
    "NoiseViewError",
    "NotIdentifiableError",
    "NotIdentifiableWarning",
    "ProgramError",
    "ScmPplError",
    "ScmPplWarning",
    "SerializationError",
    "additive_noise",
    "admg",
    "ate",
    "backdoor_sets",
    "bernoulli",
    "categorical",
    "counterfactual",
    "do",
    "ett",
    "find_adjustment",
    "fit",
    "flow",
    "frontdoor_sets",
    "graph",
    "identify",
    "interventional",
    "is_adjustment_set",
    "is_backdoor_set",
    "is_frontdoor_set",
    "location_scale",
    "multi_world",
    "noise_view",
    "plot_graph",
    "plot_learning_curve",
    "pn",
    "pns",
    "ps",
    "register_noise_view",
    "replay_noise",
    "trace_count",
    "twin_world",
]

__version__ = "0.1.0"

if TYPE_CHECKING:
    from scm_ppl.plotting import plot_graph, plot_learning_curve


def __getattr__(name: str):
    # matplotlib is heavy: load plotting only when a plot is asked for.
    if name in ("plot_graph", "plot_learning_curve"):
        from scm_ppl import plotting

        return getattr(plotting, name)
    raise AttributeError(f"module 'scm_ppl' has no attribute {name!r}")
