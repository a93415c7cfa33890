"""DoWhy gcm on LaLonde (issue 18), run in its own environment (benchmarks/.envs/dowhy).

    benchmarks/.envs/dowhy/bin/python benchmarks/dowhy_real_data.py SEED [SEED ...]
    benchmarks/.envs/dowhy/bin/python benchmarks/dowhy_real_data.py sachs DESIGN_JSON

LaLonde: prints one JSON object per seed: the ATT over the 185 NSW treated men (CPS controls, raw
dollars), each treated row's counterfactual ``re78`` under ``treat = 0`` from
``gcm.counterfactual_samples`` (abduction per row, as DoWhy documents it), with a
percentile bootstrap over rows, the mechanisms ``gcm.auto.assign_causal_mechanisms``
chose, and the wall time. The data are read from models/data (no network).

Sachs: the design comes from benchmarks/real_data.py as JSON (graph edges, training blocks,
what each block cuts, the interventions), so both libraries get the same graph, the same
training rows per mechanism and the same reagent levels. ``gcm.auto`` assigns each node's
mechanism on the pooled training rows; then each mechanism is fitted on the rows of the
blocks that do not cut it (the roots on the CD3/CD28 block only), as scm_ppl's regimes
do. DoWhy has no mechanism intervention, so U0126 is asked as
``interventional_samples`` with pmek *set* to the inhibited level Erk's mechanism sees in
scm_ppl (pmek's only child is Erk, so every other column is the same question; the
measured pmek column differs), and Psitectorigenin as the same shift of PIP2 that scm_ppl
applies (DoWhy takes a function of the natural value). Prints one JSON object per block:
the predicted cells (log values), the mechanisms chosen and the wall time.
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


def run_sachs(design: dict) -> list[dict]:
    np.random.seed(0)
    gcm.util.general.set_random_seed(0)
    path = DATA.parent / "sachs" / "cyto_full_data.csv"
    cells = np.log(pd.read_csv(path))
    block = np.empty(len(cells), object)
    for name, (start, stop) in design["blocks"].items():
        block[start:stop] = name
    graph = nx.DiGraph([tuple(e) for e in design["edges"]])
    train = cells[np.isin(block, design["train"])]
    t0 = time.perf_counter()
    scm = gcm.ProbabilisticCausalModel(graph)
    gcm.auto.assign_causal_mechanisms(scm, train)
    for node in graph.nodes:
        keep = [b for b in design["train"] if node not in design["cut"][b]]
        rows = cells[np.isin(block, keep)]
        gcm.fitting_sampling.fit_causal_model_of_target(scm, node, rows)
    fitted = time.perf_counter() - t0
    chosen = {n: type(scm.causal_mechanism(n)).__name__ for n in graph.nodes}
    for n in graph.nodes:
        model = getattr(
            getattr(scm.causal_mechanism(n), "prediction_model", None), "sklearn_model", None
        )
        if model is not None:
            chosen[n] = type(model).__name__
    out = []
    for name, (site, kind, value) in design["interventions"].items():
        start, stop = design["blocks"][name]
        fn = (
            (lambda x, v=value: np.full_like(x, v)) if kind == "set" else (lambda x, v=value: x + v)
        )
        t1 = time.perf_counter()
        pred = gcm.interventional_samples(scm, {site: fn}, num_samples_to_draw=stop - start)
        out.append(
            {
                "block": name,
                "asked": f"{site} {kind} {value:+.3f}",
                "columns": list(cells.columns),
                "cells": pred[list(cells.columns)].to_numpy().tolist(),
                "mechanisms": chosen,
                "seconds": fitted + time.perf_counter() - t1,
            }
        )
    return out


if __name__ == "__main__":
    if sys.argv[1:2] == ["sachs"]:
        for row in run_sachs(json.loads(sys.argv[2])):
            print(json.dumps(row), flush=True)
    else:
        for arg in sys.argv[1:]:
            print(json.dumps(run(int(arg))), flush=True)
