"""Mechanism building blocks: neural networks and normalizing flows as sample sites.

Each function is called inside a NumPyro program (usually inside the unit plate), samples
one site from its parents and returns the value::

    with numpyro.plate("unit", n):
        x = numpyro.sample("x", dist.Normal(0.0, 1.0))
        y = additive_noise("y", x[..., None])          # y = f(x) + sigma * u
        w = flow("w", [x, y], kind="spline")            # w = T(u; x, y), invertible

Every site's distribution has an exact noise view where the mechanism inverts (additive,
location-scale, flow), so :func:`scm_ppl.counterfactual` abducts exactly without being
told; the discrete mechanisms use the Gumbel-max / inverse-CDF couplings.

Parents
    An array shaped ``(..., p)`` (the last axis holds one unit's ``p`` parents), or a list
    of per-unit arrays ``[x, z]`` stacked along a new last axis.

Parameters (names in the param store)
    ``"<site>.net$params"``: the Equinox MLP (registered by
    :func:`numpyro.contrib.module.eqx_module`); ``"<site>.flow$params"``: the FlowJAX flow
    (:func:`flowjax.experimental.numpyro.register_params`); ``"<site>.scale"``: the noise
    scale of :func:`additive_noise`.

Bayesian mechanisms (``prior_scale=s``)
    The network weights are sample sites ``"<site>.net/<path>"`` (e.g.
    ``"y.net/layers[0].weight"``) with ``Normal(0, s)`` priors, drawn once for all units
    (outside every plate) by :func:`numpyro.contrib.module.random_eqx_module`; the noise
    scale of :func:`additive_noise` becomes the sample site ``"<site>.scale"`` with a
    ``HalfNormal(1)`` prior. NUTS and SVI then carry mechanism uncertainty into every
    query. (``random_eqx_module`` also registers the point parameters
    ``"<site>.net$params"``, which the sampled weights replace.)

Initial weights come from ``key`` (an int or a JAX key); by default from a hash of the site
name, so a program's initial mechanisms are reproducible.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import jax
import numpyro.distributions as dist
from flowjax.experimental.numpyro import register_params
from jax.typing import ArrayLike

from scm_ppl.learn.flows import FLOW_KINDS, FlowDistribution, make_flow
from scm_ppl.learn.nets import (
    Activation,
    Key,
    NetSpec,
    Parents,
    as_parents,
    build,
    check_activation,
    check_key,
    check_name,
    choice,
    count,
    net_spec,
    network,
    noise_scale_site,
    positive,
    sample_site,
)

__all__ = [
    "FLOW_KINDS",
    "NOISE_FAMILIES",
    "FlowDistribution",
    "additive_noise",
    "bernoulli",
    "categorical",
    "flow",
    "location_scale",
]

NOISE_FAMILIES: dict[str, type[dist.Distribution]] = {
    "normal": dist.Normal,
    "laplace": dist.Laplace,
    "logistic": dist.Logistic,
}


def _mlp(
    name: str,
    parents: Parents,
    width: int,
    hidden: Any,
    activation: Any,
    prior_scale: Any,
    key: Key,
) -> tuple[jax.Array, NetSpec]:
    """The network ``f_θ(parents)`` of site ``name``, ``(..., width)``, and its checked
    description: the part every neural mechanism shares (checks before anything is built)."""
    net = net_spec(name, hidden, activation, prior_scale, key)
    return network(name, as_parents(name, parents), width, net), net


# ------------------------------------------------------------------------- mechanisms


def additive_noise(
    name: str,
    parents: Parents,
    *,
    hidden: Sequence[int] = (32, 32),
    activation: Activation = jax.nn.silu,
    noise: str = "normal",
    noise_scale: float | None = None,
    prior_scale: float | None = None,
    key: Key = None,
    obs: ArrayLike | None = None,
) -> jax.Array:
    """Additive-noise neural mechanism ``x = f_θ(parents) + σ·u``.

    Samples site ``name`` from ``Normal(f_θ(parents), σ)`` (or the ``noise`` family), with
    ``f_θ`` an :class:`equinox.nn.MLP` applied to each unit's parents. The noise view
    inverts it, ``u = (x - f_θ(parents)) / σ``: abduction is exact.

    Parameters
    ----------
    name
        The site name.
    parents
        ``(..., p)`` array or list of per-unit arrays (see the module docstring).
    hidden
        Hidden layer widths; ``()`` makes ``f_θ`` linear.
    activation
        Activation after each hidden layer.
    noise
        Noise family, one of :data:`NOISE_FAMILIES` (``"normal"``, ``"laplace"``,
        ``"logistic"``).
    noise_scale
        Fix σ; by default it is the positive parameter ``"<name>.scale"`` (init 1).
    prior_scale
        Make the mechanism Bayesian: ``Normal(0, prior_scale)`` priors on the weights
        (sample sites ``"<name>.net/..."``) and ``HalfNormal(1)`` on σ (unless fixed).
    key
        Seed (int) or JAX key of the initial weights; default: from the site name.
    obs
        Observed values, as for :func:`numpyro.sample`.

    Returns
    -------
    jax.Array
        The site's value, shaped like the parents' batch shape (the plate's).

    Examples
    --------
    >>> import jax, numpyro, numpyro.distributions as dist
    >>> from numpyro.handlers import seed, trace
    >>> def model(n=5):
    ...     with numpyro.plate("unit", n):
    ...         x = numpyro.sample("x", dist.Normal(0.0, 1.0))
    ...         additive_noise("y", x[..., None], hidden=(8,))
    >>> tr = trace(seed(model, 0)).get_trace()
    >>> tr["y"]["value"].shape, sorted(k for k, s in tr.items() if s["type"] == "param")
    ((5,), ['y.net$params', 'y.scale'])
    """
    check_name(name)
    family = NOISE_FAMILIES[choice(name, "noise family", noise, list(NOISE_FAMILIES))]
    if noise_scale is not None:
        noise_scale = positive(name, "noise_scale", noise_scale)
    out, net = _mlp(name, parents, 1, hidden, activation, prior_scale, key)
    scale = noise_scale_site(name, noise_scale, net.prior_scale)
    return sample_site(name, family(out[..., 0], scale), obs)


def location_scale(
    name: str,
    parents: Parents,
    *,
    hidden: Sequence[int] = (32, 32),
    activation: Activation = jax.nn.silu,
    noise: str = "normal",
    min_scale: float = 1e-3,
    prior_scale: float | None = None,
    key: Key = None,
    obs: ArrayLike | None = None,
) -> jax.Array:
    """Heteroscedastic mechanism ``x = μ_θ(parents) + σ_θ(parents)·u``.

    One MLP with two outputs gives ``μ`` and ``σ = softplus(·) + min_scale``; the site is
    ``Normal(μ, σ)`` (or the ``noise`` family), so abduction is exact. Parameters as in
    :func:`additive_noise`; the network is ``"<name>.net$params"``.

    Examples
    --------
    >>> import jax, numpyro, numpyro.distributions as dist
    >>> from numpyro.handlers import seed, trace
    >>> def model(n=4):
    ...     with numpyro.plate("unit", n):
    ...         x = numpyro.sample("x", dist.Normal(0.0, 1.0))
    ...         location_scale("y", x[..., None], hidden=(8,))
    >>> tr = trace(seed(model, 0)).get_trace()
    >>> tr["y"]["value"].shape, bool((tr["y"]["fn"].scale >= 1e-3).all())
    ((4,), True)
    """
    check_name(name)
    family = NOISE_FAMILIES[choice(name, "noise family", noise, list(NOISE_FAMILIES))]
    floor = positive(name, "min_scale", min_scale)
    out, _ = _mlp(name, parents, 2, hidden, activation, prior_scale, key)
    scale = jax.nn.softplus(out[..., 1]) + floor
    return sample_site(name, family(out[..., 0], scale), obs)


def flow(
    name: str,
    parents: Parents | None = None,
    *,
    kind: str = "maf",
    dim: int = 1,
    flow_layers: int = 4,
    nn_width: int = 32,
    nn_depth: int = 1,
    activation: Activation = jax.nn.silu,
    knots: int = 8,
    interval: float = 4.0,
    key: Key = None,
    obs: ArrayLike | None = None,
) -> jax.Array:
    """Normalizing-flow mechanism ``x = T_θ(u; parents)``, ``u ~ Normal(0, I)``.

    A FlowJAX conditional flow (condition = parents) is the site's distribution, wrapped
    in :class:`FlowDistribution`; ``T_θ`` inverts exactly, so abduction is exact. Its
    parameters are ``"<name>.flow$params"``.

    Parameters
    ----------
    name
        The site name.
    parents
        ``(..., p)`` array or list of per-unit arrays; ``None`` for a root with a learned
        distribution.
    kind
        One of :data:`FLOW_KINDS`: ``"maf"`` (masked autoregressive, affine), ``"coupling"``
        (coupling layers, affine), ``"spline"`` (masked autoregressive with
        rational-quadratic splines). For a scalar site (``dim=1``) affine flows are a
        heteroscedastic Gaussian; use ``"spline"`` for other shapes.
    dim
        Size of the value per unit. ``dim=1`` gives a scalar site (no event axis);
        ``dim > 1`` a vector site ``(..., dim)``.
    flow_layers, nn_width, nn_depth, activation
        Flow depth and the conditioner networks' width, depth and activation.
    knots, interval
        Spline knots and the interval ``[-interval, interval]`` they cover (``"spline"``;
        the spline is the identity outside, so keep the data on that scale).
    key
        Seed (int) or JAX key of the initial flow; default: from the site name.
    obs
        Observed values, as for :func:`numpyro.sample`.

    Examples
    --------
    >>> import jax, numpyro, numpyro.distributions as dist
    >>> from numpyro.handlers import seed, trace
    >>> def model(n=3):
    ...     with numpyro.plate("unit", n):
    ...         x = numpyro.sample("x", dist.Normal(0.0, 1.0))
    ...         z = numpyro.sample("z", dist.Normal(0.0, 1.0))
    ...         flow("y", [x, z], kind="spline", flow_layers=2, nn_width=8)
    >>> tr = trace(seed(model, 0)).get_trace()
    >>> tr["y"]["value"].shape, type(tr["y"]["fn"]).__name__
    ((3,), 'FlowDistribution')
    """
    check_name(name)
    kind = choice(name, "flow kind", kind, FLOW_KINDS)
    dim = count(name, "dim", dim)
    sizes = {
        "flow_layers": count(name, "flow_layers", flow_layers),
        "nn_width": count(name, "nn_width", nn_width),
        "nn_depth": count(name, "nn_depth", nn_depth, minimum=0),
        "knots": count(name, "knots", knots),
    }
    width = positive(name, "interval", interval)
    key = check_key(name, key)
    activation = check_activation(name, activation)
    condition = None if parents is None else as_parents(name, parents)
    cond_dim = None if condition is None else condition.shape[-1]
    spec = ("flow", kind, dim, cond_dim, tuple(sizes.items()), width, activation)

    def make(k: jax.Array) -> Any:
        return make_flow(
            kind, k, dim=dim, cond_dim=cond_dim, activation=activation, interval=width, **sizes
        )

    module = register_params(f"{name}.flow$params", build(spec, name, key, make))
    return sample_site(name, FlowDistribution(module, condition), obs)


def categorical(
    name: str,
    parents: Parents,
    num_classes: int,
    *,
    hidden: Sequence[int] = (32, 32),
    activation: Activation = jax.nn.silu,
    prior_scale: float | None = None,
    key: Key = None,
    obs: ArrayLike | None = None,
) -> jax.Array:
    """Categorical mechanism with neural logits: ``x ~ Categorical(logits=f_θ(parents))``.

    Not invertible: counterfactuals use the Gumbel-max coupling of its noise view
    (``x = argmax(logits + g)``, ``g`` Gumbel). Parameters as in :func:`additive_noise`.

    Examples
    --------
    >>> import jax, numpyro, numpyro.distributions as dist
    >>> from numpyro.handlers import seed, trace
    >>> def model(n=4):
    ...     with numpyro.plate("unit", n):
    ...         x = numpyro.sample("x", dist.Normal(0.0, 1.0))
    ...         categorical("c", x[..., None], 3, hidden=(8,))
    >>> tr = trace(seed(model, 0)).get_trace()
    >>> tr["c"]["value"].shape, tr["c"]["fn"].logits.shape
    ((4,), (4, 3))
    """
    check_name(name)
    k = count(name, "num_classes", num_classes, minimum=2)
    logits, _ = _mlp(name, parents, k, hidden, activation, prior_scale, key)
    return sample_site(name, dist.CategoricalLogits(logits), obs)


def bernoulli(
    name: str,
    parents: Parents,
    *,
    hidden: Sequence[int] = (32, 32),
    activation: Activation = jax.nn.silu,
    prior_scale: float | None = None,
    key: Key = None,
    obs: ArrayLike | None = None,
) -> jax.Array:
    """Binary mechanism with a neural logit: ``x ~ Bernoulli(logits=f_θ(parents))``.

    Not invertible: counterfactuals use the inverse-CDF coupling of its noise view
    (``x = 1[u > 1 - p]``). Parameters as in :func:`additive_noise`.

    Examples
    --------
    >>> import jax, numpyro, numpyro.distributions as dist
    >>> from numpyro.handlers import seed, trace
    >>> def model(n=4):
    ...     with numpyro.plate("unit", n):
    ...         x = numpyro.sample("x", dist.Normal(0.0, 1.0))
    ...         bernoulli("t", x[..., None], hidden=(8,))
    >>> tr = trace(seed(model, 0)).get_trace()
    >>> tr["t"]["value"].shape, tr["t"]["fn"].logits.shape
    ((4,), (4,))
    """
    check_name(name)
    logits, _ = _mlp(name, parents, 1, hidden, activation, prior_scale, key)
    return sample_site(name, dist.BernoulliLogits(logits[..., 0]), obs)
