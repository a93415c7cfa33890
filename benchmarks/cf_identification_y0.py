"""Time y0's ID* / IDC* on the queries of cf_identification.py.

Run under a Python that has y0: reads the cases as JSON on stdin, writes [time, verdict]
per case as JSON on stdout (the verdict is y0's exception name where it raised). Binary
values: 1 is y0's ``+V``, 0 its ``-V``.
"""

import json
import sys
import time
import warnings

warnings.filterwarnings("ignore")

from y0.algorithm.identify.id_star import id_star  # noqa: E402
from y0.algorithm.identify.idc_star import idc_star  # noqa: E402
from y0.dsl import Variable  # noqa: E402
from y0.graph import NxMixedGraph  # noqa: E402


def value(name, x):
    return +Variable(name) if x else -Variable(name)


def event(worlds):
    out = {}
    for iv, ev in worlds:
        for name, x in ev:
            v = Variable(name)
            key = v.intervene([value(k, y) for k, y in iv]) if iv else v
            out[key] = value(name, x)
    return out


times = []
for directed, undirected, nodes, query, given in json.load(sys.stdin):
    graph = NxMixedGraph.from_str_edges(nodes=nodes, directed=directed, undirected=undirected)
    start = time.perf_counter()
    try:
        if given:
            answer = idc_star(graph, event(query), event(given))
        else:
            answer = id_star(graph, event(query))
        # y0 prints an inconsistent event as Zero() (not "0"): count it as zero, not a formula
        verdict = "zero" if str(answer) in ("0", "Zero()") else "identified"
    except Exception as err:  # y0 raises for not identified (Unidentifiable) and bad input
        verdict = type(err).__name__
    times.append([time.perf_counter() - start, verdict])
print(json.dumps(times))
