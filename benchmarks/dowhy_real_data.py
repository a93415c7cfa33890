"""DoWhy gcm on LaLonde (issue 18), run in its own environment (benchmarks/.envs/dowhy).

    benchmarks/.envs/dowhy/bin/python benchmarks/dowhy_real_data.py SEED [SEED ...]

Prints one JSON object per seed: the ATT over the 185 NSW treated men (CPS controls, raw
dollars), each treated row's counterfactual ``re78`` under ``treat = 0`` from
``gcm.counterfactual_samples`` (abduction per row, as DoWhy documents it), with a
percentile bootstrap over rows, the mechanisms ``gcm.auto.assign_causal_mechanisms``
chose, and the wall time. The data are read from models/data (no network).
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import networkx as nx
import numpy as np
import pandas as pd
from dowhy import gcm

DATA = Path(__file__).resolve().parent.parent / "models" / "data" / "lalonde"
COVARIATES = ["age", "educ", "black", "hisp", "marr", "nodegree", "re74", "re75"]


def lalonde() -> pd.DataFrame:
    nsw = pd.read_csv(DATA / "nsw_mixtape.csv")
    cps = pd.read_csv(DATA / "cps_mixtape.csv")
    df = pd.concat([nsw[nsw["treat"] == 1], cps], ignore_index=True)
    return df[["treat", *COVARIATES, "re78"]].astype(float).reset_index(drop=True)


def run(seed: int) -> dict:
    np.random.seed(seed)
    gcm.util.general.set_random_seed(seed)
    df = lalonde()
    graph = nx.DiGraph([(c, "treat") for c in COVARIATES] + [(c, "re78") for c in COVARIATES])
    graph.add_edge("treat", "re78")
    t0 = time.perf_counter()
    scm = gcm.InvertibleStructuralCausalModel(graph)
    summary = gcm.auto.assign_causal_mechanisms(scm, df)
    gcm.fit(scm, df)
    treated = df[df["treat"] == 1]
    cf = gcm.counterfactual_samples(scm, {"treat": lambda t: 0.0}, observed_data=treated)
    per_row = treated["re78"].to_numpy() - cf["re78"].to_numpy()
    rng = np.random.default_rng(seed)
    boot = per_row[rng.integers(len(per_row), size=(1000, len(per_row)))].mean(1)
    chosen = {node: type(scm.causal_mechanism(node)).__name__ for node in ("treat", "re78")}
    re78 = scm.causal_mechanism("re78")
    model = getattr(getattr(re78, "prediction_model", None), "sklearn_model", None)
    return {
        "seed": seed,
        "att": float(per_row.mean()),
        "interval": [float(np.quantile(boot, 0.025)), float(np.quantile(boot, 0.975))],
        "mechanisms": chosen,
        "re78_model": type(model).__name__ if model is not None else None,
        "seconds": time.perf_counter() - t0,
        "summary_lines": len(str(summary).splitlines()),
    }


if __name__ == "__main__":
    for arg in sys.argv[1:]:
        print(json.dumps(run(int(arg))), flush=True)
