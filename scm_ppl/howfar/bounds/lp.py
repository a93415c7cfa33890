"""The linear programs behind :func:`scm_ppl.bounds` (scipy HiGHS, no own solver).

The unknown is ``q``, a distribution over the joint response types of the block ``M``
(:class:`~scm_ppl.howfar.bounds.canonical.CanonicalBlock`). The data give equality rows:
``P(m | f)`` for every conditioning value ``f`` with ``P(f) > 0``, one row per cell of each
experimental table, and ``sum q = 1``. A query ``P(E)`` is ``c @ q`` with
``c = sum_f P(f) 1[E(f, type)]``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from scm_ppl.errors import BoundsError
from scm_ppl.graphical.mixed_graph import ADMG
from scm_ppl.howfar.bounds.canonical import CanonicalBlock, World

__all__ = [
    "constraints",
    "distinct_columns",
    "district_constraints",
    "indicator",
    "nearest",
    "solve",
]


def indicator(block: CanonicalBlock, worlds: tuple[World, ...]) -> np.ndarray:
    """``1[every world's event holds]``, shape ``(n_f, T)``."""
    n_f = block.condition_configs().shape[0]
    holds = np.ones((n_f, block.size), dtype=bool)
    for iv, event in worlds:
        values = block.evaluate(dict(iv))
        for name, value in event:
            holds &= values[name] == value
    return holds


def _code(block: CanonicalBlock, values: dict[str, np.ndarray], names: Sequence[str]) -> np.ndarray:
    n_f = block.condition_configs().shape[0]
    code = np.zeros((n_f, block.size), dtype=np.int64)
    for name in names:
        code = code * block.cardinality[name] + values[name]
    return code


def constraints(
    block: CanonicalBlock,
    p_joint: np.ndarray,
    experiments: list[tuple[dict[str, int], tuple[str, ...], np.ndarray]],
) -> tuple[Any, np.ndarray, np.ndarray, np.ndarray]:
    """Rows ``A q = b``: ``P(m | f)`` for every ``f`` with ``P(f) > 0``, each experiment's
    table, and ``sum q = 1``. Returns ``A``, ``b``, ``P(f)`` and each column's signature
    (shape ``(T, k)``): two types with equal signatures have equal columns of ``A``."""
    from scipy import sparse  # lazily: importing scipy.optimize/sparse costs ~0.3 s

    n_f, size = block.condition_configs().shape[0], block.size
    n_m = math.prod(block.cardinality[v] for v in block.variables)
    table = p_joint.reshape(n_f, n_m)
    p_f = table.sum(axis=1)
    positive = np.flatnonzero(p_f > 0)
    factual = _code(block, block.evaluate({}), block.variables)
    rows = [np.arange(len(positive))[:, None] * n_m + factual[positive]]
    cols = [np.broadcast_to(np.arange(size), (len(positive), size))]
    data = [np.ones((len(positive), size))]
    b = [(table[positive] / p_f[positive, None]).ravel()]
    offset = len(positive) * n_m
    signature = [factual[positive]]
    for iv, recorded, probs in experiments:
        code = _code(block, block.evaluate(iv), recorded)
        signature.append(code)
        rows.append(offset + code)
        cols.append(np.broadcast_to(np.arange(size), code.shape))
        data.append(np.broadcast_to(p_f[:, None], code.shape))
        b.append(probs.ravel())
        offset += probs.size
    rows.append(np.full((1, size), offset))
    cols.append(np.arange(size)[None, :])
    data.append(np.ones((1, size)))
    b.append(np.ones(1))
    matrix = sparse.coo_matrix(
        (
            np.concatenate([d.ravel() for d in data]),
            (np.concatenate([r.ravel() for r in rows]), np.concatenate([c.ravel() for c in cols])),
        ),
        shape=(offset + 1, size),
    ).tocsr()
    return matrix, np.concatenate(b), p_f, np.concatenate(signature, axis=0).T


def distinct_columns(signature: np.ndarray, c: np.ndarray) -> np.ndarray:
    """One response type per class of types with equal constraint columns and objective.

    Types that never differ on anything the data or the query see are interchangeable;
    the LP over one representative each has the same optimum and is often far smaller
    (32768 -> a few hundred columns for six binary variables).
    """
    keys = np.ascontiguousarray(np.column_stack([signature, c.view(np.int64)]))
    rows = keys.view(np.dtype((np.void, keys.dtype.itemsize * keys.shape[1]))).ravel()
    _, first = np.unique(rows, return_index=True)
    return np.sort(first)


_OPTIONS = {"primal_feasibility_tolerance": 1e-10, "dual_feasibility_tolerance": 1e-10}


_DENSE_CELLS = 200_000
"""Below this many matrix cells a dense ``A`` is faster to hand to linprog than a sparse one."""


def solve(c: np.ndarray, a: Any, b: np.ndarray, sign: float) -> Any:
    """``min sign * c @ q`` subject to ``a @ q = b``, ``q >= 0``."""
    from scipy.optimize import linprog

    matrix = a.toarray() if a.shape[0] * a.shape[1] <= _DENSE_CELLS else a
    return linprog(sign * c, A_eq=matrix, b_eq=b, bounds=(0, None), method="highs")


def nearest(c: np.ndarray, a: Any, b: np.ndarray) -> tuple[Any, Any, float]:
    """Bounds over the response-type distributions closest (L1) to the data's constraints:
    finite samples rarely satisfy a graph's equality constraints exactly."""
    from scipy import sparse
    from scipy.optimize import linprog

    n_rows, size = a.shape
    # slack on every row but the last (sum q = 1), which stays exact
    eye = sparse.csr_matrix(sparse.identity(n_rows, format="csr"))[:, : n_rows - 1]
    a_slack = sparse.hstack([a, eye, -eye]).tocsr()
    cost = np.concatenate([np.zeros(size), np.ones(2 * (n_rows - 1))])
    first = linprog(cost, A_eq=a_slack, b_eq=b, bounds=(0, None), method="highs", options=_OPTIONS)
    if first.status != 0:
        raise BoundsError(f"The linear program failed: {first.message}")
    distance = float(first.fun)
    budget = sparse.csr_matrix(cost[None, :])
    ends = []
    for sign in (1.0, -1.0):
        result = linprog(
            sign * np.concatenate([c, np.zeros(2 * (n_rows - 1))]),
            A_ub=budget,
            b_ub=[distance * (1 + 1e-9) + 1e-12],
            A_eq=a_slack,
            b_eq=b,
            bounds=(0, None),
            method="highs",
            options=_OPTIONS,
        )
        if result.status != 0:
            raise BoundsError(f"The linear program failed: {result.message}")
        result.x = result.x[:size]
        ends.append(result)
    return ends[0], ends[1], distance


def district_constraints(
    block: CanonicalBlock, g: ADMG, names: tuple[str, ...], probs: np.ndarray
) -> tuple[np.ndarray, np.ndarray] | None:
    """Rows that state, for each district ``D`` of a block with several, what Tian's
    factorisation fixes: ``Q[D](d; pa) = prod_{v in D} P(v | predecessors)``.

    In every SCM on the graph, the marginal of ``q`` on ``D``'s response types satisfies
    them (Tian & Pearl, 2002), so adding them keeps the bounds valid; they restore the part
    of the districts' independence that is linear (e.g. ``P(Y_m = y) = P(y | m)`` for every
    unit, whatever its ``M``). Returns None when an ancestor of the block is not observed.

    Parameters
    ----------
    names, probs
        The observed table: variable names and probabilities (one axis per name).
    """
    order = g.topological_order()
    ancestors = [v for v in order if v in g.ancestors(set(block.variables))]
    if any(v not in names for v in ancestors):
        return None
    drop = tuple(i for i, n in enumerate(names) if n not in ancestors)
    joint = np.transpose(probs.sum(axis=drop), [
        [n for n in names if n in ancestors].index(v) for v in ancestors
    ])  # fmt: skip
    rows, values = [], []
    for district in block.districts:
        factor = np.ones(joint.shape)
        for v in (v for v in ancestors if v in district):
            i = ancestors.index(v)
            upto = joint.sum(axis=tuple(range(i + 1, joint.ndim)), keepdims=True)
            before = upto.sum(axis=i, keepdims=True)
            with np.errstate(invalid="ignore", divide="ignore"):
                factor = factor * np.where(before > 0, upto / before, np.nan)
        keys = [v for v in ancestors if v in district or v in _outer_parents(g, district)]
        axes = [ancestors.index(v) for v in keys]
        table = np.moveaxis(factor, axes, range(len(axes))).reshape(
            math.prod(joint.shape[a] for a in axes), -1
        )
        defined = np.isfinite(table)
        for flat in np.flatnonzero(defined.any(axis=1)):
            config = np.unravel_index(flat, [joint.shape[a] for a in axes])
            setting = {k: int(c) for k, c in zip(keys, config, strict=True)}
            # every input of the district is set, so one conditioning row suffices
            world = block.evaluate(
                {k: x for k, x in setting.items() if k not in district},
                np.zeros((1, len(block.conditioning)), dtype=np.int64),
            )
            holds = np.ones(block.size, dtype=bool)
            for v in district:
                holds &= np.broadcast_to(world[v], (1, block.size))[0] == setting[v]
            rows.append(holds.astype(float))
            values.append(table[flat, np.argmax(defined[flat])])
    return np.array(rows).reshape(len(rows), block.size), np.array(values)


def _outer_parents(g: ADMG, district: frozenset[str]) -> set[str]:
    return set().union(*(g.parents(v) for v in district)) - set(district)
