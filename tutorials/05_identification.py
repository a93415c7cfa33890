# ---
# jupyter:
#   jupytext:
#     formats: py:percent
#     text_representation:
#       extension: .py
#       format_name: percent
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # 5. Identification: is P(y | do(x)) determined by the data, and by what formula?
#
# `interventional` answers `P(y | do(x))` by running the intervened program, so its
# answer rests on every mechanism the program writes down. Often the graph alone settles
# the question: if `P(y | do(x))` is a function of the observational distribution of
# the observed variables, any SCM with that graph and that distribution gives the same
# answer. `scm_ppl.identify` decides this with the complete ID algorithm (Shpitser &
# Pearl 2006) and returns either the formula (the *estimand*) or a *hedge*, the
# witness that no formula exists.
#
# The graph it works on is an ADMG, an acyclic directed mixed graph over the observed
# variables: `a -> b` for a direct cause, a dashed `a <-> b` for a latent common cause.
# `scm_ppl.admg` projects a program onto one.
#
# Sections: back-door adjustment (kidney stones), the front-door formula (smoking,
# tar, cancer), the bow graph (not identifiable), the napkin graph (identifiable,
# though no adjustment formula applies), LaTeX output, and counterfactuals (ID*: the
# effect of treatment on the treated, a query that needs an experiment, and PNS, which
# is not identified and gets bounds). Each identified formula is
# evaluated on data sampled from the program and printed next to the program's own
# `interventional` answer and the exact truth. Set `SCM_PPL_SMOKE=1` for a quick run
# with few samples (used by the test suite).

# %%
import os
from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import jax
import jax.numpy as jnp
import matplotlib.pyplot as plt
import networkx as nx
import numpy as np
import numpyro
import numpyro.distributions as dist

import scm_ppl
from models import front_door, kidney_stones
from scm_ppl import ADMG, admg, identify, interventional
from scm_ppl.errors import NotIdentifiableError
from scm_ppl.graphical import DiscreteJoint, backdoor_sets, frontdoor_sets

SMOKE = os.environ.get("SCM_PPL_SMOKE") == "1"
NUM_DRAWS = 4 if SMOKE else 50  # draws of the whole population
NUM_UNITS = 1_000 if SMOKE else 4_000  # units (the "unit" plate) per draw
NUM_ROWS = NUM_DRAWS * NUM_UNITS  # rows of observational data per model

HERE = Path(__file__).resolve().parent if "__file__" in globals() else Path.cwd()
OUTPUT = HERE / "output"
OUTPUT.mkdir(exist_ok=True)


# %% [markdown]
# A helper used throughout: run a program unintervened (observational data, turned
# into an empirical joint by `DiscreteJoint.from_data`) and under `do(x = 0)` and
# `do(x = 1)` (the program's own answer, what `interventional` is for).


# %%
def simulate(model, names, x, y, key):
    """Run the program three ways in one call: unintervened, with do(x = 0), do(x = 1).

    Returns the empirical joint of ``names`` in the NUM_ROWS unintervened units (the
    observational data) and the program's own P(y = 1 | do(x = 0)), P(y = 1 | do(x = 1)).
    """
    result = interventional(
        model,
        {"observed": {}, "control": {x: 0}, "treated": {x: 1}},
        rng_key=key,
        num_samples=NUM_DRAWS,
        model_kwargs={"n": NUM_UNITS},
    )
    pred = result.samples["predictions"]  # site -> (chain, draw, intervention, unit)
    data = {name: np.asarray(pred[name][:, :, 0]).ravel().astype(np.int64) for name in names}
    joint = DiscreteJoint.from_data(data, cardinality=dict.fromkeys(names, 2))
    return joint, np.asarray(pred[y][:, :, 1:]).mean(axis=(0, 1, 3))


def bootstrap_se(result, joint, key, reps=200):
    """Standard error of the identified P(y = 1 | do(x)) over NUM_ROWS-row resamples."""
    rng = np.random.default_rng(key)
    counts = rng.multinomial(NUM_ROWS, joint.probs.ravel(), size=reps)
    values = [
        result.evaluate(DiscreteJoint.from_counts(c.reshape(joint.probs.shape), joint.names))
        for c in counts
    ]
    return np.nanstd(np.stack(values)[:, :, 1], axis=0)


def report(label, identified, se, answer, truth):
    """identified ± 2 s.e. (bootstrap), interventional ± 2 s.e. (binomial), truth."""
    answer_se = np.sqrt(answer * (1 - answer) / NUM_ROWS)
    width = len(label) + 4
    print(f"{'':<{width}}{'identified':>17}{'interventional':>19}{'truth':>9}")
    for v in (0, 1):
        query = f"{label}{v}))"
        print(
            f"{query:<{width}}{identified[v]:>9.4f} ± {2 * se[v]:.4f}"
            f"{answer[v]:>11.4f} ± {2 * answer_se[v]:.4f}{truth[v]:>9.4f}"
        )


# %% [markdown]
# ## 1. Back-door adjustment: kidney stones
#
# `models.kidney_stones` is the 1986 kidney-stone study: stone size `Z` drives both the
# treatment `X` (1 = open surgery) and recovery `Y`. `Z` is a root sample site, and
# `scm_ppl` reads a root sample site as exogenous noise, unobserved unless said
# otherwise. Left at that, `Z` is a latent confounder, the ADMG is `X -> Y` plus
# `X <-> Y`, and the effect is not identifiable:

# %%
print(identify(kidney_stones.model, "X", "Y"))

# %% [markdown]
# But the study recorded stone size. Saying so with `observed=` gives a DAG with no
# bidirected edge; `backdoor_sets` lists the minimal sets that block every back-door
# path from `X` to `Y` (it takes the directed graph and the bidirected pairs), and
# `identify` returns the adjustment formula.

# %%
observed = ["Z", "X", "Y"]
g_kidney = admg(kidney_stones.model, observed=observed)
print(g_kidney)
print(
    "minimal back-door sets:",
    [sorted(s) for s in backdoor_sets(g_kidney.directed, "X", "Y", g_kidney.bidirected_edges())],
)
kidney = identify(g_kidney, "X", "Y")
print(kidney)

# %% [markdown]
# `evaluate` computes the formula on a joint distribution: here the empirical joint of
# data sampled from the program. Its result has axes `(X, Y)`: `table[x][y]` is
# `P(Y = y | do(X = x))`.

# %%
joint, answer = simulate(kidney_stones.model, observed, "X", "Y", jax.random.key(0))
identified = kidney.evaluate(joint)[:, 1]
truth = [kidney_stones.p_recovery_do(x) for x in (0, 1)]
report("P(Y=1 | do(X=", identified, bootstrap_se(kidney, joint, 10), answer, truth)
naive = joint.conditional(["Y"], ["X"])[1]  # P(Y = 1 | X = x), the confounded comparison
effect, truth_effect = identified[1] - identified[0], kidney_stones.ate_adjusted()
print(f"effect of A over B, identified  {effect:+.4f}   truth {truth_effect:+.4f}")
naive_effect, truth_naive = naive[1] - naive[0], kidney_stones.naive_difference()
print(f"naive P(Y=1|X=1) - P(Y=1|X=0)   {naive_effect:+.4f}   truth {truth_naive:+.4f}")

# %% [markdown]
# The program's probabilities are the study's frequencies, so the formula evaluated on
# the published 700-patient table is exactly the truth:

# %%
counts = np.zeros((2, 2, 2))  # axes (Z, X, Y)
for (z, x), (recovered, patients) in kidney_stones.COUNTS.items():
    counts[z, x] = (patients - recovered, recovered)
published = kidney.evaluate(DiscreteJoint.from_counts(counts, observed))[:, 1]
for x in (0, 1):
    print(f"P(Y=1 | do(X={x})) on the published table {published[x]:.4f}   truth {truth[x]:.4f}")

# %% [markdown]
# ## 2. The front-door formula: smoking, tar and cancer
#
# In `models.front_door` a latent genotype `U` causes both smoking and cancer; smoking
# acts on cancer only through tar. `U` is a root with two children, so the projection
# turns it into the bidirected edge `smoking <-> cancer`. No observed set blocks that
# back-door path, but `tar` is a front-door set.

# %%
g_front = admg(front_door.model)
print(g_front)
bidirected = g_front.bidirected_edges()
print("back-door sets: ", backdoor_sets(g_front.directed, "smoking", "cancer", bidirected))
print(
    "front-door sets:",
    [sorted(s) for s in frontdoor_sets(g_front.directed, "smoking", "cancer", bidirected)],
)

# %% [markdown]
# The four graphs of this tutorial; the dashed curved edges are the bidirected ones.
# `ADMG.to_digraph()` gives `plot_graph` a graph with them attached.

# %%
g_bow = ADMG(nx.DiGraph([("x", "y")]), bidirected=[("x", "y")])
g_napkin = ADMG(
    nx.DiGraph([("W1", "W2"), ("W2", "X"), ("X", "Y")]),
    bidirected=[("W1", "X"), ("W1", "Y")],
)
fig, axes = plt.subplots(1, 4, figsize=(15, 5), layout="constrained")
for ax, graph_, title in zip(
    axes,
    (g_kidney, g_front, g_bow, g_napkin),
    ("1. back-door", "2. front-door", "3. bow: not identifiable", "4. napkin"),
    strict=True,
):
    picture = graph_.to_digraph()
    # Every node of an ADMG is an observed variable; the program's node attributes
    # (Z is exogenous noise there) would style it as latent.
    nx.set_node_attributes(picture, True, "observed")
    scm_ppl.plotting.plot_graph(picture, ax=ax, title=title)
# One vertical scale for all panels, so that the bow's two nodes are not drawn huge.
span = max(np.ptp(ax.get_ylim()) for ax in axes)
for ax in axes:
    centre = np.mean(ax.get_ylim())
    ax.set_ylim(centre - span / 2, centre + span / 2)
path = OUTPUT / "05_admgs.png"
fig.savefig(path, dpi=120)
plt.close(fig)
print("saved", path.relative_to(HERE.parent))

# %% [markdown]
# The ID algorithm finds the front-door formula by itself, from the program:

# %%
front = identify(front_door.model, "smoking", "cancer")
print(front)
names = ["smoking", "tar", "cancer"]
joint, answer = simulate(front_door.model, names, "smoking", "cancer", jax.random.key(1))
identified = front.evaluate(joint)[:, 1]
truth = [front_door.p_cancer_do_smoking(s) for s in (0, 1)]
se = bootstrap_se(front, joint, 11)
report("P(cancer=1 | do(smoking=", identified, se, answer, truth)
exact = front.evaluate(DiscreteJoint(front_door.observational_joint(), names))[:, 1]
print("on the exact observational joint:", exact.round(6), " truth:", np.round(truth, 6))
print(
    "confounded P(cancer=1 | smoking):",
    np.round([front_door.p_cancer_given_smoking(s) for s in (0, 1)], 4),
)

# %% [markdown]
# The formula never looks at `U`: data on smoking, tar and cancer alone give the causal
# effect, while the naive conditional `P(cancer | smoking)` overstates it.
#
# ### Continuous variables
#
# The same formula applies when the variables are continuous. `evaluate_sampled` cuts
# them into quantile bins and evaluates the formula on the binned joint of rows: rows of
# data, or — as here — a Monte-Carlo sample of a program's observational distribution
# (a fitted SCM works the same way). A linear-Gaussian front-door program, where the
# truth is `E[y | do(x = v)] = 0.8 · 1.5 · v = 1.2 v`:


# %%
def continuous_front_door(n=1):
    with numpyro.plate("unit", n):
        u = numpyro.sample("u", dist.Normal(0.0, 1.0))
        x = numpyro.sample("x", dist.Normal(u, 1.0))
        m = numpyro.sample("m", dist.Normal(0.8 * x, 1.0))
        numpyro.sample("y", dist.Normal(1.5 * m + 2.0 * u, 1.0))


continuous = identify(continuous_front_door, "x", "y")
print(continuous)
sampled = continuous.evaluate_sampled(
    continuous_front_door,
    rng_key=jax.random.key(5),
    num_samples=50_000 if SMOKE else 1_000_000,
    bins=8,
)
for i in (2, 4, 6):
    v = float(sampled.values["x"][i])
    own = interventional(
        continuous_front_door, {"x": v}, num_samples=20_000, rng_key=jax.random.key(i)
    )
    print(
        f"do(x = {v:+.2f}):  formula on samples {sampled.outcome_means['y'][i]:+.3f}"
        f"   program's interventional {float(own.samples['predictions']['y'].mean()):+.3f}"
        f"   truth {1.2 * v:+.3f}"
    )
slope = np.polyfit(sampled.values["x"][1:-1], sampled.outcome_means["y"][1:-1], 1)[0]

# %% [markdown]
# The binned formula is within a few percent of the truth; the residue is discretisation
# bias (a mediator cut into bins does not carry all of the effect), which shrinks as
# the bins narrow and the rows grow. The outer bins are open-ended, so read effects off
# the interior ones: their slope is printed below next to the truth, 1.2.

# %%
print(f"slope over the interior bins: {slope:.3f}  (truth 1.2; {sampled.num_rows} rows, 8 bins)")

# %% [markdown]
# ## 3. The bow graph: not identifiable
#
# `x -> y` together with `x <-> y`. The answer is a hedge instead of a formula, and
# `evaluate` refuses:

# %%
bow = identify(g_bow, "x", "y")
print(bow)
print("identifiable:", bow.identifiable)
print("hedge: F =", sorted(bow.hedge.forest), " F' =", sorted(bow.hedge.subforest))
try:
    bow.evaluate(DiscreteJoint(np.full((2, 2), 0.25), ("x", "y")))
except NotIdentifiableError as err:
    print("NotIdentifiableError:", err)

# %% [markdown]
# Why: the latent cause can produce any association between `x` and `y` by itself, so
# the observed `P(x, y)` cannot tell how much of it is the effect of `x`. Two SCMs
# compatible with the bow make this concrete: in `direct`, `y` copies a coin flip `x`;
# in `confounded`, both copy a hidden coin `u` and `x` has no effect. Both give
# `P(x = y) = 1` with `P(x = 1) = 1/2`, but `P(y = 1 | do(x = 0))` is 0 in one and 1/2
# in the other.


# %%
def direct(n=1):
    with numpyro.plate("unit", n):
        x = numpyro.sample("x", dist.Bernoulli(0.5))
        numpyro.deterministic("y", x)


def confounded(n=1):
    with numpyro.plate("unit", n):
        u = numpyro.sample("u", dist.Bernoulli(0.5))
        numpyro.deterministic("x", u)
        numpyro.deterministic("y", u)


print(f"{'':<11}{'P(x=1)':>8}{'P(x=y)':>8}{'P(y=1|do(x=0))':>16}{'P(y=1|do(x=1))':>16}")
for name, program, truth in (
    ("direct", direct, (0.0, 1.0)),
    ("confounded", confounded, (0.5, 0.5)),
):
    joint, do_y = simulate(program, ["x", "y"], "x", "y", jax.random.key(2))
    p = joint.marginal(["x", "y"])
    print(
        f"{name:<11}{p[1].sum():>8.3f}{p[0, 0] + p[1, 1]:>8.3f}"
        f"{do_y[0]:>9.3f} ({truth[0]:.1f}){do_y[1]:>9.3f} ({truth[1]:.1f})"
    )

# %% [markdown]
# ## 4. The napkin graph: identifiable without adjustment
#
# `W1 -> W2 -> X -> Y` with `W1 <-> X` and `W1 <-> Y`. The back-door path
# `X <- W2 <- W1 <-> Y` is open, and conditioning on `W1` or `W2` to block it opens the
# path `X <-> W1 <-> Y`, whose collider `W1` is then conditioned on (itself or through
# its child `W2`). There is no mediator either, so no back-door set and no front-door set
# exists. The effect is identifiable all the same:

# %%
print("back-door sets: ", backdoor_sets(g_napkin.directed, "X", "Y", g_napkin.bidirected_edges()))
print("front-door sets:", frontdoor_sets(g_napkin.directed, "X", "Y", g_napkin.bidirected_edges()))
napkin = identify(g_napkin, "X", "Y")
print(napkin)

# %% [markdown]
# Inside a stratum of `W2` the ratio of two sums over `W1`, each weighted by `P(W1)`,
# is `P(y | do(x))`. That holds for every value of `W2`; `identify` averages the ratio
# over `P(W2)`, which changes nothing. A check on a binary SCM with that graph and two
# latent coins, `U1` (for `W1 <-> X`) and `U2` (for `W1 <-> Y`). The truth is
# `P(Y = 1 | do(X = x)) = Σ_u2 P(u2) P(Y = 1 | x, u2)`.

# %%
P_W1 = jnp.array([[0.1, 0.85], [0.2, 0.95]])  # P(W1 = 1 | U1, U2)
P_W2 = jnp.array([0.1, 0.9])  # P(W2 = 1 | W1)
P_X = jnp.array([[0.15, 0.5], [0.6, 0.9]])  # P(X = 1 | W2, U1)
P_Y = jnp.array([[0.1, 0.6], [0.35, 0.9]])  # P(Y = 1 | X, U2)
P_U2 = 0.5


def napkin_model(n=1):
    with numpyro.plate("unit", n):
        u1 = numpyro.sample("U1", dist.Bernoulli(0.5)).astype(jnp.int32)
        u2 = numpyro.sample("U2", dist.Bernoulli(P_U2)).astype(jnp.int32)
        w1 = numpyro.sample("W1", dist.Bernoulli(P_W1[u1, u2])).astype(jnp.int32)
        w2 = numpyro.sample("W2", dist.Bernoulli(P_W2[w1])).astype(jnp.int32)
        x = numpyro.sample("X", dist.Bernoulli(P_X[w2, u1])).astype(jnp.int32)
        numpyro.sample("Y", dist.Bernoulli(P_Y[x, u2]))


print("the program's ADMG is the napkin:", admg(napkin_model) == g_napkin)
joint, answer = simulate(napkin_model, ["W1", "W2", "X", "Y"], "X", "Y", jax.random.key(3))
identified = napkin.evaluate(joint)[:, 1]
truth = [float((1 - P_U2) * P_Y[x, 0] + P_U2 * P_Y[x, 1]) for x in (0, 1)]
report("P(Y=1 | do(X=", identified, bootstrap_se(napkin, joint, 12), answer, truth)
print("confounded P(Y=1 | X):", joint.conditional(["Y"], ["X"])[1].round(4))

# %% [markdown]
# ## 5. LaTeX
#
# Every estimand prints as text (`.text()`, also `str`) and as LaTeX (`.latex()`):

# %%
print(front.estimand.latex())

# %% [markdown]
# ## 6. Counterfactuals: ID* and IDC*
#
# `identify` answers rung-2 questions, `P(y | do(x))`. Rung-3 questions compare worlds:
# the effect of treatment on the treated, `P(Y_{X=0} = 1 | X = 1)`, asks about the
# *treated* patients what would have happened *without* treatment.
# `identify_counterfactual` runs ID* and IDC* (Shpitser & Pearl 2008): it builds the
# query's *counterfactual graph* (one copy of the ADMG per world, with copies that must
# be equal merged) and factorises the query over its c-components. A query is written
# as `(interventions, events)` pairs, one per world; `({}, {...})` is the factual world.
#
# ### ETT with a back-door set
#
# In the kidney-stone graph (`Z -> X -> Y`, `Z -> Y`, stone size observed) the ETT is
# identified: `P(y_{x} | x') = Σ_z P(y | x, z) P(z | x')`. The estimand's names stand
# for the query's values (`X` is the value 0 set by the intervention, `X'` the observed
# 1), listed in `values`.

# %%
counterfactual_ett = [
    scm_ppl.identify_counterfactual(
        kidney_stones.model, [({"X": x}, {"Y": 1})], given=[({}, {"X": 1})], observed=observed
    )
    for x in (1, 0)
]
print(counterfactual_ett[1])
print("values:", counterfactual_ett[1].values)
published_joint = DiscreteJoint.from_counts(counts, observed)
p_treated, p_untreated = (r.evaluate(published_joint) for r in counterfactual_ett)
mc = scm_ppl.ett(
    kidney_stones.model,
    "X",
    "Y",
    rng_key=jax.random.key(6),
    num_samples=50 if SMOKE else 1000,
    model_kwargs={"n": NUM_UNITS},
)
print(
    f"ETT identified on the published table {p_treated - p_untreated:+.4f}   "
    f"scm_ppl.ett on the program {mc.value:+.4f} ± {2 * mc.std_error:.4f}"
)

# %% [markdown]
# ### A counterfactual that needs an experiment
#
# In the bow graph `X -> Y`, `X <-> Y`, with a cause `Z -> X` that is not confounded, the
# joint counterfactual `P(Y_{X=0} = 1, Z = 1)` factorises into `P(Z = 1)` and
# `P(Y = 1 | do(X = 0))`, and the second factor is not identified from observational
# data. The estimand keeps it as an interventional term; `experiments` names the
# experiment it needs, and `evaluate` takes it as `bounds` does: one table per
# intervention, or rows of a randomised trial. A small SCM with a latent coin `U`:

# %%
g_iv = ADMG(nx.DiGraph([("Z", "X"), ("X", "Y")]), bidirected=[("X", "Y")])
needs_experiment = scm_ppl.identify_counterfactual(g_iv, [({"X": 0}, {"Y": 1}), ({}, {"Z": 1})])
print(needs_experiment)
print("experiments needed:", needs_experiment.experiments)

P_Z1, P_U1 = 0.4, 0.3
P_X1 = np.array([[0.2, 0.7], [0.5, 0.9]])  # P(X = 1 | Z, U)
P_Y1 = np.array([[0.1, 0.6], [0.5, 0.8]])  # P(Y = 1 | X, U)


def bow_joint(do_x=None):
    """Exact P(Z, X, Y), or under do(X = do_x), by enumerating the latent U."""
    p = np.zeros((2, 2, 2))
    for z, u, x, y in np.ndindex(2, 2, 2, 2):
        pz, pu = (P_Z1 if z else 1 - P_Z1), (P_U1 if u else 1 - P_U1)
        px = float(x == do_x) if do_x is not None else (P_X1[z, u] if x else 1 - P_X1[z, u])
        p[z, x, y] += pz * pu * px * (P_Y1[x, u] if y else 1 - P_Y1[x, u])
    return DiscreteJoint(p, ("Z", "X", "Y"))


arms = [({"X": x}, bow_joint(x)) for x in (0, 1)]
value = needs_experiment.evaluate(bow_joint(), arms)
truth = P_Z1 * ((1 - P_U1) * P_Y1[0, 0] + P_U1 * P_Y1[0, 1])
print(f"P(Y_(X=0) = 1, Z = 1): with the experiment {value:.6f}   truth {truth:.6f}")

# %% [markdown]
# ### PNS: not identified, bounded
#
# The probability of necessity and sufficiency `P(Y_{X=1} = 1, Y_{X=0} = 0)` is not
# identified even in `X -> Y` without confounding: both outcomes are `Y` with the same
# noise, in two worlds that set `X` differently, so the counterfactual graph's
# c-component `{Y_{X=1}, Y_{X=0}}` needs `Y` at two values at once. The witness says
# so; `pns_bounds` gives the range that the data allow (here Tian & Pearl's bounds for
# an exogenous treatment).

# %%
g_xy = ADMG(nx.DiGraph([("X", "Y")]))
pns_query = [({"X": 1}, {"Y": 1}), ({"X": 0}, {"Y": 0})]
pns_result = scm_ppl.identify_counterfactual(g_xy, pns_query)
print(pns_result)
p_xy = DiscreteJoint(np.array([[0.35, 0.15], [0.1, 0.4]]), ("X", "Y"))
pns_range = scm_ppl.pns_bounds(g_xy, p_xy, "X", "Y")
print(f"PNS in [{pns_range.lower:.3f}, {pns_range.upper:.3f}]  (sharp: {pns_range.sharp})")

# %% [markdown]
# The counterfactual graph is a networkx graph with the bidirected pairs attached, so
# `plot_graph` draws it; here the ETT's, where `Z` is one node for both worlds:

# %%
fig, ax = plt.subplots(figsize=(5, 4), layout="constrained")
scm_ppl.plotting.plot_graph(
    counterfactual_ett[1].counterfactual_graph, ax=ax, title="ETT: counterfactual graph"
)
path = OUTPUT / "05_counterfactual_graph.png"
fig.savefig(path, dpi=120)
plt.close(fig)
print("saved", path.relative_to(HERE.parent))
