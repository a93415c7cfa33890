"""Aggregate the workers' records, check every answer, write results.md and scaling.png.

Runs in the scm_ppl environment: the checks use the closed forms in ``models/`` and one
ESS function (ArviZ's bulk ESS) for every system.
"""

from __future__ import annotations

import statistics
from collections import defaultdict
from collections.abc import Sequence
from functools import cache
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks import w6_refits
from benchmarks.common import (
    INTERVENED_NODE,
    INTERVENED_VALUE,
    RESULTS_DIR,
    format_seconds,
    load,
    ratio_text,
)
from models import latent_confounder as lc
from models import linear_gaussian_dag as lg
from models import nonlinear as nl

Key = tuple[str, int, str]  # workload, size, system
W7_WORKLOADS = ("w7_icm_dense", "w7_icm_conv")


# ------------------------------------------------------------------------- checks
def _answers(record: dict[str, Any]) -> dict[str, np.ndarray]:
    with np.load(record["answers"]) as f:
        return {k: f[k] for k in f.files}


def check_w1(record: dict[str, Any]) -> dict[str, float]:
    cf = _answers(record)["cf"]
    x = load(f"w1_{record['size']}")["x"][: len(cf)]
    truth = lg.counterfactual_closed_form(x, {INTERVENED_NODE: INTERVENED_VALUE})
    return {"max_abs_error": float(np.max(np.abs(cf - truth)))}


def ess_bulk(draws: np.ndarray) -> np.ndarray:
    """ArviZ's bulk ESS of one chain ``(draw, unit)``, per unit (the same for all)."""
    import arviz as az

    dataset = az.convert_to_dataset({"y": draws[None]})
    return np.asarray(az.ess(dataset, method="bulk")["y"].values, dtype=float)


def check_w2(record: dict[str, Any]) -> dict[str, float]:
    """ESS of the counterfactual outcome; its marginal and the *joint* with the factual
    ``Y`` against the closed form: ``Y - Y_cf = BETA (x - x')`` exactly for every draw."""
    a = _answers(record)
    d = load("w2")
    y, y_cf = a["y"], a["y_cf"]
    ess = ess_bulk(y_cf)
    truth = lc.counterfactual_y_given_x(d["x"], d["x_prime"])
    z = (y_cf.mean(0) - truth.mean) / np.sqrt(truth.var / ess)
    joint = np.max(np.abs((y - y_cf) - lc.BETA * (d["x"] - d["x_prime"])))
    return {
        "ess_mean": float(ess.mean()),
        "ess_min": float(ess.min()),
        "max_abs_z_mean": float(np.max(np.abs(z))),
        "var_ratio": float(np.mean(y_cf.var(0)) / np.mean(truth.var)),
        "joint_max_abs_error": float(joint),
    }


@cache
def _nonlinear_truth() -> tuple[np.ndarray, np.ndarray]:
    draws = nl.sample(1_000_000, seed=11, interventions={"x3": INTERVENED_VALUE})
    stacked = np.stack([draws[k] for k in nl.NODES], -1)
    return stacked.mean(0), np.cov(stacked.T)


def check_w3(record: dict[str, Any]) -> dict[str, float]:
    """Means in Monte-Carlo standard errors, covariances in absolute terms."""
    a = _answers(record)
    n = record["size"]
    if record["workload"] == "w3_linear":
        mean, cov = lg.interventional_mean_and_cov({INTERVENED_NODE: INTERVENED_VALUE})
        mc_var = np.diag(cov)
    else:
        mean, cov = _nonlinear_truth()
        mc_var = np.diag(cov) * (1.0 + n / 1_000_000)  # the truth is itself Monte Carlo
    se = np.sqrt(np.maximum(mc_var, 1e-12) / n)
    z = np.where(np.diag(cov) > 0, (a["mean"] - mean) / se, 0.0)
    return {
        "max_abs_z_mean": float(np.max(np.abs(z))),
        "max_cov_error": float(np.max(np.abs(a["cov"] - cov))),
    }


def check_w4(record: dict[str, Any]) -> dict[str, float]:
    cf = _answers(record)["cf"]
    truth = load("w4")
    errors = {
        k: float(np.mean(np.abs(cf[:, i] - truth[f"truth_{k}"]))) for i, k in enumerate(nl.NODES)
    }
    out = {f"mae_{k}": v for k, v in errors.items() if k != "x1"}
    out["mae_mean"] = float(np.mean([errors[k] for k in ("x3", "x4", "x5")]))
    return out


def check_w5(record: dict[str, Any]) -> dict[str, float]:
    """The dose-response curve is linear in the value: exact from two closed forms."""
    got = _answers(record)["dose_response"]
    d = load("w5")
    at = [lg.counterfactual_closed_form(d["x"], {INTERVENED_NODE: v})[:, -1].mean() for v in (0, 1)]
    truth = at[0] + (at[1] - at[0]) * d["values"]
    return {"max_abs_error": float(np.max(np.abs(got - truth)))}


CHECKS = {"w1": check_w1, "w2": check_w2, "w3_linear": check_w3, "w3_nonlinear": check_w3}
CHECKS |= {"w4": check_w4, "w5a": check_w5, "w5b": check_w5}
CHECKS |= {"w6_refits": lambda r: w6_refits.check(_answers(r))}
CHECKS |= {w: lambda r: {k: float(v) for k, v in _answers(r).items()} for w in W7_WORKLOADS}


# ---------------------------------------------------------------------- aggregation
def aggregate(records: Sequence[dict[str, Any]]) -> dict[Key, dict[str, Any]]:
    """Per (workload, size, system): medians over rounds, the checks of the last round."""
    groups: dict[Key, list[dict[str, Any]]] = defaultdict(list)
    for r in records:
        groups[(r["workload"], r["size"], r["system"])].append(r)
    out: dict[Key, dict[str, Any]] = {}
    for key, rs in groups.items():
        ok = [r for r in rs if "error" not in r]
        if not ok:
            out[key] = {"error": rs[-1].get("error")}
            continue
        row: dict[str, Any] = {
            "first_s": statistics.median(r["first_s"] for r in ok),
            "median_s": statistics.median(r["median_s"] for r in ok),
            "spread_s": (min(r["median_s"] for r in ok), max(r["median_s"] for r in ok)),
            "rounds": len(ok),
            "peak_rss_mb": max(r["peak_rss_mb"] for r in ok),
            "rss_after_imports_mb": max(r["rss_after_imports_mb"] for r in ok),
        }
        for extra in ("fit_s", "best_validation_nll", "epochs", "mechanisms", "answers"):
            if extra in ok[-1]:
                row[extra] = ok[-1][extra]
        if all("seconds_per_epoch" in r for r in ok):
            row["seconds_per_epoch"] = statistics.median(r["seconds_per_epoch"] for r in ok)
        check = CHECKS.get(key[0])
        if check is not None:
            checks = [check(r) for r in ok]
            row["check"] = {k: statistics.median(c[k] for c in checks) for k in checks[0]}
        out[key] = row
    return out


# --------------------------------------------------------------------------- output
_fmt_s = format_seconds
_ratio = ratio_text


def _time_table(
    rows: dict[Key, dict[str, Any]],
    workload: str,
    check_cols: Sequence[str],
    size_label: str = "units",
) -> list[str]:
    keys = sorted((k for k in rows if k[0] == workload), key=lambda k: (k[1], _order(k[2])))
    head = f"| {size_label} | system | first call | steady (median) | vs scm_ppl | vs floor |"
    head += " peak RSS (MB; after imports) |"
    head += "".join(f" {c} |" for c in check_cols)
    lines = [head, "|" + "---|" * (7 + len(check_cols))]
    for key in keys:
        row = rows[key]
        if "error" in row:
            lines.append(
                f"| {key[1]:,} | {key[2]} | failed: {row['error']} |" + " |" * (5 + len(check_cols))
            )
            continue
        ours = rows.get((workload, key[1], "scm_ppl"), {}).get("median_s")
        floor = rows.get((workload, key[1], "floor"), {}).get("median_s")
        t = row["median_s"]
        steady = _fmt_s(t) + (f" (+{_fmt_s(row['fit_s'])} fit)" if "fit_s" in row else "")
        cells = [
            f"{key[1]:,}",
            key[2],
            _fmt_s(row["first_s"]),
            steady,
            _ratio(t, ours),
            _ratio(t, floor),
            f"{row['peak_rss_mb']:.0f} ({row['rss_after_imports_mb']:.0f})",
        ]
        cells += [f"{row.get('check', {}).get(c, float('nan')):.3g}" for c in check_cols]
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def _order(system: str) -> int:
    base = ["scm_ppl", "floor", "chirho", "dowhy"]
    name = system.split("[")[0]
    return base.index(name) * 10 + (1 if "[" in system else 0) if name in base else 99


def _w2_table(rows: dict[Key, dict[str, Any]]) -> list[str]:
    keys = sorted((k for k in rows if k[0] == "w2"), key=lambda k: _order(k[2]))
    head = "| system | first call | steady run | ESS (mean over units) | ESS/s | vs scm_ppl |"
    head += " vs floor | max abs z of mean | joint error | peak RSS (MB) |"
    lines = [head, "|" + "---|" * 10]

    def ess_per_s(key: Key) -> float | None:
        r = rows.get(key)
        if not r or "error" in r:
            return None
        return r["check"]["ess_mean"] / r["median_s"]

    ours, floor = ess_per_s(("w2", 100, "scm_ppl")), ess_per_s(("w2", 100, "floor"))
    for key in keys:
        row = rows[key]
        if "error" in row:
            lines.append(f"| {key[2]} | failed: {row['error']} |" + " |" * 8)
            continue
        c, rate = row["check"], ess_per_s(key)
        lines.append(
            f"| {key[2]} | {_fmt_s(row['first_s'])} | {_fmt_s(row['median_s'])} | "
            f"{c['ess_mean']:.0f} | {rate:.0f} | {_ratio(rate, ours)} | {_ratio(rate, floor)} | "
            f"{c['max_abs_z_mean']:.2f} | {c['joint_max_abs_error']:.2g} | "
            f"{row['peak_rss_mb']:.0f} |"
        )
    return lines


def write(records: Sequence[dict[str, Any]], meta: dict[str, Any], stem: str = "results") -> Path:
    rows = aggregate(records)
    md: list[str] = [
        "# Benchmarks: scm_ppl vs the floor, ChiRho and DoWhy",
        "",
        f"Taken {meta['date']} on {meta['cpus']} CPU cores (load average at the end "
        f"{', '.join(f'{v:.1f}' for v in meta['load_average'])}); the whole run took "
        f"{meta['wall_s'] / 60:.1f} min. Regenerate with `bash benchmarks/run.sh`.",
        "",
        "*first call*: trace + compile + run, in a fresh process; *steady*: median of the "
        "repeats within a process, then the median over rounds (systems take turns). "
        "Ratios are times (W2: ESS/s) relative to scm_ppl and to the floor, from this run. "
        "Peak RSS is the process's maximum resident memory (after importing the system's "
        "libraries in brackets).",
        "",
        "## W1 exact counterfactuals: 10-node linear-Gaussian DAG, all observed, do(X3 := 1)",
        "",
        "DoWhy gets the true mechanisms; `+ fit` is what `gcm.fit` with linear regressors "
        "takes on the same rows. Error: max |answer − closed form| over the first 1000 units.",
        "",
        *_time_table(rows, "w1", ["max_abs_error"]),
        "",
        "## W2 counterfactual posterior under a latent confounder (NUTS, 100 units, 500 + 1000)",
        "",
        "models/latent_confounder.py, evidence on X only, do(X := 0): the counterfactual "
        "outcome has a closed-form Gaussian posterior. ESS: ArviZ bulk ESS of Y_cf per unit, "
        "averaged; ESS/s divides by the steady run (warm-up, draws and prediction). "
        "z: max over units of (posterior mean − closed form) / MC error; joint error: "
        "max |(Y − Y_cf) − β(x − x')| over draws and units (0 when the noise of Y is "
        "shared across worlds).",
        "",
        *_w2_table(rows),
        "",
        "## W3 interventional sampling under do(X3 := 1)",
        "",
        "scm_ppl queries draw with `fast_key`'s unrolled Threefry on CPU (the default "
        "key's numbers, hashed in one pass); `floor` uses JAX's default key, `floor[fast]` "
        "the same unrolled one. `[rbg]`, `[unsafe_rbg]`: JAX's counter-based PRNG "
        "implementations (`jax.random.key(0, impl=...)`). z: max over nodes of (sample "
        "mean − truth) / MC error.",
        "",
        "### 10-node linear-Gaussian DAG",
        "",
        *_time_table(rows, "w3_linear", ["max_abs_z_mean", "max_cov_error"]),
        "",
        "### Nonlinear SCM (models/nonlinear.py)",
        "",
        *_time_table(rows, "w3_nonlinear", ["max_abs_z_mean", "max_cov_error"]),
        "",
        "### The generator alone: 10⁷ standard normals (float32)",
        "",
        *_time_table(rows, "rng", [], size_label="normals"),
        "",
        "## W4 learning the nonlinear SCM from 10k rows",
        "",
        "scm_ppl: `fit` of `learnable_model` (MLPs, location-scale, spline flow), 150 epochs; "
        "*first call* is the one-epoch compile. DoWhy: `assign_causal_mechanisms` (GOOD) + "
        "`fit`. MAE: counterfactual error vs ground truth on 1000 held-out units under "
        "do(x2 := x2 + 0.3).",
        "",
        *_time_table(rows, "w4", ["mae_x3", "mae_x4", "mae_x5"], size_label="epochs"),
        "",
        "## W5 batched what-ifs: 1000 values of do(X3 := v) on 10⁴ units",
        "",
        "(a) every counterfactual (1000 × 10⁴ × 10); (b) mean counterfactual X9 per value. "
        "Peers: a loop of single calls. scm_ppl: one call (`sweep` for (a), "
        "`dose_response` for (b)).",
        "",
        "### (a) all samples",
        "",
        *_time_table(rows, "w5a", ["max_abs_error"]),
        "",
        "### (b) dose-response summary",
        "",
        *_time_table(rows, "w5b", ["max_abs_error"]),
        "",
    ]
    for key, row in sorted(rows.items()):
        if key[0] == "w4" and "best_validation_nll" in row:
            md.append(
                f"scm_ppl's best validation NLL: {row['best_validation_nll']:.3f} per row "
                "(the true mechanisms score about 2.15 on fresh rows; DoWhy's mechanisms "
                "have no likelihood to compare)."
            )
            md.append("")
        if key[0] == "w4" and "mechanisms" in row:
            md.append(f"DoWhy's choices (W4): {row['mechanisms']}")
            md.append("")
    md += _mechanism_level_sections(rows)
    path = RESULTS_DIR / f"{stem}.md"
    path.write_text("\n".join(md))
    plot(rows, RESULTS_DIR / ("scaling.png" if stem == "results" else f"{stem}_scaling.png"))
    return path


def _mechanism_level_sections(rows: dict[Key, dict[str, Any]]) -> list[str]:
    """W6 and W7: scm_ppl alone (no peer refits ensembles or enforces independence of
    mechanisms), against its own loops and its own unpenalised training."""
    epochs = {k[0]: rows[k].get("epochs") for k in rows if "epochs" in rows[k]}

    def answers_of(key: Key) -> dict[str, np.ndarray]:
        with np.load(rows[key]["answers"]) as f:
            return {k: f[k] for k in f.files}

    return [
        f"## W6 refit ensemble: K fits of the nonlinear SCM, 10k rows, {epochs.get('w6_refits')} "
        "epochs",
        "",
        "`refit_ensemble` of `models/nonlinear.py`'s learnable program (MLPs, a spline flow), "
        "MAP, batches of 1000, run three ways: vmapped in one call (`scm_ppl`), the same fits "
        "from the same keys one after another (`[loop]`, `vectorize=False`), and a Python loop "
        "of single `fit` calls (`[fit_loop]`, each from the program's own initial values). "
        "*Whole run*: compile, every epoch and the scoring; *one epoch*: all K fits, after "
        "compilation. Validation NLL per held-out row (`[fit_loop]`: each fit on its own "
        "held-out rows). MAE: counterfactual error of the first four fits on 200 held-out units "
        "under do(x2 := x2 + 0.3) (x3–x5, vs the exact answer); the last column compares the "
        "`[loop]` fits with the vmapped ones fit by fit (validation NLL of all K fits on "
        "their shared held-out rows, counterfactuals of the first four).",
        "",
        *w6_refits.table(rows, answers_of),
        "",
        "## W7 ICM toy: a training epoch with the ICM penalty vs without",
        "",
        "`fit(..., icm_penalty=λ)` (`scm_ppl[icm]`) against the same fit without it "
        "(`scm_ppl`); *vs scm_ppl* is the penalty's overhead per epoch. *first call*: a "
        "one-epoch fit (trace + compile + run); *steady*: a warm fit's epoch loop over its "
        "epochs.",
        "",
        f"### Dense linear generator (the paper's toy), n = 12, 2000 rows in batches of 200, "
        f"{epochs.get('w7_icm_dense')} epochs of SGD",
        "",
        "ρ: trace_ratio(W2, W1 W1ᵀ) of the fit (1 = generic); balanced ρ: the closed form "
        "that plain gradient descent from small initialisation converges to; relative fit: "
        "‖W2 W1 − M‖² / ‖M‖².",
        "",
        *_time_table(rows, "w7_icm_dense", ["rho", "balanced_rho", "relative_fit"], size_label="n"),
        "",
        "### Conv image generator (models/conv_generator.py), images in batches of 100, λ = 100",
        "",
        "Loss: the last epoch's data term (negative log-likelihood per image); penalty: "
        "λ Σ (log ρ)² over the conv pair.",
        "",
        *_time_table(rows, "w7_icm_conv", ["final_loss", "final_penalty"], size_label="images"),
        "",
    ]


def plot(rows: dict[Key, dict[str, Any]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(10, 4), layout="constrained")
    for ax, workload, title in (
        (axes[0], "w1", "W1 exact counterfactuals, do(X3 := 1)"),
        (axes[1], "w3_linear", "W3 interventional sampling, do(X3 := 1)"),
    ):
        systems = sorted({k[2] for k in rows if k[0] == workload}, key=_order)
        for system in systems:
            pts = sorted(
                (k[1], rows[k]["median_s"])
                for k in rows
                if k[0] == workload and k[2] == system and "median_s" in rows[k]
            )
            if len(pts) < 2:
                continue
            xs, ys = zip(*pts, strict=True)
            ax.plot(xs, ys, marker="o", label=system, linestyle="--" if "[" in system else "-")
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("units")
        ax.set_ylabel("steady-state time per query (s)")
        ax.set_title(title, fontsize=10)
        ax.grid(True, which="both", alpha=0.3)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(frameon=False, fontsize=8)
    fig.savefig(path, dpi=120)
    plt.close(fig)
