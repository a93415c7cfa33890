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
# # 8. Does the model deserve trust? Model criticism and causal attribution
#
# Every query in scm_ppl is answered on the model it is handed. This tutorial asks the
# two questions that come before and after a query:
#
# * **criticism** (`scm_ppl.check`): does the graph I drew agree with the data
#   (`check.graph`: every independence the graph implies, tested, and how the graph ranks
#   among node-permuted graphs)? Do the mechanisms `fit` learned hold up on held-out rows
#   (`check.mechanisms`: NLL, calibration, and whether the abducted noise is independent
#   of the parents, the assumption exact counterfactuals rest on)?
# * **attribution** (`scm_ppl.attribution`): which node's noise drove this outlier
#   (`anomaly`), how much of the target's variance each node contributes on its own
#   (`intrinsic_influence`), how strong each arrow is (`arrow_strength`), and which
#   mechanism change explains a shift between two data sets (`distribution_change`).
#
# Four stories: a wrong graph caught by the graph check; a mechanism whose noise depends on
# its parent caught by the mechanism check; the root cause of slow requests found in a
# microservice-latency SCM; a distribution change attributed to the mechanism that
# changed. Set `SCM_PPL_SMOKE=1` for a quick run (used by the test suite).

# %%
import os
from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import jax.numpy as jnp
import matplotlib.pyplot as plt
import networkx as nx
import numpy as np
import numpyro
import numpyro.distributions as dist

from scm_ppl import attribution, check, fit
from scm_ppl.plotting import plot_attribution, plot_attribution_graph, plot_graph_check

SMOKE = os.environ.get("SCM_PPL_SMOKE") == "1"
NUM_ROWS = 1_000 if SMOKE else 10_000
NUM_EPOCHS = 200 if SMOKE else 800
NUM_PERMUTATIONS = 20 if SMOKE else 200

HERE = Path(__file__).resolve().parent if "__file__" in globals() else Path.cwd()
OUTPUT = HERE / "output"
OUTPUT.mkdir(exist_ok=True)
rng = np.random.default_rng(0)

# %% [markdown]
# ## 1. A wrong graph, caught by the graph check
#
# The data come from `a -> b -> c <- d` with a direct arrow `a -> c`. An analyst draws
# the graph without `a -> c`. That graph implies `a ⟂ c | b, d`, which the data contradict.
# `check.graph` lists every independence the graph implies (ordered local Markov
# property), tests each one (partial correlation here, as the data are continuous and
# linear; `test="gcm"` for nonlinear data, a G-test for discrete ones), and controls the
# family-wise error with Holm's correction. The permutation baseline (Eulig et al. 2023)
# asks how many node-permuted graphs violate as many of their implied independences: a
# graph that is no better than a random relabelling of itself has not been tested by the
# data at all.

# %%
a = rng.normal(size=NUM_ROWS)
d = rng.normal(size=NUM_ROWS)
b = 0.9 * a + rng.normal(size=NUM_ROWS)
c = 0.8 * b - 0.7 * d + 0.4 * a + rng.normal(size=NUM_ROWS)
observed = {"a": a, "b": b, "c": c, "d": d}

true_graph = nx.DiGraph([("a", "b"), ("b", "c"), ("d", "c"), ("a", "c")])
drawn_graph = nx.DiGraph([("a", "b"), ("b", "c"), ("d", "c")])
good = check.graph(true_graph, observed, num_permutations=NUM_PERMUTATIONS)
bad = check.graph(drawn_graph, observed, num_permutations=NUM_PERMUTATIONS)
print("true graph: ", good)
print("drawn graph:", bad)
print(bad.tests)

fig, axes = plt.subplots(1, 2, figsize=(11, 3.6), constrained_layout=True)
plot_graph_check(good, ax=axes[0])
plot_graph_check(bad, ax=axes[1])
axes[0].set_title("true graph: " + axes[0].get_title(), fontsize=10)
axes[1].set_title("graph without a -> c: " + axes[1].get_title(), fontsize=10)
fig.savefig(OUTPUT / "08_graph_check.png", dpi=110)
plt.close(fig)
assert not good.rejected and bad.rejected


# %% [markdown]
# ## 2. A mechanism whose noise depends on its parent
#
# `y = x + 0.5·x·ε`: the spread of `y` grows with `|x|`. A model with additive noise,
# `y = f(x) + σ·ε`, can still fit the mean well, but its abducted noise
# `(y - f(x)) / σ` is not independent of `x`, so every counterfactual it answers is wrong.
# `check.mechanisms` abducts the noise of each mechanism on held-out rows and tests it
# against the parents with HSIC (permutation p-value). A heteroscedastic model,
# `y = f(x) + (s₀ + s₁|x|)·ε`, passes.


# %%
def additive(n):
    w = numpyro.param("w", jnp.zeros(2))
    s = numpyro.param("s", 1.0, constraint=dist.constraints.positive)
    with numpyro.plate("unit", n):
        x = numpyro.sample("x", dist.Normal(0.0, 1.0))
        numpyro.sample("y", dist.Normal(w[0] + w[1] * x, s))


def heteroscedastic(n):
    w = numpyro.param("w", jnp.zeros(2))
    s = numpyro.param("s", jnp.ones(2), constraint=dist.constraints.positive)
    with numpyro.plate("unit", n):
        x = numpyro.sample("x", dist.Normal(0.0, 1.0))
        numpyro.sample("y", dist.Normal(w[0] + w[1] * x, s[0] + s[1] * jnp.abs(x)))


x = rng.normal(size=NUM_ROWS)
y = x + 0.5 * x * rng.normal(size=NUM_ROWS)
half = NUM_ROWS // 2
train = {"x": x[:half], "y": y[:half]}
held_out = {"x": x[half:], "y": y[half:]}
settings = {"batch_size": None, "num_epochs": NUM_EPOCHS, "learning_rate": 0.05, "progress": False}
checks = {}
for name, program in {"additive noise": additive, "heteroscedastic": heteroscedastic}.items():
    fitted = fit(program, train, **settings)
    checks[name] = check.mechanisms(fitted, held_out)
    print(name, checks[name])
    print(checks[name].table()[["gain", "ks_p", "hsic_p", "passed"]])
assert "y" in checks["additive noise"].failed
assert not checks["heteroscedastic"].failed

# %% [markdown]
# ## 3. Why is the website slow? Root causes in a microservice-latency SCM
#
# Five services call one another: the website waits for the API, the API for the cache
# and the authentication service, the cache for the database (on a cache miss, 30% of the
# calls). Each service's latency is what it waits for plus its own processing time (its
# noise). The data are each request's latencies above their usual values (milliseconds
# above the median; centred data also make the fit well conditioned). We fit the latency
# SCM to normal operation, then look at requests whose website latency is far out in the
# tail.
# `attribution.anomaly` scores each outlier by how improbable its website latency is (the
# information-theoretic outlier score of Budhathoki et al., ICML 2022) and shares that
# score among the services' own noise terms with exact Shapley values (every coalition,
# vectorised). Request by request, it names the service that caused the slowness, not the
# one where it was seen.

# %%
SERVICES = ["database", "auth", "cache", "api", "website"]
CALLS = [("database", "cache"), ("cache", "api"), ("auth", "api"), ("api", "website")]


def latency(n):
    base = numpyro.param("base", jnp.zeros(5))
    w = numpyro.param("w", jnp.ones(4))
    s = numpyro.param("s", jnp.ones(5), constraint=dist.constraints.positive)
    with numpyro.plate("unit", n):
        database = numpyro.sample("database", dist.Normal(base[0], s[0]))
        auth = numpyro.sample("auth", dist.Normal(base[1], s[1]))
        cache = numpyro.sample("cache", dist.Normal(base[2] + w[0] * database, s[2]))
        api = numpyro.sample("api", dist.Normal(base[3] + w[1] * cache + w[2] * auth, s[3]))
        numpyro.sample("website", dist.Normal(base[4] + w[3] * api, s[4]))


SD_MS = np.array([4.0, 3.0, 1.0, 2.0, 1.5])  # spread of each service's processing time


def simulate_latency(noise):
    """Latencies above the usual (ms) from each service's own processing time (columns in
    SERVICES order)."""
    own = SD_MS * noise
    lat = {"database": own[:, 0], "auth": own[:, 1]}
    lat["cache"] = own[:, 2] + 0.3 * lat["database"]  # a cache miss in 30% of the calls
    lat["api"] = own[:, 3] + lat["cache"] + lat["auth"]
    lat["website"] = own[:, 4] + lat["api"]
    return lat


normal_operation = simulate_latency(rng.normal(size=(NUM_ROWS, 5)))
latency_settings = {"batch_size": None, "num_epochs": NUM_EPOCHS, "learning_rate": 0.5}
latency_fit = fit(latency, normal_operation, progress=False, **latency_settings)
print("fitted weights (true 0.3, 1, 1, 1):", np.round(latency_fit.params["w"], 2))
print("fitted noise sd (true 4, 3, 1, 2, 1.5):", np.round(latency_fit.params["s"], 2))

# Twenty slow requests: in each, one service (chosen at random) takes 6 of its standard
# deviations longer than usual.
num_outliers = 20
culprit = rng.integers(0, 5, num_outliers)
noise = rng.normal(size=(num_outliers, 5)) * 0.5
noise[np.arange(num_outliers), culprit] += 6.0
slow = simulate_latency(noise)
result = attribution.anomaly(latency_fit, slow, "website", num_replicates=2)
found = [SERVICES.index(s) for s in result.top()]
print(result)
print(f"root cause found in {np.mean(np.array(found) == culprit):.0%} of the slow requests")
for i in range(5):
    print(f"request {i}: planted {SERVICES[culprit[i]]:8s} found {result.top()[i]}")

fig, axes = plt.subplots(1, 2, figsize=(11, 3.8), constrained_layout=True)
plot_attribution(result, unit=0, ax=axes[0])
plot_attribution_graph(result, nx.DiGraph(CALLS), unit=0, ax=axes[1])
axes[1].set_title(f"request 0 (planted root cause: {SERVICES[culprit[0]]})")
fig.savefig(OUTPUT / "08_root_cause.png", dpi=110)
plt.close(fig)
assert np.mean(np.array(found) == culprit) >= 0.8

# %% [markdown]
# The same fit answers the global questions. Intrinsic influence shares the variance of the
# website latency among the services' own noise terms (Janzing et al. 2024): the
# database's processing time reaches the website only damped by the cache-miss rate.
# Arrow strength measures what the website loses when the API arrow is cut (Janzing et al.
# 2013).

# %%
influence = attribution.intrinsic_influence(latency_fit, "website", num_replicates=4)
print(influence)
print("closed form: database 1.44, auth 9, cache 1, api 4, website 2.25 (ms²)")
strength = attribution.arrow_strength(latency_fit, "api", num_replicates=4)
print(strength)
fig, ax = plt.subplots(figsize=(6, 3.5), constrained_layout=True)
plot_attribution(influence, ax=ax)
fig.savefig(OUTPUT / "08_intrinsic_influence.png", dpi=110)
plt.close(fig)

# %% [markdown]
# ## 4. What changed between last month and this one?
#
# This month the website is slower on average. Was it the API, the cache, the database?
# `attribution.distribution_change` fits the program to both data sets and replaces the
# mechanisms of last month's fit with this month's, one coalition at a time; the Shapley
# value of each replacement is its share of the change in mean website latency (Budhathoki
# et al., AISTATS 2021). Only the database got slower, and its mechanism takes the change,
# even though every service downstream of it is slower too.

# %%
last_month = normal_operation
shifted = rng.normal(size=(NUM_ROWS, 5))
shifted[:, 0] += 2.0  # the database is 2 standard deviations (8 ms) slower
this_month = simulate_latency(shifted)
change = attribution.distribution_change(
    last_month, this_month, "website", model=latency,
    fit_kwargs=latency_settings,
)  # fmt: skip
print(change)
print(f"mean website latency moved by {change.total:.2f} ms (true: {0.3 * 8.0:.2f} ms)")
fig, axes = plt.subplots(1, 2, figsize=(11, 3.8), constrained_layout=True)
plot_attribution(change, ax=axes[0])
plot_attribution_graph(change, nx.DiGraph(CALLS), ax=axes[1])
fig.savefig(OUTPUT / "08_distribution_change.png", dpi=110)
plt.close(fig)
assert max(change.nodes, key=lambda n: abs(change[n])) == "database"

# %% [markdown]
# ## What to take away
#
# * Criticise before you query: `check.graph` tests the graph against the data,
#   `check.mechanisms` tests each learned mechanism and, above all, the independence of
#   its noise from its parents, without which counterfactuals are not exact.
# * Attribution works on any program with a noise view (here linear-Gaussian fits; neural,
#   discrete and non-additive mechanisms work the same way), answers with Monte-Carlo or
#   posterior uncertainty, and is vectorised over units, coalitions and replicates.
