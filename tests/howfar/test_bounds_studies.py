"""Bounds from several studies: marginal and conditional tables over subsets of the
variables (two-sample instrumental variables and friends)."""

import itertools

import networkx as nx
import numpy as np
import pytest
import xarray as xr
from scipy.optimize import linprog

from scm_ppl.errors import BoundsError, DataError
from scm_ppl.graphical.mixed_graph import ADMG
from scm_ppl.howfar import Conditional, ate_bounds, bounds, pn_bounds

IV = ADMG(nx.DiGraph([("Z", "X"), ("X", "Y")]), bidirected=[("X", "Y")])

# Balke & Pearl (JASA 1997), Table 1: Vitamin A supplementation (Sommer et al.), counts by
# (z, x, y); 9665 as in bpbounds' own tests (tests/testthat/test-bpbounds.R).
VITAMIN_A = {
    (0, 0, 0): 74,
    (0, 0, 1): 11514,
    (1, 0, 0): 34,
    (1, 0, 1): 2385,
    (1, 1, 0): 12,
    (1, 1, 1): 9665,
}


def _vitamin_a_counts() -> np.ndarray:
    counts = np.zeros((2, 2, 2))
    for cell, n in VITAMIN_A.items():
        counts[cell] = n
    return counts


def _conditional(probs: np.ndarray, name: str) -> Conditional:
    table = xr.DataArray(probs, dims=("Z", name), coords={"Z": [0, 1], name: [0, 1]})
    return Conditional(table, given="Z")


def _rows(counts: np.ndarray, names: tuple[str, ...]) -> dict[str, np.ndarray]:
    cells = np.argwhere(counts > 0)
    repeats = counts[tuple(cells.T)].astype(int)
    return {name: np.repeat(cells[:, i], repeats) for i, name in enumerate(names)}


def test_vitamin_a_bivariate_matches_bpbounds():
    """bpbounds' bivariate mode (Palmer, Ramsahai, Didelez & Sheehan 2011; R package
    bpbounds, test "Balke and Pearl Table 1 example treated as bivariate data") publishes
    ACE bounds [-0.1974, 0.0064] from P(Y | Z) and P(X | Z) alone. Its vertex formulas
    (R/bpbounds_biv_x2y2z2.R, Ramsahai 2012) evaluated at full precision on these tables
    give -0.19740045919606675 and 0.0063859164653089495."""
    counts = _vitamin_a_counts()
    per_arm = counts.sum(axis=(1, 2))[:, None]
    y_given_z = counts.sum(axis=1) / per_arm
    x_given_z = counts.sum(axis=2) / per_arm
    b = ate_bounds(IV, [_conditional(y_given_z, "Y"), _conditional(x_given_z, "X")], "X", "Y")
    assert b.lower == pytest.approx(-0.19740045919606675, abs=1e-6)
    assert b.upper == pytest.approx(0.0063859164653089495, abs=1e-6)
    assert round(b.lower, 4) == -0.1974 and round(b.upper, 4) == 0.0064
    assert b.sharp and "observed[0], observed[1]" in b.method
    # trivariate data are narrower: Balke & Pearl's [-0.1946, 0.0054]
    joint = xr.DataArray(counts / counts.sum(), dims=("Z", "X", "Y"))
    tri = ate_bounds(IV, [joint], "X", "Y")
    assert (round(tri.lower, 4), round(tri.upper, 4)) == (-0.1946, 0.0054)
    assert tri.lower == pytest.approx(ate_bounds(IV, joint, "X", "Y").lower, abs=1e-12)


def test_two_samples_of_rows_give_the_conditional_frequencies():
    counts = _vitamin_a_counts()
    study_y = _rows(counts.sum(axis=1), ("Z", "Y"))
    study_x = _rows(counts.sum(axis=2)[::-1] * 2, ("Z", "X"))  # another law of Z
    study_x["Z"] = 1 - study_x["Z"]
    b = ate_bounds(IV, [Conditional(study_y, "Z"), Conditional(study_x, "Z")], "X", "Y")
    assert (b.lower, b.upper) == pytest.approx((-0.19740045919606675, 0.0063859164653089495))


def _independent_iv_lp(p_x_z, p_y_z, p_z=None, p_xy=None):
    """The IV bounds written out directly: response functions r_X: Z -> X, r_Y: X -> Y."""
    n_z = p_x_z.shape[0]
    types = list(
        itertools.product(
            itertools.product((0, 1), repeat=n_z), itertools.product((0, 1), repeat=2)
        )
    )
    rows, rhs = [], []
    for z in range(n_z):
        for v in (0, 1):
            rows.append([float(rx[z] == v) for rx, _ in types])
            rhs.append(p_x_z[z, v])
            rows.append([float(ry[rx[z]] == v) for rx, ry in types])
            rhs.append(p_y_z[z, v])
    if p_xy is not None:
        for x, y in itertools.product((0, 1), repeat=2):
            rows.append(
                [sum(p_z[z] * (rx[z] == x and ry[x] == y) for z in range(n_z)) for rx, ry in types]
            )
            rhs.append(p_xy[x, y])
    rows.append([1.0] * len(types))
    rhs.append(1.0)
    c = np.array([ry[1] - ry[0] for _, ry in types], dtype=float)
    ends = [
        linprog(s * c, A_eq=np.array(rows), b_eq=rhs, bounds=(0, None), method="highs")
        for s in (1, -1)
    ]
    return ends[0].fun, -ends[1].fun


@pytest.mark.parametrize("seed", range(24))
def test_random_two_sample_problems_match_an_independent_lp(seed):
    rng = np.random.default_rng(seed)
    n_z = 2 + seed % 2
    types = list(
        itertools.product(
            itertools.product((0, 1), repeat=n_z), itertools.product((0, 1), repeat=2)
        )
    )
    q = rng.dirichlet(np.full(len(types), 0.3))
    p_z = rng.dirichlet(np.ones(n_z))
    p_x_z, p_y_z, p_xy = np.zeros((n_z, 2)), np.zeros((n_z, 2)), np.zeros((2, 2))
    for weight, (rx, ry) in zip(q, types, strict=True):
        for z in range(n_z):
            p_x_z[z, rx[z]] += weight
            p_y_z[z, ry[rx[z]]] += weight
            p_xy[rx[z], ry[rx[z]]] += weight * p_z[z]
    truth = sum(w * (ry[1] - ry[0]) for w, (_, ry) in zip(q, types, strict=True))
    zs = list(range(n_z))

    def given_z(probs, name):
        table = xr.DataArray(probs, dims=("Z", name), coords={"Z": zs, name: [0, 1]})
        return Conditional(table, given="Z")

    studies = [given_z(p_y_z, "Y"), given_z(p_x_z, "X")]
    with_xy = seed % 3 == 0  # a third study of the same population: P(X, Y) and P(Z)
    if with_xy:
        studies += [
            xr.DataArray(p_xy, dims=("X", "Y"), coords={"X": [0, 1], "Y": [0, 1]}),
            xr.DataArray(p_z, dims=("Z",), coords={"Z": zs}),
        ]
    b = ate_bounds(IV, studies, "X", "Y")
    low, high = _independent_iv_lp(p_x_z, p_y_z, p_z, p_xy if with_xy else None)
    assert (b.lower, b.upper) == pytest.approx((low, high), abs=1e-8)
    assert b.lower - 1e-9 <= truth <= b.upper + 1e-9


def test_marginal_tables_with_the_instrument_are_read_per_value():
    counts = _vitamin_a_counts()
    p = counts / counts.sum()
    zy = xr.DataArray(p.sum(axis=1), dims=("Z", "Y"))
    zx = xr.DataArray(p.sum(axis=2), dims=("Z", "X"))
    b = ate_bounds(IV, [zy, zx], "X", "Y")
    assert (b.lower, b.upper) == pytest.approx((-0.19740045919606675, 0.0063859164653089495))


def test_experiments_combine_with_several_studies():
    g = ADMG(nx.DiGraph([("X", "Y")]), bidirected=[("X", "Y")])
    obs = xr.DataArray(np.array([[0.3, 0.2], [0.1, 0.4]]), dims=("X", "Y"))
    rct = [({"X": 1}, xr.DataArray(np.array([0.3, 0.7]), dims=("Y",)))]
    single = ate_bounds(g, obs, "X", "Y", interventional=rct)
    several = ate_bounds(g, [obs], "X", "Y", interventional=rct)
    assert (several.lower, several.upper) == pytest.approx((single.lower, single.upper), abs=1e-9)


def test_conditional_queries_read_the_evidence_from_a_marginal_table():
    g = ADMG(nx.DiGraph([("X", "Y")]), bidirected=[("X", "Y")])
    obs = xr.DataArray(np.array([[0.3, 0.2], [0.1, 0.4]]), dims=("X", "Y"))
    single = pn_bounds(g, obs, "X", "Y")
    several = pn_bounds(g, [obs], "X", "Y")
    assert (several.lower, several.upper) == pytest.approx((single.lower, single.upper))
    y_given_x = Conditional(obs / obs.sum("Y"), given="X")
    with pytest.raises(BoundsError, match="no marginal observational table holds"):
        pn_bounds(g, [y_given_x], "X", "Y")


def test_contradicting_tables_are_refused():
    counts = _vitamin_a_counts()
    per_arm = counts.sum(axis=(1, 2))[:, None]
    x_given_z = counts.sum(axis=2) / per_arm
    y_given_z = counts.sum(axis=1) / per_arm
    other = np.array([[0.5, 0.5], [0.5, 0.5]])
    studies = [_conditional(y_given_z, "Y"), _conditional(x_given_z, "X")]
    with pytest.raises(BoundsError, match="contradict each other"):
        ate_bounds(IV, [*studies, _conditional(other, "X")], "X", "Y")
    z_a = xr.DataArray(np.array([[0.25, 0.25], [0.25, 0.25]]), dims=("Z", "X"))
    z_b = xr.DataArray(np.array([[0.1, 0.1], [0.4, 0.4]]), dims=("Z", "Y"))
    with pytest.raises(BoundsError, match=r"contradict each other.*Conditional\(table"):
        ate_bounds(IV, [z_a, z_b], "X", "Y")


def test_bad_studies_get_clear_errors():
    x_given_z = _conditional(np.array([[0.9, 0.1], [0.2, 0.8]]), "X")
    unknown = xr.DataArray(np.array([[0.5, 0.5]]) / 1.0, dims=("W", "Y"))
    with pytest.raises(BoundsError, match=r"\['W'\] that the graph does not have"):
        ate_bounds(IV, [x_given_z, Conditional(unknown, given="W")], "X", "Y")
    with pytest.raises(BoundsError, match="conditions on \\['Q'\\], which it does not hold"):
        ate_bounds(IV, [Conditional(x_given_z.table, given="Q")], "X", "Y")
    with pytest.raises(DataError, match="must sum to 1"):
        bad = xr.DataArray(np.array([[0.9, 0.3], [0.2, 0.8]]), dims=("Z", "X"))
        ate_bounds(IV, [Conditional(bad, given="Z")], "X", "Y")
    p_y = xr.DataArray(np.array([0.4, 0.6]), dims=("Y",))
    with pytest.raises(BoundsError, match="does not condition on \\['Z'\\]"):
        ate_bounds(IV, [x_given_z, p_y], "X", "Y")
    with pytest.raises(DataError, match="outcome 'Y' appears in no distribution"):
        ate_bounds(IV, [x_given_z], "X", "Y")
    y_given_z = _conditional(np.array([[0.6, 0.4], [0.3, 0.7]]), "Y")
    with pytest.raises(BoundsError, match=r"depends on the values of \['Z'\]"):
        # an event on Z needs P(Z), which conditional tables alone do not give
        bounds(IV, [x_given_z, y_given_z], [({"X": 1}, {"Y": 1}), ({}, {"Z": 1})])
    with pytest.raises(BoundsError, match="empty list"):
        bounds(IV, [], [({"X": 1}, {"Y": 1})])
    with pytest.raises(BoundsError, match="name\\(s\\) of the conditioning"):
        Conditional(x_given_z.table, given=[])
