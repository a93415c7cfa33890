"""Attribution and graph-check queries: scm_ppl against DoWhy 0.14's ``gcm``, same data.

Run from the repository root with the package's environment::

    .venv/bin/python -m benchmarks.attribution [--dowhy-python PATH] [--quick]

It writes the data (the 10-node linear-Gaussian DAG of ``models/linear_gaussian_dag.py``),
answers each query with scm_ppl, then runs this same file under DoWhy's interpreter
(``--dowhy-python``, default ``benchmarks/.envs/dowhy/bin/python``, made by
``benchmarks/setup_envs.sh``) on the same bytes, and prints one table: seconds per query
(after one warm-up call for scm_ppl, whose first call compiles), error against the closed
form, and the speed ratio.

Queries (both systems fit linear additive-noise mechanisms to the same 10k rows first;
the fits are timed apart):

* ``icc``: intrinsic causal influence of every node's noise on ``X9``. Closed form:
  ``M[i, 9]² s_i²`` with ``M = (I - W)^{-1}``. Error: largest absolute error / Var(X9).
* ``anomaly``: anomaly attribution of 100 outliers of ``X9``, each with one ancestor's
  noise pushed so that ``X9`` moves by 6 standard deviations. Error: the share of outliers
  whose top-attributed node is not the planted one. DoWhy attributes the first
  ``DOWHY_OUTLIERS`` only (its exact Shapley values over 8 players evaluate 119 set
  functions, each on every outlier, at tens of seconds each on 2 cores); its time is
  scaled by ``100 / DOWHY_OUTLIERS`` and its error is over those outliers.
* ``change``: distribution change of ``X9``'s mean between two 10k-row data sets that
  differ in the mechanism of ``X4`` (intercept +1); both systems refit the mechanisms on
  each data set inside the query. Closed form: all of ``M[4, 9]`` on ``X4``. Error:
  ``|X4's share - M[4, 9]| + Σ |others|``, relative to ``M[4, 9]``.
* ``graph``: the graph check of the true 10-node graph (local Markov independences with a
  linear CI test; DoWhy's generalised covariance measure with linear regressors, which is
  the partial correlation's statistic; 20 node permutations). "Error": 1 if the true
  graph is rejected.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
NODES = tuple(f"X{i}" for i in range(10))
TARGET = "X9"
ROWS = 10_000
NUM_OUTLIERS = 100
CHANGED, SHIFT = 4, 1.0
NUM_PERMUTATIONS = 20
DOWHY_OUTLIERS = 5  # DoWhy takes minutes per outlier here: its time is scaled to 100


def write_data(path: Path) -> None:
    """The data both systems read (written in scm_ppl's environment: models/ imports JAX)."""
    from models import linear_gaussian_dag as lg

    w, s = lg.WEIGHTS, lg.NOISE_SCALES
    m = np.linalg.inv(np.eye(10) - w)
    rng = np.random.default_rng(0)
    train = rng.standard_normal((ROWS, 10)) * s @ m
    after_noise = rng.standard_normal((ROWS, 10)) * s
    after_noise[:, CHANGED] += SHIFT
    after = after_noise @ m
    ancestors = [i for i in range(10) if m[i, 9] != 0.0]
    sd_y = np.sqrt(np.sum((m[:, 9] * s) ** 2))
    culprit = rng.choice(ancestors, NUM_OUTLIERS)
    noise = rng.standard_normal((NUM_OUTLIERS, 10)) * s
    sign = rng.choice([-1.0, 1.0], NUM_OUTLIERS)
    noise[np.arange(NUM_OUTLIERS), culprit] += sign * 6 * sd_y / m[culprit, 9]
    outliers = noise @ m
    np.savez(path, w=w, s=s, train=train, after=after, outliers=outliers, culprit=culprit)


def _errors(
    d: Any, icc: dict, anomaly_top: list, change: dict | None, rejected: bool | None
) -> dict:
    m = np.linalg.inv(np.eye(10) - d["w"])
    var_y = float(np.sum((m[:, 9] * d["s"]) ** 2))
    icc_true = {n: float(m[i, 9] ** 2 * d["s"][i] ** 2) for i, n in enumerate(NODES)}
    icc_err = max(abs(icc.get(n, 0.0) - icc_true[n]) for n in NODES) / var_y
    planted = [NODES[int(c)] for c in d["culprit"]][: len(anomaly_top)]
    anomaly_err = float(np.mean([a != b for a, b in zip(anomaly_top, planted, strict=True)]))
    out = {"icc": icc_err, "anomaly": anomaly_err}
    if change is not None:
        total = float(m[CHANGED, 9] * SHIFT)
        ch = NODES[CHANGED]
        others = sum(abs(v) for k, v in change.items() if k != ch)
        out["change"] = (abs(change.get(ch, 0.0) - total) + others) / abs(total)
    if rejected is not None:
        out["graph"] = float(rejected)
    return out


def _timed(fn: Any, warm: bool) -> tuple[Any, float]:
    if warm:
        fn()
    t0 = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - t0


# --------------------------------------------------------------------------- scm_ppl


def run_scm_ppl(path: Path) -> dict:
    import jax.numpy as jnp
    import networkx as nx
    import numpyro
    import numpyro.distributions as dist

    from scm_ppl import attribution, check, fit

    d = np.load(path)
    w = d["w"]
    parents = [[j for j in range(10) if w[j, i] != 0.0] for i in range(10)]

    def program(n: int) -> None:
        b = numpyro.param("b", jnp.zeros(10))
        c = numpyro.param("c", jnp.zeros((10, 10)))
        s = numpyro.param("s", jnp.ones(10), constraint=dist.constraints.positive)
        xs: list = []
        with numpyro.plate("unit", n):
            for i in range(10):
                loc = b[i] + sum((c[j, i] * xs[j] for j in parents[i]), start=jnp.zeros(()))
                xs.append(numpyro.sample(NODES[i], dist.Normal(loc, s[i])))

    def table(x: np.ndarray) -> dict:
        return {n: x[:, i] for i, n in enumerate(NODES)}

    kw = {"batch_size": None, "num_epochs": 1500, "learning_rate": 0.05, "progress": False}
    fitted, fit_s = _timed(lambda: fit(program, table(d["train"]), **kw), warm=False)
    icc, icc_s = _timed(lambda: attribution.intrinsic_influence(fitted, TARGET), warm=True)
    anomaly, anomaly_s = _timed(
        lambda: attribution.anomaly(fitted, table(d["outliers"]), TARGET, num_replicates=1),
        warm=True,
    )
    change, change_s = _timed(
        lambda: attribution.distribution_change(
            table(d["train"]), table(d["after"]), TARGET, model=program, fit_kwargs=kw,
            num_replicates=2,
        ),
        warm=True,
    )  # fmt: skip
    graph = nx.DiGraph([(NODES[j], NODES[i]) for i in range(10) for j in parents[i]])
    graph.add_nodes_from(NODES)
    g, graph_s = _timed(
        lambda: check.graph(
            graph, table(d["train"]), test="partial_correlation",
            num_permutations=NUM_PERMUTATIONS,
        ),
        warm=True,
    )  # fmt: skip
    errors = _errors(d, icc.to_dict(), list(anomaly.top()), change.to_dict(), g.rejected)
    seconds = {"fit": fit_s, "icc": icc_s, "anomaly": anomaly_s, "change": change_s}
    return {"seconds": seconds | {"graph": graph_s}, "errors": errors}


# ---------------------------------------------------------------------------- DoWhy


def run_dowhy(path: Path, out: Path) -> dict:
    from functools import partial

    import networkx as nx
    import pandas as pd
    from dowhy import gcm
    from dowhy.gcm.falsify import falsify_graph
    from dowhy.gcm.independence_test import generalised_cov_based
    from dowhy.gcm.uncertainty import estimate_variance

    d = np.load(path)
    w = d["w"]
    graph = nx.DiGraph()
    graph.add_nodes_from(NODES)
    graph.add_edges_from((NODES[j], NODES[i]) for j, i in zip(*np.nonzero(w), strict=True))

    def frame(x: np.ndarray) -> pd.DataFrame:
        return pd.DataFrame(x, columns=list(NODES))

    def fitted(data: pd.DataFrame) -> Any:
        scm = gcm.InvertibleStructuralCausalModel(graph)
        for n in NODES:
            if graph.in_degree(n):
                scm.set_causal_mechanism(
                    n, gcm.AdditiveNoiseModel(gcm.ml.create_linear_regressor())
                )
            else:
                scm.set_causal_mechanism(n, gcm.EmpiricalDistribution())
        gcm.fit(scm, data)
        return scm

    train = frame(d["train"])
    scm, fit_s = _timed(lambda: fitted(train), warm=False)
    icc, icc_s = _timed(
        lambda: gcm.intrinsic_causal_influence(
            scm, TARGET, prediction_model=gcm.ml.create_linear_regressor(),
            attribution_func=lambda x, _: estimate_variance(x),
        ),
        warm=False,
    )  # fmt: skip
    icc_dict = {str(k): float(v) for k, v in icc.items()}
    seconds = {"fit": fit_s, "icc": icc_s}
    save = {"seconds": seconds, "errors": {}}

    def checkpoint(change: dict | None = None, rejected: bool | None = None) -> None:
        save["errors"] = _errors(d, icc_dict, top, change, rejected)
        out.write_text(json.dumps(save))

    outliers = frame(d["outliers"][:DOWHY_OUTLIERS])
    anomaly, anomaly_s = _timed(
        lambda: gcm.attribute_anomalies(scm, TARGET, anomaly_samples=outliers), warm=False
    )
    seconds["anomaly"] = anomaly_s * NUM_OUTLIERS / DOWHY_OUTLIERS
    nodes = list(anomaly)
    top = [nodes[k] for k in np.argmax(np.stack([anomaly[n] for n in nodes], 1), axis=1)]
    checkpoint()

    def mean_change(old: np.ndarray, new: np.ndarray) -> float:
        return float(np.mean(new) - np.mean(old))

    change, change_s = _timed(
        lambda: gcm.distribution_change(
            fitted(train), train, frame(d["after"]), TARGET,
            difference_estimation_func=mean_change,
        ),
        warm=False,
    )  # fmt: skip
    seconds["change"] = change_s
    change_dict = {str(k): float(v) for k, v in change.items()}
    checkpoint(change_dict)
    linear_gcm = partial(
        generalised_cov_based,
        prediction_model_X=gcm.ml.create_linear_regressor,
        prediction_model_Y=gcm.ml.create_linear_regressor,
    )
    result, graph_s = _timed(
        lambda: falsify_graph(
            graph, train, independence_test=linear_gcm, conditional_independence_test=linear_gcm,
            n_permutations=NUM_PERMUTATIONS, show_progress_bar=False,
        ),
        warm=False,
    )  # fmt: skip
    seconds["graph"] = graph_s
    checkpoint(change_dict, bool(result.falsifiable and result.falsified))
    return save


# ----------------------------------------------------------------------------- main


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dowhy-python", default=str(ROOT / "benchmarks/.envs/dowhy/bin/python"))
    parser.add_argument("--system", choices=["all", "scm_ppl", "dowhy"], default="all")
    parser.add_argument("--data", default=None)
    parser.add_argument("--out", default=None)
    parser.add_argument("--dowhy-timeout", type=float, default=1800.0)
    args = parser.parse_args()
    if args.system != "all":
        if args.system == "dowhy":
            run_dowhy(Path(args.data), Path(args.out))
        else:
            Path(args.out).write_text(json.dumps(run_scm_ppl(Path(args.data))))
        return
    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp) / "attribution.npz"
        write_data(data)
        results = {"scm_ppl": run_scm_ppl(data)}
        print(json.dumps(results), flush=True)
        out = Path(tmp) / "dowhy.json"
        command = [args.dowhy_python, "-m", "benchmarks.attribution", "--system", "dowhy"]
        command += ["--data", str(data), "--out", str(out)]
        try:
            subprocess.run(command, cwd=ROOT, check=True, timeout=args.dowhy_timeout)
        except subprocess.TimeoutExpired:
            print(f"DoWhy ran past {args.dowhy_timeout} s: the queries it finished follow.")
        except subprocess.CalledProcessError as err:
            print(f"DoWhy failed ({err}): the queries it finished follow.")
        results["dowhy"] = json.loads(out.read_text()) if out.exists() else {}
    ours, peer = results["scm_ppl"], results["dowhy"]
    print(json.dumps(results, indent=1))
    print(f"{'query':10s} {'scm_ppl s':>10s} {'DoWhy s':>10s} {'ratio':>8s} {'err ours':>9s} "
          f"{'err DoWhy':>9s}")  # fmt: skip
    nan = float("nan")
    for q in ("fit", "icc", "anomaly", "change", "graph"):
        a, b = ours["seconds"][q], peer.get("seconds", {}).get(q, nan)
        ea, eb = ours["errors"].get(q, nan), peer.get("errors", {}).get(q, nan)
        print(f"{q:10s} {a:10.3f} {b:10.3f} {b / a:7.1f}x {ea:9.4f} {eb:9.4f}")


if __name__ == "__main__":
    sys.exit(main())
