"""Building blocks shared by the mechanisms of :mod:`scm_ppl.learn.mechanisms`: argument checks
that teach, parents as a ``(..., p)`` array checked against the enclosing plates, and
Equinox networks registered as NumPyro parameters (or sampled from priors), initialised
once per architecture and key.
"""

from __future__ import annotations

import zlib
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any, NamedTuple, cast

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as dist
from jax.core import Tracer
from jax.typing import ArrayLike
from numpyro.contrib.module import eqx_module, random_eqx_module
from numpyro.distributions import constraints
from numpyro.primitives import _PYRO_STACK, Messenger

from scm_ppl.core.cache import LRUCache
from scm_ppl.errors import ProgramError

__all__ = [
    "Activation",
    "Key",
    "NetSpec",
    "Parents",
    "as_parents",
    "build",
    "check_activation",
    "check_hidden",
    "check_key",
    "check_name",
    "choice",
    "count",
    "net_spec",
    "network",
    "noise_scale_site",
    "outside_plates",
    "positive",
    "sample_site",
]

Parents = ArrayLike | Sequence[ArrayLike]
Key = int | jax.Array | None
Activation = Callable[[jax.Array], jax.Array]

# ------------------------------------------------------------------------ input checks


def check_name(name: Any) -> str:
    if not isinstance(name, str) or not name:
        raise ProgramError(f"A mechanism needs a site name (a non-empty str); got {name!r}.")
    return name


def positive(name: str, what: str, value: Any) -> float:
    ok = isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, bool)
    if not ok or not value > 0:
        raise ProgramError(f"{what} of '{name}' must be a positive number; got {value!r}.")
    return float(value)


def count(name: str, what: str, value: Any, minimum: int = 1) -> int:
    if not isinstance(value, (int, np.integer)) or isinstance(value, bool) or value < minimum:
        raise ProgramError(f"{what} of '{name}' must be an integer >= {minimum}; got {value!r}.")
    return int(value)


def check_hidden(name: str, hidden: Any) -> tuple[int, ...]:
    widths = (hidden,) if isinstance(hidden, (int, np.integer)) else hidden
    if isinstance(widths, (str, bytes)) or not isinstance(widths, Sequence):
        raise ProgramError(
            f"hidden of '{name}' must be a tuple of layer widths such as (32, 32), or () for "
            f"a linear map; got {hidden!r}."
        )
    return tuple(count(name, "Each hidden width", w) for w in widths)


def choice(name: str, what: str, value: Any, options: Sequence[str]) -> str:
    if value not in options:
        raise ProgramError(f"Unknown {what} {value!r} for '{name}'; choose one of {list(options)}.")
    return value


def _plates() -> dict[int, tuple[str, int]]:
    """The enclosing plates: ``{dim: (name, size of the batch axis)}``."""
    found = {}
    for handler in _PYRO_STACK:
        if isinstance(handler, numpyro.plate) and handler.dim is not None:
            found[handler.dim] = (handler.name, handler.subsample_size)
    return found


def as_parents(name: str, parents: Parents) -> jax.Array:
    """Parents as a float array ``(..., p)``, checked against the enclosing plates."""
    if isinstance(parents, (list, tuple)):
        if not parents:
            raise ProgramError(f"The parents of '{name}' are an empty list; give at least one.")
        arrays = [jnp.asarray(p) for p in parents]
        try:
            shape = jnp.broadcast_shapes(*(a.shape for a in arrays))
        except ValueError:
            raise ProgramError(
                f"The parents of '{name}' have shapes {[a.shape for a in arrays]}, which do "
                "not broadcast; a list of parents holds one value per unit each."
            ) from None
        x = jnp.stack([jnp.broadcast_to(a, shape) for a in arrays], axis=-1)
    else:
        try:
            x = jnp.asarray(parents)
        except TypeError:
            raise ProgramError(
                f"The parents of '{name}' must be an array (..., p) or a list of arrays; got "
                f"{type(parents).__name__}."
            ) from None
    if x.ndim == 0 or x.shape[-1] == 0:
        raise ProgramError(
            f"The parents of '{name}' have shape {x.shape}; expected (..., p) with p >= 1 "
            f"parents on the last axis: x[..., None] for one parent, or [x, z] for several."
        )
    if not (jnp.issubdtype(x.dtype, jnp.number) or x.dtype == jnp.bool_):
        raise ProgramError(f"The parents of '{name}' must be numeric; got dtype {x.dtype}.")
    batch = x.shape[:-1]
    for dim, (plate, size) in sorted(_plates().items()):
        if not batch and x.shape[-1] == size and dim == -1 and size > 1:
            raise ProgramError(
                f"The parents of '{name}' have shape {x.shape}, read as ONE unit with "
                f"{size} parents, but the site is inside plate '{plate}' of size {size}. "
                "For one parent per unit pass x[..., None] (or [x])."
            )
        axis = len(batch) + dim
        if axis >= 0 and batch[axis] not in (1, size):
            raise ProgramError(
                f"The parents of '{name}' have shape {x.shape}: batch axis {axis} has length "
                f"{batch[axis]}, but plate '{plate}' (dim {dim}) has size {size}. With "
                "subsampling, index the parents by the plate's indices."
            )
    return x.astype(jnp.result_type(float))


# --------------------------------------------------------------------------- networks

_MODULES = LRUCache(128)
_EAGER: list[ThreadPoolExecutor] = []


def _eagerly(fn: Callable[[], Any]) -> Any:
    """``fn()`` run eagerly even while the caller is being traced (``jit``, ``eval_shape``,
    ``vmap``): JAX's trace state is per thread, so a worker thread computes real arrays."""
    if not _EAGER:
        _EAGER.append(ThreadPoolExecutor(max_workers=1, thread_name_prefix="scm_ppl-init"))
    return _EAGER[0].submit(fn).result()


def check_key(name: str, key: Key) -> Key:
    """An int seed, a JAX key (typed or raw ``uint32[2]``) or ``None``; ints normalised."""
    if key is None or isinstance(key, Tracer):
        return key
    if isinstance(key, (int, np.integer)) and not isinstance(key, bool):
        return int(key)
    if isinstance(key, jax.Array) and (
        jax.dtypes.issubdtype(key.dtype, jax.dtypes.prng_key)
        or (key.dtype == jnp.uint32 and key.shape == (2,))
    ):
        return key
    raise ProgramError(
        f"key of '{name}' must be an int seed or a JAX PRNG key such as jax.random.key(0); "
        f"got {type(key).__name__}."
    )


def build(spec: tuple, name: str, key: Key, make: Callable[[jax.Array], Any]) -> Any:
    """The initial module ``make(key)``, built once per (spec, key) and cached.

    Initialising a FlowJAX flow takes seconds of eager dispatch, and traced inside a
    program it would be compiled into every query; so it runs eagerly (in a worker thread
    if the program is being traced) and compiled programs hold the initial weights as
    constants. Only a traced key (rare) builds inside the trace, uncached.
    """
    if key is None:
        key = zlib.crc32(name.encode())
    if isinstance(key, Tracer):
        return make(cast(jax.Array, key))
    if isinstance(key, int):
        seed = key
        cache_key: tuple = (spec, seed)
        new_key: Callable[[], jax.Array] = lambda: jax.random.key(seed)
    else:
        typed = jax.dtypes.issubdtype(key.dtype, jax.dtypes.prng_key)
        impl = jax.random.key_impl(key) if typed else None
        data = np.asarray(jax.random.key_data(key) if typed else key)
        cache_key = (spec, str(impl), data.dtype.str, data.shape, data.tobytes())
        new_key = lambda: jax.random.wrap_key_data(jnp.asarray(data), impl=impl)
    module = _MODULES.get(cache_key)
    if module is None:
        module = _MODULES.put(cache_key, _eagerly(lambda: make(new_key())))
    return module


def _mlp(
    in_size: int, out_size: int, hidden: tuple[int, ...], activation: Activation, key: jax.Array
) -> eqx.Module:
    if len(set(hidden)) <= 1:
        width = hidden[0] if hidden else out_size
        return eqx.nn.MLP(in_size, out_size, width, len(hidden), activation=activation, key=key)
    sizes = (in_size, *hidden, out_size)
    keys = jax.random.split(key, len(sizes) - 1)
    layers: list[Any] = []
    for i, k in enumerate(keys):
        layers.append(eqx.nn.Linear(sizes[i], sizes[i + 1], key=k))
        if i < len(keys) - 1:
            layers.append(eqx.nn.Lambda(activation))
    return eqx.nn.Sequential(layers)


class outside_plates(Messenger):
    """Sample sites drawn once for all units: every enclosing plate is blocked."""

    def process_message(self, msg: dict[str, Any]) -> None:
        if msg["type"] == "sample":
            names = [h.name for h in _PYRO_STACK if isinstance(h, numpyro.plate)]
            msg["infer"] = {**(msg.get("infer") or {}), "block_plates": names}


class NetSpec(NamedTuple):
    """A validated network description: hidden widths, activation, prior, init key."""

    widths: tuple[int, ...]
    activation: Activation
    prior_scale: float | None
    key: Key


def check_activation(name: str, activation: Any) -> Activation:
    if not callable(activation):
        raise ProgramError(
            f"activation of '{name}' must be a function such as jax.nn.relu; got {activation!r}."
        )
    return cast(Activation, activation)


def net_spec(name: str, hidden: Any, activation: Any, prior_scale: Any, key: Key) -> NetSpec:
    """Validate a mechanism's network arguments (before anything is built)."""
    prior = None if prior_scale is None else positive(name, "prior_scale", prior_scale)
    return NetSpec(
        widths=check_hidden(name, hidden),
        activation=check_activation(name, activation),
        prior_scale=prior,
        key=check_key(name, key),
    )


def network(name: str, parents: jax.Array, out_size: int, net: NetSpec) -> jax.Array:
    """The site's MLP applied to every unit's parents: ``(..., p) -> (..., out_size)``."""
    p = parents.shape[-1]
    spec = ("mlp", p, out_size, net.widths, net.activation)
    module = build(spec, name, net.key, lambda k: _mlp(p, out_size, net.widths, net.activation, k))
    if net.prior_scale is None:
        fn = cast(Callable[[jax.Array], jax.Array], eqx_module(f"{name}.net", module))
    else:
        with outside_plates():
            fn = random_eqx_module(f"{name}.net", module, dist.Normal(0.0, net.prior_scale))
    flat = parents.reshape(-1, p)
    # A handler that asks (``mechanism_genericity``'s) is shown the network and its inputs.
    for handler in _PYRO_STACK:
        if hasattr(handler, "record_network"):
            handler.record_network(name, fn, flat)
    return jax.vmap(fn)(flat).reshape(*parents.shape[:-1], out_size)


def noise_scale_site(name: str, noise_scale: float | None, prior_scale: float | None) -> Any:
    """σ: fixed, the global sample site ``"<name>.scale"`` (Bayesian) or a positive param."""
    if noise_scale is not None:
        return noise_scale
    if prior_scale is not None:
        with outside_plates():
            return numpyro.sample(f"{name}.scale", dist.HalfNormal(1.0))
    return numpyro.param(f"{name}.scale", 1.0, constraint=constraints.positive)


def sample_site(name: str, fn: dist.Distribution, obs: ArrayLike | None) -> jax.Array:
    """``numpyro.sample`` typed as returning an array."""
    return jnp.asarray(numpyro.sample(name, fn, obs=obs))
