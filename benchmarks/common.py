"""Timing, memory and data helpers shared by every system's worker (NumPy only).

Nothing here imports JAX, torch or DoWhy: each worker runs in its own environment.
"""

from __future__ import annotations

import resource
import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import numpy.typing as npt

BENCH_DIR = Path(__file__).resolve().parent
REPO_DIR = BENCH_DIR.parent
DATA_DIR = BENCH_DIR / ".envs" / "data"
RESULTS_DIR = BENCH_DIR / "results"

# --- the 10-node linear-Gaussian DAG (models/linear_gaussian_dag.py) --------------------
# The peers' environments have no JAX/NumPyro, so they cannot import models/; the
# weights travel to them in the data files, written from models.linear_gaussian_dag.
INTERVENED_NODE = 3
INTERVENED_VALUE = 1.0
W2_UNITS = 100
W2_X_PRIME = 0.0  # W2: do(X := 0) for every unit
W4_ROWS = 10_000
W4_HELD_OUT = 1_000
W4_SHIFT = 0.3  # W4: counterfactual do(x2 := x2 + 0.3)
W5_VALUES = 1_000  # W5: number of intervention values in the grid
W5_UNITS = 10_000


class Timing(NamedTuple):
    """First call (trace + compile + run) and the steady-state repeats, in seconds."""

    first_s: float
    repeats_s: list[float]

    @property
    def median_s(self) -> float:
        """Median of the repeats; the first call when there were none (a peer whose
        every run pays the same, e.g. Pyro's NUTS, is run once)."""
        return statistics.median(self.repeats_s) if self.repeats_s else self.first_s


def time_call(fn: Callable[[], Any], repeats: int, budget_s: float = 20.0) -> Timing:
    """Time ``fn()`` once (first call) and then ``repeats`` times (fewer if over budget).

    ``fn`` must return only once its answer is computed (block on device arrays).
    """
    start = time.perf_counter()
    fn()
    first = time.perf_counter() - start
    times: list[float] = []
    spent = 0.0
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
        spent += times[-1]
        if spent > budget_s:
            break
    return Timing(first, times)


def format_seconds(seconds: float) -> str:
    """``0.0012 -> '1.20 ms'``, ``0.25 -> '250 ms'``, ``3.5 -> '3.50 s'``."""
    if seconds < 1e-2:
        return f"{seconds * 1e3:.2f} ms"
    if seconds < 1:
        return f"{seconds * 1e3:.0f} ms"
    return f"{seconds:.2f} s"


def ratio_text(a: float | None, b: float | None) -> str:
    """``a / b`` as ``'2.50×'``; ``'–'`` when either is missing or zero."""
    if not a or not b:
        return "–"
    return f"{a / b:.2f}×"


def status_mib(field: str) -> float:
    """A memory field of Linux's ``/proc/self/status`` (``VmRSS``: resident now; ``VmHWM``:
    its peak, reset by ``exec`` or ``/proc/self/clear_refs``), in MiB; NaN elsewhere."""
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith(f"{field}:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return float("nan")


def peak_rss_mb() -> float:
    """Peak resident memory of this process so far, in MiB.

    Linux's ``VmHWM`` (reset by ``exec``); ``ru_maxrss`` is not reset by ``exec`` and
    would report a child's peak as at least its parent's, so it is only the fallback.
    """
    peak = status_mib("VmHWM")
    if peak == peak:  # not NaN: the field is there
        return peak
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def data_path(name: str) -> Path:
    return DATA_DIR / f"{name}.npz"


def load(name: str) -> dict[str, np.ndarray]:
    with np.load(data_path(name)) as f:
        return {k: f[k] for k in f.files}


def parents_of(weights: npt.ArrayLike) -> list[list[tuple[int, float]]]:
    """``[(parent, weight), ...]`` per node: the real edges only."""
    weights = np.asarray(weights)
    d = weights.shape[1]
    return [[(j, float(weights[j, i])) for j in range(d) if weights[j, i] != 0.0] for i in range(d)]
