"""The workloads on ChiRho 0.3 (Pyro 1.9, torch CPU), written the way its docs recommend.

Mechanisms are ``TransformedDistribution``s of standard-normal noise, so that ChiRho's
``MultiWorldCounterfactual`` shares each observed site's noise across worlds. A site
that is *not* observed would get fresh noise per world: where one lies downstream of an
intervention (``Y`` in W2) its noise is an explicit sample site upstream of the
intervention instead.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import pyro
import pyro.distributions as dist
import torch
from chirho.counterfactual.handlers import MultiWorldCounterfactual
from chirho.indexed.ops import IndexSet, gather
from chirho.interventional.handlers import do
from chirho.observational.handlers import condition
from pyro.distributions.transforms import AffineTransform, ExpTransform
from pyro.infer import MCMC, NUTS, Predictive

from benchmarks.common import INTERVENED_NODE, INTERVENED_VALUE, parents_of

NODES = tuple(f"X{i}" for i in range(10))
_SHIFT = math.exp(0.125)


def _affine_noise(loc: torch.Tensor, scale: Any) -> dist.TransformedDistribution:
    """``loc + scale * u``, ``u ~ Normal(0, 1)``: the noise stays a separate, shared value."""
    base = dist.Normal(torch.zeros_like(loc), torch.ones_like(loc))
    return dist.TransformedDistribution(base, [AffineTransform(loc, scale)])


def linear_model(n: int, edges: Sequence[Sequence[tuple[int, float]]], scales: Sequence[float]):
    """The 10-node linear-Gaussian DAG over ``n`` units; returns every node's value."""
    xs: list[torch.Tensor] = []
    with pyro.plate("unit", n, dim=-1):
        for i, parents in enumerate(edges):
            loc = torch.zeros(n)
            for j, w in parents:
                loc = loc + w * xs[j]
            xs.append(pyro.sample(NODES[i], _affine_noise(loc, scales[i])))
    return xs


def nonlinear_model(n: int):
    """models/nonlinear.py, each mechanism a transform of its own standard-normal noise."""
    with pyro.plate("unit", n, dim=-1):
        x1 = pyro.sample("x1", _affine_noise(torch.zeros(n), 1.0))
        x2 = pyro.sample("x2", _affine_noise(torch.tanh(1.5 * x1), 0.3))
        x3 = pyro.sample("x3", _affine_noise(torch.sin(x1), 0.2 + 0.3 * torch.abs(x2)))
        x4 = pyro.sample("x4", _affine_noise(0.8 * x2 - 0.5 * x3**2, 0.3))
        scale5 = 0.4 * torch.exp(0.3 * x3)
        base = dist.Normal(torch.zeros_like(x4), torch.ones_like(x4))
        x5 = pyro.sample(
            "x5",
            dist.TransformedDistribution(
                base,
                [
                    AffineTransform(0.0, 0.5),
                    ExpTransform(),
                    AffineTransform(0.6 * x4 - scale5 * _SHIFT, scale5),
                ],
            ),
        )
    return [x1, x2, x3, x4, x5]


# ------------------------------------------------------------------------------- W1
def make_w1(weights: np.ndarray, noise_scales: np.ndarray):
    edges = parents_of(weights)
    scales = [float(s) for s in noise_scales]
    action = {NODES[INTERVENED_NODE]: torch.tensor(INTERVENED_VALUE)}

    def counterfactual(observed: dict[str, torch.Tensor]) -> list[torch.Tensor]:
        """Counterfactual values of fully observed units under do(X3 := 1)."""
        n = observed[NODES[0]].shape[0]
        with MultiWorldCounterfactual(), do(actions=action), condition(data=observed):
            xs = linear_model(n, edges, scales)
            world = IndexSet(**{NODES[INTERVENED_NODE]: {1}})
            return [gather(x, world, event_dim=0).reshape(n) for x in xs]

    return counterfactual


def make_w5(weights: np.ndarray, noise_scales: np.ndarray):
    """W5 as a loop of single counterfactual calls, one per intervention value."""
    edges = parents_of(weights)
    scales = [float(s) for s in noise_scales]
    world = IndexSet(**{NODES[INTERVENED_NODE]: {1}})

    def one(observed: dict[str, torch.Tensor], value: float) -> list[torch.Tensor]:
        n = observed[NODES[0]].shape[0]
        action = {NODES[INTERVENED_NODE]: torch.tensor(value)}
        with MultiWorldCounterfactual(), do(actions=action), condition(data=observed):
            xs = linear_model(n, edges, scales)
            return [gather(x, world, event_dim=0).reshape(n) for x in xs]

    def all_samples(observed, values) -> torch.Tensor:
        return torch.stack([torch.stack(one(observed, float(v)), -1) for v in values])

    def dose_response(observed, values) -> torch.Tensor:
        return torch.stack([one(observed, float(v))[-1].mean() for v in values])

    return all_samples, dose_response


# ------------------------------------------------------------------------------- W3
def make_w3(kind: str, weights: np.ndarray, noise_scales: np.ndarray, n: int):
    edges = parents_of(weights)
    scales = [float(s) for s in noise_scales]
    if kind == "linear":
        action = {NODES[INTERVENED_NODE]: torch.tensor(INTERVENED_VALUE)}
        program = lambda: linear_model(n, edges, scales)
    else:
        action = {"x3": torch.tensor(INTERVENED_VALUE)}
        program = lambda: nonlinear_model(n)

    def draw() -> list[torch.Tensor]:
        with do(actions=action):
            values = program()
        # The intervened site holds the scalar it was set to: one value per unit.
        return [v.expand(n) for v in values]

    return draw


# ------------------------------------------------------------------------------- W2
def w2_model(x_prime: torch.Tensor, consts: Sequence[float], n: int) -> torch.Tensor:
    """models/latent_confounder.py with ``Y``'s noise an explicit site upstream of do."""
    alpha, beta, gamma, sigma_u, sigma_x, sigma_y = consts
    with pyro.plate("unit", n, dim=-1):
        u = pyro.sample("U", dist.Normal(0.0, sigma_u))
        noise_y = pyro.sample("noise_Y", dist.Normal(0.0, sigma_y))
        x = pyro.sample("X", dist.Normal(alpha * u, sigma_x))
        y = pyro.deterministic("Y", beta * x + gamma * u + noise_y, event_dim=0)
    return y


def make_w2(consts: Sequence[float], num_warmup: int, num_samples: int, jit: bool):
    consts = tuple(float(c) for c in consts)

    def program(x: torch.Tensor, x_prime: torch.Tensor) -> torch.Tensor:
        n = x.shape[0]
        with MultiWorldCounterfactual(), do(actions={"X": x_prime}), condition(data={"X": x}):
            y = w2_model(x_prime, consts, n)
            worlds = [gather(y, IndexSet(X={w}), event_dim=0).reshape(n) for w in (0, 1)]
            return pyro.deterministic("Y_worlds", torch.stack(worlds), event_dim=2)

    def run(seed: int, x: torch.Tensor, x_prime: torch.Tensor):
        """NUTS over ``U`` and the noise of ``Y``; returns (Y, Y_cf), each (draw, unit)."""
        pyro.set_rng_seed(seed)
        kernel = NUTS(program, jit_compile=jit, ignore_jit_warnings=True)
        mcmc = MCMC(kernel, warmup_steps=num_warmup, num_samples=num_samples, disable_progbar=True)
        mcmc.run(x, x_prime)
        samples = mcmc.get_samples()
        predictive = Predictive(program, posterior_samples=samples, return_sites=["Y_worlds"])
        worlds = predictive(x, x_prime)["Y_worlds"].reshape(num_samples, 2, -1)
        return worlds[:, 0], worlds[:, 1]

    return run
