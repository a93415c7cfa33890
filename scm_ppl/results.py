"""The light result every query returns."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import jax

__all__ = ["CausalResult"]

_GROUPS = ("posterior", "observed_data", "predictions")


class CausalResult:
    """The answer to a query: device arrays now, ``arviz.InferenceData`` on first use.

    Attribute access to a group (``result.predictions``, ``result.posterior``,
    ``result.observed_data``) or :meth:`to_inference_data` builds the InferenceData once,
    so a small query never pays for xarray it was not asked for. :attr:`samples` gives
    the raw arrays, each ``(chain, draw, ...)`` (``predictions`` carry a ``world`` or
    ``intervention`` dim after ``draw``).

    Attributes
    ----------
    attrs
        Metadata: the abduction ``method`` used and why, the ``couplings`` assumed for
        mechanisms that do not invert, the interventions and the graph (JSON-ready).
    """

    def __init__(
        self,
        groups: Mapping[str, Mapping[str, jax.Array]],
        dims: Mapping[str, Mapping[str, Sequence[str]]],
        coords: Mapping[str, Sequence[Any]],
        attrs: Mapping[str, Any],
    ) -> None:
        self._groups = {g: dict(v) for g, v in groups.items()}
        self._dims = dict(dims)
        self._coords = dict(coords)
        self.attrs = dict(attrs)
        self._idata: Any = None

    @property
    def samples(self) -> dict[str, dict[str, jax.Array]]:
        """The raw arrays by group and site."""
        return self._groups

    @property
    def method(self) -> str:
        """The abduction method used (``"exact"``, ``"coupling"``, ``"nuts"``, ``"svi"``
        or ``"forward"`` for interventional sampling)."""
        return self.attrs["method"]

    def to_inference_data(self) -> Any:
        """The result as ``arviz.InferenceData`` (built once, then cached)."""
        if self._idata is None:
            from scm_ppl.convert import to_inference_data

            self._idata = to_inference_data(self._groups, self._dims, self._coords, self.attrs)
        return self._idata

    def __getattr__(self, name: str) -> Any:
        if name in _GROUPS and name in self.__dict__.get("_groups", {}):
            return getattr(self.to_inference_data(), name)
        raise AttributeError(
            f"'CausalResult' has no attribute '{name}'; groups: {sorted(self._groups)}"
        )

    def __repr__(self) -> str:
        parts = ", ".join(f"{g}: {sorted(v)}" for g, v in self._groups.items())
        return f"CausalResult(method={self.attrs.get('method')!r}, {parts})"
