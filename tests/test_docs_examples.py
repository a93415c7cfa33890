"""Run the ``python`` code blocks of the documentation site's pages, as a reader would.

Each page under ``docs/`` (the front page, getting started and every guide page) is run
block after block in one fresh namespace, from a temporary working directory (an example
that saves a file writes there). A block fenced as ```` ```python ```` runs; examples that
must not run are fenced as another language (``text``, ``bash``). Statements about
results are ``assert``s in the blocks themselves, so a page whose claims no longer hold
fails here. Pages that train networks for more than a few seconds run with the slow checks.
"""

from __future__ import annotations

import re
import warnings
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


@pytest.mark.parametrize(
    "page",
    [
        pytest.param(p, marks=pytest.mark.slow) if p.name in SLOW_PAGES else p
        for p in PAGES
        if blocks(p)
    ],
    ids=lambda p: str(p.relative_to(DOCS)),
)
def test_page_examples_run(page: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MPLBACKEND", "Agg")
    namespace: dict = {"__name__": f"docs_{page.stem}"}
    with warnings.catch_warnings():
        # A page may show a warning on purpose (e.g. NotIdentifiableWarning); it is text
        # for the reader there, not a failure here.
        warnings.simplefilter("ignore")
        for number, source in enumerate(blocks(page), start=1):
            code = compile(source, f"{page.relative_to(DOCS)} block {number}", "exec")
            try:
                exec(code, namespace)
            except Exception as err:  # name the page and the block, then re-raise
                raise AssertionError(
                    f"{page.relative_to(DOCS)}, python block {number} failed: "
                    f"{type(err).__name__}: {err}\n--- block ---\n{source}"
                ) from err
