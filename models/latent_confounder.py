"""A latent confounder ``U`` of ``X`` and ``Y``, plus ``X -> Y``; linear-Gaussian.

Source: the standard confounded linear SEM (Pearl, *Causality*, 2nd ed., §5.2;
the "instrument-free" case of Wright's path analysis)::

    U ~ Normal(0, SIGMA_U)                     (unobserved exogenous root)
    X = ALPHA U + e_X,          e_X ~ Normal(0, SIGMA_X)
    Y = BETA X + GAMMA U + e_Y, e_Y ~ Normal(0, SIGMA_Y)

``U`` is an explicit sample site with two children, so the ADMG projection has
``X <-> Y`` as well as ``X -> Y``.

Known truths
------------
*Posterior of the confounder* (:func:`posterior_u`). Given ``X = x, Y = y`` the
likelihood of ``U`` factorises into ``x ~ N(ALPHA U, SIGMA_X^2)`` and
``y - BETA x ~ N(GAMMA U, SIGMA_Y^2)``; with the prior ``N(0, SIGMA_U^2)`` this is
Gaussian conditioning with precision

    1/v = 1/SIGMA_U^2 + ALPHA^2/SIGMA_X^2 + GAMMA^2/SIGMA_Y^2,
    m   = v (ALPHA x / SIGMA_X^2 + GAMMA (y - BETA x) / SIGMA_Y^2).

Given ``X = x`` only (:func:`posterior_u_given_x`): ``1/v = 1/SIGMA_U^2 + ALPHA^2/SIGMA_X^2``,
``m = v ALPHA x / SIGMA_X^2``.

*Counterfactual* ``Y_{x'}`` (:func:`counterfactual_y`). Abduction gives, per posterior
draw of ``U``, ``e_Y = y - BETA x - GAMMA U``; prediction gives
``Y_{x'} = BETA x' + GAMMA U + e_Y = y + BETA (x' - x)``. The ``U`` terms cancel, so
the counterfactual is exact: mean ``y + BETA (x' - x)``, variance 0, although ``U``
itself stays uncertain. With evidence on ``X`` only (:func:`counterfactual_y_given_x`)
``e_Y`` keeps its prior: ``Y_{x'} = BETA x' + GAMMA U + e_Y`` with ``U ~ N(m, v)``, so
mean ``BETA x' + GAMMA m`` and variance ``GAMMA^2 v + SIGMA_Y^2``.

*Interventional* ``Y | do(X = x')`` (:func:`interventional_y`): mean ``BETA x'``,
variance ``GAMMA^2 SIGMA_U^2 + SIGMA_Y^2``; the observational regression slope of
``Y`` on ``X`` is :func:`observational_slope`, which differs from ``BETA``
(confounding bias).
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
import numpy.typing as npt
import numpyro
import numpyro.distributions as dist

NODES: tuple[str, ...] = ("U", "X", "Y")
"""Site names in topological order; ``U`` is latent."""

EDGES: frozenset[tuple[str, str]] = frozenset({("U", "X"), ("U", "Y"), ("X", "Y")})
"""Directed parent -> child edges among the sites."""

LATENT: tuple[str, ...] = ("U",)
"""Sites that are never observed."""

ALPHA = 1.2
"""Weight of ``U`` in ``X``."""
BETA = 0.8
"""Weight of ``X`` in ``Y`` (the causal effect)."""
GAMMA = -1.5
"""Weight of ``U`` in ``Y``."""
SIGMA_U = 1.0
"""Prior standard deviation of ``U``."""
SIGMA_X = 0.6
"""Noise standard deviation of ``X``."""
SIGMA_Y = 0.5
"""Noise standard deviation of ``Y``."""


class Gaussian(NamedTuple):
    """Mean and variance of a (possibly batched) univariate Gaussian."""

    mean: npt.NDArray[np.float64]
    var: npt.NDArray[np.float64]


def model(n: int = 1) -> None:
    """Sample ``n`` units; sites ``"U"``, ``"X"``, ``"Y"`` of shape ``(n,)``."""
    with numpyro.plate("unit", n):
        u = numpyro.sample("U", dist.Normal(0.0, SIGMA_U))
        x = numpyro.sample("X", dist.Normal(ALPHA * u, SIGMA_X))
        numpyro.sample("Y", dist.Normal(BETA * x + GAMMA * u, SIGMA_Y))


def posterior_u(x: npt.ArrayLike, y: npt.ArrayLike) -> Gaussian:
    """Exact posterior ``P(U | X = x, Y = y)`` (Gaussian conditioning).

    Examples
    --------
    >>> post = posterior_u(0.0, 0.0)
    >>> float(post.mean)
    0.0
    """
    x = np.asarray(x, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    var = 1.0 / (1.0 / SIGMA_U**2 + ALPHA**2 / SIGMA_X**2 + GAMMA**2 / SIGMA_Y**2)
    mean = var * (ALPHA * x / SIGMA_X**2 + GAMMA * (y - BETA * x) / SIGMA_Y**2)
    return Gaussian(mean, np.broadcast_to(var, mean.shape).copy())


def posterior_u_given_x(x: npt.ArrayLike) -> Gaussian:
    """Exact posterior ``P(U | X = x)``."""
    x = np.asarray(x, dtype=np.float64)
    var = 1.0 / (1.0 / SIGMA_U**2 + ALPHA**2 / SIGMA_X**2)
    mean = var * ALPHA * x / SIGMA_X**2
    return Gaussian(mean, np.broadcast_to(var, mean.shape).copy())


def counterfactual_y(x: npt.ArrayLike, y: npt.ArrayLike, x_prime: npt.ArrayLike) -> Gaussian:
    """``Y_{x'} | X = x, Y = y``: mean ``y + BETA (x' - x)``, variance exactly 0.

    Examples
    --------
    >>> cf = counterfactual_y(1.0, 2.0, 0.0)
    >>> float(cf.mean), float(cf.var)
    (1.2, 0.0)
    """
    x, y, x_prime = np.broadcast_arrays(
        np.asarray(x, np.float64), np.asarray(y, np.float64), np.asarray(x_prime, np.float64)
    )
    mean = y + BETA * (x_prime - x)
    return Gaussian(mean, np.zeros_like(mean))


def counterfactual_y_given_x(x: npt.ArrayLike, x_prime: npt.ArrayLike) -> Gaussian:
    """``Y_{x'} | X = x``: mean ``BETA x' + GAMMA m``, variance ``GAMMA^2 v + SIGMA_Y^2``.

    ``m, v`` are the mean and variance of :func:`posterior_u_given_x`.
    """
    post = posterior_u_given_x(x)
    x_prime = np.asarray(x_prime, dtype=np.float64)
    mean = BETA * x_prime + GAMMA * post.mean
    var = np.broadcast_to(GAMMA**2 * post.var + SIGMA_Y**2, mean.shape).copy()
    return Gaussian(mean, var)


def interventional_y(x_prime: npt.ArrayLike) -> Gaussian:
    """``Y | do(X = x')``: mean ``BETA x'``, variance ``GAMMA^2 SIGMA_U^2 + SIGMA_Y^2``."""
    mean = BETA * np.asarray(x_prime, dtype=np.float64)
    var = np.full(mean.shape, GAMMA**2 * SIGMA_U**2 + SIGMA_Y**2)
    return Gaussian(mean, var)


def observational_slope() -> float:
    """Slope of the population regression of ``Y`` on ``X``: ``Cov(X, Y) / Var(X)``.

    ``Cov(X, Y) = BETA Var(X) + GAMMA ALPHA SIGMA_U^2``, so the slope is
    ``BETA + GAMMA ALPHA SIGMA_U^2 / Var(X)`` and not ``BETA``.
    """
    var_x = ALPHA**2 * SIGMA_U**2 + SIGMA_X**2
    return BETA + GAMMA * ALPHA * SIGMA_U**2 / var_x
