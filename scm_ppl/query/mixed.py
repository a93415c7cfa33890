"""Abduction when discrete and continuous latent causes meet: ``"nuts+enumerate"``.

The discrete latent sites upstream of the evidence are summed out by enumeration (see
:mod:`scm_ppl.query.enumeration`) inside the density NUTS samples, so NUTS moves only
the continuous latent sites, on the exact marginal ``p(z | evidence) ∝ p(z) Σ_c p(c)
p(evidence | z, c)``. Then, per NUTS draw, the discrete sites are drawn per unit from
their exact conditional ``p(c | z, evidence)``: together, draws from the joint posterior.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import numpyro
from numpyro import handlers
from numpyro.primitives import Messenger

from scm_ppl.core.inference import run_nuts
from scm_ppl.core.program import ProgramInfo
from scm_ppl.query.enumeration import _log_joint, _support_values

__all__ = ["run_nuts_enumerate"]


class _silenced(Messenger):
    """Give the named sample sites fixed values that add nothing to the density."""

    def __init__(self, fn: Callable, data: Mapping[str, Any]) -> None:
        self.data = data
        super().__init__(fn)

    def process_message(self, msg: dict[str, Any]) -> None:
        if msg["type"] == "sample" and msg["name"] in self.data:
            msg["value"] = self.data[msg["name"]]
            msg["is_observed"] = True
            msg["fn"] = msg["fn"].mask(False)


def run_nuts_enumerate(
    model: Callable,
    args: tuple,
    kwargs: Mapping[str, Any],
    info: ProgramInfo,
    evidence: Mapping[str, Any],
    discrete: list[str],
    continuous: list[str],
    unit: tuple[str, int] | None,
    settings: Any,
    rng_key: jax.Array,
) -> tuple[dict[str, jax.Array], dict[str, float]]:
    """NUTS on the continuous latents with the discrete ones enumerated out, then the
    discrete ones drawn per draw and unit: ``(chain, draw, *site_shape)`` arrays and the
    NUTS diagnostics (with the support size)."""
    evidence = {k: jnp.asarray(v) for k, v in evidence.items()}
    sample_ev = {k: v for k, v in evidence.items() if info.sites[k].kind == "sample"}
    grids = [_support_values(info, n) for n in discrete]
    mesh = np.stack([g.ravel() for g in np.meshgrid(*grids, indexing="ij")], axis=-1)
    values = {n: jnp.asarray(mesh[:, i]) for i, n in enumerate(discrete)}
    first = {
        n: jnp.full(info.sites[n].shape, grids[i][0], info.sites[n].dtype)
        for i, n in enumerate(discrete)
    }
    sites = tuple(discrete)

    def marginal(*a: Any, **kw: Any) -> None:
        trace = handlers.trace(_silenced(model, {**first, **sample_ev})).get_trace(*a, **kw)
        z = {n: trace[n]["value"] for n in continuous}
        with handlers.block():
            log_joint = _log_joint(model, a, kw, info, sites, unit, values, evidence, z)
        numpyro.factor("enumerated", jnp.sum(jax.nn.logsumexp(log_joint, axis=0)))

    infer_key, draw_key = jax.random.split(rng_key)
    # The marginal closes over the evidence: one sampler per query, not cached.
    latents, diagnostics = run_nuts(
        marginal, args, kwargs, {}, continuous, settings, infer_key, cache=False
    )

    @jax.jit
    def draw(z: dict[str, jax.Array], key: jax.Array) -> dict[str, jax.Array]:
        chains, draws = next(iter(z.values())).shape[:2]
        flat = {k: v.reshape((chains * draws, *v.shape[2:])) for k, v in z.items()}
        log_joint = jax.vmap(
            lambda zs: _log_joint(model, args, kwargs, info, sites, unit, values, evidence, zs)
        )(flat)  # (draw, K, *units)
        cdf = jnp.cumsum(jax.nn.softmax(log_joint, axis=1), axis=1)
        u = jax.random.uniform(key, (log_joint.shape[0], 1, *log_joint.shape[2:]))
        index = jnp.minimum(jnp.sum(u >= cdf, axis=1), log_joint.shape[1] - 1)
        return {
            n: v[index].reshape((chains, draws, *info.sites[n].shape)).astype(info.sites[n].dtype)
            for n, v in values.items()
        }

    drawn = draw(latents, draw_key)
    diagnostics = {**diagnostics, "support_size": float(mesh.shape[0])}
    return {**latents, **drawn}, diagnostics
