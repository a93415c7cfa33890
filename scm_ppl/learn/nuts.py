"""``method="nuts"``: posterior draws of the global latent sites by NUTS.

All regimes are scored in one joint program: the first regime's run owns the global
sites, and the others run with those values fixed, under their own name scope. There are
no minibatches, and ``numpyro.param`` sites keep their initial values (checked: a
parameter the likelihood depends on is an error).
"""

from __future__ import annotations

import time
import warnings
from collections.abc import Mapping
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from numpyro import handlers
from numpyro.distributions.transforms import biject_to

from scm_ppl.core.inference import nuts_diagnostics, nuts_problems
from scm_ppl.errors import InferenceWarning, ProgramError
from scm_ppl.learn.data import Structure
from scm_ppl.learn.fitted import fitted_sites
from scm_ppl.learn.objective import (
    FitEstimate,
    Objective,
    feature_stats,
    initial_state,
    num_rows,
)

__all__ = ["fit_nuts"]


def fit_nuts(
    objective: Objective,
    train: list[dict[str, np.ndarray]],
    settings: dict[str, Any],
    num_samples: int,
    num_warmup: int,
    num_chains: int,
    key: jax.Array,
    progress: bool,
) -> FitEstimate:
    """Draw the global latent sites given every row of ``train`` (one batch per regime)."""
    from numpyro.infer import MCMC, NUTS

    structure = objective.structure
    if structure.params:
        _check_params_idle(objective, train, key)
    if not structure.globals:
        raise ProgramError(
            "method='nuts' draws the program's global latent sites (priors on weights), but "
            "it has none; use method='map'."
        )
    regimes = [
        (label, {s: jnp.asarray(v) for s, v in b.items()})
        for label, b in zip(objective.labels, train, strict=True)
    ]

    def joint() -> None:
        shared: dict[str, Any] = {}
        for i, (label, batch) in enumerate(regimes):
            program = objective.program(label, batch, {})
            kwargs = {objective.size_arg: num_rows(batch), **objective.kwargs}
            if i == 0:  # the first regime owns the global sites; the others share them
                with handlers.trace() as tr:
                    program(**kwargs)
                shared = {k: tr[k]["value"] for k in structure.globals}
            else:
                fixed = fitted_sites(program, fixed=shared, loc={}, scale={})
                scoped = handlers.scope(fixed, prefix=f"regime{label}", hide_types=["param"])
                scoped(**kwargs)

    mcmc = MCMC(
        NUTS(joint),
        num_warmup=num_warmup,
        num_samples=num_samples,
        num_chains=num_chains,
        chain_method="sequential",
        progress_bar=progress,
    )
    start = time.perf_counter()
    mcmc.run(key, extra_fields=("diverging",))
    grouped = mcmc.get_samples(group_by_chain=True)
    samples = {
        k: v.reshape((-1, *v.shape[2:])) for k, v in grouped.items() if k in structure.globals
    }
    _warn_nuts(grouped, mcmc, structure)
    loc, scale = {}, {}
    for name, draws in samples.items():
        z = biject_to(structure.supports[name]).inv(draws)
        loc[name], scale[name] = jnp.mean(z, axis=0), jnp.std(z, axis=0)
    seconds = time.perf_counter() - start
    settings = {**settings, "num_samples": num_samples, "num_warmup": num_warmup}
    settings["num_chains"] = num_chains
    return FitEstimate(
        params=dict(structure.params),
        point={},
        loc=loc,
        scale=scale,
        samples=samples,
        losses=np.zeros(0),
        validation_losses=np.zeros(0),
        best_epoch=0,
        stopped_early=False,
        seconds=seconds,
        settings=settings,
    )


def _check_params_idle(
    objective: Objective, train: list[dict[str, np.ndarray]], key: jax.Array
) -> None:
    """NUTS leaves ``numpyro.param`` sites at their initial values: refuse a program whose
    likelihood depends on one (a nonzero gradient on a probe of the data)."""
    state = initial_state(objective, train[0])
    probe = [{s: v[:256] for s, v in b.items()} for b in train]
    sizes = [(num_rows(b),) * 2 for b in probe]
    total = sum(s[0] for s in sizes)
    const = feature_stats(train)
    loss = lambda state: objective.loss_and_penalty(state, probe, key, const, sizes, total)[0]
    grads = jax.jit(jax.grad(loss))(state)  # one compile, not one per operation
    moving = sorted(
        k
        for k, g in grads["params"].items()
        if any(np.any(np.asarray(leaf) != 0) for leaf in jax.tree.leaves(g))
    )
    if moving:
        raise ProgramError(
            f"method='nuts' samples sample sites only: the program's numpyro.param site(s) "
            f"{moving} shape the likelihood and would stay at their initial values. Learn "
            "them with method='map' or 'svi', or give them priors (sample sites)."
        )


def _warn_nuts(grouped: Mapping[str, Any], mcmc: Any, structure: Structure) -> None:
    weights = {k: v for k, v in grouped.items() if k in structure.globals}
    diagnostics = nuts_diagnostics(weights, mcmc.get_extra_fields()["diverging"])
    problems = nuts_problems(diagnostics, min_ess=None)
    if problems:
        warnings.warn(
            "The NUTS fit may be unreliable: " + "; ".join(problems) + ". Increase num_warmup "
            "or num_samples, or reparametrise the program.",
            InferenceWarning,
            stacklevel=3,
        )
