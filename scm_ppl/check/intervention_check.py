"""Do the model's interventional predictions match experiments?

For each regime (as in :func:`scm_ppl.fit`: ``interventions[k]`` and the rows tagged
``k``; ``-1`` for observational rows) the model's predicted joint law of the
non-intervened per-unit sample sites under ``do(interventions[k])`` is compared with the
rows' by the energy distance (columns standardised on the pooled sample) and a
permutation p-value (every permutation in one JAX call). A value ``None`` in a regime
means "set to the values recorded in the rows": the prediction then runs one unit per
row with the row's intervened values. p-values are Holm-adjusted over the regimes.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from scm_ppl.check._ci import holm
from scm_ppl.check._kernels import energy_test
from scm_ppl.core.noise_simulation import as_scm, check_data
from scm_ppl.core.validate import check_prng_key
from scm_ppl.errors import DataError

__all__ = ["InterventionCheck", "RegimeRow", "interventions"]


@dataclass(frozen=True)
class RegimeRow:
    """The comparison of one regime's rows with the model's prediction.

    Attributes
    ----------
    regime
        The regime's index in ``interventions`` (``-1``: observational rows).
    interventions
        The sites the regime intervenes on.
    rows
        The number of rows in the regime.
    energy, p_value
        Energy distance of the observed and predicted laws, and its permutation p-value.
    p_adjusted, rejected
        The Holm-adjusted p-value over the regimes, and whether it is below ``alpha``.

    Examples
    --------
    The rows of an :func:`interventions` check (:attr:`InterventionCheck.rows`):

    >>> import numpy as np, numpyro, numpyro.distributions as dist
    >>> def model(n):
    ...     with numpyro.plate("unit", n):
    ...         x = numpyro.sample("x", dist.Normal(0.0, 1.0))
    ...         numpyro.sample("y", dist.Normal(2.0 * x, 1.0))
    >>> rng = np.random.default_rng(0)
    >>> rows = {"x": np.full(200, 1.0), "y": 2.0 + rng.normal(size=200)}
    >>> check = interventions(model, rows, interventions=[{"x": 1.0}], num_samples=200)
    >>> row = check.rows[0]
    >>> row.regime, row.interventions, row.rows, row.rejected
    (0, ('x',), 200, False)
    """

    regime: int
    interventions: tuple[str, ...]
    rows: int
    energy: float
    p_value: float
    p_adjusted: float
    rejected: bool


@dataclass(frozen=True, eq=False, kw_only=True)
class InterventionCheck:
    """The verdict of :func:`interventions`: one :class:`RegimeRow` per regime.

    ``rejected`` is true when any regime's Holm-adjusted p-value is below ``alpha``;
    :meth:`table` lists the regimes.

    Examples
    --------
    >>> import numpy as np, numpyro, numpyro.distributions as dist
    >>> def model(n):
    ...     with numpyro.plate("unit", n):
    ...         x = numpyro.sample("x", dist.Normal(0.0, 1.0))
    ...         numpyro.sample("y", dist.Normal(2.0 * x, 1.0))
    >>> rng = np.random.default_rng(0)
    >>> rows = {"x": np.full(200, 1.0), "y": 2.0 + rng.normal(size=200)}
    >>> check = interventions(model, rows, interventions=[{"x": 1.0}], num_samples=200)
    >>> check.rejected
    False
    >>> check.table()[["interventions", "rows", "rejected"]]  # doctest: +NORMALIZE_WHITESPACE
           interventions  rows  rejected
    regime
    0               (x,)   200     False
    """

    rows: tuple[RegimeRow, ...]
    alpha: float

    @property
    def rejected(self) -> bool:
        return any(r.rejected for r in self.rows)

    def table(self) -> Any:
        import pandas as pd

        return pd.DataFrame([r.__dict__ for r in self.rows]).set_index("regime")


def interventions(
    fitted: Any,
    rows: Mapping[str, Any],
    *,
    interventions: Sequence[Mapping[str, Any]],
    regime: Any = None,
    alpha: float = 0.05,
    num_samples: int = 1000,
    num_permutations: int = 200,
    rng_key: jax.Array | None = None,
    plate: str | None = None,
    size_arg: str | None = None,
    model_kwargs: Mapping[str, Any] | None = None,
) -> InterventionCheck:
    """Compare predicted with observed interventional distributions, per regime.

    Parameters
    ----------
    fitted
        A :class:`~scm_ppl.FittedSCM` or a NumPyro program with fixed parameters.
    rows
        ``{site: array}`` with every per-unit sample site, one row per unit.
    interventions, regime
        The regimes and each row's regime (``-1``: observational); ``regime=None`` puts
        every row in regime 0.
    alpha
        Family-wise level over the regimes (Holm).
    num_samples
        Predicted units per regime whose intervened values are fixed.
    num_permutations
        Permutations of the energy-distance test.
    rng_key, plate, size_arg, model_kwargs
        As for :func:`mechanisms`.

    Returns
    -------
    InterventionCheck

    Examples
    --------
    >>> import numpy as np, numpyro, numpyro.distributions as dist
    >>> def model(n):
    ...     with numpyro.plate("unit", n):
    ...         x = numpyro.sample("x", dist.Normal(0.0, 1.0))
    ...         numpyro.sample("y", dist.Normal(2.0 * x, 1.0))
    >>> rng = np.random.default_rng(0)
    >>> rows = {"x": np.full(500, 1.0), "y": 2.0 + rng.normal(size=500)}
    >>> interventions(model, rows, interventions=[{"x": 1.0}]).rejected
    False
    """
    scm = as_scm(fitted, plate=plate, size_arg=size_arg, model_kwargs=model_kwargs)
    table = check_data(rows, list(scm.noisy), what="rows", scm=scm)
    count = len(next(iter(table.values())))
    labels = np.zeros(count, int) if regime is None else np.asarray(regime, int).reshape(-1)
    if labels.shape != (count,):
        raise DataError(f"regime has {labels.size} tags for {count} rows; give one per row.")
    ivs = [dict(iv) for iv in interventions]
    if np.any((labels < -1) | (labels >= len(ivs))):
        raise DataError(f"regime tags must lie in -1..{len(ivs) - 1}.")
    key = jax.random.key(0) if rng_key is None else check_prng_key(rng_key)
    results = []
    for k in sorted(set(labels.tolist())):
        sel = labels == k
        spec = {} if k < 0 else ivs[k]
        recorded = [s for s, v in spec.items() if v is None]
        n = int(sel.sum()) if recorded else num_samples
        act = {s: (jnp.asarray(table[s][sel]) if v is None else v) for s, v in spec.items()}
        key, sub = jax.random.split(key)
        tr = scm.trace(scm.values, n, sub, intervene=act or None)
        kept = [s for s in scm.noisy if s not in spec]
        pred = np.concatenate([np.asarray(tr[s]["value"]).reshape(n, -1) for s in kept], 1)
        obs = np.concatenate([table[s][sel].reshape(int(sel.sum()), -1) for s in kept], 1)
        e, p = energy_test(obs, pred, num_permutations=num_permutations, seed=int(k) + 1)
        results.append((k, tuple(spec), int(sel.sum()), e, p))
    adjusted = holm(np.array([r[4] for r in results]))
    out = tuple(
        RegimeRow(k, names, m, e, p, float(a), bool(a < alpha))
        for (k, names, m, e, p), a in zip(results, adjusted, strict=True)
    )
    return InterventionCheck(rows=out, alpha=alpha)
