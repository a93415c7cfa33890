"""Run the ``python`` code blocks of the documentation site's pages, as a reader would.

Each page under ``docs/`` (the front page, getting started and every guide page) is run
block after block in one fresh namespace, from a temporary working directory (an example
that saves a file writes there). A block fenced as ```` ```python ```` runs; examples that
must not run are fenced as another language (``text``, ``bash``). Statements about
results are ``assert``s in the blocks themselves, so a page whose claims no longer hold
fails here. Pages that train networks for more than a few seconds run with the slow checks.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

DOCS = Path(__file__).resolve().parent.parent / "docs"
PAGES = sorted([*DOCS.glob("*.md"), *DOCS.glob("guide/*.md")])
# A fenced block: an opening ```python line (optionally with attributes) up to its ```.
BLOCK = re.compile(r"^```python[^\n]*\n(.*?)^```\s*$", re.MULTILINE | re.DOTALL)
SLOW_PAGES = {"learning.md", "criticism.md", "how-far.md"}


def blocks(page: Path) -> list[str]:
    return BLOCK.findall(page.read_text(encoding="utf-8"))


def test_pages_have_examples() -> None:
    assert PAGES, f"no pages found under {DOCS}"
    guide = [p for p in PAGES if p.parent.name == "guide"]
    assert all(blocks(p) for p in guide), [p.name for p in guide if not blocks(p)]


# Each page runs in a fresh interpreter: in the full suite, a page's first compiled query
# crashed XLA (a segfault inside the CPU compiler, session 7) after hundreds of other
# tests had run in the same worker, though the page passes alone and with every other
# page. A reader runs a page in a fresh process too.
_RUNNER = r"""
import sys, warnings
from pathlib import Path
page, relative = Path(sys.argv[1]), sys.argv[2]
sys.path.insert(0, sys.argv[3])
from tests.test_docs_examples import blocks
namespace = {"__name__": "docs_" + page.stem}
with warnings.catch_warnings():
    # A page may show a warning on purpose (e.g. NotIdentifiableWarning); it is text
    # for the reader there, not a failure here.
    warnings.simplefilter("ignore")
    for number, source in enumerate(blocks(page), start=1):
        code = compile(source, f"{relative} block {number}", "exec")
        try:
            exec(code, namespace)
        except Exception as err:  # name the page and the block
            print(f"{relative}, python block {number} failed: {type(err).__name__}: {err}"
                  f"\n--- block ---\n{source}", file=sys.stderr)
            raise
"""


@pytest.mark.parametrize(
    "page",
    [
        pytest.param(p, marks=pytest.mark.slow) if p.name in SLOW_PAGES else p
        for p in PAGES
        if blocks(p)
    ],
    ids=lambda p: str(p.relative_to(DOCS)),
)
def test_page_examples_run(page: Path, tmp_path: Path) -> None:
    root = DOCS.parent
    env = {**os.environ, "MPLBACKEND": "Agg", "PYTHONPATH": str(root)}
    run = subprocess.run(
        [sys.executable, "-c", _RUNNER, str(page), str(page.relative_to(DOCS)), str(root)],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=900, check=False,
    )  # fmt: skip
    assert run.returncode == 0, run.stderr[-4000:]
