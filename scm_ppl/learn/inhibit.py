"""Interventions as reagents act: weaken one parent's influence inside one mechanism.

An inhibitor of MEK does not set the measured phospho-MEK level (in Sachs' U0126 block it
*rises*); it stops MEK from acting on Erk. :func:`inhibit` models that on a program from
:func:`~scm_ppl.learn.from_graph.scm_from_graph` (or its fit): in ``child``'s mechanism
the weights of ``parent``'s features are multiplied by ``factor`` (0 removes the
influence: the child then responds as if the parent sat at its training mean) and, with
``shift``, the parent's *effective* value seen by that mechanism moves by ``shift`` (in
the parent's units; e.g. ``log(0.1)`` on log data for a 90 % loss of activity). Every
other mechanism, and the parent's own value, are unchanged. It is a mechanism
intervention built on :func:`~scm_ppl.learn.mechanism_intervention.do_mechanism`, so every
query accepts the result.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from scm_ppl.errors import InterventionError
from scm_ppl.learn.fitting import FittedSCM
from scm_ppl.learn.from_graph import GraphSCM
from scm_ppl.learn.mechanism_intervention import do_mechanism

__all__ = ["inhibit"]


def _rows(scm: GraphSCM, child: str, parent: str) -> slice:
    if child not in scm.choices:
        raise InterventionError(f"inhibit: '{child}' is not a node; nodes are {list(scm.order)}.")
    parents = scm.choices[child].parents
    if parent not in parents:
        raise InterventionError(
            f"inhibit: '{parent}' is not a parent of '{child}' (its parents: {list(parents)})."
        )
    start = 0
    for p in parents:
        s = scm.stats[p]
        width = len(s["levels"]) - 1 if s["type"] == "categorical" else 1 + s["zero_feature"]
        if p == parent:
            return slice(start, start + width)
        start += width
    raise AssertionError("unreachable")  # pragma: no cover


def inhibit(
    program: Any,
    child: str,
    parent: str,
    *,
    factor: float = 0.0,
    shift: float = 0.0,
    scm: GraphSCM | FittedSCM | None = None,
) -> Any:
    """``program`` with ``parent``'s influence on ``child`` scaled by ``factor`` and its
    effective value shifted by ``shift`` inside ``child``'s mechanism only. To act on
    several edges, pass the result again with ``scm=`` the original program (or its fit).

    Examples
    --------
    >>> import numpy as np, pandas as pd, networkx as nx
    >>> rng = np.random.default_rng(0)
    >>> x = rng.normal(size=200)
    >>> df = pd.DataFrame({"x": x, "y": 2 * x + 0.1 * rng.normal(size=200)})
    >>> from scm_ppl import interventional
    >>> from scm_ppl.learn import scm_from_graph
    >>> scm = scm_from_graph(nx.DiGraph([("x", "y")]), df)
    >>> cut = inhibit(scm, "y", "x", factor=0.0)  # y no longer listens to x
    >>> import jax
    >>> out = interventional(cut, None, rng_key=jax.random.key(0), num_samples=2000)
    >>> round(float(out.world("do")["y"].std()), 1)  # only y's own noise is left
    0.1
    """
    if scm is None:
        scm = program
    # The bias shift reads the parent's weight: the fitted one when the program was fitted.
    values = scm.params if isinstance(scm, FittedSCM) else None
    if isinstance(scm, FittedSCM):
        scm = scm.base_model  # type: ignore[assignment]
    if not isinstance(scm, GraphSCM):
        raise InterventionError(
            "inhibit acts on a program from scm_from_graph (or its fit), whose mechanisms "
            f"have one weight row per parent feature; got {type(scm).__name__}. For another "
            "program, use do_mechanism on its parameters."
        )
    if scm.choices[child].family == "hurdle-sq":
        raise InterventionError(
            f"inhibit: '{child}' has the hurdle-sq mechanism (squared parents), whose parent "
            f"rows do not scale as one; refit with mechanisms={{{child!r}: 'hurdle'}}."
        )
    rows = _rows(scm, child, parent)
    s = scm.stats[parent]
    mask = np.ones(scm.params[f"{child}.weight"].shape[0], np.float32)
    mask[rows] = factor
    family = scm.choices[child].family
    prefixes = {
        "hurdle": ("", "zero_"),
        "mlp": ("", "hidden_"),
        "mlp-loc-scale": ("", "hidden_"),
    }.get(family, ("",))
    changes: dict[str, Any] = {}
    for prefix in prefixes:
        weight = f"{child}.{prefix}weight"
        changes[weight] = lambda w, m=mask: w * (m if w.ndim == 1 else m[:, None])
        if shift:
            # The first feature row of a continuous parent is (value - mean) / sd.
            step = factor * shift / s["feature_sd"]
            w0 = np.asarray((values or scm.params)[weight])[rows.start]
            changes[f"{child}.{prefix}bias"] = lambda b, d=step * w0: b + d
    return do_mechanism(program, changes)
