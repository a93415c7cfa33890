"""Abduction by exact enumeration of discrete latent causes (issue 16, item 1)."""

from __future__ import annotations

import itertools
import warnings
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as dist
import pytest

from scm_ppl import counterfactual, pn
from scm_ppl.errors import AbductionError, EvidenceError, NotIdentifiableWarning
from scm_ppl.query import enumerated_counterfactual
from scm_ppl.query.enumeration import ENUMERATION_LIMIT

KEY = jax.random.key(0)


def squad(p: float = 0.5, q: float | None = None):
    """Pearl's firing squad (*Causality* §7.1.2): court order U, captain C, riflemen A and
    B, death D; with ``q``, rifleman A's nervousness W (§7.2.2): A = C or W."""

    def model():
        u: Any = numpyro.sample("U", dist.Bernoulli(p))
        c: Any = numpyro.deterministic("C", u)
        if q is None:
            a: Any = numpyro.deterministic("A", c)
        else:
            a = numpyro.deterministic("A", c | numpyro.sample("W", dist.Bernoulli(q)))
        b = numpyro.deterministic("B", c)
        numpyro.deterministic("D", a | b)

    return model


def _prob(model, evidence, interventions, world, site, value):
    ans = enumerated_counterfactual(model, evidence, interventions)
    assert ans.attrs["method"] == "enumerate"
    return float(ans.probability(world, site, value))


@pytest.mark.parametrize("p", [0.5, 0.3, 0.7])
def test_firing_squad_sentences_are_exact(p):
    """S1–S5 of *Causality* §7.1.2 hold with probability one (or zero) whatever the prior
    of the court order: the weights are exact, not Monte-Carlo."""
    model = squad(p)
    # S1 prediction: A => D; S2 abduction: not D => not C; S3 transduction: A => B.
    assert _prob(model, {"A": 1}, None, "factual", "D", 1) == 1.0
    assert _prob(model, {"D": 0}, None, "factual", "C", 0) == 1.0
    assert _prob(model, {"A": 1}, None, "factual", "B", 1) == 1.0
    # S4 action: not C => D_{A=1} and not B_{A=1}.
    assert _prob(model, {"C": 0}, {"A": 1}, "cf", "D", 1) == 1.0
    assert _prob(model, {"C": 0}, {"A": 1}, "cf", "B", 1) == 0.0
    # S5 counterfactual: D => D_{not A}.
    assert _prob(model, {"D": 1}, {"A": 0}, "cf", "D", 1) == 1.0
    # The prior itself, read back from the factual world with no evidence on U's effects.
    assert _prob(model, {"D": 1}, None, "factual", "U", 1) == 1.0


@pytest.mark.parametrize("p", [0.5, 0.3, 0.7])
def test_probabilistic_firing_squad_matches_pearl(p):
    """*Causality* §7.2.2: P(D_{A=0} = 0 | D = 1) = (1 - p) q / (1 - (1 - p)(1 - q))."""
    q = 0.2
    want = (1 - p) * q / (1 - (1 - p) * (1 - q))
    got = _prob(squad(p, q), {"D": 1}, {"A": 0}, "cf", "D", 0)
    assert got == pytest.approx(want, abs=1e-6)


def test_firing_squad_is_asked_by_counterfactual():
    """The issue's query: refused before, now answered under ``auto`` by enumeration."""
    result = counterfactual(squad(), {"D": 1}, {"A": 0}, rng_key=KEY, num_samples=200)
    assert result.attrs["method"] == "enumerate"
    assert "enumerated (2 joint configurations per unit)" in result.attrs["method_reason"]
    assert "['D'] is ordinary evidence" in result.attrs["method_reason"]
    assert np.all(np.asarray(result.world("cf")["D"]) == 1)


def confounded(pu, table, a=0.2, ny=(0.1, 0.3, 0.4, 0.2), n=None):
    """X = [U == 1] xor N_X, Y = table[U, N_Y, X]: a binary treatment and outcome
    confounded by a discrete latent U, every mechanism a function of discrete noise."""
    table = jnp.asarray(table)

    def model():
        with numpyro.plate("units", n or 1):
            u: Any = numpyro.sample("U", dist.CategoricalProbs(jnp.asarray(pu)))
            nx: Any = numpyro.sample("NX", dist.Bernoulli(a))
            ny_ = numpyro.sample("NY", dist.CategoricalProbs(jnp.asarray(ny)))
            x = numpyro.deterministic("X", (u == 1).astype(jnp.int32) ^ nx)
            numpyro.deterministic("Y", table[u, ny_, x])

    return model


def brute_force(pu, table, x, y, x_new, a=0.2, ny=(0.1, 0.3, 0.4, 0.2)):
    """P(Y_{x'} = 1 | X = x, Y = y) by a sum over U and the noise."""
    num = den = 0.0
    for u, nx, k in itertools.product(range(len(pu)), range(2), range(len(ny))):
        w = pu[u] * (a if nx else 1 - a) * ny[k]
        xv = int(u == 1) ^ nx
        if xv == x and table[u][k][xv] == y:
            den += w
            num += w * table[u][k][x_new]
    return num / den


@pytest.mark.parametrize("pu", [(0.4, 0.6), (0.2, 0.5, 0.3)])
def test_confounded_binary_against_brute_force(pu):
    rng = np.random.default_rng(len(pu))
    table = rng.integers(0, 2, size=(len(pu), 4, 2))
    table[:, 0] = [0, 1]  # every (x, y) is possible
    table[:, 1] = [1, 0]
    x = np.array([0, 0, 1, 1])
    y = np.array([0, 1, 0, 1])
    model = confounded(pu, table, n=4)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", NotIdentifiableWarning)  # U confounds X and Y
        ans = enumerated_counterfactual(model, {"X": x, "Y": y}, {"X": 1 - x})
    got = np.asarray(ans.probability("cf", "Y", 1))
    want = [brute_force(pu, table, xi, yi, 1 - xi) for xi, yi in zip(x, y, strict=True)]
    np.testing.assert_allclose(got, want, atol=1e-6)
    assert ans.attrs["support_size"] == len(pu) * 2 * 4
    # pn on the same model (forward twin worlds, Monte Carlo) agrees within its error.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", NotIdentifiableWarning)  # U confounds X and Y
        est = pn(confounded(pu, table), "X", "Y", rng_key=KEY, num_samples=2000)
    want_pn = 1 - brute_force(pu, table, 1, 1, 0)
    assert abs(est.value - want_pn) < 4 * est.std_error + 1e-9
    # counterfactual(method="enumerate") draws from the exact posterior: within MC error.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", NotIdentifiableWarning)
        draws = counterfactual(model, {"X": x, "Y": y}, {"X": 1 - x}, rng_key=KEY,
                               num_samples=2000)  # fmt: skip
    assert draws.attrs["method"] == "enumerate"
    mean = np.asarray(draws.world("cf")["Y"]).mean(axis=(0, 1))
    se = np.sqrt(np.clip(np.asarray(want) * (1 - np.asarray(want)), 1e-4, None) / 2000)
    assert np.all(np.abs(mean - want) < 4 * se)


@pytest.mark.filterwarnings("ignore::scm_ppl.errors.NotIdentifiableWarning")  # U confounds A, D
def test_units_with_different_evidence_in_one_call():
    """The firing squad for many units, each its own evidence: one vectorised call."""
    n = 1000

    def model():
        with numpyro.plate("units", n):
            u: Any = numpyro.sample("U", dist.Bernoulli(0.3))
            w: Any = numpyro.sample("W", dist.Bernoulli(0.2))
            a: Any = numpyro.deterministic("A", u | w)
            numpyro.deterministic("D", a | u)

    d = np.asarray(jax.random.bernoulli(KEY, 0.5, (n,)), dtype=np.int32)
    ans = enumerated_counterfactual(model, {"D": d}, {"A": 0})
    want = np.where(d == 1, 0.3 / (1 - 0.7 * 0.8), 0.0)
    np.testing.assert_allclose(np.asarray(ans.probability("cf", "D", 1)), want, atol=1e-6)
    assert ans.weights.shape == (4, n)


def test_poisson_latent_is_refused():
    def model():
        k: Any = numpyro.sample("K", dist.Poisson(2.0))
        numpyro.deterministic("Y", k > 1)

    with pytest.raises(AbductionError, match="unbounded discrete support"):
        counterfactual(model, {"Y": True}, {"K": 0}, rng_key=KEY)


def test_support_too_large_says_size_and_limit():
    def model():
        bits = [numpyro.sample(f"b{i}", dist.Bernoulli(0.5)) for i in range(17)]
        numpyro.deterministic("S", sum(bits))

    size = 2**17
    with pytest.raises(AbductionError, match=f"{size} configurations per unit, above the "
                       f"enumeration limit of {ENUMERATION_LIMIT}"):  # fmt: skip
        counterfactual(model, {"S": 3}, {"b0": 0}, rng_key=KEY)


def test_enumerate_refuses_continuous_and_needless_cases():
    def continuous():
        z = numpyro.sample("Z", dist.Normal())
        numpyro.sample("Y", dist.Normal(z, 1.0))

    with pytest.raises(AbductionError, match="continuous; use method='nuts'"):
        counterfactual(continuous, {"Y": 1.0}, {"Z": 0.0}, rng_key=KEY, method="enumerate")

    def observed():
        x = numpyro.sample("X", dist.Normal())
        numpyro.sample("Y", dist.Normal(x, 1.0))

    with pytest.raises(AbductionError, match="there are none"):
        counterfactual(observed, {"X": 1.0, "Y": 1.0}, {"X": 0.0}, rng_key=KEY,
                       method="enumerate")  # fmt: skip


def test_impossible_evidence_is_an_error():
    with pytest.raises(EvidenceError, match="probability zero under every configuration"):
        enumerated_counterfactual(squad(), {"A": 1, "B": 0}, {"A": 0})


def test_coupled_mechanisms_have_no_exact_answer():
    def model():
        u = numpyro.sample("U", dist.Bernoulli(0.5))
        x = numpyro.sample("X", dist.Bernoulli(0.2 + 0.6 * u))
        numpyro.sample("Y", dist.Bernoulli(0.1 + 0.4 * x + 0.4 * u))

    with (
        pytest.raises(AbductionError, match="not a function of the enumerated"),
        warnings.catch_warnings(),
    ):
        warnings.simplefilter("ignore", NotIdentifiableWarning)
        enumerated_counterfactual(model, {"X": 1, "Y": 1}, {"X": 0})


def test_explicit_nuts_points_to_enumerate():
    with pytest.raises(Exception, match="method='enumerate'"):
        counterfactual(squad(), {"D": 1}, {"A": 0}, rng_key=KEY, method="nuts")


def _random_discrete_scm(seed: int):
    """A random discrete SCM: 1–2 latent roots (2–3 states), 2–6 observed nodes (2–3
    states), each a random table of its parents (latents and earlier nodes); a query
    (evidence from one forward draw, one intervention) and its NumPy oracle."""
    rng = np.random.default_rng(seed)
    latent_cards = rng.integers(2, 4, rng.integers(1, 3)).tolist()
    priors = [rng.dirichlet(np.ones(c)) for c in latent_cards]
    cards, parents, tables = [], [], []
    for i in range(int(rng.integers(2, 7))):
        pool = [("L", j) for j in range(len(latent_cards))] + [("V", j) for j in range(i)]
        take = rng.permutation(len(pool))[: int(rng.integers(1, min(3, len(pool)) + 1))]
        pa = [pool[t] for t in sorted(take)]
        card = int(rng.integers(2, 4))
        shape = [latent_cards[j] if kind == "L" else cards[j] for kind, j in pa]
        cards.append(card)
        parents.append(pa)
        tables.append(rng.integers(0, card, size=shape))

    def forward(lat, do=None):
        vals: list[int] = []
        for i, (pa, table) in enumerate(zip(parents, tables, strict=True)):
            idx = tuple(lat[j] if kind == "L" else vals[j] for kind, j in pa)
            vals.append(do[1] if do is not None and do[0] == i else int(table[idx]))
        return vals

    def model():
        lat = [
            numpyro.sample(f"L{j}", dist.CategoricalProbs(jnp.asarray(p)))
            for j, p in enumerate(priors)
        ]
        vals: list = []
        for i, (pa, table) in enumerate(zip(parents, tables, strict=True)):
            idx = tuple(lat[j] if kind == "L" else vals[j] for kind, j in pa)
            vals.append(numpyro.deterministic(f"V{i}", jnp.asarray(table)[idx]))

    n = len(cards)
    truth = forward([int(rng.integers(c)) for c in latent_cards])
    seen = sorted(rng.permutation(n)[: int(rng.integers(1, n + 1))].tolist())
    target = int(rng.integers(n))
    do_node = int(rng.integers(n))
    do_value = int(rng.integers(cards[do_node]))
    oracle = np.zeros(cards[target])
    for lat in itertools.product(*(range(c) for c in latent_cards)):
        w = np.prod([priors[j][v] for j, v in enumerate(lat)])
        if all(forward(list(lat))[i] == truth[i] for i in seen):
            oracle[forward(list(lat), (do_node, do_value))[target]] += w
    evidence = {f"V{i}": truth[i] for i in seen}
    query = (evidence, {f"V{do_node}": do_value}, f"V{target}")
    return model, query, oracle / oracle.sum()


def _check_random_scm(seed: int) -> None:
    model, (evidence, interventions, target), want = _random_discrete_scm(seed)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", NotIdentifiableWarning)
        ans = enumerated_counterfactual(model, evidence, interventions)
    got = [float(ans.probability("cf", target, v)) for v in range(len(want))]
    np.testing.assert_allclose(got, want, atol=1e-6, err_msg=f"seed {seed}")


@pytest.mark.parametrize("seed", range(6))
def test_random_discrete_scms_match_brute_force(seed):
    _check_random_scm(seed)


@pytest.mark.slow
def test_hundred_random_discrete_scms_match_brute_force():
    for seed in range(10, 110):
        _check_random_scm(seed)


@pytest.mark.slow
def test_mixed_continuous_and_discrete_latents_against_closed_form():
    """Z ~ N(0, 1) and C ~ Bernoulli(pi) both cause the evidence X ~ N(Z + b C, s): NUTS
    moves Z on the density with C summed out, C is drawn per draw from p(C | Z, x).
    Given C, the model is linear-Gaussian: P(C | x) ∝ pi_C N(x; b C, 1 + s^2) and
    E[Z | x, C] = (x - b C) / (1 + s^2); under do(C = 0), X_cf = x - b C (its noise is
    abducted) and Y_cf = 2 Z + noise. Tolerance: 4 posterior sd / sqrt(min ESS)."""
    from scipy.stats import norm

    pi, b, s, x = 0.4, 1.0, 1.0, 1.3

    def model():
        z: Any = numpyro.sample("Z", dist.Normal(0.0, 1.0))
        c: Any = numpyro.sample("C", dist.Bernoulli(pi))
        numpyro.sample("X", dist.Normal(z + b * c, s))
        numpyro.sample("Y", dist.Normal(2.0 * z - c, 0.3))

    result = counterfactual(model, {"X": x}, {"C": 0}, rng_key=KEY, num_samples=1500,
                            num_warmup=500)  # fmt: skip
    assert result.attrs["method"] == "nuts+enumerate"
    v = 1 + s**2
    p_c = np.array([1 - pi, pi]) * norm.pdf(x, loc=[0.0, b], scale=np.sqrt(v))
    p_c /= p_c.sum()
    want_x = x - b * p_c[1]
    want_y = 2 * sum(p_c[c] * (x - b * c) / v for c in (0, 1))
    ess = result.attrs["min_ess"]
    assert ess > 100  # enough for the tolerance below to mean something
    for site, want in (("X", want_x), ("Y", want_y)):
        draws = np.asarray(result.world("cf")[site]).ravel()
        assert abs(draws.mean() - want) < 4 * draws.std() / np.sqrt(ess), site
    drawn_c = np.asarray(result.world("factual")["C"]).ravel()
    assert abs(drawn_c.mean() - p_c[1]) < 4 * 0.5 / np.sqrt(ess)


def test_nuts_enumerate_needs_both_kinds_of_latent():
    with pytest.raises(AbductionError, match="needs both discrete and continuous latent"):
        counterfactual(squad(), {"D": 1}, {"A": 0}, rng_key=KEY, method="nuts+enumerate")
