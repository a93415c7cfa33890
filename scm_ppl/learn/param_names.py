"""Names of learned parameters as users write them: ``"y.net.layers[1]"`` resolves to the
NumPyro param of the module ``y.net`` and the path ``layers[1]`` inside it."""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from scm_ppl.errors import InterventionError

__all__ = ["get_path", "path_keys", "public_name", "split_name"]

_MODULE_SUFFIX = "$params"  # numpyro.contrib.module stores a module's arrays under this name
_KEY = re.compile(r"\.(\w+)|\[(\d+)\]|\['([^']*)'\]")


def split_name(name: str, known: Iterable[str] = ()) -> tuple[str, str]:
    """``"decoder.layers[1].weight"`` → ``("decoder", ".layers[1].weight")``.

    Parameter names hold dots themselves (``"x2.net"``, ``"y.scale"`` from
    :mod:`scm_ppl.learn.mechanisms`), so the head is the longest ``known`` name that ``name``
    equals or continues with ``.`` or ``[``; without one, the text before the first.
    """
    heads = [k for k in known if name == k or name.startswith((f"{k}.", f"{k}["))]
    if heads:
        head = max(heads, key=len)
        return head, name[len(head) :]
    match = re.search(r"[.\[]", name)
    return (name, "") if match is None else (name[: match.start()], name[match.start() :])


def path_keys(path: str) -> list[str | int]:
    keys: list[str | int] = []
    position = 0
    for match in _KEY.finditer(path):
        if match.start() != position:
            break
        attr, index, key = match.groups()
        keys.append(attr if attr is not None else int(index) if index is not None else key)
        position = match.end()
    if position != len(path):
        raise InterventionError(f"Cannot read the sub-module path {path!r}.")
    return keys


def get_path(tree: Any, keys: Sequence[str | int]) -> Any:
    for key in keys:
        tree = (
            tree[key] if isinstance(key, int) or isinstance(tree, Mapping) else getattr(tree, key)
        )
    return tree


def public_name(param: str) -> str:
    return param[: -len(_MODULE_SUFFIX)] if param.endswith(_MODULE_SUFFIX) else param
