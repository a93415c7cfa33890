"""Learnable linear-Gaussian SCMs with a latent confounder ``U``: one whose causal
effect is not identified (bow), one where a front-door mediator identifies it.

Built for refit ensembles (:func:`scm_ppl.refit_ensemble`): every weight is a
``numpyro.param``, ``U ~ Normal(0, 1)`` is a per-unit latent site (fit with
``latent=["U"]``), and data come from the truths of :mod:`models.latent_confounder`
(bow) or the constants below (front door)::

    bow:         X = alpha U + sx e_X,   Y = beta X + gamma U + sy e_Y
    front door:  X = alpha U + sx e_X,   M = c X + sm e_M,   Y = d M + gamma U + sy e_Y

Known truths
------------
* Bow: the observed covariance of ``(X, Y)`` has 3 entries, the program 5 parameters, so
  a 2-dimensional family of parameter values fits the data equally well, and ``beta``
  varies along it. The unit-level counterfactual ``Y_{x'} | X = x, Y = y`` is
  ``y + beta (x' - x)`` (:func:`bow_counterfactual`): it spreads across equally good
  fits.
* Front door: 6 observed covariances, 7 parameters; ``c`` and ``d`` are fixed by the data
  (``c = Cov(X, M) / Var(X)``, ``d`` the coefficient of ``M`` in the regression of ``Y``
  on ``M`` and ``X``), so ``Y_{x'} | X = x, M = m, Y = y`` = ``y + c d (x' - x)``
  (:func:`front_door_counterfactual`) is the same for every equally good fit.
"""

from __future__ import annotations

from typing import Any

import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as dist
from numpyro.distributions import constraints

from models import latent_confounder

NODES: tuple[str, ...] = ("U", "X", "Y")
"""Site names of :func:`bow_model` (its default program) in topological order."""

EDGES: frozenset[tuple[str, str]] = frozenset({("U", "X"), ("U", "Y"), ("X", "Y")})
"""Directed parent -> child edges of :func:`bow_model`."""

LATENT: tuple[str, ...] = ("U",)
"""Sites that are never observed."""

C = 0.9
"""Front door: weight of ``X`` in ``M``."""
D = -0.7
"""Front door: weight of ``M`` in ``Y``."""
SIGMA_M = 0.5
"""Front door: noise standard deviation of ``M``."""


def bow_model(n: int = 1) -> None:
    """``U ~ N(0, 1)`` latent; ``X ~ N(alpha U, sx)``, ``Y ~ N(beta X + gamma U, sy)``."""
    alpha = jnp.asarray(numpyro.param("alpha", 0.5))
    beta = jnp.asarray(numpyro.param("beta", 0.0))
    gamma = jnp.asarray(numpyro.param("gamma", 0.5))
    sx = numpyro.param("sx", 1.0, constraint=constraints.positive)
    sy = numpyro.param("sy", 1.0, constraint=constraints.positive)
    with numpyro.plate("unit", n):
        u = numpyro.sample("U", dist.Normal(0.0, 1.0))
        x = numpyro.sample("X", dist.Normal(alpha * u, sx))
        numpyro.sample("Y", dist.Normal(beta * x + gamma * u, sy))


model = bow_model
"""The default program of this module: :func:`bow_model`."""


def front_door_model(n: int = 1) -> None:
    """``U ~ N(0, 1)`` latent; ``X ~ N(alpha U, sx)``, ``M ~ N(c X, sm)``,
    ``Y ~ N(d M + gamma U, sy)``."""
    alpha = jnp.asarray(numpyro.param("alpha", 0.5))
    c = jnp.asarray(numpyro.param("c", 0.0))
    d = jnp.asarray(numpyro.param("d", 0.0))
    gamma = jnp.asarray(numpyro.param("gamma", 0.5))
    sx = numpyro.param("sx", 1.0, constraint=constraints.positive)
    sm = numpyro.param("sm", 1.0, constraint=constraints.positive)
    sy = numpyro.param("sy", 1.0, constraint=constraints.positive)
    with numpyro.plate("unit", n):
        u = numpyro.sample("U", dist.Normal(0.0, 1.0))
        x = numpyro.sample("X", dist.Normal(alpha * u, sx))
        m = numpyro.sample("M", dist.Normal(c * x, sm))
        numpyro.sample("Y", dist.Normal(d * m + gamma * u, sy))


def sample_bow(n: int, seed: int = 0) -> dict[str, np.ndarray]:
    """``n`` rows of ``X``, ``Y`` from :mod:`models.latent_confounder` (``U`` dropped).

    Examples
    --------
    >>> sorted(sample_bow(3))
    ['X', 'Y']
    """
    lc = latent_confounder
    rng = np.random.default_rng(seed)
    u, e_x, e_y = rng.standard_normal((3, n))
    x = lc.ALPHA * u + lc.SIGMA_X * e_x
    y = lc.BETA * x + lc.GAMMA * u + lc.SIGMA_Y * e_y
    return {"X": x.astype(np.float32), "Y": y.astype(np.float32)}


def sample_front_door(n: int, seed: int = 0) -> dict[str, np.ndarray]:
    """``n`` rows of ``X``, ``M``, ``Y`` of the front-door SCM (``U`` dropped)."""
    lc = latent_confounder
    rng = np.random.default_rng(seed)
    u, e_x, e_m, e_y = rng.standard_normal((4, n))
    x = lc.ALPHA * u + lc.SIGMA_X * e_x
    m = C * x + SIGMA_M * e_m
    y = D * m + lc.GAMMA * u + lc.SIGMA_Y * e_y
    return {"X": x.astype(np.float32), "M": m.astype(np.float32), "Y": y.astype(np.float32)}


def bow_counterfactual(scm: Any, x: float, y: float, x_prime: float) -> Any:
    """``Y_{x'} | X = x, Y = y`` under a fitted bow SCM: ``y + beta (x' - x)``."""
    return y + scm.params["beta"] * (x_prime - x)


def front_door_counterfactual(scm: Any, x: float, y: float, x_prime: float) -> Any:
    """``Y_{x'} | X = x, M = m, Y = y`` under a fitted front-door SCM: ``y + c d (x' - x)``
    (the unit's own ``M`` noise and ``U`` cancel)."""
    return y + scm.params["c"] * scm.params["d"] * (x_prime - x)
