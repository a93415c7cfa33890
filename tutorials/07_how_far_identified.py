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
# # 7. How far do the data pin the mechanisms down?
#
# Observational data fix a distribution, not the mechanisms that produce it. A learned
# SCM is one of many that fit the data equally well, and a causal answer read off it is
# only as good as its agreement across all of them. This tutorial measures the leftover
# freedom four ways:
#
# 1. **Locally** (`local_identifiability`): the Fisher information of the observational
#    likelihood over every mechanism parameter. Its null directions change no unit's
#    likelihood; a query whose gradient has no component along them is locally identified.
# 2. **Globally** (`refit_ensemble`): refits from different starting points, the ones that
#    fit held-out rows equally well, and how far their answers spread.
# 3. **As data grow** (`contraction`): the posterior sd of a query under Bayesian
#    mechanisms shrinks like `n^{-1/2}` when the data identify it and plateaus when not.
# 4. **Sharp bounds** (`bounds`): for discrete SCMs, the range of a counterfactual over
#    every SCM on the graph that reproduces the data, by linear programming.
#
# Set `SCM_PPL_SMOKE=1` for a quick run (used by the test suite).

# %%
import itertools
import os
from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import jax
import matplotlib.pyplot as plt
import networkx as nx
import numpy as np
import xarray as xr

from models import confounded_linear as cl
from models import firing_squad as fs
from models import hidden_mediator as hm
from models import latent_confounder as lc
from scm_ppl import ADMG, bounds, contraction, fit, local_identifiability, refit_ensemble
from scm_ppl.howfar import intervened_mean
from scm_ppl.plotting.howfar import (
    plot_contraction,
    plot_fisher_spectrum,
    plot_refit_spread,
)

SMOKE = os.environ.get("SCM_PPL_SMOKE") == "1"
NUM_ROWS = 1_000 if SMOKE else 5_000  # observational rows per model
NUM_REFITS = 4 if SMOKE else 16
NUM_EPOCHS = 100 if SMOKE else 300
SIZES = [100, 1_000] if SMOKE else [50, 500, 5_000]  # contraction: rows per fit
NUM_SAMPLES, NUM_WARMUP = (300, 200) if SMOKE else (1000, 500)

HERE = Path(__file__).resolve().parent if "__file__" in globals() else Path.cwd()
OUTPUT = HERE / "output"
OUTPUT.mkdir(exist_ok=True)

# %% [markdown]
# ## 1. An overparameterised chain: a free scaling direction
#
# `models.hidden_mediator.chain_model` routes `x` to `y` through a hidden,
# noise-free mediator: `m = a x` (never observed), `y = b m + noise`. The data see
# only the product `a b`: `(a, b) -> (c a, b / c)` leaves the likelihood unchanged
# for every `c`, a one-dimensional family of equally good fits through every fit.

# %%
data = hm.sample(NUM_ROWS, seed=0)
chain = fit(
    hm.chain_model, data, num_epochs=200, batch_size=None, learning_rate=0.05, progress=False
)
report = local_identifiability(chain, data)
print(report)
print("eigenvalues:", np.array2string(report.eigenvalues, precision=3))
print("null space carried by:", {k: round(v, 3) for k, v in report.null_loadings().items()})
a, b = float(chain.params["a"]), float(chain.params["b"])
print(f"fitted a = {a:.3f}, b = {b:.3f}, a b = {a * b:.3f} (truth a b = {hm.AB})")

# %% [markdown]
# The spectrum has one eigenvalue at zero (to rounding): the null direction is
# `(a, -b)` in `(a, b)`, with no part on the noise scale. Does a query move along it?
# `sensitivity` projects the query's parameter gradient onto the null space.
# `intervened_mean` writes an interventional mean that is differentiable in the
# parameters (a fixed key: common random numbers).
#
# * `E[y | do(x = 1)] = a b`: its gradient `(b, a)` is orthogonal to `(a, -b)`:
#   identified.
# * `E[y | do(m = 1)] = b`: an intervention on the hidden mediator; its gradient
#   `(0, 1)` has a part `b / sqrt(a^2 + b^2)` along the null direction: not identified.
#   Different equally good fits disagree on it.

# %%
effect_of_x = report.sensitivity(lambda scm: intervened_mean(scm, {"x": 1.0}, "y"))
effect_of_m = report.sensitivity(lambda scm: intervened_mean(scm, {"m": 1.0}, "y"))
print(f"sensitivity of E[y | do(x=1)]: {effect_of_x:.2e}   (0: identified)")
print(
    f"sensitivity of E[y | do(m=1)]: {effect_of_m:.4f}   (closed form "
    f"{abs(b) / np.hypot(a, b):.4f})"
)

direct = fit(
    hm.direct_model, data, num_epochs=200, batch_size=None, learning_rate=0.05, progress=False
)
print("one-weight chain y = w x + noise:", local_identifiability(direct, data))

# %% [markdown]
# With a hidden mediator of dimension `k` written with full-rank mixing matrices
# (`m = A x`, `y = B m + noise`), every invertible `k x k` matrix `G` gives the same
# likelihood through `(G A, B G^{-1})`: the null space has the dimension of `GL(k)`,
# `k^2`.

# %%
mixing_data = hm.sample_mixing(NUM_ROWS, seed=1)
mixing = fit(
    hm.mixing_model,
    mixing_data,
    num_epochs=200,
    batch_size=None,
    learning_rate=0.05,
    progress=False,
)
mixing_report = local_identifiability(mixing, mixing_data)
print(mixing_report, "(predicted null dimension: 2^2 = 4)")

fig, axes = plt.subplots(1, 2, figsize=(11, 3.8))
plot_fisher_spectrum(report, ax=axes[0])
axes[0].set_title("hidden chain: y = b (a x) + noise", fontsize=10)
plot_fisher_spectrum(mixing_report, ax=axes[1])
axes[1].set_title("hidden mediator, 2-dim, mixing matrices A (2x3), B (3x2)", fontsize=10)
fig.tight_layout()
path = OUTPUT / "07_fisher_spectrum.png"
fig.savefig(path, dpi=120)
plt.close(fig)
print("saved", path.relative_to(HERE.parent))

# %% [markdown]
# ## 2. Refits: a latent confounder against a front door
#
# `models.confounded_linear.bow_model` has a latent `U` behind `X` and `Y` and
# learnable weights: `X = alpha U + noise`, `Y = beta X + gamma U + noise`. The
# observed covariance has 3 entries, the program 5 parameters: a 2-dimensional family
# of fits explains the data equally well, and the causal weight `beta` moves along it.
# The unit-level counterfactual "what would `Y` have been for the unit with
# `X = 1, Y = 0.5`, had `X` been 0" is `y + beta (x' - x)`: it spreads across the tied
# refits.
#
# `front_door_model` adds a mediator `M` on the path (`X -> M -> Y`, `U` confounding
# `X` and `Y` only). The same counterfactual is `y + c d (x' - x)`, and `c`, `d` are
# fixed by the data (the front-door criterion, unit by unit): it should not spread.
# `refit_ensemble` fits `NUM_REFITS` copies from jittered starting points as one
# `vmap`-ed program, and calls the fits within two paired standard errors (and at least
# 1e-3 nats) per held-out row of the best one *tied*.

# %%
key = jax.random.key(0)
bow = refit_ensemble(
    cl.bow_model,
    cl.sample_bow(NUM_ROWS, seed=0),
    NUM_REFITS,
    rng_key=key,
    latent="U",
    num_epochs=NUM_EPOCHS,
    learning_rate=0.05,
    init_scale=1.0,
)
door = refit_ensemble(
    cl.front_door_model,
    cl.sample_front_door(NUM_ROWS, seed=0),
    NUM_REFITS,
    rng_key=key,
    latent="U",
    num_epochs=NUM_EPOCHS,
    learning_rate=0.05,
    init_scale=1.0,
)
print(bow, f"{bow.seconds_per_epoch * 1e3:.1f} ms per epoch of all fits")
print(door)

x, y, x_prime = 1.0, 0.5, 0.0
spreads = {
    "bow: Y_x' of one unit": bow.spread(lambda s: cl.bow_counterfactual(s, x, y, x_prime)),
    "bow: beta": bow.spread(lambda s: s.params["beta"]),
    "front door: Y_x' of one unit": door.spread(
        lambda s: cl.front_door_counterfactual(s, x, y, x_prime)
    ),
}
for label, spread in spreads.items():
    print(f"{label:32s} {spread}")
truth = {
    "bow: Y_x' of one unit": y + lc.BETA * (x_prime - x),
    "front door: Y_x' of one unit": y + cl.C * cl.D * (x_prime - x),
}
bow_truth, door_truth = truth.values()
print(f"truth for the bow's data-generating SCM: {bow_truth:.3f}")
print(f"truth for the front door's SCM:           {door_truth:.3f}")

fig, ax = plt.subplots(figsize=(7, 2.8))
plot_refit_spread(spreads, ax=ax, truth=truth)
fig.tight_layout()
path = OUTPUT / "07_refit_spread.png"
fig.savefig(path, dpi=120)
plt.close(fig)
print("saved", path.relative_to(HERE.parent))

# %% [markdown]
# The bow's tied fits disagree on the unit's counterfactual by more than the whole
# effect; the front door's agree with each other and with the truth up to a small
# leftover spread, which is optimisation and importance-sampling error (it shrinks with
# more epochs and particles), not freedom in the model.
#
# `spread` also returns an `arviz.InferenceData` with a `refit` dim, to slice and plot
# with the usual tools:

# %%
print(spreads["bow: beta"].to_inference_data().predictions)

# %% [markdown]
# ## 3. Posterior contraction
#
# With priors on the weights the same question has a Bayesian form. Two hidden paths
# in parallel, `m1 = a x`, `m2 = b x`, `y = m1 + m2 + noise` with `a, b ~ N(0, 1)`:
# the data pin `a + b` down, not `a - b`. `contraction` fits the first `n` rows with
# NUTS for each `n` and reports the posterior sd of each query and the slope of
# `log sd` against `log n`: about `-1/2` for `a + b`, about `0` for `a - b` (whose
# posterior stays its prior `N(0, 2)`).

# %%
data = hm.sample(max(SIZES), seed=2)
options = {
    "sizes": SIZES,
    "rng_key": jax.random.key(1),
    "num_samples": NUM_SAMPLES,
    "num_warmup": NUM_WARMUP,
}
queries = {
    "a + b": lambda s: s.point["a"] + s.point["b"],
    "a - b": lambda s: s.point["a"] - s.point["b"],
}
curves = contraction(hm.parallel_model, data, queries, **options)
for label, curve in curves.items():
    print(f"{label}: {curve}")

fig, ax = plt.subplots(figsize=(5.5, 4.6))
plot_contraction(curves, ax=ax)
fig.tight_layout()
path = OUTPUT / "07_contraction.png"
fig.savefig(path, dpi=120)
plt.close(fig)
print("saved", path.relative_to(HERE.parent))

# %% [markdown]
# ## 4. Sharp bounds on the probability of necessity and sufficiency
#
# For discrete SCMs the question has an exact answer: every SCM on the graph is a
# distribution over response types, a counterfactual probability is linear in it, and
# its range over every SCM that reproduces the data is the interval between two linear
# programs.
#
# **The firing squad** (Pearl, *Causality* ch. 7 and 9): the captain signals on a court
# order, riflemen A and B fire, A also from nerves. PNS of A's shot for the death is
# `P(D_{A=1} = 1, D_{A=0} = 0)`, `1 - p = 0.3` under the program's mechanisms. From
# the exact observational joint of `(C, A, B, D)` and the graph alone:

# %%
joint = np.zeros((2, 2, 2, 2))
for u, w in itertools.product((0, 1), repeat=2):
    weight = (fs.P_ORDER if u else 1 - fs.P_ORDER) * (fs.Q_NERVOUS if w else 1 - fs.Q_NERVOUS)
    a_shoots = max(u, w)
    joint[u, a_shoots, u, max(a_shoots, u)] += weight  # C = U, A = C or W, B = C, D = A or B
observed = xr.DataArray(joint, dims=("C", "A", "B", "D"), coords={v: [0, 1] for v in "CABD"})
pns_query = [({"A": 1}, {"D": 1}), ({"A": 0}, {"D": 0})]
squad = bounds(fs.model, observed, pns_query)
print(
    f"firing squad PNS in [{squad.lower:.3f}, {squad.upper:.3f}], sharp={squad.sharp}; "
    f"the program's value {1 - fs.P_ORDER:.3f}"
)

# %% [markdown]
# The lower end is the program's own value, but the data allow up to 1: whenever B
# fires, so does A (both follow the captain), so nothing in the data says what the
# prisoner's fate would be with B firing and A not. That case is what "had A not
# fired" asks about.
#
# **A randomised trial next to observational data** (Tian & Pearl 2000). A binary
# treatment `X` and outcome `Y` share a latent cause; observational data alone leave
# PNS wide, and the trial's `P(Y | do(X))` narrows it. Exact tables of a confounded SCM
# (a latent `U` with `P(U = 1) = 0.5`):

# %%
p_x_given_u = np.array([0.2, 0.8])  # P(X = 1 | U = u)
p_y_given_xu = np.array([[0.1, 0.5], [0.6, 0.9]])  # P(Y = 1 | X = x, U = u)
obs = np.zeros((2, 2))
do_tables = {0: np.zeros(2), 1: np.zeros(2)}
for u, x_, y_ in itertools.product((0, 1), repeat=3):
    p_y = p_y_given_xu[x_, u] if y_ else 1 - p_y_given_xu[x_, u]
    p_x = p_x_given_u[u] if x_ else 1 - p_x_given_u[u]
    obs[x_, y_] += 0.5 * p_x * p_y
    do_tables[x_][y_] += 0.5 * p_y
confounded = ADMG(nx.DiGraph([("X", "Y")]), bidirected=[("X", "Y")])
observational = xr.DataArray(obs, dims=("X", "Y"), coords={"X": [0, 1], "Y": [0, 1]})
trial = [
    ({"X": x_}, xr.DataArray(do_tables[x_], dims=("Y",), coords={"Y": [0, 1]})) for x_ in (0, 1)
]
query = [({"X": 1}, {"Y": 1}), ({"X": 0}, {"Y": 0})]
alone = bounds(confounded, observational, query)
both = bounds(confounded, observational, query, interventional=trial)
p1, p0 = do_tables[1][1], do_tables[0][1]
print(f"observational only:        PNS in [{alone.lower:.3f}, {alone.upper:.3f}]")
print(f"observational + trial:     PNS in [{both.lower:.3f}, {both.upper:.3f}], sharp={both.sharp}")
print(f"trial alone (Tian-Pearl):  PNS in [{max(0.0, p1 - p0):.3f}, {min(p1, 1 - p0):.3f}]")

# %% [markdown]
# The trial and the observational data together give a tighter interval than either
# alone: the observational rows say how the treated and untreated differ in ways the
# trial cannot, and the LP uses both at once.
#
# ## Summary
#
# | question | tool | identified | not identified |
# |---|---|---|---|
# | free parameter directions? | `local_identifiability` | `E[y \| do(x)]` | `E[y \| do(m)]` |
# | do equally good fits agree? | `refit_ensemble(...).spread` | front door `Y_x'` | bow `Y_x'` |
# | does the posterior shrink? | `contraction` | `a + b` | `a - b` |
# | what range do the data allow? | `bounds` | | PNS (firing squad, trial) |
