"""Evaluating an identified estimand on continuous data, or on a model's samples.

An estimand from :func:`~scm_ppl.identify` is a formula in observational probabilities.
On discrete data it evaluates exactly (:meth:`~scm_ppl.IdentificationResult.evaluate`).
On continuous data the same formula is evaluated on a *discretised* joint: every
continuous variable is cut into quantile bins, the plug-in joint of the bin codes is
built from the rows, and the formula gives ``P(outcome bin | do(treatment bin))``. The
mean outcome under each treatment bin is then ``Σ_b P(b | do(x)) · E[outcome | bin b]``,
with the bin means taken from the rows themselves, and it is reported at the mean
treatment value of the bin.

The rows are either data or a Monte-Carlo sample of a program's observational
distribution (for a fitted SCM: the distribution it learned), so the identified answer
can be set beside the model's own :func:`~scm_ppl.interventional` answer: where they
disagree, the model's answer rests on more than its graph and the data.

Discretisation costs a bias that shrinks as bins narrow: a mediator cut into bins no
longer carries *all* of the treatment's effect (a little flows through the position
within a bin). Both the number of rows and the number of bins are reported with the
result; refine ``bins`` (and give more rows) to check that an answer has settled.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

import jax
import numpy as np
from numpyro.infer import Predictive

from scm_ppl.core.validate import check_prng_key, positive_int
from scm_ppl.errors import DataError, EstimandError, NotIdentifiableError, SettingsError
from scm_ppl.graphical.estimand import Expression
from scm_ppl.graphical.joint import DiscreteJoint


class IdentifiedQuery(Protocol):
    """What evaluation reads of an :class:`~scm_ppl.IdentificationResult` (a protocol, so
    this module needs nothing from the ID algorithm that uses it)."""

    @property
    def query(self) -> str: ...
    @property
    def hedge(self) -> Any: ...
    @property
    def estimand(self) -> Expression | None: ...
    @property
    def treatment(self) -> tuple[str, ...]: ...
    @property
    def outcome(self) -> tuple[str, ...]: ...
    @property
    def given(self) -> tuple[str, ...]: ...
    @property
    def graph(self) -> Any: ...


__all__ = ["SampledEvaluation", "evaluate_sampled"]


@dataclass(frozen=True)
class SampledEvaluation:
    """An identified estimand evaluated on continuous rows.

    Attributes
    ----------
    query
        The query, e.g. ``"P(y | do(x))"``.
    axes
        The grid's variables in order: ``(*treatment, *given)``.
    values
        Per variable of ``axes``, the value each grid point stands for: the mean of the
        rows in that bin (or the level itself, for a discrete variable). The two outer
        bins of a continuous variable are open-ended and wide, so the value they stand
        for is the least precise; read effects off the interior bins.
    outcome_means
        Per outcome, ``E[outcome | do(treatment), given]`` on the grid of ``axes``.
    distribution
        ``P(outcome codes | do(treatment), given)``: axes ``(*axes, *outcome)``.
    outcome_values
        Per outcome, the value each outcome code stands for.
    num_rows, bins
        How many rows and how many bins per continuous variable were used.
    undefined
        How many grid points were left NaN because the formula needed a stratum with no
        rows (positivity fails in the sample: fewer bins or more rows help).
    """

    query: str
    axes: tuple[str, ...]
    values: dict[str, np.ndarray]
    outcome_means: dict[str, np.ndarray]
    distribution: np.ndarray
    outcome_values: dict[str, np.ndarray]
    num_rows: int
    bins: int
    undefined: int


def _rows_from(
    source: Any,
    names: tuple[str, ...],
    *,
    num_samples: int,
    rng_key: jax.Array | None,
    model_args: tuple,
    model_kwargs: Mapping[str, Any] | None,
) -> dict[str, np.ndarray]:
    """Columns ``{name: 1-D array}`` from data, or from the program's observational samples."""
    if isinstance(source, Mapping):
        missing = sorted(set(names) - set(source))
        if missing:
            raise DataError(
                f"The data lacks the columns {missing} that the estimand needs; it has "
                f"{sorted(source)}."
            )
        columns = {n: np.asarray(source[n]) for n in names}
        for name, col in columns.items():
            if col.ndim != 1 or col.shape != columns[names[0]].shape:
                raise DataError(
                    f"Column {name!r} must be 1-D and as long as the others; got shape "
                    f"{col.shape} (the first column has {columns[names[0]].shape})."
                )
        return columns
    if not callable(source):
        raise SettingsError(
            "evaluate_sampled needs data ({name: 1-D array}) or a program (a NumPyro model "
            f"or a fitted SCM) to sample from; got {type(source).__name__}."
        )
    check_prng_key(rng_key)  # sampling a program's observational distribution needs one
    # Forward draws of the program itself (no query machinery: identification sits below it).
    predictions = Predictive(source, num_samples=num_samples)(
        rng_key, *model_args, **dict(model_kwargs or {})
    )
    missing = sorted(set(names) - set(predictions))
    if missing:
        raise EstimandError(
            f"The program has no sites {missing}, which the estimand needs; it records "
            f"{sorted(predictions)}."
        )
    return {n: np.asarray(predictions[n]).reshape(-1) for n in names}


def _codes(column: np.ndarray, name: str, bins: int, max_levels: int):
    """Integer codes and the value each code stands for (levels, or bin means)."""
    if not np.all(np.isfinite(column)):
        raise DataError(f"Column {name!r} holds NaN or inf; drop or impute those rows first.")
    levels = np.unique(column)
    if levels.size <= max_levels:
        codes = np.searchsorted(levels, column)
        return codes, levels.astype(float)
    edges = np.unique(np.quantile(column, np.linspace(0.0, 1.0, bins + 1)[1:-1]))
    codes = np.searchsorted(edges, column, side="right")
    counts = np.bincount(codes, minlength=edges.size + 1)
    means = np.bincount(codes, weights=column, minlength=edges.size + 1) / np.maximum(counts, 1)
    return codes, means


def evaluate_sampled(
    result: IdentifiedQuery,
    source: Mapping[str, Any] | Callable,
    *,
    rng_key: jax.Array | None = None,
    num_samples: int = 100_000,
    bins: int = 16,
    outcome_bins: int = 256,
    max_levels: int = 10,
    model_args: tuple = (),
    model_kwargs: Mapping[str, Any] | None = None,
) -> SampledEvaluation:
    """Evaluate an identified estimand on continuous rows; see the module docstring.

    Parameters
    ----------
    result
        An identifiable :class:`~scm_ppl.IdentificationResult`.
    source
        Data ``{name: 1-D array}`` holding every variable of the estimand, or a program
        (a NumPyro model or a :class:`~scm_ppl.FittedSCM`) whose observational
        distribution is sampled.
    rng_key, num_samples
        For a program: the key and the number of draws (each draw runs every unit).
    bins
        Quantile bins per continuous treatment, conditioning or summed variable.
    outcome_bins
        Quantile bins per continuous outcome (finer: outcomes are never conditioned on).
    max_levels
        A variable with at most this many distinct values is treated as discrete.

    Examples
    --------
    >>> import networkx as nx, numpy as np
    >>> from scm_ppl import identify
    >>> rng = np.random.default_rng(0)
    >>> z = rng.normal(size=200_000); x = z + rng.normal(size=z.size)
    >>> y = 2 * x + 3 * z + rng.normal(size=z.size)
    >>> r = identify(nx.DiGraph([("z", "x"), ("z", "y"), ("x", "y")]), "x", "y")
    >>> ev = r.evaluate_sampled({"x": x, "y": y, "z": z}, bins=10)
    >>> interior = slice(1, -1)  # the open-ended tail bins stand for their values loosely
    >>> slope = np.polyfit(ev.values["x"][interior], ev.outcome_means["y"][interior], 1)[0]
    >>> print(f"{slope:.1f}")  # the effect; the confounded association is 3.5
    2.0
    """
    if result.estimand is None:
        raise NotIdentifiableError(
            f"{result.query} is not identifiable ({result.hedge}); there is no formula to "
            "evaluate. Add assumptions or use experimental data."
        )
    positive_int("num_samples", num_samples)
    positive_int("bins", bins)
    positive_int("outcome_bins", outcome_bins)
    positive_int("max_levels", max_levels)
    if bins < 2 or outcome_bins < 2:
        raise SettingsError(
            f"bins and outcome_bins must be at least 2; got {bins}, {outcome_bins}."
        )
    axes = (*result.treatment, *result.given)
    names = tuple(sorted(set(result.graph.nodes) & _variables(result)))
    columns = _rows_from(
        source,
        names,
        num_samples=num_samples,
        rng_key=rng_key,
        model_args=model_args,
        model_kwargs=model_kwargs,
    )
    num_rows = len(next(iter(columns.values())))
    if num_rows < 2:
        raise DataError(f"The rows number {num_rows}; give at least a few hundred.")
    codes, stands_for = {}, {}
    for name, column in columns.items():
        # The outcome is never conditioned on, so fine bins cost no positivity; they keep
        # the bin means close to the outcome's own values in every stratum.
        k = outcome_bins if name in result.outcome else bins
        codes[name], stands_for[name] = _codes(column, name, k, max_levels)
    cards = {n: len(v) for n, v in stands_for.items()}
    joint = DiscreteJoint.from_data(codes, cardinality=cards)
    table = result.estimand.array(joint, (*axes, *result.outcome), strict=False)
    grid_ndim = len(axes)
    means = {}
    for i, outcome in enumerate(result.outcome):
        other = tuple(grid_ndim + j for j in range(len(result.outcome)) if j != i)
        marginal = table.sum(axis=other) if other else table
        means[outcome] = marginal @ stands_for[outcome]
    undefined = int(np.isnan(table.reshape(*table.shape[:grid_ndim], -1)).any(axis=-1).sum())
    return SampledEvaluation(
        query=result.query,
        axes=axes,
        values={n: stands_for[n] for n in axes},
        outcome_means=means,
        distribution=table,
        outcome_values={n: stands_for[n] for n in result.outcome},
        num_rows=num_rows,
        bins=bins,
        undefined=undefined,
    )


def _variables(result: IdentifiedQuery) -> set[str]:
    """Every variable the estimand mentions, free or summed, and the query's own."""
    assert result.estimand is not None
    found: set[str] = set(result.treatment) | set(result.outcome) | set(result.given)
    stack = [result.estimand]
    while stack:
        expr = stack.pop()
        found |= set(expr.free_variables())
        found |= set(getattr(expr, "over", ()))
        stack.extend(expr._children())
    return found
