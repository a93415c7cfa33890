"""Counterfactual worlds as NumPyro programs.

A world is one run of the program with the exogenous noise of every mechanism
replayed by name. :func:`multi_world` runs the program once as the factual world (its
sites keep their names, so ``condition``, NUTS, SVI and ``Predictive`` see the program
they know), abducts each site's noise from the factual values, and runs it again in
every counterfactual world on that noise, under that world's interventions, with the
world's sites recorded as ``"<world>.<site>"``.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from typing import Any

import numpyro
from numpyro import handlers

from scm_ppl.core.handlers import FRESH_NOISE_KEY, do, replay_noise, world_prefix
from scm_ppl.core.intervention import as_interventions
from scm_ppl.core.noise import noise_view
from scm_ppl.errors import InterventionError

__all__ = ["NOISE_PREFIX", "abduct_noise", "multi_world", "twin_world"]

NOISE_PREFIX = "noise"
_LABEL = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


def abduct_noise(factual_trace: Mapping[str, Any]) -> dict[str, Any]:
    """The exogenous noise of every sample site of a factual trace.

    Invertible mechanisms give their noise exactly, recorded as the deterministic site
    ``"noise.<site>"``; a mechanism that does not invert (a discrete one) draws its noise
    from the set consistent with its value, as the sample site ``"noise.<site>"`` whose
    law is that conditional (a proper distribution, so NUTS and ``Predictive`` handle it).
    Must be called inside a NumPyro program.
    """
    noise: dict[str, Any] = {}
    for name, site in factual_trace.items():
        if site["type"] != "sample" or (site.get("infer") or {}).get(FRESH_NOISE_KEY):
            continue
        view = noise_view(site["fn"])
        if view.inverse is not None:
            u = numpyro.deterministic(f"{NOISE_PREFIX}.{name}", view.inverse(site["value"]))
        else:
            assert view.noise_given_value is not None  # a NoiseView has one of the two
            u = numpyro.sample(f"{NOISE_PREFIX}.{name}", view.noise_given_value(site["value"]))
        noise[name] = u
    return noise


def check_world_labels(labels: Any) -> None:
    """Raise a clear error for world labels that cannot prefix site names."""
    for label in labels:
        if not isinstance(label, str) or not _LABEL.match(label) or label == NOISE_PREFIX:
            raise InterventionError(
                f"World label {label!r} is not usable: labels are identifiers (letters, "
                f"digits, '_') other than '{NOISE_PREFIX}', e.g. 'cf' or 'treated'."
            )


def multi_world(
    model: Callable,
    worlds: Mapping[str, Mapping[str, Any]],
    *,
    masks: Mapping[str, Mapping[str, Any]] | None = None,
) -> Callable:
    """A program running ``model`` in a factual world and several counterfactual worlds.

    Parameters
    ----------
    model
        A NumPyro program.
    worlds
        ``{label: interventions}``; each world's sites are recorded as ``"<label>.<site>"``.
    masks
        Optional ``{label: {site: mask}}`` per-unit masks for the worlds' interventions.

    Returns
    -------
    Callable
        A NumPyro program with the model's signature that returns the factual return
        value. Condition it on factual evidence with ``numpyro.handlers.condition``.

    Examples
    --------
    >>> import jax, numpyro, numpyro.distributions as dist
    >>> def model():
    ...     x = numpyro.sample("x", dist.Normal(0.0, 1.0))
    ...     numpyro.sample("y", dist.Normal(2.0 * x, 1.0))
    >>> twins = multi_world(model, {"cf": {"x": 1.0}})
    >>> conditioned = numpyro.handlers.condition(twins, {"x": 0.5, "y": 1.5})
    >>> tr = numpyro.handlers.trace(numpyro.handlers.seed(conditioned, 0)).get_trace()
    >>> float(tr["cf.y"]["value"])  # noise 0.5 kept, x set to 1: 2 * 1 + 0.5
    2.5
    """
    check_world_labels(worlds)
    masks = dict(masks or {})
    interventions = {label: as_interventions(iv) for label, iv in worlds.items()}
    world_handlers = {
        label: do(interventions=iv, mask=masks.get(label)) for label, iv in interventions.items()
    }

    def program(*args: Any, **kwargs: Any) -> Any:
        if not world_handlers:
            return model(*args, **kwargs)
        with handlers.trace() as factual:
            result = model(*args, **kwargs)
        noise = abduct_noise(factual)
        for label, intervene in world_handlers.items():
            with world_prefix(prefix=label), replay_noise(noise=noise), intervene:
                model(*args, **kwargs)
        return result

    program.__name__ = f"multi_world({getattr(model, '__name__', 'model')})"
    return program


def twin_world(
    model: Callable,
    interventions: Mapping[str, Any],
    *,
    mask: Mapping[str, Any] | None = None,
    label: str = "cf",
) -> Callable:
    """The factual world and one counterfactual world (sites ``"cf.<site>"``).

    Shorthand for ``multi_world(model, {label: interventions})``.

    Examples
    --------
    >>> import numpyro, numpyro.distributions as dist
    >>> from numpyro import handlers
    >>> def model():
    ...     x = numpyro.sample("x", dist.Normal(0.0, 1.0))
    ...     numpyro.sample("y", dist.Normal(2.0 * x, 1.0))
    >>> twins = twin_world(model, {"x": 0.0})
    >>> seen = handlers.condition(twins, {"x": 1.0, "y": 2.5})
    >>> tr = handlers.trace(handlers.seed(seen, 0)).get_trace()
    >>> float(tr["cf.y"]["value"])  # y's noise (+0.5) kept, x set to 0
    0.5
    """
    return multi_world(model, {label: interventions}, masks={label: mask} if mask else None)
