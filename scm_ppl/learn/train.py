"""Gradient fitting (``method="map"``, ``"svi"``): the jitted epoch loop.

An epoch is one ``jax.lax.scan`` over minibatch steps inside one ``jit``, cached on the
fit's structure (``_COMPILED``), so refits of one program (seeds, learning rates, data
of the same shape) compile once. The host loop around it checks every step's loss for
NaN/inf, tracks the validation loss for early stopping and drives the progress bar.
"""

from __future__ import annotations

import math
import sys
import time
from collections.abc import Callable, Mapping
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax
from numpyro.distributions.transforms import biject_to

from scm_ppl.core.cache import LRUCache
from scm_ppl.errors import FitError, SettingsError
from scm_ppl.learn.objective import (
    FitEstimate,
    Objective,
    feature_stats,
    initial_state,
    num_rows,
)

__all__ = ["GradientOptions", "compiled_epoch", "fit_gradient"]

_COMPILED = LRUCache(32)  # the jitted epoch and validation loss, by the fit's structure


class GradientOptions(NamedTuple):
    """The settings of a gradient fit (see :func:`scm_ppl.learn.fitting.fit`)."""

    num_epochs: int
    batch_size: int | None
    learning_rate: float
    patience: int | None
    min_delta: float
    restore_best: bool
    num_samples: int


def show_progress(progress: bool | None) -> bool:
    """``fit``'s ``progress=``: an explicit ``True``/``False``, or ``None`` for "only when
    standard error is a terminal" (a bar redrawn into a log file or CI output is noise)."""
    if progress is None:
        isatty = getattr(sys.stderr, "isatty", None)
        return bool(isatty is not None and isatty())
    if not isinstance(progress, bool):
        raise SettingsError(
            f"progress must be True, False or None (a bar only on a terminal); got {progress!r}."
        )
    return progress


class _Progress:
    """A tqdm bar (or a plain status line where tqdm is missing); silent when disabled."""

    def __init__(self, enabled: bool, total: int, desc: str) -> None:
        self.enabled, self.total, self.desc, self.bar = enabled, total, desc, None
        if enabled:
            try:
                from tqdm.auto import tqdm
            except ImportError:  # pragma: no cover - numpyro depends on tqdm
                return
            self.bar = tqdm(total=total, desc=desc, unit="epoch")

    def update(self, epoch: int, loss: float, valid: float | None) -> None:
        text = f"loss {loss:.4g}" + ("" if valid is None else f", validation {valid:.4g}")
        if self.bar is not None:
            self.bar.set_postfix_str(text, refresh=False)
            self.bar.update(1)
        elif self.enabled:
            print(f"\r{self.desc}: epoch {epoch}/{self.total}, {text}", end="", file=sys.stderr)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
        elif self.enabled:
            print(file=sys.stderr)


def _diverged(what: str, value: float, epoch: int, detail: str, settings: Mapping) -> FitError:
    lr = settings.get("learning_rate")
    hint = f"a smaller learning_rate (now {lr})" if lr is not None else "a smaller step size"
    return FitError(
        f"The {what} became {value} at epoch {epoch}{detail}: the fit diverged, so no result is "
        f"returned. Try {hint}, standardise the data, or check the program's initial "
        "parameter values and constraints."
    )


def compiled_epoch(
    objective: Objective,
    optimizer: optax.GradientTransformation,
    optimizer_key: Any,
    sizes: list[tuple[int, int]],
    steps: int,
    rows: int | None = None,
    weighted_rows: float | None = None,
) -> tuple[Callable, Callable]:
    """The jitted epoch (a scan over minibatch steps) and validation loss, cached on the
    fit's structure, so refits of one program (seeds, learning rates, data of the same
    shape) compile once. ``rows``: the number of rows the loss is per (default: those
    given), when the epoch runs over one chunk of them (:mod:`scm_ppl.learn.streaming`);
    ``weighted_rows``: how many of them the chunk's minibatch stands for (default
    ``rows``), so a chunk whose steps see its rows more or less than once weighs right.

    Examples
    --------
    >>> import numpyro, numpyro.distributions as dist, optax
    >>> from scm_ppl.learn.data import Structure
    >>> def model(n):
    ...     with numpyro.plate("unit", n):
    ...         numpyro.sample("x", dist.Normal(numpyro.param("m", 0.0), 1.0))
    >>> structure = Structure({"m": 0.0}, {"m": dist.constraints.real}, {},
    ...                       {"x": dist.constraints.real})
    >>> o = Objective(model, "unit", "n", {}, [{}], [-1], structure, {}, 1, False)
    >>> first = compiled_epoch(o, optax.adam(0.1), "adam", [(100, 10)], 10)
    >>> first is compiled_epoch(o, optax.adam(0.1), "adam", [(100, 10)], 10)  # cached
    True
    """
    o = objective
    key = o.epoch_key(optimizer_key, sizes, steps, rows, weighted_rows)
    cached = _COMPILED.get(key)
    if cached is not None:
        return cached
    total = sum(n for n, _ in sizes) if rows is None else rows
    weighted = rows if weighted_rows is None else weighted_rows
    scaled = sizes if rows is None else [(weighted, b) for _, b in sizes]

    def epoch(state, opt_state, data, const, key):
        keys = jax.random.split(key, len(data) + 1)
        index = []
        for k, (n, b) in zip(keys[:-1], sizes, strict=True):
            if b >= n:
                index.append(None)  # the whole regime every step: no gather
                continue
            perm = jax.random.permutation(k, n)
            index.append(jnp.tile(perm, -(-steps * b // n))[: steps * b].reshape(steps, b))

        def step(carry, xs):
            state, opt_state = carry
            idx, step_key = xs
            batches = [
                d if i is None else {s: v[i] for s, v in d.items()}
                for d, i in zip(data, idx, strict=True)
            ]
            (loss, penalty), grads = jax.value_and_grad(o.loss_and_penalty, has_aux=True)(
                state, batches, step_key, const, scaled, total
            )
            updates, opt_state = optimizer.update(grads, opt_state, state)
            return (optax.apply_updates(state, updates), opt_state), (loss, penalty)

        xs = (index, jax.random.split(keys[-1], steps))
        (state, opt_state), (losses, penalties) = jax.lax.scan(step, (state, opt_state), xs)
        return state, opt_state, losses, penalties

    return _COMPILED.put(key, (jax.jit(epoch), jax.jit(o.validation_loss)))


def _none(*args: Any) -> None:  # the validation loss of a fit without validation rows
    return None


def fit_gradient(
    objective: Objective,
    train: list[dict[str, np.ndarray]],
    valid: list[dict[str, np.ndarray]],
    settings: dict[str, Any],
    optimizer: optax.GradientTransformation | None,
    options: GradientOptions,
    key: jax.Array,
    progress: bool,
    plan: Any = None,
) -> FitEstimate:
    """Fit by gradient steps on ``objective``: MAP, or SVI when ``objective.bayesian``;
    with ``plan``, on rows that are not all here: sharded over processes
    (:class:`~scm_ppl.learn.distributed.DataParallel`) or streamed from disk
    (:class:`~scm_ppl.learn.streaming.StreamPlan`)."""
    num_epochs, batch_size, lr, patience, min_delta, restore_best, num_samples = options
    counts = [num_rows(b) for b in train] if plan is None else [plan.rows]
    total = sum(counts)
    batch = total if batch_size is None else min(batch_size, total)
    steps = -(-total // batch)
    sizes = [(n, max(1, min(n, round(batch * n / total)))) for n in counts]
    train_dev = [{s: jnp.asarray(v) for s, v in b.items()} for b in train] if plan is None else []
    valid_dev = [{s: jnp.asarray(v) for s, v in b.items()} for b in valid]
    has_valid = any(num_rows(b) for b in valid)
    if optimizer is None:  # the learning rate lives in the optimizer state: no recompile
        optimizer, optimizer_key = optax.inject_hyperparams(optax.adam)(learning_rate=lr), "adam"
    else:
        optimizer_key = optimizer
    if plan is None:
        run_epoch, run_valid = compiled_epoch(objective, optimizer, optimizer_key, sizes, steps)
        const = feature_stats(train)
    else:  # the rows stay where they are (other processes, disk); the plan brings them
        run_epoch = plan.compiled_epoch(objective, optimizer, optimizer_key, sizes, steps)
        train_dev, const, run_valid = [plan.device_columns(train[0])], plan.stats(), _none
    state = initial_state(objective, train[0])
    opt_state = optimizer.init(state)
    best_state, best_value, best_epoch, wait = state, math.inf, 0, 0
    losses: list[float] = []
    valid_losses: list[float] = []
    penalties: list[float] = []
    stopped = False
    bar = _Progress(progress, num_epochs, f"fit ({settings['method']})")
    # One key for every validation pass (common random numbers): with local latents the
    # validation loss is an importance-sampling estimate, and a fresh key each epoch would
    # add noise that early stopping mistakes for progress.
    key, valid_key = jax.random.split(key)
    start = time.perf_counter()
    try:
        for epoch_number in range(1, num_epochs + 1):
            key, epoch_key = jax.random.split(key)
            state, opt_state, step_losses, step_penalties = run_epoch(
                state, opt_state, train_dev, const, epoch_key
            )
            valid_loss = run_valid(state, valid_dev, valid_key, const) if has_valid else None
            step_losses, step_penalties, valid_loss = jax.device_get(
                (step_losses, step_penalties, valid_loss)
            )
            finite = np.isfinite(step_losses)
            if not finite.all():
                first = int(np.argmin(finite))
                detail = f" (step {first + 1} of {steps})"
                raise _diverged("loss", step_losses[first], epoch_number, detail, settings)
            if valid_loss is not None and not np.isfinite(valid_loss):
                raise _diverged("validation loss", valid_loss, epoch_number, "", settings)
            # The learning curve keeps the data term and the penalty apart, so penalised and
            # plain fits compare on the same scale.
            losses.append(float(np.mean(step_losses - step_penalties)))
            penalties.append(float(np.mean(step_penalties)))
            if valid_loss is not None:
                valid_losses.append(float(valid_loss))
            monitored = valid_losses[-1] if valid_loss is not None else losses[-1]
            bar.update(epoch_number, losses[-1], None if valid_loss is None else float(valid_loss))
            if monitored < best_value - min_delta:
                best_state, best_value, best_epoch, wait = state, monitored, epoch_number, 0
            else:
                wait += 1
                if patience is not None and wait >= patience:
                    stopped = True
                    break
    finally:
        bar.close()
    final = best_state if restore_best and has_valid else state
    if plan is not None:  # replicated over processes: the same values, here
        final = jax.tree.map(lambda x: jnp.asarray(np.asarray(x)), final)
    params, values = objective.constrain(final)
    seconds = time.perf_counter() - start
    curve: dict[str, Any] = {
        "losses": np.asarray(losses),
        "validation_losses": np.asarray(valid_losses),
        "best_epoch": best_epoch,
        "stopped_early": stopped,
        "seconds": seconds,
        "settings": {
            **settings,
            "epochs_run": len(losses),
            "steps_per_epoch": steps,
            **({} if plan is None else plan.settings()),
        },
        "penalties": np.asarray(penalties) if objective.icm_pairs else np.zeros(0),
    }
    if not objective.bayesian:
        return FitEstimate(params=params, point=values, loc={}, scale={}, samples={}, **curve)
    loc = dict(final["loc"])
    scale = {k: jax.nn.softplus(v) for k, v in final["scale"].items()}
    samples = {}
    for i, (name, m) in enumerate(sorted(loc.items())):
        z = m + scale[name] * jax.random.normal(jax.random.fold_in(key, i), (num_samples, *m.shape))
        samples[name] = biject_to(objective.structure.supports[name])(z)
    return FitEstimate(params=params, point={}, loc=loc, scale=scale, samples=samples, **curve)
