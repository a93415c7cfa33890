"""Population effects over the user's own rows: ``ate(..., rows=df)``, ``ett(..., rows=df)``.

:func:`~scm_ppl.query.estimates.ate` and :func:`~scm_ppl.query.estimates.ett` without
``rows`` average over units the program generates. With ``rows`` they answer for the
units in the table: each row is the evidence of one unit, its noise is abducted (exactly
where the mechanisms invert, by their stated coupling where not), and its outcome is
replayed under ``do(treatment = treated)`` and ``do(treatment = control)``. The effect is
the mean over rows of each row's expected difference (for ``ett``, over the rows with
``treatment == treated``).

**Uncertainty, stated.** The interval is a percentile bootstrap over rows (the rows are a
sample of the population) and, when a sequence of fits is given (refits over seeds or
resamples, or draws of a Bayesian fit passed as separate programs), over fits: each
resample draws rows with replacement and one fit at random. The Monte-Carlo error of the
abduction draws sits inside each row's mean and is small next to both with the default
``num_samples``; the result's ``uncertainty`` says what was included.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

import jax
import numpy as np

from scm_ppl.core.frames import as_columns, site_levels
from scm_ppl.core.validate import check_method, positive_int
from scm_ppl.errors import (
    DataWarning,
    EstimandError,
    EvidenceError,
)
from scm_ppl.query.identification import world_margins_only
from scm_ppl.query.queries import counterfactual

__all__ = ["IMPOSSIBLE", "RowsEstimate", "effect_over_rows"]

IMPOSSIBLE = ("raise", "drop")


class RowsEstimate(NamedTuple):
    """An effect averaged over given rows, with a bootstrap interval.

    Attributes
    ----------
    value
        Mean over rows (and fits) of each row's expected treated-minus-control outcome.
    interval
        ``(low, high)`` percentile bootstrap interval at ``level``.
    level
        Coverage of ``interval`` (0.95 by default).
    std_error
        Standard deviation of the bootstrap resamples.
    num_rows
        Rows averaged over (after any explicit drop).
    num_fits
        Number of fitted programs combined.
    per_row
        ``(num_fits, num_rows)`` per-row effects.
    couplings
        ``{site: coupling}`` assumed for mechanisms that do not invert.
    uncertainty
        What the interval includes, in words.
    attrs
        ``dropped``: ``{fit index: unit indices}`` dropped for impossible evidence.

    Examples
    --------
    :func:`~scm_ppl.query.ate` and :func:`~scm_ppl.query.ett` return one when given
    ``rows``:

    >>> import jax, numpyro, numpyro.distributions as dist, pandas as pd
    >>> from scm_ppl.query import ate
    >>> def model(n=1):
    ...     with numpyro.plate("unit", n):
    ...         t = numpyro.sample("t", dist.Bernoulli(0.5))
    ...         numpyro.sample("y", dist.Normal(2.0 * t, 1.0))
    >>> rows = pd.DataFrame({"t": [0, 1, 1], "y": [0.3, 1.0, 2.5]})
    >>> est = ate(model, "t", "y", rng_key=jax.random.key(0), rows=rows)
    >>> round(est.value, 4), est.num_rows, est.num_fits, est.per_row.shape
    (2.0, 3, 1, (1, 3))
    >>> [round(v, 4) for v in est.interval]  # every row's effect is 2: a point interval
    [2.0, 2.0]
    """

    value: float
    interval: tuple[float, float]
    level: float
    std_error: float
    num_rows: int
    num_fits: int
    per_row: np.ndarray
    couplings: dict[str, str]
    uncertainty: str
    attrs: dict[str, Any]


def _per_row(model, evidence, treatment, outcome, treated, control, key, num_samples, impossible):
    n = len(next(iter(evidence.values())))
    keep = np.arange(n)
    for attempt in range(2):
        sub = {k: v[keep] for k, v in evidence.items()}
        try:
            # Each row's two-world counterfactual given its outcome is not identified
            # (ID*), but the reported average over rows needs only the margins: it is
            # identified whenever the interventional part is, warned about alone.
            with world_margins_only():
                result = counterfactual(
                    model,
                    sub,
                    {"treated": {treatment: treated}, "control": {treatment: control}},
                    rng_key=key,
                    num_samples=num_samples,
                    model_kwargs={"n": len(keep)},
                )
        except EvidenceError as err:
            units = getattr(err, "units", None)
            if impossible != "drop" or units is None or attempt:
                raise
            dropped = keep[list(units)]
            warnings.warn(
                f"Dropped {len(dropped)} of {n} row(s) whose evidence is impossible under the "
                f"fitted model (rows {dropped[:20].tolist()}); the estimate is over the others.",
                DataWarning,
                stacklevel=4,
            )
            keep = np.setdiff1d(keep, dropped)
            continue
        y1 = np.asarray(result.world("treated")[outcome], np.float64)
        y0 = np.asarray(result.world("control")[outcome], np.float64)
        effect = np.full(n, np.nan)
        effect[keep] = (y1 - y0).reshape(-1, len(keep)).mean(0)
        return effect, result.attrs["couplings"], np.setdiff1d(np.arange(n), keep)
    raise AssertionError("unreachable")  # pragma: no cover


def effect_over_rows(
    models: Callable | Sequence[Callable],
    treatment: str,
    outcome: str,
    rows: Any,
    *,
    rng_key: jax.Array,
    which: str = "ate",
    treated: Any = 1,
    control: Any = 0,
    num_samples: int = 200,
    num_bootstrap: int = 1000,
    level: float = 0.95,
    impossible: str = "raise",
) -> RowsEstimate:
    """The ATE (``which="ate"``) or ETT (``"ett"``) over ``rows`` (see the module docs).

    Examples
    --------
    >>> import jax, numpy as np, numpyro, numpyro.distributions as dist
    >>> def model(n=1):
    ...     with numpyro.plate("unit", n):
    ...         t = numpyro.sample("t", dist.Bernoulli(0.5))
    ...         numpyro.sample("y", dist.Normal(2.0 * t, 1.0))
    >>> rows = {"t": np.array([0, 1, 1]), "y": np.array([0.3, 1.0, 2.5])}
    >>> est = effect_over_rows(model, "t", "y", rows, rng_key=jax.random.key(0))
    >>> round(est.value, 4)
    2.0
    """
    check_method(which, ("ate", "ett"))
    check_method(impossible, IMPOSSIBLE)
    positive_int("num_samples", num_samples)
    positive_int("num_bootstrap", num_bootstrap)
    fits = [models] if callable(models) else list(models)
    if not fits:
        raise EstimandError("models= is an empty sequence; give one fitted program or more.")
    columns = as_columns(rows, what="rows", levels=site_levels(fits[0]))
    if not isinstance(columns, dict) or treatment not in columns or outcome not in columns:
        raise EstimandError(
            f"rows must be a DataFrame or mapping with columns '{treatment}' and '{outcome}' "
            "(one row per unit, every observed column of the program)."
        )
    columns = {k: np.asarray(v) for k, v in columns.items()}
    if which == "ett":
        chosen = columns[treatment] == np.asarray(treated)
        if not chosen.any():
            raise EstimandError(f"No row has {treatment} = {treated!r}; the ETT is undefined.")
        columns = {k: v[chosen] for k, v in columns.items()}
    effects, couplings, dropped = [], {}, {}
    for i, (model, key) in enumerate(zip(fits, jax.random.split(rng_key, len(fits)), strict=True)):
        effect, used, gone = _per_row(
            model, columns, treatment, outcome, treated, control, key, num_samples, impossible
        )
        effects.append(effect)
        couplings.update(used)
        if gone.size:
            dropped[i] = gone.tolist()
    per_row = np.stack(effects)
    ok = ~np.isnan(per_row).any(axis=0)
    kept = per_row[:, ok]
    rng = np.random.default_rng(np.asarray(jax.random.key_data(rng_key)).ravel().tolist())
    idx = rng.integers(kept.shape[1], size=(num_bootstrap, kept.shape[1]))
    fit = rng.integers(kept.shape[0], size=num_bootstrap)
    boot = kept[fit[:, None], idx].mean(axis=1)
    tail = (1 - level) / 2
    low, high = np.quantile(boot, [tail, 1 - tail])
    spread = f" and over {len(fits)} fits" if len(fits) > 1 else " (one fit: no refit spread)"
    return RowsEstimate(
        value=float(kept.mean()),
        interval=(float(low), float(high)),
        level=level,
        std_error=float(boot.std(ddof=1)),
        num_rows=int(kept.shape[1]),
        num_fits=len(fits),
        per_row=per_row,
        couplings=couplings,
        uncertainty=f"percentile bootstrap over {kept.shape[1]} rows{spread}, "
        f"{num_bootstrap} resamples; abduction Monte-Carlo error inside each row's mean",
        attrs={"dropped": dropped, "num_dropped": int((~ok).sum())},
    )
