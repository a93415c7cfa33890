"""Counterfactual identification (ID*, IDC*) on random 10- and 20-node ADMGs.

For each size, ``--graphs`` random ADMGs (fixed seed) each get one query of 2-3 worlds
(1-2 interventions and 1-2 events per world; every third query with a conditioning
event). Timed per query: the counterfactual graph and the verdict (and estimand), i.e.
one call of :func:`scm_ppl.identify_counterfactual`. Reported: median and worst time,
and how many queries were identified, inconsistent or not identified.

With ``--y0 PYTHON`` (a Python that has ``y0`` installed, e.g. a side venv made with
``python3 -m venv /tmp/y0env && /tmp/y0env/bin/pip install y0``) the same queries are
timed with y0's ``id_star`` / ``idc_star`` in that interpreter.

Run: ``.venv/bin/python benchmarks/cf_identification.py [--graphs 50] [--y0 /tmp/y0env/bin/python]``
"""

from __future__ import annotations

import argparse
import itertools
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

import networkx as nx
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from scm_ppl import ADMG, identify_counterfactual


def random_case(rng: np.random.Generator, n: int) -> tuple[ADMG, list, list | None]:
    names = [f"V{i}" for i in range(n)]
    order = [str(v) for v in rng.permutation(names)]
    g = nx.DiGraph()
    g.add_nodes_from(names)
    g.add_edges_from((a, b) for a, b in itertools.combinations(order, 2) if rng.random() < 2.5 / n)
    pairs = [p for p in itertools.combinations(names, 2) if rng.random() < 1.0 / n]
    admg = ADMG(g, pairs)

    def world() -> tuple[dict[str, int], dict[str, int]]:
        picked = [str(v) for v in rng.permutation(names)]
        iv = {v: int(rng.integers(0, 2)) for v in picked[: rng.integers(1, 3)]}
        rest = [v for v in picked if v not in iv]
        return iv, {v: int(rng.integers(0, 2)) for v in rest[: rng.integers(1, 3)]}

    query = [world() for _ in range(int(rng.integers(2, 4)))]
    return admg, query, None


def cases(n: int, graphs: int, seed: int) -> list[tuple[ADMG, list, list | None]]:
    rng = np.random.default_rng(seed)
    out = []
    for i in range(graphs):
        g, query, _ = random_case(rng, n)
        given = (
            [({}, {query[0][1].popitem()[0]: 1})] if i % 3 == 0 and len(query[0][1]) > 1 else None
        )
        out.append((g, query, given))
    return out


def time_ours(items: list) -> tuple[list[float], dict[str, int]]:
    times, verdicts = [], {"identified": 0, "inconsistent": 0, "not identified": 0}
    for g, query, given in items:
        start = time.perf_counter()
        r = identify_counterfactual(g, query, given)
        times.append(time.perf_counter() - start)
        key = (
            "inconsistent"
            if r.inconsistent
            else "identified"
            if r.identifiable
            else "not identified"
        )
        verdicts[key] += 1
    return times, verdicts


def y0_events(query: list) -> list:
    return [[sorted(iv.items()), sorted(ev.items())] for iv, ev in query]


def time_y0(python: str, items: list) -> list[tuple[float, str]] | str:
    """Times and verdicts of y0's id_star / idc_star on the same queries, or why not."""
    payload = [
        [
            [list(e) for e in g.directed.edges],
            [list(p) for p in g.bidirected_edges()],
            list(g.nodes),
            y0_events(query),
            y0_events(given) if given else None,
        ]
        for g, query, given in items
    ]
    done = subprocess.run(
        [python, str(Path(__file__).with_name("cf_identification_y0.py"))],
        input=json.dumps(payload),
        capture_output=True,
        text=True,
        timeout=3600,
    )
    if done.returncode != 0:
        return f"y0 run failed: {done.stderr.strip().splitlines()[-1] if done.stderr else ''}"
    return json.loads(done.stdout)


def summary(times: list[float]) -> str:
    return f"median {statistics.median(times) * 1e3:8.2f} ms   worst {max(times) * 1e3:8.2f} ms"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--graphs", type=int, default=50)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--y0", default=None, help="a Python interpreter that has y0")
    args = parser.parse_args()
    for n in (10, 20):
        items = cases(n, args.graphs, args.seed + n)
        times, verdicts = time_ours(items)
        print(f"{n:2d} nodes, {len(items)} queries  scm_ppl: {summary(times)}   {verdicts}")
        if args.y0:
            theirs = time_y0(args.y0, items)
            if isinstance(theirs, str):
                print(f"{'':22}y0: {theirs}")
            else:
                counts: dict[str, int] = {}
                for _, verdict in theirs:
                    counts[verdict] = counts.get(verdict, 0) + 1
                print(f"{'':22}y0:      {summary([t for t, _ in theirs])}   {counts}")


if __name__ == "__main__":
    main()
