"""Random discrete SCMs on an ADMG, answered by brute force over their exogenous noise.

Every variable ``V`` with ``k_V`` values has its own noise ``U_V`` (``m`` states, random
probabilities) and every bidirected edge is an explicit latent (2 states, random
probabilities) parent of both its ends. ``V = f_V(pa(V), latents(V), U_V)`` is a random
table in which the first ``k_V`` noise states give every value (so every conditional of
every observational and interventional distribution is positive). Counterfactuals are
exact sums over every exogenous configuration (vectorised: one array entry per
configuration), so they check the identification formulas independently of them.
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping, Sequence

import networkx as nx
import numpy as np

from scm_ppl.graphical.joint import DiscreteJoint
from scm_ppl.graphical.mixed_graph import ADMG


def random_admg(
    rng: np.random.Generator, n: int, p_dir: float | None = None, p_bi: float | None = None
) -> ADMG:
    """``n`` nodes ``V0..`` in a random order; forward pairs directed with probability
    ``p_dir``, pairs bidirected with probability ``p_bi`` (drawn when not given)."""
    names = [f"V{i}" for i in range(n)]
    order = [str(v) for v in rng.permutation(names)]
    p_dir = rng.uniform(0.2, 0.6) if p_dir is None else p_dir
    p_bi = rng.uniform(0.1, 0.4) if p_bi is None else p_bi
    g = nx.DiGraph()
    g.add_nodes_from(names)
    g.add_edges_from((a, b) for a, b in itertools.combinations(order, 2) if rng.random() < p_dir)
    return ADMG(g, [p for p in itertools.combinations(names, 2) if rng.random() < p_bi])


class DiscreteSCM:
    """A random discrete SCM whose ADMG is ``g`` (see the module docstring)."""

    def __init__(
        self, g: ADMG, rng: np.random.Generator, cards: Mapping[str, int], noise: int = 3
    ) -> None:
        self.g, self.names, self.k = g, list(g.topological_order()), dict(cards)
        m = max(noise, *self.k.values())
        latents = g.bidirected_edges()
        sizes = [m] * len(self.names) + [2] * len(latents)
        probs = [rng.dirichlet(np.ones(s) * 2.0) for s in sizes]
        grid = np.indices(sizes).reshape(len(sizes), -1)
        self.weight = np.prod([p[row] for p, row in zip(probs, grid, strict=True)], axis=0)
        self.noise = {v: grid[i] for i, v in enumerate(self.names)}
        self.latent = {v: [] for v in self.names}
        for j, (a, b) in enumerate(latents):
            for end in (a, b):
                self.latent[end].append(grid[len(self.names) + j])
        self.parents = {v: sorted(g.parents(v), key=self.names.index) for v in self.names}
        self.table = {}
        for v in self.names:
            configs = [self.k[p] for p in self.parents[v]] + [2] * len(self.latent[v])
            rows = int(np.prod(configs))
            t = rng.integers(0, self.k[v], size=(rows, m))
            t[:, : self.k[v]] = np.array([rng.permutation(self.k[v]) for _ in range(rows)])
            self.table[v] = (configs, t)

    def world(self, do: Mapping[str, int]) -> dict[str, np.ndarray]:
        """Every variable's value in every exogenous configuration under ``do``."""
        values: dict[str, np.ndarray] = {}
        for v in self.names:
            if v in do:
                values[v] = np.full(self.weight.shape, do[v])
                continue
            configs, t = self.table[v]
            inputs = [values[p] for p in self.parents[v]] + self.latent[v]
            row = np.ravel_multi_index(inputs, configs) if configs else 0
            values[v] = t[row, self.noise[v]]
        return values

    def probability(self, events: Sequence[tuple[Mapping[str, int], Mapping[str, int]]]) -> float:
        """``P`` of the conjunction of ``(interventions, events)`` pairs."""
        holds = np.ones(self.weight.shape, dtype=bool)
        cache: dict[tuple, dict[str, np.ndarray]] = {}
        for do, event in events:
            key = tuple(sorted(do.items()))
            if key not in cache:
                cache[key] = self.world(do)
            for v, x in event.items():
                holds &= cache[key][v] == x
        return float(self.weight[holds].sum())

    def joint(self, do: Mapping[str, int] | None = None) -> np.ndarray:
        values = self.world(do or {})
        index = np.ravel_multi_index([values[v] for v in self.names], self.shape)
        return np.bincount(index, self.weight, minlength=int(np.prod(self.shape))).reshape(
            self.shape
        )

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(self.k[v] for v in self.names)

    def observational(self) -> DiscreteJoint:
        return DiscreteJoint(self.joint(), self.names)

    def experiment(self, targets: frozenset[str]) -> tuple[tuple[str, ...], DiscreteJoint]:
        """The joint of an experiment that sets ``targets`` uniformly at random."""
        names = tuple(sorted(targets))
        settings = list(itertools.product(*[range(self.k[t]) for t in names]))
        table = sum(self.joint(dict(zip(names, s, strict=True))) for s in settings)
        return names, DiscreteJoint(np.asarray(table) / len(settings), self.names)
