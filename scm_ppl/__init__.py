"""scm_ppl: structural causal models as NumPyro programs.

Every NumPyro program is an SCM: sample sites are mechanisms with their own exogenous
noise, deterministic sites are noise-free mechanisms. Intervene with :func:`do`, ask
interventional and counterfactual questions with :func:`interventional` and
:func:`counterfactual`, read the causal graph with :func:`graph`.
"""

from typing import TYPE_CHECKING

from scm_ppl._bounds_queries import (
    ate_bounds,
    interventional_bounds,
    pn_bounds,
    pns_bounds,
    ps_bounds,
)
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
from scm_ppl.batched import DoseResponse, dose_response, sweep
from scm_ppl.bounds import Bounds, bounds
from scm_ppl.counterfactual import counterfactual, interventional
from scm_ppl.engine import trace_count
from scm_ppl.errors import (
    AbductionError,
    BoundsError,
    DataError,
    EstimandError,
    EvidenceError,
    FitError,
    GenericityError,
    GraphError,
    IdentifiabilityError,
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
from scm_ppl.identifiability import (
    ContractionResult,
    IdentifiabilityReport,
    RefitEnsemble,
    RefitSpread,
    contraction,
    intervened_mean,
    local_identifiability,
    refit_ensemble,
)
from scm_ppl.identify import Hedge, IdentificationResult, identify
from scm_ppl.independence import (
    GenericityReport,
    mechanism_genericity,
    spectral_density_ratio,
    trace_ratio,
    trace_ratio_from_samples,
)
from scm_ppl.joint import DiscreteJoint
from scm_ppl.mechanism_intervention import do_mechanism, rotate, scale, stretch
from scm_ppl.mechanisms import (
    FlowDistribution,
    additive_noise,
    bernoulli,
    categorical,
    flow,
    location_scale,
)
from scm_ppl.noise import NoiseView, noise_view, register_noise_view
from scm_ppl.prng import fast_key
from scm_ppl.queries import Estimate, ate, ett, pn, pns, ps
from scm_ppl.results import CausalResult
from scm_ppl.scaling import shard_units
from scm_ppl.worlds import multi_world, twin_world

__all__ = [
    "ADMG",
    "AbductionError",
    "AdjustmentFormula",
    "Bounds",
    "BoundsError",
    "CausalResult",
    "ContractionResult",
    "DataError",
    "DiscreteJoint",
    "DoseResponse",
    "EstimandError",
    "Estimate",
    "EvidenceError",
    "FitError",
    "FitHistory",
    "FittedSCM",
    "FlowDistribution",
    "GenericityError",
    "GenericityReport",
    "GraphError",
    "Hedge",
    "IdentifiabilityError",
    "IdentifiabilityReport",
    "IdentificationResult",
    "InferenceWarning",
    "InterventionError",
    "NoiseView",
    "NoiseViewError",
    "NotIdentifiableError",
    "NotIdentifiableWarning",
    "ProgramError",
    "RefitEnsemble",
    "RefitSpread",
    "ScmPplError",
    "ScmPplWarning",
    "SerializationError",
    "additive_noise",
    "admg",
    "ate",
    "ate_bounds",
    "backdoor_sets",
    "bernoulli",
    "bounds",
    "categorical",
    "contraction",
    "counterfactual",
    "do",
    "do_mechanism",
    "dose_response",
    "ett",
    "fast_key",
    "find_adjustment",
    "fit",
    "flow",
    "frontdoor_sets",
    "graph",
    "identify",
    "intervened_mean",
    "interventional",
    "interventional_bounds",
    "is_adjustment_set",
    "is_backdoor_set",
    "is_frontdoor_set",
    "local_identifiability",
    "location_scale",
    "mechanism_genericity",
    "multi_world",
    "noise_view",
    "plot_bounds",
    "plot_contraction",
    "plot_fisher_spectrum",
    "plot_genericity",
    "plot_graph",
    "plot_learning_curve",
    "plot_refit_spread",
    "pn",
    "pn_bounds",
    "pns",
    "pns_bounds",
    "ps",
    "ps_bounds",
    "refit_ensemble",
    "register_noise_view",
    "replay_noise",
    "rotate",
    "scale",
    "shard_units",
    "spectral_density_ratio",
    "stretch",
    "sweep",
    "trace_count",
    "trace_ratio",
    "trace_ratio_from_samples",
    "twin_world",
]

__version__ = "0.1.0"

if TYPE_CHECKING:
    from scm_ppl.plotting import (
        plot_bounds,
        plot_contraction,
        plot_fisher_spectrum,
        plot_genericity,
        plot_graph,
        plot_learning_curve,
        plot_refit_spread,
    )

# Kept equal to scm_ppl.plotting.__all__ (a test checks).
_PLOTS = (
    "plot_bounds",
    "plot_contraction",
    "plot_fisher_spectrum",
    "plot_genericity",
    "plot_graph",
    "plot_learning_curve",
    "plot_refit_spread",
)


def __getattr__(name: str):
    # matplotlib is heavy: load plotting only when a plot is asked for.
    if name in _PLOTS:
        from scm_ppl import plotting

        return getattr(plotting, name)
    raise AttributeError(f"module 'scm_ppl' has no attribute {name!r}")
