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

**New units: values no training row holds.** Generated units are always training rows. A
*continuous* root's value that no row holds (a fresh earnings figure) is still scored when
it is evidence, by the interpolated empirical CDF of the rows that match the unit's earlier
roots: the piecewise-linear CDF through the sorted values at the mid-points of their steps,
``F(v_k) = (k + 1/2) / count``. The value's noise is its quantile ``q`` under that CDF,
stored as ``-q`` (a noise the uniform base never draws, so the sampled law is unchanged),
and replays through the interpolated inverse CDF: to the value itself while the earlier
roots keep theirs, to the same quantile of the new rows when an intervention moves them
(the inverse-CDF coupling again). Its ``log_prob`` is that CDF's density, ``1 / (count *
gap)`` between its two neighbours. Replay is exact up to float32 rounding of ``q``: about
``count * 1e-7`` of that gap (1e-4 of it for 1,000 rows); a zero is replayed exactly, a
nonzero value closer to zero than that rounding is not (a query flags it). **What it
cannot do:** a value outside the rows' range (below the smallest or above the largest that
match) has no quantile and probability zero, and a query on it says so and lists the units
(``ett(..., impossible="drop")`` drops them with a count); a discrete root's unseen level
is refused as everywhere (its levels are the training levels). Ask about units far beyond
the training rows with ``roots="model"``.

**Scoring, and why an empirical root is never inferred.** ``log_prob`` is a mass for a
value a row holds and a density for a continuous value none holds: two measures. That is
sound only while the root is observed: its score is then a constant of the posterior over
the other latents. A *latent* root upstream of the evidence would need a posterior over
rows (masses), and its later roots are looked up by exact row values, which a sampler
moving it through the reals (NUTS, SVI) never hits: a silently wrong answer. So a query
refuses it before any compilation (:class:`~scm_ppl.AbductionError`, from
:mod:`scm_ppl.query.abduction`); a latent root with no evidence downstream keeps its
prior and is drawn from its rows, never scored.
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
    shapes and compile once for all roots. ``continuous``: values no row holds are scored
    and replayed through the interpolated CDF (see the module notes).
    """

    name: str
    values: np.ndarray
    groups: np.ndarray
    keys: np.ndarray
    uniques: np.ndarray
    levels: np.ndarray
    next_keys: np.ndarray
    marginal: np.ndarray
    continuous: bool = False

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


@jax.jit
def _neighbours(values, marginal, lo, known, k):
    """The sorted values at positions ``k`` and ``k + 1`` of the unit's rows."""
    at = lambda i: jnp.where(
        known,
        values[jnp.clip(lo + i, 0, values.shape[0] - 1)],
        marginal[jnp.clip(i, 0, marginal.shape[0] - 1)],
    )
    return at(k), at(k + 1)


@jax.jit
def _quantile(values, marginal, lo, known, size, below, value):
    """The interpolated-CDF quantile of an unseen ``value`` (``below`` rows lie under it)
    and the log density there; ``-inf`` outside the rows' range."""
    value = jnp.asarray(value, values.dtype)
    a, b = _neighbours(values, marginal, lo, known, below - 1)
    inside = (below >= 1) & (below <= size - 1) & (b > a)
    frac = jnp.where(inside, (value - a) / jnp.where(inside, b - a, 1.0), 0.5)
    q = (below - 0.5 + frac) / size
    log_density = jnp.where(inside, -jnp.log(size * jnp.where(inside, b - a, 1.0)), -jnp.inf)
    return q, log_density


@jax.jit
def _interpolate(values, marginal, lo, known, size, q):
    """The interpolated inverse CDF at quantile ``q`` of the unit's rows."""
    t = q * size - 0.5
    k = jnp.clip(jnp.floor(t).astype(jnp.int32), 0, jnp.maximum(size - 2, 0))
    frac = jnp.clip(t - k, 0.0, 1.0)
    a, b = _neighbours(values, marginal, lo, known, k)
    out = a + frac * (b - a)
    # Rounding of q moves the value by up to this much: within it, a zero between the two
    # neighbours is zero again (a relative check of the replay could not accept it).
    slack = (b - a) * (1e-5 + 3e-7 * size)
    return jnp.where((a < 0) & (b > 0) & (jnp.abs(out) <= slack), 0.0, out)


def root_tables(
    columns: dict[str, np.ndarray], roots: tuple[str, ...], continuous: tuple[str, ...] = ()
) -> tuple[RootTable, ...]:
    """The :class:`RootTable` of each of ``roots`` (in that order) from the training columns;
    the roots named in ``continuous`` score and replay values no row holds.

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
                continuous=name in continuous,
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
        t, u = self.table, jnp.asarray(u)
        rows = _forward(t.values, t.marginal, self.lo, self.hi, self.known, u)
        if not t.continuous:
            return rows
        # A negative noise is the quantile of a value no row holds (never drawn: see above).
        new = _interpolate(t.values, t.marginal, self.lo, self.known, self._size(), -u)
        return jnp.where(u < 0, new, rows)

    def quantile(self, value: Any) -> tuple[jax.Array, jax.Array, jax.Array]:
        """``(seen, q, log_density)``: whether a row holds ``value``, and for one that no
        row holds its interpolated-CDF quantile and log density (continuous roots)."""
        below, upto = self.steps(value)
        t = self.table
        q, log_density = _quantile(
            t.values, t.marginal, self.lo, self.known, self._size(), below, value
        )
        return upto > below, q, log_density

    def sample(self, key: jax.Array | None, sample_shape: tuple[int, ...] = ()) -> jax.Array:
        assert key is not None  # numpyro passes a key to every sample call
        return self.forward(jax.random.uniform(key, sample_shape + self.batch_shape))

    def log_prob(self, value: Any, intermediates: Any = None) -> jax.Array:
        below, upto = self.steps(value)
        mass = jnp.log((upto - below) / self._size())
        if not self.table.continuous:
            return mass
        seen, _, log_density = self.quantile(value)
        return jnp.where(seen, mass, log_density)


@register_noise_view(EmpiricalRoot)
def _empirical_view(d: EmpiricalRoot) -> NoiseView:
    def noise_given_value(x: Any) -> dist.Distribution:
        below, upto = d.steps(x)
        size = d._size()
        # A hundredth of a row inside the step: float rounding cannot cross to a neighbour.
        low = (below + 0.01) / size
        high = (jnp.maximum(upto, below + 0.02) - 0.01) / size
        if d.table.continuous:  # a value no row holds: minus its quantile, as narrow as
            seen, q, _ = d.quantile(x)  # float32 allows (two ulps) without being empty
            half = jnp.maximum(1e-5 / size, 2.4e-7 * q)
            low = jnp.where(seen, low, -q - half)
            high = jnp.where(seen, high, -q + half)
        return dist.Uniform(low, high)

    return NoiseView(
        base=dist.Uniform(jnp.zeros(d.batch_shape), 1.0),
        forward=d.forward,
        inverse=None,
        noise_given_value=noise_given_value,
        coupling=EMPIRICAL_COUPLING,
    )
