"""Neural-logit candidates for discrete nodes of :func:`~scm_ppl.learn.scm_from_graph`:
a Bernoulli (``"mlp-logistic"``) and a Categorical (``"mlp-softmax"``) whose logits read
the standardised features through one hidden ``tanh`` layer beside the linear term::

    h = tanh(x @ hidden_weight + hidden_bias)
    logits = x @ weight + bias + h @ out_weight

The site is ``BernoulliLogits`` / ``CategoricalLogits`` of these logits, so probabilities
are never formed (no unit's evidence underflows) and abduction is the same as for the
linear ``logistic`` / ``softmax`` families. Training reuses the Adam loop of
:mod:`scm_ppl.learn.flexible`, started from the linear maximum-likelihood fit with the
output layer at zero, so the net only bends where the held-out likelihood pays for it.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from scipy import special

from scm_ppl.learn.flexible import HIDDEN, L2, train_adam
from scm_ppl.learn.glm import fit_family

__all__ = ["LOGIT_FAMILIES", "fit_logits", "logits_of", "row_loglik_logits"]

LOGIT_FAMILIES = {"mlp-logistic": "logistic", "mlp-softmax": "softmax"}  # and their base


def logits_of(p: Any, feats: Any, xp: Any = jnp) -> Any:
    """The logits (binary: one per row; categorical: one per level) of a neural-logit
    mechanism with parameters ``p``; ``xp`` is ``jax.numpy`` or ``numpy``.

    Examples
    --------
    >>> import numpy as np
    >>> p = {"weight": np.ones(2), "bias": 0.0, "hidden_weight": np.zeros((2, 3)),
    ...      "hidden_bias": np.zeros(3), "out_weight": np.zeros(3)}
    >>> logits_of(p, np.array([[1.0, 2.0]]), np)
    array([3.])
    """
    h = xp.tanh(feats @ p["hidden_weight"] + p["hidden_bias"])
    return feats @ p["weight"] + p["bias"] + h @ p["out_weight"]


def _log_probs(logits: Any, binary: bool, xp: Any) -> Any:
    if binary:
        logits = xp.stack([xp.zeros_like(logits), logits], axis=-1)
    if xp is np:
        return logits - special.logsumexp(logits, axis=-1, keepdims=True)
    return jax.nn.log_softmax(logits, axis=-1)


def _loss(p: dict, feats: jax.Array, y: jax.Array, w: jax.Array, family: str) -> jax.Array:
    logp = _log_probs(logits_of(p, feats), family == "mlp-logistic", jnp)
    picked = jnp.take_along_axis(logp, y[:, None], axis=-1)[:, 0]
    penalty = jnp.sum(p["hidden_weight"] ** 2) + jnp.sum(p["out_weight"] ** 2)
    return -jnp.sum(w * picked) / jnp.sum(w) + L2 * penalty


def fit_logits(
    family: str, features: np.ndarray, y: np.ndarray, stats: dict, train: np.ndarray, seed: int
) -> dict[str, np.ndarray]:
    """``family`` fitted to the rows ``train`` (a boolean mask) of the codes ``y``, from
    the linear fit of its base family (``stats["levels"]`` gives the categories).

    Examples
    --------
    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> x = rng.normal(size=(600, 2))
    >>> y = (rng.random(600) < 1 / (1 + np.exp(-4 * x[:, 0] * x[:, 1]))).astype(int)
    >>> p = fit_logits("mlp-logistic", x, y, {"levels": (0, 1)}, np.ones(600, bool), 0)
    >>> bool(row_loglik_logits("mlp-logistic", p, x, y).mean() > -0.6)  # log(1/2) = -0.69
    True
    """
    base = LOGIT_FAMILIES[family]
    linear = fit_family(base, features[train], y[train], stats)
    k = features.shape[1]
    width = () if family == "mlp-logistic" else (len(stats["levels"]),)
    rng = np.random.default_rng(seed)
    p = {
        "weight": np.asarray(linear["weight"], np.float32),
        "bias": np.asarray(linear["bias"], np.float32),
        "hidden_weight": (rng.normal(size=(k, HIDDEN)) / np.sqrt(max(k, 1))).astype(np.float32),
        "hidden_bias": (0.5 * rng.normal(size=HIDDEN)).astype(np.float32),
        "out_weight": np.zeros((HIDDEN, *width), np.float32),
    }
    tree = jax.tree_util.tree_map(jnp.asarray, p)
    fitted = train_adam(
        tree,
        jnp.asarray(features, jnp.float32),
        jnp.asarray(y, jnp.int32),
        jnp.asarray(train, jnp.float32),
        family,
        _loss,
    )
    return {name: np.asarray(v, np.float64) for name, v in fitted.items()}


def row_loglik_logits(family: str, params: dict, features: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Log-likelihood of each row's code ``y`` under the fitted ``family``."""
    logits = logits_of(params, np.asarray(features, np.float64), np)
    logp = _log_probs(logits, family == "mlp-logistic", np)
    return logp[np.arange(len(y)), np.asarray(y).astype(int)]
