"""The axioms of counterfactuals, checked on random SCMs (Hypothesis).

Each example is a random DAG (``tests/_random_scm.py``) of 2–6 nodes (2–10 under the
thorough profile) whose mechanisms are linear, tanh, heteroscedastic location–scale,
affine-transformed Laplace, exp-noise or noise-free, with random weights, evidence
simulated from the SCM itself, and random interventions. With every sample node
observed, abduction is exact and every answer is a number, so the axioms are checked
unit by unit; with evidence on an ancestral subset the
other nodes are drawn from their prior, shared by all worlds of a draw.

Properties (Galles & Pearl 1998, "An axiomatic characterization of causal
counterfactuals"; ``Y_x`` is Y in the world do(X = x)):

* effectiveness: ``X_{xw} = x`` (counterfactual and interventional queries);
* consistency: ``X = x  =>  Y_x = Y`` (and: no intervention leaves every site as it was);
* composition: ``W_x = w  =>  Y_{xw} = Y_x``;
* reversibility: ``(Y_{xw} = y) and (W_{xy} = w)  =>  Y_x = y``;
* the answers equal an independent NumPy oracle (abduct ``u = g^{-1}((x - loc)/scale)``,
  then predict);
* ``twin_world`` run through NumPyro's own handlers equals ``counterfactual``;
* units split over two calls give the same answers as one call;
* (slow) NUTS abduction agrees with exact abduction where both apply.

Examples per property: the Hypothesis profile's ``max_examples`` (``tests/conftest.py``;
3 by default, 50 under ``HYPOTHESIS_PROFILE=thorough``), except the NUTS check (2 / 5).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import jax
import numpy as np
import numpyro
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from scm_ppl import counterfactual, interventional, twin_world
from tests._random_scm import Spec, abduct, forward, program, simulate, specs

KEY = jax.random.key(0)
# These are properties of the engine (effectiveness, consistency, ...), not of
# identification: random DAGs have root confounders, latent under the identification rule.
pytestmark = pytest.mark.filterwarnings("ignore::scm_ppl.errors.NotIdentifiableWarning")
MAX_NODES = 10 if settings.default.max_examples >= 20 else 6  # the thorough profile: 10
# float32 arithmetic through up to 10 nonlinear mechanisms: a few ulps per step
RTOL, ATOL = (1e-9, 1e-9) if jax.config.read("jax_enable_x64") else (2e-4, 2e-4)


@dataclass(frozen=True)
class Case:
    spec: Spec
    units: int
    seed: int
    x: int  # the intervened node
    w: int  # a second node
    y: int  # a third node (== w when the graph has two nodes)
    value: float


@st.composite
def cases(draw: Any, min_nodes: int = 2, max_nodes: int = MAX_NODES) -> Case:
    spec = draw(specs(min_nodes=min_nodes, max_nodes=max_nodes))
    size = len(spec.nodes)
    x, w, y = draw(st.permutations(range(size)))[:3] if size >= 3 else (0, 1, 1)
    return Case(
        spec=spec,
        units=draw(st.integers(1, 6)),
        seed=draw(st.integers(0, 2**16)),
        x=x,
        w=w,
        y=y,
        value=draw(st.floats(-3.0, 3.0)),
    )


def name(i: int) -> str:
    return f"v{i}"


def full_evidence(case: Case) -> dict[str, np.ndarray]:
    return simulate(case.spec, case.units, case.seed)


def ancestral_evidence(case: Case, chosen: set[int]) -> dict[str, np.ndarray]:
    """Evidence on ``chosen`` and all its ancestors (sample nodes only): exact abduction,
    the other nodes drawn from their prior."""
    closed = {i for i in chosen if i < len(case.spec.nodes)}
    for i in sorted(closed):
        stack = [i]
        while stack:
            for p in case.spec.nodes[stack.pop()].parents:
                if p not in closed:
                    closed.add(p)
                    stack.append(p)
    data = full_evidence(case)
    return {k: v for k, v in data.items() if int(k[1:]) in closed}


def query(case: Case, evidence: Any, worlds: Any, **kwargs: Any) -> Any:
    return counterfactual(
        program(case.spec), evidence, worlds, rng_key=KEY, model_kwargs={"n": case.units},
        **kwargs,
    )  # fmt: skip


def world(result: Any, label: str) -> dict[str, np.ndarray]:
    """Every site in world ``label``, shaped ``(chain * draw, unit)``."""
    return {k: np.asarray(v).reshape(-1, v.shape[-1]) for k, v in result.world(label).items()}


def assert_worlds_equal(got: dict, expected: dict, rtol: float = RTOL) -> None:
    assert got.keys() == expected.keys()
    for site in got:
        np.testing.assert_allclose(got[site], expected[site], rtol=rtol, atol=ATOL, err_msg=site)


def per_unit(case: Case) -> np.ndarray:
    dtype = jax.numpy.result_type(float)
    return (case.value + 0.5 * np.arange(case.units)).astype(dtype)


# --- the axioms -------------------------------------------------------------------------------


@given(case=cases(), chosen=st.sets(st.integers(0, MAX_NODES - 1)))
def test_effectiveness(case, chosen):
    evidence = ancestral_evidence(case, chosen)
    values = per_unit(case)
    result = query(case, evidence, {"do": {name(case.x): values}}, num_samples=3)
    got = world(result, "do")[name(case.x)]
    np.testing.assert_array_equal(got, np.broadcast_to(values, got.shape))


@given(case=cases())
def test_effectiveness_of_interventional_queries(case):
    rung2 = interventional(
        program(case.spec), {name(case.x): case.value}, rng_key=KEY, num_samples=3,
        model_kwargs={"n": case.units},
    )  # fmt: skip
    got = rung2.samples["predictions"][name(case.x)]
    np.testing.assert_array_equal(got, np.full(got.shape, case.value, got.dtype))


@given(case=cases(), chosen=st.sets(st.integers(0, MAX_NODES - 1)))
def test_consistency(case, chosen):
    # no intervention: the counterfactual world is the factual one, draw by draw
    result = query(case, ancestral_evidence(case, chosen), {"none": {}}, num_samples=3)
    assert_worlds_equal(world(result, "none"), world(result, "factual"))
    # X = x  =>  Y_x = Y: intervening at each unit's factual value changes nothing
    evidence = full_evidence(case)
    factual_x = forward(case.spec, abduct(case.spec, evidence))[name(case.x)]
    at_factual = factual_x.astype(jax.numpy.result_type(float))
    result = query(case, evidence, {"at_factual": {name(case.x): at_factual}})
    assert_worlds_equal(world(result, "at_factual"), world(result, "factual"))


@given(case=cases())
def test_composition(case):
    evidence = full_evidence(case)
    x, w = name(case.x), name(case.w)
    y_x = world(query(case, evidence, {"x": {x: case.value}}), "x")
    y_xw = world(query(case, evidence, {"xw": {x: case.value, w: y_x[w][0]}}), "xw")
    assert_worlds_equal(y_xw, y_x)


@given(case=cases(min_nodes=3))
def test_reversibility(case):
    """(Y_{xw} = y) and (W_{xy} = w)  =>  Y_x = y, unit by unit, for w the natural value
    W_x on even units (the premises then hold) and an arbitrary value on odd units (they
    hold only where the graph makes them)."""
    evidence = full_evidence(case)
    x, w, y = name(case.x), name(case.w), name(case.y)
    y_x = world(query(case, evidence, {"x": {x: case.value}}), "x")
    arbitrary = np.linspace(-2.0, 2.0, case.units).astype(y_x[w].dtype)
    even = np.arange(case.units) % 2 == 0
    w_value = np.where(even, y_x[w][0], arbitrary)
    y_value = world(query(case, evidence, {"xw": {x: case.value, w: w_value}}), "xw")[y][0]
    w_xy = world(query(case, evidence, {"xy": {x: case.value, y: y_value}}), "xy")[w][0]
    premises = np.abs(w_xy - w_value) <= ATOL + RTOL * np.abs(w_value)
    assert premises[even].all()
    np.testing.assert_allclose(y_x[y][0][premises], y_value[premises], rtol=RTOL, atol=ATOL)


# --- the same answers, computed other ways ---------------------------------------------------


@given(case=cases(), delta=st.floats(-2.0, 2.0))
def test_answers_match_an_independent_numpy_oracle(case, delta):
    evidence = full_evidence(case)
    x, w = name(case.x), name(case.w)
    worlds = {"hard": {x: per_unit(case)}, "shift": {w: lambda v: v + delta}}
    result = query(case, evidence, worlds)
    assert result.attrs["exact"]
    noise = abduct(case.spec, evidence)
    hard = forward(case.spec, noise, {x: per_unit(case)})
    shift = forward(case.spec, noise, {w: lambda v: v + delta})
    assert_worlds_equal(world(result, "hard"), {k: v[None] for k, v in hard.items()}, 1e-3)
    assert_worlds_equal(world(result, "shift"), {k: v[None] for k, v in shift.items()}, 1e-3)


@given(case=cases())
def test_twin_world_equals_counterfactual(case):
    evidence = full_evidence(case)
    x = name(case.x)
    result = world(query(case, evidence, {x: case.value}), "cf")
    twins = numpyro.handlers.condition(twin_world(program(case.spec), {x: case.value}), evidence)
    tr = numpyro.handlers.trace(numpyro.handlers.seed(twins, 1)).get_trace(n=case.units)
    got = {site: np.asarray(tr[f"cf.{site}"]["value"])[None] for site in case.spec.names}
    assert_worlds_equal(got, result)


@given(case=cases(), split=st.floats(0.0, 1.0))
def test_answers_do_not_depend_on_how_units_are_batched(case, split):
    units = case.units + 1  # at least two, so that both parts hold a unit
    case = Case(case.spec, units, case.seed, case.x, case.w, case.y, case.value)
    evidence = full_evidence(case)
    k = 1 + int(split * (units - 2))
    worlds = {"do": {name(case.x): case.value}, "shift": {name(case.w): lambda v: 2.0 * v}}
    whole = query(case, evidence, worlds)
    parts = [
        counterfactual(
            program(case.spec), {s: v[part] for s, v in evidence.items()}, worlds,
            rng_key=KEY, model_kwargs={"n": len(range(units)[part])},
        )
        for part in (slice(0, k), slice(k, units))
    ]  # fmt: skip
    for label in ("factual", "do", "shift"):
        joined = {
            site: np.concatenate([world(p, label)[site] for p in parts], axis=-1)
            for site in case.spec.names
        }
        assert_worlds_equal(joined, world(whole, label), rtol=1e-6)


# --- slow: NUTS against exact ----------------------------------------------------------------

NUTS_EXAMPLES = max(2, settings.default.max_examples // 10)


@pytest.mark.slow
@settings(max_examples=NUTS_EXAMPLES)
@given(case=cases(max_nodes=4), last_observed=st.integers(0, 2))
def test_nuts_abduction_matches_exact_abduction(case, last_observed):
    """Evidence on the first nodes only: exact abduction draws the others from their
    prior; NUTS, forced, must sample the same posterior. Means of every counterfactual
    site agree within 5 Monte-Carlo standard errors (NUTS' from its effective sample
    size)."""
    case = Case(case.spec, 1, case.seed, case.x, case.w, case.y, case.value)
    last = min(last_observed, len(case.spec.nodes) - 2)  # leave a latent node to infer
    evidence = ancestral_evidence(case, set(range(last + 1)))  # parents precede children
    worlds = {name(case.x): case.value}
    exact = query(case, evidence, worlds, num_samples=4000)
    nuts = query(case, evidence, worlds, method="nuts", num_samples=1000, num_warmup=500)
    assert exact.method == "exact" and nuts.method == "nuts"
    ess = nuts.attrs.get("min_ess", 1000.0)
    for site, value in world(exact, "cf").items():
        a, b = value[:, 0], world(nuts, "cf")[site][:, 0]
        error = np.sqrt(a.var() / a.size + b.var() / ess)
        assert abs(a.mean() - b.mean()) <= 5 * error + 1e-5, site
