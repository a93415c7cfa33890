"""Data-parallel fits (``scm_ppl.learn.distributed``): rows sharded over devices take
the steps one device takes on all rows, to float round-off.

The check here runs two CPU devices in one process (``--xla_force_host_platform_device_count``):
the same ``shard_map`` program and all-reduce that two processes run
(``tests/query/test_multiprocess.py`` runs it over two processes joined by
``jax.distributed``).
"""

from __future__ import annotations

import textwrap

import pytest

from scm_ppl.errors import DataError
from scm_ppl.learn import shard_rows
from scm_ppl.learn.distributed import check_agreement, unsupported
from tests._devices import run_on_cpu_devices

_TWO_DEVICES = textwrap.dedent(
    """
    import jax, numpy as np, numpyro, numpyro.distributions as dist
    from models.latent_mechanism import model, rows
    from scm_ppl import fit, shard_units
    from scm_ppl.errors import DataError, SettingsError

    assert jax.device_count() == 2, jax.devices()

    n = 512
    data = rows(n)
    sharded = shard_units(data, axis=0)

    def values(f):
        return np.array([float(f.params["w"]), float(f.params["s"]), float(f.point["beta"])])

    worst = 0.0
    cases = [  # minibatches with a local latent (same importance draws), SVI on full batches
        (dict(method="map", latent="U", batch_size=128, num_particles=4), "U"),
        (dict(method="svi", batch_size=None, num_samples=10), None),
    ]
    for options, latent in cases:
        m = model
        if latent is None:
            def m(n):
                beta = numpyro.sample("beta", dist.Normal(0.0, 1.0))
                with numpyro.plate("unit", n):
                    x = numpyro.sample("X", dist.Normal(0.0, 1.0))
                    numpyro.sample("Y", dist.Normal(beta * x, 1.0))
        for epochs in (1, 2, 3):
            kw = dict(num_epochs=epochs, validation_fraction=0.0, learning_rate=0.05,
                      progress=False, rng_key=jax.random.key(3), **options)
            one, two = fit(m, data, **kw), fit(m, sharded, **kw)
            assert two.settings["data_parallel"]["devices"] == 2, two.settings
            assert two.settings["num_rows"] == n
            np.testing.assert_allclose(two.losses, one.losses, rtol=1e-6)
            if latent is None:
                a, b = one.posterior_loc["beta"], two.posterior_loc["beta"]
            else:
                a, b = values(one), values(two)
            gap = float(np.max(np.abs(np.asarray(a) - np.asarray(b)) / np.maximum(np.abs(a), 1e-3)))
            worst = max(worst, gap)
            assert gap <= 1e-6, (options, epochs, a, b)
    try:
        fit(model, sharded, latent="U", validation_fraction=0.1, progress=False)
    except SettingsError as err:
        assert "does not support a validation split" in str(err), err
    else:
        raise AssertionError("validation split not refused")
    try:
        fit(model, {"X": sharded["X"], "Y": data["Y"]}, latent="U", progress=False)
    except DataError as err:
        assert "Columns ['Y'] are not sharded over devices" in str(err), err
    else:
        raise AssertionError("mixed columns not refused")
    wide = shard_units({"X": np.zeros((4, 2), np.float32), "Y": np.zeros((4, 2), np.float32)},
                       axis=1)
    try:
        fit(model, wide, latent="U", progress=False)
    except DataError as err:
        assert "sharded along the unit axis alone" in str(err), err
    else:
        raise AssertionError("columns sharded along another axis not refused")
    print(f"worst relative gap {worst:.1e}")
    print("ok")
    """
)


# A subprocess with two CPU devices compiles both fits twice: ~35 s alone, ~80 s beside
# other tests, so it runs with the slow tests (the 2-process test checks the same).
@pytest.mark.slow
def test_two_devices_take_the_steps_of_one():
    run = run_on_cpu_devices(_TWO_DEVICES, 2)
    assert run.returncode == 0, run.stderr[-3000:]
    assert run.stdout.strip().endswith("ok"), run.stdout


def test_processes_with_unequal_rows_or_columns_are_refused():
    check_agreement([500, 500], [7, 7], "X: float32[]")
    with pytest.raises(DataError, match=r"different numbers of rows: \[500, 400\].*holds 400"):
        check_agreement([500, 400], [7, 7], "X: float32[]")
    with pytest.raises(DataError, match=r"Process\(es\) \[1\] hold columns that differ"):
        check_agreement([500, 500], [7, 8], "X: float32[]")


def test_settings_a_fit_over_rows_elsewhere_cannot_honour():
    assert unsupported("map", 0.0, 0.0, None, None, "U", "unit", "n", {}, "raise") is None
    assert "method='nuts'" in str(unsupported("nuts", None, 0.0, None, None))
    assert unsupported("map", None, 0.0, [{"x": 1.0}], [0, -1]) == "interventional regimes"
    assert unsupported("svi", None, 0.5, None, None) == "the ICM penalty"
    assert "missing='drop'" in str(unsupported("map", None, 0.0, None, None, "drop"))


def test_shard_rows_refuses_what_is_not_rows():
    with pytest.raises(DataError, match=r"takes this process's rows as \{site: array\}.*list"):
        shard_rows([1.0, 2.0])  # type: ignore[arg-type]
    with pytest.raises(DataError, match=r"columns have rows \{'x': 3, 'y': 2\}"):
        shard_rows({"x": [1.0, 2.0, 3.0], "y": [1.0, 2.0]})
    with pytest.raises(DataError, match=r"columns have rows \{'x': None\}"):
        shard_rows({"x": 1.0})
    with pytest.raises(DataError, match=r"not numeric: \{'k': '<U1'\}; code labels as integers"):
        shard_rows({"x": [1.0, 2.0], "k": ["a", "b"]})
