"""Learning mechanisms: the mechanism builders (neural networks, flows, Bayesian
weights), ``fit`` from observational and interventional data, save/load, and
interventions on the learned mechanisms themselves (``do_mechanism``).

A fitted SCM is an ordinary program to every query: nothing here imports the query layer.
"""

from scm_ppl.learn.distributed import shard_rows
from scm_ppl.learn.fitting import FitHistory, FittedSCM, fit
from scm_ppl.learn.from_graph import GraphSCM, MechanismChoice, scm_from_graph
from scm_ppl.learn.hurdle import Hurdle
from scm_ppl.learn.inhibit import inhibit
from scm_ppl.learn.mechanism_intervention import do_mechanism, rotate, scale, stretch
from scm_ppl.learn.mechanisms import (
    FlowDistribution,
    additive_noise,
    bernoulli,
    categorical,
    flow,
    location_scale,
)
from scm_ppl.learn.streaming import StreamedRows

__all__ = [
    "FitHistory",
    "FittedSCM",
    "FlowDistribution",
    "GraphSCM",
    "Hurdle",
    "MechanismChoice",
    "StreamedRows",
    "additive_noise",
    "bernoulli",
    "categorical",
    "do_mechanism",
    "fit",
    "flow",
    "inhibit",
    "location_scale",
    "rotate",
    "scale",
    "scm_from_graph",
    "shard_rows",
    "stretch",
]
