"""Posterior contraction: does a query's posterior shrink as the data grow?

For Bayesian mechanisms (priors on weights, ``fit(method="nuts" | "svi")``) the posterior
sd of an identified query falls like ``n^{-1/2}``; that of a query the data do not pin
down levels off at the spread its prior leaves along the unidentified directions. The
slope of ``log sd`` against ``log n`` tells them apart.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from scm_ppl.core.validate import check_callable
from scm_ppl.errors import IdentifiabilityError, SettingsError
from scm_ppl.howfar.fisher import fit_at

__all__ = ["ContractionResult", "contraction"]


@dataclass(frozen=True, repr=False)
class ContractionResult:
    """Posterior spread of a query at growing data sizes.

    Attributes
    ----------
    sizes, posterior_sd, posterior_mean
        Rows used for each fit, and the query's posterior sd and mean there.
    slope, intercept
        Least-squares line ``log sd = intercept + slope * log n``.
    verdict
        ``"identified"`` (slope within ``slope_tolerance`` of -1/2), ``"not identified"``
        (within ``slope_tolerance`` of 0) or ``"inconclusive"``.
    slope_tolerance, method, num_draws
        The tolerance of the verdict, the fitting method and query draws per size.

    Examples
    --------
    >>> import jax, numpyro, numpyro.distributions as dist
    >>> def model(n):                    # a Bayesian slope: its posterior sd ~ n^(-1/2)
    ...     w = numpyro.sample("w", dist.Normal(0.0, 1.0))
    ...     with numpyro.plate("unit", n):
    ...         x = numpyro.sample("x", dist.Normal(0.0, 1.0))
    ...         numpyro.sample("y", dist.Normal(w * x, 1.0))
    >>> from scm_ppl.howfar import contraction
    >>> x = jax.random.normal(jax.random.key(0), (800,))
    >>> data = {"x": x, "y": 0.5 * x + jax.random.normal(jax.random.key(1), (800,))}
    >>> res = contraction(model, data, lambda s: s.point["w"], [100, 800],
    ...                   rng_key=jax.random.key(2), num_samples=300, num_warmup=200)
    >>> res.sizes.tolist(), bool(res.posterior_sd[1] < res.posterior_sd[0])
    ([100, 800], True)
    """

    sizes: np.ndarray
    posterior_sd: np.ndarray
    posterior_mean: np.ndarray
    slope: float
    intercept: float
    verdict: str
    slope_tolerance: float
    method: str
    num_draws: int

    def __repr__(self) -> str:
        return (
            f"ContractionResult(sizes={self.sizes.tolist()}, "
            f"posterior_sd={np.round(self.posterior_sd, 5).tolist()}, slope={self.slope:.3f}, "
            f"verdict={self.verdict!r})"
        )


def _query_draws(fitted: Any, query: Callable[[Any], Any], num_draws: int) -> np.ndarray:
    """``query`` at each of ``num_draws`` posterior draws of the global latent sites."""
    samples = fitted.posterior_samples
    total = len(next(iter(samples.values())))
    index = np.linspace(0, total - 1, min(num_draws, total)).round().astype(int)
    draws = {k: jnp.asarray(v)[index] for k, v in samples.items()}

    def at(point: Mapping[str, Any]) -> Any:
        return query(fit_at(fitted, fitted.params, dict(point)))

    first = at({k: v[0] for k, v in draws.items()})
    if jnp.size(first) != 1:
        raise IdentifiabilityError(
            f"query must return one number per posterior draw; it returned shape "
            f"{jnp.shape(first)}. Reduce it (e.g. jnp.mean) or ask about one entry."
        )
    try:
        values = jax.vmap(lambda p: jnp.reshape(at(p), ()))(draws)
    except (jax.errors.ConcretizationTypeError, jax.errors.TracerArrayConversionError):
        # a query written with NumPy: evaluate draw by draw
        values = [at({k: v[i] for k, v in draws.items()}) for i in range(len(index))]
    return np.asarray(values, np.float64).reshape(-1)


def contraction(
    model: Callable,
    data: Mapping[str, Any],
    query: Callable[[Any], Any] | Mapping[str, Callable[[Any], Any]],
    sizes: Sequence[int],
    *,
    method: str = "nuts",
    rng_key: jax.Array | None = None,
    num_draws: int = 500,
    slope_tolerance: float = 0.15,
    **fit_kwargs: Any,
) -> Any:
    """Posterior sd of ``query`` when fitting on the first ``n`` rows, for each ``n``.

    Parameters
    ----------
    model
        A program with Bayesian mechanisms: global latent sample sites (priors on
        weights), fitted with ``method``.
    data
        ``{site: rows}``; the first ``n`` rows are used at size ``n`` (shuffle first
        when the rows are ordered).
    query
        ``query(scm) -> scalar`` for a :class:`~scm_ppl.FittedSCM` whose global latents
        hold one posterior draw (vectorised over draws with ``vmap`` where it is written
        with jax.numpy). A mapping ``{label: query}`` evaluates several on the same fits.
    sizes
        Increasing row counts, at least two, each at most the number of rows.
    method
        ``"nuts"`` (default) or ``"svi"``; note that a mean-field ``"svi"`` posterior
        understates the spread along unidentified directions that mix parameters.
    num_draws
        Posterior draws at which the query is evaluated.
    slope_tolerance
        Half-width of the slope windows around -1/2 and 0 of the verdict.
    fit_kwargs
        Passed on to :func:`scm_ppl.fit` (``num_samples``, ``num_warmup``, ...).

    Returns
    -------
    ContractionResult
        Or ``{label: ContractionResult}`` for a mapping of queries.

    Examples
    --------
    >>> import jax, numpyro, numpyro.distributions as dist
    >>> def model(n):                    # a Bayesian slope: its posterior sd ~ n^(-1/2)
    ...     w = numpyro.sample("w", dist.Normal(0.0, 1.0))
    ...     with numpyro.plate("unit", n):
    ...         x = numpyro.sample("x", dist.Normal(0.0, 1.0))
    ...         numpyro.sample("y", dist.Normal(w * x, 1.0))
    >>> from scm_ppl.howfar import contraction
    >>> x = jax.random.normal(jax.random.key(0), (800,))
    >>> data = {"x": x, "y": 0.5 * x + jax.random.normal(jax.random.key(1), (800,))}
    >>> res = contraction(model, data, lambda s: s.point["w"], [50, 200, 800],
    ...                   rng_key=jax.random.key(2), num_samples=300, num_warmup=200)
    >>> res.verdict, abs(res.slope + 0.5) < 0.15
    ('identified', True)
    """
    from scm_ppl.learn.fitting import fit

    queries = dict(query) if isinstance(query, Mapping) else {"": query}
    check_callable("model", model)
    if not queries or not all(callable(q) for q in queries.values()):
        raise SettingsError(
            "query must be a callable scm -> float (or a non-empty mapping of them); got "
            f"{query!r}."
        )
    if method not in ("nuts", "svi"):
        raise SettingsError(
            f"contraction needs a Bayesian fit: method 'nuts' or 'svi'; got {method!r}."
        )
    if not isinstance(data, Mapping) or not data:
        raise IdentifiabilityError("data must be a non-empty mapping {site: rows}.")
    rows = len(np.asarray(next(iter(data.values()))))
    sizes_list = [int(s) for s in sizes]
    if (
        len(sizes_list) < 2
        or any(s < 2 for s in sizes_list)
        or sorted(set(sizes_list)) != sizes_list
    ):
        raise IdentifiabilityError(
            f"sizes must be at least two strictly increasing row counts >= 2; got {list(sizes)}."
        )
    if sizes_list[-1] > rows:
        raise IdentifiabilityError(
            f"sizes ask for up to {sizes_list[-1]} rows but data have {rows}; give more rows "
            "or smaller sizes."
        )
    key = jax.random.key(0) if rng_key is None else rng_key
    sds: dict[str, list[float]] = {k: [] for k in queries}
    means: dict[str, list[float]] = {k: [] for k in queries}
    used = 0
    for i, n in enumerate(sizes_list):
        subset = {k: np.asarray(v)[:n] for k, v in data.items()}
        fitted = fit(
            model,
            subset,
            method=method,
            rng_key=jax.random.fold_in(key, i),
            progress=False,
            **fit_kwargs,
        )
        if not fitted.posterior_samples:
            raise IdentifiabilityError(
                "The program has no global latent sample sites (weights with priors): its "
                "posterior cannot contract. Give mechanisms priors (e.g. prior_scale=) and "
                "fit with method='nuts' or 'svi'."
            )
        for label, fn in queries.items():
            values = _query_draws(fitted, fn, num_draws)
            used = len(values)
            sds[label].append(float(np.std(values)))
            means[label].append(float(np.mean(values)))
    results = {
        label: _summarise(sizes_list, sds[label], means[label], slope_tolerance, method, used)
        for label in queries
    }
    return results if isinstance(query, Mapping) else results[""]


def _summarise(
    sizes_list: list[int],
    sds: list[float],
    means: list[float],
    slope_tolerance: float,
    method: str,
    used: int,
) -> ContractionResult:
    sd = np.asarray(sds)
    if np.any(sd <= 0):
        raise IdentifiabilityError(
            f"The query's posterior sd is 0 at some size ({sd.tolist()}): it does not depend "
            "on the sampled parameters."
        )
    slope, intercept = np.polyfit(np.log(sizes_list), np.log(sd), 1)
    if abs(slope + 0.5) <= slope_tolerance:
        verdict = "identified"
    elif abs(slope) <= slope_tolerance:
        verdict = "not identified"
    else:
        verdict = "inconclusive"
    return ContractionResult(
        sizes=np.asarray(sizes_list),
        posterior_sd=sd,
        posterior_mean=np.asarray(means),
        slope=float(slope),
        intercept=float(intercept),
        verdict=verdict,
        slope_tolerance=float(slope_tolerance),
        method=method,
        num_draws=used,
    )
