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
# # 1. Structural causal models as NumPyro programs
#
# `scm_ppl` reads an ordinary NumPyro program as a structural causal model (SCM):
#
# * a **sample site** is a mechanism with its own exogenous noise, `x = f(u; parents)`;
# * a **deterministic site** is a noise-free mechanism;
# * a **root sample site** (no parents) is exogenous noise; one shared by several
#   sites is a latent confounder.
#
# This tutorial writes an SCM, reads and draws its causal graph, intervenes on it in the
# three ways `do` knows (hard, shift, stochastic, optionally for some units only), and
# estimates an average treatment effect where the naive comparison gets the sign wrong.
#
# Every number is printed next to its closed-form truth. Set `SCM_PPL_SMOKE=1` for a
# quick run with few samples (used by the test suite).

# %%
import os
from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import jax
import jax.numpy as jnp
import matplotlib.pyplot as plt
import numpy as np
import numpyro
import numpyro.distributions as dist
from numpyro import handlers

import scm_ppl
from models import kidney_stones
from scm_ppl import ate, do, interventional
from scm_ppl.errors import InterventionError

SMOKE = os.environ.get("SCM_PPL_SMOKE") == "1"
NUM_SAMPLES = 200 if SMOKE else 4000  # draws of the whole population per query
NUM_UNITS = 100  # units (the "unit" plate) per draw

HERE = Path(__file__).resolve().parent if "__file__" in globals() else Path.cwd()
OUTPUT = HERE / "output"
OUTPUT.mkdir(exist_ok=True)

# %% [markdown]
# ## An SCM is a NumPyro program
#
# The example of the design notes: a root `z`, a noisy mechanism `x`, a noise-free
# mechanism `y`, and a noisy mechanism `w` that reads both `x` and `y`. All sites sit in
# a `"unit"` plate: each unit is one individual with its own noise.

# %%
SCALE_X, SCALE_W = 0.5, 0.3


def model(n=1):
    with numpyro.plate("unit", n):
        z = numpyro.sample("z", dist.Normal(0.0, 1.0))
        x = numpyro.sample("x", dist.Normal(jnp.tanh(z), SCALE_X))
        y = numpyro.deterministic("y", 2.0 * x + z)  # noise-free mechanism
        numpyro.sample("w", dist.Normal(y - x, SCALE_W))


# %% [markdown]
# ## Its causal graph
#
# `scm_ppl.graph` reads the graph off the program (NumPyro's provenance tracking, one
# abstract run: no array work). Nodes carry their role: `kind` is `sample` (a mechanism
# with its own noise) or `deterministic` (noise-free); `role` is `exogenous` for a
# sample site without parents, else `endogenous`. `z` feeds two sites, so it is listed
# as a latent confounder.

# %%
g = scm_ppl.graph(model, NUM_UNITS)
for name, data in g.nodes(data=True):
    print(f"{name}: kind={data['kind']:<13} role={data['role']:<10} shape={data['shape']}")
print("edges:", sorted(g.edges))
print("latent confounders:", g.graph["latent_confounders"])

# %% [markdown]
# The graph of an intervened program is read the same way. A hard intervention cuts the
# incoming edges of the site; a shift intervention keeps them (the value still depends
# on the parents and on the unit's own noise).

# %%
g_hard = scm_ppl.graph(do(model, {"x": 1.0}), NUM_UNITS)
g_shift = scm_ppl.graph(do(model, {"x": lambda x: x + 1.0}), NUM_UNITS)
print("do(x = 1) edges:      ", sorted(g_hard.edges))
print("do(x := x + 1) edges: ", sorted(g_shift.edges))

fig, axes = plt.subplots(1, 3, figsize=(13, 5.5), layout="constrained")
for ax, graph_, title in zip(
    axes,
    (g, g_hard, g_shift),
    ("the SCM", "do(x = 1): hard", "do(x := x + 1): shift"),
    strict=True,
):
    scm_ppl.plotting.plot_graph(graph_, ax=ax, title=title)
path = OUTPUT / "01_graph.png"
fig.savefig(path, dpi=120)
plt.close(fig)
print("saved", path.relative_to(HERE.parent))

# %% [markdown]
# ## Closed-form truths
#
# With `e_x, e_w` standard normal, `x = tanh(z) + 0.5 e_x`, `y = 2x + z` and
# `w = y - x + 0.3 e_w = x + z + 0.3 e_w`. Moments of `y` and `w` need only
# `E[tanh(z)^2]` and `E[z tanh(z)]`, which Gauss–Hermite quadrature gives to machine
# precision. (Stein's lemma, `E[z tanh z] = 1 - E[tanh(z)^2]`, makes `Var(y) = 6`.)

# %%
nodes, weights = np.polynomial.hermite_e.hermegauss(80)
weights = weights / weights.sum()  # expectations under N(0, 1)
E_TANH2 = float(weights @ np.tanh(nodes) ** 2)
E_ZTANH = float(weights @ (nodes * np.tanh(nodes)))
VAR_X = E_TANH2 + SCALE_X**2
VAR_Y = 4 * VAR_X + 4 * E_ZTANH + 1  # Var(2x + z)
VAR_W = VAR_X + 2 * E_ZTANH + 1 + SCALE_W**2  # Var(x + z + 0.3 e_w)

# %% [markdown]
# ## Interventions with `do`
#
# `do(model, {site: value})` returns a new NumPyro program. A value is
#
# * an array or scalar: a **hard** intervention, `x := 1`;
# * a callable of the value the mechanism would have produced: a **shift**,
#   `x := x + 1`, which keeps each unit's noise;
# * a distribution: a **stochastic** intervention, a new mechanism with fresh noise.
#
# Deterministic sites can be intervened on too (NumPyro's own `do` ignores them).
# `do` is a NumPyro handler, so it composes with `seed`, `trace`, `Predictive`, ...

# %%
tr = handlers.trace(handlers.seed(do(model, {"x": lambda x: x + 1.0}), 0)).get_trace(n=3)
print("x.natural (what x would have been):", tr["x.natural"]["value"])
print("x         (after the shift)       :", tr["x"]["value"])

# %% [markdown]
# `interventional` samples the intervened program. Give it `{label: {site: value}}` and
# it runs several interventions side by side; the results share one array with an
# `intervention` dim (`{}` is the unintervened program).

# %%
interventions = {
    "none": {},
    "hard": {"x": 1.0},
    "shift": {"x": lambda x: x + 1.0},
    "stochastic": {"x": dist.Normal(0.0, 2.0)},
    "do_y": {"y": 0.0},
}
truths = {  # (E[y], Var[y], E[w], Var[w])
    "none": (0.0, VAR_Y, 0.0, VAR_W),
    "hard": (2.0, 1.0, 1.0, 1.0 + SCALE_W**2),  # y = 2 + z, w = 1 + z + 0.3 e_w
    "shift": (2.0, VAR_Y, 1.0, VAR_W),  # everything moves by a constant
    "stochastic": (0.0, 4 * 4.0 + 1, 0.0, 4.0 + 1 + SCALE_W**2),  # x ~ N(0, 2), indep. of z
    "do_y": (0.0, 0.0, 0.0, VAR_X + SCALE_W**2),  # w = -x + 0.3 e_w
}
result = interventional(
    model,
    interventions,
    rng_key=jax.random.key(0),
    num_samples=NUM_SAMPLES,
    model_kwargs={"n": NUM_UNITS},
)
pred = result.samples["predictions"]  # site -> (chain, draw, intervention, unit)
print(f"{'':<11} {'E[y]':>15} {'Var[y]':>15} {'E[w]':>15} {'Var[w]':>15}   (truth)")
for i, label in enumerate(interventions):
    y, w = np.asarray(pred["y"][:, :, i]), np.asarray(pred["w"][:, :, i])
    got = (y.mean(), y.var(), w.mean(), w.var())
    print(
        f"{label:<11}",
        " ".join(f"{a:6.3f} ({t:6.3f})" for a, t in zip(got, truths[label], strict=True)),
    )

# %% [markdown]
# The hard and the shift interventions move `E[y]` by the same amount, but only the
# hard one removes the spread that `x` inherited from `z` and its own noise. The
# stochastic one replaces the mechanism: `x` no longer depends on `z`.
#
# ## Intervening on some units only
#
# `mask={site: boolean array}` applies the intervention where the mask is true; the
# other units keep their natural value. Here the first half of the units is treated.

# %%
treated = jnp.arange(NUM_UNITS) < NUM_UNITS // 2
masked = interventional(
    model,
    {"x": 1.0},
    mask={"x": treated},
    rng_key=jax.random.key(1),
    num_samples=NUM_SAMPLES,
    model_kwargs={"n": NUM_UNITS},
)
x = np.asarray(masked.samples["predictions"]["x"][:, :, 0])
y = np.asarray(masked.samples["predictions"]["y"][:, :, 0])
print(f"treated units:   x == 1 everywhere: {bool(np.all(x[..., treated] == 1.0))}")
print(f"                 E[y] = {y[..., treated].mean():.3f} (truth 2)")
print(f"untreated units: E[x] = {x[..., ~treated].mean():.3f} (truth 0)")
print(f"                 Var[y] = {y[..., ~treated].var():.3f} (truth {VAR_Y:.3f})")

# %% [markdown]
# Misspelt sites are caught before anything runs, with the valid names listed:

# %%
try:
    interventional(model, {"q": 1.0}, rng_key=jax.random.key(0), num_samples=1)
except InterventionError as err:
    print("InterventionError:", err)

# %% [markdown]
# ## Average treatment effect and Simpson's paradox
#
# `models.kidney_stones` encodes the 1986 kidney-stone study: treatment `X` (1 = open
# surgery A, 0 = PCNL B), recovery `Y`, and stone size `Z`, which drives both the
# choice of treatment (large stones get surgery) and recovery (large stones recover
# less often).
#
# Comparing recovery rates of the treated and the untreated mixes the effect of the
# treatment with the effect of stone size: B looks better. `ate` asks the causal
# question, `E[Y | do(X=1)] - E[Y | do(X=0)]`, by intervening: A is better.

# %%
n_patients = kidney_stones.TOTAL
observed = interventional(
    kidney_stones.model,
    {},
    rng_key=jax.random.key(2),
    num_samples=NUM_SAMPLES,
    model_kwargs={"n": n_patients},
)
xs = np.asarray(observed.samples["predictions"]["X"]).ravel()
ys = np.asarray(observed.samples["predictions"]["Y"]).ravel()
naive = ys[xs == 1].mean() - ys[xs == 0].mean()
effect = ate(
    kidney_stones.model,
    "X",
    "Y",
    rng_key=jax.random.key(3),
    num_samples=NUM_SAMPLES,
    model_kwargs={"n": n_patients},
)
print(
    f"naive P(Y|X=1) - P(Y|X=0):   {naive:+.4f}   "
    f"(truth {kidney_stones.naive_difference():+.4f} = -16/350)"
)
print(
    f"ATE P(Y|do(X=1)) - P(Y|do(X=0)): {effect.value:+.4f} ± {effect.std_error:.4f}   "
    f"(truth {kidney_stones.ate_adjusted():+.4f}, back-door adjustment for Z)"
)
print("couplings assumed:", effect.couplings or "none (an interventional quantity)")

# %% [markdown]
# The ATE is an interventional (rung-two) quantity: it needs no assumption about how
# noise is shared between worlds. Counterfactuals, which do, are the subject of the
# next tutorial.
