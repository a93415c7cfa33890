"""Warnings that point at the user's line, not at the package's internals."""

from __future__ import annotations

import os
import sys
import warnings

__all__ = ["warn_at_caller"]

_PACKAGE = os.path.dirname(os.path.dirname(os.path.abspath(__file__))) + os.sep


def warn_at_caller(message: str, category: type[Warning]) -> None:
    """``warnings.warn`` attributed to the first frame outside :mod:`scm_ppl`.

    How deep a check sits below the public call varies (planning, estimates over rows,
    caches); a fixed ``stacklevel`` names an internal line, so Python's once-per-location
    filter would show the warning once per package line instead of once per user line.
    """
    frame = sys._getframe(1)
    level = 2
    while frame is not None and frame.f_code.co_filename.startswith(_PACKAGE):
        frame = frame.f_back
        level += 1
    warnings.warn(message, category, stacklevel=level)
