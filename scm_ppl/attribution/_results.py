"""The result of an attribution: estimates per node with their uncertainty."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

__all__ = ["Attribution", "summarise"]


@dataclass(frozen=True, eq=False, kw_only=True)
class Attribution:
    """Contributions of nodes to a target, with their uncertainty.

    Attributes
    ----------
    kind
        ``"arrow_strength"``, ``"intrinsic_influence"``, ``"anomaly"`` or
        ``"distribution_change"``.
    target
        The site the contributions explain.
    nodes
        The contributing nodes (parents for arrow strength, else the nodes whose noise or
        mechanism is a Shapley player), in topological order.
    estimate
        ``(node,)``, or ``(unit, node)`` for anomaly attribution.
    std_error
        Standard error of ``estimate``: Monte-Carlo error (over independent replicates and,
        for sampled Shapley values, permutations), or the posterior standard deviation over
        draws of the mechanisms for a Bayesian fit (``uncertainty == "posterior"``).
    lower, upper
        A 95% interval: ``estimate ± 1.96 std_error`` (Monte-Carlo), or the 2.5% and 97.5%
        quantiles of the per-draw values (posterior).
    draws
        Per-replicate values ``(replicate, ...)``: one draw of all mechanisms each for a
        Bayesian fit, an independent Monte-Carlo replicate otherwise.
    uncertainty
        ``"monte-carlo"`` or ``"posterior"``.
    measure
        What is attributed (``"variance"``, ``"kl"``, ``"it-score"``, ``"mean"``, ...).
    total
        The quantity the Shapley values share (their sum); ``NaN`` for arrow strengths.
    attrs
        Settings and diagnostics (samples used, exact or sampled Shapley values, ...).

    Examples
    --------
    Every function of :mod:`scm_ppl.attribution` returns one; index it by node:

    >>> import numpyro, numpyro.distributions as dist
    >>> from scm_ppl.attribution import arrow_strength
    >>> def model(n):
    ...     with numpyro.plate("unit", n):
    ...         x = numpyro.sample("x", dist.Normal(0.0, 1.0))
    ...         numpyro.sample("y", dist.Normal(2.0 * x, 1.0))
    >>> r = arrow_strength(model, "y")
    >>> r.kind, r.target, r.nodes, r.measure, r.uncertainty
    ('arrow_strength', 'y', ('x',), 'variance', 'monte-carlo')
    >>> round(r["x"]), r.top()  # removing x -> y takes a² Var(X) = 4 of y's variance
    (4, 'x')
    >>> bool(r.lower[0] < r.estimate[0] < r.upper[0])
    True
    """

    kind: str
    target: str
    nodes: tuple[str, ...]
    estimate: np.ndarray
    std_error: np.ndarray
    lower: np.ndarray
    upper: np.ndarray
    draws: np.ndarray
    uncertainty: str
    measure: str
    total: float = float("nan")
    attrs: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, float]:
        """``{node: estimate}`` (averaged over units for anomaly attribution)."""
        est = self.estimate if self.estimate.ndim == 1 else self.estimate.mean(axis=0)
        return {n: float(v) for n, v in zip(self.nodes, est, strict=True)}

    def __getitem__(self, node: str) -> float:
        return self.to_dict()[node]

    def top(self) -> str | list[str]:
        """The node with the largest contribution (per unit for anomaly attribution)."""
        idx = np.argmax(self.estimate, axis=-1)
        if self.estimate.ndim == 1:
            return self.nodes[int(idx)]
        return [self.nodes[int(i)] for i in idx]

    def __repr__(self) -> str:
        parts = ", ".join(
            f"{n}={v:.4g}±{s:.2g}"
            for n, v, s in zip(
                self.nodes,
                self.estimate if self.estimate.ndim == 1 else self.estimate.mean(0),
                self.std_error if self.std_error.ndim == 1 else self.std_error.mean(0),
                strict=True,
            )
        )
        return f"Attribution({self.kind}, target={self.target!r}, {self.measure}: {parts})"


def summarise(
    per_replicate: Any,
    extra_se: Any,
    *,
    bayesian: bool,
    kind: str,
    target: str,
    nodes: tuple[str, ...],
    measure: str,
    total: float = float("nan"),
    attrs: dict[str, Any] | None = None,
) -> Attribution:
    """Build an :class:`Attribution` from per-replicate values ``(R, ...)`` and the
    per-replicate sampling error of sampled Shapley values (``(R, ...)``, zeros if exact)."""
    draws = np.asarray(per_replicate, float)
    r = draws.shape[0]
    est = draws.mean(axis=0)
    extra = np.asarray(extra_se, float)
    if bayesian:
        se = draws.std(axis=0, ddof=1) if r > 1 else np.zeros_like(est)
        lower, upper = np.quantile(draws, 0.025, axis=0), np.quantile(draws, 0.975, axis=0)
    else:
        spread = draws.std(axis=0, ddof=1) / np.sqrt(r) if r > 1 else np.zeros_like(est)
        # Between-replicate spread already holds the permutation error; with one replicate
        # only the permutation error is known.
        se = spread if r > 1 else np.sqrt(np.mean(extra**2, axis=0))
        lower, upper = est - 1.96 * se, est + 1.96 * se
    return Attribution(
        kind=kind,
        target=target,
        nodes=tuple(nodes),
        estimate=est,
        std_error=se,
        lower=lower,
        upper=upper,
        draws=draws,
        uncertainty="posterior" if bayesian else "monte-carlo",
        measure=measure,
        total=float(total),
        attrs=dict(attrs or {}),
    )
