"""Tables in: a pandas DataFrame read as ``{column: array}``, with each column's site type.

Data and evidence arrive as DataFrames more often than as dicts of arrays. This module is
the one place where a table becomes the package's columns: the dtype decides the site type
(``bool`` or a 0/1 integer column → ``"binary"``, ``category`` or a small-integer column →
``"categorical"``, anything else numeric → ``"continuous"``), categories become integer
codes in the order of their levels, and everything a table can hold that a site cannot
(NaN, mixed types, a level unseen in training) is refused with the columns and the count.
pandas is imported only when a table is given, so ``import scm_ppl`` stays light.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping
from typing import Any

import numpy as np

from scm_ppl.errors import DataError, DataWarning

__all__ = [
    "MISSING",
    "as_columns",
    "drop_missing",
    "is_frame",
    "site_levels",
    "site_types",
    "to_frame",
]

MISSING = ("raise", "drop")
CATEGORICAL_MAX_LEVELS = 20  # an integer column with more distinct values is a count


def is_frame(data: Any) -> bool:
    """Whether ``data`` is a pandas DataFrame (checked without importing pandas).

    Examples
    --------
    >>> is_frame({"x": [1.0]})
    False
    """
    return type(data).__name__ == "DataFrame" and type(data).__module__.startswith("pandas")


def _column(name: str, series: Any, levels: tuple | None) -> tuple[np.ndarray, tuple | None]:
    import pandas as pd

    if isinstance(series.dtype, pd.CategoricalDtype):
        seen = tuple(series.cat.categories.tolist())
        if levels is not None:
            unseen = sorted({str(v) for v in series.dropna().unique()} - {str(v) for v in levels})
            if unseen:
                raise DataError(
                    f"Column '{name}' holds level(s) {unseen} unseen in training (levels "
                    f"{list(levels)}); a fitted mechanism has no weights for them. Drop those "
                    "rows or refit with them."
                )
            codes = pd.Categorical(series, categories=list(levels)).codes
            return np.asarray(codes, np.int32), levels
        return np.asarray(series.cat.codes, np.int32), seen
    if levels is not None and pd.api.types.is_string_dtype(series.dtype):  # labels as text
        return _column(name, series.astype("category"), levels)
    if series.dtype == object:
        kinds = sorted({type(v).__name__ for v in series.dropna()})
        raise DataError(
            f"Column '{name}' has mixed or non-numeric values (Python types {kinds}); a site "
            "holds numbers. Convert it with pd.to_numeric, or make it a category "
            "(df[col].astype('category'))."
        )
    array = series.to_numpy()
    if array.dtype.kind not in "biuf":
        raise DataError(
            f"Column '{name}' has dtype {series.dtype}; expected numbers, booleans or a category."
        )
    if levels is not None and array.dtype.kind in "iu":
        if not all(isinstance(v, (int, np.integer)) for v in levels):
            # Named levels: integers are their codes, 0 .. len(levels) - 1.
            bad = sorted(set(array[(array < 0) | (array >= len(levels))].tolist()))
            if bad:
                raise DataError(
                    f"Column '{name}' holds code(s) {bad[:10]} unseen in training (levels "
                    f"{list(levels)}, codes 0..{len(levels) - 1}). Drop those rows, give the "
                    "labels as a category, or refit with them."
                )
            return array, levels
        unseen = sorted(set(np.unique(array).tolist()) - set(levels))
        if unseen:
            raise DataError(
                f"Column '{name}' holds level(s) {unseen} unseen in training (levels "
                f"{list(levels)}). Drop those rows or refit with them."
            )
        if tuple(levels) != tuple(range(len(levels))):  # integer labels: their codes
            codes = pd.Categorical(array, categories=list(levels)).codes
            return np.asarray(codes, np.int32), levels
    return array, None


def as_columns(
    data: Any,
    *,
    missing: str = "raise",
    levels: Mapping[str, tuple] | None = None,
    what: str = "data",
) -> dict[str, np.ndarray]:
    """``{column: array}`` from a DataFrame; any other input comes back unchanged.

    Parameters
    ----------
    data
        A pandas DataFrame (or anything else, returned as it is for the caller to check).
    missing
        ``"raise"`` (default): NaN or missing values are an error that names the columns
        and the count. ``"drop"``: drop those rows, with a :class:`~scm_ppl.errors.DataWarning`
        that says how many.
    levels
        ``{column: levels}`` seen in training; a category holding another level is an error.
    what
        What the table is, for messages (``"data"``, ``"evidence"``, ``"rows"``).

    Examples
    --------
    >>> import pandas as pd
    >>> cols = as_columns(pd.DataFrame({"t": [True, False], "y": [1.5, 2.0]}))
    >>> cols["t"].dtype, cols["y"].tolist()
    (dtype('bool'), [1.5, 2.0])
    """
    if not is_frame(data):
        return data
    if missing not in MISSING:
        raise DataError(f"missing= must be one of {MISSING}; got {missing!r}.")
    if not all(isinstance(c, str) for c in data.columns):
        bad = [c for c in data.columns if not isinstance(c, str)][:5]
        raise DataError(f"The {what} table's column names must be site names (str); got {bad}.")
    data, _, _ = drop_missing(data, missing, what=what, stacklevel=4)
    levels = dict(levels or {})
    return {name: _column(name, data[name], levels.get(name))[0] for name in data.columns}


def _missing_mask(data: Any) -> tuple[np.ndarray | None, dict[str, int]]:
    """Rows holding a missing value, and the count per column; ``None`` where the rows
    cannot be lined up (ragged or mismatched columns: the caller's checks say so)."""
    if is_frame(data):
        absent = data.isna()
        counts = {str(c): int(k) for c, k in absent.sum().items() if k}
        return absent.any(axis=1).to_numpy(), counts
    masks: dict[str, np.ndarray] = {}
    for name, value in data.items():
        try:
            array = np.asarray(value)
        except Exception:  # ragged lists: refused later, with their own message
            continue
        if array.dtype.kind == "f" and array.ndim >= 1 and array.size:
            masks[str(name)] = np.asarray(np.isnan(array).reshape(len(array), -1).any(axis=1))
    if not masks or len({len(m) for m in masks.values()}) > 1:
        return None, {}
    counts = {name: int(m.sum()) for name, m in masks.items() if m.any()}
    return np.logical_or.reduce(list(masks.values())), counts


def drop_missing(
    data: Any, missing: str = "raise", *, what: str = "data", also: Any = None, stacklevel: int = 3
) -> tuple[Any, Any, int]:
    """``(data, also, dropped)``: the rows of ``data`` holding missing values refused or dropped.

    Parameters
    ----------
    data
        A DataFrame (``NaN``/``None`` anywhere) or ``{column: array}`` (``NaN`` in float
        columns, any extra axis of a row counting); anything else comes back unchanged.
    missing
        ``"raise"``: a DataFrame with missing values is an error naming the row count and
        the count per column (a mapping is left to the caller's per-column checks, which
        refuse NaN/inf with their counts). ``"drop"``: those rows are dropped, with a
        :class:`~scm_ppl.errors.DataWarning` that says how many.
    also
        A per-row array (regime tags, weights) dropped alongside; ``None`` or anything
        that is not one row per unit is returned unchanged.

    Examples
    --------
    >>> import warnings
    >>> import numpy as np
    >>> with warnings.catch_warnings():
    ...     warnings.simplefilter("ignore")  # a DataWarning says how many rows went
    ...     data, tags, dropped = drop_missing(
    ...         {"x": np.array([1.0, np.nan, 3.0])}, "drop", also=[0, 1, 2]
    ...     )
    >>> data["x"].tolist(), tags, dropped
    ([1.0, 3.0], [0, 2], 1)
    """
    if missing not in MISSING:
        raise DataError(f"missing= must be one of {MISSING}; got {missing!r}.")
    if not (is_frame(data) or isinstance(data, Mapping)):
        return data, also, 0
    mask, counts = _missing_mask(data)
    if mask is None or not counts:
        return data, also, 0
    rows, total = int(mask.sum()), len(mask)
    if missing == "raise":
        if not is_frame(data):
            return data, also, 0
        raise DataError(
            f"The {what} table holds missing values (NaN/None) in {rows} row(s): per "
            f"column {counts}. Drop or impute them, or pass missing='drop'."
        )
    warnings.warn(
        f"Dropped {rows} of {total} row(s) of the {what} table with missing values "
        f"(per column {counts}).",
        DataWarning,
        stacklevel=stacklevel,
    )
    keep = ~mask
    frame: Any = data
    data = frame.loc[keep] if is_frame(data) else {k: np.asarray(v)[keep] for k, v in data.items()}
    if also is not None and np.ndim(also) == 1 and len(also) == total:
        if isinstance(also, (list, tuple)):  # keep None entries as they are
            also = [a for a, k in zip(also, keep, strict=True) if k]
        else:
            also = np.asarray(also)[keep]
    return data, also, rows


def site_levels(program: Any) -> dict[str, tuple]:
    """``{site: levels}`` a program declares for its discrete sites (code ``k`` is
    ``levels[k]``), so a table's labels become the codes its mechanisms were fitted on.

    A program declares them in a ``levels`` attribute (a mapping); a wrapper is looked
    through where it keeps its program in ``base_model`` (a fit) or ``fn`` (a NumPyro
    handler, a mechanism intervention). A program that declares none gives ``{}``.

    Examples
    --------
    >>> class Program:
    ...     levels = {"k": ("a", "b")}
    ...     def __call__(self, n=1): ...
    >>> site_levels(Program()), site_levels(lambda n=1: None)
    ({'k': ('a', 'b')}, {})
    """
    for _ in range(16):  # wrappers of wrappers; a cycle of them is not worth following
        levels = getattr(program, "levels", None)
        if isinstance(levels, Mapping):
            return {str(k): tuple(v) for k, v in levels.items()}
        inner = getattr(program, "base_model", None) or getattr(program, "fn", None)
        if inner is None or inner is program:
            return {}
        program = inner
    return {}


def site_types(data: Any) -> dict[str, str]:
    """The site type of every column: ``"binary"``, ``"categorical"`` or ``"continuous"``.

    ``bool`` and 0/1 integer columns are binary; ``category`` columns and integer columns
    with at most 20 distinct non-negative values are categorical; the rest are continuous.

    Examples
    --------
    >>> import pandas as pd
    >>> site_types(pd.DataFrame({"t": [0, 1, 1], "k": [0, 2, 1], "y": [0.5, 1.0, 3.0]}))
    {'t': 'binary', 'k': 'categorical', 'y': 'continuous'}
    """
    import pandas as pd

    out = {}
    for name in data.columns:
        series = data[name]
        if isinstance(series.dtype, pd.CategoricalDtype):
            out[name] = "binary" if len(series.cat.categories) == 2 else "categorical"
            continue
        array = np.asarray(series.dropna().to_numpy())
        values = np.unique(array) if array.dtype.kind in "biu" else None
        if array.dtype.kind == "b" or (values is not None and set(values.tolist()) <= {0, 1}):
            out[name] = "binary"
        elif (
            values is not None
            and len(values) <= CATEGORICAL_MAX_LEVELS
            and values.min(initial=0) >= 0
        ):
            out[name] = "categorical"
        else:
            out[name] = "continuous"
    return out


def to_frame(columns: Mapping[str, Any]) -> Any:
    """A DataFrame from ``{column: array with one row per unit}`` (extra axes flattened).

    Examples
    --------
    >>> import numpy as np
    >>> to_frame({"x": np.arange(2.0)}).shape
    (2, 1)
    """
    import pandas as pd

    out = {}
    for name, value in columns.items():
        array = np.asarray(value)
        if array.ndim <= 1:
            out[name] = array
        else:
            flat = array.reshape(array.shape[0], -1)
            for j in range(flat.shape[1]):
                out[f"{name}[{j}]"] = flat[:, j]
    return pd.DataFrame(out)
