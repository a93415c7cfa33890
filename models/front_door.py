"""Front door: ``smoking -> tar -> cancer`` with a latent genotype ``U``.

Source: Pearl, *Causality*, 2nd ed., §3.3.2 (the front-door criterion) and *The Book of Why*, ch. 7.
The probabilities below are illustrative constants, not Pearl's table::

    U       ~ Bernoulli(P_U)                        (genotype; unobserved)
    smoking ~ Bernoulli(P_SMOKING[U])
    tar     ~ Bernoulli(P_TAR[smoking])
    cancer  ~ Bernoulli(P_CANCER[tar, U])

``U -> smoking`` and ``U -> cancer`` confound the smoking–cancer association; ``tar``
is a front-door mediator, so ``P(cancer | do(smoking))`` is identified from the
observational ``P(smoking, tar, cancer)`` by the front-door formula

    P(c | do(s)) = sum_t P(t | s) sum_s' P(c | t, s') P(s').

Known truths
------------
* :func:`p_cancer_do_smoking` — the truth, by enumerating ``U`` and ``tar`` in the
  intervened model: ``sum_u P(u) sum_t P(t | s) P(c = 1 | t, u)``.
* :func:`observational_joint` — ``P(smoking, tar, cancer)`` by enumerating ``U``.
* :func:`front_door_estimate` — the front-door formula evaluated on a joint table;
  on :func:`observational_joint` it equals the truth.
* :func:`p_cancer_given_smoking` — the confounded conditional ``P(c = 1 | s)``.
"""

from __future__ import annotations

import itertools

import jax.numpy as jnp
import numpy as np
import numpy.typing as npt
import numpyro
import numpyro.distributions as dist

NODES: tuple[str, ...] = ("U", "smoking", "tar", "cancer")
"""Site names in topological order; ``U`` (genotype) is latent."""

EDGES: frozenset[tuple[str, str]] = frozenset(
    {("U", "smoking"), ("U", "cancer"), ("smoking", "tar"), ("tar", "cancer")}
)
"""Directed parent -> child edges among the sites."""

LATENT: tuple[str, ...] = ("U",)
"""Sites that are never observed."""

P_U = 0.4
"""``P(U = 1)``: carrier of the genotype."""
P_SMOKING: tuple[float, float] = (0.2, 0.8)
"""``P(smoking = 1 | U = u)`` for ``u = 0, 1``."""
P_TAR: tuple[float, float] = (0.1, 0.9)
"""``P(tar = 1 | smoking = s)`` for ``s = 0, 1``."""
P_CANCER: tuple[tuple[float, float], tuple[float, float]] = ((0.1, 0.4), (0.3, 0.6))
"""``P_CANCER[t][u] = P(cancer = 1 | tar = t, U = u)``."""


def model(n: int = 1) -> None:
    """Sample ``n`` units; binary sites ``"U"``, ``"smoking"``, ``"tar"``, ``"cancer"``."""
    p_smoking = jnp.asarray(P_SMOKING)
    p_tar = jnp.asarray(P_TAR)
    p_cancer = jnp.asarray(P_CANCER)
    with numpyro.plate("unit", n):
        u = numpyro.sample("U", dist.Bernoulli(P_U))
        s = numpyro.sample("smoking", dist.Bernoulli(p_smoking[jnp.asarray(u, jnp.int32)]))
        t = numpyro.sample("tar", dist.Bernoulli(p_tar[jnp.asarray(s, jnp.int32)]))
        p_c = p_cancer[jnp.asarray(t, jnp.int32), jnp.asarray(u, jnp.int32)]
        numpyro.sample("cancer", dist.Bernoulli(p_c))


def _bern(p: float, value: int) -> float:
    return p if value == 1 else 1.0 - p


def p_cancer_do_smoking(smoking: int) -> float:
    """True ``P(cancer = 1 | do(smoking))`` by enumeration of ``U`` and ``tar``.

    Examples
    --------
    >>> round(p_cancer_do_smoking(1) - p_cancer_do_smoking(0), 4)
    0.16
    """
    return sum(
        _bern(P_U, u) * _bern(P_TAR[smoking], t) * P_CANCER[t][u]
        for u, t in itertools.product((0, 1), repeat=2)
    )


def observational_joint() -> npt.NDArray[np.float64]:
    """``P(smoking, tar, cancer)`` as a ``(2, 2, 2)`` table, ``U`` summed out."""
    joint = np.zeros((2, 2, 2))
    for u, s, t, c in itertools.product((0, 1), repeat=4):
        joint[s, t, c] += (
            _bern(P_U, u) * _bern(P_SMOKING[u], s) * _bern(P_TAR[s], t) * _bern(P_CANCER[t][u], c)
        )
    return joint


def p_cancer_given_smoking(smoking: int) -> float:
    """Observational (confounded) ``P(cancer = 1 | smoking)``."""
    joint = observational_joint()[smoking]
    return float(joint[:, 1].sum() / joint.sum())


def front_door_estimate(joint: npt.ArrayLike, smoking: int) -> float:
    """Front-door formula ``sum_t P(t | s) sum_s' P(c = 1 | t, s') P(s')`` on a table.

    Parameters
    ----------
    joint
        ``P(smoking, tar, cancer)``, shape ``(2, 2, 2)`` (normalised or counts).
    smoking
        The intervened value ``s``.
    """
    p = np.asarray(joint, dtype=np.float64)
    p = p / p.sum()
    p_s = p.sum(axis=(1, 2))
    p_st = p.sum(axis=2)
    p_t_given_s = p_st[smoking] / p_s[smoking]
    p_c_given_ts = p[:, :, 1] / p_st  # indexed [s', t]
    return float(sum(p_t_given_s[t] * (p_c_given_ts[:, t] * p_s).sum() for t in (0, 1)))
