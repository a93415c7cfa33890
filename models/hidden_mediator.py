"""Overparameterised linear-Gaussian SCMs: a hidden (deterministic, unobserved) mediator.

Built for the mechanism-level identifiability diagnostics
(:func:`scm_ppl.local_identifiability`, :func:`scm_ppl.contraction`). Observational data
on ``x`` and ``y`` fix the product of the weights along the hidden path, never the weights
one by one::

    x ~ Normal(0, 1)
    m = A x                  deterministic and unobserved (the hidden mediator)
    y = B m + SIGMA_Y e,     e ~ Normal(0, 1)

Programs
--------
* :func:`chain_model`: scalar weights ``a``, ``b`` (``numpyro.param``). The likelihood sees
  only ``a b``, so ``(a, b) -> (c a, b / c)`` leaves it unchanged: one null direction of the
  Fisher information at any fit. ``E[y | do(x)] = a b x`` moves along no null direction;
  ``E[y | do(m)] = b m`` does.
* :func:`direct_model`: the same SCM with one weight, ``y = w x + SIGMA_Y e``: no null
  direction.
* :func:`mixing_model`: vector sites, ``A`` a ``(dim_m, dim_x)`` and ``B`` a
  ``(dim_y, dim_m)`` mixing matrix; the likelihood sees ``B A``, invariant under
  ``(A, B) -> (G A, B G^{-1})`` for every invertible ``G``: ``dim_m ** 2`` null directions
  when ``dim_m <= min(dim_x, dim_y)`` and both matrices have full rank.
* :func:`parallel_model`: Bayesian weights (priors ``Normal(0, 1)``) on two hidden paths
  in parallel, ``m1 = a x``, ``m2 = b x``, ``y = m1 + m2 + SIGMA_Y e``: the posterior of
  ``a + b`` contracts like ``n^{-1/2}``, that of ``a - b`` keeps its prior spread
  ``sqrt(2)`` at every ``n``.

Known truths
------------
:func:`sample` draws data of the chain (``a b = AB``); :func:`sample_mixing` of the mixing
model.
"""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as dist
from numpyro.distributions import constraints

NODES: tuple[str, ...] = ("x", "m", "y")
"""Site names in topological order; ``m`` is deterministic and never observed."""

EDGES: frozenset[tuple[str, str]] = frozenset({("x", "m"), ("m", "y")})
"""Directed parent -> child edges among the sites."""

LATENT: tuple[str, ...] = ("m",)
"""Sites that are never observed."""

AB = 1.5
"""The product ``a b``: the effect of ``x`` on ``y`` (all the data can tell)."""
SIGMA_Y = 0.5
"""Noise standard deviation of ``y``."""


def chain_model(n: int = 1) -> None:
    """``m = a x`` (hidden), ``y ~ Normal(b m, sigma)``; params ``a``, ``b``, ``sigma``."""
    a = jnp.asarray(numpyro.param("a", 1.0))
    b = jnp.asarray(numpyro.param("b", 1.0))
    sigma = numpyro.param("sigma", 1.0, constraint=constraints.positive)
    with numpyro.plate("unit", n):
        x = numpyro.sample("x", dist.Normal(0.0, 1.0))
        m = numpyro.deterministic("m", a * x)
        numpyro.sample("y", dist.Normal(b * m, sigma))


model = chain_model
"""The default program of this module: :func:`chain_model`."""


def direct_model(n: int = 1) -> None:
    """``y ~ Normal(w x, sigma)``; params ``w``, ``sigma``."""
    w = jnp.asarray(numpyro.param("w", 1.0))
    sigma = numpyro.param("sigma", 1.0, constraint=constraints.positive)
    with numpyro.plate("unit", n):
        x = numpyro.sample("x", dist.Normal(0.0, 1.0))
        numpyro.sample("y", dist.Normal(w * x, sigma))


def mixing_model(n: int = 1, dim_x: int = 3, dim_m: int = 2, dim_y: int = 3) -> None:
    """``m = A x`` (hidden), ``y ~ Normal(B m, SIGMA_Y)``; params ``A``, ``B``.

    ``A`` starts as the first ``dim_m`` rows of the identity plus a fixed small pattern and
    ``B`` as its transpose-like counterpart, so both have full rank.
    """
    a0 = np.eye(dim_m, dim_x) + 0.1 * np.arange(dim_m * dim_x).reshape(dim_m, dim_x) / (dim_x)
    b0 = np.eye(dim_y, dim_m) + 0.05 * np.arange(dim_y * dim_m).reshape(dim_y, dim_m) / dim_m
    mix_a = jnp.asarray(numpyro.param("A", jnp.asarray(a0, jnp.float32)))
    mix_b = jnp.asarray(numpyro.param("B", jnp.asarray(b0, jnp.float32)))
    with numpyro.plate("unit", n):
        x = numpyro.sample("x", dist.Normal(jnp.zeros(dim_x), 1.0).to_event(1))
        m = numpyro.deterministic("m", x @ mix_a.T)
        numpyro.sample("y", dist.Normal(m @ mix_b.T, SIGMA_Y).to_event(1))


def parallel_model(n: int = 1) -> None:
    """Bayesian weights ``a, b ~ Normal(0, 1)``; ``m1 = a x``, ``m2 = b x`` (hidden),
    ``y ~ Normal(m1 + m2, SIGMA_Y)``."""
    a = numpyro.sample("a", dist.Normal(0.0, 1.0))
    b = numpyro.sample("b", dist.Normal(0.0, 1.0))
    with numpyro.plate("unit", n):
        x = numpyro.sample("x", dist.Normal(0.0, 1.0))
        m1 = numpyro.deterministic("m1", a * x)
        m2 = numpyro.deterministic("m2", b * x)
        numpyro.sample("y", dist.Normal(m1 + m2, SIGMA_Y))


def sample(n: int, seed: int = 0, effect: float = AB) -> dict[str, np.ndarray]:
    """``n`` rows of ``x`` and ``y = effect x + SIGMA_Y e`` (the chain, or the parallel
    paths with ``a + b = effect``).

    Examples
    --------
    >>> data = sample(4)
    >>> sorted(data), data["y"].shape
    (['x', 'y'], (4,))
    """
    rng = np.random.default_rng(seed)
    x = rng.standard_normal(n)
    y = effect * x + SIGMA_Y * rng.standard_normal(n)
    return {"x": x.astype(np.float32), "y": y.astype(np.float32)}


def sample_mixing(
    n: int, seed: int = 0, dim_x: int = 3, dim_m: int = 2, dim_y: int = 3
) -> dict[str, np.ndarray]:
    """``n`` rows of the mixing model with a random rank-``dim_m`` product ``B A``."""
    rng = np.random.default_rng(seed)
    product = rng.standard_normal((dim_y, dim_m)) @ rng.standard_normal((dim_m, dim_x))
    x = rng.standard_normal((n, dim_x))
    y = x @ product.T + SIGMA_Y * rng.standard_normal((n, dim_y))
    return {"x": x.astype(np.float32), "y": y.astype(np.float32)}
