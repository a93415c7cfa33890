"""NumPyro messengers that read a program as an SCM.

* :class:`do` intervenes on sample **and** deterministic sites;
* :class:`replay_noise` runs a mechanism on given exogenous noise instead of sampling;
* :class:`world_prefix` records one world's sites under a prefix, leaving parameters
  and plates shared between worlds.

Each works as a wrapper, ``do(model, {...})``, and as a context manager,
``with do(interventions={...}):``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as dist
from jax.typing import ArrayLike
from numpyro.primitives import Messenger, apply_stack

from scm_ppl.core.intervention import Intervention, apply_intervention, as_interventions
from scm_ppl.core.noise import noise_view
from scm_ppl.errors import InterventionError

__all__ = ["do", "replay_noise", "world_prefix"]

# Keys this package writes into a site's ``infer`` dict; graph() and the queries read them.
INTERVENTION_KEY = "scm_intervention"
NATURAL_OF_KEY = "scm_natural_of"
INTERVENTION_OF_KEY = "scm_intervention_of"
FRESH_NOISE_KEY = "scm_fresh_noise"


def _site_shape(msg: dict[str, Any]) -> tuple[int, ...]:
    sample_shape = tuple(msg.get("kwargs", {}).get("sample_shape", ()))
    return sample_shape + tuple(msg["fn"].shape())


def _check_fits(name: str, what: str, shape: tuple[int, ...], site: tuple[int, ...]) -> None:
    """Raise :class:`InterventionError` unless an intervention's value or mask broadcasts
    to the site's shape (else JAX raises a bare broadcasting error, or worse, broadcasts
    a per-unit value along an event axis)."""
    try:
        fits = np.broadcast_shapes(tuple(shape), tuple(site)) == tuple(site)
    except ValueError:
        fits = False
    if not fits:
        raise InterventionError(
            f"do() on {name!r}: the {what} has shape {tuple(shape)}, which does not broadcast "
            f"to the site's shape {tuple(site)} (NumPy broadcasting aligns trailing axes). "
            "Give one value for all units, or one per unit with the site's full shape (a "
            "site with event axes, such as an image, needs them too: shape (n, *event))."
        )


def _per_unit_mask(name: str, mask: jax.Array, msg: dict[str, Any]) -> jax.Array:
    event_dim = int(getattr(msg.get("fn"), "event_dim", 0))
    shape = _site_shape(msg)
    batch = shape[: len(shape) - event_dim]
    _check_fits(name, "mask", jnp.shape(mask), batch)
    return jnp.reshape(mask, (*jnp.shape(mask), *(1,) * event_dim))


class do(Messenger):
    """Intervene on sites of a NumPyro program.

    Parameters
    ----------
    fn
        The program. Leave out to use ``do`` as a context manager.
    interventions
        ``{site: value}``; a value is an array (hard), a callable of the natural value
        (shift: keeps the unit's noise) or a distribution (stochastic: a new mechanism
        with fresh noise). Sample and deterministic sites both qualify.
    mask
        ``{site: boolean array}``: intervene only where the mask is true (per unit);
        elsewhere the site keeps its natural value.

    Notes
    -----
    An intervened site is recorded under its own name with the intervened value, and
    ``site["infer"]["scm_intervention"]`` names the kind. A shift or masked
    intervention also records the natural draw as ``"<site>.natural"`` — a proper
    sample site, so NUTS and noise replay treat it as the mechanism it is.

    Examples
    --------
    >>> import jax, numpyro, numpyro.distributions as dist
    >>> def model():
    ...     x = numpyro.sample("x", dist.Normal(0.0, 1.0))
    ...     return numpyro.deterministic("y", 2.0 * x)
    >>> tr = numpyro.handlers.trace(numpyro.handlers.seed(do(model, {"x": 3.0}), 0)).get_trace()
    >>> float(tr["y"]["value"])
    6.0
    """

    def __init__(
        self,
        fn: Callable | None = None,
        interventions: Mapping[str, Any] | None = None,
        *,
        mask: Mapping[str, ArrayLike] | None = None,
    ) -> None:
        self.interventions = as_interventions(interventions)
        mask = dict(mask or {})
        unknown = sorted(set(mask) - set(self.interventions))
        if unknown:
            raise InterventionError(
                f"Mask given for {unknown}, which {'is' if len(unknown) == 1 else 'are'} not "
                f"intervened on; masks must name sites in {sorted(self.interventions)}."
            )
        self.mask = {name: jnp.asarray(m, bool) for name, m in mask.items()}
        self._seen: list[set[str]] = []  # one set per active run (runs may nest)
        super().__init__(fn)

    def __enter__(self) -> None:
        self._seen.append(set())
        super().__enter__()

    def __exit__(self, exc_type: Any, exc_value: Any, traceback: Any) -> None:
        seen = self._seen.pop() if self._seen else set()
        super().__exit__(exc_type, exc_value, traceback)
        missing = sorted(set(self.interventions) - seen)
        if exc_type is None and missing:
            # An intervention on a site the program never reached would leave the answer
            # unchanged without a word: a typo must not pass for a null effect.
            raise InterventionError(
                f"do() intervenes on {missing}, but the program ran without reaching "
                f"{'that site' if len(missing) == 1 else 'those sites'}. Intervene on sample "
                "or deterministic sites the program has (scm_ppl.graph(model).nodes lists "
                "them)."
            )

    def process_message(self, msg: dict[str, Any]) -> None:
        if msg["type"] not in ("sample", "deterministic"):
            return
        intervention = self.interventions.get(msg["name"])
        if intervention is None or (msg.get("infer") or {}).get("_scm_do") == id(self):
            return
        name = msg["name"]
        if self._seen:
            self._seen[-1].add(name)
        mask = self.mask.get(name)
        if msg["type"] == "deterministic":
            natural = jnp.asarray(msg["value"])
            msg["value"] = self._intervened(name, intervention, natural, mask)
            msg["infer"] = {**msg.get("infer", {}), INTERVENTION_KEY: intervention.kind}
            return
        if mask is None and intervention.kind == "hard":
            shape = _site_shape(msg)
            _check_fits(name, "value", jnp.shape(intervention.value), shape)
            value = jnp.broadcast_to(jnp.asarray(intervention.value), shape)
            msg.update(type="deterministic", value=value, is_observed=False)
            msg["infer"] = {**msg.get("infer", {}), INTERVENTION_KEY: "hard"}
        elif mask is None and intervention.kind == "stochastic":
            batch_shape = tuple(msg["fn"].batch_shape)
            new_fn = intervention.value
            if tuple(new_fn.batch_shape) != batch_shape:
                new_fn = new_fn.expand(batch_shape)
            msg.update(fn=new_fn, value=None, is_observed=False)
            msg["infer"] = {
                **msg.get("infer", {}),
                INTERVENTION_KEY: "stochastic",
                FRESH_NOISE_KEY: True,
            }
        else:
            # The natural draw stays a real sample site so that its noise is replayed
            # (counterfactuals) or inferred (NUTS); postprocess_message applies the act.
            msg["name"] = f"{name}.natural"
            msg["infer"] = {**msg.get("infer", {}), NATURAL_OF_KEY: name, "_scm_do": id(self)}

    def postprocess_message(self, msg: dict[str, Any]) -> None:
        infer = msg.get("infer") or {}
        if infer.get("_scm_do") != id(self) or NATURAL_OF_KEY not in infer:
            return
        name = infer[NATURAL_OF_KEY]
        intervention = self.interventions[name]
        mask = self.mask.get(name)
        if mask is not None:  # a mask is per unit: it spans the batch axes, not the event's
            mask = _per_unit_mask(name, mask, msg)
        value = self._intervened(name, intervention, jnp.asarray(msg["value"]), mask)
        record = {
            "type": "deterministic",
            "name": name,
            "value": value,
            "cond_indep_stack": [],
            "infer": {INTERVENTION_KEY: intervention.kind, "_scm_do": id(self)},
        }
        msg["value"] = apply_stack(record)["value"]

    @staticmethod
    def _intervened(name: str, intervention: Intervention, natural: Any, mask: Any | None) -> Any:
        def sample_fresh(new_fn: dist.Distribution) -> Any:
            if tuple(new_fn.batch_shape) != jnp.shape(natural)[: len(new_fn.batch_shape)]:
                new_fn = new_fn.expand(jnp.shape(natural)[: jnp.ndim(natural) - new_fn.event_dim])
            return numpyro.sample(
                f"{name}.intervention",
                new_fn,
                infer={INTERVENTION_OF_KEY: name, FRESH_NOISE_KEY: True},
            )

        if intervention.kind == "hard":
            _check_fits(name, "value", jnp.shape(intervention.value), jnp.shape(natural))
        value = apply_intervention(intervention, natural, sample_fresh)
        if mask is not None:
            _check_fits(name, "mask", jnp.shape(mask), jnp.shape(natural))
            value = jnp.where(mask, value, natural)
        return value


class replay_noise(Messenger):
    """Compute each sample site from given exogenous noise instead of sampling it.

    A site whose noise is given becomes the deterministic value ``forward(u)`` of its
    noise view, so a program run under ``replay_noise`` is the same SCM evaluated on
    shared noise: the basis of counterfactual worlds. Sites without noise, and the fresh
    mechanisms of stochastic interventions, are sampled as usual.

    Parameters
    ----------
    fn
        The program.
    noise
        ``{site: u}`` with ``u`` shaped as the site's noise (see :func:`noise_view`).

    Examples
    --------
    >>> import numpyro, numpyro.distributions as dist
    >>> from numpyro import handlers
    >>> def model():
    ...     x = numpyro.sample("x", dist.Normal(1.0, 2.0))
    ...     numpyro.sample("y", dist.Normal(x, 1.0))
    >>> run = replay_noise(model, noise={"x": 0.5, "y": -1.0})
    >>> tr = handlers.trace(handlers.seed(run, 0)).get_trace()
    >>> float(tr["x"]["value"]), float(tr["y"]["value"])  # x = 1 + 2 * 0.5, y = x - 1
    (2.0, 1.0)
    """

    def __init__(self, fn: Callable | None = None, noise: Mapping[str, Any] | None = None):
        self.noise = dict(noise or {})
        super().__init__(fn)

    def process_message(self, msg: dict[str, Any]) -> None:
        if msg["type"] != "sample":
            return
        infer = msg.get("infer") or {}
        if infer.get(FRESH_NOISE_KEY):
            return
        key = infer.get(NATURAL_OF_KEY, msg["name"])
        if key not in self.noise:
            return
        value = noise_view(msg["fn"]).forward(self.noise[key])
        # A replayed mechanism is a function of noise already accounted for: recording it
        # as deterministic keeps it out of log densities and out of NUTS's latents.
        msg.update(type="deterministic", value=value, is_observed=False)


class world_prefix(Messenger):
    """Record sample and deterministic sites as ``f"{prefix}.{name}"``.

    Unlike :class:`numpyro.handlers.scope`, parameters, modules and plates keep their
    names, so every world shares the same mechanisms and unit dimensions.
    """

    def __init__(self, fn: Callable | None = None, prefix: str = "cf") -> None:
        self.prefix = prefix
        super().__init__(fn)

    def process_message(self, msg: dict[str, Any]) -> None:
        if msg["type"] in ("sample", "deterministic") and msg.get("name"):
            msg["name"] = f"{self.prefix}.{msg['name']}"
