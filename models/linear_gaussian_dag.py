"""A 10-node random linear-Gaussian DAG ``X0 .. X9`` with known weights.

Source: the random linear-Gaussian SEM used throughout causal-discovery benchmarks
(e.g. Zheng et al., "DAGs with NO TEARS", NeurIPS 2018: Erdős–Rényi graph, weights
uniform in ``±[0.5, 2]``); here with weights in ``±[0.5, 1.5]`` and edge density about
0.3. ``WEIGHTS`` was drawn once and is written below as literals, so it never changes::

    rng = np.random.default_rng(20240601)
    mask = np.triu(rng.random((10, 10)) < 0.3, k=1)
    w = rng.uniform(0.5, 1.5, (10, 10)) * rng.choice([-1.0, 1.0], (10, 10))
    WEIGHTS = np.where(mask, np.round(w, 2), 0.0)            # 16 edges of 45
    NOISE_SCALES = np.round(rng.uniform(0.5, 1.0, 10), 2)

The mechanisms are ``X_i = sum_j W[j, i] X_j + u_i``, ``u_i ~ Normal(0, s_i)``;
``WEIGHTS`` is strictly upper triangular, so ``X0 .. X9`` is a topological order, and
``WEIGHTS[j, i] != 0`` exactly when ``Xj -> Xi`` is an edge.

Known truths
------------
* In row-vector form ``x = x W + u``, so a fully observed unit has noise
  ``u = x - x W`` and its counterfactual under hard interventions follows by prediction
  in topological order with the intervened nodes fixed: :func:`counterfactual_closed_form`.
* Under hard interventions (columns of ``W`` of the intervened nodes zeroed, their
  noise replaced by the constant), ``x = (c + u)(I - W')^{-1}``, so the mean is
  ``c (I - W')^{-1}`` and the covariance ``(I - W')^{-T} D (I - W')^{-1}`` with
  ``D = diag(s^2)`` zeroed at intervened nodes: :func:`interventional_mean_and_cov`.
"""

from __future__ import annotations

from collections.abc import Mapping

import jax.numpy as jnp
import numpy as np
import numpy.typing as npt
import numpyro
import numpyro.distributions as dist

NUM_NODES = 10

NODES: tuple[str, ...] = tuple(f"X{i}" for i in range(NUM_NODES))
"""Site names in topological order."""

# fmt: off
WEIGHTS: npt.NDArray[np.float64] = np.array([
    # X0    X1    X2    X3    X4    X5    X6    X7    X8    X9
    [0.00, 0.00, 0.00, 0.00,  1.19, 0.00,  0.00, 0.00,  0.00,  0.00],  # X0
    [0.00, 0.00, 0.00, 0.00,  0.00, 0.00, -0.60, 1.12,  0.00, -0.56],  # X1
    [0.00, 0.00, 0.00, 0.99, -0.72, 0.50,  0.00, 0.00, -1.16,  0.74],  # X2
    [0.00, 0.00, 0.00, 0.00, -1.18, 0.00,  0.00, 0.88,  0.00,  0.00],  # X3
    [0.00, 0.00, 0.00, 0.00,  0.00, 0.00,  0.00, 1.24,  0.00,  1.49],  # X4
    [0.00, 0.00, 0.00, 0.00,  0.00, 0.00,  0.00, 0.00,  0.00,  0.00],  # X5
    [0.00, 0.00, 0.00, 0.00,  0.00, 0.00,  0.00, 0.00,  0.00, -0.70],  # X6
    [0.00, 0.00, 0.00, 0.00,  0.00, 0.00,  0.00, 0.00,  1.33,  0.54],  # X7
    [0.00, 0.00, 0.00, 0.00,  0.00, 0.00,  0.00, 0.00,  0.00,  0.00],  # X8
    [0.00, 0.00, 0.00, 0.00,  0.00, 0.00,  0.00, 0.00,  0.00,  0.00],  # X9
])
"""``WEIGHTS[j, i]`` is the weight of ``Xj`` in the mechanism of ``Xi`` (0: no edge)."""

NOISE_SCALES: npt.NDArray[np.float64] = np.array(
    [0.51, 0.91, 0.97, 0.53, 0.96, 0.61, 0.81, 0.87, 0.88, 0.73]
)
"""Standard deviation of the additive noise of each node."""
# fmt: on

EDGES: frozenset[tuple[str, str]] = frozenset(
    (NODES[int(j)], NODES[int(i)]) for j, i in zip(*np.nonzero(WEIGHTS), strict=True)
)
"""Directed parent -> child edges: the nonzero entries of ``WEIGHTS``."""


def model(
    n: int = 1,
    weights: npt.ArrayLike = WEIGHTS,
    noise_scales: npt.ArrayLike = NOISE_SCALES,
) -> None:
    """Sample ``n`` units; sites ``"X0".."X9"`` of shape ``(n,)``.

    Each node reads only its real parents (the nonzero entries of its column of
    ``weights``, found at trace time), so the program's graph is the DAG itself.

    Parameters
    ----------
    n
        Number of units (size of the ``"unit"`` plate).
    weights
        ``(10, 10)`` strictly upper-triangular weight matrix, concrete (not traced):
        its sparsity pattern decides which sites each mechanism reads.
    noise_scales
        ``(10,)`` noise standard deviations.
    """
    w = np.asarray(weights)
    s = jnp.asarray(noise_scales)
    values: list = []
    with numpyro.plate("unit", n):
        for i in range(w.shape[1]):
            loc = sum(
                (float(w[j, i]) * values[j] for j in range(i) if w[j, i] != 0.0),
                start=jnp.zeros(()),
            )
            values.append(numpyro.sample(NODES[i], dist.Normal(loc, s[i])))


def counterfactual_closed_form(
    x_observed: npt.ArrayLike,
    interventions: Mapping[int, float],
    weights: npt.ArrayLike = WEIGHTS,
) -> npt.NDArray[np.float64]:
    """Counterfactual values of fully observed units under hard interventions.

    Abduction ``u = x - x W``; action: the intervened nodes are fixed; prediction in
    topological order ``x'_i = sum_j W[j, i] x'_j + u_i``.

    Parameters
    ----------
    x_observed
        Factual values, shape ``(n, 10)``.
    interventions
        ``{node index: value}``.
    weights
        The weight matrix used by the model.

    Returns
    -------
    numpy.ndarray
        Counterfactual values, shape ``(n, 10)``.

    Examples
    --------
    >>> import numpy as np
    >>> x = np.zeros((1, 10))
    >>> cf = counterfactual_closed_form(x, {0: 1.0})
    >>> float(cf[0, 4])  # X0 -> X4 with weight 1.19; all noise zero
    1.19
    """
    x = np.asarray(x_observed, dtype=np.float64)
    w = np.asarray(weights, dtype=np.float64)
    u = x - x @ w
    out = np.empty_like(x)
    for i in range(x.shape[1]):
        if i in interventions:
            out[:, i] = float(interventions[i])
        else:
            out[:, i] = out[:, :i] @ w[:i, i] + u[:, i]
    return out


def interventional_mean_and_cov(
    interventions: Mapping[int, float],
    weights: npt.ArrayLike = WEIGHTS,
    noise_scales: npt.ArrayLike = NOISE_SCALES,
) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64]]:
    """Mean ``(10,)`` and covariance ``(10, 10)`` under hard interventions.

    Parameters
    ----------
    interventions
        ``{node index: value}``; ``{}`` gives the observational distribution.

    Examples
    --------
    >>> mean, cov = interventional_mean_and_cov({0: 2.0})
    >>> float(mean[4]), float(cov[0, 0])
    (2.38, 0.0)
    """
    w = np.array(weights, dtype=np.float64)
    d = w.shape[0]
    intercepts = np.zeros(d)
    variances = np.asarray(noise_scales, dtype=np.float64) ** 2
    for i, value in interventions.items():
        w[:, i] = 0.0
        intercepts[i] = float(value)
        variances[i] = 0.0
    propagate = np.linalg.inv(np.eye(d) - w)
    return intercepts @ propagate, propagate.T @ np.diag(variances) @ propagate
