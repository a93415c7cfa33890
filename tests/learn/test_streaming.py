"""Fits on rows streamed from disk (``scm_ppl.learn.streaming``): the same steps as on the
same rows in memory, read a chunk at a time, every row once per epoch."""

from __future__ import annotations

import jax
import numpy as np
import numpyro
import numpyro.distributions as dist
import pytest
from numpyro.distributions import constraints

from models import latent_mechanism
from models.latent_mechanism import model
from scm_ppl import fit
from scm_ppl.errors import DataError, SettingsError
from scm_ppl.learn import StreamedRows

N, CHUNK = 1000, 300  # 4 chunks, the last one of 100 rows


def _rows(n: int = N) -> dict[str, np.ndarray]:
    return latent_mechanism.rows(n, seed=0)


def _files(tmp_path, rows) -> dict[str, str]:
    tmp_path.mkdir(exist_ok=True)
    paths = {}
    for name, column in rows.items():
        paths[name] = str(tmp_path / f"{name}.npy")
        np.save(paths[name], column)
    return paths


def _fit(source, **options):
    settings = dict(batch_size=50, num_epochs=2, num_particles=4, learning_rate=0.05)
    return fit(model, source, latent="U", rng_key=jax.random.key(1), progress=False,
               **settings, **options)  # fmt: skip


def _values(f) -> np.ndarray:
    return np.array([float(f.params["w"]), float(f.params["s"]), float(f.point["beta"])])


def test_streamed_from_disk_takes_the_steps_of_the_rows_in_memory(tmp_path):
    rows = _rows()
    paths = _files(tmp_path, rows)
    in_memory = StreamedRows(rows, chunk_rows=CHUNK)
    on_disk = StreamedRows(paths, chunk_rows=CHUNK)
    mapped = StreamedRows(
        {k: np.load(p, mmap_mode="r") for k, p in paths.items()}, chunk_rows=CHUNK
    )
    fits = [_fit(s) for s in (in_memory, on_disk, mapped)]
    for other in fits[1:]:  # the same minibatches, the same arithmetic: the same numbers
        np.testing.assert_array_equal(_values(other), _values(fits[0]))
        np.testing.assert_array_equal(other.losses, fits[0].losses)
    assert fits[1].settings["streamed"] == {"chunk_rows": CHUNK, "chunks": 4}
    assert fits[1].settings["num_rows"] == N
    assert fits[1].settings["steps_per_epoch"] == 3 * 6 + 2  # 300 rows: 6 of 50; 100: 2
    # Never more than a chunk read at once; the first chunk for the checks, two passes for
    # the latent proposal's scaling, then each epoch reads every chunk once, in its order.
    chunks = on_disk.chunks
    assert max(b - a for a, b in on_disk.reads) == CHUNK
    assert on_disk.reads[:1] == chunks[:1]
    assert on_disk.reads[1:9] == chunks + chunks
    epochs = on_disk.reads[9:]
    assert len(epochs) == 8
    for at in (0, 4):
        assert sorted(epochs[at : at + 4]) == chunks
    assert epochs[:4] != chunks  # block shuffling: the order of the chunks is random


def test_streamed_fit_finds_the_least_squares_line(tmp_path):
    def line(n):
        w = numpyro.param("w", 0.0)
        b = numpyro.param("b", 0.0)
        with numpyro.plate("unit", n):
            x = numpyro.sample("x", dist.Normal(0.0, 1.0))
            numpyro.sample("y", dist.Normal(w * x + b, 0.5))

    rng = np.random.default_rng(2)
    x = rng.normal(size=4000).astype(np.float32)
    y = (1.5 * x - 0.5 + 0.5 * rng.normal(size=4000)).astype(np.float32)
    source = StreamedRows(_files(tmp_path, {"x": x, "y": y}), chunk_rows=1000)
    fitted = fit(line, source, batch_size=200, num_epochs=20, learning_rate=0.02,
                 progress=False)  # fmt: skip
    slope, intercept = np.polyfit(x, y, 1)
    # the least-squares optimum; the gap is the last steps' minibatch noise (Adam, lr 0.02)
    assert abs(float(fitted.params["w"]) - slope) < 0.03
    assert abs(float(fitted.params["b"]) - intercept) < 0.03


def test_bad_streamed_rows_are_refused(tmp_path):
    rows = _rows()
    paths = _files(tmp_path, rows)
    with pytest.raises(DataError, match=r"different numbers of rows: \{'X': 1000, 'Y': 999\}"):
        StreamedRows({"X": paths["X"], "Y": rows["Y"][:-1]})
    with pytest.raises(DataError, match=r"cannot read .* as \.npy"):
        (tmp_path / "bad.npy").write_text("not an array")
        StreamedRows({"X": str(tmp_path / "bad.npy")})
    fortran = str(tmp_path / "f.npy")
    np.save(fortran, np.asfortranarray(np.zeros((10, 2), np.float32)))
    with pytest.raises(DataError, match=r"C-ordered .* Fortran order"):
        StreamedRows({"X": fortran})
    with pytest.raises(DataError, match=r"Column 'X' of StreamedRows is list"):
        StreamedRows({"X": [1.0, 2.0]})
    with pytest.raises(DataError, match=r"StreamedRows takes \{site: path .*got list"):
        StreamedRows([paths["X"]])  # type: ignore[arg-type]
    with pytest.raises(DataError, match=r"columns have no rows"):
        StreamedRows({"X": np.zeros(0, np.float32)})
    short = StreamedRows({"X": _files(tmp_path / "short", rows)["X"]}, chunk_rows=CHUNK)
    with open(tmp_path / "short" / "X.npy", "r+b") as f:  # the file shrank since
        f.truncate(1000)
    with pytest.raises(DataError, match=r"ended before row 300 \(read 218 of 300 rows\)"):
        short.read(0, 300)
    source = StreamedRows(paths, chunk_rows=CHUNK)
    with pytest.raises(SettingsError, match=r"StreamedRows does not support a validation split"):
        _fit(source, validation_fraction=0.1)
    with pytest.raises(SettingsError, match=r"does not support method='nuts'"):
        fit(model, source, latent="U", method="nuts", progress=False)
    bad = dict(rows)
    bad["Y"] = bad["Y"].copy()
    bad["Y"][700] = np.nan  # in the third chunk: found when it is read
    with pytest.raises(DataError, match=r"'Y' hold 1 NaN/inf value\(s\) in rows 600\.\.899"):
        _fit(StreamedRows(_files(tmp_path, bad), chunk_rows=CHUNK))


def _coin(n):
    p = numpyro.param("p", 0.5, constraint=constraints.unit_interval)
    with numpyro.plate("unit", n):
        numpyro.sample("B", dist.Bernoulli(p))


def test_a_later_chunk_outside_the_support_or_type_is_refused(tmp_path) -> None:
    # The first chunk is checked like any fit's data; the rows after it must be too, or a
    # 2 in a Bernoulli column (or a fraction cast to an integer) is scored without a word.
    settings = dict(batch_size=50, num_epochs=1, progress=False)
    for bad, match in ((2.0, "outside the support"), (0.5, "are not")):
        b = np.zeros(400)
        b[350] = bad
        source = StreamedRows(_files(tmp_path / str(bad), {"B": b}), chunk_rows=300)
        with pytest.raises(DataError, match=match):
            fit(_coin, source, **settings)


def test_a_slice_of_a_memmap_streams_its_own_rows(tmp_path) -> None:
    # A slice of a memmap keeps its parent's offset: reading by that offset gave the
    # file's first rows instead of the slice's.
    path = _files(tmp_path, {"X": np.arange(10.0)})["X"]
    whole = np.load(path, mmap_mode="r")
    source = StreamedRows({"X": whole[6:]}, chunk_rows=2)
    np.testing.assert_array_equal(source.read(0, 4)["X"], [6.0, 7.0, 8.0, 9.0])


def _level(n):
    w = numpyro.param("w", 0.0)
    with numpyro.plate("unit", n):
        numpyro.sample("Y", dist.Normal(w, 1.0))


def test_a_short_last_chunk_weighs_its_rows_as_the_others(tmp_path) -> None:
    """300 rows at 0 and a last chunk of 10 rows at 10: the optimum is their mean, 0.32.
    Counted once per step, the short chunk's rows weighed b/m = 10 times as much, which
    moves the optimum to 2.5. Plain SGD (step 0.05 on the loss per row) ends within 0.05."""
    import optax

    y = np.concatenate([np.zeros(300), np.full(10, 10.0)]).astype(np.float32)
    source = StreamedRows(_files(tmp_path, {"Y": y}), chunk_rows=300)
    fitted = fit(_level, source, batch_size=100, num_epochs=100, optimizer=optax.sgd(0.05),
                 progress=False)  # fmt: skip
    assert float(fitted.params["w"]) == pytest.approx(y.mean(), abs=0.05)
