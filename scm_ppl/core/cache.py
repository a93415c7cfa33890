"""A small least-recently-used cache for traced programs and compiled queries."""

from __future__ import annotations

from collections import OrderedDict
from typing import Any


class LRUCache:
    """A mapping that forgets its least recently used entry past ``max_size``.

    Compiled queries hold XLA executables; an unbounded cache would grow with every new
    callable or shape a long session throws at it.
    """

    def __init__(self, max_size: int = 256) -> None:
        self.max_size = max_size
        self._data: OrderedDict[Any, Any] = OrderedDict()

    def get(self, key: Any) -> Any:
        value = self._data.get(key)
        if value is not None:
            self._data.move_to_end(key)
        return value

    def put(self, key: Any, value: Any) -> Any:
        self._data[key] = value
        self._data.move_to_end(key)
        while len(self._data) > self.max_size:
            self._data.popitem(last=False)
        return value

    def __len__(self) -> int:
        return len(self._data)
