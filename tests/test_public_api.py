"""The curated public API."""

import subprocess
import sys

import scm_ppl


def test_all_is_sorted_and_importable():
    assert scm_ppl.__all__ == sorted(scm_ppl.__all__)
    for name in scm_ppl.__all__:
        assert getattr(scm_ppl, name) is not None


def test_import_loads_neither_arviz_nor_matplotlib():
    code = "import sys, scm_ppl; print('arviz' in sys.modules, 'matplotlib' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["False", "False"]


def test_errors_subclass_builtins():
    assert issubclass(scm_ppl.EvidenceError, ValueError)
    assert issubclass(scm_ppl.InterventionError, ValueError)
    assert issubclass(scm_ppl.NoiseViewError, TypeError)
    assert issubclass(scm_ppl.EvidenceError, scm_ppl.ScmPplError)


def test_every_plot_is_exported_lazily():
    from scm_ppl import plotting

    assert tuple(plotting.__all__) == scm_ppl._PLOTS
    assert set(scm_ppl._PLOTS) <= set(scm_ppl.__all__)
