"""W6 refit ensemble on scm_ppl alone: K refits vmapped in one call against loops.

K MAP refits of ``models/nonlinear.py``'s learnable SCM (MLPs, a location-scale MLP, a
spline flow) on 10k rows, every fit running the same epochs, minibatches and learning
rate, three ways (the benchmark's systems):

* ``scm_ppl``: ``refit_ensemble`` (one call; the K fits as one ``vmap``-ed, jitted epoch);
* ``scm_ppl[loop]``: ``refit_ensemble(vectorize=False)``: the same fits from the same
  keys and initial jitter, one jitted epoch per fit in a Python loop (``fit`` takes no
  initial state, so this is the loop whose fits can be compared one by one). It runs the
  same arithmetic in another summation order; on an identified model the fits agree to
  1e-4 (tests/test_benchmarks.py), on this one training amplifies the float32 round-off
  (Adam's first steps move a weight by about ±lr whatever its gradient's size) until
  each pair of fits differs about as much as two refits do, so the table shows both the
  fit-by-fit differences and the distributions;
* ``scm_ppl[fit_loop]``: a Python loop of K single ``fit`` calls (keys ``fold_in(key,
  i)``, the program's own initial values): what a user without ``refit_ensemble`` writes;
  compared in distribution (the counterfactual error of its fits).

Reported: the whole run (compile, every epoch, scoring) and the steady-state time of one
epoch of all K fits; the answers are every fit's validation NLL and the first fits'
counterfactuals of held-out units under do(x2 := x2 + 0.3), graded against the exact ones.
Run from the repository root::

    .venv/bin/python -m benchmarks.w6_refits [--refits 16] [--epochs 20]
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax.typing import ArrayLike

from benchmarks.common import W4_SHIFT, Timing, format_seconds, peak_rss_mb, ratio_text
from models import nonlinear as nl
from scm_ppl import counterfactual, fit, refit_ensemble

ROWS = 10_000
EPOCHS = 20
BATCH = 1_000
LEARNING_RATE = 0.01
VALIDATION_FRACTION = 0.2
# refit_ensemble's default jitter (0.5 in unconstrained space) throws the MLPs' and the
# flow's weights far from their initialisation, and 20 epochs do not recover; 0.1 keeps
# the refits distinct and as trainable as a fresh ``fit``.
INIT_SCALE = 0.1
CHECK_UNITS = 200  # held-out units whose counterfactuals grade the fits
# ``counterfactual`` compiles once per FittedSCM (5-10 s here for this program), so the
# answers are those of the first few fits of each run, not all K.
CHECK_FITS = 4
MODES = ("vmap", "loop", "fit_loop")


class RefitRun(NamedTuple):
    """One run of K refits: the fits, wall time, steady epoch time of all K fits."""

    fits: list[Any]
    total_s: float
    seconds_per_epoch: float
    validation_losses: np.ndarray


def training_rows(rows: int = ROWS) -> dict[str, jax.Array]:
    """W4's training rows (``nl.sample(rows, seed=0)``), float32."""
    return {k: jnp.asarray(v, jnp.float32) for k, v in nl.sample(rows, seed=0).items()}


def held_out(units: int = CHECK_UNITS) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """Held-out units and their exact counterfactuals ``(units, 5)`` under the W4 shift."""
    units_data = nl.sample(units, seed=1)
    truth = nl.counterfactual_truth(units_data, {"x2": units_data["x2"] + W4_SHIFT})
    return units_data, np.stack([truth[k] for k in nl.NODES], axis=-1)


def refits(
    mode: str,
    train: Mapping[str, ArrayLike],
    n_refits: int,
    key: jax.Array,
    *,
    model: Callable = nl.learnable_model,
    epochs: int = EPOCHS,
    batch_size: int | None = BATCH,
    learning_rate: float = LEARNING_RATE,
    init_scale: float = INIT_SCALE,
) -> RefitRun:
    """``n_refits`` MAP fits of ``model`` to ``train``, run as ``mode`` (see the module);
    ``batch_size=None``: full-batch steps."""
    settings = {"num_epochs": epochs, "batch_size": batch_size, "learning_rate": learning_rate}
    start = time.perf_counter()
    if mode in ("vmap", "loop"):
        ens = refit_ensemble(
            model,
            train,
            n_refits,
            rng_key=key,
            validation_fraction=VALIDATION_FRACTION,
            init_scale=init_scale,
            vectorize=mode == "vmap",
            **settings,
        )
        total = time.perf_counter() - start
        if ens.mode != mode:
            raise RuntimeError(f"refit_ensemble ran as {ens.mode!r}: {ens.reason}")
        return RefitRun(ens.fits, total, ens.seconds_per_epoch, ens.validation_losses)
    if mode != "fit_loop":
        raise ValueError(f"mode must be one of {MODES}; got {mode!r}.")
    fits = [
        fit(
            model,
            train,
            validation_fraction=VALIDATION_FRACTION,
            restore_best=False,  # like refit_ensemble: keep the last epoch
            progress=False,
            rng_key=jax.random.fold_in(key, i),
            **settings,
        )
        for i in range(n_refits)
    ]
    total = time.perf_counter() - start
    # fit caches its compiled epoch by the program's structure: the first fit compiles,
    # the others run warm; their epoch loops give the steady time of one fit's epoch.
    warm = [f.history.seconds / epochs for f in fits[1:]] or [fits[0].history.seconds / epochs]
    losses = np.asarray([f.history.validation_losses[-1] for f in fits])
    return RefitRun(fits, total, n_refits * statistics.median(warm), losses)


def fitted_counterfactuals(fits: Sequence[Any], units: Mapping[str, np.ndarray]) -> np.ndarray:
    """Every fit's counterfactuals of ``units`` under do(x2 := x2 + 0.3): ``(K, units, 5)``."""
    n = len(units["x1"])
    evidence = {k: jnp.asarray(v, jnp.float32) for k, v in units.items()}
    target = {"x2": jnp.asarray(units["x2"] + W4_SHIFT, jnp.float32)}
    out = []
    for fitted in fits:
        result = counterfactual(
            fitted, evidence, target, rng_key=jax.random.key(3), model_kwargs={"n": n}
        )
        world = result.world("cf")
        out.append(np.stack([np.asarray(world[k]).reshape(n) for k in nl.NODES], axis=-1))
    return np.stack(out)


def run(system: str, n_refits: int, repeats: int) -> tuple[Timing, dict, dict]:
    """The worker's entry (``benchmarks.worker``): first run, ``repeats`` more, answers."""
    variant = system.rstrip("]").split("[", 1)[1] if "[" in system else "vmap"
    train = training_rows()
    key = jax.random.key(6)
    runs = [refits(variant, train, n_refits, key)]
    runs += [refits(variant, train, n_refits, key) for _ in range(repeats)]
    units, _ = held_out()
    answers = {
        "cf": fitted_counterfactuals(runs[-1].fits[:CHECK_FITS], units),
        "validation_losses": runs[-1].validation_losses,
    }

    extra = {
        "seconds_per_epoch": statistics.median(r.seconds_per_epoch for r in runs),
        "epochs": EPOCHS,
        "rows": ROWS,
    }
    return Timing(runs[0].total_s, [r.total_s for r in runs[1:]]), answers, extra


# ------------------------------------------------------------------------ the report
def check(answers: Mapping[str, np.ndarray]) -> dict[str, float]:
    """Counterfactual MAE of the graded fits (x3..x5, vs the exact answer): median and
    best; the median validation NLL per row of all fits."""
    _, truth = held_out(answers["cf"].shape[1])
    mae = np.mean(np.abs(answers["cf"][..., 2:] - truth[None, :, 2:]), axis=(1, 2))
    out = {"mae_median": float(np.median(mae)), "mae_best": float(np.min(mae))}
    if "validation_losses" in answers:
        out["nll_median"] = float(np.median(answers["validation_losses"]))
    return out


def agreement(ours: Mapping[str, np.ndarray], vmapped: Mapping[str, np.ndarray]) -> str:
    """``'a / b'``: the largest relative difference of the fits' validation NLL and the
    largest absolute difference of their counterfactuals, fit by fit."""
    nll, ref = ours["validation_losses"], vmapped["validation_losses"]
    rel = float(np.max(np.abs(nll - ref) / np.abs(ref)))
    return f"{rel:.2g} / {float(np.max(np.abs(ours['cf'] - vmapped['cf']))):.2g}"


def table(rows: Mapping[tuple[str, int, str], dict[str, Any]], answers_of: Callable) -> list[str]:
    """Markdown rows: whole run, steady epoch, ratios to the vmapped call, agreement.

    ``answers_of(key)`` loads the answers of a (workload, size, system) row; the loop
    whose fits match the vmapped ones one by one (``[loop]``) shows their differences,
    the ``fit`` loop (other starting points) its counterfactual MAE beside theirs.
    """
    order = {f"scm_ppl[{m}]" if m != "vmap" else "scm_ppl": i for i, m in enumerate(MODES)}
    keys = sorted(
        (k for k in rows if k[0] == "w6_refits"), key=lambda k: (k[1], order.get(k[2], 9))
    )
    head = "| refits | system | whole run | one epoch of all fits (steady) | epoch vs vmapped |"
    head += " whole run vs vmapped | peak RSS (MB) | validation NLL, median fit |"
    head += " cf MAE, median fit | best fit |"
    head += " vs vmapped, fit by fit: rel. validation NLL / abs. cf |"
    lines = [head, "|" + "---|" * 11]
    for key in keys:
        row = rows[key]
        if "error" in row:
            lines.append(f"| {key[1]} | {key[2]} | failed: {row['error']} |" + " |" * 8)
            continue
        ours = rows.get((key[0], key[1], "scm_ppl"), {})
        same = "–"
        if key[2] == "scm_ppl[loop]" and "median_s" in ours:
            same = agreement(answers_of(key), answers_of((*key[:2], "scm_ppl")))
        c = row.get("check", {})
        cells = [
            str(key[1]),
            key[2],
            format_seconds(row["median_s"]),
            format_seconds(row["seconds_per_epoch"]),
            ratio_text(row["seconds_per_epoch"], ours.get("seconds_per_epoch")),
            ratio_text(row["median_s"], ours.get("median_s")),
            f"{row['peak_rss_mb']:.0f}",
            f"{c.get('nll_median', float('nan')):.4g}",
            f"{c.get('mae_median', float('nan')):.3g}",
            f"{c.get('mae_best', float('nan')):.3g}",
            same,
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--refits", type=int, default=16)
    parser.add_argument("--epochs", type=int, default=EPOCHS)
    args = parser.parse_args()
    train, key = training_rows(), jax.random.key(6)
    units, truth = held_out()
    print(f"W6: {args.refits} refits of nonlinear.learnable_model, {ROWS} rows, {args.epochs} ep")
    cfs = {}
    for mode in MODES:
        r = refits(mode, train, args.refits, key, epochs=args.epochs)
        cf = fitted_counterfactuals(r.fits[:CHECK_FITS], units)
        if mode != "fit_loop":
            cfs[mode] = {"cf": cf, "validation_losses": r.validation_losses}
        mae = np.mean(np.abs(cf[..., 2:] - truth[None, :, 2:]), axis=(1, 2))
        print(
            f"  {mode:9s} whole run {r.total_s:7.1f} s, one epoch of all fits "
            f"{r.seconds_per_epoch:6.3f} s, cf MAE median {np.median(mae):.3f}"
        )
    print(f"  vmap vs loop, fit by fit (rel. validation NLL / abs. cf): {agreement(*cfs.values())}")
    print(f"  peak RSS {peak_rss_mb():.0f} MB")


if __name__ == "__main__":
    main()
