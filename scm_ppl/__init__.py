"""scm_ppl: structural causal models as NumPyro programs.

Every NumPyro program is an SCM: sample sites are mechanisms with their own exogenous
noise, deterministic sites are noise-free mechanisms. Intervene with :func:`do`, ask
interventional and counterfactual questions with :func:`interventional` and
:func:`counterfactual`, read the causal graph with :func:`graph`.

The top level holds the verbs of the ladder and their result types; the rest lives in the
subpackages, one per concept (see ARCHITECTURE.md): :mod:`scm_ppl.core`,
:mod:`scm_ppl.graphical`, :mod:`scm_ppl.query`, :mod:`scm_ppl.learn`,
:mod:`scm_ppl.independence`, :mod:`scm_ppl.howfar`, :mod:`scm_ppl.check`,
:mod:`scm_ppl.attribution`, :mod:`scm_ppl.plotting` (loaded when
first used) and :mod:`scm_ppl.errors`.
"""

import importlib
from typing import TYPE_CHECKING

from scm_ppl import attribution, check, core, errors, graphical, howfar, independence, learn, query
from scm_ppl._version import __version__
from scm_ppl.core import do, graph, noise_view, register_noise_view
from scm_ppl.graphical import (
    ADMG,
    CounterfactualIdentification,
    IdentificationResult,
    admg,
    identify,
    identify_counterfactual,
)
from scm_ppl.howfar import (
    Bounds,
    ate_bounds,
    bounds,
    contraction,
    interventional_bounds,
    local_identifiability,
    pn_bounds,
    pns_bounds,
    ps_bounds,
    refit_ensemble,
)
from scm_ppl.independence import mechanism_genericity
from scm_ppl.learn import (
    FittedSCM,
    additive_noise,
    bernoulli,
    categorical,
    do_mechanism,
    fit,
    flow,
    location_scale,
)
from scm_ppl.query import (
    CausalResult,
    DoseResponse,
    Estimate,
    ate,
    counterfactual,
    dose_response,
    ett,
    interventional,
    multi_world,
    pn,
    pns,
    ps,
    shard_units,
    sweep,
    twin_world,
)

if TYPE_CHECKING:
    from scm_ppl import plotting

__all__ = [
    "ADMG",
    "Bounds",
    "CausalResult",
    "CounterfactualIdentification",
    "DoseResponse",
    "Estimate",
    "FittedSCM",
    "IdentificationResult",
    "__version__",
    "additive_noise",
    "admg",
    "ate",
    "ate_bounds",
    "attribution",
    "bernoulli",
    "bounds",
    "categorical",
    "check",
    "contraction",
    "core",
    "counterfactual",
    "do",
    "do_mechanism",
    "dose_response",
    "errors",
    "ett",
    "fit",
    "flow",
    "graph",
    "graphical",
    "howfar",
    "identify",
    "identify_counterfactual",
    "independence",
    "interventional",
    "interventional_bounds",
    "learn",
    "local_identifiability",
    "location_scale",
    "mechanism_genericity",
    "multi_world",
    "noise_view",
    "plotting",
    "pn",
    "pn_bounds",
    "pns",
    "pns_bounds",
    "ps",
    "ps_bounds",
    "query",
    "refit_ensemble",
    "register_noise_view",
    "shard_units",
    "sweep",
    "twin_world",
]


def __getattr__(name: str):
    # matplotlib is heavy: load the plotting namespace only when a plot is asked for.
    if name == "plotting":
        return importlib.import_module("scm_ppl.plotting")
    raise AttributeError(f"module 'scm_ppl' has no attribute {name!r}")
