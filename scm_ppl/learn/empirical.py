"""Empirical roots: root covariates that resample the data's rows, jointly.

A root of a :func:`~scm_ppl.learn.scm_from_graph` program (``roots="empirical"``) needs no
invented law: the roots of a unit are one row of the training table, drawn uniformly, so
their marginals *and* their dependence are the data's. In the program each root is its own
sample site; the joint law is written as a chain in the program's order,
``r1 ~ rows``, ``r2 | r1 ~ rows with that r1``, ... (so the program's graph has edges
``r1 -> r2 -> ...``: a factorisation of the rows' joint law, not a claim that one
covariate causes another).

**The stated coupling** (:data:`EMPIRICAL_COUPLING`): the noise of root ``j`` is one
uniform ``u``; sort the rows that match the unit's earlier roots by root ``j``, and the
value is the one at position ``floor(u * count)``: the inverse-CDF coupling of the
package's discrete sites, over the conditional rows. An observed root's noise is uniform on
its own step, so it replays to its own value in every world in which its earlier roots keep
theirs: abduction of an observed root is trivial and exact. Earlier roots set to a
combination no row holds (an intervention, a new unit) fall back to the column's marginal.

**What it cannot do.** The law is the training rows and nothing else: a new unit whose root
value no training row holds (an age of 33.5 where the rows have integers, a fresh earnings
figure) has probability zero, and a query on it says so and lists the units
(``ett(..., impossible="drop")`` drops them with a count). Ask about units beyond the
training rows with ``roots="model"``.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import numpyro.distributions as dist
from numpyro.distributions import constraints

from scm_ppl.core.noise import NoiseView, register_noise_view
from scm_ppl.errors import SettingsError

__all__ = ["EMPIRICAL_COUPLING", "EmpiricalRoot", "RootTable", "root_tables"]

EMPIRICAL_COUPLING = "empirical root: inverse-CDF over the training rows that match earlier roots"
_INT32 = 2**31 - 1


@dataclasses.dataclass(frozen=True, eq=False)
class RootTable:
    """One root's column of the training rows, sorted for conditional look-ups.

    ``values``: the column of the rows sorted by all roots in order; ``groups``: the group
    of each sorted row by its earlier roots (nondecreasing); ``keys``: ``group * levels +
    rank(value)`` (nondecreasing); ``uniques``: the column's ``levels`` distinct values;
    ``next_keys``: the distinct ``keys`` (their index is the group of the next root);
    ``marginal``: the column sorted alone. ``uniques`` and ``next_keys`` are padded to one
    entry per row (``inf``, the largest int32), so every root's look-ups have the same
    shapes and compile once for all roots.
    """

    name: str
    values: np.ndarray
    groups: np.ndarray
    keys: np.ndarray
    uniques: np.ndarray
    levels: np.ndarray
    next_keys: np.ndarray
    marginal: np.ndarray

    def next_group(self, value: Any, group: Any, known: Any) -> tuple[jax.Array, jax.Array]:
        """The group of the next root given this root's ``value``; ``known`` is False once
        the earlier roots form a combination no training row holds."""
        return _next_group(self.uniques, self.levels, self.next_keys, value, group, known)


@jax.jit
def _next_group(uniques, levels, next_keys, value, group, known):
    value = jnp.asarray(value, uniques.dtype)
    rank = jnp.searchsorted(uniques, value)
    hit = uniques[jnp.clip(rank, 0, uniques.shape[0] - 1)] == value
    key = group * levels + rank
    nxt = jnp.searchsorted(next_keys, key)
    hit = hit & (next_keys[jnp.clip(nxt, 0, next_keys.shape[0] - 1)] == key)
    return nxt.astype(jnp.int32), known & hit


@jax.jit
def _block(groups, group, known):
    lo = jnp.searchsorted(groups, group, side="left")
    hi = jnp.searchsorted(groups, group, side="right")
    return lo, hi, known & (hi > lo)


@jax.jit
def _steps(keys, uniques, levels, marginal, group, lo, known, value):
    value = jnp.asarray(value, uniques.dtype)
    base = group * levels
    below = jnp.searchsorted(keys, base + jnp.searchsorted(uniques, value, side="left"))
    upto = jnp.searchsorted(keys, base + jnp.searchsorted(uniques, value, side="right"))
    m_below = jnp.searchsorted(marginal, value, side="left")
    m_upto = jnp.searchsorted(marginal, value, side="right")
    return jnp.where(known, below - lo, m_below), jnp.where(known, upto - lo, m_upto)


@jax.jit
def _forward(values, marginal, lo, hi, known, u):
    size = jnp.where(known, hi - lo, marginal.shape[0])
    pos = jnp.clip(jnp.floor(u * size).astype(jnp.int32), 0, size - 1)
    cond = values[jnp.clip(lo + pos, 0, values.shape[0] - 1)]
    return jnp.where(known, cond, marginal[pos])


def root_tables(columns: dict[str, np.ndarray], roots: tuple[str, ...]) -> tuple[RootTable, ...]:
    """The :class:`RootTable` of each of ``roots`` (in that order) from the training columns.

    Examples
    --------
    >>> import numpy as np
    >>> tables = root_tables({"a": np.array([1.0, 0.0, 1.0]), "b": np.array([5, 6, 7])}, ("a", "b"))
    >>> tables[1].values.tolist(), tables[1].groups.tolist()
    ([6.0, 5.0, 7.0], [0, 1, 1])
    """
    data = [np.asarray(columns[r], np.float32) for r in roots]
    n = len(data[0])
    order = np.lexsort(data[::-1])  # sorted by the first root, then the second, ...
    groups = np.zeros(n, np.int64)
    out = []
    for name, column in zip(roots, data, strict=True):
        values = column[order]
        uniques = np.unique(values)
        if (int(groups.max()) + 1) * len(uniques) > _INT32:
            raise SettingsError(
                f"roots='empirical' on {n} rows: root '{name}' has too many distinct values "
                "for 32-bit look-ups. Subsample the rows, or pass roots='model'."
            )
        keys = groups * len(uniques) + np.searchsorted(uniques, values)
        next_keys, next_groups = np.unique(keys, return_inverse=True)
        out.append(
            RootTable(
                name=name,
                values=values,
                groups=groups.astype(np.int32),
                keys=keys.astype(np.int32),
                uniques=np.pad(uniques, (0, n - len(uniques)), constant_values=np.inf),
                levels=np.asarray(len(uniques), np.int32),
                next_keys=np.pad(
                    next_keys.astype(np.int32), (0, n - len(next_keys)), constant_values=_INT32
                ),
                marginal=np.sort(column),
            )
        )
        groups = next_groups.astype(np.int64)
    return tuple(out)


class EmpiricalRoot(dist.Distribution):
    """A root's value given the unit's earlier roots: one of the training rows that match
    them (their ``group``), uniformly; the column's marginal where ``known`` is False.

    Examples
    --------
    >>> import jax, jax.numpy as jnp, numpy as np
    >>> (table,) = root_tables({"a": np.array([0.0, 1.0, 1.0, 3.0])}, ("a",))
    >>> d = EmpiricalRoot(table, jnp.zeros(2, jnp.int32), jnp.ones(2, bool))
    >>> jnp.exp(d.log_prob(jnp.array([1.0, 2.0]))).tolist()
    [0.5, 0.0]
    """

    arg_constraints = {}  # noqa: RUF012 (numpyro reads this class attribute)
    reparametrized_params = []  # noqa: RUF012

    @property
    def support(self) -> constraints.Constraint:  # type: ignore[override]
        return constraints.real

    def __init__(self, table: RootTable, group: Any, known: Any, *, validate_args: Any = None):
        self.table = table
        group, known = jnp.broadcast_arrays(jnp.asarray(group), jnp.asarray(known))
        self.group = group
        self.lo, self.hi, self.known = _block(table.groups, group, known)
        super().__init__(batch_shape=jnp.shape(self.group), validate_args=validate_args)

    def _size(self) -> jax.Array:
        return jnp.where(self.known, self.hi - self.lo, len(self.table.marginal))

    def steps(self, value: Any) -> tuple[jax.Array, jax.Array]:
        """Rows before ``value`` and up to it in the unit's sorted rows: ``value`` takes
        the noise step ``[below, upto) / count``."""
        t = self.table
        return _steps(
            t.keys, t.uniques, t.levels, t.marginal, self.group, self.lo, self.known, value
        )

    def forward(self, u: Any) -> jax.Array:
        t = self.table
        return _forward(t.values, t.marginal, self.lo, self.hi, self.known, jnp.asarray(u))

    def sample(self, key: jax.Array | None, sample_shape: tuple[int, ...] = ()) -> jax.Array:
        assert key is not None  # numpyro passes a key to every sample call
        return self.forward(jax.random.uniform(key, sample_shape + self.batch_shape))

    def log_prob(self, value: Any, intermediates: Any = None) -> jax.Array:
        below, upto = self.steps(value)
        return jnp.log((upto - below) / self._size())


@register_noise_view(EmpiricalRoot)
def _empirical_view(d: EmpiricalRoot) -> NoiseView:
    def noise_given_value(x: Any) -> dist.Distribution:
        below, upto = d.steps(x)
        size = d._size()
        # A hundredth of a row inside the step: float rounding cannot cross to a neighbour.
        return dist.Uniform((below + 0.01) / size, (jnp.maximum(upto, below + 0.02) - 0.01) / size)

    return NoiseView(
        base=dist.Uniform(jnp.zeros(d.batch_shape), 1.0),
        forward=d.forward,
        inverse=None,
        noise_given_value=noise_given_value,
        coupling=EMPIRICAL_COUPLING,
    )
