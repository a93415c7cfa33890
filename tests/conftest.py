"""Hypothesis profiles for the property tests (tests/query/test_properties.py), and the
release of compiled programs after each test module.

* ``default``: 3 examples per property on graphs of up to 6 nodes, derandomized (the
  same examples on every run), for the default suite;
* ``thorough``: 50 examples per property on graphs of up to 10 nodes, e.g.
  ``HYPOTHESIS_PROFILE=thorough .venv/bin/python -m pytest -p no:xdist \
  tests/query/test_properties.py``.

Every new program structure compiles, so examples are expensive; no deadline.
"""

import os

import jax
import pytest
from hypothesis import HealthCheck, settings

_COMMON = {
    "deadline": None,
    "derandomize": True,
    "database": None,
    "print_blob": True,
    "suppress_health_check": [HealthCheck.too_slow, HealthCheck.data_too_large],
}
settings.register_profile("default", max_examples=3, **_COMMON)
settings.register_profile("thorough", max_examples=50, **_COMMON)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "default"))


@pytest.fixture(autouse=True, scope="module")
def _release_compiled_programs():
    """Free every compiled program when a test module ends. Each XLA CPU executable
    keeps about 3 memory mappings; a pytest worker that compiles ~20,000 programs
    reaches Linux's ``vm.max_map_count`` (65,530), the next compilation's mmap fails and
    XLA segfaults (three fresh-clone CI runs of session 7 died so, in different tests).
    Modules do not share compiled programs, so nothing is recompiled needlessly."""
    yield
    jax.clear_caches()
