"""Checks of fit's settings and data against the program, the program's learnable
structure, and the train/validation split.

Everything here runs on the host before anything is compiled: the data columns, regime
tags and latent sites are validated against the record of the program that
:func:`~scm_ppl.core.program.inspect_program` keeps (each error names the site and the fix),
and one run of the program (:func:`discover`) finds its parameters, global latent sites
and supports.
"""

from __future__ import annotations

import inspect
import re
from collections.abc import Callable, Mapping
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from numpyro import handlers
from numpyro.distributions import constraints

from scm_ppl.core.frames import MISSING, as_columns, drop_missing
from scm_ppl.core.program import ProgramInfo, inspect_program
from scm_ppl.core.validate import (
    check_method,
    nonnegative_number,
    positive_int,
    positive_number,
)
from scm_ppl.errors import DataError, ProgramError, SettingsError
from scm_ppl.learn.regimes import Regime, parse_regimes

__all__ = [
    "METHODS",
    "Data",
    "Structure",
    "check_settings",
    "check_structure",
    "discover",
    "prepare",
    "split_rng",
    "split_rows",
]


METHODS = ("map", "svi", "nuts")


class Data(NamedTuple):
    """Validated data: columns cast to their site's dtype, regime tags, regime specs."""

    columns: dict[str, np.ndarray]
    labels: np.ndarray  # (N,) ints: -1 observational, k for interventions[k]
    regimes: list[Regime]
    latent: tuple[str, ...]
    info: ProgramInfo
    dropped: int = 0  # rows dropped for missing values (missing="drop")


class Structure(NamedTuple):
    """What one run of the program shows: parameters, global latents, supports."""

    params: dict[str, Any]  # initial (constrained) values, pytrees
    constraints: dict[str, Any]
    globals: dict[str, Any]  # a prior draw of each global latent sample site
    supports: dict[str, Any]  # support of every sample site


def check_settings(method: str, **values: Any) -> None:
    """Check fit's settings (``values``: its keyword arguments, by name)."""
    check_method(method, METHODS)
    for name in ("num_epochs", "num_samples", "num_warmup", "num_chains"):
        positive_int(name, values[name])
    for name in ("batch_size", "patience", "num_particles"):
        positive_int(name, values[name], allow_none=True)
    positive_number("learning_rate", values["learning_rate"])
    nonnegative_number("min_delta", values["min_delta"])
    frac = values["validation_fraction"]
    if frac is not None and not (
        isinstance(frac, (int, float, np.integer, np.floating)) and 0 <= frac < 1
    ):
        raise SettingsError(f"validation_fraction must be in [0, 1) or None; got {frac!r}.")
    if method == "nuts" and frac:
        raise SettingsError(
            "method='nuts' conditions on every row and has no learning curve; leave "
            "validation_fraction unset."
        )


def _columns(data: Any) -> dict[str, np.ndarray]:
    data = as_columns(data)  # a DataFrame: its columns, NaN refused with the count
    if not isinstance(data, Mapping):
        raise DataError(
            "data must be a mapping from site name to an array with one row per unit, e.g. "
            f"{{'x': x, 'y': y}}; got {type(data).__name__}."
        )
    if not data:
        raise DataError("data hold no columns; give {site: array with one row per unit}.")
    out: dict[str, np.ndarray] = {}
    for name, value in data.items():
        if not isinstance(name, str):
            raise DataError(f"Data column names must be site names (str); got {name!r}.")
        try:
            array = np.asarray(value)
        except Exception as err:  # ragged lists and odd objects fail in many ways
            raise DataError(f"Data for '{name}' are not an array: {err}.") from err
        if not any(np.issubdtype(array.dtype, t) for t in (np.bool_, np.integer, np.floating)):
            raise DataError(
                f"Data for '{name}' have dtype {array.dtype}; expected real numbers or booleans."
            )
        if array.ndim == 0:
            raise DataError(
                f"Data for '{name}' are a scalar; a column holds one value per unit "
                "(the unit axis first)."
            )
        out[name] = array
    lengths = {name: a.shape[0] for name, a in out.items()}
    if len(set(lengths.values())) > 1:
        raise DataError(
            f"Data columns have different numbers of rows: {lengths}; every column holds "
            "one row per unit."
        )
    if not next(iter(lengths.values())):
        raise DataError("data have no rows; give at least one unit.")
    return out


def _check_size_arg(model: Callable, size_arg: str, plate: str) -> None:
    try:
        signature = inspect.signature(model)
    except (TypeError, ValueError):
        return
    params = signature.parameters
    if size_arg in params or any(p.kind is p.VAR_KEYWORD for p in params.values()):
        return
    raise DataError(
        f"The program takes no argument {size_arg!r} to size its {plate!r} plate; its "
        f"arguments are {list(params)}. fit calls the program with size_arg=<number of rows> "
        f"and reads one row per unit from numpyro.plate(plate, ...): {plate_hint(model)}"
    )


def plate_hint(model: Callable) -> str:
    """The ``plate=``/``size_arg=`` pair to pass, read from the program's own
    ``numpyro.plate("name", size)`` calls, so one message gives both settings at once."""
    try:
        source = inspect.getsource(model)
    except (OSError, TypeError):
        source = ""
    params = _parameters(model)
    found = [
        (name, size)
        for name, size in re.findall(r"plate\(\s*[\"'](\w+)[\"']\s*,\s*(\w+)", source)
        if size in params
    ]
    if len(found) == 1:
        name, size = found[0]
        return f"pass plate={name!r}, size_arg={size!r}."
    return "pass plate= with the units' plate name and size_arg= with the argument sizing it."


def _parameters(model: Callable) -> list[str]:
    try:
        return list(inspect.signature(model).parameters)
    except (TypeError, ValueError):
        return []


def _check_finite(columns: Mapping[str, np.ndarray]) -> None:
    for name, array in columns.items():
        if np.issubdtype(array.dtype, np.floating):
            bad = int(array.size - np.count_nonzero(np.isfinite(array)))
            if bad:
                raise DataError(
                    f"Data for '{name}' hold {bad} NaN/inf value(s) out of {array.size}; drop "
                    "those rows or impute them before fitting (missing='drop' drops rows with "
                    "NaN, with a warning and the count on the fit)."
                )


def _check_sites(
    info: ProgramInfo, columns: dict[str, np.ndarray], plate: str, n: int
) -> dict[str, np.ndarray]:
    per_unit = [name for name, s in info.sites.items() if plate in s.batch_dims]
    if not per_unit:
        plates = sorted({p for s in info.sites.values() for p in s.batch_dims if p})
        raise DataError(
            f"The program has no plate {plate!r} (its plates: {plates}); fit expects the "
            f"per-unit sites inside numpyro.plate({plate!r}, n). Pass plate= with its name "
            "(and size_arg= with the argument that sizes it)."
        )
    unknown = [name for name in columns if name not in info.sites]
    if unknown:
        raise DataError(
            f"Data have column(s) {unknown} that are not sites of the program; the program "
            f"has sites {info.names()} (per unit: {per_unit}). Drop or rename them."
        )
    out = {}
    for name, array in columns.items():
        site = info.sites[name]
        if site.kind == "deterministic":
            raise DataError(
                f"Data for '{name}': it is a deterministic site (a noise-free mechanism), which "
                "has no likelihood to fit. Drop the column, or give the mechanism noise."
            )
        if plate not in site.batch_dims:
            raise DataError(
                f"Data for '{name}': the site is not in the {plate!r} plate, so it has no row per "
                f"unit. Data hold per-unit sites: {per_unit}."
            )
        axis = site.batch_dims.index(plate)
        if axis != 0:
            raise DataError(
                f"Site '{name}' has the {plate!r} plate on axis {axis} of its shape "
                f"{site.shape}; fit needs the unit axis first: make {plate!r} the outer plate."
            )
        if array.shape != site.shape:
            raise DataError(
                f"Data for '{name}' have shape {array.shape}, but with n = {n} rows the site "
                f"has shape {site.shape}: one row per unit, then the site's own shape "
                f"{site.shape[1:]}."
            )
        if site.discrete and np.issubdtype(array.dtype, np.floating):
            bad = int(np.count_nonzero(array != np.round(array)))
            if bad:
                raise DataError(
                    f"Data for '{name}' hold {bad} non-integer value(s), but the site is "
                    f"discrete ({site.distribution})."
                )
        out[name] = array.astype(site.dtype, copy=False)
    return out


def _check_latent(
    info: ProgramInfo, columns: Mapping, latent: Any, plate: str, regimes: list[Regime], labels
) -> tuple[str, ...]:
    latent = (latent,) if isinstance(latent, str) else tuple(latent or ())
    per_unit = [n for n, s in info.sites.items() if plate in s.batch_dims and s.kind == "sample"]
    for name in latent:
        if name not in per_unit:
            raise DataError(
                f"latent= names '{name}', which is not a per-unit sample site; those are "
                f"{per_unit}. (Global sites outside the plate are learned as weights.)"
            )
        if name in columns:
            raise DataError(f"'{name}' is both a data column and named in latent=; pick one.")
        if info.sites[name].batch_dims.index(plate) != 0:
            raise DataError(
                f"Latent site '{name}' has the {plate!r} plate on axis "
                f"{info.sites[name].batch_dims.index(plate)}; fit needs the unit axis first."
            )
    present = sorted(set(labels.tolist()))

    def set_everywhere(site: str) -> bool:
        return all(
            k >= 0 and (iv := regimes[k].get(site)) is not None and iv.kind == "hard"
            for k in present
        )

    missing = [
        name
        for name in per_unit
        if name not in columns
        and name not in latent
        and not info.sites[name].observed
        and not set_everywhere(name)
    ]
    if missing:
        raise DataError(
            f"Data lack the per-unit sample site(s) {missing}. Give a column for each, or name "
            f"the unobserved ones in latent={missing} to integrate them out."
        )
    return latent


def check_structure(data: Data, structure: Structure, method: str) -> None:
    """Check the data against the supports of their sites, and that a gradient ``method``
    has no discrete global latent site to learn."""
    for name, array in data.columns.items():
        support = structure.supports.get(name)
        if support is None or constraints.is_dependent(support) or support is constraints.real:
            continue
        natural = np.ones(len(array), bool)
        for k, spec in enumerate(data.regimes):
            if name in spec:
                natural &= data.labels != k
        if not natural.any():
            continue
        ok = np.asarray(support(jnp.asarray(array[natural])))
        bad = int(ok.size - np.count_nonzero(ok))
        if bad:
            raise DataError(
                f"Data for '{name}' hold {bad} value(s) outside the support of its distribution "
                f"({data.info.sites[name].distribution}: {support})."
            )
    if method != "nuts":
        for name, support in structure.supports.items():
            if name in structure.globals and getattr(support, "is_discrete", False):
                raise ProgramError(
                    f"Global latent site '{name}' is discrete; method={method!r} learns by "
                    "gradients. Marginalise it in the program or give it a continuous prior."
                )


def prepare(
    model: Callable,
    data: Any,
    interventions: Any,
    regime: Any,
    latent: Any,
    plate: str,
    size_arg: str,
    kwargs: dict[str, Any],
    missing: str = "raise",
) -> Data:
    check_method(missing, MISSING, what="missing= policy")
    data, regime, dropped = drop_missing(data, missing, also=regime, stacklevel=4)
    columns = _columns(data)
    n = len(next(iter(columns.values())))
    _check_size_arg(model, size_arg, plate)
    info = inspect_program(model, (), {size_arg: n, **kwargs})
    columns = _check_sites(info, columns, plate, n)
    _check_finite(columns)
    regimes, labels = parse_regimes(info, columns, interventions, regime, n)
    latent = _check_latent(info, columns, latent, plate, regimes, labels)
    return Data(
        columns=columns, labels=labels, regimes=regimes, latent=latent, info=info, dropped=dropped
    )


def discover(model: Callable, plate: str, size_arg: str, kwargs: dict, key: jax.Array) -> Structure:
    """Run the program once (one unit) to find its parameters and global latent sites."""
    try:
        tr = handlers.trace(handlers.seed(model, key)).get_trace(**{size_arg: 1}, **kwargs)
    except Exception as err:
        raise ProgramError(
            f"Running the program with {size_arg}=1 raised {type(err).__name__}: {err}."
        ) from err
    params, cons, globals_, supports = {}, {}, {}, {}
    for name, site in tr.items():
        if site["type"] == "param":
            params[name] = site["value"]
            cons[name] = site["kwargs"].get("constraint", constraints.real)
        elif site["type"] == "sample":
            supports[name] = site["fn"].support
            in_plate = any(f.name == plate for f in site["cond_indep_stack"])
            if not site["is_observed"] and not in_plate:
                globals_[name] = site["value"]
    return Structure(params=params, constraints=cons, globals=globals_, supports=supports)


def split_rng(key: jax.Array) -> np.random.Generator:
    """The host generator that orders rows for :func:`split_rows` (data-parallel fits
    draw the same order of all processes' rows from it)."""
    return np.random.default_rng(np.asarray(jax.random.key_data(key)).ravel().tolist())


def split_rows(
    data: Data, labels: list[int], frac: float, key: jax.Array
) -> tuple[list[dict[str, np.ndarray]], list[dict[str, np.ndarray]]]:
    """Training and validation rows, one ``{site: array}`` per regime in ``labels``: a
    share ``frac`` of each regime's rows held out, at least one row kept for training."""
    train, valid = [], []
    rng = split_rng(key)
    for label in labels:  # on the host: a device permutation compiles anew for every N
        rows = rng.permutation(np.flatnonzero(data.labels == label))
        n_valid = min(int(frac * len(rows)), len(rows) - 1)
        train.append({s: v[rows[n_valid:]] for s, v in data.columns.items()})
        valid.append({s: v[rows[:n_valid]] for s, v in data.columns.items()})
    return train, valid
