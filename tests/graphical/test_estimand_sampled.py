"""Identified estimands evaluated on continuous rows: data, a program's samples, a fit.

The truths are linear-Gaussian, so ``E[y | do(x = v)]`` is a line with a known slope. The
binned plug-in has a discretisation bias (see :mod:`scm_ppl.graphical.estimand_sampled`); measured
at 10⁶ rows on the interior bins (the two open-ended tail bins are wide, so the value
they stand for is the least precise): back-door slope within 0.5% at 12–16 bins, front-door
within 2% at 6–12 bins. The tolerances below are those plus a margin for 2·10⁵ rows.
"""

import jax
import networkx as nx
import numpy as np
import numpyro
import numpyro.distributions as dist
import pytest

from scm_ppl import fit, identify, interventional
from scm_ppl.errors import DataError, NotIdentifiableError, SettingsError
from scm_ppl.graphical import DiscreteJoint

ROWS = 200_000


def backdoor_rows(n=ROWS, seed=0):
    rng = np.random.default_rng(seed)
    z = rng.normal(size=n)
    x = z + rng.normal(size=n)
    y = 2.0 * x + 3.0 * z + rng.normal(size=n)
    return {"x": x, "y": y, "z": z}


def backdoor_graph():
    return nx.DiGraph([("z", "x"), ("z", "y"), ("x", "y")])


def front_door(n=1):
    with numpyro.plate("unit", n):
        u = numpyro.sample("u", dist.Normal(0.0, 1.0))
        x = numpyro.sample("x", dist.Normal(u, 1.0))
        m = numpyro.sample("m", dist.Normal(0.8 * x, 1.0))
        numpyro.sample("y", dist.Normal(1.5 * m + 2.0 * u, 1.0))


def interior_slope(evaluation, treatment="x", outcome="y"):
    values = evaluation.values[treatment][1:-1]
    return np.polyfit(values, evaluation.outcome_means[outcome][1:-1], 1)[0]


def test_backdoor_on_continuous_data_recovers_the_effect_not_the_association():
    rows = backdoor_rows()
    result = identify(backdoor_graph(), "x", "y")
    evaluation = result.evaluate_sampled(rows, bins=12)
    assert evaluation.axes == ("x",) and evaluation.num_rows == ROWS
    assert evaluation.undefined == 0
    assert interior_slope(evaluation) == pytest.approx(2.0, rel=0.02)
    association = np.polyfit(rows["x"], rows["y"], 1)[0]  # 2 + 3/2: confounded
    assert association == pytest.approx(3.5, rel=0.02)
    dist_sum = evaluation.distribution.sum(axis=-1)
    np.testing.assert_allclose(dist_sum, 1.0, atol=1e-9)


def test_front_door_on_a_programs_samples_matches_its_interventional_answer():
    result = identify(front_door, "x", "y")
    assert result.adjustment is not None and result.adjustment.kind == "frontdoor"
    evaluation = result.evaluate_sampled(
        front_door, rng_key=jax.random.key(0), num_samples=ROWS, bins=8
    )
    assert interior_slope(evaluation) == pytest.approx(1.2, rel=0.05)
    # The program's own answer at two interior bin values: both are 1.2·v up to MC error.
    values = evaluation.values["x"][[2, 5]]
    for i, v in zip((2, 5), values, strict=True):
        own = interventional(
            front_door, {"x": float(v)}, num_samples=20_000, rng_key=jax.random.key(i)
        )
        own_mean = float(own.samples["predictions"]["y"].mean())
        # sd(y | do(x)) = sqrt(1.5² + 2² + 1) ≈ 2.7, so the MC s.e. is 0.02.
        assert own_mean == pytest.approx(1.2 * v, abs=0.08)
        assert evaluation.outcome_means["y"][i] == pytest.approx(own_mean, abs=0.1)


def linear_backdoor(n=1):
    a = numpyro.param("a", 0.0)
    b = numpyro.param("b", 0.0)
    c = numpyro.param("c", 0.0)
    with numpyro.plate("unit", n):
        z = numpyro.sample("z", dist.Normal(0.0, 1.0))
        x = numpyro.sample("x", dist.Normal(a * z, 1.0))
        numpyro.sample("y", dist.Normal(b * x + c * z, 1.0))


def test_a_fitted_scms_observational_distribution_evaluates_the_estimand():
    fitted = fit(
        linear_backdoor,
        backdoor_rows(5_000, seed=1),
        num_epochs=300,
        batch_size=None,
        learning_rate=0.05,
        rng_key=jax.random.key(0),
        progress=False,
    )
    assert float(fitted.params["b"]) == pytest.approx(2.0, abs=0.05)
    # A root sample site with two children reads as a latent confounder unless named.
    result = identify(fitted, "x", "y", observed=["x", "y", "z"])
    evaluation = result.evaluate_sampled(
        fitted, rng_key=jax.random.key(1), num_samples=ROWS, bins=12
    )
    assert interior_slope(evaluation) == pytest.approx(float(fitted.params["b"]), rel=0.02)


def test_discrete_rows_give_the_exact_plug_in_answer():
    rng = np.random.default_rng(3)
    z = rng.integers(0, 3, size=20_000)
    x = (rng.random(z.size) < 0.2 + 0.3 * z).astype(int)
    y = (rng.random(z.size) < 0.1 + 0.3 * x + 0.1 * z).astype(int)
    result = identify(backdoor_graph(), "x", "y")
    evaluation = result.evaluate_sampled({"x": x, "y": y, "z": z})
    exact = result.evaluate(DiscreteJoint.from_data({"x": x, "y": y, "z": z}))
    np.testing.assert_allclose(evaluation.distribution, exact, atol=1e-12)
    np.testing.assert_allclose(evaluation.outcome_means["y"], exact[:, 1], atol=1e-12)
    np.testing.assert_array_equal(evaluation.values["x"], [0.0, 1.0])


def test_bad_input_is_named():
    result = identify(backdoor_graph(), "x", "y")
    rows = backdoor_rows(1_000)
    with pytest.raises(DataError, match=r"lacks the columns \['z'\]"):
        result.evaluate_sampled({"x": rows["x"], "y": rows["y"]})
    with pytest.raises(DataError, match="NaN or inf"):
        result.evaluate_sampled({**rows, "z": np.where(np.arange(1_000) == 5, np.nan, rows["z"])})
    with pytest.raises(DataError, match="must be 1-D and as long"):
        result.evaluate_sampled({**rows, "z": rows["z"][:10]})
    with pytest.raises(SettingsError, match="bins must be a positive integer"):
        result.evaluate_sampled(rows, bins=0)
    with pytest.raises(SettingsError, match=r"max_levels must be a positive integer; got 2\.5"):
        result.evaluate_sampled(rows, max_levels=2.5)  # type: ignore[arg-type]
    with pytest.raises(SettingsError, match="at least 2"):
        result.evaluate_sampled(rows, bins=1)
    with pytest.raises(SettingsError, match="needs data"):
        result.evaluate_sampled([1, 2, 3])  # type: ignore[arg-type]
    with pytest.raises(SettingsError, match="rng_key must be a JAX PRNG key"):
        result.evaluate_sampled(front_door)
    bow = nx.DiGraph([("x", "y")])
    bow.graph["bidirected"] = [("x", "y")]
    with pytest.raises(NotIdentifiableError, match="no formula to evaluate"):
        identify(bow, "x", "y").evaluate_sampled(rows)


def test_docstring_examples_run():
    import doctest
    import importlib

    module = importlib.import_module("scm_ppl.graphical.estimand_sampled")
    assert doctest.testmod(module).failed == 0
