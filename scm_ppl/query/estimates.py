"""Causal estimands built on the worlds: ATE, ETT and the probabilities of causation.

Each is a Monte-Carlo average over draws *and* units of the program, returned with its
standard error and the couplings it assumes. Counterfactual estimands of discrete
mechanisms are not identified by the model's distributions alone: they hold under the
coupling of each non-invertible mechanism (by default the monotone inverse-CDF
coupling), which the result names.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from contextlib import nullcontext
from typing import Any, NamedTuple

import jax
import numpy as np

from scm_ppl.core.program import as_kwargs, inspect_program
from scm_ppl.errors import EstimandError, InterventionError
from scm_ppl.query.identification import world_margins_only
from scm_ppl.query.over_rows import RowsEstimate, effect_over_rows
from scm_ppl.query.queries import counterfactual, interventional

__all__ = ["Estimate", "ate", "ett", "pn", "pns", "ps"]


class Estimate(NamedTuple):
    """A Monte-Carlo estimate of a causal quantity.

    Attributes
    ----------
    value
        The estimate.
    std_error
        Its Monte-Carlo standard error; ``inf`` when it rests on a single sample, whose
        spread cannot be estimated (raise ``num_samples`` or the number of units).
    num_effective
        Number of (draw, unit) samples it averages over (after conditioning).
    couplings
        ``{site: coupling}`` assumed for mechanisms that do not invert (empty for
        interventional quantities, which need none).

    Examples
    --------
    >>> import jax, numpyro, numpyro.distributions as dist
    >>> from scm_ppl import ate
    >>> def model():
    ...     t = numpyro.sample("t", dist.Bernoulli(0.5))
    ...     numpyro.sample("y", dist.Normal(2.0 * t, 1.0))
    >>> est = ate(model, "t", "y", rng_key=jax.random.key(0), num_samples=2000)
    >>> type(est).__name__, est.couplings
    ('Estimate', {})
    >>> abs(est.value - 2.0) < 4 * est.std_error
    True
    """

    value: float
    std_error: float
    num_effective: int
    couplings: dict[str, str]


def _mean(samples: np.ndarray, condition: str = "") -> tuple[float, float, int]:
    n = samples.size
    if n == 0:  # a conditional estimand whose condition no sample meets: no silent NaN
        raise EstimandError(
            f"No (draw, unit) sample meets the condition {condition}, so the estimate is "
            "undefined. Check that treated/control/positive are values the sites take, or "
            "raise num_samples (or the number of units)."
        )
    # One sample says nothing about its own spread: inf, not NaN, so that a tolerance
    # check like |value - target| < 4 * std_error passes vacuously instead of silently.
    sd = float(np.std(samples, ddof=1)) if n > 1 else float("inf")
    return float(np.mean(samples)), sd / np.sqrt(n), n


def _check_sites(model: Callable, args: tuple, kwargs: Mapping, *names: str) -> None:
    info = inspect_program(model, args, kwargs)
    unknown = [n for n in names if n not in info.sites]
    if unknown:
        raise InterventionError(f"Unknown site(s) {unknown}; the program has sites {info.names()}.")


def _discrete_treatment(model: Callable, args: tuple, kwargs: Mapping, treatment: str) -> None:
    site = inspect_program(model, args, kwargs).sites[treatment]
    if site.kind == "sample" and not site.discrete:
        raise InterventionError(
            f"Treatment '{treatment}' is continuous ({site.distribution}); conditioning on "
            "its factual value needs a discrete treatment (Bernoulli, Categorical, ...)."
        )


def ate(
    model: Callable,
    treatment: str,
    outcome: str,
    *,
    rng_key: jax.Array,
    treated: Any = 1.0,
    control: Any = 0.0,
    num_samples: int = 1000,
    model_args: tuple = (),
    model_kwargs: Mapping[str, Any] | None = None,
    rows: Any = None,
    impossible: str = "raise",
    observed: Sequence[str] | None = None,
) -> Estimate | RowsEstimate:
    """Average treatment effect ``E[Y | do(T=treated)] - E[Y | do(T=control)]``.

    With ``rows`` (a DataFrame of units, or a sequence of fits as ``model``), the average
    over those rows by abduction per row, with a bootstrap interval
    (:mod:`scm_ppl.query.over_rows`; ``impossible="drop"`` as in :func:`ett`).

    Identification is judged as in :func:`~scm_ppl.interventional` (the ADMG of
    :func:`~scm_ppl.identify`, latent exogenous roots as confounders): a not identified
    effect warns with :class:`~scm_ppl.errors.NotIdentifiableWarning`; ``observed`` names
    sites you have data on (a measured root confounder), which are then not latent.

    Examples
    --------
    >>> import jax, numpyro, numpyro.distributions as dist
    >>> def model():
    ...     t = numpyro.sample("t", dist.Bernoulli(0.5))
    ...     numpyro.sample("y", dist.Normal(3.0 * t, 1.0))
    >>> effect = ate(model, "t", "y", rng_key=jax.random.key(0), num_samples=4000)
    >>> abs(effect.value - 3.0) < 4 * effect.std_error
    True
    """
    if rows is not None:  # the user's units, by abduction per row: see over_rows
        return effect_over_rows(
            model,
            treatment,
            outcome,
            rows,
            rng_key=rng_key,
            which="ate",
            treated=treated,
            control=control,
            num_samples=num_samples,
            impossible=impossible,
        )
    kwargs = as_kwargs(model_kwargs)
    _check_sites(model, model_args, kwargs, treatment, outcome)
    result = interventional(
        model,
        {"treated": {treatment: treated}, "control": {treatment: control}},
        rng_key=rng_key,
        num_samples=num_samples,
        model_args=model_args,
        model_kwargs=kwargs,
        observed=observed,
    )
    y = np.asarray(result.samples["predictions"][outcome])
    treated_mean, treated_se, n = _mean(y[:, :, 0])
    control_mean, control_se, _ = _mean(y[:, :, 1])
    return Estimate(
        value=treated_mean - control_mean,
        std_error=float(np.hypot(treated_se, control_se)),
        num_effective=n,
        couplings={},
    )


def _two_worlds(
    model, treatment, treated, control, rng_key, num_samples, args, kwargs, observed=None,
    margins_only=False,
):  # fmt: skip
    # ID* judges the joint of both worlds, which is never identified; the estimate reads
    # each world's margin with the factual treatment, identified whenever the
    # interventional part is (checked, and warned about, on its own).
    with world_margins_only() if margins_only else nullcontext():
        result = counterfactual(
            model,
            None,
            {"treated": {treatment: treated}, "control": {treatment: control}},
            rng_key=rng_key,
            num_samples=num_samples,
            model_args=args,
            model_kwargs=kwargs,
            observed=observed,
        )
    return result, result.attrs["couplings"]


def ett(
    model: Callable,
    treatment: str,
    outcome: str,
    *,
    rng_key: jax.Array,
    treated: Any = 1,
    control: Any = 0,
    num_samples: int = 1000,
    model_args: tuple = (),
    model_kwargs: Mapping[str, Any] | None = None,
    rows: Any = None,
    impossible: str = "raise",
    observed: Sequence[str] | None = None,
) -> Estimate | RowsEstimate:
    """Effect of treatment on the treated, ``E[Y_treated - Y_control | T = treated]``.

    Computed on shared noise: the factual and counterfactual outcomes of the same units.
    With ``rows`` (a DataFrame), the average over the given rows with ``T = treated``, each
    abducted from its own evidence (:mod:`scm_ppl.query.over_rows`), with a bootstrap
    interval; ``impossible="drop"`` drops rows whose evidence the model cannot produce.
    Identification as in :func:`ate` (``observed`` names measured sites).

    Examples
    --------
    >>> import jax, numpyro, numpyro.distributions as dist
    >>> def model():
    ...     t = numpyro.sample("t", dist.Bernoulli(0.5))
    ...     numpyro.sample("y", dist.Normal(3.0 * t, 1.0))
    >>> effect = ett(model, "t", "y", rng_key=jax.random.key(0), num_samples=2000)
    >>> round(effect.value, 6)  # shared noise: Y_1 - Y_0 = 3 for every treated unit
    3.0
    """
    if rows is not None:  # the user's units, by abduction per row: see over_rows
        return effect_over_rows(
            model,
            treatment,
            outcome,
            rows,
            rng_key=rng_key,
            which="ett",
            treated=treated,
            control=control,
            num_samples=num_samples,
            impossible=impossible,
        )
    kwargs = as_kwargs(model_kwargs)
    _check_sites(model, model_args, kwargs, treatment, outcome)
    _discrete_treatment(model, model_args, kwargs, treatment)
    result, couplings = _two_worlds(
        model, treatment, treated, control, rng_key, num_samples, model_args, kwargs, observed,
        margins_only=True,
    )  # fmt: skip
    pred = result.samples["predictions"]
    t, y = np.asarray(pred[treatment][:, :, 0]), np.asarray(pred[outcome])
    selected = t == np.asarray(treated)
    value, se, n = _mean((y[:, :, 1] - y[:, :, 2])[selected], f"{treatment} = {treated!r}")
    return Estimate(value=value, std_error=se, num_effective=n, couplings=couplings)


def _probability_of_causation(
    model, treatment, outcome, rng_key, num_samples, args, kwargs, which, treated, control, positive
):
    kwargs = dict(kwargs or {})
    _check_sites(model, args, kwargs, treatment, outcome)
    _discrete_treatment(model, args, kwargs, treatment)
    result, couplings = _two_worlds(
        model, treatment, treated, control, rng_key, num_samples, args, kwargs
    )
    pred = result.samples["predictions"]
    t = np.asarray(pred[treatment][:, :, 0]) == np.asarray(treated)
    y = np.asarray(pred[outcome][:, :, 0]) == np.asarray(positive)
    y_treated = np.asarray(pred[outcome][:, :, 1]) == np.asarray(positive)
    y_control = np.asarray(pred[outcome][:, :, 2]) == np.asarray(positive)
    outcomes = np.asarray(pred[outcome])
    if not np.any(outcomes == np.asarray(positive)):
        # A positive value the outcome never takes makes PS and PNS 0 for the wrong reason.
        raise EstimandError(
            f"The outcome {outcome!r} never equals positive={positive!r} in any world of "
            f"{outcomes.size} samples (it takes {np.unique(outcomes)[:8].tolist()}); give the "
            "outcome value that counts as 'Y = 1'."
        )
    observed = f"{treatment} = {treated!r} and {outcome} = {positive!r}"
    if which == "pn":
        value, se, n = _mean(~y_control[t & y], observed)
    elif which == "ps":
        value, se, n = _mean(y_treated[~t & ~y], observed.replace("=", "!="))
    else:
        value, se, n = _mean(y_treated & ~y_control)
    if n:
        p = min(max(value, 1.0 / (n + 1)), 1.0 - 1.0 / (n + 1))
        se = float(np.sqrt(p * (1 - p) / n))  # binomial: finite even when every unit agrees
    return Estimate(value=value, std_error=se, num_effective=n, couplings=couplings)


def pn(
    model: Callable,
    treatment: str,
    outcome: str,
    *,
    rng_key: jax.Array,
    treated: Any = 1,
    control: Any = 0,
    positive: Any = 1,
    num_samples: int = 1000,
    model_args: tuple = (),
    model_kwargs: Mapping[str, Any] | None = None,
) -> Estimate:
    """Probability of necessity ``P(Y_{T=0} = 0 | T = 1, Y = 1)``.

    ``treated``, ``control`` and ``positive`` (the outcome value counted as "Y = 1")
    name the values of a discrete treatment and outcome; the defaults are 1, 0 and 1.

    Examples
    --------
    >>> import jax, numpyro, numpyro.distributions as dist
    >>> def model():  # P(y=1 | do(t)) = 0.2 + 0.6 t; Bernoulli noise is coupled monotonically
    ...     t = numpyro.sample("t", dist.Bernoulli(0.5))
    ...     numpyro.sample("y", dist.Bernoulli(0.2 + 0.6 * t))
    >>> est = pn(model, "t", "y", rng_key=jax.random.key(0), num_samples=4000)
    >>> abs(est.value - 0.75) < 4 * est.std_error  # PNS / P(y=1 | t=1) = 0.6 / 0.8
    True
    >>> est.couplings
    {'y': 'inverse-CDF (monotone)'}
    """
    return _probability_of_causation(
        model, treatment, outcome, rng_key, num_samples, model_args, model_kwargs, "pn",
        treated, control, positive,
    )  # fmt: skip


def ps(
    model: Callable,
    treatment: str,
    outcome: str,
    *,
    rng_key: jax.Array,
    treated: Any = 1,
    control: Any = 0,
    positive: Any = 1,
    num_samples: int = 1000,
    model_args: tuple = (),
    model_kwargs: Mapping[str, Any] | None = None,
) -> Estimate:
    """Probability of sufficiency ``P(Y_{T=1} = 1 | T = 0, Y = 0)`` (values as in :func:`pn`).

    Examples
    --------
    >>> import jax, numpyro, numpyro.distributions as dist
    >>> def model():  # P(y=1 | do(t)) = 0.2 + 0.6 t; Bernoulli noise is coupled monotonically
    ...     t = numpyro.sample("t", dist.Bernoulli(0.5))
    ...     numpyro.sample("y", dist.Bernoulli(0.2 + 0.6 * t))
    >>> est = ps(model, "t", "y", rng_key=jax.random.key(0), num_samples=4000)
    >>> abs(est.value - 0.75) < 4 * est.std_error  # PNS / P(y=0 | t=0) = 0.6 / 0.8
    True
    """
    return _probability_of_causation(
        model, treatment, outcome, rng_key, num_samples, model_args, model_kwargs, "ps",
        treated, control, positive,
    )  # fmt: skip


def pns(
    model: Callable,
    treatment: str,
    outcome: str,
    *,
    rng_key: jax.Array,
    treated: Any = 1,
    control: Any = 0,
    positive: Any = 1,
    num_samples: int = 1000,
    model_args: tuple = (),
    model_kwargs: Mapping[str, Any] | None = None,
) -> Estimate:
    """Probability of necessity and sufficiency ``P(Y_{T=1} = 1, Y_{T=0} = 0)`` (values as
    in :func:`pn`).

    Examples
    --------
    >>> import jax, numpyro, numpyro.distributions as dist
    >>> def model():  # P(y=1 | do(t)) = 0.2 + 0.6 t; Bernoulli noise is coupled monotonically
    ...     t = numpyro.sample("t", dist.Bernoulli(0.5))
    ...     numpyro.sample("y", dist.Bernoulli(0.2 + 0.6 * t))
    >>> est = pns(model, "t", "y", rng_key=jax.random.key(0), num_samples=4000)
    >>> abs(est.value - 0.6) < 4 * est.std_error  # P(y_1 = 1) - P(y_0 = 1) under monotonicity
    True
    """
    return _probability_of_causation(
        model, treatment, outcome, rng_key, num_samples, model_args, model_kwargs, "pns",
        treated, control, positive,
    )  # fmt: skip
