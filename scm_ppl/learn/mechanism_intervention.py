"""Interventions on mechanisms themselves: change a layer, not a variable.

``do`` sets a *variable*; :func:`do_mechanism` changes the *mechanism* that produces one:
a ``numpyro.param``, an Equinox/FlowJAX module registered through
``numpyro.contrib.module`` (its parameters live in the param site ``"<name>$params"``), or
a sub-module of one (``"decoder.layers[1]"``, ``"decoder.layers[1].weight"``). This is the
soft intervention that extrapolation in generative models is about (Besserve et al.,
AAAI 2021): a generator whose layers are independent mechanisms keeps producing sensible
outputs when one layer is changed.

What a change *means* is a small pure function of the parameter (:class:`stretch`,
:class:`rotate`, :class:`scale` in :mod:`~scm_ppl.learn.mechanism_changes`, or any
callable on the parameter pytree); *where* it applies is the handler
:class:`transform_params`, here.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
from numpyro.primitives import _PYRO_STACK, Messenger

from scm_ppl.core.handlers import world_prefix
from scm_ppl.errors import InterventionError, SettingsError
from scm_ppl.learn.fitting import FittedSCM
from scm_ppl.learn.mechanism_changes import rotate, scale, stretch
from scm_ppl.learn.param_names import (
    get_path,
    path_keys,
    public_name,
    split_name,
)

__all__ = ["do_mechanism", "rotate", "scale", "stretch", "transform_params"]


# --- where a change applies ---------------------------------------------------------------


def _targets(name: str, public: str, value: Any) -> str | None:
    """The path ``name`` points to inside the parameter ``public`` (whose value is
    ``value``), or ``None`` when it names something else."""
    if name == public:
        return ""
    if not name.startswith((f"{public}.", f"{public}[")):
        return None
    path = name[len(public) :]
    try:  # "y.scale" may be a param of its own rather than a path into "y"
        get_path(value, path_keys(path))
    except (InterventionError, AttributeError, KeyError, IndexError, TypeError):
        return None
    return path


def _sub_paths(value: Any) -> list[str]:
    paths = [jax.tree_util.keystr(p) for p, _ in jax.tree_util.tree_flatten_with_path(value)[0]]
    return [p for p in paths if p]


def _check_like(name: str, old: Any, new: Any) -> Any:
    old_leaves, old_def = jax.tree.flatten(old)
    new_leaves, new_def = jax.tree.flatten(new)
    if old_def != new_def:
        raise InterventionError(
            f"The change of mechanism '{name}' returned a different structure: expected "
            f"{old_def}, got {new_def}. A transform must keep the parameters' structure."
        )
    for a, b in zip(old_leaves, new_leaves, strict=True):
        if jnp.shape(a) != jnp.shape(b):
            raise InterventionError(
                f"The change of mechanism '{name}' returned shape {jnp.shape(b)} for a "
                f"parameter of shape {jnp.shape(a)}; a transform must keep every shape."
            )
    return jax.tree.unflatten(
        old_def,
        [jnp.asarray(b, jnp.result_type(a)) for a, b in zip(old_leaves, new_leaves, strict=True)],
    )


def apply_change(name: str, path: str, value: Any, change: Any) -> Any:
    """The parameter pytree ``value`` with the part at ``path`` changed by ``change``
    (a callable: applied to it; anything else: the replacement value)."""
    keys = path_keys(path) if path else []
    try:
        part = get_path(value, keys)
    except (AttributeError, KeyError, IndexError, TypeError) as err:
        raise InterventionError(
            f"Mechanism '{name}' has no part {path!r}; its parameter paths are {_sub_paths(value)}."
        ) from err
    new = change(part) if callable(change) else jax.tree.map(jnp.asarray, change)
    new = _check_like(name, part, new)
    if not keys:
        return new
    return eqx.tree_at(lambda t: get_path(t, keys), value, new, is_leaf=lambda x: x is None)


class transform_params(Messenger):
    """Change the value of parameter sites (and modules) of a program as it runs.

    Parameters
    ----------
    fn
        The program.
    changes
        ``{name: change}``: ``name`` is a param site, a module (``"net"`` for the param
        ``"net$params"``) or a path into one (``"net.layers[0].weight"``); ``change`` is
        a callable on that part (``stretch(2.0)``, ``rotate(Q)``, ``lambda w: ...``) or a
        replacement value of the same shapes.
    world
        ``None``: the change applies in every world. A world label (``"cf"``): only inside
        that counterfactual world, so the factual world (abduction) keeps the original
        mechanism and the counterfactual replays the same noise through the changed one.

    Raises
    ------
    InterventionError
        After a run in which a name matched no parameter (the message lists those the
        program has), or a change that alters shapes.
    """

    def __init__(
        self,
        fn: Callable | None = None,
        changes: Mapping[str, Any] | None = None,
        *,
        world: str | None = None,
    ) -> None:
        self.values = dict(changes or {})
        self.world = world
        self._seen: dict[str, Any] = {}
        self._matched: set[str] = set()
        self._unresolved: dict[str, tuple[str, Any]] = {}  # name -> (path, value) tried
        super().__init__(fn)

    def _active(self) -> bool:
        if self.world is None:
            return True
        return any(isinstance(h, world_prefix) and h.prefix == self.world for h in _PYRO_STACK)

    def process_message(self, msg: dict[str, Any]) -> None:
        if msg["type"] != "param":
            return
        public = public_name(msg["name"])
        self._seen[public] = msg["name"]
        if not any(n == public or n.startswith((f"{public}.", f"{public}[")) for n in self.values):
            return
        value = msg["value"]
        if value is None:
            value = msg["fn"](*msg["args"], **msg["kwargs"])
        targets = [(n, _targets(n, public, value)) for n in self.values]
        self._unresolved.update(
            (n, (n[len(public) :], value))
            for n, path in targets
            if path is None and n.startswith((f"{public}.", f"{public}["))
        )
        targets = [(n, path) for n, path in targets if path is not None]
        self._matched.update(n for n, _ in targets)
        if not targets or not self._active():
            return
        for name, path in targets:
            value = apply_change(name, path, value, self.values[name])
        msg["value"] = value

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        self._seen, self._matched, self._unresolved = {}, set(), {}
        out = super().__call__(*args, **kwargs)
        unknown = sorted(set(self.values) - self._matched)
        for name in unknown:
            if name in self._unresolved:  # a parameter it starts with, but no such part
                path, value = self._unresolved[name]
                apply_change(name, path, value, self.values[name])
        if unknown:
            raise InterventionError(
                f"do_mechanism names {unknown}, which the program does not have; its "
                f"parameters and modules are {sorted(self._seen)}."
            )
        return out


def do_mechanism(program: Any, changes: Mapping[str, Any], *, world: str | None = None) -> Any:
    """Intervene on mechanisms: replace or transform parameters of a program.

    Parameters
    ----------
    program
        A NumPyro program, or a :class:`~scm_ppl.FittedSCM`.
    changes
        ``{name: transform_or_value}`` (see :class:`transform_params`): a param site, a
        module registered with ``numpyro.contrib.module`` (by its name) or a path into one;
        a transform (:class:`stretch`, :class:`rotate`, :class:`scale`, any callable on the
        parameter pytree) or a replacement of the same shapes.
    world
        Apply the change only in the counterfactual world with this label (see
        :class:`transform_params`); ``None``: everywhere.

    Returns
    -------
    A program (a FittedSCM for a FittedSCM, with the changed parameters) that every query
    (``do``, ``interventional``, ``counterfactual``, ``Predictive``) accepts.

    Examples
    --------
    >>> import jax.numpy as jnp, numpyro, numpyro.distributions as dist
    >>> from numpyro import handlers
    >>> def model():
    ...     w = numpyro.param("w", jnp.array([1.0, 2.0]))
    ...     return numpyro.deterministic("y", w.sum())
    >>> changed = do_mechanism(model, {"w": scale(3.0)})
    >>> float(handlers.trace(changed).get_trace()["y"]["value"])
    9.0
    """
    if not isinstance(changes, Mapping) or not all(isinstance(k, str) for k in changes):
        raise InterventionError(
            "do_mechanism needs {name: transform_or_value} with parameter/module names as "
            f"keys; got {changes!r}."
        )
    if isinstance(program, FittedSCM) and world is None:
        params = dict(program.params)
        by_public = {public_name(p): p for p in params}
        for name, change in changes.items():
            head, path = split_name(name, by_public)
            if head not in by_public:
                raise InterventionError(
                    f"do_mechanism names '{head}', which the fitted program does not have; its "
                    f"parameters and modules are {sorted(by_public)}."
                )
            params[by_public[head]] = apply_change(name, path, params[by_public[head]], change)
        settings = {**program.settings, "changed_mechanisms": sorted(changes)}
        return dataclasses.replace(program, params=params, settings=settings)
    if not callable(program):
        raise SettingsError(
            f"do_mechanism needs a NumPyro program or a FittedSCM; got {program!r}."
        )
    return transform_params(program, changes, world=world)
