"""The program :func:`~scm_ppl.learn.from_graph.scm_from_graph` builds: :class:`GraphSCM`
(a NumPyro program with one mechanism per node, its summary and its source), the
:class:`MechanismChoice` behind each node, and the :func:`features` a mechanism reads off
its parents (the same standardisation when fitting, in NumPy, and in the program, in JAX).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

import jax.numpy as jnp
import networkx as nx
import numpy as np
import numpyro
import numpyro.distributions as dist
from numpyro.distributions import constraints

from scm_ppl.learn.empirical import EmpiricalRoot, RootTable
from scm_ppl.learn.flexible import MLP_FAMILIES, mlp_loc_scale
from scm_ppl.learn.hurdle import Hurdle
from scm_ppl.learn.neural_logits import LOGIT_FAMILIES, logits_of
from scm_ppl.learn.spline_candidate import SPLINE_PARAMS, SplineNoise

__all__ = ["SQUARED", "GraphSCM", "MechanismChoice", "features"]

SQUARED = {"hurdle-sq": "hurdle"}  # a family on squared continuous parents too: its base


@dataclasses.dataclass(frozen=True)
class MechanismChoice:
    """The mechanism chosen for one node, with the held-out mean log-likelihood per row of
    every candidate (``scores``, data units) and why the others were not candidates.

    Examples
    --------
    Read from :attr:`GraphSCM.choices` of a :func:`scm_from_graph` program:

    >>> import numpy as np, pandas as pd, networkx as nx
    >>> from scm_ppl.learn import scm_from_graph
    >>> rng = np.random.default_rng(0)
    >>> x = rng.normal(size=200)
    >>> df = pd.DataFrame({"x": x, "y": 1.0 + 2.0 * x + rng.normal(size=200)})
    >>> choice = scm_from_graph(nx.DiGraph([("x", "y")]), df).choices["y"]
    >>> choice.site_type, choice.family, choice.parents
    ('continuous', 'linear', ('x',))
    >>> choice.reason
    'takes negative values: log families excluded'
    >>> {family: round(score, 2) for family, score in choice.scores.items()}
    {'linear': -1.32, 'mlp': -1.37, 'mlp-loc-scale': -1.81, 'spline': -1.46}
    """

    node: str
    site_type: str
    family: str
    parents: tuple[str, ...]
    scores: dict[str, float]
    reason: str


@dataclasses.dataclass(frozen=True, eq=False)
class GraphSCM:
    """A NumPyro program built by :func:`scm_from_graph`; call it as ``model(n)``.

    Attributes
    ----------
    order
        The nodes in topological order (the order the program samples them).
    choices
        ``{node: MechanismChoice}``.
    params
        Initial parameters by ``numpyro.param`` name (the maximum-likelihood fits).
    stats
        Per-column standardisation constants (means, sds, levels, zero indicators).

    Examples
    --------
    >>> import numpy as np, pandas as pd, networkx as nx
    >>> from numpyro.handlers import seed
    >>> from scm_ppl.learn import scm_from_graph
    >>> rng = np.random.default_rng(0)
    >>> x = rng.normal(size=200)
    >>> df = pd.DataFrame({"x": x, "y": 1.0 + 2.0 * x + rng.normal(size=200)})
    >>> model = scm_from_graph(nx.DiGraph([("x", "y")]), df)
    >>> model.order, sorted(model.params)
    (('x', 'y'), ['x.bias', 'x.scale', 'x.weight', 'y.bias', 'y.scale', 'y.weight'])
    >>> draws = seed(model, rng_seed=0)(5)  # a NumPyro program: five units
    >>> draws["y"].shape
    (5,)
    """

    graph: nx.DiGraph
    order: tuple[str, ...]
    choices: dict[str, MechanismChoice]
    params: dict[str, np.ndarray]
    stats: dict[str, dict[str, Any]]
    plate: str = "unit"
    empirical: tuple[RootTable, ...] = ()

    def __call__(self, n: int = 1) -> dict[str, Any]:
        values: dict[str, Any] = {}
        tables = {t.name: t for t in self.empirical}
        group, known = jnp.zeros(n, jnp.int32), jnp.ones(n, bool)
        with numpyro.plate(self.plate, n):
            for node in self.order:
                choice = self.choices[node]
                if node in tables:  # one row of the data, drawn root by root
                    law = EmpiricalRoot(tables[node], group, known)
                    values[node] = numpyro.sample(node, law)
                    group, known = tables[node].next_group(values[node], group, known)
                    continue
                square = choice.family in SQUARED
                feats = features(self.stats, choice.parents, values, jnp, square)
                values[node] = numpyro.sample(node, self._law(node, choice.family, feats, n))
        return values

    @property
    def levels(self) -> dict[str, tuple]:
        """``{node: levels}`` of the discrete nodes, as in training (code ``k`` is
        ``levels[k]``): queries read a table's labels through them, and refuse a level the
        mechanisms were not fitted on (:func:`~scm_ppl.core.frames.site_levels`)."""
        return {n: s["levels"] for n, s in self.stats.items() if s["type"] != "continuous"}

    def _names(self, node: str) -> list[str]:
        return [k.split(".", 1)[1] for k in self.params if k.split(".", 1)[0] == node]

    def _param(self, node: str, name: str, **kw: Any) -> Any:
        return numpyro.param(f"{node}.{name}", jnp.asarray(self.params[f"{node}.{name}"]), **kw)

    def _law(self, node: str, family: str, feats: Any, n: int) -> dist.Distribution:
        s = self.stats[node]

        def linear(prefix: str = "") -> Any:
            w, b = self._param(node, prefix + "weight"), self._param(node, prefix + "bias")
            return jnp.broadcast_to(feats @ w + b, (n, *jnp.shape(b)))

        if family == "logistic":
            return dist.BernoulliLogits(linear())
        if family == "softmax":
            return dist.CategoricalLogits(linear())
        if family in LOGIT_FAMILIES:
            p = {k: self._param(node, k) for k in self._names(node)}
            logits = jnp.broadcast_to(logits_of(p, feats), (n, *jnp.shape(p["bias"])))
            law = dist.BernoulliLogits if family == "mlp-logistic" else dist.CategoricalLogits
            return law(logits)
        if family in MLP_FAMILIES:
            p = {
                k: self._param(
                    node, k, **({"constraint": constraints.positive} if k == "scale" else {})
                )
                for k in self._names(node)
            }
            loc, scale = mlp_loc_scale(p, feats, family)
            return dist.Normal(s["mean"] + s["sd"] * jnp.broadcast_to(loc, (n,)), s["sd"] * scale)
        scale = self._param(node, "scale", constraint=constraints.positive) * s["sd"]
        loc = s["mean"] + s["sd"] * linear()
        if family == "linear":
            return dist.Normal(loc, scale)
        if family == "spline":
            return SplineNoise(loc, scale, *(self._param(node, k) for k in SPLINE_PARAMS))
        if family == "log-linear":
            return dist.LogNormal(loc, scale)
        return Hurdle(linear("zero_"), loc, scale)  # hurdle, hurdle-sq (squares in feats)

    def summary(self) -> str:
        """One line per node: type, family, parents and held-out scores.

        Examples
        --------
        >>> import pandas as pd, networkx as nx
        >>> from scm_ppl.learn import scm_from_graph
        >>> df = pd.DataFrame({"x": [0.1, 1.2, 2.3, 0.4, 1.5, 2.6], "t": [0, 1, 1, 0, 1, 0]})
        >>> print(scm_from_graph(nx.DiGraph([("x", "t")]), df).summary().splitlines()[1])
        x: continuous log-linear <- -; log-linear -0.483 | linear -1.63 | spline -2.02
        """
        lines = ["node: type family <- parents; held-out log-likelihood per row (best first)"]
        for node in self.order:
            c = self.choices[node]
            ranked = sorted(c.scores.items(), key=lambda kv: -kv[1])
            scores = " | ".join(f"{f} {v:.3g}" for f, v in ranked) or c.reason
            parents = ", ".join(c.parents) or "-"
            lines.append(f"{node}: {c.site_type} {c.family} <- {parents}; {scores}")
        return "\n".join(lines)

    def source(self) -> str:
        """The program as NumPyro source to read or edit (features standardised as in
        :attr:`stats`; parameters named as in :attr:`params`)."""
        out = ["def model(n=1):", f"    with numpyro.plate({self.plate!r}, n):"]
        for node in self.order:
            c = self.choices[node]
            kind = "features_and_squares" if c.family in SQUARED else "features"
            f = f"{kind}({', '.join(c.parents)}) @ " if c.parents else ""
            lin = f"{f}param('{node}.weight') + param('{node}.bias')"
            zero = f"{f}param('{node}.zero_weight') + param('{node}.zero_bias')"
            hidden = f"(h := tanh({f}param('{node}.hidden_weight') + param('{node}.hidden_bias')))"
            hidden += f" @ param('{node}.out_weight')"
            if c.family == "empirical":  # the training rows that match the earlier roots
                names = [t.name for t in self.empirical]
                given = ", ".join(names[: names.index(node)]) or "-"
                out.append(
                    f"        {node} = numpyro.sample({node!r}, EmpiricalRoot(rows | {given}))"
                )
                continue
            if not f:  # a root: no features, only the bias
                lin, zero = f"param('{node}.bias')", f"param('{node}.zero_bias')"
            law = {
                "logistic": f"dist.BernoulliLogits({lin})",
                "softmax": f"dist.CategoricalLogits({lin})",
                "mlp-logistic": f"dist.BernoulliLogits({lin} + {hidden})",
                "mlp-softmax": f"dist.CategoricalLogits({lin} + {hidden})",
                "linear": f"dist.Normal(mean + sd * ({lin}), sd * param('{node}.scale'))",
                "spline": f"SplineNoise(mean + sd * ({lin}), sd * param('{node}.scale'), "
                + ", ".join(f"param('{node}.{k}')" for k in SPLINE_PARAMS)
                + ")",
                "log-linear": f"dist.LogNormal(mean + sd * ({lin}), sd * param('{node}.scale'))",
                "hurdle": f"Hurdle({zero}, mean + sd * ({lin}), sd * param('{node}.scale'))",
                "hurdle-sq": f"Hurdle({zero}, mean + sd * ({lin}), sd * param('{node}.scale'))",
                "mlp": f"dist.Normal(mean + sd * ({lin} + {hidden}), sd * param('{node}.scale'))",
                "mlp-loc-scale": f"dist.Normal(mean + sd * ({lin} + {hidden}), sd * exp("
                f"param('{node}.scale_bias') + h @ param('{node}.scale_out')))",
            }[c.family]
            out.append(f"        {node} = numpyro.sample({node!r}, {law})")
        return "\n".join(out)


def features(
    stats: Mapping, parents: tuple[str, ...], values: Mapping, xp: Any, square: bool = False
) -> Any:
    """A node's features from its parents' ``values`` (``xp``: ``numpy`` when fitting,
    ``jax.numpy`` in the program): each continuous parent standardised by its training
    ``stats``, with a zero indicator where it has many zeros and its square after every
    parent's own columns with ``square``; one indicator per level but the first for a
    categorical parent.

    Examples
    --------
    >>> import numpy as np
    >>> stats = {"x": {"type": "continuous", "levels": None, "feature_mean": 1.0,
    ...                "feature_sd": 2.0, "zero_feature": False}}
    >>> features(stats, ("x",), {"x": np.array([1.0, 5.0])}, np, square=True)
    array([[0., 0.],
           [2., 4.]], dtype=float32)
    """
    cols, squares = [], []
    for p in parents:
        s, v = stats[p], values[p]
        if s["levels"] is not None and s["type"] == "categorical":
            cols += [(v == k).astype(xp.float32) for k in range(1, len(s["levels"]))]
            continue
        cols.append((v - s["feature_mean"]) / s["feature_sd"])
        if square and s["type"] == "continuous":
            squares.append(cols[-1] ** 2)
        if s["zero_feature"]:
            cols.append((v == 0).astype(xp.float32))
    cols += squares  # after every parent's own columns: inhibit finds those by position
    if not cols:
        return xp.zeros((1, 0), xp.float32)
    return xp.stack(cols, axis=-1).astype(xp.float32)
