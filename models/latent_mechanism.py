"""A mechanism to learn with a latent cause: ``Y = beta X + w U + s e``, ``U`` never seen.

The program the fit tests and benchmarks share (in-memory, streamed, data-parallel and
multi-process fits take the same steps on it)::

    beta ~ Normal(0, 1)                      (a global latent: a prior outside the plate)
    U ~ Normal(0, 1)                         (local latent: integrated out per unit)
    X = U + e_X,                 e_X ~ Normal(0, 1)
    Y = beta X + w U + s e_Y,    e_Y ~ Normal(0, 1)

with ``w`` and ``s`` learned ``numpyro.param`` sites. It exercises every term of a fit's
loss: a prior counted once per step, a local latent drawn by importance sampling, and
parameters with and without a constraint. :func:`rows` draws data from the same form with
``beta`` = :data:`BETA`, ``w`` = :data:`W` and ``s`` = :data:`S`.

Known truths
------------
The data's own parameters (:data:`BETA`, :data:`W`, :data:`S`). Fits in the tests are
compared with each other (the same steps in every layout, to float round-off), not with
these: a few epochs do not converge.
"""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as dist
from numpyro.distributions import constraints

NODES: tuple[str, ...] = ("U", "X", "Y")
"""Site names in topological order; ``U`` is latent."""

EDGES: frozenset[tuple[str, str]] = frozenset({("U", "X"), ("U", "Y"), ("X", "Y")})
"""Directed parent -> child edges among the sites."""

LATENT: tuple[str, ...] = ("U",)
"""Sites that are never observed."""

BETA = 0.7
"""Weight of ``X`` in ``Y`` in :func:`rows`."""
W = 0.5
"""Weight of ``U`` in ``Y`` in :func:`rows`."""
S = 0.3
"""Noise standard deviation of ``Y`` in :func:`rows`."""


def model(n: int = 1) -> None:
    """Sample ``n`` units; sites ``"U"``, ``"X"``, ``"Y"`` of shape ``(n,)``, the global
    latent ``"beta"`` and the parameters ``"w"`` (initially 0) and ``"s"`` (initially 1,
    positive).

    Examples
    --------
    >>> from numpyro import handlers
    >>> tr = handlers.trace(handlers.seed(model, 0)).get_trace(4)
    >>> tr["Y"]["value"].shape, tr["beta"]["value"].shape, sorted(
    ...     k for k, s in tr.items() if s["type"] == "param")
    ((4,), (), ['s', 'w'])
    """
    beta = numpyro.sample("beta", dist.Normal(0.0, 1.0))  # a prior: counted once
    w = jnp.asarray(numpyro.param("w", 0.0))
    s = numpyro.param("s", 1.0, constraint=constraints.positive)
    with numpyro.plate("unit", n):
        u = numpyro.sample("U", dist.Normal(0.0, 1.0))
        x = numpyro.sample("X", dist.Normal(u, 1.0))
        numpyro.sample("Y", dist.Normal(beta * x + w * u, s))


def rows(n: int, seed: int = 0) -> dict[str, np.ndarray]:
    """``n`` rows of the observed sites ``{"X", "Y"}`` (float32), drawn with NumPy's
    generator ``seed``: ``U``, then ``X``'s noise, then ``Y``'s.

    Examples
    --------
    >>> data = rows(1000)
    >>> data["X"].shape, data["Y"].dtype
    ((1000,), dtype('float32'))
    >>> big = rows(100_000)  # U confounds X and Y: the regression slope is BETA + W / 2
    >>> round(float(np.polyfit(big["X"], big["Y"], 1)[0]), 2)
    0.95
    """
    rng = np.random.default_rng(seed)
    u = rng.normal(size=n)
    x = u + rng.normal(size=n)
    y = BETA * x + W * u + S * rng.normal(size=n)
    return {"X": x.astype(np.float32), "Y": y.astype(np.float32)}
