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
query accepts the result. On a ``hurdle-sq`` mechanism (squared parents) the parent's
square moves with it: the factor scales both rows, and the shift acts on the value inside
the square, ``w1 (z + d) + w2 (z + d)^2``, exactly.
"""

from __future__ import annotations

from typing import Any

import jax.numpy as jnp
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
    rows = _rows(scm, child, parent)
    s = scm.stats[parent]
    mask = np.ones(scm.params[f"{child}.weight"].shape[0], np.float32)
    mask[rows] = factor
    family = scm.choices[child].family
    square = _square_row(scm, child, parent) if family == "hurdle-sq" else None
    if square is not None:
        mask[square] = factor
    prefixes = {
        "hurdle": ("", "zero_"),
        "hurdle-sq": ("", "zero_"),
        "mlp": ("", "hidden_"),
        "mlp-loc-scale": ("", "hidden_"),
        "mlp-logistic": ("", "hidden_"),
        "mlp-softmax": ("", "hidden_"),
    }.get(family, ("",))
    # The first feature row of a continuous parent is z = (value - mean) / sd, so the
    # shifted parent is z + delta.
    delta = shift / s["feature_sd"]
    changes: dict[str, Any] = {}
    for prefix in prefixes:
        weight = f"{child}.{prefix}weight"
        w0 = np.asarray((values or scm.params)[weight])
        if square is None or not shift:
            changes[weight] = lambda w, m=mask: w * (m if w.ndim == 1 else m[:, None])
            d = factor * delta * w0[rows.start]
        else:  # w1 (z + d) + w2 (z + d)^2 = (w1 + 2 d w2) z + w2 z^2 + (w1 d + w2 d^2)
            changes[weight] = lambda w, m=mask, i=rows.start, j=square: (
                jnp.asarray(w * m).at[i].add(factor * 2 * delta * w[j])
            )
            d = factor * (delta * w0[rows.start] + delta**2 * w0[square])
        if shift:
            changes[f"{child}.{prefix}bias"] = lambda b, d=d: b + d
    return do_mechanism(program, changes)


def _square_row(scm: GraphSCM, child: str, parent: str) -> int | None:
    """The row of ``parent``'s square among ``child``'s hurdle-sq features: after every
    parent's own rows, one per continuous parent in order (``graph_scm.features``)."""
    parents = scm.choices[child].parents
    if scm.stats[parent]["type"] != "continuous":
        return None
    width = _rows(scm, child, parents[-1]).stop  # every parent's own rows
    continuous = [p for p in parents if scm.stats[p]["type"] == "continuous"]
    return width + continuous.index(parent)
