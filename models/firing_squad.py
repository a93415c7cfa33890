"""Pearl's firing squad with a nervous rifleman (*Causality*, ch. 7).

Source: Pearl, *Causality* (2nd ed., Cambridge 2009), the firing-squad example of §7.1,
in its probabilistic version where rifleman A may shoot from nervousness ``W``
(probabilities of causation: ch. 9)::

    U ~ Bernoulli(P_ORDER)     court order (exogenous)
    W ~ Bernoulli(Q_NERVOUS)   rifleman A's nervousness (exogenous)
    C = U                      captain signals
    A = C or W                 rifleman A shoots
    B = C                      rifleman B shoots
    D = A or B                 prisoner dies

``U`` and ``W`` are sample sites; ``C, A, B, D`` are ``numpyro.deterministic`` sites
holding float 0/1 arrays ("or" is ``jnp.maximum``).

Known truths (``p = P_ORDER``, ``q = Q_NERVOUS``)
---------------------------------------------------
Under ``do(A = 0)`` death is ``D = B = U``; under ``do(A = 1)`` death is certain.

* ``PN = P(D_{A=0} = 0 | A = 1, D = 1) = (1 - p) q / (p + (1 - p) q)``: given that A
  shot and the prisoner died, either the order came (prob. ``p``, B kills anyway) or A
  shot from nerves without an order (prob. ``(1 - p) q``, and without A he lives).
* ``PS = P(D_{A=1} = 1 | A = 0, D = 0) = 1``.
* ``PNS = P(D_{A=1} = 1, D_{A=0} = 0) = P(U = 0) = 1 - p``.

:func:`probabilities_of_causation_closed_form` states them;
:func:`probabilities_of_causation_enumeration` recomputes them by brute force over the
four exogenous configurations ``(U, W)``.
"""

from __future__ import annotations

import itertools
from typing import NamedTuple

import jax.numpy as jnp
import numpyro
import numpyro.distributions as dist

NODES: tuple[str, ...] = ("U", "W", "C", "A", "B", "D")
"""Site names in topological order; ``U`` and ``W`` are exogenous."""

EDGES: frozenset[tuple[str, str]] = frozenset(
    {("U", "C"), ("C", "A"), ("W", "A"), ("C", "B"), ("A", "D"), ("B", "D")}
)
"""Directed parent -> child edges among the sites."""

P_ORDER = 0.7
"""``p = P(U = 1)``: the court orders the execution."""
Q_NERVOUS = 0.2
"""``q = P(W = 1)``: rifleman A is nervous and shoots anyway."""


class ProbabilitiesOfCausation(NamedTuple):
    """Probabilities of causation of ``A`` (shooting) on ``D`` (death)."""

    pn: float
    """Probability of necessity ``P(D_{A=0} = 0 | A = 1, D = 1)``."""
    ps: float
    """Probability of sufficiency ``P(D_{A=1} = 1 | A = 0, D = 0)``."""
    pns: float
    """Probability of necessity and sufficiency ``P(D_{A=1} = 1, D_{A=0} = 0)``."""


def model(n: int = 1, p: float = P_ORDER, q: float = Q_NERVOUS) -> None:
    """Sample ``n`` executions; every site has shape ``(n,)``.

    Parameters
    ----------
    n
        Number of units (size of the ``"unit"`` plate).
    p
        Probability of a court order.
    q
        Probability that rifleman A is nervous.
    """
    with numpyro.plate("unit", n):
        u = numpyro.sample("U", dist.Bernoulli(p))
        w = numpyro.sample("W", dist.Bernoulli(q))
        c = numpyro.deterministic("C", u * 1.0)
        a = numpyro.deterministic("A", jnp.maximum(c, w * 1.0))
        b = numpyro.deterministic("B", c)
        numpyro.deterministic("D", jnp.maximum(a, b))


def mechanisms(u: int, w: int, do_a: int | None = None) -> dict[str, int]:
    """Values of every site for exogenous ``(u, w)``, optionally under ``do(A = do_a)``.

    Examples
    --------
    >>> mechanisms(0, 1)
    {'U': 0, 'W': 1, 'C': 0, 'A': 1, 'B': 0, 'D': 1}
    >>> mechanisms(0, 1, do_a=0)["D"]
    0
    """
    c = u
    a = max(c, w) if do_a is None else do_a
    b = c
    return {"U": u, "W": w, "C": c, "A": a, "B": b, "D": max(a, b)}


def probabilities_of_causation_closed_form(
    p: float = P_ORDER, q: float = Q_NERVOUS
) -> ProbabilitiesOfCausation:
    """``PN = (1-p) q / (p + (1-p) q)``, ``PS = 1``, ``PNS = 1 - p``.

    Examples
    --------
    >>> probabilities_of_causation_closed_form(0.5, 0.5)
    ProbabilitiesOfCausation(pn=0.3333333333333333, ps=1.0, pns=0.5)
    """
    return ProbabilitiesOfCausation(pn=(1 - p) * q / (p + (1 - p) * q), ps=1.0, pns=1 - p)


def probabilities_of_causation_enumeration(
    p: float = P_ORDER, q: float = Q_NERVOUS
) -> ProbabilitiesOfCausation:
    """PN, PS and PNS by brute force over the four exogenous configurations."""
    pn_num = pn_den = ps_num = ps_den = pns = 0.0
    for u, w in itertools.product((0, 1), repeat=2):
        weight = (p if u else 1 - p) * (q if w else 1 - q)
        factual = mechanisms(u, w)
        d0 = mechanisms(u, w, do_a=0)["D"]
        d1 = mechanisms(u, w, do_a=1)["D"]
        if factual["A"] == 1 and factual["D"] == 1:
            pn_den += weight
            pn_num += weight * (d0 == 0)
        if factual["A"] == 0 and factual["D"] == 0:
            ps_den += weight
            ps_num += weight * (d1 == 1)
        pns += weight * (d1 == 1 and d0 == 0)
    return ProbabilitiesOfCausation(pn=pn_num / pn_den, ps=ps_num / ps_den, pns=pns)
