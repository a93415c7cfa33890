"""Plots of model checks and attributions: bars with intervals, the coloured graph, the
graph check's implied independences."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt
import networkx as nx
import numpy as np
import numpyro
import numpyro.distributions as dist

from scm_ppl import attribution, check
from scm_ppl.plotting import plot_attribution, plot_attribution_graph, plot_graph_check

TRUE = nx.DiGraph([("a", "b"), ("b", "c")])


def _chain_data(n: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    a = rng.normal(size=n)
    b = a + rng.normal(size=n)
    return {"a": a, "b": b, "c": b + rng.normal(size=n)}


def test_plots_return_axes() -> None:
    g = check.graph(TRUE, _chain_data(300), num_permutations=5)
    assert plot_graph_check(g) is not None

    def model(n: int) -> None:
        with numpyro.plate("unit", n):
            x = numpyro.sample("x", dist.Normal(0.0, 1.0))
            numpyro.sample("y", dist.Normal(x, 1.0))

    r = attribution.intrinsic_influence(model, "y", num_replicates=2)
    assert plot_attribution(r) is not None
    assert plot_attribution_graph(r) is not None
    plt.close("all")
