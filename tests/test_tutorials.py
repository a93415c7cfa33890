"""Run every tutorial as a script in smoke mode, as NumPyro's ``test_examples.py`` does.

Each ``tutorials/*.py`` (a jupytext percent script) runs in a fresh interpreter with
``SCM_PPL_SMOKE=1`` (few samples), from a temporary working directory so that nothing
lands in the repository; tutorials write their figures next to themselves, under the
git-ignored ``tutorials/output/``.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

TUTORIALS_DIR = Path(__file__).resolve().parent.parent / "tutorials"
TUTORIALS = sorted(TUTORIALS_DIR.glob("*.py"))
TIMEOUT_S = 300  # per tutorial; smoke mode takes well under a minute on 2 cores
TAIL = 6000  # characters of output shown on failure


def test_tutorials_are_found() -> None:
    assert TUTORIALS, f"no tutorials found in {TUTORIALS_DIR}"


@pytest.mark.parametrize("path", TUTORIALS, ids=[p.name for p in TUTORIALS])
def test_tutorial_is_a_percent_script(path: Path) -> None:
    jupytext = pytest.importorskip("jupytext")
    notebook = jupytext.read(path, fmt="py:percent")
    kinds = {cell.cell_type for cell in notebook.cells}
    assert {"markdown", "code"} <= kinds, f"{path.name} has cells of kinds {sorted(kinds)}"


# Tutorials whose smoke run trains networks for more than ~30 s run with the slow checks.
SLOW_TUTORIALS = {
    "03_neural_mechanisms.py",
    "04_counterfactual_images.py",
    "06_independent_mechanisms.py",
    "07_how_far_identified.py",
    "08_criticism_and_attribution.py",
    "09_real_data.py",
}


@pytest.mark.parametrize(
    "path",
    [pytest.param(p, marks=pytest.mark.slow) if p.name in SLOW_TUTORIALS else p for p in TUTORIALS],
    ids=[p.name for p in TUTORIALS],
)
def test_tutorial_runs_in_smoke_mode(path: Path, tmp_path: Path) -> None:
    env = {**os.environ, "SCM_PPL_SMOKE": "1", "MPLBACKEND": "Agg"}
    command = [sys.executable, str(path)]
    print(f"Running:\nSCM_PPL_SMOKE=1 {' '.join(command)}")
    try:
        done = subprocess.run(
            command,
            cwd=tmp_path,
            env=env,
            capture_output=True,
            text=True,
            timeout=TIMEOUT_S,
            check=False,
        )
    except subprocess.TimeoutExpired as err:
        stderr = err.stderr.decode() if isinstance(err.stderr, bytes) else err.stderr or ""
        pytest.fail(f"{path.name} ran past {TIMEOUT_S} s in smoke mode.\nstderr:\n{stderr[-TAIL:]}")
    if done.returncode != 0:
        pytest.fail(
            f"{path.name} exited with code {done.returncode}.\n"
            f"stdout (tail):\n{done.stdout[-TAIL:]}\nstderr (tail):\n{done.stderr[-TAIL:]}"
        )
    assert not list(tmp_path.iterdir()), f"{path.name} wrote into its working directory"
