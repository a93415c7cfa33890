"""Fits on rows streamed from disk: ``fit(model, StreamedRows({...}))``.

The rows stay on disk as one ``.npy`` file per column (``np.save``'s format: a header,
then the values in C order); a fit reads them a chunk of ``chunk_rows`` rows at a time,
with plain file reads into a buffer of that size, so the process holds a few chunks at
once, never the data (a memory map would do too, but the pages it touches count in the
process's resident set until the kernel drops them, so a pass over a large file looks
like a copy of it). Why ``.npy`` and not Parquet: NumPy writes and reads it with no
further dependency, a row is at a fixed offset (a chunk is one read per column), and
the columns are already the arrays a fit takes; Parquet would add pyarrow for
compression and a schema the fit does not need.

An epoch visits the chunks in a random order and, within each chunk, its rows in
minibatches drawn as an in-memory fit draws them from all rows (a random permutation of
the chunk's rows, cut into ``batch_size`` steps): block shuffling, the usual compromise
between a full shuffle (random reads over the whole file for every minibatch) and none.
The loss of every step is per row of all ``N`` rows (a minibatch's rows scaled by
``N / batch_size``, priors counted once per step), and a chunk whose steps see its rows
more or fewer times than a chunk of whole batches (a short last chunk, a last partial
batch) is weighted so that every row counts the same over an epoch. While
the device runs one chunk's steps, the host reads the next (JAX dispatches
asynchronously).

What is checked: the first chunk as any fit's data (sites, shapes, dtypes, supports);
every later chunk for NaN/inf, for values its site's dtype cannot hold, and against the
supports, as it is read (NaN/inf before compiling when local latent sites make the fit
read every row first, for the scaling of their proposal; else during the first epoch,
which then stops with the rows named). A slice of a memory map streams its own rows.
Not supported (refused before anything is compiled): ``method="nuts"``, interventional
regimes, a validation split, the ICM penalty, ``missing="drop"``, and several processes.
"""

from __future__ import annotations

import mmap
import os
from collections.abc import Mapping
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax

from scm_ppl.core.validate import positive_int
from scm_ppl.errors import DataError, SettingsError
from scm_ppl.learn.data import Data, check_structure
from scm_ppl.learn.distributed import DataParallel, data_parallel, unsupported
from scm_ppl.learn.objective import Objective, column_stats
from scm_ppl.learn.train import compiled_epoch

__all__ = ["StreamedRows", "row_plan"]


def _file_offset(name: str, value: np.memmap) -> int:
    """Where a memory map's first element sits in its file. A slice of a memmap keeps
    its parent's ``offset`` (and file name), so the position is read off the mapping."""
    mapping = getattr(value, "_mmap", None)
    if mapping is None:
        raise DataError(
            f"Column '{name}': cannot tell where this np.memmap's rows sit in "
            f"{value.filename!r}; give the .npy path, or np.load(path, mmap_mode='r') whole."
        )
    mapped_from = value.offset - value.offset % mmap.ALLOCATIONGRANULARITY
    start = np.frombuffer(mapping, np.uint8).ctypes.data
    return int(mapped_from + value.ctypes.data - start)


class _Column:
    """Where one column's rows are: an ``.npy`` file (path, or an ``np.memmap`` of one)
    read by offset, or an array in memory."""

    def __init__(self, name: str, value: Any) -> None:
        self.name, self.array = name, None
        if isinstance(value, np.memmap) and value.filename is not None:
            self.path, self.offset = os.fspath(value.filename), _file_offset(name, value)
            self.dtype, self.shape = value.dtype, tuple(value.shape)
            fortran = not value.flags.c_contiguous
        elif isinstance(value, (str, os.PathLike)):
            self.path = os.fspath(value)
            try:
                with open(self.path, "rb") as f:
                    version = np.lib.format.read_magic(f)
                    read_header = (
                        np.lib.format.read_array_header_1_0
                        if version == (1, 0)
                        else np.lib.format.read_array_header_2_0
                    )
                    header = read_header(f)
                    self.offset = f.tell()
            except (OSError, ValueError) as err:
                msg = f"Column '{name}': cannot read {self.path!r} as .npy: {err}."
                raise DataError(msg) from err
            shape, fortran, dtype = header
            self.shape, self.dtype = tuple(shape), np.dtype(dtype)
        elif isinstance(value, np.ndarray):
            self.path, self.offset, self.array = None, 0, value
            self.dtype, self.shape, fortran = value.dtype, value.shape, False
        else:
            raise DataError(
                f"Column '{name}' of StreamedRows is {type(value).__name__}; give the path of "
                "an .npy file, an np.memmap of one (np.load(path, mmap_mode='r')) or an array."
            )
        if fortran or not self.shape or self.dtype.hasobject:
            raise DataError(
                f"Column '{name}': StreamedRows reads C-ordered numeric arrays with the unit "
                f"axis first; got shape {self.shape}, dtype {self.dtype}"
                f"{', Fortran order' if fortran else ''}. Save it with np.save(path, array)."
            )
        self.row_items = int(np.prod(self.shape[1:], dtype=np.int64))

    def read(self, start: int, stop: int) -> np.ndarray:
        if self.array is not None:
            return np.array(self.array[start:stop])
        count = (stop - start) * self.row_items
        assert self.path is not None
        with open(self.path, "rb") as f:
            f.seek(self.offset + start * self.row_items * self.dtype.itemsize)
            values = np.fromfile(f, dtype=self.dtype, count=count)
        if values.size != count:
            raise DataError(
                f"Column '{self.name}': {self.path!r} ended before row {stop} "
                f"(read {values.size // max(self.row_items, 1)} of {stop - start} rows)."
            )
        return values.reshape(stop - start, *self.shape[1:])


class StreamedRows:
    """Rows that a fit reads from disk chunk by chunk, never whole.

    Parameters
    ----------
    columns
        ``{site: source}``, each source the path of an ``.npy`` file (``np.save``), an
        ``np.memmap`` of one (``np.load(path, mmap_mode="r")``: only its file and offset
        are used) or an array already in memory; the unit axis first, every column the
        same number of rows.
    chunk_rows
        Rows read at once (per column): the host memory of a fit is a few chunks.

    Attributes
    ----------
    rows
        The number of rows ``N``.
    reads
        ``(start, stop)`` of every chunk read so far (each read covers every column).

    Examples
    --------
    >>> import os, tempfile, jax, numpy as np, numpyro, numpyro.distributions as dist
    >>> from scm_ppl import fit
    >>> from scm_ppl.learn import StreamedRows
    >>> def model(n):
    ...     w = numpyro.param("w", 0.0)
    ...     with numpyro.plate("unit", n):
    ...         x = numpyro.sample("x", dist.Normal(0.0, 1.0))
    ...         numpyro.sample("y", dist.Normal(w * x, 0.1))
    >>> x = np.random.default_rng(0).normal(size=2000).astype(np.float32)
    >>> folder = tempfile.mkdtemp()
    >>> for name, column in {"x": x, "y": 2.0 * x}.items():
    ...     np.save(os.path.join(folder, f"{name}.npy"), column)
    >>> rows = StreamedRows({s: os.path.join(folder, f"{s}.npy") for s in "xy"},
    ...                     chunk_rows=500)
    >>> fitted = fit(model, rows, batch_size=100, num_epochs=5, learning_rate=0.05,
    ...              progress=False)
    >>> round(float(fitted.params["w"]), 1), max(b - a for a, b in rows.reads)
    (2.0, 500)
    """

    def __init__(self, columns: Mapping[str, Any], *, chunk_rows: int = 2**18) -> None:
        positive_int("chunk_rows", chunk_rows)
        if not isinstance(columns, Mapping) or not columns:
            raise DataError(
                "StreamedRows takes {site: path of an .npy file (or np.memmap, or array)}; got "
                f"{type(columns).__name__ if not isinstance(columns, Mapping) else 'no columns'}."
            )
        self.columns = {str(k): _Column(str(k), v) for k, v in columns.items()}
        lengths = {k: c.shape[0] for k, c in self.columns.items()}
        if len(set(lengths.values())) > 1:
            raise DataError(
                f"StreamedRows columns have different numbers of rows: {lengths}; every column "
                "holds one row per unit."
            )
        self.rows = int(next(iter(lengths.values())))
        if not self.rows:
            raise DataError("StreamedRows columns have no rows; give at least one unit.")
        self.chunk_rows = int(min(chunk_rows, self.rows))
        self.reads: list[tuple[int, int]] = []

    @property
    def chunks(self) -> list[tuple[int, int]]:
        """``(start, stop)`` of each chunk, in file order."""
        c = self.chunk_rows
        return [(a, min(a + c, self.rows)) for a in range(0, self.rows, c)]

    def read(self, start: int, stop: int) -> dict[str, np.ndarray]:
        """Rows ``start:stop`` of every column, read from disk now."""
        self.reads.append((start, stop))
        return {k: c.read(start, stop) for k, c in self.columns.items()}

    def __repr__(self) -> str:
        return (
            f"StreamedRows({sorted(self.columns)}, rows={self.rows:,}, "
            f"chunk_rows={self.chunk_rows:,})"
        )


def row_plan(
    data: Any,
    method: str,
    validation_fraction: Any,
    icm_penalty: Any,
    interventions: Any,
    regime: Any,
    *rest: Any,
) -> DataParallel | StreamPlan | None:
    """How ``fit`` reaches its rows when they are not all in memory: streamed from disk
    (:class:`StreamedRows`), sharded over devices (:mod:`~scm_ppl.learn.distributed`), or
    ``None`` for ordinary data. ``rest``: fit's ``latent, plate, size_arg, model_kwargs,
    missing``."""
    if not isinstance(data, StreamedRows):
        return data_parallel(
            data, method, validation_fraction, icm_penalty, interventions, regime, *rest
        )
    what = unsupported(method, validation_fraction, icm_penalty, interventions, regime, *rest)
    if what is None and jax.process_count() > 1:
        what = "several processes (stream each process's rows into shard_rows instead)"
    if what is not None:
        raise SettingsError(f"A fit on StreamedRows does not support {what}.")
    return StreamPlan(data)


def _check_finite(columns: Mapping[str, np.ndarray], start: int) -> None:
    for name, array in columns.items():
        if np.issubdtype(array.dtype, np.floating) and not np.isfinite(array).all():
            bad = int(array.size - np.count_nonzero(np.isfinite(array)))
            raise DataError(
                f"Data for '{name}' hold {bad} NaN/inf value(s) in rows {start}.."
                f"{start + len(array) - 1}; drop those rows from the file or impute them."
            )


class StreamPlan:
    """The plan of a fit on :class:`StreamedRows` (the interface of
    :class:`~scm_ppl.learn.distributed.DataParallel` that the gradient loop uses)."""

    def __init__(self, source: StreamedRows) -> None:
        self.source, self.rows = source, source.rows
        start, stop = source.chunks[0]
        self.local = source.read(start, stop)  # checked as any fit's data
        self.dtypes: dict[str, np.dtype] = {}
        self.template: Data | None = None  # the first chunk, prepared: later ones follow it
        self.const: dict[str, Any] = {}
        self.steps = 0

    def split(
        self, data: Data, labels: list[int], frac: float, key: jax.Array
    ) -> tuple[list[dict[str, np.ndarray]], list[dict[str, np.ndarray]]]:
        del labels, frac, key  # one regime, no validation rows (checked)
        self.dtypes = {k: v.dtype for k, v in data.columns.items()}
        self.template = data
        self.const = self._stats(data) if data.latent else self._first_stats(data)
        self.local = {}  # the first chunk is read again in its turn
        return [data.columns], [{k: v[:0] for k, v in data.columns.items()}]

    def _first_stats(self, data: Data) -> dict[str, Any]:
        """Placeholders of the right shapes: only local latents' proposals read them."""
        return {
            "mean": {k: jnp.zeros(v.shape[1:], jnp.float32) for k, v in data.columns.items()},
            "std": {k: jnp.ones(v.shape[1:], jnp.float32) for k, v in data.columns.items()},
        }

    def _stats(self, data: Data) -> dict[str, Any]:
        """Mean and spread of each column over all rows (two passes over the file): the
        scaling of the local latents' proposal, as an in-memory fit computes it."""

        def chunks() -> Any:
            for start, stop in self.source.chunks:
                columns = self.source.read(start, stop)
                _check_finite(columns, start)  # found before anything is compiled
                yield columns

        shapes = {k: v.shape[1:] for k, v in data.columns.items()}
        return column_stats(chunks, shapes, self.rows)

    def stats(self) -> dict[str, Any]:
        return self.const

    def device_columns(self, train: Mapping[str, np.ndarray]) -> dict[str, jax.Array]:
        return {}  # the rows come chunk by chunk, in the epoch

    def settings(self) -> dict[str, Any]:
        return {
            "num_rows": self.rows,
            "rows_per_regime": {"-1": self.rows},
            "steps_per_epoch": self.steps,  # each chunk's last minibatch may be short
            "streamed": {
                "chunk_rows": self.source.chunk_rows,
                "chunks": len(self.source.chunks),
            },
        }

    def _chunk(self, start: int, stop: int, structure: Any) -> list[dict[str, jax.Array]]:
        """One chunk's rows, checked as the first chunk was (finite, each value its site's
        type and in its support), so a bad row far into the file is not scored silently."""
        columns = self.source.read(start, stop)
        _check_finite(columns, start)
        cast = {k: columns[k].astype(t, copy=False) for k, t in self.dtypes.items()}
        for k, v in cast.items():
            if v.dtype != columns[k].dtype and not np.array_equal(v, columns[k]):
                raise DataError(
                    f"Data for '{k}' in rows {start}..{stop - 1} hold values that are not "
                    f"{v.dtype} (e.g. a fraction in an integer-coded column), unlike the "
                    "first rows; fix or drop those rows in the file."
                )
        assert self.template is not None
        chunk = self.template._replace(columns=cast, labels=np.full(stop - start, -1))
        check_structure(chunk, structure, "map")  # supports; its other check ran before
        return [{k: jnp.asarray(v) for k, v in cast.items()}]

    def compiled_epoch(
        self,
        o: Objective,
        optimizer: optax.GradientTransformation,
        optimizer_key: Any,
        sizes: list[tuple[int, int]],
        steps: int,
    ) -> Any:
        """One epoch: the chunks in a random order, each one's minibatch steps in one
        jitted scan (compiled once per chunk size: the last chunk may be shorter)."""
        ((n, b),) = sizes
        chunks = self.source.chunks
        self.steps = sum(-(-(stop - start) // min(b, stop - start)) for start, stop in chunks)

        def run(state, opt_state, data, const, key):
            del data
            order_key, key = jax.random.split(key)
            order = np.asarray(jax.random.permutation(order_key, len(chunks)))
            losses, penalties = [], []
            for c in order.tolist():
                start, stop = chunks[c]
                m = stop - start
                batch = min(b, m)
                chunk_steps = -(-m // batch)
                # Every row must weigh as much as in a chunk of whole batches: a short tail
                # chunk's one step (or a chunk's last, partly repeated, batch) would
                # otherwise count its rows b/m times over, every epoch.
                weight = n * m / (b * chunk_steps)
                epoch, _ = compiled_epoch(
                    o, optimizer, optimizer_key, [(m, batch)], chunk_steps, rows=n,
                    weighted_rows=weight,
                )  # fmt: skip
                # read while the device runs the last chunk
                rows = self._chunk(start, stop, o.structure)
                if losses:  # then wait for it: without this the loop would read ahead
                    jax.block_until_ready(losses[-1])  # every chunk while the first runs
                state, opt_state, loss, penalty = epoch(
                    state, opt_state, rows, const, jax.random.fold_in(key, c)
                )
                losses.append(loss)
                penalties.append(penalty)
            return state, opt_state, jnp.concatenate(losses), jnp.concatenate(penalties)

        return run
