"""A five-node nonlinear SCM with known mechanisms, additive and non-additive noise.

Built for learning mechanisms from data (``scm_ppl.fit``) and grading the learned SCM
against the truth: every mechanism is strictly monotone in its own noise, so a fully
observed unit's noise is determined and its counterfactuals are exact. All values are on
the unit scale. With ``u1 .. u5`` independent ``Normal(0, 1)``::

    x1 = u1                                            root
    x2 = tanh(1.5 x1) + 0.3 u2                         additive noise
    x3 = sin(x1) + (0.2 + 0.3 |x2|) u3                 heteroscedastic (location-scale)
    x4 = 0.8 x2 - 0.5 x3^2 + 0.3 u4                    additive noise
    x5 = 0.6 x4 + 0.4 exp(0.3 x3) (exp(0.5 u5) - e^{1/8})
                                                       skewed, multiplicative noise

``x5``'s noise is log-normal (shifted to mean zero) and scaled by its parent ``x3``: no
location-scale family fits it, a normalizing flow does. The graph is
``x1 -> x2, x1 -> x3, x2 -> x3, x2 -> x4, x3 -> x4, x3 -> x5, x4 -> x5``.

Programs
--------
* :func:`model`: the truth as a NumPyro program (``x5`` a ``TransformedDistribution``
  of its standard-normal noise, so its noise view inverts exactly);
* :func:`learnable_model`: the same graph with scm_ppl mechanisms to learn from data
  (a learned Normal root, :func:`~scm_ppl.learn.mechanisms.additive_noise` for ``x2`` and
  ``x4``, :func:`~scm_ppl.learn.mechanisms.location_scale` for ``x3``, a spline
  :func:`~scm_ppl.learn.mechanisms.flow` for ``x5``).

Known truths (NumPy)
--------------------
* :func:`sample`: draws of the observational (or intervened) distribution;
* :func:`interventional_mean`: ``E[x | do(...)]`` by Monte Carlo on the true
  mechanisms, with its standard error;
* :func:`counterfactual_truth`: exact counterfactuals of fully observed units, by
  inverting each mechanism unit by unit (abduction), setting the intervened values
  (action) and re-running the mechanisms with the unit's own noise (prediction).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any, NamedTuple

import jax.numpy as jnp
import numpy as np
import numpy.typing as npt
import numpyro
import numpyro.distributions as dist
from numpyro.distributions import constraints, transforms

from scm_ppl.learn.mechanisms import additive_noise, flow, location_scale

NODES: tuple[str, ...] = ("x1", "x2", "x3", "x4", "x5")
"""Site names in topological order."""

EDGES: frozenset[tuple[str, str]] = frozenset(
    {
        ("x1", "x2"),
        ("x1", "x3"),
        ("x2", "x3"),
        ("x2", "x4"),
        ("x3", "x4"),
        ("x3", "x5"),
        ("x4", "x5"),
    }
)
"""Directed parent -> child edges among the sites."""

PARENTS: dict[str, tuple[str, ...]] = {
    "x1": (),
    "x2": ("x1",),
    "x3": ("x1", "x2"),
    "x4": ("x2", "x3"),
    "x5": ("x3", "x4"),
}
"""Parents of each site, in the order the mechanisms take them."""

NOISE_SCALE_X2 = 0.3
"""Standard deviation of the additive noise of ``x2``."""
NOISE_SCALE_X4 = 0.3
"""Standard deviation of the additive noise of ``x4``."""
_SHIFT = float(np.exp(0.125))  # E[exp(0.5 u)] for u ~ Normal(0, 1)

Values = Mapping[str, npt.ArrayLike]
"""``{site: values}``: one array (or scalar) per site."""


class MonteCarloMean(NamedTuple):
    """A Monte-Carlo mean and its standard error (``sd / sqrt(n_mc)``)."""

    mean: float
    se: float


# ------------------------------------------------------------------- the mechanisms
# Each takes the parents and the module (numpy or jax.numpy) to compute with, so the
# NumPyro program and the NumPy truths share one definition.


def _loc2(x1: Any, xp: Any = np) -> Any:
    return xp.tanh(1.5 * x1)


def _loc3(x1: Any, xp: Any = np) -> Any:
    return xp.sin(x1)


def _scale3(x2: Any, xp: Any = np) -> Any:
    return 0.2 + 0.3 * xp.abs(x2)


def _loc4(x2: Any, x3: Any) -> Any:
    return 0.8 * x2 - 0.5 * x3**2


def _scale5(x3: Any, xp: Any = np) -> Any:
    return 0.4 * xp.exp(0.3 * x3)


def _x5(x3: Any, x4: Any, u5: Any, xp: Any = np) -> Any:
    return 0.6 * x4 + _scale5(x3, xp) * (xp.exp(0.5 * u5) - _SHIFT)


def _u5(x3: Any, x4: Any, x5: Any) -> Any:
    return 2.0 * np.log((x5 - 0.6 * x4) / _scale5(x3) + _SHIFT)


# -------------------------------------------------------------------------- programs


def model(n: int = 1) -> None:
    """Sample ``n`` units from the true SCM; sites ``"x1".."x5"`` of shape ``(n,)``.

    Examples
    --------
    >>> from numpyro import handlers
    >>> tr = handlers.trace(handlers.seed(model, 0)).get_trace(n=4)
    >>> [tr[name]["value"].shape for name in NODES]
    [(4,), (4,), (4,), (4,), (4,)]
    """
    with numpyro.plate("unit", n):
        x1 = numpyro.sample("x1", dist.Normal(0.0, 1.0))
        x2 = numpyro.sample("x2", dist.Normal(_loc2(x1, jnp), NOISE_SCALE_X2))
        x3 = numpyro.sample("x3", dist.Normal(_loc3(x1, jnp), _scale3(x2, jnp)))
        x4 = numpyro.sample("x4", dist.Normal(_loc4(x2, x3), NOISE_SCALE_X4))
        scale5 = _scale5(x3, jnp)
        numpyro.sample(
            "x5",
            dist.TransformedDistribution(
                dist.Normal(jnp.zeros_like(x4), 1.0),
                [
                    transforms.AffineTransform(0.0, 0.5),
                    transforms.ExpTransform(),
                    transforms.AffineTransform(0.6 * x4 - scale5 * _SHIFT, scale5),
                ],
            ),
        )


def learnable_model(
    n: int = 1,
    hidden: Sequence[int] = (32, 32),
    flow_layers: int = 2,
    nn_width: int = 32,
    knots: int = 8,
) -> None:
    """The graph of :func:`model` with mechanisms to learn (``scm_ppl.fit``).

    ``x1 ~ Normal(loc, scale)`` with learned ``"x1.loc"`` and ``"x1.scale"``;
    ``x2`` and ``x4`` are :func:`~scm_ppl.learn.mechanisms.additive_noise` MLPs, ``x3`` a
    :func:`~scm_ppl.learn.mechanisms.location_scale` MLP and ``x5`` a conditional spline
    :func:`~scm_ppl.learn.mechanisms.flow`. Every one inverts in its noise, so counterfactuals
    of fully observed units are exact.

    Parameters
    ----------
    n
        Number of units (size of the ``"unit"`` plate).
    hidden
        Hidden layer widths of the MLPs.
    flow_layers, nn_width, knots
        Depth of the flow of ``x5``, width of its conditioners, spline knots.

    Examples
    --------
    >>> from numpyro import handlers
    >>> tr = handlers.trace(handlers.seed(learnable_model, 0)).get_trace(n=3)
    >>> sorted(k for k, s in tr.items() if s["type"] == "param")  # doctest: +NORMALIZE_WHITESPACE
    ['x1.loc', 'x1.scale', 'x2.net$params', 'x2.scale', 'x3.net$params',
     'x4.net$params', 'x4.scale', 'x5.flow$params']
    """
    loc = numpyro.param("x1.loc", 0.0)
    scale = numpyro.param("x1.scale", 1.0, constraint=constraints.positive)
    with numpyro.plate("unit", n):
        x1 = numpyro.sample("x1", dist.Normal(loc, scale))
        x2 = additive_noise("x2", [x1], hidden=hidden)
        x3 = location_scale("x3", [x1, x2], hidden=hidden)
        x4 = additive_noise("x4", [x2, x3], hidden=hidden)
        flow("x5", [x3, x4], kind="spline", flow_layers=flow_layers, nn_width=nn_width, knots=knots)


# ------------------------------------------------------------------------ the truths


def _check_sites(values: Mapping[str, Any], what: str) -> None:
    unknown = sorted(set(values) - set(NODES))
    if unknown:
        raise KeyError(f"Unknown {what} site(s) {unknown}; the SCM has sites {list(NODES)}.")


def _run(
    noise: Mapping[str, np.ndarray], interventions: Values, size: int
) -> dict[str, np.ndarray]:
    """The mechanisms on given standard-normal noise, under hard interventions."""
    fixed = {
        k: np.broadcast_to(np.asarray(v, np.float64), (size,)) for k, v in interventions.items()
    }
    mechanisms: dict[str, Callable[[dict[str, np.ndarray]], np.ndarray]] = {
        "x1": lambda x: noise["x1"],
        "x2": lambda x: _loc2(x["x1"]) + NOISE_SCALE_X2 * noise["x2"],
        "x3": lambda x: _loc3(x["x1"]) + _scale3(x["x2"]) * noise["x3"],
        "x4": lambda x: _loc4(x["x2"], x["x3"]) + NOISE_SCALE_X4 * noise["x4"],
        "x5": lambda x: _x5(x["x3"], x["x4"], noise["x5"]),
    }
    x: dict[str, np.ndarray] = {}
    for name in NODES:
        x[name] = fixed[name].copy() if name in fixed else mechanisms[name](x)
    return x


def sample(n: int, seed: int = 0, interventions: Values | None = None) -> dict[str, np.ndarray]:
    """Draw ``n`` units from the true SCM (NumPy), optionally under hard interventions.

    Parameters
    ----------
    n
        Number of units.
    seed
        Seed of :func:`numpy.random.default_rng`.
    interventions
        ``{site: value}``, a scalar or one value per unit.

    Returns
    -------
    dict
        ``{site: (n,) float64 array}`` for every site in ``NODES``.

    Examples
    --------
    >>> data = sample(1000, seed=0)
    >>> sorted(data), data["x5"].shape
    (['x1', 'x2', 'x3', 'x4', 'x5'], (1000,))
    >>> float(sample(3, interventions={"x2": 0.5})["x2"][0])
    0.5
    """
    interventions = dict(interventions or {})
    _check_sites(interventions, "intervened")
    rng = np.random.default_rng(seed)
    u = rng.standard_normal((len(NODES), n))
    return _run(dict(zip(NODES, u, strict=True)), interventions, n)


def interventional_mean(
    site: str, interventions: Values, n_mc: int = 1_000_000, seed: int = 0
) -> MonteCarloMean:
    """``E[site | do(interventions)]`` by Monte Carlo on the true mechanisms.

    Returns
    -------
    MonteCarloMean
        The mean over ``n_mc`` draws and its standard error.

    Examples
    --------
    >>> m = interventional_mean("x2", {"x1": 1.0}, n_mc=10_000)
    >>> bool(abs(m.mean - np.tanh(1.5)) < 5 * m.se)
    True
    """
    _check_sites({site: None}, "query")
    draws = sample(n_mc, seed, interventions)[site]
    return MonteCarloMean(float(draws.mean()), float(draws.std() / np.sqrt(n_mc)))


def abduct(observed: Values) -> dict[str, np.ndarray]:
    """The standard-normal noise of fully observed units: each mechanism inverted.

    Examples
    --------
    >>> data = sample(5, seed=1)
    >>> noise = abduct(data)
    >>> bool(np.allclose(sample(5, seed=1)["x5"], _run(noise, {}, 5)["x5"]))
    True
    """
    missing = sorted(set(NODES) - set(observed))
    if missing:
        raise KeyError(f"Abduction needs every site observed; missing {missing}.")
    _check_sites(observed, "observed")
    x = {k: np.asarray(observed[k], np.float64) for k in NODES}
    return {
        "x1": x["x1"],
        "x2": (x["x2"] - _loc2(x["x1"])) / NOISE_SCALE_X2,
        "x3": (x["x3"] - _loc3(x["x1"])) / _scale3(x["x2"]),
        "x4": (x["x4"] - _loc4(x["x2"], x["x3"])) / NOISE_SCALE_X4,
        "x5": _u5(x["x3"], x["x4"], x["x5"]),
    }


def counterfactual_truth(observed: Values, interventions: Values) -> dict[str, np.ndarray]:
    """Exact counterfactuals of fully observed units under hard interventions.

    Abduction inverts each true mechanism unit by unit (:func:`abduct`), action sets the
    intervened sites, prediction re-runs the mechanisms on each unit's own noise.

    Parameters
    ----------
    observed
        ``{site: (n,) values}`` for every site in ``NODES``.
    interventions
        ``{site: value}``, a scalar or one value per unit.

    Returns
    -------
    dict
        ``{site: (n,) counterfactual values}``.

    Examples
    --------
    >>> data = sample(4, seed=2)
    >>> cf = counterfactual_truth(data, {})  # no intervention: the factual world
    >>> all(np.allclose(cf[k], data[k]) for k in NODES)
    True
    >>> cf = counterfactual_truth(data, {"x4": 0.0})
    >>> bool(np.allclose(cf["x3"], data["x3"])), float(cf["x4"][0])
    (True, 0.0)
    """
    _check_sites(interventions, "intervened")
    noise = abduct(observed)
    return _run(noise, interventions, np.asarray(observed["x1"]).shape[0])
