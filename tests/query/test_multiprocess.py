"""Two processes on localhost joined by ``jax.distributed`` (CPU collectives) answer a
counterfactual on evidence sharded over them exactly as one process does.

Known answer: with evidence on ``X`` and ``Y`` the latent confounder's counterfactual
``Y_{x'}`` is ``y + BETA (x' - x)`` with variance 0 (models/latent_confounder.py), so
every draw is checked against it to float32 round-off.
"""

from __future__ import annotations

import pytest

from benchmarks import multiprocess


@pytest.mark.slow
@pytest.mark.filterwarnings("ignore::scm_ppl.errors.NotIdentifiableWarning")
def test_two_processes_equal_one_process_and_the_closed_form() -> None:
    to_one, to_truth = multiprocess.main(processes=2, per=500)
    assert to_one <= 1e-6
    assert to_truth <= 1e-5
