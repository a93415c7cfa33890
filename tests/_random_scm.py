"""Random SCMs for property tests: a spec, the NumPyro program it describes, and a NumPy
oracle that simulates and answers counterfactuals of the same SCM independently.

Every node ``v<i>`` has parents among ``v0 .. v<i-1>`` and one of these mechanisms, all
of the form ``x = loc(pa) + scale(pa) * g(u)`` with ``g`` invertible, so the noise of an
observed node is ``u = g^{-1}((x - loc) / scale)``:

* ``"linear"``: Normal noise, ``loc = b + w . pa``, constant scale;
* ``"tanh"``: Logistic noise, ``loc = b + 2 tanh(w . pa)``;
* ``"hetero"``: Normal noise, ``loc = b + w . pa``, ``scale = s exp(0.5 tanh(w . pa))``
  (location-scale, heteroscedastic);
* ``"affine"``: ``TransformedDistribution(Laplace(0, 1), AffineTransform(loc, scale))``;
* ``"exp"``: ``TransformedDistribution(Normal(0, 1), [Exp, Affine(loc, scale)])``, i.e.
  ``g = exp``: a skewed noise whose inverse is nonlinear;
* ``"deterministic"``: ``numpyro.deterministic``, ``x = b + tanh(w . pa)`` (no noise).

Programs are cached on their spec, so Hypothesis' repeats and shrinks reuse the compiled
query of a structure already seen.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as dist
from hypothesis import strategies as st
from numpyro.distributions import transforms

MECHANISMS = ("linear", "tanh", "hetero", "affine", "exp", "deterministic")
NOISY = tuple(m for m in MECHANISMS if m != "deterministic")


@dataclass(frozen=True)
class Node:
    parents: tuple[int, ...]
    weights: tuple[float, ...]
    bias: float
    scale: float
    mechanism: str


@dataclass(frozen=True)
class Spec:
    nodes: tuple[Node, ...]

    @property
    def names(self) -> list[str]:
        return [f"v{i}" for i in range(len(self.nodes))]

    def sample_nodes(self) -> list[str]:
        return [f"v{i}" for i, n in enumerate(self.nodes) if n.mechanism != "deterministic"]

    def descendants(self, i: int) -> set[int]:
        out = {i}
        for j, node in enumerate(self.nodes):
            if any(p in out for p in node.parents):
                out.add(j)
        return out - {i}


@st.composite
def specs(draw: Any, min_nodes: int = 2, max_nodes: int = 6, max_parents: int = 3) -> Spec:
    """A random DAG on ``min_nodes .. max_nodes`` nodes with random invertible mechanisms."""
    size = draw(st.integers(min_nodes, max_nodes))
    weight = st.floats(-1.5, 1.5, allow_nan=False)
    nodes = []
    for i in range(size):
        parents = tuple(
            sorted(draw(st.sets(st.integers(0, i - 1), max_size=min(i, max_parents)))) if i else ()
        )
        kinds = MECHANISMS if parents else NOISY
        nodes.append(
            Node(
                parents=parents,
                weights=tuple(draw(weight) for _ in parents),
                bias=draw(st.floats(-1.0, 1.0)),
                scale=draw(st.floats(0.3, 1.5)),
                mechanism=draw(st.sampled_from(kinds)),
            )
        )
    return Spec(tuple(nodes))


def _linear(node: Node, pa: list[Any], xp: Any) -> Any:
    total = 0.0
    for w, p in zip(node.weights, pa, strict=True):
        total = total + w * p
    return total if pa else xp.zeros(())


def _loc_scale(node: Node, pa: list[Any], xp: Any) -> tuple[Any, Any]:
    lin = _linear(node, pa, xp)
    if node.mechanism == "tanh":
        return node.bias + 2.0 * xp.tanh(lin), node.scale
    if node.mechanism == "hetero":
        return node.bias + lin, node.scale * xp.exp(0.5 * xp.tanh(lin))
    if node.mechanism == "deterministic":
        return node.bias + xp.tanh(lin), 0.0
    return node.bias + lin, node.scale


@functools.lru_cache(maxsize=512)
def program(spec: Spec) -> Callable:
    """The NumPyro program of ``spec``: ``model(n=1)`` with one ``"unit"`` plate."""

    def model(n: int = 1) -> None:
        values: list[Any] = []
        with numpyro.plate("unit", n):
            for i, node in enumerate(spec.nodes):
                pa = [values[p] for p in node.parents]
                loc, scale = _loc_scale(node, pa, jnp)
                loc = jnp.broadcast_to(loc, (n,))
                name = f"v{i}"
                if node.mechanism == "deterministic":
                    values.append(numpyro.deterministic(name, loc))
                    continue
                if node.mechanism in ("linear", "hetero"):
                    fn: Any = dist.Normal(loc, scale)
                elif node.mechanism == "tanh":
                    fn = dist.Logistic(loc, scale)
                elif node.mechanism == "affine":
                    fn = dist.TransformedDistribution(
                        dist.Laplace(jnp.zeros(n), 1.0), transforms.AffineTransform(loc, scale)
                    )
                else:
                    fn = dist.TransformedDistribution(
                        dist.Normal(jnp.zeros(n), 1.0),
                        [transforms.ExpTransform(), transforms.AffineTransform(loc, scale)],
                    )
                values.append(numpyro.sample(name, fn))

    model.__name__ = f"random_scm_{len(spec.nodes)}"
    return model


# --- the NumPy oracle -------------------------------------------------------------------------


def _g(mechanism: str, u: np.ndarray) -> np.ndarray:
    return np.exp(u) if mechanism == "exp" else u


def _g_inverse(mechanism: str, e: np.ndarray) -> np.ndarray:
    return np.log(e) if mechanism == "exp" else e


def draw_noise(spec: Spec, n: int, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """Noise of every sample node for ``n`` units, from each mechanism's noise law."""
    noise = {}
    for i, node in enumerate(spec.nodes):
        if node.mechanism in ("linear", "hetero", "exp"):
            noise[f"v{i}"] = rng.normal(size=n)
        elif node.mechanism == "tanh":
            noise[f"v{i}"] = rng.logistic(size=n)
        elif node.mechanism == "affine":
            noise[f"v{i}"] = rng.laplace(size=n)
    return noise


def forward(
    spec: Spec, noise: Mapping[str, np.ndarray], interventions: Mapping[str, Any] | None = None
) -> dict[str, np.ndarray]:
    """Every node's value (float64) from the noise, under hard interventions
    ``{name: value}`` or shifts ``{name: callable}``."""
    interventions = interventions or {}
    n = len(next(iter(noise.values()))) if noise else 1
    values: list[np.ndarray] = []
    for i, node in enumerate(spec.nodes):
        name = f"v{i}"
        loc, scale = _loc_scale(node, [values[p] for p in node.parents], np)
        natural = loc + scale * (_g(node.mechanism, noise[name]) if name in noise else 0.0)
        natural = np.broadcast_to(np.asarray(natural, np.float64), (n,))
        action = interventions.get(name)
        if action is None:
            values.append(natural)
        elif callable(action):
            values.append(np.asarray(action(natural), np.float64))
        else:
            values.append(np.broadcast_to(np.asarray(action, np.float64), (n,)))
    return dict(zip(spec.names, values, strict=True))


def abduct(spec: Spec, observed: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    """The noise of every sample node, given every sample node's value."""
    values: dict[str, np.ndarray] = {}
    noise = {}
    for i, node in enumerate(spec.nodes):
        name = f"v{i}"
        loc, scale = _loc_scale(node, [values[f"v{p}"] for p in node.parents], np)
        if node.mechanism == "deterministic":
            values[name] = np.asarray(loc, np.float64)
            continue
        values[name] = np.asarray(observed[name], np.float64)
        noise[name] = _g_inverse(node.mechanism, (values[name] - loc) / scale)
    return noise


def simulate(spec: Spec, n: int, seed: int) -> dict[str, np.ndarray]:
    """Values of the sample nodes of ``n`` units (float32, as the program's dtype)."""
    noise = draw_noise(spec, n, np.random.default_rng(seed))
    values = forward(spec, noise)
    dtype = jnp.result_type(float)
    return {k: values[k].astype(dtype) for k in spec.sample_nodes()}
