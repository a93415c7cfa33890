"""The curated public API: the verbs and result types at the top, the rest by namespace."""

import importlib

import pytest

import scm_ppl

NAMESPACES = ("core", "graphical", "query", "learn", "independence", "howfar", "plotting")


def test_all_is_sorted_small_and_importable():
    assert scm_ppl.__all__ == sorted(scm_ppl.__all__)
    assert len(scm_ppl.__all__) <= 60
    for name in scm_ppl.__all__:
        assert getattr(scm_ppl, name) is not None


@pytest.mark.parametrize("namespace", NAMESPACES)
def test_namespaces_export_what_they_list(namespace):
    module = importlib.import_module(f"scm_ppl.{namespace}")
    assert list(module.__all__) == sorted(module.__all__)
    for name in module.__all__:
        assert getattr(module, name) is not None


def test_no_exception_or_test_hook_at_the_top():
    assert not [n for n in scm_ppl.__all__ if n.endswith(("Error", "Warning"))]
    assert "trace_count" not in scm_ppl.__all__


def test_errors_subclass_builtins():
    assert issubclass(scm_ppl.errors.EvidenceError, ValueError)
    assert issubclass(scm_ppl.errors.InterventionError, ValueError)
    assert issubclass(scm_ppl.errors.NoiseViewError, TypeError)
    assert issubclass(scm_ppl.errors.EvidenceError, scm_ppl.errors.ScmPplError)


def test_plotting_is_a_lazy_namespace():
    assert scm_ppl.plotting.plot_graph is importlib.import_module("scm_ppl.plotting").plot_graph
