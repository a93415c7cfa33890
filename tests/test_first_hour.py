"""The messages a newcomer meets in the first hour say the fix in one go (issue 20).

Each case is a first mistake seen when trying the package from a fresh clone: a program
with arguments queried without them, ``fit`` on a plate not named ``unit``, an empty
intervention, and progress bars written into logs. Every one raises before compilation.
"""

from __future__ import annotations

import io
import sys

import jax
import numpy as np
import numpyro
import numpyro.distributions as dist
import pytest

from scm_ppl import counterfactual, fit, interventional
from scm_ppl.errors import (
    AbductionError,
    DataError,
    InterventionError,
    ProgramError,
    SettingsError,
)
from scm_ppl.learn.train import show_progress


def sized(n):
    with numpyro.plate("unit", n):
        x = numpyro.sample("x", dist.Normal(0.0, 1.0))
        numpyro.sample("y", dist.Normal(2.0 * x, 1.0))


def rows_model(num_rows):
    with numpyro.plate("row", num_rows):
        x = numpyro.sample("x", dist.Normal(0.0, 1.0))
        numpyro.sample("y", dist.Normal(2.0 * x, 1.0))


def plate_named_row(n):
    with numpyro.plate("row", n):
        x = numpyro.sample("x", dist.Normal(0.0, 1.0))
        numpyro.sample("y", dist.Normal(2.0 * x, 1.0))


def scalar():
    x = numpyro.sample("x", dist.Normal(0.0, 1.0))
    numpyro.sample("y", dist.Normal(2.0 * x, 1.0))


KEY = jax.random.key(0)
DATA = {"x": np.zeros(4), "y": np.zeros(4)}


def test_missing_program_argument_names_model_kwargs():
    with pytest.raises(ProgramError, match=r"model_kwargs=\{'n': \.\.\.\}"):
        counterfactual(sized, evidence={"x": 0.0}, interventions={"x": 1.0}, rng_key=KEY)


def test_missing_argument_hint_on_interventional_too():
    with pytest.raises(ProgramError, match=r"model_kwargs=\{'n': \.\.\.\}"):
        interventional(sized, {"x": 1.0}, rng_key=KEY)


def test_fit_names_plate_and_size_arg_in_one_message():
    # One message carries both settings, read from the program's own plate call.
    with pytest.raises(DataError, match=r"plate='row', size_arg='num_rows'"):
        fit(rows_model, DATA, progress=False)


def test_fit_wrong_plate_name_mentions_both_settings():
    with pytest.raises(DataError, match=r"Pass plate= with its name \(and size_arg="):
        fit(plate_named_row, DATA, progress=False)


def test_empty_counterfactual_intervention_is_refused():
    with pytest.raises(
        InterventionError, match=r"interventions=\{\}\) intervenes on nothing.*interventions=None"
    ):
        counterfactual(scalar, evidence={"x": 0.5}, interventions={}, rng_key=KEY)


def test_svi_with_nothing_to_infer_says_so():
    with pytest.raises(AbductionError, match="SVI has nothing to infer"):
        counterfactual(scalar, {"x": 0.5, "y": 1.0}, {"x": 1.0}, rng_key=KEY, method="svi")


def test_no_intervention_stays_explicitly_allowed_as_none():
    # Only the empty mapping is taken for a slip; `None` asks for the factual replay.
    res = counterfactual(scalar, evidence={"x": 0.5}, interventions=None, rng_key=KEY,  # type: ignore[arg-type]
                         num_samples=4)  # fmt: skip
    assert np.allclose(np.asarray(res.world("cf")["x"]), 0.5)


def test_progress_default_follows_the_terminal(monkeypatch):
    monkeypatch.setattr(sys, "stderr", io.StringIO())
    assert show_progress(None) is False
    tty = io.StringIO()
    tty.isatty = lambda: True  # type: ignore[method-assign]
    monkeypatch.setattr(sys, "stderr", tty)
    assert show_progress(None) is True
    assert show_progress(False) is False
    assert show_progress(True) is True


def test_progress_rejects_non_bool():
    with pytest.raises(SettingsError, match="progress must be True, False or None"):
        fit(sized, DATA, progress="yes")  # type: ignore[arg-type]
