"""``counterfactual(..., bounds=...)``: the range that the data alone allow, next to the
point answer that the program's mechanisms and couplings give.

For each counterfactual world and each variable downstream of its intervention, and each
value ``v`` of that variable, the bounds on ``P(site_world = v | evidence)`` over every
discrete SCM on the program's ADMG that reproduces the observational distribution.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import jax
import numpy as np

from scm_ppl.errors import BoundsError, DataError
from scm_ppl.graphical.mixed_graph import admg
from scm_ppl.howfar.bounds.solve import bounds as _bounds
from scm_ppl.howfar.bounds.tables import as_table

__all__ = ["counterfactual_bounds"]

SAMPLED_ROWS = 200_000
"""Rows drawn from the program when ``bounds=True`` (its observational distribution)."""


def _constant(name: str, value: Any, what: str) -> Any:
    array = np.asarray(value)
    flat = np.unique(array.ravel())
    if flat.size != 1:
        raise BoundsError(
            f"counterfactual(bounds=...) bounds one population-level query, so the {what} "
            f"{name!r} must be the same for every unit; got {flat.size} different values. Ask "
            "per group, or call scm_ppl.bounds directly."
        )
    return flat[0].item()


def _sampled(model: Callable, rng_key: jax.Array, args: tuple, kwargs: Mapping) -> dict:
    from numpyro.infer import Predictive

    probe = Predictive(model, num_samples=1)(rng_key, *args, **kwargs)
    per_draw = max(int(np.prod(np.shape(v)[1:])) for v in probe.values()) if probe else 1
    draws = max(1, SAMPLED_ROWS // max(per_draw, 1))
    samples = Predictive(model, num_samples=draws)(rng_key, *args, **kwargs)
    return {k: np.asarray(v).reshape(-1) for k, v in samples.items()}


def counterfactual_bounds(
    model: Callable,
    evidence: Mapping[str, Any],
    worlds: Mapping[str, Mapping[str, Any]],
    source: Any,
    *,
    rng_key: jax.Array,
    model_args: tuple = (),
    model_kwargs: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """The bounds for ``counterfactual``'s attrs (JSON-ready).

    Parameters
    ----------
    evidence
        The checked evidence (constant across units).
    worlds
        ``{label: {site: Intervention}}``; hard, constant interventions only.
    source
        True: the program's own observational distribution, from ``SAMPLED_ROWS`` forward
        draws; otherwise the observed distribution as for :func:`scm_ppl.bounds`.

    Raises
    ------
    BoundsError
        Interventions that are not hard constants, evidence that differs across units or
        names a latent site, or a program that is not discrete.
    """
    kwargs = dict(model_kwargs or {})
    # Roots named in the evidence or the interventions are variables of the query, not noise.
    named = set(evidence) | {site for ivs in worlds.values() for site in ivs}
    g = admg(model, *model_args, observed=set(admg(model, *model_args, **kwargs)) | named, **kwargs)
    given = {}
    for name, value in evidence.items():
        if name not in g.nodes:
            raise BoundsError(
                f"counterfactual(bounds=...) conditions on observed variables only; evidence "
                f"site {name!r} is not one (the ADMG has {sorted(g.nodes)})."
            )
        given[name] = _constant(name, value, "evidence for")
    queries = []
    for label, ivs in worlds.items():
        values = {}
        for site, iv in ivs.items():
            if getattr(iv, "kind", "hard") != "hard" or site not in g.nodes:
                raise BoundsError(
                    f"counterfactual(bounds=...) needs hard interventions on observed "
                    f"variables; world {label!r} has a {getattr(iv, 'kind', '?')} one on "
                    f"{site!r}."
                )
            values[site] = _constant(site, getattr(iv, "value", iv), "intervention on")
        targets = sorted(g.descendants(set(values)) - set(values), key=g.nodes.index)
        queries.append((label, values, targets))
    if source is True:
        observed, origin = _sampled(model, rng_key, tuple(model_args), kwargs), "program samples"
    else:
        observed, origin = source, "given distribution"
    try:
        table = as_table(observed, "observed distribution")
        records = []
        for label, values, targets in queries:
            for site in targets:
                if site not in table.support:
                    raise BoundsError(
                        f"The observed distribution lacks {site!r}, which counterfactual "
                        f"world {label!r} changes; it has {list(table.names)}."
                    )
                for value in table.support[site]:
                    b = _bounds(g, table, [(values, {site: value})], given=given or None)
                    records.append(
                        {
                            "world": label,
                            "site": site,
                            "value": value,
                            "lower": b.lower,
                            "upper": b.upper,
                            "sharp": b.sharp,
                        }
                    )
    except DataError as err:
        raise BoundsError(
            f"counterfactual(bounds=...) needs a discrete program and observed distribution: {err}"
        ) from err
    return {
        "observed": origin,
        "evidence": dict(given),
        "bounds": records,
        "method": "scm_ppl.bounds: LP over the canonical model of the program's ADMG",
    }
