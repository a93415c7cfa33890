"""The per-call work of a small query stays small, and the shortcuts that keep it small
leave answers and checks as they were.

* a repeated query of one shape compiles nothing and re-checks no evidence array it has
  already found finite (JAX arrays are immutable), but still checks new or mutable ones;
* single forward draws of many units leave the compiled call in the sites' own shapes
  and get their ``(chain, draw)`` axes by a donated reshape: same values, and the
  caller's arrays are never donated;
* an intervened site's noise is never drawn.
"""

from __future__ import annotations

import importlib

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from models import linear_gaussian_dag as lg
from scm_ppl import counterfactual, interventional
from scm_ppl.core.cache import LRUCache
from scm_ppl.core.program import inspect_program
from scm_ppl.errors import EvidenceError

engine = importlib.import_module("scm_ppl.query.engine")
program_module = importlib.import_module("scm_ppl.core.program")

KEY = jax.random.key(0)
N = 200  # units of the small queries (one shape: compiled once for the file)


def _units(n: int, seed: int = 0) -> np.ndarray:
    """``n`` fully observed units of the linear-Gaussian DAG, ``(n, 10)``."""
    rng = np.random.default_rng(seed)
    mean, cov = lg.interventional_mean_and_cov({})
    return rng.multivariate_normal(mean, cov, size=n).astype(np.float32)


def _columns(x: np.ndarray) -> dict[str, jax.Array]:
    return {name: jnp.asarray(x[:, i]) for i, name in enumerate(lg.NODES)}


def _cf_values(result) -> np.ndarray:
    world = result.world("cf")
    return np.stack([np.asarray(world[name][0, 0]) for name in lg.NODES], axis=-1)


def test_repeat_query_compiles_nothing_and_skips_known_evidence(monkeypatch):
    x = _units(N)
    evidence = _columns(x)
    first = counterfactual(lg.model, evidence, {"X3": 1.0}, rng_key=KEY, model_kwargs={"n": N})
    np.testing.assert_allclose(
        _cf_values(first), lg.counterfactual_closed_form(x, {3: 1.0}), atol=1e-4
    )
    checks = []
    flags = engine.nonfinite_flags
    monkeypatch.setattr(engine, "nonfinite_flags", lambda ev: checks.append(set(ev)) or flags(ev))
    traces = engine.trace_count()
    again = counterfactual(lg.model, evidence, {"X3": -0.5}, rng_key=KEY, model_kwargs={"n": N})
    assert engine.trace_count() == traces
    assert checks == []  # the same (immutable) arrays: their verdict is known
    np.testing.assert_allclose(
        _cf_values(again), lg.counterfactual_closed_form(x, {3: -0.5}), atol=1e-4
    )
    # A new array is checked, and only it.
    fresh = dict(evidence, X4=evidence["X4"] + 0.0)
    counterfactual(lg.model, fresh, {"X3": 1.0}, rng_key=KEY, model_kwargs={"n": N})
    assert checks == [{"X4"}]
    assert engine.trace_count() == traces


def test_new_nan_evidence_raises_after_finite_queries_of_the_same_shape():
    evidence = _columns(_units(N))
    counterfactual(lg.model, evidence, {"X3": 1.0}, rng_key=KEY, model_kwargs={"n": N})
    bad = dict(evidence, X7=evidence["X7"].at[3].set(jnp.nan).at[9].set(jnp.inf))
    with pytest.raises(EvidenceError, match=r"Evidence for 'X7' holds 2 NaN/inf value\(s\)"):
        counterfactual(lg.model, bad, {"X3": 1.0}, rng_key=KEY, model_kwargs={"n": N})


def test_numpy_evidence_is_checked_on_every_call():
    # A NumPy array can change in place between calls: no verdict is kept for it.
    evidence = {name: np.array(col) for name, col in _columns(_units(N)).items()}
    counterfactual(lg.model, evidence, {"X3": 1.0}, rng_key=KEY, model_kwargs={"n": N})
    evidence["X2"][5] = np.nan
    with pytest.raises(EvidenceError, match=r"Evidence for 'X2' holds 1 NaN/inf value\(s\)"):
        counterfactual(lg.model, evidence, {"X3": 1.0}, rng_key=KEY, model_kwargs={"n": N})


def _model_copy(n: int = 1) -> None:
    """``lg.model`` under another identity: a query structure not compiled yet."""
    lg.model(n)


# The linear DAG's roots X0-X2 are latent under the identification rule; this checks paths.
@pytest.mark.filterwarnings("ignore::scm_ppl.errors.NotIdentifiableWarning")
def test_bare_single_draw_path_gives_the_same_values(monkeypatch):
    """A large single forward draw takes the bare path (sites in their own shapes, draw
    axes added by a donated reshape): same values as the stacked path, no caller array
    donated, and the intervened site draws no noise."""
    n = importlib.import_module("scm_ppl.query._compiled")._BARE_MIN_SIZE  # the smallest bare size
    per_unit = jnp.linspace(-1.0, 1.0, n)

    def run():
        result = interventional(
            _model_copy, {"X3": per_unit}, rng_key=KEY, num_samples=1, model_kwargs={"n": n}
        )
        return {k: np.asarray(v) for k, v in result.samples["predictions"].items()}

    inspect_program(_model_copy, (), {"n": n})  # the shape trace draws every site's noise
    drawn = []
    normal = jax.random.normal

    def counted(key, shape=(), *args, **kwargs):
        drawn.append(shape)
        return normal(key, shape, *args, **kwargs)

    with monkeypatch.context() as patch:
        patch.setattr(jax.random, "normal", counted)
        bare = run()
    assert drawn == [(n,)] * (len(lg.NODES) - 1)  # nine mechanisms keep their noise
    assert not per_unit.is_deleted()  # the caller's array is never donated
    np.testing.assert_array_equal(bare["X3"][0, 0, 0], np.asarray(per_unit))
    monkeypatch.setattr(
        importlib.import_module("scm_ppl.query._compiled"), "_BARE_MIN_SIZE", 10 * n
    )
    # A fresh program record: its compiled queries are gone, so the query traces again.
    monkeypatch.setattr(program_module, "_INFO_CACHE", LRUCache(8))
    stacked = run()
    assert bare.keys() == stacked.keys()
    for name in bare:
        assert bare[name].shape == stacked[name].shape == (1, 1, 1, n)
        # XLA fuses the two layouts differently: float rounding may differ in the last bit.
        np.testing.assert_allclose(bare[name], stacked[name], rtol=1e-6, atol=1e-6)
