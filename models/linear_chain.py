"""A linear-Gaussian chain ``x1 -> x2 -> x3 -> x4`` with additive Gaussian noise.

Source: the textbook additive-noise SCM (Pearl, *Causality*, 2nd ed., §7.1; Peters,
Janzing & Schölkopf, *Elements of Causal Inference*, §6.4), used here because its
counterfactuals have a closed form::

    x1 = u1,                        u1 ~ Normal(0, s1)
    x_k = w_{k-1} * x_{k-1} + u_k,  u_k ~ Normal(0, s_k),   k = 2, 3, 4

The noise is implicit in the sample sites (``numpyro.sample("x_k", Normal(w x, s))``),
so the graph has the four sites and the three chain edges.

Known truths
------------
* For a fully observed unit the noise is determined: ``u_k = x_k - w_{k-1} x_{k-1}``
  (abduction has no uncertainty). Under ``do(x_k := v)`` the counterfactual keeps the
  upstream values, sets ``x_k = v`` and propagates ``x_j = w_{j-1} x_{j-1} + u_j``
  downstream with the unit's own noise: :func:`counterfactual_closed_form`.
* Interventional mean and covariance under hard interventions:
  :func:`interventional_mean_and_cov`.
"""

from __future__ import annotations

from collections.abc import Mapping

import jax.numpy as jnp
import numpy as np
import numpy.typing as npt
import numpyro
import numpyro.distributions as dist

Interventions = (
    Mapping[str, npt.ArrayLike] | Mapping[int, npt.ArrayLike] | Mapping[int | str, npt.ArrayLike]
)
"""``{node: value}`` with nodes given by site name (``"x2"``) or column index."""

NODES: tuple[str, ...] = ("x1", "x2", "x3", "x4")
"""Site names in topological order."""

EDGES: frozenset[tuple[str, str]] = frozenset({("x1", "x2"), ("x2", "x3"), ("x3", "x4")})
"""Directed parent -> child edges among the sites."""

WEIGHTS: tuple[float, ...] = (1.5, -0.8, 2.0)
"""``WEIGHTS[k]`` is the weight of ``NODES[k]`` in the mechanism of ``NODES[k + 1]``."""

NOISE_SCALES: tuple[float, ...] = (1.0, 0.5, 0.7, 0.3)
"""Standard deviation of the additive noise of each site, in ``NODES`` order."""


def model(
    n: int = 1,
    weights: npt.ArrayLike = WEIGHTS,
    noise_scales: npt.ArrayLike = NOISE_SCALES,
) -> None:
    """Sample ``n`` units of the chain; sites ``"x1".."x4"`` of shape ``(n,)``.

    Parameters
    ----------
    n
        Number of units (size of the ``"unit"`` plate).
    weights
        Three chain weights (``x1->x2``, ``x2->x3``, ``x3->x4``).
    noise_scales
        Four noise standard deviations.
    """
    w = jnp.asarray(weights)
    s = jnp.asarray(noise_scales)
    with numpyro.plate("unit", n):
        x = numpyro.sample(NODES[0], dist.Normal(0.0, s[0]))
        for k in range(1, len(NODES)):
            x = numpyro.sample(NODES[k], dist.Normal(w[k - 1] * x, s[k]))


def _node_index(key: int | str) -> int:
    if isinstance(key, str):
        if key not in NODES:
            raise KeyError(f"Unknown node {key!r}; the chain has nodes {list(NODES)}.")
        return NODES.index(key)
    if not 0 <= key < len(NODES):
        raise KeyError(f"Node index {key} out of range 0..{len(NODES) - 1}.")
    return key


def counterfactual_closed_form(
    x_observed: npt.ArrayLike,
    interventions: Interventions,
    weights: npt.ArrayLike = WEIGHTS,
) -> npt.NDArray[np.float64]:
    """Counterfactual values of fully observed units under hard interventions.

    Abduction ``u_k = x_k - w_{k-1} x_{k-1}`` (``u_1 = x_1``), action ``x_k := v``,
    prediction down the chain with each unit's own noise.

    Parameters
    ----------
    x_observed
        Factual values, shape ``(n, 4)`` with columns in ``NODES`` order.
    interventions
        ``{node: value}``; a node is a site name (``"x2"``) or a column index; a value
        is a scalar or one value per unit.
    weights
        The chain weights used by the model.

    Returns
    -------
    numpy.ndarray
        Counterfactual values, shape ``(n, 4)``.

    Examples
    --------
    >>> import numpy as np
    >>> x = np.array([[1.0, 2.0, 0.0, 1.0]])
    >>> counterfactual_closed_form(x, {"x2": 0.0}).round(3).tolist()
    [[1.0, 0.0, 1.6, 4.2]]
    """
    x = np.asarray(x_observed, dtype=np.float64)
    w = np.asarray(weights, dtype=np.float64)
    fixed = {_node_index(k): np.asarray(v, np.float64) for k, v in interventions.items()}
    u = x.copy()
    u[:, 1:] = x[:, 1:] - w * x[:, :-1]
    out = np.empty_like(x)
    for k in range(x.shape[1]):
        if k in fixed:
            out[:, k] = fixed[k]
        elif k == 0:
            out[:, k] = u[:, 0]
        else:
            out[:, k] = w[k - 1] * out[:, k - 1] + u[:, k]
    return out


def interventional_mean_and_cov(
    interventions: Interventions,
    weights: npt.ArrayLike = WEIGHTS,
    noise_scales: npt.ArrayLike = NOISE_SCALES,
) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64]]:
    """Mean ``(4,)`` and covariance ``(4, 4)`` of the chain under hard interventions.

    Examples
    --------
    >>> mean, cov = interventional_mean_and_cov({"x2": 1.0})
    >>> mean.round(3).tolist()
    [0.0, 1.0, -0.8, -1.6]
    """
    w = np.asarray(weights, dtype=np.float64)
    d = len(NODES)
    matrix = np.zeros((d, d))
    matrix[np.arange(d - 1), np.arange(1, d)] = w
    intercepts = np.zeros(d)
    variances = np.asarray(noise_scales, dtype=np.float64) ** 2
    for key, value in interventions.items():
        k = _node_index(key)
        matrix[:, k] = 0.0
        intercepts[k] = float(np.asarray(value))
        variances[k] = 0.0
    # Row-vector form x = x M + c + u  =>  x = (c + u) (I - M)^{-1}.
    propagate = np.linalg.inv(np.eye(d) - matrix)
    return intercepts @ propagate, propagate.T @ np.diag(variances) @ propagate
