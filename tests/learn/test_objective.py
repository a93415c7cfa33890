"""What a fit optimises (``scm_ppl.learn.objective``): the one cache key of a compiled
epoch, and the one column statistic every fit scales its encoder's input by.

Nothing here compiles: the key and the statistics are plain Python and NumPy.
"""

from __future__ import annotations

import jax
import numpy as np
import numpyro
import numpyro.distributions as dist
import pytest
from numpyro.distributions import constraints

from scm_ppl.core.intervention import as_intervention
from scm_ppl.learn.data import Structure
from scm_ppl.learn.icm_penalty import IcmPair, Layer
from scm_ppl.learn.objective import Objective, column_stats, feature_stats


def model(n, offset, key):
    numpyro.param("m", 1.0, constraint=constraints.positive)
    with numpyro.plate("unit", n):
        z = numpyro.sample("z", dist.Uniform(0.0, 2.0))
        numpyro.sample("x", dist.Normal(z + offset, 1.0))


def other_model(n, offset, key):
    model(n, offset, key)


def _settings(**change):
    """An objective's constructor arguments, every array and constraint built afresh (so
    equal settings are equal by value, never by identity)."""
    settings = dict(
        model=model,
        plate="unit",
        size_arg="n",
        kwargs=_kwargs(),
        regimes=[{}],
        labels=[-1],
        structure=Structure(
            params={"m": 1.0},
            constraints={"m": constraints.positive},
            globals={},
            supports=_supports(),
        ),
        local={"z": ()},
        num_particles=1,
        bayesian=False,
        icm_penalty=0.0,
        icm_pairs=(),
    )
    return {**settings, **change}


def _key(settings=None, optimizer_key="adam", sizes=((100, 10),), steps=10, layout=()):
    objective = Objective(**(settings or _settings()))
    return objective.epoch_key(optimizer_key, list(sizes), steps, *layout)


def _structure(**change):
    return _settings()["structure"]._replace(**change)


LAYER = Layer("w", "w", (), "dense", False, ())
REAL = constraints.real


def _kwargs(offset=None, key=0):
    offset = np.zeros(3, np.float32) if offset is None else offset
    return {"offset": np.array(offset), "key": jax.random.key(key)}


def _supports(upper=2.0, **more):
    return {"z": constraints.interval(0.0, np.float32(upper)), "x": REAL, **more}


INGREDIENTS = {
    "program": _settings(model=other_model),
    "plate": _settings(plate="row"),
    "size argument": _settings(size_arg="m"),
    "keyword array values": _settings(kwargs=_kwargs(offset=np.ones(3, np.float32))),
    "keyword array shape": _settings(kwargs=_kwargs(offset=np.zeros(4, np.float32))),
    "keyword PRNG key": _settings(kwargs=_kwargs(key=1)),
    "regimes": _settings(regimes=[{"x": as_intervention("x", np.float32(1.0))}]),
    "labels": _settings(labels=[0]),
    "support bounds": _settings(structure=_structure(supports=_supports(upper=3.0))),
    "parameter constraints": _settings(
        structure=_structure(constraints={"m": constraints.interval(0.0, 1.0)})
    ),
    "local latent shape": _settings(local={"z": (2,)}),
    "no local latent": _settings(local={}),
    "discrete local latent": _settings(
        local={"z": (), "k": ()},
        structure=_structure(supports=_supports(k=constraints.boolean)),
    ),
    "particles": _settings(num_particles=4),
    "bayesian": _settings(bayesian=True),
    "ICM penalty": _settings(icm_penalty=0.5),
    "ICM pairs": _settings(icm_pairs=[IcmPair("x", LAYER, ())]),
}


def test_equal_objectives_share_one_epoch_key():
    # Fresh arrays, PRNG keys and constraint objects: equal by value, so one compile.
    assert _key() == _key()
    assert hash(_key()) == hash(_key())


@pytest.mark.parametrize("name", sorted(INGREDIENTS))
def test_each_thing_the_epoch_reads_off_the_objective_changes_its_key(name):
    assert _key(INGREDIENTS[name]) != _key(), name


@pytest.mark.parametrize(
    "shape",
    [
        dict(optimizer_key="sgd"),
        dict(sizes=((100, 20),)),
        dict(sizes=((100, 10), (50, 5))),
        dict(steps=11),
        dict(layout=(1000, 1000.0)),  # a chunk's rows (streaming)
        dict(layout=("mesh", "unit")),  # the device mesh (data-parallel)
    ],
)
def test_the_epoch_shape_and_layout_change_its_key(shape):
    assert _key(**shape) != _key()


def _old_feature_stats(train):
    """The in-memory statistic before it was shared (float32 throughout)."""
    mean, std = {}, {}
    for site in train[0]:
        column = np.concatenate([b[site] for b in train]).astype(np.float32)
        mean[site] = column.mean(axis=0)
        std[site] = np.where(column.std(axis=0) > 0, column.std(axis=0), 1.0)
    return mean, std


def test_column_stats_give_one_answer_in_memory_in_chunks_and_over_processes():
    rng = np.random.default_rng(0)
    rows = {
        "x": (3.0 + 2.0 * rng.normal(size=1000)).astype(np.float32),
        "img": rng.normal(size=(1000, 2, 3)).astype(np.float32),
        "k": rng.integers(0, 3, size=1000),  # an integer-coded category
        "c": np.full(1000, 0.1, np.float32),  # constant: spread 1, not 0
    }
    shapes = {k: v.shape[1:] for k, v in rows.items()}
    in_memory = feature_stats(
        [{k: v[:400] for k, v in rows.items()}, {k: v[400:] for k, v in rows.items()}]
    )

    def chunks():  # as a fit on StreamedRows reads them: 300 rows at a time
        return iter([{k: v[a : a + 300] for k, v in rows.items()} for a in range(0, 1000, 300)])

    streamed = column_stats(chunks, shapes, 1000)
    # Two processes of 500 rows each: this one's partial sums, plus the other's (as the
    # all-gather adds them): first each column's sum, then its squared deviations.
    mine, other = ({k: v[h] for k, v in rows.items()} for h in (slice(500), slice(500, None)))
    calls, means = iter([*sorted(shapes), *sorted(shapes)]), {}  # the collectives' order

    def over_two_processes(part):
        k = next(calls)
        x = other[k].astype(np.float64)
        if k not in means:
            means[k] = (part + x.sum(axis=0)) / 1000
            return part + x.sum(axis=0)
        return part + ((x - means[k]) ** 2).sum(axis=0)

    parallel = column_stats(lambda: iter([mine]), shapes, 1000, over_two_processes)
    for stats in (streamed, parallel):
        for what in ("mean", "std"):
            for k in rows:  # float64 sums in another order, rounded to float32: equal
                np.testing.assert_allclose(stats[what][k], in_memory[what][k], rtol=1e-7, atol=0)
    assert float(in_memory["std"]["c"]) == 1.0
    assert in_memory["mean"]["img"].shape == (2, 3) and in_memory["mean"]["x"].dtype == np.float32
    # The float32 statistic it replaces, to float32 round-off (a few ulp).
    old_mean, old_std = _old_feature_stats([rows])
    for k in ("x", "img", "k"):
        np.testing.assert_allclose(in_memory["mean"][k], old_mean[k], rtol=2e-6, atol=1e-6)
        np.testing.assert_allclose(in_memory["std"][k], old_std[k], rtol=2e-6)


def test_column_stats_pairs_columns_in_one_order_whatever_order_they_are_given() -> None:
    # Across processes ``total`` is a collective: every process must reduce the same
    # column in each call, though each user may list the columns in its own order.
    x = np.array([1.0, 2.0, 3.0], np.float32)
    y = np.array([10.0, 20.0, 40.0], np.float32)
    first_pass = []
    for given in ({"x": x, "y": y}, {"y": y, "x": x}):
        reduced: list[float] = []

        def total(v: np.ndarray, reduced=reduced) -> np.ndarray:
            reduced.append(float(v))
            return v

        shapes = {k: () for k in given}
        column_stats(lambda given=given: iter([given]), shapes, rows=3, total=total)
        first_pass.append(reduced[:2])
    assert first_pass[0] == first_pass[1] == [6.0, 70.0]  # x's sum, then y's
