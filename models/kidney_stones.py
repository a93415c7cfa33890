"""Kidney stones: Simpson's paradox (Charig et al. 1986).

Source: C. R. Charig, D. R. Webb, S. R. Payne, J. E. Wickham, "Comparison of treatment
of renal calculi by open surgery, percutaneous nephrolithotomy, and extracorporeal
shockwave lithotripsy", *BMJ* 292:879–882 (1986), as tabulated by Julious & Mullee,
"Confounding and Simpson's paradox", *BMJ* 309:1480 (1994), the standard instance of
the paradox Pearl analyses in *Causality* (ch. 6) and *The Book of Why* (ch. 6)::

                     treatment A (open surgery)   treatment B (PCNL)
    small stones     81/87   (93%)                234/270 (87%)
    large stones     192/263 (73%)                55/80   (69%)
    all              273/350 (78%)                289/350 (83%)

Sites (all Bernoulli):

    Z ~ Bernoulli(P(Z = 1))          stone size, 1 = large
    X ~ Bernoulli(P(X = 1 | Z))      treatment, 1 = A (open surgery), 0 = B (PCNL)
    Y ~ Bernoulli(P(Y = 1 | X, Z))   recovery

with every probability the published frequency (:data:`COUNTS`).

Known truths
------------
* A is better in each stratum, B looks better overall: :func:`naive_difference` is
  ``273/350 - 289/350 = -16/350``; :func:`ate_adjusted` (back-door adjustment for ``Z``,
  equal to the true ``P(Y=1 | do(X=1)) - P(Y=1 | do(X=0))`` in this SCM) is positive.
"""

from __future__ import annotations

import jax.numpy as jnp
import numpyro
import numpyro.distributions as dist

NODES: tuple[str, ...] = ("Z", "X", "Y")
"""Site names in topological order."""

EDGES: frozenset[tuple[str, str]] = frozenset({("Z", "X"), ("Z", "Y"), ("X", "Y")})
"""Directed parent -> child edges among the sites."""

COUNTS: dict[tuple[int, int], tuple[int, int]] = {
    # (Z, X): (recovered, treated)
    (0, 1): (81, 87),
    (0, 0): (234, 270),
    (1, 1): (192, 263),
    (1, 0): (55, 80),
}
"""Published counts: ``COUNTS[(z, x)] = (recovered, patients)``."""

TOTAL = sum(total for _, total in COUNTS.values())
"""Number of patients (700)."""

P_Z: float = (COUNTS[1, 0][1] + COUNTS[1, 1][1]) / TOTAL
"""``P(Z = 1)``: share of large stones, 343/700."""

P_X_GIVEN_Z: tuple[float, float] = (
    COUNTS[0, 1][1] / (COUNTS[0, 0][1] + COUNTS[0, 1][1]),
    COUNTS[1, 1][1] / (COUNTS[1, 0][1] + COUNTS[1, 1][1]),
)
"""``P(X = 1 | Z = z)`` for ``z = 0, 1``: 87/357 and 263/343."""


def _rate(z: int, x: int) -> float:
    recovered, total = COUNTS[z, x]
    return recovered / total


P_Y_GIVEN_XZ: tuple[tuple[float, float], tuple[float, float]] = (
    (_rate(0, 0), _rate(1, 0)),
    (_rate(0, 1), _rate(1, 1)),
)
"""``P_Y_GIVEN_XZ[x][z] = P(Y = 1 | X = x, Z = z)``."""


def model(n: int = 1) -> None:
    """Sample ``n`` patients; binary sites ``"Z"``, ``"X"``, ``"Y"`` of shape ``(n,)``."""
    p_x = jnp.asarray(P_X_GIVEN_Z)
    p_y = jnp.asarray(P_Y_GIVEN_XZ)
    with numpyro.plate("unit", n):
        z = numpyro.sample("Z", dist.Bernoulli(P_Z))
        x = numpyro.sample("X", dist.Bernoulli(p_x[jnp.asarray(z, jnp.int32)]))
        numpyro.sample(
            "Y", dist.Bernoulli(p_y[jnp.asarray(x, jnp.int32), jnp.asarray(z, jnp.int32)])
        )


def p_recovery_do(x: int) -> float:
    """``P(Y = 1 | do(X = x)) = sum_z P(z) P(Y = 1 | x, z)`` (back-door adjustment)."""
    return (1.0 - P_Z) * P_Y_GIVEN_XZ[x][0] + P_Z * P_Y_GIVEN_XZ[x][1]


def p_recovery_given(x: int) -> float:
    """Observational ``P(Y = 1 | X = x) = sum_z P(z | x) P(Y = 1 | x, z)``."""
    p_x_and_z = [
        (1.0 - P_Z) * (P_X_GIVEN_Z[0] if x else 1.0 - P_X_GIVEN_Z[0]),
        P_Z * (P_X_GIVEN_Z[1] if x else 1.0 - P_X_GIVEN_Z[1]),
    ]
    return sum(p * P_Y_GIVEN_XZ[x][z] for z, p in enumerate(p_x_and_z)) / sum(p_x_and_z)


def ate_adjusted() -> float:
    """True average treatment effect of A over B, ``P(Y|do(X=1)) - P(Y|do(X=0))``.

    Examples
    --------
    >>> round(ate_adjusted(), 4)
    0.0537
    """
    return p_recovery_do(1) - p_recovery_do(0)


def naive_difference() -> float:
    """Confounded difference ``P(Y = 1 | X = 1) - P(Y = 1 | X = 0)`` = ``-16/350``.

    Examples
    --------
    >>> round(naive_difference() * 350, 6)
    -16.0
    """
    return p_recovery_given(1) - p_recovery_given(0)
