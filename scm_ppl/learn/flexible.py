"""Flexible candidates for continuous nodes of :func:`~scm_ppl.learn.scm_from_graph`:
an additive-noise MLP (``"mlp"``) and a location–scale MLP (``"mlp-loc-scale"``).

Both read the standardised features through one hidden ``tanh`` layer beside a linear
term, on the standardised target ``z``::

    h = tanh(x @ hidden_weight + hidden_bias)
    loc = x @ weight + bias + h @ out_weight
    mlp:            z ~ Normal(loc, scale)
    mlp-loc-scale:  z ~ Normal(loc, exp(scale_bias + h @ scale_out))

The log-scale reads the features only through the saturating hidden layer, so it stays
bounded beyond the training range (a linear term there extrapolates without limit). Far
outside the training rows a location-scale net can still be confidently wrong, and a
held-out unit there costs it many nats: the held-out score sees that, and keeps the
simpler family.

The parameters are plain arrays (``numpyro.param`` sites ``"<node>.hidden_weight"``, ...)
so a fit refines them, ``do_mechanism`` and ``inhibit`` act on them by name, and the
program prints as source. They start at the linear least-squares fit (the output layer at
zero) and are trained full-batch by Adam on the host; the held-out likelihood then decides
whether the bend was worth it.
"""

from __future__ import annotations

import functools
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax

__all__ = [
    "HIDDEN",
    "MLP_FAMILIES",
    "fit_flexible",
    "fit_mlp",
    "mlp_loc_scale",
    "row_loglik_flexible",
    "score_flexible",
    "train_adam",
]

MLP_FAMILIES = ("mlp", "mlp-loc-scale")
HIDDEN = 16
STEPS = 400
LEARNING_RATE = 0.02
L2 = 1e-3  # on the hidden and output weights: keeps a small data set from bending to noise
LOG_SCALE_MIN = -7.0  # a location-scale net cannot shrink a unit's noise to nothing


def mlp_loc_scale(p: Any, feats: Any, family: str, xp: Any = jnp) -> tuple[Any, Any]:
    """``(loc, scale)`` of the standardised target; ``xp`` is ``jax.numpy`` or ``numpy``."""
    h = xp.tanh(feats @ p["hidden_weight"] + p["hidden_bias"])
    loc = feats @ p["weight"] + p["bias"] + h @ p["out_weight"]
    if family == "mlp":
        return loc, p["scale"]
    log_scale = p["scale_bias"] + h @ p["scale_out"]
    return loc, xp.exp(xp.maximum(log_scale, LOG_SCALE_MIN))


def _loss(p: dict, feats: jax.Array, z: jax.Array, w: jax.Array, family: str) -> jax.Array:
    loc, scale = mlp_loc_scale(p, feats, family)
    nll = jnp.sum(w * (0.5 * ((z - loc) / scale) ** 2 + jnp.log(scale))) / jnp.sum(w)
    bent = (
        ("hidden_weight", "out_weight", "scale_out")
        if "scale_out" in p
        else ("hidden_weight", "out_weight")
    )
    penalty = sum(jnp.sum(p[k] ** 2) for k in bent)
    return nll + L2 * penalty


@functools.partial(jax.jit, static_argnames=("family", "loss"))
def train_adam(
    p: dict, feats: jax.Array, z: jax.Array, w: jax.Array, family: str, loss: Any = _loss
) -> dict:
    """``p`` after :data:`STEPS` full-batch Adam steps on ``loss(p, feats, z, w, family)``
    (a module-level function, so each family compiles once per shape). Rows are weighted
    (0: held out), so scoring and refitting share one compilation."""
    opt = optax.adam(LEARNING_RATE)

    def step(carry: tuple, _: None) -> tuple:
        params, state = carry
        grads = jax.grad(loss)(params, feats, z, w, family)
        updates, state = opt.update(grads, state, params)
        return (optax.apply_updates(params, updates), state), None

    (p, _), _ = jax.lax.scan(step, (p, opt.init(p)), None, length=STEPS)
    return p


def fit_mlp(
    family: str,
    features: np.ndarray,
    z: np.ndarray,
    linear: dict,
    weights: np.ndarray | None = None,
    seed: int = 0,
) -> dict[str, np.ndarray]:
    """Parameters of ``family`` fitted to the standardised target ``z``, started from the
    linear fit ``linear`` (``weight``, ``bias``, ``scale``); ``weights`` (0/1) mark the
    training rows.

    Examples
    --------
    >>> import numpy as np
    >>> x = np.linspace(-2, 2, 400)[:, None]
    >>> z = np.sin(2 * x[:, 0]); z = (z - z.mean()) / z.std()
    >>> p = fit_mlp("mlp", x, z, {"weight": np.zeros(1), "bias": 0.0, "scale": 1.0})
    >>> bool(p["scale"] < 0.3)  # the bend explained: little noise is left
    True
    """
    k = features.shape[1]
    rng = np.random.default_rng(seed)
    p = {
        "weight": np.asarray(linear["weight"], np.float32),
        "bias": np.float32(linear["bias"]),
        "hidden_weight": (rng.normal(size=(k, HIDDEN)) / np.sqrt(max(k, 1))).astype(np.float32),
        "hidden_bias": (0.5 * rng.normal(size=HIDDEN)).astype(np.float32),
        "out_weight": np.zeros(HIDDEN, np.float32),
    }
    if family == "mlp":
        p["scale"] = np.float32(linear["scale"])
    else:
        p["scale_bias"] = np.float32(np.log(linear["scale"]))
        p["scale_out"] = np.zeros(HIDDEN, np.float32)
    tree = jax.tree_util.tree_map(jnp.asarray, p)
    feats = jnp.asarray(features, jnp.float32)
    w = jnp.ones(len(z), jnp.float32) if weights is None else jnp.asarray(weights, jnp.float32)
    fitted = train_adam(tree, feats, jnp.asarray(z, jnp.float32), w, family)
    out = {name: np.asarray(v, np.float64) for name, v in fitted.items()}
    if family == "mlp":  # the noise scale at its maximum-likelihood value given the net
        loc, _ = mlp_loc_scale(out, np.asarray(features, np.float64), family, np)
        resid = (np.asarray(z) - loc)[np.asarray(w) > 0]
        out["scale"] = np.asarray(max(float(np.sqrt(np.mean(resid**2))), 1e-3))
    return out


def fit_flexible(
    family: str, features: np.ndarray, y: np.ndarray, stats: dict, train: np.ndarray, seed: int
) -> dict[str, np.ndarray]:
    """``family`` fitted to the rows ``train`` (a boolean mask) of ``y`` in the target's
    standardisation ``stats`` (``mean``, ``sd``), from the linear least-squares start."""
    z = (y - stats["mean"]) / stats["sd"]
    design = np.column_stack([features[train], np.ones(int(train.sum()))])
    coef = np.linalg.lstsq(design, z[train], rcond=None)[0]
    resid = z[train] - design @ coef
    linear = {"weight": coef[:-1], "bias": coef[-1], "scale": max(float(resid.std()), 1e-3)}
    return fit_mlp(family, features, z, linear, train.astype(np.float32), seed)


def score_flexible(
    family: str, params: dict, features: np.ndarray, y: np.ndarray, stats: dict
) -> float:
    """Mean log-likelihood per row of ``y`` (data units) under the fitted ``family``."""
    return float(np.mean(row_loglik_flexible(family, params, features, y, stats)))


def row_loglik_flexible(
    family: str, params: dict, features: np.ndarray, y: np.ndarray, stats: dict
) -> np.ndarray:
    """Log-likelihood of each row of ``y`` (data units) under the fitted ``family``."""
    loc, scale = mlp_loc_scale(params, np.asarray(features, np.float64), family, np)
    mu, sd = stats["mean"] + stats["sd"] * loc, stats["sd"] * scale
    return -0.5 * ((y - mu) / sd) ** 2 - np.log(sd) - 0.5 * np.log(2 * np.pi)
