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
# # 2. Counterfactuals: abduction, action, prediction
#
# A counterfactual asks about one unit that we have seen: *given* what happened to it,
# what *would* have happened under an intervention? `scm_ppl.counterfactual` answers in
# three steps:
#
# 1. **abduction**: the posterior over the unit's exogenous noise given the evidence;
# 2. **action**: `do` on the program;
# 3. **prediction**: the intervened program run on that same noise.
#
# The factual and the counterfactual world share the noise: that is what makes the
# answer about *this* unit rather than about the population.
#
# Set `SCM_PPL_SMOKE=1` for a quick run with few samples (used by the test suite).

# %%
import os
import time
import warnings
from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import arviz as az
import jax
import jax.numpy as jnp
import matplotlib.pyplot as plt
import numpy as np
import numpyro
import numpyro.distributions as dist
from numpyro import handlers

import scm_ppl
from models import firing_squad, latent_confounder, linear_gaussian_dag
from scm_ppl import counterfactual, pn, pns, ps
from scm_ppl.errors import CounterfactualNotIdentifiedWarning

SMOKE = os.environ.get("SCM_PPL_SMOKE") == "1"
NUM_UNITS = 1_000 if SMOKE else 10_000  # units for the exact counterfactuals
NUM_TIMED = 10_000 if SMOKE else 100_000  # units for the timed query
NUM_SAMPLES, NUM_WARMUP, NUM_CHAINS = (300, 200, 1) if SMOKE else (2000, 1000, 2)
NUM_DRAWS_DISCRETE = 20 if SMOKE else 1000  # draws of 1000 units for PN, PS, PNS

HERE = Path(__file__).resolve().parent if "__file__" in globals() else Path.cwd()
OUTPUT = HERE / "output"
OUTPUT.mkdir(exist_ok=True)


def sample_units(model, n, seed):
    """Factual data: one forward run of ``model`` with ``n`` units."""
    tr = handlers.trace(handlers.seed(model, seed)).get_trace(n=n)
    return {name: site["value"] for name, site in tr.items() if site["type"] == "sample"}


# %% [markdown]
# ## Exact counterfactuals: fully observed units
#
# `models.linear_gaussian_dag` is a 10-node linear-Gaussian DAG,
# `X_i = sum_j W[j, i] X_j + u_i`. When every variable of a unit is observed and every
# mechanism inverts (here `u_i = X_i - sum_j W[j, i] X_j`), abduction has no
# uncertainty: the noise is computed, not inferred. The query then is one vectorised,
# compiled pass over all units, and `result.attrs` says which method ran and why.

# %%
lgd = linear_gaussian_dag
data = sample_units(lgd.model, NUM_UNITS, seed=0)
result = counterfactual(
    lgd.model, data, {"X2": 1.0}, rng_key=jax.random.key(0), model_kwargs={"n": NUM_UNITS}
)
print("method:", result.attrs["method"], "--", result.attrs["method_reason"])
print("exact (one draw, no sampling error):", result.attrs["exact"])

pred = result.samples["predictions"]  # site -> (chain, draw, world, unit); world 1 is "cf"
factual = np.stack([np.asarray(data[site]) for site in lgd.NODES], axis=-1)
got = np.stack([np.asarray(pred[site][0, 0, 1]) for site in lgd.NODES], axis=-1)
truth = lgd.counterfactual_closed_form(factual, {2: 1.0})
print(
    f"{NUM_UNITS} units, do(X2 = 1): max |counterfactual - closed form| = "
    f"{np.abs(got - truth).max():.2e} (float32)"
)

# %% [markdown]
# The call above warns with `CounterfactualNotIdentifiedWarning`: the graph alone (ID*,
# Shpitser & Pearl 2008) cannot determine a counterfactual that needs `X3` at its factual
# value *and* under `do(X2 = 1)` for the same unit, so the answer rests on the mechanisms
# the program writes down (here linear with additive noise), not on the data alone.
# `result.attrs["counterfactual_identification"]` has the details, `strict=True` turns it
# into an error, and for discrete variables `scm_ppl.bounds` gives the range the data
# allow. Most counterfactuals with evidence on an outcome are in this case; having read
# it once, we silence it for the rest of the tutorial.

# %%
print(result.attrs["counterfactual_identification"]["identified"])
warnings.filterwarnings("ignore", category=CounterfactualNotIdentifiedWarning)

# %% [markdown]
# A shift keeps the unit's own noise at the intervened site too: "what if `X2` had been
# one higher?" In a linear SCM every unit's descendants then move by the *total effect*
# of `X2`, row 2 of `(I - W)^{-1}`, whatever the unit's noise.

# %%
shifted = counterfactual(
    lgd.model,
    data,
    {"X2": lambda x: x + 1.0},
    rng_key=jax.random.key(0),
    model_kwargs={"n": NUM_UNITS},
)
change = (
    np.stack([np.asarray(shifted.samples["predictions"][s][0, 0, 1]) for s in lgd.NODES], axis=-1)
    - factual
)
total_effect = np.linalg.inv(np.eye(lgd.NUM_NODES) - lgd.WEIGHTS)[2]
print("total effect of X2:", np.round(total_effect, 3))
print(f"max |change - total effect| over units: {np.abs(change - total_effect).max():.2e}")

# %% [markdown]
# ### A compiled query is cached
#
# The program is traced once per *structure* of the query (program, evidence and
# intervention shapes); values of the evidence and of the interventions are arguments of
# the compiled function. A repeated query with new data of the same shape costs one
# compiled call. `scm_ppl.query.engine.trace_count()` counts the compilations.


# %%
def timed_query(seed, value):
    data = sample_units(lgd.model, NUM_TIMED, seed=seed)
    start = time.perf_counter()
    result = counterfactual(
        lgd.model,
        data,
        {"X2": value},
        rng_key=jax.random.key(seed),
        model_kwargs={"n": NUM_TIMED},
    )
    jax.block_until_ready(result.samples)
    return time.perf_counter() - start, result


traces = scm_ppl.query.engine.trace_count()
first, _ = timed_query(seed=1, value=1.0)
traced_first = scm_ppl.query.engine.trace_count() - traces
second, _ = timed_query(seed=2, value=-0.5)  # new evidence, new intervention value
traced_second = scm_ppl.query.engine.trace_count() - traces - traced_first
print(f"{NUM_TIMED} units, first query:  {1e3 * first:8.1f} ms  (compilations: {traced_first})")
print(f"{NUM_TIMED} units, repeat query: {1e3 * second:8.1f} ms  (compilations: {traced_second})")

# %% [markdown]
# ## Latent confounding: abduction by NUTS
#
# `models.latent_confounder` has an unobserved root `U` feeding both `X` and `Y`:
#
#     U ~ N(0, 1),   X = 1.2 U + e_X,   Y = 0.8 X - 1.5 U + e_Y
#
# Observing `X` and `Y` of a unit does not determine `U`, so the noise must be inferred:
# `counterfactual` runs NUTS over the latent sites, then inverts the observed mechanisms
# per posterior draw. We ask, for five units: what would `Y` have been had `X` been 0?
#
# * Evidence on `X` only: `Y`'s own noise keeps its prior, and `U` is partly known
#   through `X`. The counterfactual is a spread-out distribution.
# * Evidence on `X` and `Y`: every posterior draw of `U` comes with the `e_Y` that
#   reproduces the observed `Y`, and the `U` terms cancel: `Y_{x'} = y + 0.8 (x' - x)`,
#   exactly, although `U` itself stays uncertain.
#
# The program's arguments (here the plate size `n`) go in `model_kwargs`.

# %%
lc = latent_confounder
x_obs = jnp.array([-1.0, -0.3, 0.4, 1.0, 2.0])
y_obs = jnp.array([-0.5, 0.9, 0.0, 1.5, -0.8])
x_cf = 0.0
settings = {
    "num_samples": NUM_SAMPLES,
    "num_warmup": NUM_WARMUP,
    "num_chains": NUM_CHAINS,
    "model_kwargs": {"n": len(x_obs)},
    # "auto" would take the per-unit closed form (this model is linear-Gaussian); NUTS is
    # what this section shows, as for a model without one.
    "method": "nuts",
}

given_x = counterfactual(lc.model, {"X": x_obs}, {"X": x_cf}, rng_key=jax.random.key(1), **settings)
given_xy = counterfactual(
    lc.model, {"X": x_obs, "Y": y_obs}, {"X": x_cf}, rng_key=jax.random.key(2), **settings
)
for label, res, truth in (
    ("X only", given_x, lc.counterfactual_y_given_x(x_obs, x_cf)),
    ("X and Y", given_xy, lc.counterfactual_y(x_obs, y_obs, x_cf)),
):
    y_cf = np.asarray(res.samples["predictions"]["Y"][:, :, 1]).reshape(-1, len(x_obs))
    print(
        f"evidence on {label}: method {res.attrs['method']!r} "
        f"({res.attrs['method_reason']}); max r_hat {res.attrs['max_r_hat']:.3f}, "
        f"min ESS {res.attrs['min_ess']:.0f}"
    )
    for i in range(len(x_obs)):
        print(
            f"  unit {i} (x = {float(x_obs[i]):+.1f}):  E[Y_cf] = {y_cf[:, i].mean():+.3f} "
            f"(truth {truth.mean[i]:+.3f})   Var[Y_cf] = {y_cf[:, i].var():.3f} "
            f"(truth {truth.var[i]:.3f})"
        )
u = np.asarray(given_xy.samples["posterior"]["U"]).reshape(-1, len(x_obs))
print(
    "posterior sd of U given X and Y:",
    np.round(u.std(0), 3),
    f"(truth {np.sqrt(lc.posterior_u(x_obs, y_obs).var[0]):.3f})",
)

# %% [markdown]
# ## Results are ArviZ `InferenceData`
#
# A result holds device arrays and becomes `arviz.InferenceData` on first use of a group.
# Every dim is named: `chain, draw, world, unit`. `predictions` holds every site in
# every world (`factual` first), `posterior` the latent sites and the abducted noise
# `noise.<site>`, `observed_data` the evidence.

# %%
print(given_x.predictions)
print("posterior:", list(given_x.posterior.data_vars))

# %%
y_cf = given_x.predictions["Y"].sel(world="cf")
print(az.summary(y_cf, kind="stats", round_to=3))
print(az.summary(given_x.to_inference_data(), var_names=["U"], kind="diagnostics"))

# %% [markdown]
# ### Factual vs counterfactual, one unit
#
# Unit 3 had `X = 1`. Given only that, its factual `Y` is uncertain (the posterior
# predictive, in grey) and so is its counterfactual `Y` under `do(X = 0)` (blue); the
# two are shifted by `0.8 * (0 - 1)`, with the same spread. Once its `Y` is observed
# too, the counterfactual collapses onto one point (red).

# %%
unit = 3
x_u, y_u = float(x_obs[unit]), float(y_obs[unit])
fig, ax = plt.subplots(figsize=(10, 4.2), layout="constrained")
grid = np.linspace(-4.5, 4.0, 400)
for world, color, name, truth in (
    ("factual", "0.5", rf"factual $Y \mid X={x_u:g}$", lc.counterfactual_y_given_x(x_u, x_u)),
    (
        "cf",
        "tab:blue",
        rf"counterfactual $Y_{{X=0}} \mid X={x_u:g}$",
        lc.counterfactual_y_given_x(x_u, x_cf),
    ),
):
    draws = given_x.predictions["Y"].sel(world=world, unit=unit).values.ravel()
    ax.hist(draws, bins=60, density=True, color=color, alpha=0.4, label=name + ": NUTS draws")
    density = np.exp(-((grid - truth.mean) ** 2) / (2 * truth.var)) / np.sqrt(2 * np.pi * truth.var)
    ax.plot(grid, density, color=color, lw=2, label=name + ": closed form")
exact_cf = float(given_xy.predictions["Y"].sel(world="cf", unit=unit).mean())
ax.axvline(y_u, color="0.2", ls=":", lw=2, label=f"observed $Y = {y_u:g}$")
ax.axvline(
    exact_cf,
    color="tab:red",
    lw=2.5,
    label=rf"counterfactual $Y_{{X=0}} \mid X={x_u:g}, Y={y_u:g}$" f" = {exact_cf:.2f}",
)
ax.set(xlabel="Y", ylabel="density", title=f"Unit {unit}: what would Y have been had X been 0?")
ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False)
path = OUTPUT / "02_counterfactual_posterior.png"
fig.savefig(path, dpi=120)
plt.close(fig)
print("saved", path.relative_to(HERE.parent))

# %% [markdown]
# ## Discrete mechanisms: probabilities of causation
#
# Pearl's firing squad (`models.firing_squad`): a court order `U` makes the captain
# signal (`C`), both riflemen `A` and `B` shoot on the signal, and `A` may also shoot
# from nerves (`W`); the prisoner dies (`D`) if either shoots. Did `A`'s shot cause the
# death?
#
# * `pn`, the probability of necessity: among deaths where `A` shot, how often would
#   the prisoner have lived had `A` not shot? `P(D_{A=0} = 0 | A = 1, D = 1)`;
# * `ps`, sufficiency: `P(D_{A=1} = 1 | A = 0, D = 0)`;
# * `pns`, both: `P(D_{A=1} = 1, D_{A=0} = 0)`.

# %%
fs = firing_squad
kwargs = {"num_samples": NUM_DRAWS_DISCRETE, "model_kwargs": {"n": 1000}}
truth = fs.probabilities_of_causation_closed_form()
for i, (query, exact) in enumerate(((pn, truth.pn), (ps, truth.ps), (pns, truth.pns))):
    estimate = query(fs.model, "A", "D", rng_key=jax.random.key(10 + i), **kwargs)
    print(
        f"{query.__name__.upper():<3} = {estimate.value:.4f} ± {estimate.std_error:.4f}  "
        f"(truth {exact:.4f}, from {estimate.num_effective} unit-draws)"
    )
print("couplings:", estimate.couplings)

# %% [markdown]
# ### Why the coupling matters
#
# `U` and `W` are Bernoulli sample sites. A discrete mechanism does not invert: its
# value only says that the noise lies in a set (for the inverse-CDF view of a Bernoulli
# with `P(1) = p`: `u in (1 - p, 1)` if the value is 1). Which noise a unit shares
# between worlds is then an assumption, the *coupling*. `estimate.couplings` names the
# couplings an answer rests on: those of discrete mechanisms downstream of the
# intervention. In the firing squad everything downstream of `A` is deterministic and
# `U`, `W` simply replay their factual values, so the answer assumes none (`{}` above).
# It is not so when the outcome itself is a noisy discrete mechanism:
#
#     T ~ Bernoulli(0.5),   Y ~ Bernoulli(0.8 if T else 0.3)
#
# Read with the monotone inverse-CDF coupling, one uniform `u` decides `Y` in both
# worlds (`Y_t = 1[u > 1 - p_t]`), so a unit that recovers untreated also recovers
# treated. Another SCM, with separate noise for each arm, has exactly the same
# observational *and* interventional distributions (hence the same ATE) and different
# counterfactuals. The data allow any PNS in `[max(0, p1 - p0), min(p1, 1 - p0)]`.


# %%
def drug(n=1):
    with numpyro.plate("unit", n):
        t = numpyro.sample("T", dist.Bernoulli(0.5))
        numpyro.sample("Y", dist.Bernoulli(jnp.where(t == 1, 0.8, 0.3)))


def drug_independent_arms(n=1):
    with numpyro.plate("unit", n):
        t = numpyro.sample("T", dist.Bernoulli(0.5))
        u1 = numpyro.sample("u1", dist.Uniform(0.0, 1.0))  # noise used if treated
        u0 = numpyro.sample("u0", dist.Uniform(0.0, 1.0))  # noise used if not
        numpyro.deterministic("Y", jnp.where(t == 1, u1 < 0.8, u0 < 0.3).astype(jnp.float32))


p1, p0 = 0.8, 0.3
for model, truth in ((drug, p1 - p0), (drug_independent_arms, p1 * (1 - p0))):
    ate = scm_ppl.ate(model, "T", "Y", rng_key=jax.random.key(20), **kwargs)
    estimate = pns(model, "T", "Y", rng_key=jax.random.key(21), **kwargs)
    print(
        f"{model.__name__}:\n  ATE = {ate.value:.3f} (truth {p1 - p0:.3f})   "
        f"PNS = {estimate.value:.3f} (truth {truth:.3f})\n  couplings: {estimate.couplings}"
    )
print(f"bounds on PNS from the distributions alone: [{max(0, p1 - p0):.2f}, {min(p1, 1 - p0):.2f}]")

# %% [markdown]
# The monotone coupling gives the lower end of that interval: it assumes nobody who
# would recover untreated is harmed by treatment. That is a modelling choice, not a
# fact read from data, and the result says it was made.
