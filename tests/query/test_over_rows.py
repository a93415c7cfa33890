"""Population effects over given rows (issue 18): exact against a hand abduction, and
impossible evidence named, then dropped only when asked."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as dist
import pandas as pd
import pytest

from scm_ppl.errors import DataWarning, EvidenceError
from scm_ppl.query import ate, ett


def linear(n=1):
    with numpyro.plate("unit", n):
        x = numpyro.sample("x", dist.Normal(0.0, 1.0))
        t = numpyro.sample("t", dist.Bernoulli(logits=x))
        numpyro.sample("y", dist.Normal((1.0 + x) * t + x, 0.5))


ROWS = pd.DataFrame({"x": [0.3, -1.0, 2.0, 0.5], "t": [1, 0, 1, 1], "y": [1.0, -0.7, 5.5, 2.0]})


def test_per_row_effects_equal_a_hand_abduction_exactly():
    # Linear-Gaussian: u = (y - (1 + x) t - x) / 0.5; y_1 - y_0 = 1 + x for every row.
    key = jax.random.key(0)
    est = ett(linear, "t", "y", rows=ROWS, rng_key=key, num_samples=20)
    treated = ROWS[ROWS.t == 1]
    np.testing.assert_allclose(est.per_row[0], 1.0 + treated.x, rtol=1e-6)
    assert est.value == pytest.approx(float(np.mean(1.0 + treated.x)), rel=1e-6)
    assert est.num_rows == 3 and est.interval[0] <= est.value <= est.interval[1]
    assert "bootstrap over 3 rows" in est.uncertainty
    whole = ate([linear, linear], "t", "y", rows=ROWS, rng_key=key, num_samples=20)
    assert whole.value == pytest.approx(float(np.mean(1.0 + ROWS.x)), rel=1e-6)
    assert whole.num_fits == 2 and "over 2 fits" in whole.uncertainty


def gate(n=1):
    with numpyro.plate("unit", n):
        x = numpyro.sample("x", dist.Normal(0.0, 1.0))
        t = numpyro.sample("t", dist.Bernoulli(logits=jnp.where(x > 0, 50.0, -200.0)))
        numpyro.sample("y", dist.Normal(2.0 * t, 1.0))


def test_impossible_evidence_lists_the_units_and_drops_them_only_when_asked():
    rows = pd.DataFrame({"x": [1.0, -1.0, 0.5, -2.0], "t": [1, 1, 1, 1], "y": [2.0] * 4})
    with pytest.raises(EvidenceError, match=r"unit\(s\) \[1, 3\] \(2 in all"):
        ett(gate, "t", "y", rows=rows, rng_key=jax.random.key(0), num_samples=10)
    with pytest.warns(DataWarning, match=r"Dropped 2 of 4 row\(s\) .*rows \[1, 3\]"):
        est = ett(gate, "t", "y", rows=rows, rng_key=jax.random.key(0), num_samples=10,
                  impossible="drop")  # fmt: skip
    assert est.num_rows == 2 and est.attrs["num_dropped"] == 2
    assert est.value == pytest.approx(2.0, rel=1e-5)
