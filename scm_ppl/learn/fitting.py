"""Learning a program's mechanisms from observational and interventional data.

The data convention
-------------------
The program is an ordinary NumPyro program whose per-unit sites live in one plate sized
by an argument: ``numpyro.plate("unit", n)`` inside ``model(n, ...)`` by default
(``plate=`` and ``size_arg=`` name others). ``data`` maps site names to arrays whose
leading axis is the unit (one row per unit, every column the same length ``N``), so
``data["x"]`` has the shape the site ``"x"`` has in ``model(n=N)``. A minibatch of
``B`` rows is scored by running ``model(n=B)`` on those rows and scaling its
log-likelihood by ``N / B``.

What is learned
---------------
* ``numpyro.param`` sites, and neural modules registered through
  ``numpyro.contrib.module``: point estimates (maximum a posteriori for every method but
  ``"nuts"``, where they keep their initial values);
* global latent sample sites (outside the unit plate: weights with priors): a MAP point
  (``method="map"``), a Gaussian variational posterior (``"svi"``, like ``AutoNormal``),
  or NUTS draws (``"nuts"``);
* local latent sample sites (in the plate, absent from the data, e.g. a latent
  confounder; name them in ``latent=``) are integrated out per unit by importance
  sampling with ``num_particles`` draws (``"map"``, ``"svi"``: an importance-weighted
  bound on the likelihood, with a linear-Gaussian proposal given the row's data learned
  alongside), or sampled (``"nuts"``).

Interventional data
-------------------
``interventions=[{...}, ...]`` lists the regimes the experimental rows came from and
``regime=`` tags every row: ``-1`` (or ``None``) for observational rows, ``k`` for rows
generated under ``interventions[k]``. Rows of regime ``k`` are scored under
``do(model, interventions[k])``, so the intervened site's own mechanism drops out of their
likelihood; all regimes share the parameters. A value ``None`` in a regime (or a regime
given as a list of site names) means "set to the values recorded in the data": the
usual randomised experiment, ``do(x = random values)``.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import jax
import numpy as np
import optax

from scm_ppl.core.modes import fitting
from scm_ppl.core.validate import check_callable, nonnegative_number
from scm_ppl.errors import SettingsError
from scm_ppl.learn.data import check_settings, check_structure, discover, prepare, split_rows
from scm_ppl.learn.distributed import agreed
from scm_ppl.learn.fitted import FitHistory, FittedSCM, fitted_scm
from scm_ppl.learn.icm_penalty import IcmPair, resolve_pairs
from scm_ppl.learn.nuts import fit_nuts
from scm_ppl.learn.objective import Objective, num_rows
from scm_ppl.learn.regimes import describe_regime
from scm_ppl.learn.streaming import row_plan
from scm_ppl.learn.train import GradientOptions, fit_gradient, show_progress

__all__ = ["FitHistory", "FittedSCM", "fit"]

_DEFAULT_PARTICLES = 16


def _as_fitting(fn: Callable) -> Callable:
    @functools.wraps(fn)
    def run(*args: Any, **kwargs: Any) -> Any:
        with fitting():  # training-only terms of mechanisms apply (core.modes)
            return fn(*args, **kwargs)

    return run


@_as_fitting
def fit(
    model: Callable,
    data: Mapping[str, Any] | Any,
    *,
    method: str = "map",
    interventions: Sequence[Mapping[str, Any] | Sequence[str]] | None = None,
    regime: Any = None,
    latent: Sequence[str] | str = (),
    plate: str = "unit",
    size_arg: str = "n",
    model_kwargs: Mapping[str, Any] | None = None,
    num_epochs: int = 100,
    batch_size: int | None = 256,
    learning_rate: float = 0.01,
    optimizer: optax.GradientTransformation | None = None,
    validation_fraction: float | None = None,
    patience: int | None = None,
    min_delta: float = 0.0,
    restore_best: bool = True,
    num_particles: int | None = None,
    num_samples: int = 1000,
    num_warmup: int = 500,
    num_chains: int = 1,
    rng_key: jax.Array | None = None,
    progress: bool | None = None,
    icm_penalty: float = 0.0,
    icm_pairs: Sequence[Sequence[str]] | None = None,
    missing: str = "raise",
) -> FittedSCM:
    """Learn a program's mechanisms from observational and interventional data.

    Parameters
    ----------
    model
        A NumPyro program ``model(n, ...)`` whose per-unit sites sit in
        ``numpyro.plate(plate, n)`` (see the module notes for the convention).
    data
        ``{site: array}`` or a pandas DataFrame (columns named as sites), one row per
        unit (the unit axis first), every column ``N`` rows; also rows joined over
        processes (:func:`~scm_ppl.learn.shard_rows`) or streamed from disk
        (:class:`~scm_ppl.learn.StreamedRows`). Every per-unit sample site must be given,
        unless named in ``latent``.
    method
        ``"map"`` (point estimates; MAP for global latent sites), ``"svi"`` (a Gaussian
        variational posterior over global latent sites) or ``"nuts"`` (posterior draws;
        small models: no minibatches, ``numpyro.param`` sites are not learned).
    interventions, regime
        Interventional regimes and the regime of each row: ``regime[i] = -1`` (or ``None``)
        for an observational row, ``k`` for a row generated under ``interventions[k]``.
        A regime is ``{site: value}`` with values as in :class:`~scm_ppl.do` (a hard value
        broadcast over units, or a distribution) or ``None`` for "the values recorded in
        the data"; a list of site names is short for all ``None``.
    latent
        Per-unit sample sites absent from the data (e.g. a latent confounder), integrated
        out per unit by importance sampling with ``num_particles`` draws (default 16; more
        for a tighter bound). Continuous ones are proposed from a Gaussian whose mean and
        scale are linear in the row's standardised data, learned alongside (exact for
        linear-Gaussian SCMs, a fair proposal for a few latent dimensions per unit);
        discrete ones from their prior. Ignored without local latents.
    plate, size_arg
        The name of the unit plate and of the argument that sizes it.
    model_kwargs
        Further (static) arguments of the program.
    num_epochs, batch_size, learning_rate, optimizer
        An epoch visits every training row once in minibatches of ``batch_size`` rows
        (``None``: all rows, one step per epoch); each regime contributes rows in
        proportion to its size. Adam with ``learning_rate`` unless an optax
        ``optimizer`` is given.
    validation_fraction
        Share of each regime's rows held out to compute a validation loss per epoch
        (default 0.1 for ``"map"``/``"svi"``).
    patience, min_delta, restore_best
        Stop when the validation loss (the training loss without a validation split) has
        not improved by ``min_delta`` for ``patience`` epochs. With a validation split,
        return the parameters of its best epoch (``restore_best``) or of the last one;
        without one, of the last (a noisy training loss would pick a lucky epoch).
    num_samples, num_warmup, num_chains
        Posterior draws kept (``"svi"``, ``"nuts"``), NUTS warmup and chains.
    rng_key
        A JAX PRNG key (default ``jax.random.key(0)``: fits are reproducible).
    progress
        Show a progress bar (tqdm): ``True`` or ``False``; ``None`` (the default) shows it
        only when standard error is a terminal, so logs and notebooks' captured output do
        not fill with bar frames.
    icm_penalty
        ``λ >= 0``: add ``λ Σ (log ρ)²`` to the per-row loss, ρ the genericity ratio
        (trace ratio, spectral density ratio) of each successive pair of mechanisms, so
        that training enforces independence of mechanisms (Besserve et al., AAAI 2021).
    icm_pairs
        The pairs ``(first, second)``: ``second`` a 2-D param, a full-length 1-D circular
        kernel, or an ``eqx.nn.Linear``/``Conv``/``ConvTranspose`` (module path such as
        ``"decoder.layers[2]"``); ``first`` either the site holding the second mechanism's
        input (its minibatch sample covariance or averaged periodogram is used) or the first
        mechanism's parameter (the statistics of its output for white input:
        ``W1 W1ᵀ``). Default: every successive pair of linear/conv layers the program
        registers (2-D params, Equinox layers), first to second as parameters.
    missing
        ``"raise"``: NaN or missing values are refused (count and columns). ``"drop"``:
        those rows are dropped with a warning; ``settings["dropped_rows"]`` keeps the count.

    Returns
    -------
    FittedSCM
        Accepted by every query as a program; ``.model`` is the same program.

    Raises
    ------
    DataError
        Data that do not fit the program (missing or unknown sites, shapes, dtypes,
        NaN/inf, no rows, bad regime tags).
    InterventionError
        A regime that names unknown sites or cannot be scored.
    FitError
        The loss became NaN/inf (the fit diverged).
    GenericityError
        ``icm_penalty`` on a program with no marked or detectable mechanism pairs, or
        ``icm_pairs`` naming unknown or incompatible mechanisms.

    Examples
    --------
    >>> import jax, numpyro, numpyro.distributions as dist
    >>> def model(n):
    ...     w = numpyro.param("w", 0.0)
    ...     with numpyro.plate("unit", n):
    ...         x = numpyro.sample("x", dist.Normal(0.0, 1.0))
    ...         numpyro.sample("y", dist.Normal(w * x, 0.1))
    >>> x = jax.random.normal(jax.random.key(1), (500,))
    >>> fitted = fit(model, {"x": x, "y": 2.0 * x}, batch_size=None, num_epochs=300,
    ...              learning_rate=0.05, progress=False)
    >>> round(float(fitted.params["w"]), 2)
    2.0
    """
    check_settings(
        method,
        num_epochs=num_epochs,
        num_samples=num_samples,
        num_warmup=num_warmup,
        num_chains=num_chains,
        batch_size=batch_size,
        patience=patience,
        num_particles=num_particles,
        learning_rate=learning_rate,
        validation_fraction=validation_fraction,
        min_delta=min_delta,
    )
    check_callable("model", model)
    progress = show_progress(progress)
    kwargs = dict(model_kwargs or {})
    if size_arg in kwargs:
        raise SettingsError(
            f"model_kwargs sets {size_arg!r}, which fit sets to the number of rows; drop it."
        )
    args = (interventions, regime, latent, plate, size_arg, kwargs, missing)
    plan = row_plan(data, method, validation_fraction, icm_penalty, *args)  # not in memory
    prepared = agreed(plan, prepare, model, getattr(plan, "local", data), *args)
    key = jax.random.key(0) if rng_key is None else rng_key
    init_key, split_key, run_key = jax.random.split(key, 3)
    structure = discover(model, plate, size_arg, kwargs, init_key)
    agreed(plan, check_structure, prepared, structure, method)
    pairs = _icm_pairs(icm_penalty, icm_pairs, method, prepared, structure, plate)
    frac = (
        (0.0 if method == "nuts" else 0.1) if validation_fraction is None else validation_fraction
    )
    labels = sorted(set(prepared.labels.tolist()))  # -1 (observational) first
    train, valid = (split_rows if plan is None else plan.split)(prepared, labels, frac, split_key)
    particles = 1 if not prepared.latent else (num_particles or _DEFAULT_PARTICLES)
    objective = Objective(
        model=model,
        plate=plate,
        size_arg=size_arg,
        kwargs=kwargs,
        regimes=prepared.regimes,
        labels=labels,
        structure=structure,
        local={site: prepared.info.sites[site].shape[1:] for site in prepared.latent},
        num_particles=particles,
        bayesian=method == "svi",
        icm_penalty=float(icm_penalty),
        icm_pairs=pairs,
    )
    json_kwargs: Any = kwargs
    try:
        json.dumps(kwargs)
    except (TypeError, ValueError):
        json_kwargs = None
    settings = {
        "method": method,
        "plate": plate,
        "size_arg": size_arg,
        "model_kwargs": json_kwargs,
        "latent": list(prepared.latent),
        "num_rows": len(prepared.labels),
        "dropped_rows": prepared.dropped,
        "rows_per_regime": {str(k): int(np.sum(prepared.labels == k)) for k in labels},
        "validation_rows": sum(num_rows(v) for v in valid),
        "interventions": [describe_regime(spec) for spec in prepared.regimes],
        "learning_rate": float(learning_rate) if optimizer is None else None,
        "batch_size": batch_size,
        "num_particles": particles,
        "patience": patience,
    }
    if pairs:
        settings["icm_penalty"] = float(icm_penalty)
        settings["icm_pairs"] = [[_pair_name(p.first), p.second.name] for p in pairs]
    if method == "nuts":
        estimate = fit_nuts(
            objective, train, settings, num_samples, num_warmup, num_chains, run_key, progress
        )
    else:
        options = GradientOptions(
            num_epochs=num_epochs,
            batch_size=batch_size,
            learning_rate=learning_rate,
            patience=patience,
            min_delta=min_delta,
            restore_best=restore_best,
            num_samples=num_samples,
        )
        estimate = fit_gradient(
            objective, train, valid, settings, optimizer, options, run_key, progress, plan
        )
    return fitted_scm(model, estimate)


def _pair_name(first: Any) -> str:
    return first if isinstance(first, str) else first.name


def _icm_pairs(
    penalty: Any, pairs: Any, method: str, prepared: Any, structure: Any, plate: str
) -> list[IcmPair]:
    """Check ``icm_penalty``/``icm_pairs`` and resolve the pairs (none without a penalty)."""
    if not nonnegative_number("icm_penalty", penalty):
        if pairs is not None:
            raise SettingsError("icm_pairs without icm_penalty does nothing; set icm_penalty > 0.")
        return []
    if method == "nuts":
        raise SettingsError("icm_penalty shapes a gradient fit; use method='map' or 'svi'.")
    unit_sites = {
        name: tuple(site.shape[1:])
        for name, site in prepared.info.sites.items()
        if plate in site.batch_dims
    }
    return resolve_pairs(pairs, structure.params, unit_sites)
