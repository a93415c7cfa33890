"""Diagnostics of joint NUTS runs (``scm_ppl.core.inference.nuts_diagnostics``)."""

from __future__ import annotations

import numpy as np
from numpyro.diagnostics import effective_sample_size

from scm_ppl.core.inference import nuts_diagnostics


def test_an_antithetic_chain_gets_stans_ess_floor_not_a_negative_ess() -> None:
    """An AR(1) chain with phi = -0.9: numpyro's estimator, with no floor on tau, reports a
    negative ESS (a joint run over 1000 units once said -142,266); with Stan's floor
    (tau >= 1 / log10 N; Vehtari et al. 2021, eq. 11) it is N log10 N = 3000. A plain
    chain keeps numpyro's value."""
    e = np.random.default_rng(0).normal(size=2000)[1000:]
    x = np.zeros(1000)
    for t in range(1, 1000):
        x[t] = -0.9 * x[t - 1] + e[t]
    antithetic = x[None, :]
    assert effective_sample_size(antithetic) < 0
    plain = np.random.default_rng(1).normal(size=(1, 1000))
    got = nuts_diagnostics({"a": antithetic}, np.zeros((1, 1000), bool))
    np.testing.assert_allclose(got["min_ess"], 1000 * np.log10(1000), rtol=1e-6)
    got = nuts_diagnostics({"a": plain}, np.zeros((1, 1000), bool))
    np.testing.assert_allclose(got["min_ess"], effective_sample_size(plain), rtol=1e-6)


def test_a_constant_site_neither_hides_a_bad_r_hat_nor_passes_for_a_good_one() -> None:
    from scm_ppl.core.inference import nuts_problems

    rng = np.random.default_rng(2)
    stuck = np.stack([rng.normal(size=200), 5.0 + rng.normal(size=200)])  # r_hat >> 1.05
    constant = np.zeros((2, 200))  # r_hat and ESS undefined (NaN)
    got = nuts_diagnostics({"c": constant, "s": stuck}, np.zeros((2, 200), bool))
    assert got["max_r_hat"] > 1.05 and np.isfinite(got["min_ess"])
    assert any("r_hat" in p for p in nuts_problems(got, min_ess=100))
    only_constant = nuts_diagnostics({"c": constant}, np.zeros((2, 200), bool))
    assert np.isnan(only_constant["max_r_hat"])
    assert nuts_problems(only_constant, min_ess=100) == ["r_hat undefined", "ESS undefined"]


def test_the_fit_cache_key_takes_typed_prng_keys_by_value() -> None:
    import jax

    from scm_ppl.core.program import baked_arguments_key

    def key(seed):
        return baked_arguments_key((), {"k": jax.random.key(seed)})

    assert key(0) == key(0) and key(0) != key(1)
