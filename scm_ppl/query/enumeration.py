"""Abduction by exact enumeration of discrete latent sites.

When every latent sample site upstream of the evidence is discrete with a finite support
(Bernoulli, Categorical, bounded Binomial, DiscreteUniform), the posterior over them is
a finite sum: their joint support is enumerated per unit, the log-joint of each
configuration with the evidence is computed in one vectorised call (``vmap`` over
configurations, the program's own plate over units), and the posterior weights are
exact. Deterministic sites (noise-free mechanisms) with evidence are ordinary evidence:
a configuration that does not reproduce the observed value has weight zero.

:func:`~scm_ppl.counterfactual` with ``method="enumerate"`` draws the latent sites per
unit from these exact weights and runs the usual pass;
:func:`scm_ppl.query.exact.enumerated_counterfactual` runs the pass once per
configuration and returns the exact weights with the worlds' values, so that
probabilities are sums, not Monte-Carlo averages.

Units are independent given the program's global sites, so the joint support is that of
*one unit*: its size is the product of the enumerated sites' support sizes, and above
:data:`ENUMERATION_LIMIT` the query is refused.
"""

from __future__ import annotations

import functools
import itertools
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from numpyro import handlers
from numpyro.distributions import constraints

from scm_ppl.core.inference import shapes, split_arguments
from scm_ppl.core.program import ProgramInfo, arguments_key
from scm_ppl.errors import AbductionError, EvidenceError

__all__ = [
    "ENUMERATION_LIMIT",
    "EnumeratedPosterior",
    "enumerable_support",
    "enumerate_posterior",
    "enumerated_sites",
]

ENUMERATION_LIMIT = 1 << 16  # joint support size per unit


def enumerated_sites(info: ProgramInfo, evidence: Any, every: bool = False) -> list[str]:
    """The latent sample sites upstream of the evidence (in program order); with
    ``every``, all discrete latent sample sites (those not upstream keep their prior).

    Examples
    --------
    >>> import numpyro, numpyro.distributions as dist
    >>> from scm_ppl.core.program import inspect_program
    >>> def model():
    ...     u = numpyro.sample("U", dist.Bernoulli(0.3))
    ...     numpyro.deterministic("D", u)
    >>> info = inspect_program(model, (), {})
    >>> enumerated_sites(info, {"D": 1})
    ['U']
    """
    observed = {n for n, s in info.sites.items() if s.kind == "sample" and s.observed}
    observed |= set(evidence)
    upstream = info.ancestors(set(evidence))
    return [
        n
        for n in info.sample_sites()
        if n not in observed
        and (n in upstream or (every and info.sites[n].discrete))
        and not info.sites[n].fit_posterior
    ]


def _support_values(info: ProgramInfo, name: str) -> np.ndarray:
    site = info.sites[name]
    support = site.support
    if not site.discrete or support is None:
        raise AbductionError(
            f"Enumeration needs discrete latent sites, but '{name}' ({site.distribution}) is "
            "continuous; use method='nuts' when every latent site upstream of the evidence is "
            "continuous, or give evidence for it."
        )
    if support is constraints.boolean:
        return np.array([0, 1])
    if isinstance(support, constraints.integer_interval):
        low = int(np.min(np.asarray(support.lower_bound)))
        high = int(np.max(np.asarray(support.upper_bound)))
        return np.arange(low, high + 1)
    raise AbductionError(
        f"The latent site '{name}' ({site.distribution}) has an unbounded discrete support "
        f"({support}), which cannot be enumerated. Truncate it (e.g. a Categorical or a "
        "Binomial with a bounded count), give evidence for it, or make it continuous."
    )


def enumerable_support(info: ProgramInfo, sites: list[str], unit: tuple[str, int] | None) -> int:
    """The joint support size per unit of ``sites``; raises when it cannot be enumerated
    (a continuous or unbounded site, a site with several values per unit, or more than
    :data:`ENUMERATION_LIMIT` configurations).

    Examples
    --------
    >>> import numpyro, numpyro.distributions as dist
    >>> from scm_ppl.core.program import inspect_program
    >>> def model():
    ...     u = numpyro.sample("U", dist.Bernoulli(0.3))
    ...     numpyro.deterministic("D", u)
    >>> info = inspect_program(model, (), {})
    >>> enumerable_support(info, ["U"], None)
    2
    """
    size = 1
    for name in sites:
        values = _support_values(info, name)
        site = info.sites[name]
        per_unit = int(np.prod(site.shape)) // (
            unit[1] if unit and unit[0] in site.batch_dims else 1
        )
        if per_unit != 1:
            raise AbductionError(
                f"Enumeration needs one value of each latent site per unit, but '{name}' has "
                f"shape {site.shape} ({per_unit} values per unit"
                f"{'' if unit is None else f' of plate {unit[0]!r}'}). Put it in the unit "
                "plate, split it into scalar sites, or give evidence for it."
            )
        size *= len(values)
    if size > ENUMERATION_LIMIT:
        sizes = {n: len(_support_values(info, n)) for n in sites}
        raise AbductionError(
            f"The joint support of the discrete latent sites {sizes} has {size} "
            f"configurations per unit, above the enumeration limit of {ENUMERATION_LIMIT}. "
            "Give evidence for some of them, merge or coarsen their states, or make them "
            "continuous and use method='nuts'."
        )
    return size


@dataclass(frozen=True)
class EnumeratedPosterior:
    """The exact posterior over the enumerated sites' joint support.

    ``values[site]`` is shaped ``(K,)`` (configuration ``k`` gives every unit the same
    value); ``log_weights`` is ``(K, *units)``, normalised over ``K`` per unit;
    ``configurations[site]`` is every configuration as one draw, ``(1, K, *site_shape)``
    (chain, draw, ...).
    """

    sites: tuple[str, ...]
    values: dict[str, jax.Array]
    log_weights: jax.Array
    configurations: dict[str, jax.Array]

    @property
    def size(self) -> int:
        return int(self.log_weights.shape[0])

    def sample(self, rng_key: jax.Array, num: int) -> dict[str, jax.Array]:
        """``num`` draws per unit from the exact posterior: ``(1, num, *site_shape)``."""
        shapes = tuple((n, v.shape[2:], v.dtype) for n, v in self.configurations.items())
        return _draw(rng_key, self.log_weights, self.values, num, shapes)


@functools.partial(jax.jit, static_argnums=(3, 4))
def _draw(key, log_weights, values, num, shapes) -> dict[str, jax.Array]:
    # Inverse CDF: one uniform per draw and unit, where Gumbel-max would need K of them.
    cdf = jnp.cumsum(jnp.exp(log_weights), axis=0)
    u = jax.random.uniform(key, (num, *log_weights.shape[1:])) * cdf[-1]
    index = jnp.minimum(jnp.sum(u[:, None] >= cdf[None], axis=1), log_weights.shape[0] - 1)
    return {n: values[n][index].reshape((1, num, *shape)).astype(dt) for n, shape, dt in shapes}


def enumerate_posterior(
    model: Callable,
    args: tuple,
    kwargs: Mapping[str, Any],
    info: ProgramInfo,
    evidence: Mapping[str, Any],
    unit: tuple[str, int] | None,
    every: bool = False,
) -> EnumeratedPosterior:
    """The exact posterior of the latent sites upstream of ``evidence``, per unit: one
    compiled call per query shape (the log-joint of every configuration, vectorised).

    Raises :class:`~scm_ppl.EvidenceError` when the evidence has probability zero for
    some unit under every configuration.

    Examples
    --------
    >>> import numpyro, numpyro.distributions as dist
    >>> from scm_ppl.core.program import inspect_program
    >>> def model():
    ...     u = numpyro.sample("U", dist.Bernoulli(0.3))
    ...     numpyro.deterministic("D", u)
    >>> info = inspect_program(model, (), {})
    >>> post = enumerate_posterior(model, (), {}, info, {"D": 1}, None)
    >>> post.size, [round(float(w), 6) for w in jax.numpy.exp(post.log_weights)]
    (2, [0.0, 1.0])
    """
    sites = tuple(enumerated_sites(info, evidence, every))
    enumerable_support(info, list(sites), unit)
    grids = [_support_values(info, n) for n in sites]
    configs = np.array(list(itertools.product(*grids)), dtype=np.int64).reshape(-1, len(sites))
    values = {n: jnp.asarray(configs[:, i]) for i, n in enumerate(sites)}
    evidence = {k: jnp.asarray(v) for k, v in evidence.items()}
    arrays, rebuild = split_arguments(args, kwargs)
    key = ("enumeration log-joint", sites, unit, arguments_key(args, kwargs), shapes(evidence))

    def build() -> Callable:
        def posterior(vals, ev, arr):
            call_args, call_kwargs = rebuild(arr)
            log_joint = _log_joint(model, call_args, call_kwargs, info, sites, unit, vals, ev)
            norm = jax.nn.logsumexp(log_joint, axis=0)
            every = {
                n: jnp.broadcast_to(
                    v.reshape((1, -1) + (1,) * len(info.sites[n].shape)),
                    (1, v.shape[0], *info.sites[n].shape),
                ).astype(info.sites[n].dtype)
                for n, v in vals.items()
            }
            return log_joint - norm, norm, every

        return jax.jit(posterior)

    log_weights, norm, configurations = info.remember(key, build)(values, evidence, arrays)
    impossible = ~np.isfinite(np.asarray(norm))
    if impossible.any():
        count, first = int(impossible.sum()), int(np.argmax(impossible.ravel()))
        raise EvidenceError(
            f"The evidence has probability zero under every configuration of the latent "
            f"sites {list(sites)} for {count} unit(s) (first at flat index {first}): no "
            "value of the latent causes reproduces it. Check those units' evidence or the "
            "mechanisms."
        )
    return EnumeratedPosterior(
        sites=sites, values=values, log_weights=log_weights, configurations=configurations
    )


def _log_joint(
    model, args, kwargs, info: ProgramInfo, sites, unit, values, evidence, fixed=None
) -> jax.Array:
    """``(K, *units)``: the log-joint of each configuration with the evidence (given the
    values ``fixed`` of other latent sites, whose own density is left out)."""
    fixed = dict(fixed or {})
    sample_ev = {k: v for k, v in evidence.items() if info.sites[k].kind == "sample"}
    det_ev = {k: v for k, v in evidence.items() if info.sites[k].kind == "deterministic"}
    plate_size = () if unit is None else (unit[1],)

    def one(config: dict[str, jax.Array]) -> jax.Array:
        data = {
            n: jnp.broadcast_to(config[n], info.sites[n].shape).astype(info.sites[n].dtype)
            for n in sites
        }
        conditioned = handlers.condition(model, data={**fixed, **sample_ev, **data})
        trace = handlers.trace(handlers.seed(conditioned, rng_seed=0)).get_trace(*args, **kwargs)
        total = jnp.zeros(plate_size)
        for name, site in trace.items():
            if name in fixed:
                continue
            if site["type"] == "sample" and site["is_observed"] and name in info.sites:
                term = site["fn"].log_prob(site["value"])
            elif name in det_ev:
                same = jnp.asarray(site["value"]) == det_ev[name]
                term = jnp.where(same, 0.0, -jnp.inf)
            else:
                continue
            total = total + _per_unit(term, info.sites[name], unit)
        return total

    return jax.vmap(one)(values)


def _per_unit(term: jax.Array, site: Any, unit: tuple[str, int] | None) -> jax.Array:
    """Sum a log-density term over every axis but the unit axis."""
    term = jnp.asarray(term, dtype=jnp.float32)
    if unit is None or unit[0] not in site.batch_dims:
        return jnp.sum(term)
    batch = site.shape[: len(site.batch_dims)]
    term = jnp.broadcast_to(
        term.reshape(term.shape + (1,) * (len(batch) - term.ndim))
        if term.ndim < len(batch)
        else term,
        batch,
    )
    axis = site.batch_dims.index(unit[0])
    return jnp.moveaxis(term, axis, -1).reshape(-1, unit[1]).sum(axis=0)
