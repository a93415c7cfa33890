"""Maximum-likelihood fits of the candidate mechanism families, on the host, in closed
form or by L-BFGS: the starting point of :func:`~scm_ppl.learn.from_graph.scm_from_graph`
and the held-out likelihoods by which it picks a family per node.

Every fit works on standardised features (the caller standardises) and returns the
parameters in that scale; every score is a mean log-likelihood per row *in the data's own
units* (Jacobians included), so families compare fairly and the choice does not change
when a column is rescaled.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from scipy import optimize, special

from scm_ppl.errors import SettingsError

__all__ = ["fit_family", "row_loglik_family", "score_family"]

RIDGE = 1e-4  # keeps separable logistic fits (a treated group with no CPS twin) finite


def _gaussian(features: np.ndarray, target: np.ndarray) -> dict[str, Any]:
    design = np.column_stack([features, np.ones(len(target))])
    gram = design.T @ design + RIDGE * len(target) * np.diag([1.0] * features.shape[1] + [0.0])
    coef = np.linalg.solve(gram, design.T @ target)
    resid = target - design @ coef
    return {"weight": coef[:-1], "bias": coef[-1], "scale": max(float(resid.std()), 1e-3)}


def _binary(features: np.ndarray, target: np.ndarray) -> dict[str, Any]:
    n, k = features.shape
    sign = 2.0 * target - 1.0
    if k == 0:
        p = np.clip(target.mean(), 1e-6, 1 - 1e-6)
        return {"weight": np.zeros(0), "bias": float(np.log(p / (1 - p)))}

    def loss(theta: np.ndarray) -> tuple[float, np.ndarray]:
        margin = sign * (features @ theta[:k] + theta[k])
        resid = -sign * special.expit(-margin)  # d/dlogit of log(1 + exp(-margin))
        value = np.mean(np.logaddexp(0.0, -margin)) + RIDGE * theta[:k] @ theta[:k]
        grad = np.append(features.T @ resid / n + 2 * RIDGE * theta[:k], resid.mean())
        return float(value), grad

    theta = optimize.minimize(loss, np.zeros(k + 1), jac=True, method="L-BFGS-B").x
    return {"weight": theta[:k], "bias": float(theta[k])}


def _logistic(features: np.ndarray, target: np.ndarray, levels: int) -> dict[str, Any]:
    n, k = features.shape
    onehot = np.eye(levels)[target.astype(int)]
    if k == 0:
        return {"weight": np.zeros((0, levels)), "bias": np.log(onehot.mean(0) + 1e-6)}

    def loss(theta: np.ndarray) -> tuple[float, np.ndarray]:
        w = theta[: k * levels].reshape(k, levels)
        logits = features @ w + theta[k * levels :]
        logp = logits - special.logsumexp(logits, axis=1, keepdims=True)
        resid = np.exp(logp) - onehot
        value = -np.sum(onehot * logp) / n + RIDGE * np.sum(w**2)
        grad = np.concatenate([(features.T @ resid / n + 2 * RIDGE * w).ravel(), resid.mean(0)])
        return float(value), grad

    start = np.zeros(k * levels + levels)
    start[k * levels :] = np.log(onehot.mean(0) + 1e-3)
    theta = optimize.minimize(loss, start, jac=True, method="L-BFGS-B").x
    return {"weight": theta[: k * levels].reshape(k, levels), "bias": theta[k * levels :]}


def fit_family(family: str, features: np.ndarray, y: np.ndarray, stats: dict) -> dict[str, Any]:
    """Parameters of ``family`` fitted to ``y`` given standardised ``features``;
    ``stats`` holds the target's standardisation (``mean``, ``sd``, ``levels``)."""
    if family == "linear":
        return _gaussian(features, (y - stats["mean"]) / stats["sd"])
    if family == "log-linear":
        return _gaussian(features, (np.log(y) - stats["mean"]) / stats["sd"])
    if family == "hurdle":
        positive = y > 0
        zero = _binary(features, (~positive).astype(float))
        out = _gaussian(features[positive], (np.log(y[positive]) - stats["mean"]) / stats["sd"])
        return {**out, "zero_weight": zero["weight"], "zero_bias": zero["bias"]}
    if family == "logistic":
        return _binary(features, y.astype(float))
    if family == "softmax":
        return _logistic(features, y, len(stats["levels"]))
    raise SettingsError(
        f"Unknown family {family!r}; choose one of ['linear', 'log-linear', 'hurdle', "
        "'logistic', 'softmax']."
    )


def _normal_logpdf(x: np.ndarray, loc: np.ndarray, scale: float) -> np.ndarray:
    return -0.5 * ((x - loc) / scale) ** 2 - np.log(scale) - 0.5 * np.log(2 * np.pi)


def score_family(
    family: str, params: dict, features: np.ndarray, y: np.ndarray, stats: dict
) -> float:
    """Mean log-likelihood per row of ``y`` (data units) under the fitted ``family``."""
    return float(np.mean(row_loglik_family(family, params, features, y, stats)))


def row_loglik_family(
    family: str, params: dict, features: np.ndarray, y: np.ndarray, stats: dict
) -> np.ndarray:
    """Log-likelihood of each row of ``y`` (data units) under the fitted ``family``."""
    if family in ("logistic", "softmax"):
        logits = features @ params["weight"] + params["bias"]
        if family == "logistic":
            logits = np.column_stack([np.zeros_like(logits), logits])
        logp = logits - special.logsumexp(logits, axis=1, keepdims=True)
        return logp[np.arange(len(y)), y.astype(int)]
    loc = features @ params["weight"] + params["bias"]
    scale = params["scale"] * stats["sd"]
    if family == "linear":
        return _normal_logpdf(y, stats["mean"] + stats["sd"] * loc, scale)
    positive = y > 0
    log_y = np.log(np.where(positive, y, 1.0))
    log_pos = _normal_logpdf(log_y, stats["mean"] + stats["sd"] * loc, scale) - log_y
    if family == "log-linear":
        return log_pos
    zero_logit = features @ params["zero_weight"] + params["zero_bias"]
    return np.where(positive, -np.logaddexp(0, zero_logit) + log_pos, -np.logaddexp(0, -zero_logit))
