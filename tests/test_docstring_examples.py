"""Every public name has a docstring with an ``Examples`` section that runs (issue 20).

Public means listed in ``scm_ppl.__all__`` or in a subpackage's ``__all__`` (found by
walking the package, so a new subpackage is covered as soon as it exists). This test
checks that the section is there; the examples themselves run as doctests in CI
(``pytest --doctest-modules scm_ppl``, against the installed wheel too).
"""

from __future__ import annotations

import importlib
import inspect
import pkgutil
import re

import pytest

import scm_ppl

# An ``Examples`` heading in NumPy style, followed (anywhere below) by a doctest prompt.
EXAMPLES = re.compile(r"^\s*Examples\n\s*-{8,}\n(?:.*\n)*?\s*>>> ", re.MULTILINE)


def _namespaces() -> list[str]:
    """The subpackages first, so that a re-exported name is reported where it lives."""
    found = [
        info.name
        for info in pkgutil.iter_modules(scm_ppl.__path__, "scm_ppl.")
        if info.ispkg and not info.name.rsplit(".", 1)[1].startswith("_")
    ]
    return [*sorted(found), "scm_ppl"]


def _public_names() -> list[tuple[str, str]]:
    out: dict[int, tuple[str, str]] = {}
    for namespace in _namespaces():
        module = importlib.import_module(namespace)
        for name in getattr(module, "__all__", ()):
            obj = getattr(module, name)
            if inspect.ismodule(obj) or name.startswith("__"):
                continue  # subpackages and __version__ are not functions or classes
            out.setdefault(id(obj), (namespace, name))
    return sorted(out.values())


PUBLIC = _public_names()


def test_public_names_are_found() -> None:
    namespaces = {ns for ns, _ in PUBLIC}
    assert {"scm_ppl.query", "scm_ppl.learn", "scm_ppl.howfar", "scm_ppl.plotting"} <= namespaces


def test_examples_heading_pattern() -> None:
    doc = inspect.cleandoc("""Do a thing.

    Examples
    --------
    >>> 1 + 1
    2
    """)
    assert EXAMPLES.search(doc + "\n")
    assert not EXAMPLES.search("Do a thing.\n\nExamples are below.\n>>> 1\n")


@pytest.mark.parametrize(("namespace", "name"), PUBLIC, ids=[f"{ns}.{n}" for ns, n in PUBLIC])
def test_public_name_has_a_runnable_example(namespace: str, name: str) -> None:
    obj = getattr(importlib.import_module(namespace), name)
    doc = inspect.getdoc(obj) or ""
    assert doc, f"{namespace}.{name} has no docstring"
    assert EXAMPLES.search(doc + "\n"), (
        f"{namespace}.{name} has no 'Examples' section with a doctest (>>>) in its docstring"
    )
