"""Two SCMs that agree on every interventional distribution and differ on a query.

The witness of a "not identified" verdict. SCMs are canonical (response-function) models
of binary variables: per district ``D`` a distribution ``q_D`` over the joint response
types of ``D`` (a type of ``v`` is a function from its parents' values to its own).
Every distribution ``P(v | do(x))`` is a product of the Q-factors
``Q[S](s | pa(S)) = P(S = s | do(pa(S) \\ S))`` of subsets ``S`` of districts
(Tian & Pearl 2002), each linear in ``q_D``. So with the other districts fixed, the
models that keep every Q-factor of ``D`` form a polytope, the query's numerator minus
``t`` times its denominator is linear on it, and two linear programs (max, min) tell
whether the query can move off its value ``t``. The pair found is checked again by
brute force on every interventional distribution.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Mapping, Sequence

import numpy as np
from scipy.optimize import linprog

from scm_ppl.graphical.mixed_graph import ADMG

Query = Sequence[tuple[Mapping[str, int], Mapping[str, int]]]


class CanonicalSCM:
    """Canonical model on the ``variables`` of ``g`` (an ancestral union of districts),
    with ``k[v]`` values per variable."""

    def __init__(
        self,
        g: ADMG,
        variables: frozenset[str],
        q: dict[frozenset[str], np.ndarray],
        k: Mapping[str, int],
    ):
        self.g, self.k = g, dict(k)
        self.names = [v for v in g.topological_order() if v in variables]
        self.parents = {v: [p for p in self.names if p in g.parents(v)] for v in self.names}
        self.types = {
            v: self.k[v] ** math.prod(self.k[p] for p in self.parents[v]) for v in self.names
        }
        self.districts = [d & variables for d in g.districts() if d & variables]
        self.q = q  # district -> tensor over its variables' types (names order)
        sizes = [self.types[v] for v in self.names]
        # Every joint type of every variable, one column each (refused when too many).
        self.grid = np.indices(sizes).reshape(len(sizes), -1) if math.prod(sizes) <= 2**18 else None

    def axes(self, d: frozenset[str]) -> list[int]:
        return [i for i, v in enumerate(self.names) if v in d]

    def weight(self, skip: frozenset[str] | None = None) -> np.ndarray:
        """Product of the districts' type probabilities on the grid (one skipped)."""
        w = np.ones(self.grid.shape[1])
        for d in self.districts:
            if d != skip:
                w = w * self.q[d][tuple(self.grid[self.axes(d)])]
        return w

    def world(self, do: Mapping[str, int]) -> dict[str, np.ndarray]:
        values: dict[str, np.ndarray] = {}
        for i, v in enumerate(self.names):
            if v in do:
                values[v] = np.full(self.grid.shape[1], do[v])
                continue
            values[v] = self.respond(v, self.grid[i], values)
        return values

    def respond(self, v: str, types: np.ndarray, values: Mapping[str, np.ndarray]) -> np.ndarray:
        """The value that each response type of ``v`` gives its parents' ``values``."""
        config = np.zeros(types.shape, dtype=np.int64)
        for p in self.parents[v]:
            config = config * self.k[p] + values[p]
        return (types // self.k[v] ** config) % self.k[v]

    def indicator(self, events: Query) -> np.ndarray:
        holds = np.ones(self.grid.shape[1], dtype=bool)
        for do, event in events:
            w = self.world(do)
            for v, x in event.items():
                holds &= w[v] == x
        return holds

    def probability(self, events: Query) -> float:
        return float(self.weight()[self.indicator(events)].sum())

    def all_interventional(self) -> np.ndarray:
        """Every ``P(v | do(x))``, for every set ``x`` and value, stacked."""
        out = []
        for r in range(len(self.names) + 1):
            for targets in itertools.combinations(self.names, r):
                shape = [self.k[v] for v in self.names]
                for values in itertools.product(*[range(self.k[t]) for t in targets]):
                    w = self.world(dict(zip(targets, values, strict=True)))
                    index = np.ravel_multi_index([w[v] for v in self.names], shape)
                    out.append(np.bincount(index, self.weight(), minlength=math.prod(shape)))
        return np.concatenate(out)

    def q_factor_rows(self, d: frozenset[str]) -> np.ndarray:
        """Rows over the joint types of ``d``: one per subset S, outside-parent values, s."""
        names = [v for v in self.names if v in d]
        grid = np.indices([self.types[v] for v in names]).reshape(len(names), -1)
        rows = []
        for r in range(1, len(names) + 1):
            for subset in itertools.combinations(names, r):
                outside = sorted({p for v in subset for p in self.parents[v]} - set(subset))
                for pa in itertools.product(*[range(self.k[p]) for p in outside]):
                    values = dict(
                        zip(outside, (np.full(grid.shape[1], x) for x in pa), strict=True)
                    )
                    for v in subset:  # topological order
                        values[v] = self.respond(v, grid[names.index(v)], values)
                    for s in itertools.product(*[range(self.k[v]) for v in subset]):
                        hit = np.ones(grid.shape[1], dtype=bool)
                        for v, x in zip(subset, s, strict=True):
                            hit &= values[v] == x
                        rows.append(hit.astype(float))
        return np.array(rows)


def counterexample(
    g: ADMG,
    query: Query,
    given: Query | None,
    rng: np.random.Generator,
    widen: str | None = None,
    max_types: int = 2**15,
    tol: float = 1e-6,
) -> tuple[float, float, int] | None:
    """Query values ``(t1, t2)`` of two canonical SCMs on ``g`` that agree on every
    interventional distribution (checked by brute force) with ``|t1 - t2| > tol``, and
    the largest number of values a variable needed, or ``None``.

    Binary variables are tried first, then ternary ones (``widen``, each of its parents,
    all of them, both, every variable): with binary variables some queries that ID*
    rejects are identified, e.g. ``P(X=1, Y_{X=0}=1) = P(Y=1 | do(X=0)) - P(X=0, Y=1)``.
    """
    events = list(query) + list(given or [])
    # The query depends on the ancestors of its events only; every other variable gets
    # one mechanism, independent of these, in both models.
    variables = g.ancestors({v for _, ev in events for v in ev})
    g = ADMG(
        g.directed.subgraph(variables).copy(),
        [p for p in g.bidirected if p <= variables],
    )
    tries = [{v: 2 for v in variables}]
    if widen is not None and widen in g:  # the witness's variable, then its parents too
        parents = sorted(g.parents(widen))
        for wide in ({widen}, *({p} for p in parents), set(parents), {widen, *parents}):
            tries.append({v: 3 if v in wide else 2 for v in variables})
    tries.append({v: 3 for v in variables})
    for k in tries:
        found = _search(g, variables, k, query, given, rng, max_types, tol)
        if found is not None:
            return (*found, max(k.values()))
    return None


def _search(g, variables, k, query, given, rng, max_types, tol):
    events = list(query) + list(given or [])
    probe = CanonicalSCM(g, variables, {}, k)
    if probe.grid is None:
        return None
    q = {}
    for d in probe.districts:
        shape = [probe.types[v] for v in probe.names if v in d]
        if math.prod(shape) > max_types:
            return None
        q[d] = rng.dirichlet(np.ones(math.prod(shape))).reshape(shape)
    m1 = CanonicalSCM(g, variables, q, k)
    num = m1.indicator(events)
    den = m1.indicator(list(given)) if given else None
    p_den = float(m1.weight()[den].sum()) if den is not None else 1.0
    if p_den < 1e-9:
        return None
    t1 = m1.probability(events) / p_den
    base = None
    for d in m1.districts:
        rest = m1.weight(skip=d)
        axes = m1.axes(d)
        shape = [m1.types[m1.names[i]] for i in axes]
        flat = np.ravel_multi_index(tuple(m1.grid[axes]), shape)
        size = math.prod(shape)
        objective = np.bincount(flat, rest * num, minlength=size)
        if den is not None:
            objective = objective - t1 * np.bincount(flat, rest * den, minlength=size)
        rows = m1.q_factor_rows(d)
        target = rows @ q[d].ravel()
        for sign in (1.0, -1.0):
            lp = linprog(
                -sign * objective, A_eq=rows, b_eq=target, bounds=(0, None), method="highs"
            )
            if lp.status != 0 or -lp.fun < tol:
                continue
            q2 = dict(q)
            x = np.clip(lp.x, 0, None)
            q2[d] = (x / x.sum()).reshape(shape)
            m2 = CanonicalSCM(g, variables, q2, k)
            d2 = m2.probability(list(given)) if given else 1.0
            t2 = m2.probability(events) / d2 if d2 > 1e-9 else None
            if base is None:
                base = m1.all_interventional()
            agree = np.abs(base - m2.all_interventional()).max() < 1e-9
            if t2 is not None and agree and abs(t2 - t1) > tol:
                return t1, t2
    return None
