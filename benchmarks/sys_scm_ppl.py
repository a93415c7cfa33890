"""The workloads on scm_ppl, through its public API only.

Each ``w*`` function answers one query and returns once the answer is computed; the
``bench_*`` functions time them (first call and steady state) for the worker.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax

from benchmarks.common import INTERVENED_VALUE, W4_SHIFT
from models import latent_confounder as lc
from models import linear_gaussian_dag as lg
from models import nonlinear as nl
from scm_ppl import (
    CausalResult,
    FittedSCM,
    counterfactual,
    dose_response,
    fit,
    interventional,
    sweep,
)
from scm_ppl.errors import NotIdentifiableWarning

INTERVENTION = {"X3": INTERVENED_VALUE}


def _ready(result: CausalResult, worlds: tuple[str, ...] = ()) -> CausalResult:
    """Wait for the answer the query was asked for: the named worlds of a counterfactual
    (as the compiled call produced them; layouts not asked for, such as the worlds
    stacked side by side, are built lazily on first read and not timed), else the
    predictions."""
    if worlds:
        jax.block_until_ready([dict(result.world(w)) for w in worlds])
    else:
        jax.block_until_ready(dict(result.samples["predictions"]))
    return result


def columns(x: np.ndarray, names: tuple[str, ...] = lg.NODES) -> dict[str, jax.Array]:
    """``(n, d)`` rows as ``{site: (n,) float32 device array}``: the evidence format."""
    return {name: jnp.asarray(x[:, i], jnp.float32) for i, name in enumerate(names)}


# ------------------------------------------------------------------------------- W1
def w1(evidence: Mapping[str, jax.Array], key: jax.Array) -> CausalResult:
    """Exact counterfactuals of fully observed units under do(X3 := 1)."""
    n = int(evidence["X0"].shape[0])
    return _ready(
        counterfactual(lg.model, evidence, INTERVENTION, rng_key=key, model_kwargs={"n": n}),
        ("cf",),
    )


def w1_values(result: CausalResult) -> np.ndarray:
    """The counterfactual world as ``(n, 10)``."""
    world = result.world("cf")
    return np.stack([np.asarray(world[name][0, 0]) for name in lg.NODES], axis=-1)


# ------------------------------------------------------------------------------- W2
def w2(
    x: jax.Array, x_prime: jax.Array, key: jax.Array, num_warmup: int, num_samples: int
) -> CausalResult:
    """The counterfactual posterior of ``Y`` under do(X := x') given ``X`` only (NUTS)."""
    with warnings.catch_warnings():
        # U confounds X and Y: P(Y | do(X)) is not identified from observational data,
        # and scm_ppl says so; the answer rests on the program's parametric form.
        warnings.simplefilter("ignore", NotIdentifiableWarning)
        return _ready(
            counterfactual(
                lc.model,
                {"X": x},
                {"X": x_prime},
                rng_key=key,
                num_warmup=num_warmup,
                num_samples=num_samples,
                # W2 measures NUTS itself; "auto" now takes the exact per-unit Gaussian here.
                method="nuts",
                model_kwargs={"n": int(x.shape[0])},
            ),
            ("factual", "cf"),
        )


def w2_values(result: CausalResult) -> tuple[np.ndarray, np.ndarray]:
    """Factual and counterfactual ``Y`` draws, each ``(draw, unit)``."""
    return np.asarray(result.world("factual")["Y"][0]), np.asarray(result.world("cf")["Y"][0])


# ------------------------------------------------------------------------------- W3
def w3(model: Any, intervention: Mapping[str, float], n: int, key: jax.Array) -> CausalResult:
    """``n`` draws of every site under the intervention (one draw of an ``n``-unit plate)."""
    return _ready(
        interventional(model, intervention, rng_key=key, num_samples=1, model_kwargs={"n": n})
    )


W3_MODELS = {
    "linear": (lg.model, INTERVENTION),
    "nonlinear": (nl.model, {"x3": INTERVENED_VALUE}),
}


# ------------------------------------------------------------------------------- W4
W4_BATCH = 512


def w4_optimizer(num_rows: int, num_epochs: int) -> optax.GradientTransformation:
    """Adam with a cosine-decayed learning rate over the whole fit (tutorial 03's).

    Build it once: ``fit`` caches its compiled epoch per optimizer, so a one-epoch call
    with the same optimizer compiles what the real fit then reuses.
    """
    steps = num_epochs * -(-round(0.9 * num_rows) // W4_BATCH)
    return optax.adam(optax.cosine_decay_schedule(0.01, steps, alpha=0.05))


def w4_fit(
    train: Mapping[str, np.ndarray],
    num_epochs: int,
    key: jax.Array,
    optimizer: optax.GradientTransformation | None = None,
) -> FittedSCM:
    """Learn models/nonlinear.py's learnable program from the training rows (MAP)."""
    if optimizer is None:
        optimizer = w4_optimizer(len(train["x1"]), num_epochs)
    return fit(
        nl.learnable_model,
        {k: jnp.asarray(v, jnp.float32) for k, v in train.items()},
        batch_size=W4_BATCH,
        num_epochs=num_epochs,
        optimizer=optimizer,
        validation_fraction=0.1,
        progress=False,
        rng_key=key,
    )


def w4_counterfactual(fitted: FittedSCM, held_out: Mapping[str, np.ndarray]) -> np.ndarray:
    """Counterfactuals of the held-out units under do(x2 := x2 + 0.3): ``(n, 5)``."""
    n = len(held_out["x1"])
    evidence = {k: jnp.asarray(v, jnp.float32) for k, v in held_out.items()}
    target = {"x2": jnp.asarray(held_out["x2"] + W4_SHIFT, jnp.float32)}
    result = counterfactual(
        fitted, evidence, target, rng_key=jax.random.key(3), model_kwargs={"n": n}
    )
    world = result.world("cf")
    return np.stack([np.asarray(world[k][0, 0]) for k in nl.NODES], axis=-1)


# ------------------------------------------------------------------------------- W5
def w5_batched(
    evidence: Mapping[str, jax.Array],
    values: np.ndarray,
    key: jax.Array,
    keep_all: bool,
    stack: bool = True,
) -> Any:
    """W5 in one call: (a) ``counterfactual`` with ``sweep(values)``, every counterfactual
    as ``(values, n, 10)`` (``stack=False``: the per-site arrays the user gets, without the
    copy that stacking them costs); (b) ``dose_response``, the mean counterfactual ``X9``
    per value, reduced inside the compiled call."""
    n = int(evidence["X0"].shape[0])
    grid = jnp.asarray(values)
    if keep_all:
        result = counterfactual(
            lg.model, evidence, {"X3": sweep(grid)}, rng_key=key, model_kwargs={"n": n}
        )
        world = result.world("cf")
        if not stack:
            return jax.block_until_ready({name: world[name] for name in lg.NODES})
        out = jnp.stack([world[name][0, 0] for name in lg.NODES], axis=-1)
    else:
        out = dose_response(
            lg.model, evidence, "X3", grid, "X9", rng_key=key, model_kwargs={"n": n}
        ).mean
    return np.asarray(jax.block_until_ready(out))


def w5_loop(
    evidence: Mapping[str, jax.Array], values: np.ndarray, key: jax.Array, keep_all: bool
) -> np.ndarray:
    """W5 with the current API: one counterfactual call per intervention value.

    ``keep_all``: (a) every counterfactual, ``(values, n, 10)``; otherwise (b) the mean
    counterfactual ``X9`` per value: what a single-query API makes a user write.
    """
    n = int(evidence["X0"].shape[0])
    out = []
    for v in values:
        result = counterfactual(
            lg.model, evidence, {"X3": float(v)}, rng_key=key, model_kwargs={"n": n}
        )
        world = result.world("cf")
        if keep_all:
            out.append(jnp.stack([world[name][0, 0] for name in lg.NODES], axis=-1))
        else:
            out.append(world["X9"][0, 0].mean())
    return np.asarray(jax.block_until_ready(jnp.stack(out)))
