"""The floor: hand-written, jitted JAX doing only the arithmetic each query needs.

Every function touches only the real edges of the graph. scm_ppl's overhead is its time
divided by the floor's, measured in the same run.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import partial

import jax
import jax.numpy as jnp
import numpy as np
import numpy.typing as npt
import numpyro
import numpyro.distributions as dist
from numpyro.infer import MCMC, NUTS

from benchmarks.common import INTERVENED_NODE, INTERVENED_VALUE, parents_of

Edges = Sequence[Sequence[tuple[int, float]]]


def _predict(noise: Sequence[jax.Array], edges: Edges, value: jax.Array) -> list[jax.Array]:
    """Topological prediction with the intervened node fixed."""
    out: list[jax.Array] = []
    for i, parents in enumerate(edges):
        if i == INTERVENED_NODE:
            out.append(jnp.broadcast_to(value, noise[0].shape).astype(noise[0].dtype))
            continue
        x = noise[i]
        for j, w in parents:
            x = x + w * out[j]
        out.append(x)
    return out


def make_w1(weights: npt.ArrayLike):
    """``cf(columns) -> columns``: exact counterfactuals of fully observed units under
    do(X3 := 1); ``columns`` is a tuple of 10 ``(n,)`` arrays."""
    edges = parents_of(weights)

    @jax.jit
    def counterfactual(columns: tuple[jax.Array, ...]) -> tuple[jax.Array, ...]:
        noise = []
        for i, parents in enumerate(edges):
            u = columns[i]
            for j, w in parents:
                u = u - w * columns[j]
            noise.append(u)
        return tuple(_predict(noise, edges, jnp.asarray(INTERVENED_VALUE)))

    return counterfactual


def make_w5(weights: npt.ArrayLike):
    """W5 on the floor: ``(a)`` every counterfactual for a grid of do(X3 := v) values,
    ``(b)`` the mean counterfactual X9 per value without the full result."""
    edges = parents_of(weights)

    def one_value(columns, value):
        noise = []
        for i, parents in enumerate(edges):
            u = columns[i]
            for j, w in parents:
                u = u - w * columns[j]
            noise.append(u)
        return jnp.stack(_predict(noise, edges, value), axis=-1)

    all_samples = jax.jit(jax.vmap(one_value, in_axes=(None, 0)))
    dose_response = jax.jit(
        lambda columns, values: jax.lax.map(
            lambda v: one_value(columns, v)[:, -1].mean(), values, batch_size=64
        )
    )
    return all_samples, dose_response


def make_w3_linear(weights: npt.ArrayLike, noise_scales: npt.ArrayLike, n: int):
    """``draw(key) -> columns``: ``n`` ancestral draws under do(X3 := 1)."""
    edges = parents_of(weights)
    scales = [float(s) for s in np.asarray(noise_scales)]

    @jax.jit
    def draw(key: jax.Array) -> tuple[jax.Array, ...]:
        # Only the nine mechanisms that keep their noise draw any, each its own (n,)
        # block from its own key: one (9, n) call is ~4x slower on CPU (threefry's
        # counters over a 2-d shape).
        kept = [i for i in range(len(edges)) if i != INTERVENED_NODE]
        keys = jax.random.split(key, len(kept))
        z = {i: jax.random.normal(k, (n,)) * scales[i] for i, k in zip(kept, keys, strict=True)}
        noise = [z.get(i, z[kept[0]]) for i in range(len(edges))]  # intervened: never read
        return tuple(_predict(noise, edges, jnp.asarray(INTERVENED_VALUE)))

    return draw


_SHIFT = float(np.exp(0.125))


def make_w3_nonlinear(n: int):
    """``draw(key) -> columns``: ``n`` draws of models/nonlinear.py under do(x3 := 1)."""

    @jax.jit
    def draw(key: jax.Array) -> tuple[jax.Array, ...]:
        u1, u2, u4, u5 = (jax.random.normal(k, (n,)) for k in jax.random.split(key, 4))
        x1 = u1
        x2 = jnp.tanh(1.5 * x1) + 0.3 * u2
        x3 = jnp.full_like(x1, INTERVENED_VALUE)
        x4 = 0.8 * x2 - 0.5 * x3**2 + 0.3 * u4
        x5 = 0.6 * x4 + 0.4 * jnp.exp(0.3 * x3) * (jnp.exp(0.5 * u5) - _SHIFT)
        return x1, x2, x3, x4, x5

    return draw


# --------------------------------------------------------------------------- W2
def w2_twin_model(x: jax.Array, x_prime: jax.Array, consts: Sequence[float]) -> None:
    """The latent-confounder SCM of models/latent_confounder.py in two worlds, by hand.

    The latent sites are the program's own (``U`` and the unobserved ``Y``); the noise of
    ``Y`` is recovered by inversion and replayed in the counterfactual world.
    """
    alpha, beta, gamma, sigma_u, sigma_x, sigma_y = consts
    with numpyro.plate("unit", x.shape[0]):
        u = numpyro.sample("U", dist.Normal(0.0, sigma_u))
        numpyro.sample("X", dist.Normal(alpha * u, sigma_x), obs=x)
        y = numpyro.sample("Y", dist.Normal(beta * x + gamma * u, sigma_y))
        noise_y = y - beta * x - gamma * u
        numpyro.deterministic("Y_cf", beta * x_prime + gamma * u + noise_y)


def make_w2(consts: npt.ArrayLike, num_warmup: int, num_samples: int):
    """``run(key, x, x_prime) -> (Y, Y_cf)``, each ``(num_samples, n)``: NumPyro NUTS on
    the hand-written twin-world model (compiled on the first run, reused after)."""
    mcmc = MCMC(
        NUTS(partial(w2_twin_model, consts=tuple(float(c) for c in np.asarray(consts)))),
        num_warmup=num_warmup,
        num_samples=num_samples,
        progress_bar=False,
        jit_model_args=True,
    )

    def run(key: jax.Array, x: jax.Array, x_prime: jax.Array) -> tuple[jax.Array, jax.Array]:
        mcmc.run(key, x, x_prime)
        samples = mcmc.get_samples()
        return samples["Y"], samples["Y_cf"]

    return run
