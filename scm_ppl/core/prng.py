"""A faster key for drawing noise on CPU: JAX's own Threefry, hashed in one pass.

JAX's default generator is Threefry-2x32 with 20 rounds (Salmon et al., "Parallel random
numbers: as easy as 1, 2, 3", SC 2011). On CPU, JAX lowers its hash as a *rolled* loop (a
``while`` over the five 4-round blocks) to keep compile times short; XLA cannot fuse
across that loop, so every block writes and re-reads whole arrays and the generator
becomes memory-bound: 10⁷ float32 normals take ~0.3 s on a 2-core CPU, where
``torch.randn`` takes ~0.06 s. The same 20 rounds as straight-line ``jax.numpy`` make
the bits ~6x sooner and the normals ~3x (JAX's erfinv transform is then half the time;
Box-Muller measured slower still).

:func:`fast_key` returns keys of a PRNG implementation that computes exactly the bits
JAX's default does (same seed, split, fold-in and bits), so every ``jax.random``
sampler and every NumPyro distribution uses it unchanged and gets the same numbers —
only sooner. Nothing about the stream's statistical quality changes.
"""

from __future__ import annotations

import math
import weakref
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax
from jax.core import Tracer
from jax.extend.random import define_prng_impl, threefry_prng_impl
from jax.typing import ArrayLike

from scm_ppl.core.cache import LRUCache

__all__ = ["THREEFRY_UNROLLED", "as_query_key", "fast_key", "threefry2x32_hash"]

# Threefish-256's rotation constants as Random123 uses them for 2 words of 32 bits: round
# r rotates by _ROTATIONS[(r // 4) % 2][r % 4].
_ROTATIONS = ((13, 15, 26, 6), (17, 29, 16, 24))
_KEY_PARITY = np.uint32(0x1BD11BDA)  # Skein's key-schedule constant
_ROUNDS = 20  # JAX's and Random123's default; 13 is Random123's fewest "Crush-resistant"


def _rotate_left(x: jax.Array, distance: int) -> jax.Array:
    return (x << np.uint32(distance)) | (x >> np.uint32(32 - distance))


def threefry2x32_hash(
    key: tuple[ArrayLike, ArrayLike],
    counter: tuple[ArrayLike, ArrayLike],
    rounds: int = _ROUNDS,
) -> tuple[jax.Array, jax.Array]:
    """Threefry-2x32 with ``rounds`` rounds, as straight-line ``uint32`` arithmetic.

    Parameters
    ----------
    key, counter
        Pairs of ``uint32`` arrays (broadcast against each other).
    rounds
        Number of rounds: 20 as in JAX and Random123's default; 13 is Random123's
        fewest "Crush-resistant" count.

    Returns
    -------
    tuple of jax.Array
        The two output words, matching Random123's ``threefry2x32_R`` known answers.

    Examples
    --------
    >>> import numpy as np
    >>> zero = np.uint32(0)
    >>> [hex(int(w)) for w in threefry2x32_hash((zero, zero), (zero, zero))]
    ['0x6b200159', '0x99ba4efe']
    """
    k0, k1 = (jnp.asarray(k, jnp.uint32) for k in key)
    x0, x1 = (jnp.asarray(c, jnp.uint32) for c in counter)
    schedule = (k0, k1, k0 ^ k1 ^ _KEY_PARITY)
    x0, x1 = x0 + schedule[0], x1 + schedule[1]
    for r in range(rounds):
        x0 = x0 + x1
        x1 = _rotate_left(x1, _ROTATIONS[(r // 4) % 2][r % 4]) ^ x0
        if r % 4 == 3:  # key injection after every fourth round
            s = r // 4 + 1
            x0 = x0 + schedule[s % 3]
            x1 = x1 + schedule[(s + 1) % 3] + np.uint32(s)
    return x0, x1


def _counters(shape: tuple[int, ...]) -> jax.Array:
    """The flat index of every element, the low word of JAX's ``iota_2x32_shape`` (its
    high word is zero below 2³² elements)."""
    size = math.prod(shape)
    if size >= 2**32:
        raise NotImplementedError(
            f"fast_key draws at most 2**32 - 1 numbers per call; {size} were asked for. "
            "Split the key and draw in blocks."
        )
    return lax.iota(jnp.uint32, size).reshape(shape)


def _random_bits(
    key: jax.Array, bit_width: int, shape: tuple[int, ...], rounds: int = _ROUNDS
) -> jax.Array:
    # JAX's partitionable layout: element i hashes the counter (high(i), low(i)) and
    # keeps the XOR of the two output words (truncated for 8 and 16 bits).
    if bit_width == 64:
        return threefry_prng_impl.random_bits(key, bit_width, shape)
    k0, k1 = key[0], key[1]

    def hash_counters(carry: tuple[jax.Array, jax.Array]) -> tuple[jax.Array, jax.Array]:
        trips, low = carry
        word0, word1 = threefry2x32_hash((k0, k1), (jnp.zeros_like(low), low), rounds)
        return trips + np.uint32(1), word0 ^ word1

    # One trip of a loop whose trip count XLA cannot read at compile time (it is always
    # 1): without it, XLA fuses the cheap straight-line hash into every consumer of the
    # bits and recomputes it in each (and compiles it again each time); the loop writes
    # the bits to memory once instead.
    one_trip = lax.min(k0, np.uint32(1)) | np.uint32(1)
    _, bits = lax.while_loop(
        lambda carry: carry[0] < one_trip, hash_counters, (jnp.uint32(0), _counters(shape))
    )
    return bits if bit_width == 32 else bits.astype(jnp.dtype(f"uint{bit_width}"))


THREEFRY_UNROLLED = define_prng_impl(
    key_shape=(2,),
    # JAX's own seed, split and fold-in: the same keys. They hash a handful of counters;
    # only bulk bits are worth unrolling, and unrolled splits compile slowly (XLA
    # duplicates each key's whole chain of splits into every consumer).
    seed=threefry_prng_impl.seed,
    split=threefry_prng_impl.split,
    random_bits=_random_bits,
    fold_in=threefry_prng_impl.fold_in,
    name="threefry2x32_unrolled",
    tag="fry_u",
)
"""JAX PRNG implementation: JAX's default Threefry-2x32-20, bits hashed in one pass."""


def fast_key(seed: int | ArrayLike) -> jax.Array:
    """A PRNG key whose numbers equal ``jax.random.key(seed)``'s, drawn faster on CPU.

    Every ``jax.random`` function and every NumPyro distribution accepts it, and so does
    every ``rng_key=`` in scm_ppl. With JAX's default ``jax_threefry_partitionable=True``
    its bits, splits and fold-ins are bit-identical to the default key's, so swapping it
    in changes no result, only the time.

    Trade-off: JAX's default hash runs on CPU as a rolled loop whose five blocks each
    read and write whole arrays; this one hashes all 20 rounds in one pass and writes
    the bits once. Medians on a shared 2-core CPU (``benchmarks/prng_speed.py``; ±30%
    run to run): 10⁷ float32 normals ~3x faster than the default key, 1.1-1.5x
    ``torch.randn``'s time; an interventional query on 10⁶ units 1.5-1.7x faster; first
    calls (compilation) no slower. On GPU, JAX's own lowering is already unrolled:
    expect no gain there. Keys of the two implementations do not mix in one array;
    convert a default key with
    ``jax.random.wrap_key_data(jax.random.key_data(key), impl=THREEFRY_UNROLLED)``.

    Parameters
    ----------
    seed
        An integer seed, as for :func:`jax.random.key`.

    Returns
    -------
    jax.Array
        A scalar typed key array.

    Examples
    --------
    >>> import jax
    >>> from scm_ppl.core import fast_key
    >>> key = fast_key(0)
    >>> bool((jax.random.normal(key, (3,)) == jax.random.normal(jax.random.key(0), (3,))).all())
    True
    """
    return jax.random.key(seed, impl=THREEFRY_UNROLLED)


def _config(name: str) -> Any:
    return getattr(jax.config, name)


# id(key) -> (weak reference to the key, its unrolled twin): keys are immutable, and a
# conversion is two small dispatches (~0.05-0.1 ms), as much as a whole small query.
_CONVERTED = LRUCache(256)


def as_query_key(key: jax.Array) -> jax.Array:
    """The key a query draws with: on CPU, a default (Threefry) key becomes its
    :data:`THREEFRY_UNROLLED` twin, which draws the same numbers sooner; anything else
    (GPU/TPU, other implementations, ``jax_threefry_partitionable=False``, where the
    two would not draw alike) is returned as it is."""
    if not (jax.default_backend() == "cpu" and _config("jax_threefry_partitionable")):
        return key
    if jax.dtypes.issubdtype(key.dtype, jax.dtypes.prng_key):
        if str(jax.random.key_impl(key)) != "threefry2x32":
            return key
    elif _config("jax_default_prng_impl") != "threefry2x32":  # raw uint32 key data
        return key
    hit = _CONVERTED.get(id(key))
    if hit is not None and hit[0]() is key:
        return hit[1]
    data = jax.random.key_data(key) if key.dtype != np.uint32 else key
    twin = jax.random.wrap_key_data(data, impl=THREEFRY_UNROLLED)
    if not isinstance(key, Tracer):  # a traced key lives one trace only
        _CONVERTED.put(id(key), (weakref.ref(key), twin))
    return twin
