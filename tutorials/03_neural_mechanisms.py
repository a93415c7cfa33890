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
# # 3. Neural mechanisms: learning an SCM from data
#
# So far the mechanisms were written by hand. Here they are *learned*: each mechanism
# is a small neural network (Equinox MLPs) or a normalizing flow (FlowJAX) declared
# inside an ordinary NumPyro program, and `scm_ppl.fit` learns them from 10k
# observational rows. We then ask the learned SCM interventional and counterfactual
# questions and grade its answers against the ground truth, which we know because the
# data come from `models.nonlinear`:
#
#     x1 = u1
#     x2 = tanh(1.5 x1) + 0.3 u2                      additive noise
#     x3 = sin(x1) + (0.2 + 0.3 |x2|) u3              heteroscedastic
#     x4 = 0.8 x2 - 0.5 x3^2 + 0.3 u4                 additive noise
#     x5 = 0.6 x4 + 0.4 exp(0.3 x3) (exp(0.5 u5) - e^{1/8})   skewed, multiplicative
#
# Set `SCM_PPL_SMOKE=1` for a quick run (fewer rows and epochs; used by the test suite).

# %%
import inspect
import os
import time
from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import jax
import jax.numpy as jnp
import matplotlib.pyplot as plt
import numpy as np
import optax
from numpyro.infer.util import log_density

import scm_ppl
from models import nonlinear as nl
from scm_ppl import counterfactual, fit, interventional

SMOKE = os.environ.get("SCM_PPL_SMOKE") == "1"
NUM_ROWS = 2_000 if SMOKE else 10_000  # observational rows to learn from
NUM_EPOCHS = 20 if SMOKE else 150
BATCH_SIZE = 512
NUM_HELD_OUT = 1_000  # held-out units for the counterfactual errors
NUM_TIMED = NUM_HELD_OUT if SMOKE else 100_000  # units of the timed counterfactual
NUM_MC = 100_000 if SMOKE else 1_000_000  # Monte-Carlo draws of the true means
NUM_QUERIES = 1 if SMOKE else 3  # interventions asked of the learned SCM, of each kind

HERE = Path(__file__).resolve().parent if "__file__" in globals() else Path.cwd()
OUTPUT = HERE / "output"
OUTPUT.mkdir(exist_ok=True)

# %% [markdown]
# ## The learnable program
#
# `models.nonlinear.learnable_model` has the true graph but no true mechanism: a learned
# Normal root, `additive_noise` MLPs for `x2` and `x4`, a `location_scale` MLP (mean and
# scale both functions of the parents) for `x3`, and a conditional spline `flow` for
# `x5`, whose noise is neither additive nor Gaussian. Each is a sample site whose
# distribution inverts in its noise, which is what makes counterfactuals exact later.

# %%
print(inspect.getsource(nl.learnable_model).split('"""')[-1])

# %% [markdown]
# ## Learning the mechanisms
#
# `fit` takes `{site: column}` with one row per unit, runs the program on minibatches
# of rows (its `numpyro.plate("unit", n)` sized to the batch), and maximises the
# likelihood with Adam. A tenth of the rows is held out for a validation loss per
# epoch; the parameters of the best validation epoch are returned. A cosine-decayed
# learning rate lets a short fit settle.

# %%
data = nl.sample(NUM_ROWS, seed=0)
steps_per_epoch = -(-round(0.9 * NUM_ROWS) // BATCH_SIZE)
schedule = optax.cosine_decay_schedule(0.01, NUM_EPOCHS * steps_per_epoch, alpha=0.05)
settings = {
    "batch_size": BATCH_SIZE,
    "optimizer": optax.adam(schedule),
    "progress": False,
    "rng_key": jax.random.key(0),
}
start = time.perf_counter()
fit(nl.learnable_model, data, num_epochs=1, **settings)  # compiles the epoch (cached)
compile_s = time.perf_counter() - start
fitted = fit(nl.learnable_model, data, num_epochs=NUM_EPOCHS, **settings)
print(fitted)
print(
    f"compile: {compile_s:.1f} s; training: {fitted.history.seconds:.1f} s, "
    f"{1e3 * fitted.history.seconds / NUM_EPOCHS:.0f} ms per epoch at {NUM_ROWS} rows "
    f"(batch {BATCH_SIZE})"
)

# %% [markdown]
# The learning curve: negative log-likelihood per row. The dashed line is what the
# true mechanisms score on 10k fresh rows (about 2.15): a fit that reaches it has learned
# all there is to learn from the observational distribution. (The validation split is
# 1000 rows, so its loss is itself uncertain by about 0.05.)

# %%
fresh = {k: jnp.asarray(v, jnp.float32) for k, v in nl.sample(10_000, seed=9).items()}
true_nll = -float(log_density(nl.model, (), {"n": 10_000}, fresh)[0]) / 10_000
fig, ax = plt.subplots(figsize=(5.5, 3.4), layout="constrained")
scm_ppl.plotting.plot_learning_curve(fitted, ax=ax)
ax.axhline(true_nll, color="grey", linestyle="--", linewidth=1, label="true mechanisms")
ax.legend(frameon=False)
ax.set_title(f"Learning the nonlinear SCM from {NUM_ROWS} rows")
ax.set_ylim(top=float(np.quantile(fitted.losses, 0.98)) + 0.1)
fig.savefig(OUTPUT / "03_learning_curve.png", dpi=120)
plt.close(fig)
print(
    f"best epoch {fitted.history.best_epoch}: validation NLL "
    f"{fitted.validation_losses.min():.3f} per row (true mechanisms: {true_nll:.3f})"
)

# %% [markdown]
# ## Interventional means: learned against true
#
# `interventional` runs the learned program under `do`. The truth is a Monte-Carlo mean
# on the true mechanisms. `do(x1 = -1)` and `do(x3 = -0.5)` send every mechanism
# inputs of the kind it saw in the data. `do(x2 = 0.5)` does not: in the data `x2`
# tracks `tanh(1.5 x1)`, so `x3`'s mechanism has rarely seen `x1 = -1.5` with
# `x2 = 0.5` and must *extrapolate*. Errors there are larger, and no amount of
# observational data fixes that.

# %%
queries = {
    "do_x1_m1": {"x1": -1.0},
    "do_x3_m05": {"x3": -0.5},
    "do_x2_05": {"x2": 0.5},
}
queries = dict(list(queries.items())[:NUM_QUERIES])
num_draws, num_units = (5, 2_000) if SMOKE else (20, 10_000)
learned = interventional(
    fitted, queries, rng_key=jax.random.key(1), num_samples=num_draws, model_kwargs={"n": num_units}
)
print(f"{'query':<12} {'site':<5} {'learned':>8} {'truth':>8} {'error':>7} {'MC se':>7}")
for i, (label, ivs) in enumerate(queries.items()):
    (target,) = ivs
    for site in nl.NODES[nl.NODES.index(target) + 1 :]:
        draws = np.asarray(learned.samples["predictions"][site][:, :, i]).ravel()
        truth = nl.interventional_mean(site, ivs, n_mc=NUM_MC, seed=2)
        se = np.hypot(draws.std() / np.sqrt(draws.size), truth.se)
        print(
            f"{label:<12} {site:<5} {draws.mean():+8.3f} {truth.mean:+8.3f} "
            f"{draws.mean() - truth.mean:+7.3f} {se:7.4f}"
        )

# %% [markdown]
# ## Counterfactuals for held-out units
#
# For units the fit never saw, fully observed, we ask: what would `x2..x5` have been had
# `x2` been 0.3 higher (a per-unit value), or had `x3` been 0? Every learned mechanism
# inverts, so `counterfactual` picks exact abduction by itself and answers in one pass.
# The truth inverts the true mechanisms unit by unit.
#
# What bounds the error? For an additive node `x = f(pa) + σu` the unit's noise cancels:
# the counterfactual error is the error of the learned *change* `f(pa') - f(pa)`, a few
# hundredths where the data are dense, while the noise itself has sd 0.3. The last
# column shows how far the counterfactual moves each node: the error is a small part
# of it.

# %%
held_out = nl.sample(NUM_HELD_OUT, seed=1)
evidence = {k: jnp.asarray(v, jnp.float32) for k, v in held_out.items()}
cf_queries = {
    "do(x2 := x2 + 0.3)": {"x2": held_out["x2"] + 0.3},
    "do(x3 := 0)": {"x3": np.zeros(NUM_HELD_OUT)},
    "do(x2 := 0.5)": {"x2": np.full(NUM_HELD_OUT, 0.5)},
}
cf_queries = dict(list(cf_queries.items())[:NUM_QUERIES])
print(f"{'query':<20} {'site':<5} {'MAE':>7} {'mean |change|':>14}")
for label, ivs in cf_queries.items():
    result = counterfactual(
        fitted,
        evidence,
        {k: jnp.asarray(v, jnp.float32) for k, v in ivs.items()},
        rng_key=jax.random.key(3),
        model_kwargs={"n": NUM_HELD_OUT},
    )
    truth = nl.counterfactual_truth(held_out, ivs)
    (target,) = ivs
    for site in nl.NODES[nl.NODES.index(target) + 1 :]:
        got = np.asarray(result.samples["predictions"][site][0, 0, 1])
        mae = np.mean(np.abs(got - truth[site]))
        change = np.mean(np.abs(truth[site] - held_out[site]))
        print(f"{label:<20} {site:<5} {mae:7.3f} {change:14.3f}")
    print(f"{'':<20} method: {result.method} ({result.attrs['method_reason']})")

# %% [markdown]
# ## Speed: a counterfactual for 100k units
#
# The query compiles once per structure (program, shapes of evidence and intervention);
# a repeat with new evidence of the same shape is one compiled pass over all units.

# %%
timings = []
for seed in (5, 6):
    big = {k: jnp.asarray(v, jnp.float32) for k, v in nl.sample(NUM_TIMED, seed=seed).items()}
    start = time.perf_counter()
    result = counterfactual(
        fitted,
        big,
        {"x2": big["x2"] + 0.3},
        rng_key=jax.random.key(seed),
        model_kwargs={"n": NUM_TIMED},
    )
    jax.block_until_ready(result.samples["predictions"]["x5"])
    timings.append(time.perf_counter() - start)
print(
    f"{NUM_TIMED} units: first query {timings[0]:.2f} s (with compilation), "
    f"repeat {timings[1]:.2f} s"
)

# %% [markdown]
# ## Saving the learned SCM
#
# `fitted.save(path)` writes parameters as `.npy` members and metadata as JSON (no
# pickle); `FittedSCM.load(path, program)` gives the same answers to the bit.

# %%
import tempfile

with tempfile.TemporaryDirectory() as tmp:
    path = Path(tmp) / "nonlinear_scm.npz"
    fitted.save(path)
    loaded = scm_ppl.FittedSCM.load(path, nl.learnable_model)
    again = [
        counterfactual(
            model,
            evidence,
            {"x2": evidence["x2"] + 0.3},
            rng_key=jax.random.key(4),
            model_kwargs={"n": NUM_HELD_OUT},
        ).samples["predictions"]["x5"]
        for model in (fitted, loaded)
    ]
print(
    "identical after save/load:", bool(np.array_equal(np.asarray(again[0]), np.asarray(again[1])))
)
