"""The workloads on DoWhy 0.14's ``gcm`` module, used the way its docs recommend.

W1/W3/W5 give DoWhy the true mechanisms (``create_linear_regressor_with_given_parameters``
and fixed-parameter ``ScipyDistribution`` noise), so every system answers the same query
on the same SCM; the time DoWhy needs to *fit* linear mechanisms to the same data
(``gcm.fit``) is reported beside it. W4 lets ``gcm.auto.assign_causal_mechanisms`` choose.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import networkx as nx
import numpy as np
import pandas as pd
from dowhy import gcm
from dowhy.gcm.causal_mechanisms import InvertibleFunctionalCausalModel
from scipy import stats

from benchmarks.common import INTERVENED_NODE, INTERVENED_VALUE, W4_SHIFT, parents_of

NODES = tuple(f"X{i}" for i in range(10))
_SHIFT = math.exp(0.125)


def linear_graph(weights: np.ndarray) -> nx.DiGraph:
    g = nx.DiGraph()
    g.add_nodes_from(NODES)
    g.add_edges_from((NODES[j], NODES[i]) for j, i in zip(*np.nonzero(weights), strict=True))
    return g


def linear_scm(
    weights: np.ndarray, noise_scales: np.ndarray, data: pd.DataFrame
) -> gcm.InvertibleStructuralCausalModel:
    """The 10-node DAG with its true mechanisms.

    ``gcm.fit`` on ``data`` only records each node's parents (DoWhy checks them before a
    query): the given-parameter regressors and fixed noise laws learn nothing.
    """
    scm = gcm.InvertibleStructuralCausalModel(linear_graph(weights))
    for i, parents in enumerate(parents_of(weights)):
        noise = gcm.ScipyDistribution(stats.norm, loc=0.0, scale=float(noise_scales[i]))
        if not parents:
            scm.set_causal_mechanism(NODES[i], noise)
            continue
        # DoWhy orders a node's parents with get_ordered_predecessors (sorted names).
        ordered = sorted(parents, key=lambda p: NODES[p[0]])
        coefficients = np.array([w for _, w in ordered])
        mechanism = gcm.AdditiveNoiseModel(
            gcm.ml.create_linear_regressor_with_given_parameters(coefficients), noise
        )
        scm.set_causal_mechanism(NODES[i], mechanism)
    gcm.fit(scm, data)
    return scm


def fit_linear(weights: np.ndarray, data: pd.DataFrame) -> gcm.InvertibleStructuralCausalModel:
    """What a DoWhy user does with data: linear additive-noise mechanisms fitted by gcm."""
    scm = gcm.InvertibleStructuralCausalModel(linear_graph(weights))
    for i, parents in enumerate(parents_of(weights)):
        if parents:
            mechanism = gcm.AdditiveNoiseModel(gcm.ml.create_linear_regressor())
            scm.set_causal_mechanism(NODES[i], mechanism)
        else:
            scm.set_causal_mechanism(NODES[i], gcm.EmpiricalDistribution())
    gcm.fit(scm, data)
    return scm


def w1(scm: gcm.InvertibleStructuralCausalModel, observed: pd.DataFrame) -> pd.DataFrame:
    """Counterfactuals of fully observed units under do(X3 := 1)."""
    return gcm.counterfactual_samples(
        scm, {NODES[INTERVENED_NODE]: lambda x: INTERVENED_VALUE}, observed_data=observed
    )


def w5_all_samples(scm, observed: pd.DataFrame, values: Sequence[float]) -> np.ndarray:
    """(a) every counterfactual for each intervention value: a loop of single calls."""
    node = NODES[INTERVENED_NODE]
    return np.stack(
        [
            gcm.counterfactual_samples(
                scm, {node: lambda x, v=float(v): v}, observed_data=observed
            )[list(NODES)].to_numpy()
            for v in values
        ]
    )


def w5_dose_response(scm, observed: pd.DataFrame, values: Sequence[float]) -> np.ndarray:
    """(b) the mean counterfactual X9 per intervention value: a loop of single calls."""
    node = NODES[INTERVENED_NODE]
    return np.array(
        [
            gcm.counterfactual_samples(
                scm, {node: lambda x, v=float(v): v}, observed_data=observed
            )[NODES[-1]].mean()
            for v in values
        ]
    )


# ------------------------------------------------------------------------------- W3
class _GivenMechanism(InvertibleFunctionalCausalModel):
    """A known mechanism ``x = f(parents, u)``, ``u ~ Normal(0, 1)``, with its inverse."""

    def __init__(self, forward, inverse) -> None:
        self._forward = forward
        self._inverse = inverse

    def fit(self, X: np.ndarray, Y: np.ndarray) -> None:
        pass

    def draw_noise_samples(self, num_samples: int) -> np.ndarray:
        return np.random.standard_normal((num_samples, 1))

    def evaluate(self, parent_samples: np.ndarray, noise_samples: np.ndarray) -> np.ndarray:
        pa = parent_samples.reshape(len(noise_samples), -1)
        return self._forward(pa, noise_samples.reshape(-1)).reshape(-1, 1)

    def estimate_noise(self, target_samples: np.ndarray, parent_samples: np.ndarray) -> np.ndarray:
        pa = parent_samples.reshape(len(target_samples), -1)
        return self._inverse(pa, target_samples.reshape(-1)).reshape(-1, 1)

    def clone(self):
        return _GivenMechanism(self._forward, self._inverse)


NONLINEAR_EDGES = [("x1", "x2"), ("x1", "x3"), ("x2", "x3"), ("x2", "x4"), ("x3", "x4")]
NONLINEAR_EDGES += [("x3", "x5"), ("x4", "x5")]


def nonlinear_scm(data: pd.DataFrame) -> gcm.InvertibleStructuralCausalModel:
    """models/nonlinear.py with its true mechanisms (parents in sorted-name order);
    ``gcm.fit`` on ``data`` only records the parents."""
    scm = gcm.InvertibleStructuralCausalModel(nx.DiGraph(NONLINEAR_EDGES))
    scm.set_causal_mechanism("x1", gcm.ScipyDistribution(stats.norm, loc=0.0, scale=1.0))

    def scale5(x3):
        return 0.4 * np.exp(0.3 * x3)

    mechanisms = {
        "x2": (
            lambda p, u: np.tanh(1.5 * p[:, 0]) + 0.3 * u,
            lambda p, x: (x - np.tanh(1.5 * p[:, 0])) / 0.3,
        ),
        "x3": (
            lambda p, u: np.sin(p[:, 0]) + (0.2 + 0.3 * np.abs(p[:, 1])) * u,
            lambda p, x: (x - np.sin(p[:, 0])) / (0.2 + 0.3 * np.abs(p[:, 1])),
        ),
        "x4": (
            lambda p, u: 0.8 * p[:, 0] - 0.5 * p[:, 1] ** 2 + 0.3 * u,
            lambda p, x: (x - 0.8 * p[:, 0] + 0.5 * p[:, 1] ** 2) / 0.3,
        ),
        "x5": (
            lambda p, u: 0.6 * p[:, 1] + scale5(p[:, 0]) * (np.exp(0.5 * u) - _SHIFT),
            lambda p, x: 2.0 * np.log((x - 0.6 * p[:, 1]) / scale5(p[:, 0]) + _SHIFT),
        ),
    }
    for node, (forward, inverse) in mechanisms.items():
        scm.set_causal_mechanism(node, _GivenMechanism(forward, inverse))
    gcm.fit(scm, data)
    return scm


def w3(scm, node: str, n: int) -> pd.DataFrame:
    """``n`` draws under do(node := 1)."""
    return gcm.interventional_samples(
        scm, {node: lambda x: INTERVENED_VALUE}, num_samples_to_draw=n
    )


# ------------------------------------------------------------------------------- W4
def w4_fit(train: pd.DataFrame, quality: str = "GOOD") -> gcm.InvertibleStructuralCausalModel:
    """Mechanisms chosen and fitted by DoWhy itself: ``assign_causal_mechanisms`` + ``fit``."""
    scm = gcm.InvertibleStructuralCausalModel(nx.DiGraph(NONLINEAR_EDGES))
    gcm.auto.assign_causal_mechanisms(
        scm, train, quality=getattr(gcm.auto.AssignmentQuality, quality)
    )
    gcm.fit(scm, train)
    return scm


def w4_counterfactual(scm, held_out: pd.DataFrame) -> pd.DataFrame:
    return gcm.counterfactual_samples(scm, {"x2": lambda x: x + W4_SHIFT}, observed_data=held_out)
