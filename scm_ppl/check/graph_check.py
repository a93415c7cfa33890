"""Does the data contradict the graph? Every independence the graph implies, tested.

The implied independences are those of the ordered local Markov property (Richardson,
"Markov properties for acyclic directed mixed graphs", 2003): in a topological order,
each node ``v`` is independent of its other predecessors given its Markov blanket among
them, ``mb(v) = (D ∪ pa(D)) \\ {v}`` with ``D`` the district of ``v`` in the graph on
``v`` and its predecessors. For a DAG that is ``v ⟂ u | pa(v)`` (local Markov); where
latent sites are projected out (an ADMG) the bidirected edges enlarge the blanket, so
the tested set holds exactly under m-separation. Together these independences imply all
the graph's others, so a data set that passes them all is Markov to the graph.

Each implied ``u ⟂ v | mb`` is one test (see :mod:`scm_ppl.check._ci`); the family is
controlled with Holm's step-down correction: the graph is ``rejected`` when any Holm
adjusted p-value is below ``alpha`` (family-wise error at most ``alpha``, under any
dependence between the tests).

A graph can pass because the tests lack power. The permutation baseline (Eulig, Mastakouri,
Blöbaum, Hardt & Janzing, "Toward falsifying causal graphs using a permutation-based
test", 2023) asks instead whether the graph explains the data better than random graphs
of the same shape: the nodes are relabelled at random ``num_permutations`` times, each
relabelled graph's implied independences tested (at level ``alpha``, uncorrected) and the
share it violates compared; ``permutation_p`` is the rank of the given graph,
``(1 + #{π: violations(π) <= violations}) / (1 + num_permutations)``.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import networkx as nx
import numpy as np

from scm_ppl.check._ci import g_test, gcm, holm, partial_correlation
from scm_ppl.core.noise_simulation import as_scm, check_data
from scm_ppl.core.validate import check_method, positive_int, positive_number
from scm_ppl.errors import CriticismError, DataError, SettingsError
from scm_ppl.graphical import ADMG, admg

__all__ = ["GraphCheck", "ImpliedTest", "graph", "implied_independences"]

_TESTS = ("auto", "partial_correlation", "gcm", "g_test")


@dataclass(frozen=True)
class ImpliedTest:
    """One implied independence ``x ⟂ y | given`` and its test.

    Attributes
    ----------
    x, y, given
        The independence ``x ⟂ y | given``.
    statistic, p_value
        The CI test's statistic and p-value.
    p_adjusted
        The Holm-adjusted p-value over the graph's implied independences.
    rejected
        Whether ``p_adjusted`` is below ``alpha``.

    Examples
    --------
    The rows of a :func:`graph` check (:attr:`GraphCheck.rows`):

    >>> import networkx as nx, numpy as np
    >>> rng = np.random.default_rng(0)
    >>> x = rng.normal(size=500); z = x + rng.normal(size=500); y = z + rng.normal(size=500)
    >>> check = graph(nx.DiGraph([("x", "z"), ("z", "y")]), {"x": x, "z": z, "y": y})
    >>> row = check.rows[0]
    >>> row.x, row.y, row.given, row.rejected
    ('x', 'y', ('z',), False)
    """

    x: str
    y: str
    given: tuple[str, ...]
    statistic: float
    p_value: float
    p_adjusted: float
    rejected: bool


@dataclass(frozen=True, eq=False, kw_only=True)
class GraphCheck:
    """The verdict of :func:`graph`.

    Attributes
    ----------
    graph
        The tested graph (an ADMG; latent sites projected out).
    rows
        One :class:`ImpliedTest` per implied independence; :attr:`tests` as a table.
    rejected
        Whether any Holm-adjusted p-value is below ``alpha``.
    alpha, test, correction
        The level, the CI test used and the multiple-testing correction (``"holm"``).
    violations
        Share of implied independences rejected at ``alpha`` (uncorrected).
    permutation_p
        Rank of the graph among node-permuted graphs (small: better than random graphs);
        ``NaN`` without permutations or implied independences.
    permutation_violations
        The violation share of each permuted graph.

    Examples
    --------
    >>> import networkx as nx, numpy as np
    >>> rng = np.random.default_rng(0)
    >>> x = rng.normal(size=500); z = x + rng.normal(size=500); y = z + rng.normal(size=500)
    >>> check = graph(nx.DiGraph([("x", "z"), ("z", "y")]), {"x": x, "z": z, "y": y})
    >>> check.rejected, check.test, len(check.rows)
    (False, 'partial_correlation', 1)
    >>> check.tests[["x", "y", "given", "rejected"]]
       x  y given  rejected
    0  x  y  (z,)     False
    """

    graph: ADMG
    rows: tuple[ImpliedTest, ...]
    rejected: bool
    alpha: float
    test: str
    correction: str
    violations: float
    permutation_p: float
    permutation_violations: np.ndarray = field(default_factory=lambda: np.zeros(0))

    @property
    def tests(self) -> Any:
        """The implied independences and their tests as a ``pandas.DataFrame``."""
        import pandas as pd

        return pd.DataFrame([r.__dict__ for r in self.rows])

    def __repr__(self) -> str:
        verdict = "rejected" if self.rejected else "not rejected"
        return (
            f"GraphCheck({verdict} at alpha={self.alpha} ({self.correction}), "
            f"{len(self.rows)} implied independences ({self.test}), "
            f"violations={self.violations:.2f}, permutation_p={self.permutation_p:.3g})"
        )


def implied_independences(g: ADMG) -> list[tuple[str, str, tuple[str, ...]]]:
    """``(u, v, blanket)`` for every independence of the ordered local Markov property.

    These are the independences :func:`graph` tests (``u ⟂ v | blanket``).

    Examples
    --------
    >>> import networkx as nx
    >>> from scm_ppl.graphical import admg
    >>> implied_independences(admg(nx.DiGraph([("x", "z"), ("z", "y")])))
    [('x', 'y', ('z',))]

    A latent confounder of ``z`` and ``y`` (a bidirected edge) leaves none:

    >>> implied_independences(admg(nx.DiGraph([("x", "z"), ("z", "y"), ("u", "z"), ("u", "y")]),
    ...                            latent=["u"]))
    []
    """
    order = list(g.topological_order())
    out = []
    for k, v in enumerate(order):
        before = order[:k]
        sub = g.subgraph([*before, v])
        district = sub.district_of(v)
        blanket = set(district)
        for d in district:
            blanket |= sub.parents(d)
        blanket.discard(v)
        given = tuple(n for n in before if n in blanket)
        out.extend((u, v, given) for u in before if u not in blanket)
    return out


def _relabel(g: ADMG, mapping: Mapping[str, str]) -> ADMG:
    directed = nx.relabel_nodes(g.directed, dict(mapping))
    bidirected = [tuple(mapping[n] for n in pair) for pair in g.bidirected_edges()]
    return ADMG(directed, bidirected)


def _resolve(source: Any, data: Mapping[str, Any], latent: Iterable[str], opts: dict) -> ADMG:
    latent = set([latent] if isinstance(latent, str) else latent)
    if isinstance(source, ADMG):
        g = source if not latent else admg(source, latent=sorted(latent))
    elif isinstance(source, nx.DiGraph):
        g = admg(source, latent=sorted(latent))
    else:
        scm = as_scm(source, **opts)
        fitted_latent = set(getattr(source, "settings", {}).get("latent", []) or [])
        hidden = latent | fitted_latent
        g = admg(scm.graph, latent=sorted(hidden & set(scm.nodes)))
    missing = [n for n in g.nodes if n not in data]
    if missing:
        raise DataError(
            f"data lacks the column(s) {missing} of the graph's observed nodes; give them, "
            "or name unobserved nodes in latent= (they are projected out)."
        )
    return g


def _discrete(column: np.ndarray) -> bool:
    return column.dtype.kind in "biu"


def _run_tests(
    kind: str, x: np.ndarray, index: dict[str, int], tests: list, discrete: dict, names: list
) -> tuple[np.ndarray, np.ndarray]:
    if not tests:
        return np.zeros(0), np.zeros(0)
    if kind in ("partial_correlation", "gcm") and kind == "partial_correlation":
        bad = [n for n in names if discrete[n]]
        if bad:
            raise CriticismError(
                f"test='partial_correlation' is a test for continuous variables, but "
                f"{bad} {'is' if len(bad) == 1 else 'are'} discrete (integer values). Use "
                "test='g_test' (all discrete), 'gcm' (mixed) or test='auto'."
            )
    if kind == "g_test":
        bad = [n for n in names if not discrete[n]]
        if bad:
            raise CriticismError(
                f"test='g_test' is a test for discrete variables, but {bad} "
                f"{'is' if len(bad) == 1 else 'are'} continuous. Use test='partial_correlation',"
                " 'gcm' or 'auto'."
            )
    encoded = [(index[u], index[v], tuple(index[c] for c in given)) for u, v, given in tests]
    if kind == "partial_correlation":
        return partial_correlation(x, encoded)
    if kind == "gcm":
        return gcm(x, encoded)
    return g_test(x, encoded)


def graph(
    source: Any,
    data: Mapping[str, Any],
    *,
    test: str = "auto",
    alpha: float = 0.05,
    num_permutations: int = 100,
    latent: Iterable[str] = (),
    seed: int = 0,
    plate: str | None = None,
    size_arg: str | None = None,
    model_kwargs: Mapping[str, Any] | None = None,
) -> GraphCheck:
    """Test every independence a causal graph implies against data.

    Parameters
    ----------
    source
        A ``networkx.DiGraph`` (a DAG; ``graph["bidirected"]`` pairs are latent
        confounders), an :class:`~scm_ppl.ADMG`, or a program / fit (its per-unit graph).
    data
        ``{node: array}``, one row per unit, a 1-D column per observed node.
    test
        ``"partial_correlation"`` (continuous, linear-Gaussian), ``"gcm"`` (continuous or
        mixed, nonlinear: kernel ridge regression), ``"g_test"`` (discrete), or ``"auto"``:
        partial correlation if every column is continuous, the G-test if every column is
        discrete, GCM otherwise.
    alpha
        Family-wise level: the graph is rejected when a Holm-adjusted p-value is below it.
    num_permutations
        Node-permuted graphs of the permutation baseline (0: none).
    latent
        Nodes of a user graph that are not observed (projected out).
    seed
        Seed of the permutations and of GCM's row subsample.
    plate, size_arg, model_kwargs
        For a program: its unit plate, the argument that sizes it, other arguments.

    Returns
    -------
    GraphCheck

    Raises
    ------
    DataError
        A node's column is missing, holds NaN/inf, or columns differ in length.
    CriticismError
        A continuous test asked of a discrete column, or the G-test of a continuous one.

    Examples
    --------
    >>> import networkx as nx, numpy as np
    >>> rng = np.random.default_rng(0)
    >>> x = rng.normal(size=2000); z = x + rng.normal(size=2000); y = z + rng.normal(size=2000)
    >>> data = {"x": x, "z": z, "y": y}
    >>> graph(nx.DiGraph([("x", "z"), ("z", "y")]), data).rejected
    False
    >>> graph(nx.DiGraph([("x", "z"), ("x", "y")]), data).rejected  # y ⟂ z | x is false
    True
    """
    check_method(test, _TESTS, what="test")
    if not 0 < positive_number("alpha", alpha) < 1:
        raise SettingsError(f"alpha must lie in (0, 1); got {alpha!r}.")
    if num_permutations != 0:
        positive_int("num_permutations", num_permutations)
    if not isinstance(data, Mapping):
        raise DataError(f"data must be a mapping {{node: array}}; got {type(data).__name__}.")
    opts = {"plate": plate, "size_arg": size_arg, "model_kwargs": model_kwargs}
    g = _resolve(source, data, latent, opts)
    names = list(g.topological_order())
    table = check_data(data, names)
    for n, col in table.items():
        if col.ndim != 1:
            raise DataError(
                f"data['{n}'] has shape {col.shape}; the graph check needs 1-D columns."
            )
    discrete = {n: _discrete(table[n]) for n in names}
    kind = test
    if test == "auto":
        kinds = set(discrete.values())
        kind = "g_test" if kinds == {True} else "partial_correlation" if kinds == {False} else "gcm"
    x = np.stack([table[n].astype(float) for n in names], axis=1)
    index = {n: i for i, n in enumerate(names)}
    implied = implied_independences(g)
    rng = np.random.default_rng(seed)
    permuted = []
    for _ in range(num_permutations if implied else 0):
        perm = rng.permutation(names)
        permuted.append(implied_independences(_relabel(g, dict(zip(names, perm, strict=True)))))
    # Every distinct test once: permuted graphs share many.
    canon = lambda t: (*sorted(t[:2]), tuple(sorted(t[2])))
    unique = list(dict.fromkeys(canon(t) for t in [*implied, *(t for p in permuted for t in p)]))
    pv, stat = _run_tests(kind, x, index, unique, discrete, names)
    lookup = {t: (p, s) for t, p, s in zip(unique, pv, stat, strict=True)}
    p_own = np.array([lookup[canon(t)][0] for t in implied])
    adjusted = holm(p_own)
    stat_own = [float(lookup[canon(t)][1]) for t in implied]
    rows = tuple(
        ImpliedTest(u, v, given, s, float(p), float(a), bool(a < alpha))
        for (u, v, given), s, p, a in zip(implied, stat_own, p_own, adjusted, strict=True)
    )
    violations = float(np.mean(p_own < alpha)) if implied else 0.0
    perm_viol = np.array([np.mean([lookup[canon(t)][0] < alpha for t in p]) for p in permuted])
    perm_p = (
        float((1 + np.sum(perm_viol <= violations)) / (1 + len(perm_viol)))
        if len(perm_viol)
        else float("nan")
    )
    return GraphCheck(
        graph=g,
        rows=rows,
        rejected=bool(np.any(adjusted < alpha)),
        alpha=alpha,
        test=kind,
        correction="holm",
        violations=violations,
        permutation_p=perm_p,
        permutation_violations=perm_viol,
    )
