"""The canonical (response-function) model of an ADMG over discrete variables.

Every SCM over discrete variables is, for its observational, interventional and
counterfactual distributions, a distribution over *response types*: a variable with ``k``
values whose parents take ``m`` joint values has ``k**m`` response types, the functions from
its parents' values to its own. Response types of variables in one district (c-component)
may be dependent in any way; those of different districts are independent.

:func:`canonical_block` splits the variables a query needs into two parts:

* ``F``, the *factual* part: an ancestral union of districts none of whose variables is a
  strict descendant of an intervention in any world. Its response types enter every world
  only through its factual values, whose law ``P(f)`` the data give.
* ``M``, the rest. Given ``f``, every world is a function of ``M``'s joint response type,
  and both the query and the data are linear in its distribution ``q``.

When ``M`` is one district, ``q`` ranges over *all* distributions on its response types
and the linear program is exact (sharp bounds). When ``M`` holds several districts, their
independence is a product constraint no linear program can state: ``q`` is then allowed
to be any joint, which contains every product, so the bounds are valid but not proven sharp.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from scm_ppl.graphical.mixed_graph import ADMG

__all__ = ["CanonicalBlock", "World", "canonical_block", "relevant_variables"]

World = tuple[tuple[tuple[str, int], ...], tuple[tuple[str, int], ...]]
"""One world of a query: (sorted intervention items, sorted event items), value indices."""


def _strict_descendants(g: ADMG, targets: frozenset[str]) -> frozenset[str]:
    """Variables reached by a directed path from ``targets`` that avoids setting them."""
    if not targets:
        return frozenset()
    return frozenset(g.descendants(targets) - targets)


def relevant_variables(g: ADMG, seeds: frozenset[str]) -> frozenset[str]:
    """The smallest ancestral union of districts that contains ``seeds``.

    Variables outside it form their own districts with their own response types; with a
    distribution compatible with the graph they leave the query's bounds unchanged.
    """
    needed = frozenset(seeds)
    while True:
        grown = g.ancestors(needed)
        grown = frozenset().union(*(g.district_of(v) for v in grown)) if grown else grown
        if grown == needed:
            return needed
        needed = grown


@dataclass(frozen=True, eq=False)
class CanonicalBlock:
    """The response-type block that a query's linear program runs over.

    Attributes
    ----------
    variables : tuple of str
        ``M``: the variables whose joint response type is the LP's unknown, topologically
        ordered.
    parents : dict
        Each variable of ``M`` -> its parents (tuple, in the order of its response table).
    cardinality : dict
        Number of values of every relevant variable.
    conditioning : tuple of str
        ``F*``: the factual variables the LP conditions on (parents of ``M``, event and
        evidence variables among ``F``).
    districts : tuple of frozenset
        The districts of the graph that make up ``M``.
    types : numpy.ndarray
        Shape ``(T, len(variables))``: the response type of each variable in each joint type.
    """

    variables: tuple[str, ...]
    parents: dict[str, tuple[str, ...]]
    cardinality: dict[str, int]
    conditioning: tuple[str, ...]
    districts: tuple[frozenset[str], ...]
    types: np.ndarray = field(repr=False)

    @property
    def size(self) -> int:
        """The number ``T`` of joint response types (LP columns)."""
        return int(self.types.shape[0])

    @property
    def sharp(self) -> bool:
        """Whether ``M`` is at most one district, so the LP is exact."""
        return len(self.districts) <= 1

    def response(self, variable: str, type_index: int, parent_values: tuple[int, ...]) -> int:
        """The value (index) that response type ``type_index`` of ``variable`` gives
        parent values ``parent_values`` (indices, in the order of ``parents[variable]``)."""
        config = _config_index([self.cardinality[p] for p in self.parents[variable]], parent_values)
        return (type_index // self.cardinality[variable] ** config) % self.cardinality[variable]

    def condition_configs(self) -> np.ndarray:
        """Every joint value of :attr:`conditioning`, shape ``(n_f, len(conditioning))``."""
        shape = [self.cardinality[v] for v in self.conditioning]
        if not shape:
            return np.zeros((1, 0), dtype=np.int64)
        return np.indices(shape, dtype=np.int64).reshape(len(shape), -1).T

    def evaluate(
        self, intervention: dict[str, int], condition: np.ndarray | None = None
    ) -> dict[str, np.ndarray]:
        """Values of the conditioning and block variables in the world ``do(intervention)``.

        Parameters
        ----------
        intervention
            ``{variable: value index}``.
        condition
            Rows of conditioning values (default: all of :meth:`condition_configs`).

        Returns
        -------
        dict
            Variable -> integer array broadcastable to ``(n_f, T)``.
        """
        rows = self.condition_configs() if condition is None else condition
        values: dict[str, np.ndarray] = {}
        for i, name in enumerate(self.conditioning):
            values[name] = rows[:, i : i + 1]
        for name in self.conditioning:
            if name in intervention:
                values[name] = np.full((1, 1), intervention[name])
        for j, name in enumerate(self.variables):
            if name in intervention:
                values[name] = np.full((1, 1), intervention[name])
                continue
            k = self.cardinality[name]
            config = np.zeros((1, 1), dtype=np.int64)
            for parent in self.parents[name]:
                config = config * self.cardinality[parent] + values[parent]
            # digit ``config`` of the type index in base k is the response to that config
            values[name] = (self.types[None, :, j] // k**config) % k
        return values


def _config_index(cards: list[int], values: tuple[int, ...]) -> int:
    index = 0
    for card, value in zip(cards, values, strict=True):
        index = index * card + int(value)
    return index


def type_counts(g: ADMG, variables: tuple[str, ...], cardinality: dict[str, int]) -> dict[str, int]:
    """The number of response types of each variable: ``k ** (product of parents' k)``."""
    return {
        v: cardinality[v] ** math.prod(cardinality[p] for p in sorted(g.parents(v)))
        for v in variables
    }


def canonical_block(
    g: ADMG,
    worlds: tuple[World, ...],
    experiments: tuple[tuple[frozenset[str], frozenset[str]], ...],
    evidence: frozenset[str],
    cardinality: dict[str, int],
    max_types: int,
) -> CanonicalBlock:
    """Split the relevant variables into ``F`` and ``M`` and enumerate ``M``'s types.

    Parameters
    ----------
    worlds
        The query's worlds.
    experiments
        ``(intervened variables, recorded variables)`` of each experimental distribution.
    evidence
        Factual variables the query conditions on.
    cardinality
        Number of values of each variable.
    max_types
        Refuse blocks with more joint response types than this.

    Raises
    ------
    ValueError
        ``TooLarge`` (a subclass message) when the block needs more than ``max_types``.
    """
    targets = [frozenset(v for v, _ in iv) for iv, _ in worlds] + [x for x, _ in experiments]
    seeds = set(evidence)
    for iv, event in worlds:
        seeds |= {v for v, _ in iv} | {v for v, _ in event}
    for x, recorded in experiments:
        seeds |= x | recorded
    relevant = relevant_variables(g, frozenset(seeds))
    moved = frozenset().union(*(_strict_descendants(g, t) for t in targets))
    factual = set(relevant - moved)
    changed = True
    while changed:  # the largest ancestral union of districts inside the candidates
        changed = False
        for v in list(factual):
            if v in factual and not (g.district_of(v) <= factual and g.parents(v) <= factual):
                factual.discard(v)
                changed = True
    order = g.topological_order()
    block = tuple(v for v in order if v in relevant and v not in factual)
    event_vars = {v for _, event in worlds for v, _ in event}
    recorded = set().union(*(r for _, r in experiments)) if experiments else set()
    needs = set().union(*(g.parents(v) for v in block)) if block else set()
    needs |= event_vars | set(evidence) | recorded
    conditioning = tuple(v for v in order if v in factual and v in needs)
    counts = type_counts(g, block, cardinality)
    total = math.prod(counts.values())
    if total > max_types:
        detail = ", ".join(f"{v}: {n}" for v, n in counts.items())
        raise _TooLarge(total, max_types, detail)
    districts = []
    for v in block:
        d = g.district_of(v)
        if d not in districts:
            districts.append(d)
    grids = np.indices([counts[v] for v in block], dtype=np.int64) if block else None
    types = (
        grids.reshape(len(block), -1).T if grids is not None else np.zeros((1, 0), dtype=np.int64)
    )
    parents = {v: tuple(p for p in order if p in g.parents(v)) for v in block}
    return CanonicalBlock(
        variables=block,
        parents=parents,
        cardinality=dict(cardinality),
        conditioning=conditioning,
        districts=tuple(districts),
        types=types,
    )


class _TooLarge(Exception):
    """Internal: the block is too large (translated into BoundsError at the boundary)."""

    def __init__(self, total: int, limit: int, detail: str) -> None:
        super().__init__(total, limit, detail)
        self.total, self.limit, self.detail = total, limit, detail


def describe_worlds(worlds: tuple[World, ...], support: dict[str, tuple[Any, ...]]) -> str:
    """A readable conjunction such as ``Y_{X=1}=1 & Y_{X=0}=0``."""
    parts = []
    for iv, event in worlds:
        sub = ",".join(f"{v}={support[v][i]!r}" for v, i in iv)
        for v, i in event:
            parts.append(f"{v}_{{{sub}}}={support[v][i]!r}" if sub else f"{v}={support[v][i]!r}")
    return " & ".join(parts) if parts else "True"
