"""Sharp bounds against their closed forms, on random canonical SCMs.

Each random SCM is a distribution over response types, drawn from a Dirichlet; its exact
observational (and experimental) distributions go to ``bounds``, and the bounds must (i)
equal the published closed forms, (ii) contain the SCM's own answer, and (iii) where
``sharp`` is True, be attained by an SCM built from the LP solution that reproduces the
input distribution to 1e-9.

Response-type encoding (as in :mod:`scm_ppl.howfar.bounds.canonical`): a binary variable with one
binary parent has 4 types; type ``t`` answers parent value ``x`` with bit ``x`` of ``t``.
"""

import importlib
import itertools
from typing import Any

import networkx as nx
import numpy as np
import xarray as xr

from scm_ppl import ADMG

bounds_module = importlib.import_module("scm_ppl.howfar.bounds.solve")
queries = importlib.import_module("scm_ppl.howfar.bounds.queries")

N_RANDOM = 200
TOL = 1e-8


def table(probs: np.ndarray, names: tuple[str, ...]) -> xr.DataArray:
    coords = {n: list(range(k)) for n, k in zip(names, probs.shape, strict=True)}
    return xr.DataArray(probs, dims=names, coords=coords)


# ---------------------------------------------------------------- the extremal SCM, rebuilt
def attained(b) -> tuple[np.ndarray, np.ndarray]:
    """For both LP solutions: the distribution over (conditioning, block) variables of the
    SCM they define, computed by plain loops (independently of the vectorised code)."""
    block = b.block
    shape = [block.cardinality[v] for v in (*block.conditioning, *block.variables)]
    out = []
    for q in (b.lower_solution, b.upper_solution):
        model = np.zeros(shape)
        for f_index, f in enumerate(block.condition_configs()):
            values = dict(zip(block.conditioning, map(int, f), strict=True))
            for t in np.flatnonzero(q > 0):
                world = dict(values)
                for j, v in enumerate(block.variables):
                    parents = tuple(world[p] for p in block.parents[v])
                    world[v] = block.response(v, int(block.types[t, j]), parents)
                cell = tuple(world[v] for v in (*block.conditioning, *block.variables))
                model[cell] += b.condition_probs[f_index] * q[t]
        out.append(model)
    return out[0], out[1]


def check_attained(b, p: xr.DataArray) -> None:
    names = [*b.block.conditioning, *b.block.variables]
    target = p.sum([d for d in p.dims if d not in names]).transpose(*names).values
    for model in attained(b):
        np.testing.assert_allclose(model, target, atol=1e-9, rtol=0)


# ---------------------------------------------------------------- X -> Y (± X <-> Y)
def random_xy(rng: np.random.Generator, confounded: bool) -> np.ndarray:
    """``q[rx, ry]``: X's value (root) and Y's response type; independent if unconfounded."""
    if confounded:
        return rng.dirichlet(np.full(8, 0.7)).reshape(2, 4)
    return np.outer(rng.dirichlet(np.ones(2)), rng.dirichlet(np.full(4, 0.7)))


def xy_facts(q: np.ndarray) -> dict[str, Any]:
    ry = np.arange(4)
    y0, y1 = ry & 1, (ry >> 1) & 1  # Y's response to x = 0 and x = 1
    joint = np.zeros((2, 2))
    for x in (0, 1):
        for y in (0, 1):
            joint[x, y] = q[x, ((ry >> x) & 1) == y].sum()
    benefit = (y1 == 1) & (y0 == 0)
    return {
        "joint": joint,
        "p_y1_do1": q[:, y1 == 1].sum(),
        "p_y1_do0": q[:, y0 == 1].sum(),
        "pns": q[:, benefit].sum(),
        "pn": q[1, benefit].sum() / joint[1, 1],
        "ps": q[0, benefit].sum() / joint[0, 0],
    }


def tian_pearl_exogenous(joint: np.ndarray) -> dict[str, tuple[float, float]]:
    """Tian & Pearl (2000), Section 4.1: bounds under exogeneity (no confounding)."""
    py_x = joint[1, 1] / joint[1].sum()
    py_xp = joint[0, 1] / joint[0].sum()
    return {
        "pns": (max(0.0, py_x - py_xp), min(py_x, 1 - py_xp)),
        "pn": (max(0.0, (py_x - py_xp) / py_x), min(1.0, (1 - py_xp) / py_x)),
        "ps": (max(0.0, (py_x - py_xp) / (1 - py_xp)), min(1.0, py_x / (1 - py_xp))),
    }


def tian_pearl_experimental(joint: np.ndarray, py_x: float, py_xp: float) -> dict:
    """Tian & Pearl (2000), Theorems 1-3: bounds from P(x, y) together with P(y_x)."""
    pxy, pxyp, pxpy, pxpyp = joint[1, 1], joint[1, 0], joint[0, 1], joint[0, 0]
    py = pxy + pxpy
    pns = (
        max(0.0, py_x - py_xp, py - py_xp, py_x - py),
        min(py_x, 1 - py_xp, pxy + pxpyp, py_x - py_xp + pxyp + pxpy),
    )
    pn = (max(0.0, (py - py_xp) / pxy), min(1.0, ((1 - py_xp) - pxpyp) / pxy))
    ps = (max(0.0, (py_x - py) / pxpyp), min(1.0, (py_x - pxy) / pxpyp))
    return {"pns": pns, "pn": pn, "ps": ps}


WRAPPERS = {"pns": queries.pns_bounds, "pn": queries.pn_bounds, "ps": queries.ps_bounds}


def test_tian_pearl_bounds_from_observational_data_under_exogeneity():
    g = ADMG(nx.DiGraph([("X", "Y")]))
    rng = np.random.default_rng(0)
    for _ in range(N_RANDOM):
        facts = xy_facts(random_xy(rng, confounded=False))
        p = table(facts["joint"], ("X", "Y"))
        expected = tian_pearl_exogenous(facts["joint"])
        for name, wrapper in WRAPPERS.items():
            b = wrapper(g, p, "X", "Y")
            assert b.sharp
            np.testing.assert_allclose([b.lower, b.upper], expected[name], atol=TOL)
            assert b.lower - TOL <= facts[name] <= b.upper + TOL
            check_attained(b, p)


def test_tian_pearl_bounds_from_observational_and_experimental_data():
    g = ADMG(nx.DiGraph([("X", "Y")]), bidirected=[("X", "Y")])
    rng = np.random.default_rng(1)
    for _ in range(N_RANDOM):
        facts = xy_facts(random_xy(rng, confounded=True))
        p = table(facts["joint"], ("X", "Y"))
        py1, py0 = facts["p_y1_do1"], facts["p_y1_do0"]
        experiments = [
            ({"X": 1}, table(np.array([1 - py1, py1]), ("Y",))),
            ({"X": 0}, table(np.array([1 - py0, py0]), ("Y",))),
        ]
        expected = tian_pearl_experimental(facts["joint"], py1, py0)
        for name, wrapper in WRAPPERS.items():
            b = wrapper(g, p, "X", "Y", interventional=experiments)
            assert b.sharp
            np.testing.assert_allclose([b.lower, b.upper], expected[name], atol=TOL)
            assert b.lower - TOL <= facts[name] <= b.upper + TOL
            check_attained(b, p)


def test_manski_no_assumption_ate_bounds():
    g = ADMG(nx.DiGraph([("X", "Y")]), bidirected=[("X", "Y")])
    rng = np.random.default_rng(2)
    for _ in range(N_RANDOM):
        facts = xy_facts(random_xy(rng, confounded=True))
        joint = facts["joint"]
        p = table(joint, ("X", "Y"))
        b = queries.ate_bounds(g, p, "X", "Y")
        px1 = joint[1].sum()
        lower = joint[1, 1] - (joint[0, 1] + px1)
        upper = joint[1, 1] + (1 - px1) - joint[0, 1]
        np.testing.assert_allclose([b.lower, b.upper], [lower, upper], atol=TOL)
        assert b.sharp and abs(b.width - 1.0) < TOL
        assert b.lower - TOL <= facts["p_y1_do1"] - facts["p_y1_do0"] <= b.upper + TOL
        check_attained(b, p)


# ---------------------------------------------------------------- instrumental variable
def balke_pearl(p_xy_z: np.ndarray) -> tuple[float, float]:
    """Balke & Pearl (1997): sharp ATE bounds in the binary IV model; ``p(y, x, z)`` below
    is ``P(Y = y, X = x | Z = z)``."""

    def p(y: int, x: int, z: int) -> float:
        return float(p_xy_z[z, x, y])

    lower = max(
        p(1, 1, 1) + p(0, 0, 0) - 1,
        p(1, 1, 0) + p(0, 0, 1) - 1,
        p(1, 1, 0) - p(1, 1, 1) - p(1, 0, 1) - p(0, 1, 0) - p(1, 0, 0),
        p(1, 1, 1) - p(1, 1, 0) - p(1, 0, 0) - p(0, 1, 1) - p(1, 0, 1),
        -p(0, 1, 1) - p(1, 0, 1),
        -p(0, 1, 0) - p(1, 0, 0),
        p(0, 0, 1) - p(0, 1, 1) - p(1, 0, 1) - p(0, 1, 0) - p(0, 0, 0),
        p(0, 0, 0) - p(0, 1, 0) - p(1, 0, 0) - p(0, 1, 1) - p(0, 0, 1),
    )
    upper = min(
        1 - p(0, 1, 1) - p(1, 0, 0),
        1 - p(0, 1, 0) - p(1, 0, 1),
        -p(0, 1, 0) + p(0, 1, 1) + p(0, 0, 1) + p(1, 1, 0) + p(0, 0, 0),
        -p(0, 1, 1) + p(1, 1, 1) + p(0, 0, 1) + p(0, 1, 0) + p(0, 0, 0),
        p(1, 1, 1) + p(0, 0, 1),
        p(1, 1, 0) + p(0, 0, 0),
        -p(1, 0, 1) + p(1, 1, 1) + p(0, 0, 1) + p(1, 1, 0) + p(1, 0, 0),
        -p(1, 0, 0) + p(1, 1, 0) + p(0, 0, 0) + p(1, 1, 1) + p(1, 0, 1),
    )
    return lower, upper


def random_iv(rng: np.random.Generator) -> tuple[np.ndarray, float]:
    """``P(z, x, y)`` and the true ATE of a random canonical IV model."""
    pz = rng.dirichlet(np.ones(2))
    q = rng.dirichlet(np.full(16, 0.5)).reshape(4, 4)  # (X's type, Y's type)
    tx, ty = np.meshgrid(np.arange(4), np.arange(4), indexing="ij")
    joint = np.zeros((2, 2, 2))
    for z in (0, 1):
        x = (tx >> z) & 1
        y = (ty >> x) & 1
        cells = np.bincount(2 * x.ravel() + y.ravel(), weights=q.ravel(), minlength=4)
        joint[z] = pz[z] * cells.reshape(2, 2)
    ate = float((q * (((ty >> 1) & 1) - (ty & 1))).sum())
    return joint, ate


def test_balke_pearl_iv_bounds():
    g = ADMG(nx.DiGraph([("Z", "X"), ("X", "Y")]), bidirected=[("X", "Y")])
    rng = np.random.default_rng(3)
    for _ in range(N_RANDOM):
        joint, ate = random_iv(rng)
        p = table(joint, ("Z", "X", "Y"))
        b = queries.ate_bounds(g, p, "X", "Y")
        expected = balke_pearl(joint / joint.sum(axis=(1, 2), keepdims=True))
        np.testing.assert_allclose([b.lower, b.upper], expected, atol=TOL)
        assert b.sharp and b.block.conditioning == ("Z",)
        assert b.lower - TOL <= ate <= b.upper + TOL
        check_attained(b, p)


# ---------------------------------------------------------------- identified queries
def test_identified_queries_collapse_to_a_point():
    rng = np.random.default_rng(4)
    backdoor = ADMG(nx.DiGraph([("Z", "X"), ("X", "Y"), ("Z", "Y")]))
    joint = rng.dirichlet(np.ones(8)).reshape(2, 2, 2)
    p = table(joint, ("Z", "X", "Y"))
    b = queries.interventional_bounds(backdoor, p, {"X": 1}, {"Y": 1})
    adjusted = sum(joint[z].sum() * joint[z, 1, 1] / joint[z, 1].sum() for z in (0, 1))
    assert b.sharp and abs(b.upper - b.lower) < 1e-9 and abs(b.lower - adjusted) < 1e-9
    check_attained(b, p)


def test_front_door_is_identified_though_its_lp_spans_two_districts():
    g = ADMG(nx.DiGraph([("X", "M"), ("M", "Y")]), bidirected=[("X", "Y")])
    rng = np.random.default_rng(5)
    q_xy, q_m = rng.dirichlet(np.ones(8)).reshape(2, 4), rng.dirichlet(np.ones(4))
    joint, truth = np.zeros((2, 2, 2)), 0.0
    for (rx, ry), tm in itertools.product(itertools.product(range(2), range(4)), range(4)):
        weight = q_xy[rx, ry] * q_m[tm]
        m = (tm >> rx) & 1
        joint[rx, m, (ry >> m) & 1] += weight
        truth += weight * ((ry >> ((tm >> 1) & 1)) & 1)
    b = queries.interventional_bounds(g, table(joint, ("X", "M", "Y")), {"X": 1}, {"Y": 1})
    assert b.sharp and "identified" in b.method
    assert abs(b.lower - truth) < 1e-9 and abs(b.upper - truth) < 1e-9
