"""One check per kind of input, so the same mistake reads the same everywhere.

Each raises :class:`~scm_ppl.errors.SettingsError` (or the error class the caller names,
for inputs that belong to a room's own error, such as evidence) before anything compiles.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping
from typing import Any, Literal, overload

import jax
import numpy as np

from scm_ppl.errors import ScmPplError, SettingsError

__all__ = [
    "check_callable",
    "check_method",
    "check_prng_key",
    "check_site_mapping",
    "nonnegative_number",
    "positive_int",
    "positive_number",
]


@overload
def positive_int(name: str, value: Any, *, allow_none: Literal[False] = False) -> int: ...
@overload
def positive_int(name: str, value: Any, *, allow_none: bool) -> int | None: ...
def positive_int(name: str, value: Any, *, allow_none: bool = False) -> int | None:
    """``value`` as an ``int`` if it is a positive integer (``None`` too, if allowed)."""
    if value is None and allow_none:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        also = " or None" if allow_none else ""
        raise SettingsError(f"{name} must be a positive integer{also}; got {value!r}.")
    return int(value)


def positive_number(name: str, value: Any) -> float:
    """``value`` as a ``float`` if it is a finite number > 0."""
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise SettingsError(f"{name} must be a positive finite number; got {value!r}.")
    if not (math.isfinite(value) and value > 0):
        raise SettingsError(f"{name} must be a positive finite number; got {value!r}.")
    return float(value)


def nonnegative_number(name: str, value: Any) -> float:
    """``value`` as a ``float`` if it is a finite number >= 0."""
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise SettingsError(f"{name} must be a finite number >= 0; got {value!r}.")
    if not (math.isfinite(value) and value >= 0):
        raise SettingsError(f"{name} must be a finite number >= 0; got {value!r}.")
    return float(value)


def check_method(value: Any, allowed: Iterable[str], *, what: str = "method") -> str:
    """``value`` if it is one of ``allowed``; else an error listing them."""
    options = list(allowed)
    if not isinstance(value, str) or value not in options:
        raise SettingsError(f"Unknown {what} {value!r}; choose one of {options}.")
    return value


def check_callable(name: str, value: Any, *, what: str = "a NumPyro program") -> Callable:
    """``value`` if it is callable (a program, a query of a fitted SCM, ...); ``what`` says
    which kind of callable is expected."""
    if not callable(value):
        raise SettingsError(f"{name} must be {what} (a callable); got {value!r}.")
    return value


def check_prng_key(value: Any, *, name: str = "rng_key") -> jax.Array:
    """``value`` if it is a JAX PRNG key (new-style, or a raw ``uint32[2]``)."""
    if isinstance(value, jax.Array) and (
        jax.dtypes.issubdtype(value.dtype, jax.dtypes.prng_key)
        or (value.shape == (2,) and value.dtype == np.uint32)
    ):
        return value
    raise SettingsError(
        f"{name} must be a JAX PRNG key such as jax.random.key(0); got {type(value).__name__}."
    )


def check_site_mapping(
    name: str,
    value: Any,
    *,
    known: Iterable[str] | None = None,
    error: type[ScmPplError] = SettingsError,
    allow_none: bool = True,
) -> dict[str, Any]:
    """``value`` as a ``{site: ...}`` dict: a mapping with string keys, each a site of
    ``known`` when given (the error lists the sites there are)."""
    if value is None and allow_none:
        return {}
    if not isinstance(value, Mapping):
        raise error(f"{name} must be a mapping {{site: value}}; got {type(value).__name__}.")
    bad = [k for k in value if not isinstance(k, str)]
    if bad:
        raise error(f"{name} must be keyed by site names (str); got keys {bad!r}.")
    if known is not None:
        names = list(known)
        unknown = sorted(set(value) - set(names))
        if unknown:
            raise error(f"{name} names unknown site(s) {unknown}; the program has sites {names}.")
    return dict(value)
