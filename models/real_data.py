"""Loaders for the real data sets vendored under ``models/data/`` (licences beside them).

* :func:`lalonde` — the NSW treated men with the CPS controls (or the experimental
  controls), LaLonde (1986) / Dehejia & Wahba (1999); benchmark ATT ``LALONDE_ATT``.
* :func:`sachs` — Sachs et al. (2005) phosphoprotein measurements, one block per
  experimental condition (``SACHS_BLOCKS``), and :func:`sachs_graph`, the consensus graph.

Nothing here is read at import time and nothing is downloaded.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import networkx as nx

DATA = Path(__file__).resolve().parent / "data"

LALONDE_ATT = 1794.34
"""Mean ``re78`` of the NSW treated minus the randomised controls (dollars)."""

LALONDE_COLUMNS = (
    "treat",
    "age",
    "educ",
    "black",
    "hisp",
    "marr",
    "nodegree",
    "re74",
    "re75",
    "re78",
)

SACHS_BLOCKS: dict[str, tuple[int, int]] = {
    "cd3cd28": (0, 853),
    "icam2": (853, 1755),
    "akt_inhibitor": (1755, 2666),
    "g0076": (2666, 3389),
    "psitectorigenin": (3389, 4199),
    "u0126": (4199, 4998),
    "ly294002": (4998, 5846),
    "pma": (5846, 6759),
    "b2camp": (6759, 7466),
}
"""Row ranges (0-based, end exclusive) of the nine conditions in ``cyto_full_data.csv``."""


def lalonde(controls: str = "cps") -> Any:
    """The NSW treated men with ``controls="cps"`` (15,992 CPS men) or ``"nsw"`` (the 260
    randomised controls), as a DataFrame with the columns ``LALONDE_COLUMNS`` (earnings
    ``re74, re75, re78`` in dollars; ``treat`` and the indicators are 0/1 integers).

    Examples
    --------
    >>> df = lalonde()
    >>> len(df), int(df["treat"].sum())
    (16177, 185)
    """
    import pandas as pd

    if controls not in ("cps", "nsw"):
        raise ValueError(f"controls must be 'cps' or 'nsw'; got {controls!r}.")
    nsw = pd.read_csv(DATA / "lalonde" / "nsw_mixtape.csv")
    if controls == "nsw":
        out = nsw
    else:
        cps = pd.read_csv(DATA / "lalonde" / "cps_mixtape.csv")
        out = pd.concat([nsw[nsw["treat"] == 1], cps], ignore_index=True)
    out = pd.DataFrame(out[list(LALONDE_COLUMNS)]).reset_index(drop=True)
    return out.astype({c: "int64" for c in LALONDE_COLUMNS[:7]})


def sachs(block: str | None = None, *, log: bool = True) -> Any:
    """Sachs' phosphoprotein data (natural-log values by default), one condition's block or
    all rows with a ``condition`` column when ``block`` is None.

    Examples
    --------
    >>> df = sachs("cd3cd28")
    >>> df.shape
    (853, 11)
    """
    import numpy as np
    import pandas as pd

    df = pd.read_csv(DATA / "sachs" / "cyto_full_data.csv")
    if log:
        df = df.apply(np.log)
    if block is None:
        labels = np.empty(len(df), object)
        for name, (start, stop) in SACHS_BLOCKS.items():
            labels[start:stop] = name
        return df.assign(condition=labels)
    if block not in SACHS_BLOCKS:
        raise ValueError(f"block must be one of {list(SACHS_BLOCKS)}; got {block!r}.")
    start, stop = SACHS_BLOCKS[block]
    return df.iloc[start:stop].reset_index(drop=True)


def sachs_graph() -> nx.DiGraph:
    """The 18-edge consensus graph (it has the cycle PIP3 → plcg → PIP2 → PIP3).

    Examples
    --------
    >>> sachs_graph().number_of_edges()
    18
    """
    import pandas as pd

    edges = pd.read_csv(DATA / "sachs" / "consensus_graph.csv")
    return nx.DiGraph(list(zip(edges["Cause"], edges["Effect"], strict=True)))
