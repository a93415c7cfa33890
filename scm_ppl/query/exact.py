"""Exact counterfactuals by enumeration: every configuration of the discrete latent causes
with its exact posterior weight (see :mod:`scm_ppl.query.enumeration`)."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import jax
import numpy as np

from scm_ppl.errors import AbductionError
from scm_ppl.query.engine import run_query
from scm_ppl.query.enumeration import enumerated_sites
from scm_ppl.query.plan import plan_query

__all__ = ["EnumeratedCounterfactual", "enumerated_counterfactual"]


@dataclass(frozen=True)
class EnumeratedCounterfactual:
    """An exact counterfactual answer: every configuration of the enumerated latent sites
    with its posterior weight.

    ``weights`` is ``(K, *units)`` (summing to one over ``K`` per unit);
    ``worlds[label][site]`` is ``(K, *site_shape)``: the site's value in that world under
    each configuration. ``attrs`` holds the method, its reason and identification.

    Examples
    --------
    >>> import numpyro, numpyro.distributions as dist
    >>> def switch():  # a latent binary cause U -> X -> Y, Y = 1 - X
    ...     u = numpyro.sample("U", dist.Bernoulli(0.3))
    ...     x = numpyro.deterministic("X", u)
    ...     numpyro.deterministic("Y", 1 - x)
    >>> ans = enumerated_counterfactual(switch, {"Y": 0}, {"X": 0})
    >>> ans.sites, [round(float(w), 3) for w in ans.weights]  # Y = 0 reveals U = 1
    (('U',), [0.0, 1.0])
    >>> float(ans.probability("cf", "Y", 1))
    1.0
    """

    sites: tuple[str, ...]
    weights: np.ndarray
    worlds: dict[str, dict[str, jax.Array]]
    attrs: dict[str, Any]

    def probability(self, world: str, site: str, value: Any) -> np.ndarray:
        """``P(site_world = value | evidence)`` per unit, exactly."""
        return self.mean(world, site, lambda v: v == value)

    def mean(
        self, world: str, site: str, fn: Callable[[np.ndarray], np.ndarray] | None = None
    ) -> np.ndarray:
        """``E[fn(site_world) | evidence]`` per unit (``fn``: identity by default)."""
        if world not in self.worlds:
            raise KeyError(f"No world {world!r}; this answer has {sorted(self.worlds)}.")
        values = np.asarray(self.worlds[world][site])[0]  # (chain=1, K, ...) -> (K, ...)
        values = values if fn is None else np.asarray(fn(values))
        weights = self.weights.reshape(
            self.weights.shape + (1,) * (values.ndim - self.weights.ndim)
        )
        return np.sum(weights * values, axis=0)


def enumerated_counterfactual(
    model: Callable,
    evidence: Mapping[str, Any] | None,
    interventions: Mapping[str, Any] | None,
    *,
    strict: bool = False,
    model_args: tuple = (),
    model_kwargs: Mapping[str, Any] | None = None,
) -> EnumeratedCounterfactual:
    """The exact counterfactual distribution for a program whose latent causes upstream of
    the evidence are finite discrete sites and whose worlds are functions of them.

    Each configuration of the enumerated sites is one draw of the usual compiled pass;
    the answer is those values and their exact posterior weights. Raises
    :class:`~scm_ppl.AbductionError` when the answer is not a function of the enumerated
    sites (a coupled discrete mechanism changes between worlds, or another latent site
    is drawn): then :func:`~scm_ppl.counterfactual` with ``method="enumerate"`` gives
    draws from the exact posterior instead.

    Examples
    --------
    >>> import numpyro, numpyro.distributions as dist
    >>> def squad():  # Pearl's firing squad, Causality §7.1.2
    ...     u = numpyro.sample("U", dist.Bernoulli(0.5))
    ...     c = numpyro.deterministic("C", u)
    ...     a = numpyro.deterministic("A", c)
    ...     b = numpyro.deterministic("B", c)
    ...     numpyro.deterministic("D", a | b)
    >>> ans = enumerated_counterfactual(squad, {"D": 1}, {"A": 0})
    >>> float(ans.probability("cf", "D", 1))
    1.0
    """
    [plan] = plan_query(
        model, evidence, interventions, kind="counterfactual", rng_key=jax.random.key(0),
        method="enumerate", num_samples=1, strict=strict, model_args=model_args,
        model_kwargs=model_kwargs,
    )  # fmt: skip
    # Every discrete latent site is enumerated (those not upstream of the evidence with
    # their prior as weight), so that nothing in the worlds is left to chance.
    drawn = sorted(set(plan.latent) - set(enumerated_sites(plan.info, plan.evidence, True)))
    couplings = plan.couplings
    if drawn or couplings:
        why = f"latent site(s) {drawn} are drawn" if drawn else f"couplings {couplings} are used"
        raise AbductionError(
            f"The counterfactual is not a function of the enumerated latent sites ({why}), so "
            "it has no exact finite answer here; use counterfactual(..., method='enumerate') "
            "for draws from the exact posterior, or write those mechanisms as deterministic "
            "functions of discrete latent noise."
        )
    draws = run_query(dataclasses.replace(plan, enumerate_all=True))
    posterior = draws.enumerated
    assert posterior is not None  # an enumerated plan's draws carry their posterior
    worlds = {label: draws.by_world[label] for label in draws.by_world}
    return EnumeratedCounterfactual(
        sites=posterior.sites,
        weights=np.exp(np.asarray(posterior.log_weights)),
        worlds=worlds,
        attrs={
            "method": "enumerate",
            "method_reason": plan.method_reason,
            "support_size": posterior.size,
            "identification": plan.identification,
        },
    )
