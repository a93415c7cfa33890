"""Capabilities of higher layers that a query can use without importing them.

``counterfactual(..., bounds=...)`` puts sharp bounds in ``attrs``; computing them is
:mod:`scm_ppl.howfar`'s work, which sits above queries. ``howfar`` registers its function
here when it is imported (``import scm_ppl`` does), so the layers stay one-way.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from scm_ppl.errors import BoundsError

__all__ = ["counterfactual_bounds", "register_counterfactual_bounds"]

_COUNTERFACTUAL_BOUNDS: list[Callable[..., Any]] = []


def register_counterfactual_bounds(function: Callable[..., Any]) -> None:
    """Install the function that computes ``counterfactual(..., bounds=...)``."""
    _COUNTERFACTUAL_BOUNDS[:] = [function]


def counterfactual_bounds(*args: Any, **kwargs: Any) -> Any:
    """Sharp bounds of a counterfactual query, by the registered function."""
    if not _COUNTERFACTUAL_BOUNDS:
        raise BoundsError(
            "counterfactual(..., bounds=...) needs scm_ppl.howfar, which registers the bounds "
            "solver when imported; run `import scm_ppl.howfar` (or `import scm_ppl`) first."
        )
    return _COUNTERFACTUAL_BOUNDS[0](*args, **kwargs)
