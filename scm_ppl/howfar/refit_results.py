"""The results of a refit ensemble: the fits, which of them tie, and the spread of a
query's answers across them (:class:`RefitSpread`, an ``InferenceData`` on demand)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from scm_ppl.core.validate import check_callable
from scm_ppl.errors import IdentifiabilityError
from scm_ppl.query.results import CausalResult

__all__ = ["RefitEnsemble", "RefitSpread"]


@dataclass(frozen=True, eq=False, repr=False)
class RefitSpread:
    """A query's answers across a refit ensemble.

    ``values[k]`` is the answer of fit ``k``; ``summary`` holds ``mean``, ``sd``, ``min``,
    ``max`` and ``range`` over the tied fits, ``range_all`` over every fit, and the indices
    ``tied``. :meth:`to_inference_data` gives an ``arviz.InferenceData`` whose
    ``predictions`` group has the answers with a ``refit`` dim.

    Examples
    --------
    >>> import jax, numpyro, numpyro.distributions as dist
    >>> def chain(n):                    # only the product a * b is seen by the data
    ...     a, b = numpyro.param("a", 1.0), numpyro.param("b", 1.0)
    ...     with numpyro.plate("unit", n):
    ...         x = numpyro.sample("x", dist.Normal(0.0, 1.0))
    ...         numpyro.sample("y", dist.Normal(b * a * x, 0.5))
    >>> x = jax.random.normal(jax.random.key(0), (200,))
    >>> from scm_ppl.howfar import refit_ensemble
    >>> ens = refit_ensemble(chain, {"x": x, "y": 1.5 * x}, 4, rng_key=jax.random.key(1),
    ...                      num_epochs=150, learning_rate=0.05)
    >>> spread = ens.spread(lambda s: s.params["a"] * s.params["b"])
    >>> round(spread.summary["mean"], 2), spread.values.shape
    (1.5, (4,))
    """

    values: np.ndarray
    tied: np.ndarray
    validation_losses: np.ndarray
    summary: dict[str, Any]
    result: CausalResult

    def to_inference_data(self) -> Any:
        return self.result.to_inference_data()

    def __repr__(self) -> str:
        s = self.summary
        return (
            f"RefitSpread(tied={s['tied']}, mean={s['mean']:.4g}, sd={s['sd']:.3g}, "
            f"range={s['range']:.3g})"
        )


@dataclass(frozen=True, eq=False, repr=False)
class RefitEnsemble:
    """K fits of one program (or a few architectures) to the same data.

    Attributes
    ----------
    fits
        The :class:`~scm_ppl.FittedSCM` of each refit, at its last epoch (the fits are
        compared at convergence: an early epoch that happens to suit the held-out rows
        would add spread that is not the model's).
    validation_losses
        Negative log-likelihood per held-out row of each fit (the same rows for all).
    tied
        Boolean mask: fits whose validation loss exceeds the best by at most
        ``max(2 * paired standard error, 1e-3)`` nats per row, or ``tie_tolerance``.
    tie_rule
        The rule used, in words.
    architecture
        Index into ``architectures`` of each fit (all 0 for one program).
    mode, reason
        ``"vmap"`` or ``"loop"``, and why a loop was used.
    seconds_per_epoch
        Wall time of one epoch of all K fits after compilation.

    Examples
    --------
    >>> import jax, numpyro, numpyro.distributions as dist
    >>> def chain(n):                    # only the product a * b is seen by the data
    ...     a, b = numpyro.param("a", 1.0), numpyro.param("b", 1.0)
    ...     with numpyro.plate("unit", n):
    ...         x = numpyro.sample("x", dist.Normal(0.0, 1.0))
    ...         numpyro.sample("y", dist.Normal(b * a * x, 0.5))
    >>> x = jax.random.normal(jax.random.key(0), (200,))
    >>> from scm_ppl.howfar import refit_ensemble
    >>> ens = refit_ensemble(chain, {"x": x, "y": 1.5 * x}, 4, rng_key=jax.random.key(1),
    ...                      num_epochs=150, learning_rate=0.05)
    >>> len(ens.fits), int(ens.tied.sum())   # four fits, all equally good on held-out rows
    (4, 4)
    """

    fits: list[Any]
    validation_losses: np.ndarray
    tied: np.ndarray
    tie_rule: str
    architecture: np.ndarray
    mode: str
    reason: str
    seconds_per_epoch: float

    @property
    def best(self) -> int:
        """Index of the fit with the lowest validation loss."""
        return int(np.argmin(self.validation_losses))

    def spread(self, query: Callable[[Any], Any], *, dims: Sequence[str] = ()) -> RefitSpread:
        """Evaluate ``query(fit)`` for every refit and summarise its spread over tied fits.

        Parameters
        ----------
        query
            ``query(scm)``: a number or array per fit (any scm_ppl query on the fitted
            SCM, or a closed form of its parameters).
        dims
            Names of the dims of an array answer (default ``query_axis_0, ...``).
        """
        check_callable("query", query, what="a function of a fitted SCM")
        answers = [np.asarray(query(f), np.float64) for f in self.fits]
        shapes = {a.shape for a in answers}
        if len(shapes) != 1:
            raise IdentifiabilityError(
                f"query returned arrays of different shapes across fits: {sorted(shapes)}; "
                "it must return the same shape for every fit."
            )
        values = np.stack(answers)
        extra = values.shape[1:]
        names = list(dims) or [f"query_axis_{i}" for i in range(len(extra))]
        if len(names) != len(extra):
            raise IdentifiabilityError(
                f"dims names {len(names)} dim(s) but the query returns shape {extra}."
            )
        tied = values[self.tied]
        summary = {
            "tied": [int(i) for i in np.flatnonzero(self.tied)],
            "mean": float(np.mean(tied)),
            "sd": float(np.std(tied, axis=0).max()),
            "min": float(np.min(tied)),
            "max": float(np.max(tied)),
            "range": float(np.max(np.ptp(tied, axis=0))),
            "range_all": float(np.max(np.ptp(values, axis=0))),
            "tie_rule": self.tie_rule,
        }
        coords = {"refit": list(range(len(values)))}
        groups: dict[str, Any] = {
            "predictions": {
                "query": values[None, None],
                "validation_loss": self.validation_losses[None, None],
                "tied": self.tied.astype(np.int8)[None, None],
            }
        }
        group_dims = {
            "predictions": {
                "query": ["refit", *names],
                "validation_loss": ["refit"],
                "tied": ["refit"],
            }
        }
        result = CausalResult(
            groups=groups,
            dims=group_dims,
            coords=coords,
            attrs={"method": "refit_ensemble", **summary},
        )
        return RefitSpread(
            values=values,
            tied=self.tied.copy(),
            validation_losses=self.validation_losses,
            summary=summary,
            result=result,
        )

    def __repr__(self) -> str:
        return (
            f"RefitEnsemble(fits={len(self.fits)}, tied={int(self.tied.sum())}, "
            f"best_validation_loss={float(self.validation_losses.min()):.5g}, mode={self.mode!r})"
        )
