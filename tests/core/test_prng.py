"""scm_ppl.prng: Random123's known answers, bit-identity with JAX's default key, and a
battery of statistical checks on the stream.

Tolerances of the statistical checks are 5 standard errors of the statistic under the
null (independent standard normals / fair bits), or p > 1e-4 for the KS test; keys are
fixed, so each check is deterministic.
"""

from __future__ import annotations

import doctest
import importlib

import jax
import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as dist
import pytest
from numpyro.infer import MCMC, NUTS
from scipy import stats

from scm_ppl import interventional
from scm_ppl.core import fast_key

prng = importlib.import_module("scm_ppl.core.prng")

# Random123 tests/kat_vectors: (rounds, counter, key, expected output), hex words.
RANDOM123_KAT = [
    (13, (0x00000000, 0x00000000), (0x00000000, 0x00000000), (0x9D1C5EC6, 0x8BD50731)),
    (13, (0xFFFFFFFF, 0xFFFFFFFF), (0xFFFFFFFF, 0xFFFFFFFF), (0xFD36D048, 0x2D17272C)),
    (13, (0x243F6A88, 0x85A308D3), (0x13198A2E, 0x03707344), (0xBA3E4725, 0xF27D669E)),
    (20, (0x00000000, 0x00000000), (0x00000000, 0x00000000), (0x6B200159, 0x99BA4EFE)),
    (20, (0xFFFFFFFF, 0xFFFFFFFF), (0xFFFFFFFF, 0xFFFFFFFF), (0x1CB996FC, 0xBB002BE7)),
    (20, (0x243F6A88, 0x85A308D3), (0x13198A2E, 0x03707344), (0xC4923A9C, 0x483DF7A0)),
    (32, (0x00000000, 0x00000000), (0x00000000, 0x00000000), (0xCEE3D47E, 0xA23DFD5C)),
    (32, (0xFFFFFFFF, 0xFFFFFFFF), (0xFFFFFFFF, 0xFFFFFFFF), (0x6E2FE0D0, 0xB1B76F82)),
    (32, (0x243F6A88, 0x85A308D3), (0x13198A2E, 0x03707344), (0xE2827716, 0xC3C05CDF)),
]

N_NORMALS = 1_000_000


def _data(key: jax.Array) -> np.ndarray:
    return np.asarray(jax.random.key_data(key))


def _correlation(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.asarray(np.corrcoef(a, b))[0, 1])


@pytest.fixture(scope="module")
def normals() -> np.ndarray:
    return np.asarray(jax.random.normal(fast_key(20260), (N_NORMALS,)), np.float64)


# ----------------------------------------------------------------- known answers
@pytest.mark.parametrize(("rounds", "counter", "key", "expected"), RANDOM123_KAT)
def test_hash_matches_random123_known_answers(rounds, counter, key, expected):
    key_words = tuple(np.uint32(w) for w in key)
    counter_words = tuple(np.uint32(w) for w in counter)
    out = prng.threefry2x32_hash(key_words, counter_words, rounds=rounds)
    assert tuple(int(w) for w in out) == expected


def test_hash_matches_random123_under_jit_and_broadcast():
    counters = jnp.asarray([[0x00000000, 0xFFFFFFFF], [0x00000000, 0xFFFFFFFF]], jnp.uint32)
    keys = jnp.asarray([[0x00000000, 0xFFFFFFFF], [0x00000000, 0xFFFFFFFF]], jnp.uint32)
    hash20 = jax.jit(lambda k, c: prng.threefry2x32_hash((k[0], k[1]), (c[0], c[1])))
    w0, w1 = hash20(keys, counters)
    assert [int(w) for w in w0] == [0x6B200159, 0x1CB996FC]
    assert [int(w) for w in w1] == [0x99BA4EFE, 0xBB002BE7]


def test_docstring_examples_run():
    assert doctest.testmod(prng).failed == 0


# ------------------------------------------------- the same numbers as the default key
@pytest.mark.parametrize("seed", [0, -1, 2**31 - 1])
def test_keys_splits_and_fold_ins_equal_the_default_keys(seed):
    fast, default = fast_key(seed), jax.random.key(seed)
    assert jax.random.key_impl(fast) != jax.random.key_impl(default)
    np.testing.assert_array_equal(_data(fast), _data(default))
    for shape in [(), (3, 5)]:
        np.testing.assert_array_equal(
            _data(jax.random.split(fast, shape)), _data(jax.random.split(default, shape))
        )
    for data in [0, 77, 2**32 - 1]:
        np.testing.assert_array_equal(
            _data(jax.random.fold_in(fast, data)), _data(jax.random.fold_in(default, data))
        )


def _every_sampler(key: jax.Array, shape: tuple[int, ...]) -> list[jax.Array]:
    bits = [jax.random.bits(key, shape, dtype) for dtype in (jnp.uint8, jnp.uint16, jnp.uint32)]
    draws = [sample(key, shape) for sample in (jax.random.normal, jax.random.gumbel)]
    return bits + draws


@pytest.mark.parametrize("shape", [(), (2, 3, 4), (1001,)])
def test_bits_and_samplers_equal_the_default_keys(shape):
    every_sampler = jax.jit(_every_sampler, static_argnums=1)
    fast, default = every_sampler(fast_key(3), shape), every_sampler(jax.random.key(3), shape)
    for fast_draw, default_draw in zip(fast, default, strict=True):
        np.testing.assert_array_equal(fast_draw, default_draw)


def test_numpyro_sampler_equals_the_default_keys():
    # Gamma draws by rejection: a while loop that keeps drawing with split keys.
    gamma = dist.Gamma(jnp.asarray([0.3, 2.5, 40.0]))
    np.testing.assert_array_equal(
        gamma.sample(fast_key(4), (5,)), gamma.sample(jax.random.key(4), (5,))
    )


def test_batched_keys_equal_the_default_keys_under_jit_and_vmap():
    draw = jax.jit(jax.vmap(lambda key, i: jax.random.normal(jax.random.fold_in(key, i), (4,))))
    fast = draw(jax.random.split(fast_key(5), 6), jnp.arange(6))
    default = draw(jax.random.split(jax.random.key(5), 6), jnp.arange(6))
    np.testing.assert_array_equal(fast, default)


def test_a_default_key_converts_to_the_fast_implementation():
    default = jax.random.split(jax.random.key(9))[1]
    converted = jax.random.wrap_key_data(jax.random.key_data(default), impl=prng.THREEFRY_UNROLLED)
    assert jax.random.key_impl(converted) == jax.random.key_impl(fast_key(0))
    np.testing.assert_array_equal(
        jax.random.normal(converted, (8,)), jax.random.normal(default, (8,))
    )


def test_interventional_query_gives_the_default_keys_answer():
    def model(n):
        with numpyro.plate("unit", n):
            x = numpyro.sample("x", dist.Normal(0.0, 1.0))
            z = numpyro.sample("z", dist.Normal(0.5 * x, 1.0))
            numpyro.sample("y", dist.Normal(x + z, 0.3))

    # x is measured (observed=): the effect of z is identified, no warning
    kwargs = {"num_samples": 2, "model_kwargs": {"n": 50}, "observed": ["x"]}
    fast = interventional(model, {"z": 1.0}, rng_key=fast_key(11), **kwargs)
    default = interventional(model, {"z": 1.0}, rng_key=jax.random.key(11), **kwargs)
    for site in ("x", "y"):
        np.testing.assert_array_equal(
            fast.samples["predictions"][site], default.samples["predictions"][site]
        )


def test_nuts_draws_equal_the_default_keys():
    # NUTS draws its momenta and tree directions inside while loops and scans.
    def model():
        mu = numpyro.sample("mu", dist.Normal(0.0, 1.0))
        numpyro.sample("y", dist.Normal(mu, 1.0), obs=jnp.asarray([0.3, 1.2, -0.4]))

    def draws(key: jax.Array) -> np.ndarray:
        mcmc = MCMC(NUTS(model), num_warmup=30, num_samples=30, progress_bar=False)
        mcmc.run(key)
        return np.asarray(mcmc.get_samples()["mu"])

    np.testing.assert_array_equal(draws(fast_key(12)), draws(jax.random.key(12)))


def test_too_many_numbers_in_one_call_are_refused():
    with pytest.raises(NotImplementedError, match="at most 2\\*\\*32 - 1 numbers per call"):
        # Lowering traces the generator without allocating its 16 GiB answer.
        jax.jit(lambda k: jax.random.bits(k, (2**16, 2**16))).lower(fast_key(0))


# ------------------------------------------------------------- distinct streams
def test_split_and_fold_in_give_distinct_keys():
    key = fast_key(0)
    split = _data(jax.random.split(key, 4096))
    folded = _data(jax.vmap(lambda i: jax.random.fold_in(key, i))(jnp.arange(4096)))
    assert len({tuple(k) for k in split}) == 4096
    assert len({tuple(k) for k in folded}) == 4096
    # Children differ from their parent, and a child's children from its siblings'.
    grandchildren = _data(jax.vmap(lambda k: jax.random.split(k, 2))(jax.random.split(key, 64)))
    assert len({tuple(k) for k in grandchildren.reshape(-1, 2)} | {tuple(_data(key))}) == 129


def test_split_streams_are_uncorrelated():
    streams, length = 64, 20_000
    keys = jax.random.split(fast_key(7), streams)
    draws = np.asarray(jax.vmap(lambda k: jax.random.normal(k, (length,)))(keys), np.float64)
    corr = np.asarray(np.corrcoef(draws))[np.triu_indices(streams, 1)]
    # 2016 pairs, each r ~ N(0, 1/length): the largest |r| stays under ~5 standard errors.
    assert np.abs(corr).max() < 5.0 / np.sqrt(length)
    # Neighbouring streams do not lead or lag each other either.
    lagged = [_correlation(draws[i, 1:], draws[i + 1, :-1]) for i in range(streams - 1)]
    assert np.abs(lagged).max() < 5.0 / np.sqrt(length)


# --------------------------------------------------------------- the stream itself
def test_normal_moments(normals):
    n = normals.size
    assert abs(normals.mean()) < 5.0 / np.sqrt(n)
    assert abs(normals.var() - 1.0) < 5.0 * np.sqrt(2.0 / n)
    assert abs(stats.skew(normals)) < 5.0 * np.sqrt(6.0 / n)
    assert abs(stats.kurtosis(normals)) < 5.0 * np.sqrt(24.0 / n)


def test_normals_pass_kolmogorov_smirnov(normals):
    assert stats.kstest(normals, "norm").pvalue > 1e-4


def test_no_serial_correlation(normals):
    n = normals.size
    for lag in (1, 2, 3, 4, 7, 16):
        r = _correlation(normals[:-lag], normals[lag:])
        assert abs(r) < 5.0 / np.sqrt(n), lag


def test_every_bit_is_fair_and_bytes_are_uniform():
    words = np.asarray(jax.random.bits(fast_key(8), (N_NORMALS,), jnp.uint32))
    ones = np.unpackbits(words.view(np.uint8)).reshape(-1, 32).mean(0)
    assert np.abs(ones - 0.5).max() < 5.0 * 0.5 / np.sqrt(N_NORMALS)
    counts = np.bincount(words.view(np.uint8), minlength=256)
    assert stats.chisquare(counts).pvalue > 1e-4


def test_queries_draw_with_the_unrolled_twin_of_a_default_key_on_cpu():
    key = jax.random.key(3)
    twin = prng.as_query_key(key)
    assert jax.random.key_impl(twin) == jax.random.key_impl(fast_key(0))
    assert prng.as_query_key(key) is twin  # converted once per key
    np.testing.assert_array_equal(jax.random.normal(twin, (5,)), jax.random.normal(key, (5,)))
    raw = jax.random.PRNGKey(3)  # raw uint32 key data: the default implementation's
    np.testing.assert_array_equal(
        jax.random.normal(prng.as_query_key(raw), (5,)), jax.random.normal(raw, (5,))
    )
    rbg = jax.random.key(3, impl="rbg")
    assert prng.as_query_key(rbg) is rbg  # another generator: left alone
    with jax.threefry_partitionable(False):  # the twin would draw other numbers: left alone
        assert prng.as_query_key(jax.random.key(4)).dtype == jax.random.key(4).dtype
