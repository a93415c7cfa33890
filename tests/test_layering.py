"""The package's architecture, enforced: layers, no cycles, no private names across rooms.

ARCHITECTURE.md draws the map; this file is what keeps the code on it. Every import a
module makes counts, those inside functions too (they are how cycles hide).
"""

from __future__ import annotations

import ast
import pathlib
import subprocess
import sys

import networkx as nx
import pytest

PACKAGE = pathlib.Path(__file__).resolve().parents[1] / "scm_ppl"

# The rooms each room may import (besides itself). Bottom up: errors -> core ->
# {graphical, independence} -> {query, learn} -> {howfar, check, attribution} -> plotting.
BASE = {"errors", "_version"}
ALLOWED = {
    "errors": set(),
    "_version": set(),
    "convert": BASE,
    "core": BASE,
    "graphical": BASE | {"core"},
    "independence": BASE | {"core"},
    "query": BASE | {"core", "graphical", "independence", "convert"},
    "learn": BASE | {"core", "independence"},
    "howfar": BASE | {"core", "graphical", "independence", "query", "learn"},
    "check": BASE | {"core", "graphical", "independence", "query", "learn", "howfar"},
    "attribution": BASE | {"core", "graphical", "independence", "query", "learn", "howfar"},
    "plotting": BASE | {"core", "graphical", "independence", "query", "learn", "howfar",
                        "check", "attribution", "convert"},
}  # fmt: skip
MAX_LINES = 600


def _module_name(path: pathlib.Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _modules() -> dict[str, pathlib.Path]:
    return {_module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def _imports(name: str, path: pathlib.Path, modules: dict) -> list[tuple[str, str | None]]:
    """(module imported, name imported from it or None) for every scm_ppl import."""
    tree = ast.parse(path.read_text())
    is_package = path.name == "__init__.py"
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(a.name, None) for a in node.names if a.name.startswith("scm_ppl")]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = name.split(".")[: len(name.split(".")) - node.level + is_package]
                module = ".".join([*base, node.module] if node.module else base)
            else:
                module = node.module or ""
            if not module.startswith("scm_ppl"):
                continue
            for alias in node.names:
                sub = f"{module}.{alias.name}"
                found.append((sub, None) if sub in modules else (module, alias.name))
    return found


def _room(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


@pytest.fixture(scope="module")
def import_graph() -> nx.DiGraph:
    modules = _modules()
    g = nx.DiGraph()
    for name, path in modules.items():
        g.add_node(name)
        for module, imported in _imports(name, path, modules):
            g.add_edge(name, module, names=g.edges.get((name, module), {}).get("names", set()))
            if imported is not None:
                g.edges[name, module]["names"].add(imported)
    return g


def test_no_import_cycles(import_graph):
    # A package imports its own __init__ implicitly; only module-to-module edges count.
    g = import_graph.copy()
    g.remove_edges_from([(a, b) for a, b in g.edges if a.startswith(b + ".") or a == b])
    cycles = list(nx.simple_cycles(g))
    assert not cycles, f"import cycles: {cycles[:5]}"


def test_rooms_import_only_the_layers_below(import_graph):
    wrong = []
    for a, b in import_graph.edges:
        room, target = _room(a), _room(b)
        if room == "__init__" or room == target:
            continue
        if target == "__init__":
            wrong.append(f"{a} imports the top-level package")
        elif target not in ALLOWED[room]:
            wrong.append(f"{a} ({room}) imports {b} ({target})")
    assert not wrong, "\n".join(wrong)


def test_no_private_name_crosses_rooms(import_graph):
    wrong = []
    for a, b, data in import_graph.edges(data=True):
        if _room(a) == _room(b) or _room(a) == "__init__":
            continue
        private_module = any(p.startswith("_") and not p.startswith("__") for p in b.split("."))
        private_names = sorted(n for n in data["names"] if n.startswith("_") and n != "__version__")
        if (private_module and b != "scm_ppl._version") or private_names:
            wrong.append(f"{a} imports {b} {private_names or ''}".rstrip())
    assert not wrong, "\n".join(wrong)


def test_every_room_is_known():
    rooms = {_room(m) for m in _modules()} - {"__init__"}
    assert rooms <= set(ALLOWED), f"rooms without layering rules: {rooms - set(ALLOWED)}"


def test_modules_stay_small():
    big = {
        _module_name(p): n
        for p in PACKAGE.rglob("*.py")
        if (n := len(p.read_text().splitlines())) > MAX_LINES
    }
    assert not big, f"modules over {MAX_LINES} lines: {big}"


def test_import_loads_neither_arviz_nor_matplotlib():
    code = (
        "import sys, scm_ppl; print(sorted(m for m in ('arviz', 'matplotlib') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_only_convert_imports_arviz_and_only_plotting_matplotlib():
    wrong = []
    for path in PACKAGE.rglob("*.py"):
        name = _module_name(path)
        for node in ast.walk(ast.parse(path.read_text())):
            mods = []
            if isinstance(node, ast.Import):
                mods = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module:
                mods = [node.module]
            for mod in mods:
                top = mod.split(".")[0]
                if top == "arviz" and name != "scm_ppl.convert":
                    wrong.append(f"{name} imports arviz")
                if top == "matplotlib" and _room(name) != "plotting":
                    wrong.append(f"{name} imports matplotlib")
    assert not wrong, "\n".join(wrong)
