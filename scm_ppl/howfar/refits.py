"""Refit ensembles: independent MAP fits of one program from different starting points,
which of them explain the data equally well, and how far their answers spread.

The refits share the data, the train/validation split and the objective of
:func:`scm_ppl.fit` (:class:`~scm_ppl.learn.objective.Objective`), and differ in their
initial parameters (the program's own initial values plus Gaussian jitter of scale
``init_scale`` in unconstrained space) and their minibatch keys. Where the program allows
it the K fits run as one ``vmap``-ed, jitted epoch; otherwise one after another, with the
reason recorded.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax

from scm_ppl.core.validate import (
    check_callable,
    nonnegative_number,
    positive_int,
    positive_number,
)
from scm_ppl.errors import IdentifiabilityError, SettingsError
from scm_ppl.howfar.refit_results import RefitEnsemble, RefitSpread
from scm_ppl.learn.data import check_structure, discover, prepare, split_rows
from scm_ppl.learn.objective import Objective, feature_stats, initial_state, num_rows

__all__ = ["RefitEnsemble", "RefitSpread", "refit_ensemble"]

_TIE_FLOOR = 1e-3  # nats per row: optimisation noise below which two fits are not told apart


def _jitter(state: dict[str, Any], key: jax.Array, scale: float, count: int) -> dict[str, Any]:
    """``count`` copies of the state, learnable leaves moved by ``scale * N(0, 1)`` —
    times the leaf's RMS for arrays (network weights), absolute for scalars."""
    leaves, treedef = jax.tree.flatten({"params": state["params"], "loc": state["loc"]})
    keys = jax.random.split(key, len(leaves))
    moved = [
        x[None] + _leaf_scale(x, scale) * jax.random.normal(k, (count, *jnp.shape(x)), x.dtype)
        for x, k in zip(leaves, keys, strict=True)
    ]
    stacked = jax.tree.map(lambda x: jnp.broadcast_to(x, (count, *jnp.shape(x))), state)
    return {**stacked, **jax.tree.unflatten(treedef, moved)}


def _leaf_scale(x: jax.Array, scale: float) -> jax.Array:
    # A layer initialised at 1/sqrt(fan_in) and jittered by an absolute 0.5 starts
    # saturated: measured on models/nonlinear.py, held-out NLL 4-5.5 after 10 epochs where
    # a plain fit reaches 2.45. Relative jitter keeps each layer's initial scale.
    rms = jnp.sqrt(jnp.mean(jnp.square(x))) if jnp.size(x) > 1 else jnp.zeros((), x.dtype)
    return scale * jnp.where(rms > 0, rms, 1.0).astype(x.dtype)


def _epoch_fn(objective: Objective, optimizer: Any, n: int, batch: int, steps: int) -> Callable:
    def epoch(state, opt_state, data, const, key):
        perm_key, step_key = jax.random.split(key)
        full = batch >= n
        perm = jax.random.permutation(perm_key, n)
        index = jnp.tile(perm, -(-steps * batch // n))[: steps * batch].reshape(steps, batch)

        def step(carry, xs):
            state, opt_state = carry
            idx, k = xs
            rows = data if full else {s: v[idx] for s, v in data.items()}
            (loss, _), grads = jax.value_and_grad(objective.loss_and_penalty, has_aux=True)(
                state, [rows], k, const, [(n, batch)], n
            )
            updates, opt_state = optimizer.update(grads, opt_state, state)
            return (optax.apply_updates(state, updates), opt_state), loss

        carry, losses = jax.lax.scan(
            step, (state, opt_state), (index, jax.random.split(step_key, steps))
        )
        return carry[0], carry[1], jnp.mean(losses)

    return epoch


def _fit_group(
    model: Callable,
    data: Mapping[str, Any],
    count: int,
    key: jax.Array,
    options: dict[str, Any],
) -> tuple[list[Any], np.ndarray, str, str, float]:
    """``count`` refits of one program: fits, per-row validation NLL ``(count, rows)``."""
    from scm_ppl.learn.fitting import FitHistory, FittedSCM

    plate, size_arg, kwargs = options["plate"], options["size_arg"], options["kwargs"]
    prepared = prepare(model, data, None, None, options["latent"], plate, size_arg, kwargs)
    init_key, jitter_key, run_key = jax.random.split(key, 3)
    structure = discover(model, plate, size_arg, kwargs, init_key)
    check_structure(prepared, structure, "map")
    split_key = options["split_key"]
    train, valid = split_rows(prepared, [-1], options["validation_fraction"], split_key)
    if not num_rows(valid[0]):
        raise IdentifiabilityError(
            "No validation rows: refit_ensemble compares fits on held-out rows; give more "
            "rows or a larger validation_fraction."
        )
    particles = 1 if not prepared.latent else options["num_particles"]
    local = {s: prepared.info.sites[s].shape[1:] for s in prepared.latent}
    objective = Objective(
        model=model,
        plate=plate,
        size_arg=size_arg,
        kwargs=kwargs,
        regimes=[],
        labels=[-1],
        structure=structure,
        local=local,
        num_particles=particles,
        bayesian=False,
    )
    n = num_rows(train[0])
    batch = n if options["batch_size"] is None else min(options["batch_size"], n)
    steps = -(-n // batch)
    optimizer = optax.adam(options["learning_rate"])
    const = feature_stats(train)
    train_dev = {s: jnp.asarray(v) for s, v in train[0].items()}
    valid_dev = {s: jnp.asarray(v) for s, v in valid[0].items()}
    n_valid = num_rows(valid[0])
    states = _jitter(initial_state(objective, train[0]), jitter_key, options["init_scale"], count)
    opt_states = jax.vmap(optimizer.init)(states)
    epoch = _epoch_fn(objective, optimizer, n, batch, steps)
    valid_key = jax.random.fold_in(run_key, 1)

    def row_nll(state):
        params, values = objective.constrain(state)
        unit, _, _ = objective.terms_and_sites(
            {**params, **values}, state["encoder"], -1, valid_dev, n_valid, valid_key, const
        )
        return -unit

    mode, reason = "vmap", ""
    run = jax.jit(jax.vmap(epoch, in_axes=(0, 0, None, None, 0)))
    score = jax.jit(jax.vmap(row_nll))
    if not options["vectorize"]:
        mode, reason = "loop", "vectorize=False"
    else:
        try:
            run.lower(states, opt_states, train_dev, const, jax.random.split(run_key, count))
        except Exception as err:  # a program that cannot be batched: fit one by one
            mode, reason = "loop", f"vmap failed: {type(err).__name__}: {err}"
    if mode == "loop":
        single, single_score = jax.jit(epoch), jax.jit(row_nll)

        def run(states, opt_states, data, const, keys):
            outs = [
                single(
                    jax.tree.map(lambda x, i=i: x[i], states),
                    jax.tree.map(lambda x, i=i: x[i], opt_states),
                    data,
                    const,
                    keys[i],
                )
                for i in range(count)
            ]
            return tuple(
                jax.tree.map(lambda *xs: jnp.stack(xs), *o) for o in zip(*outs, strict=True)
            )

        def score(states):
            return jnp.stack(
                [single_score(jax.tree.map(lambda x, i=i: x[i], states)) for i in range(count)]
            )

    losses, valid_losses, timed = [], [], []
    for epoch_number in range(1, options["num_epochs"] + 1):
        run_key, epoch_key = jax.random.split(run_key)
        start = time.perf_counter()
        states, opt_states, loss = run(
            states, opt_states, train_dev, const, jax.random.split(epoch_key, count)
        )
        loss = np.asarray(jax.block_until_ready(loss))
        if epoch_number > 1:
            timed.append(time.perf_counter() - start)
        losses.append(loss)
        valid_losses.append(np.asarray(score(states)).mean(axis=1))
    rows = np.asarray(score(states), np.float64)
    if not np.isfinite(rows).all(axis=1).any():
        raise IdentifiabilityError(
            "Every refit diverged (non-finite validation loss); lower learning_rate or init_scale."
        )
    seconds = float(np.mean(timed)) if timed else math.nan
    curves_train, curves_valid = np.stack(losses, 1), np.stack(valid_losses, 1)
    fits = []
    for i in range(count):
        state = jax.tree.map(lambda x, i=i: x[i], states)
        params, point = objective.constrain(state)
        history = FitHistory(
            losses=curves_train[i],
            validation_losses=curves_valid[i],
            best_epoch=len(losses),
            stopped_early=False,
            seconds=seconds * len(losses),
        )
        fit = FittedSCM(
            base_model=model,
            params=params,
            point=point,
            posterior_loc={},
            posterior_scale={},
            posterior_samples={},
            history=history,
            settings=options["settings"],
        )
        fits.append(fit)
    return fits, rows, mode, reason, seconds


def refit_ensemble(
    model: Callable,
    data: Mapping[str, Any],
    n_refits: int = 16,
    *,
    rng_key: jax.Array,
    architectures: Sequence[Callable] | None = None,
    latent: Sequence[str] | str = (),
    init_scale: float = 0.5,
    tie_tolerance: float | None = None,
    num_epochs: int = 200,
    batch_size: int | None = None,
    learning_rate: float = 0.02,
    validation_fraction: float = 0.2,
    num_particles: int = 16,
    plate: str = "unit",
    size_arg: str = "n",
    model_kwargs: Mapping[str, Any] | None = None,
    vectorize: bool = True,
) -> RefitEnsemble:
    """Fit a program ``n_refits`` times from different starting points (MAP, as
    ``fit(method="map")``) and find the fits that explain the data equally well.

    Parameters
    ----------
    model
        The program (see :func:`scm_ppl.fit` for the data convention).
    data
        Observational rows ``{site: array}``; one train/validation split for all fits.
    n_refits
        Fits per program (per architecture when ``architectures`` is given).
    rng_key
        Seeds the split, the initial jitter and the minibatches.
    architectures
        Further programs with the same sites (other mechanisms or widths); each is
        refitted ``n_refits`` times and compared on the same held-out rows.
    latent, num_particles
        Per-unit latent sites integrated out by importance sampling (as in ``fit``).
    init_scale
        Standard deviation of the Gaussian jitter added to every initial parameter (in
        unconstrained space): absolute for a scalar parameter, relative to the RMS of an
        array's initial values (network weights keep their initial scale); 0 gives K copies
        of one fit up to minibatch order.
    tie_tolerance
        Fits within this many nats per held-out row of the best are tied; default
        ``max(2 * standard error of the paired per-row difference, 1e-3)``.
    num_epochs, batch_size, learning_rate, validation_fraction
        As for ``fit`` (default: full-batch steps); every fit runs all epochs and keeps its
        last parameters.
    vectorize
        Run the K fits as one ``vmap``-ed epoch (falls back to a loop, with the reason,
        where the program cannot be batched).

    Returns
    -------
    RefitEnsemble

    Examples
    --------
    >>> import jax, numpyro, numpyro.distributions as dist
    >>> def chain(n):                    # only the product a * b is seen by the data
    ...     a, b = numpyro.param("a", 1.0), numpyro.param("b", 1.0)
    ...     with numpyro.plate("unit", n):
    ...         x = numpyro.sample("x", dist.Normal(0.0, 1.0))
    ...         numpyro.sample("y", dist.Normal(b * a * x, 0.5))
    >>> x = jax.random.normal(jax.random.key(0), (200,))
    >>> ens = refit_ensemble(chain, {"x": x, "y": 1.5 * x}, 4, rng_key=jax.random.key(1),
    ...                      num_epochs=150, learning_rate=0.05)
    >>> product = ens.spread(lambda s: s.params["a"] * s.params["b"])
    >>> a_alone = ens.spread(lambda s: s.params["a"])
    >>> product.summary["range"] < 0.01, a_alone.summary["range"] > 0.1   # pinned vs free
    (True, True)
    """
    check_callable("model", model)
    if isinstance(n_refits, bool) or not isinstance(n_refits, int) or n_refits < 2:
        raise IdentifiabilityError(f"n_refits must be an integer >= 2; got {n_refits!r}.")
    if not isinstance(architectures or [], list | tuple):
        raise SettingsError(
            "architectures must be a list of NumPyro programs (callables); got "
            f"{type(architectures).__name__}."
        )
    for i, program in enumerate(architectures or []):
        check_callable(f"architectures[{i}]", program)
    programs = [model, *(architectures or [])]
    positive_int("num_epochs", num_epochs)
    positive_int("num_particles", num_particles)
    if not 0 < validation_fraction < 1:
        raise IdentifiabilityError(
            f"validation_fraction must be in (0, 1); got {validation_fraction!r}."
        )
    nonnegative_number("init_scale", init_scale)
    positive_number("learning_rate", learning_rate)
    kwargs = dict(model_kwargs or {})
    try:
        json.dumps(kwargs)
        json_kwargs: Any = kwargs
    except (TypeError, ValueError):
        json_kwargs = None
    latent_list = [latent] if isinstance(latent, str) else list(latent)
    settings = {
        "method": "map",
        "plate": plate,
        "size_arg": size_arg,
        "model_kwargs": json_kwargs,
        "latent": latent_list,
        "num_rows": len(np.asarray(next(iter(data.values())))) if data else 0,
        "refit_ensemble": True,
    }
    options = {
        "plate": plate,
        "size_arg": size_arg,
        "kwargs": kwargs,
        "latent": latent_list,
        "num_particles": num_particles,
        "init_scale": float(init_scale),
        "num_epochs": num_epochs,
        "batch_size": batch_size,
        "learning_rate": float(learning_rate),
        "validation_fraction": float(validation_fraction),
        "vectorize": vectorize,
        "settings": settings,
    }
    split_key = jax.random.fold_in(rng_key, 0)
    fits, rows, modes, reasons, seconds, arch = [], [], [], [], 0.0, []
    for i, program in enumerate(programs):
        # One split key for every architecture: all fits are scored on the same rows.
        group_key = jax.random.fold_in(rng_key, i + 1)
        group = _fit_group(program, data, n_refits, group_key, {**options, "split_key": split_key})
        fits += group[0]
        rows.append(group[1])
        modes.append(group[2])
        reasons.append(group[3])
        seconds += group[4]
        arch += [i] * n_refits
    nll = np.concatenate(rows, axis=0)
    losses = nll.mean(axis=1)
    losses = np.where(np.isfinite(losses), losses, np.inf)  # a diverged fit ties with none
    best = int(np.argmin(losses))
    diff = nll - nll[best]
    se = diff.std(axis=1) / math.sqrt(nll.shape[1])
    if tie_tolerance is None:
        threshold = np.maximum(2.0 * se, _TIE_FLOOR)
        rule = "validation loss within max(2 * paired standard error, 1e-3) nats/row of the best"
    else:
        threshold = np.full(len(losses), float(tie_tolerance))
        rule = f"validation loss within {tie_tolerance:g} nats/row of the best"
    tied = diff.mean(axis=1) <= threshold
    mode = "vmap" if all(m == "vmap" for m in modes) else "loop"
    reason = "; ".join(r for r in reasons if r)
    return RefitEnsemble(
        fits=fits,
        validation_losses=losses,
        tied=tied,
        tie_rule=rule,
        architecture=np.asarray(arch),
        mode=mode,
        reason=reason,
        seconds_per_epoch=seconds,
    )
