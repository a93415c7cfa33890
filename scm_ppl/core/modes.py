"""Whether a program is being run for ``fit``'s objective or for a query.

A mechanism may add terms to its log-density that belong to the *training objective*
only (a decoder's charge for the ink it draws, say); queries, NUTS abduction and
predictive checks must see the plain model. ``fit`` runs inside :func:`fitting`;
mechanisms ask :func:`is_fitting` while they are traced. A context variable, not a global,
so that a fit in one thread does not change a query in another.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar

__all__ = ["fitting", "is_fitting"]

_FITTING: ContextVar[bool] = ContextVar("scm_ppl_fitting", default=False)


@contextmanager
def fitting() -> Iterator[None]:
    """Run the block as ``fit`` does: training-only terms of mechanisms apply.

    Examples
    --------
    >>> with fitting():
    ...     is_fitting()
    True
    >>> is_fitting()
    False
    """
    token = _FITTING.set(True)
    try:
        yield
    finally:
        _FITTING.reset(token)


def is_fitting() -> bool:
    """True inside :func:`fitting` (while ``fit`` traces the program)."""
    return _FITTING.get()
