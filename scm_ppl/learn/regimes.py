"""Interventional regimes of fit's data: the ``interventions=`` list and ``regime=`` tags.

A regime is ``{site: Intervention | None}``; ``None`` means "set to the values recorded
in the data". Each is checked against the program (known sites, scorable kinds, one
unit's shape) and against the rows tagged with it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from scm_ppl.core.intervention import Intervention, as_intervention, describe
from scm_ppl.core.program import ProgramInfo, check_interventions
from scm_ppl.errors import DataError, InterventionError

__all__ = ["Regime", "describe_regime", "parse_regimes", "regime_key"]

Regime = dict[str, Intervention | None]  # site -> intervention (None: the recorded values)


def _labels(regime: Any, n: int, count: int) -> np.ndarray:
    if isinstance(regime, (list, tuple)):
        regime = [-1 if r is None else r for r in regime]
    try:
        labels = np.asarray(regime)
    except Exception as err:
        raise DataError(f"regime= is not an array: {err}.") from err
    if labels.shape != (n,):
        raise DataError(
            f"regime= has shape {labels.shape}; it needs one entry per row: shape ({n},)."
        )
    if not np.issubdtype(labels.dtype, np.integer):
        raise DataError(
            f"regime= holds {labels.dtype} values; expected integers: -1 (or None) for "
            "observational rows, k for rows generated under interventions[k]."
        )
    bad = sorted(set(labels[(labels < -1) | (labels >= count)].tolist()))
    if bad:
        valid = f"0..{count - 1}" if count else "none: no interventions were given"
        raise DataError(
            f"regime= holds value(s) {bad[:10]}; valid are -1 (observational) and "
            f"interventions[k] for k in {valid}."
        )
    return labels.astype(np.int32)


def parse_regimes(
    info: ProgramInfo, columns: Mapping[str, np.ndarray], interventions: Any, regime: Any, n: int
) -> tuple[list[Regime], np.ndarray]:
    """The regimes of ``interventions=`` and the regime tag of each row (``regime=``)."""
    if interventions is None or (regime is None and not interventions):
        labels = np.full(n, -1, np.int32) if regime is None else _labels(regime, n, 0)
        return [], labels
    if isinstance(interventions, (Mapping, str)) or not isinstance(interventions, Sequence):
        raise InterventionError(
            "interventions= is a list with one entry per interventional regime, each "
            "{site: value} (None: the values recorded in the data) or a list of site names; "
            f"got {type(interventions).__name__}."
        )
    regimes: list[Regime] = []
    for k, entry in enumerate(interventions):
        if isinstance(entry, Mapping):
            items = dict(entry)
        elif isinstance(entry, Sequence) and not isinstance(entry, str):
            items = dict.fromkeys(entry)
        else:
            raise InterventionError(
                f"interventions[{k}] must be {{site: value}} or a list of site names; got "
                f"{type(entry).__name__}."
            )
        unknown = [s for s in items if s not in info.sites]
        if unknown:
            raise InterventionError(
                f"Unknown intervention site(s) {unknown} in interventions[{k}]; the program has "
                f"sites {info.names()}."
            )
        if not items:
            raise InterventionError(
                f"interventions[{k}] is empty; tag observational rows with regime -1 instead."
            )
        spec: Regime = {}
        for site, value in items.items():
            if value is None:
                if site not in columns:
                    raise DataError(
                        f"interventions[{k}] sets '{site}' to its recorded values, but data have "
                        f"no column '{site}'. Add it, or give the value that was set."
                    )
                spec[site] = None
                continue
            iv = as_intervention(site, value)
            if iv.kind == "shift":
                raise InterventionError(
                    f"interventions[{k}] shifts '{site}' with a callable; its rows cannot be "
                    "scored, since data record the shifted value, not the natural one. Give the "
                    f"values that were set as data: interventions[{k}] = {{'{site}': None}}."
                )
            if iv.kind == "hard":
                unit = (1, *info.sites[site].shape[1:])
                try:
                    fits = np.broadcast_shapes(np.shape(iv.value), unit) == unit
                except ValueError:
                    fits = False
                if not fits:
                    raise InterventionError(
                        f"interventions[{k}] sets '{site}' to a value of shape "
                        f"{np.shape(iv.value)}, which is not one unit's value (shape "
                        f"{unit[1:]}). Per-row values go in the data, with {{'{site}': None}}."
                    )
            spec[site] = iv
        check_interventions(info, {s: iv for s, iv in spec.items() if iv is not None})
        regimes.append(spec)
    if regime is None:
        raise DataError(
            "interventions= needs regime=: one entry per row, -1 (or None) for observational "
            "rows and k for rows generated under interventions[k]."
        )
    labels = _labels(regime, n, len(regimes))
    counts = np.bincount(labels + 1, minlength=len(regimes) + 1)
    for k, spec in enumerate(regimes):
        if not counts[k + 1]:
            raise DataError(
                f"No row is tagged with regime {k} (interventions[{k}] = {describe_regime(spec)}); "
                "tag its rows or drop it."
            )
        for site, iv in spec.items():
            if iv is None or iv.kind != "hard" or site not in columns:
                continue
            recorded = columns[site][labels == k]
            setting = np.broadcast_to(np.asarray(iv.value), recorded.shape)
            if not np.allclose(recorded, setting, rtol=1e-6, atol=1e-6):
                raise DataError(
                    f"Rows of regime {k} record values of '{site}' other than the value "
                    f"interventions[{k}] sets. Set it to None to use the recorded values."
                )
    return regimes, labels


def describe_regime(spec: Regime) -> dict[str, Any]:
    known = describe({s: iv for s, iv in spec.items() if iv is not None})
    return {s: known.get(s, {"kind": "recorded", "value": None}) for s in spec}


def regime_key(spec: Regime) -> tuple:
    """A hashable key of a regime (a cache key of the compiled epoch)."""
    parts = []
    for site, iv in sorted(spec.items()):
        if iv is None:
            parts.append((site, "recorded"))
        elif iv.kind == "hard":
            value = np.asarray(iv.value)
            parts.append((site, "hard", value.shape, str(value.dtype), value.tobytes()))
        else:
            parts.append((site, iv.kind, iv.value))  # a distribution: hashed by identity
    return tuple(parts)
