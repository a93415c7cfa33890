"""Run one workload on one system in this interpreter and print its timings as JSON.

    python -m benchmarks.worker SYSTEM WORKLOAD SIZE REPEATS ANSWERS.npz

SYSTEM is ``scm_ppl``, ``floor`` (both need the scm_ppl environment), ``chirho`` or
``dowhy``, optionally with a variant in brackets: ``scm_ppl[rbg]`` (a JAX PRNG
implementation for W3; ``[fast]``: scm_ppl's unrolled Threefry, ``fast_key``),
``chirho[jit]`` (Pyro's ``jit_compile=True`` for W2),
``scm_ppl[loop]``/``scm_ppl[fit_loop]`` (W6's loops), ``scm_ppl[icm]`` (W7 with the
ICM penalty). The answers go to ANSWERS.npz so that the driver can check them against
the closed forms with one function for every system (ESS included).
"""

from __future__ import annotations

import json
import sys
import time
from typing import Any

import numpy as np

from benchmarks.common import (
    Timing,
    load,
    peak_rss_mb,
    time_call,
)

W2_WARMUP, W2_DRAWS = 500, 1000
CHECK_UNITS = 1000  # units whose answers travel back for checking


def _split(system: str) -> tuple[str, str]:
    if "[" in system:
        base, variant = system.rstrip("]").split("[", 1)
        return base, variant
    return system, ""


# ------------------------------------------------------------------------ JAX systems
def _jax_key(variant: str) -> Any:
    import jax

    if variant == "fast":  # scm_ppl's unrolled Threefry: the default key's numbers
        from scm_ppl.core.prng import THREEFRY_UNROLLED

        return jax.random.key(0, impl=THREEFRY_UNROLLED)
    return jax.random.key(0, impl=variant or None)


def run_jax(system: str, workload: str, size: int, repeats: int) -> tuple[Timing, dict, dict]:
    import jax
    import jax.numpy as jnp

    from benchmarks import floor
    from benchmarks import sys_scm_ppl as S

    if workload == "w6_refits":
        from benchmarks import w6_refits

        return w6_refits.run(system, size, repeats)
    if workload.startswith("w7_icm"):
        from benchmarks import w7_icm_epochs

        return w7_icm_epochs.run(system, workload, size, repeats)
    base, variant = _split(system)
    answers: dict[str, np.ndarray] = {}
    extra: dict[str, Any] = {}
    key = _jax_key(variant)
    if workload == "w1":
        d = load(f"w1_{size}")
        evidence = S.columns(d["x"])
        if base == "scm_ppl":
            timing = time_call(lambda: S.w1(evidence, key), repeats)
            answers["cf"] = S.w1_values(S.w1(evidence, key))[:CHECK_UNITS]
        else:
            cf = floor.make_w1(d["weights"])
            cols = tuple(evidence[k] for k in sorted(evidence, key=lambda s: int(s[1:])))
            timing = time_call(lambda: jax.block_until_ready(cf(cols)), repeats)
            answers["cf"] = np.stack([np.asarray(c) for c in cf(cols)], -1)[:CHECK_UNITS]
    elif workload == "w2":
        d = load("w2")
        x, x_prime = jnp.asarray(d["x"], jnp.float32), jnp.asarray(d["x_prime"], jnp.float32)
        keys = iter(jax.random.split(jax.random.key(2), repeats + 2))
        if base == "scm_ppl":

            def call():
                answers["y"], answers["y_cf"] = S.w2_values(
                    S.w2(x, x_prime, next(keys), W2_WARMUP, W2_DRAWS)
                )

        else:
            run = floor.make_w2(d["consts"], W2_WARMUP, W2_DRAWS)

            def call():
                y, y_cf = jax.block_until_ready(run(next(keys), x, x_prime))
                answers["y"], answers["y_cf"] = np.asarray(y), np.asarray(y_cf)

        timing = time_call(call, repeats)
    elif workload.startswith("w3"):
        kind = workload.split("_", 1)[1]
        d = load("lg")
        if base == "scm_ppl":
            model, intervention = S.W3_MODELS[kind]
            result = S.w3(model, intervention, size, key)
            timing = time_call(lambda: S.w3(model, intervention, size, key), repeats)
            preds = result.samples["predictions"]
            draws = np.stack([np.asarray(v).reshape(-1) for v in preds.values()], -1)
        else:
            draw = (
                floor.make_w3_linear(d["weights"], d["noise_scales"], size)
                if kind == "linear"
                else floor.make_w3_nonlinear(size)
            )
            timing = time_call(lambda: jax.block_until_ready(draw(key)), repeats)
            draws = np.stack([np.asarray(c) for c in draw(key)], -1)
        answers["mean"], answers["cov"] = draws.mean(0), np.cov(draws.T)
    elif workload == "rng":
        # The generator alone: size standard normals (float32), per PRNG implementation.
        normal = jax.jit(lambda k: jax.random.normal(k, (size,)))
        timing = time_call(lambda: jax.block_until_ready(normal(key)), repeats)
    elif workload == "w4":
        d = load("w4")
        train = {k[6:]: v for k, v in d.items() if k.startswith("train_")}
        held = {k[5:]: v for k, v in d.items() if k.startswith("held_")}
        optimizer = S.w4_optimizer(len(train["x1"]), size)
        start = time.perf_counter()
        S.w4_fit(train, 1, jax.random.key(0), optimizer)  # compiles the epoch (cached)
        compile_s = time.perf_counter() - start
        fits: list[Any] = []
        fit = lambda: fits.append(S.w4_fit(train, size, jax.random.key(0), optimizer))
        timing = time_call(fit, 0)
        timing = Timing(compile_s, [timing.first_s])
        fitted = fits[-1]
        answers["cf"] = S.w4_counterfactual(fitted, held)
        answers["validation_losses"] = np.asarray(fitted.history.validation_losses)
        extra["epochs"] = size
        extra["best_validation_nll"] = float(np.min(fitted.history.validation_losses))
    elif workload in ("w5a", "w5b"):
        timing, answers = run_w5(system, workload, repeats)
    else:
        raise SystemExit(f"unknown workload {workload!r}")
    return timing, answers, extra


def run_w5(system: str, workload: str, repeats: int) -> tuple[Timing, dict]:
    """W5 on the JAX systems: scm_ppl in one call (``sweep`` for (a), ``dose_response``
    for (b)), the floor as a hand-written jitted function."""
    import jax
    import jax.numpy as jnp

    from benchmarks import floor
    from benchmarks import sys_scm_ppl as S

    base, _ = _split(system)
    d = load("w5")
    evidence = S.columns(d["x"])
    values = d["values"]
    keep_all = workload == "w5a"
    if base == "scm_ppl":
        key = jax.random.key(0)
        timing = time_call(
            lambda: S.w5_batched(evidence, values, key, keep_all, stack=False), repeats
        )
        out = S.w5_batched(evidence, values, key, keep_all)
    else:
        all_samples, dose_response = floor.make_w5(d["weights"])
        cols = tuple(evidence[f"X{i}"] for i in range(10))
        vals = jnp.asarray(values, jnp.float32)
        fn = all_samples if keep_all else dose_response
        timing = time_call(lambda: jax.block_until_ready(fn(cols, vals)), repeats)
        out = np.asarray(fn(cols, vals))
    return timing, {"dose_response": out[..., -1].mean(-1) if keep_all else out}


# --------------------------------------------------------------------------- ChiRho
def run_chirho(system: str, workload: str, size: int, repeats: int) -> tuple[Timing, dict, dict]:
    import torch

    from benchmarks import sys_chirho as C

    _, variant = _split(system)
    answers: dict[str, np.ndarray] = {}
    extra: dict[str, Any] = {"torch_threads": torch.get_num_threads()}
    if workload == "w1":
        d = load(f"w1_{size}")
        observed = {f"X{i}": torch.tensor(d["x"][:, i], dtype=torch.float32) for i in range(10)}
        cf = C.make_w1(d["weights"], d["noise_scales"])
        timing = time_call(lambda: cf(observed), repeats)
        answers["cf"] = torch.stack(cf(observed), -1).numpy()[:CHECK_UNITS]
    elif workload == "w2":
        d = load("w2")
        x = torch.tensor(d["x"], dtype=torch.float32)
        x_prime = torch.tensor(d["x_prime"], dtype=torch.float32)
        run = C.make_w2(d["consts"], W2_WARMUP, W2_DRAWS, jit=variant == "jit")
        seeds = iter(range(100))

        def call():
            y, y_cf = run(next(seeds), x, x_prime)
            answers["y"], answers["y_cf"] = y.numpy(), y_cf.numpy()

        timing = time_call(call, repeats)
    elif workload.startswith("w3"):
        kind = workload.split("_", 1)[1]
        d = load("lg")
        draw = C.make_w3(kind, d["weights"], d["noise_scales"], size)
        timing = time_call(lambda: draw(), repeats)
        draws = torch.stack([v.reshape(-1) for v in draw()], -1).numpy()
        answers["mean"], answers["cov"] = draws.mean(0), np.cov(draws.T)
    elif workload == "rng":
        timing = time_call(lambda: torch.randn(size), repeats)
    elif workload in ("w5a", "w5b"):
        d = load("w5")
        observed = {f"X{i}": torch.tensor(d["x"][:, i], dtype=torch.float32) for i in range(10)}
        all_samples, dose_response = C.make_w5(d["weights"], d["noise_scales"])
        fn = all_samples if workload == "w5a" else dose_response
        outs: list[Any] = []
        timing = time_call(lambda: outs.append(fn(observed, d["values"])), repeats)
        out = outs[-1].numpy()
        answers["dose_response"] = out[..., -1].mean(-1) if workload == "w5a" else out
    else:
        raise SystemExit(f"workload {workload!r} is not run on ChiRho")
    return timing, answers, extra


# ---------------------------------------------------------------------------- DoWhy
def run_dowhy(system: str, workload: str, size: int, repeats: int) -> tuple[Timing, dict, dict]:
    import pandas as pd
    from dowhy import gcm

    from benchmarks import sys_dowhy as D

    gcm.config.disable_progress_bars()
    answers: dict[str, np.ndarray] = {}
    extra: dict[str, Any] = {}
    if workload == "w1":
        d = load(f"w1_{size}")
        observed = pd.DataFrame(d["x"], columns=list(D.NODES))
        scm = D.linear_scm(d["weights"], d["noise_scales"], observed.iloc[:100])
        timing = time_call(lambda: D.w1(scm, observed), repeats)
        answers["cf"] = D.w1(scm, observed)[list(D.NODES)].to_numpy()[:CHECK_UNITS]
        fit_times = time_call(lambda: D.fit_linear(d["weights"], observed), 2)
        extra["fit_s"] = fit_times.median_s
    elif workload.startswith("w3"):
        kind = workload.split("_", 1)[1]
        d = load("lg")
        if kind == "linear":
            fake = pd.DataFrame(np.random.randn(100, 10), columns=list(D.NODES))
            scm, node, names = D.linear_scm(d["weights"], d["noise_scales"], fake), "X3", D.NODES
        else:
            names = ("x1", "x2", "x3", "x4", "x5")
            fake = pd.DataFrame(np.random.randn(100, 5), columns=list(names))
            scm, node = D.nonlinear_scm(fake), "x3"
        timing = time_call(lambda: D.w3(scm, node, size), repeats)
        draws = D.w3(scm, node, size)[list(names)].to_numpy()
        answers["mean"], answers["cov"] = draws.mean(0), np.cov(draws.T)
    elif workload == "w4":
        d = load("w4")
        names = ["x1", "x2", "x3", "x4", "x5"]
        train = pd.DataFrame({k: d[f"train_{k}"] for k in names})
        held = pd.DataFrame({k: d[f"held_{k}"] for k in names})
        scms: list[Any] = []
        timing = time_call(lambda: scms.append(D.w4_fit(train)), 0)
        timing = Timing(timing.first_s, [timing.first_s])
        answers["cf"] = D.w4_counterfactual(scms[-1], held)[names].to_numpy()
        extra["mechanisms"] = {k: str(scms[-1].causal_mechanism(k)) for k in names}
    elif workload in ("w5a", "w5b"):
        d = load("w5")
        observed = pd.DataFrame(d["x"], columns=list(D.NODES))
        scm = D.linear_scm(d["weights"], d["noise_scales"], observed.iloc[:100])
        fn = D.w5_all_samples if workload == "w5a" else D.w5_dose_response
        outs: list[Any] = []
        timing = time_call(lambda: outs.append(fn(scm, observed, d["values"])), repeats)
        out = outs[-1]
        answers["dose_response"] = out[..., -1].mean(-1) if workload == "w5a" else out
    else:
        raise SystemExit(f"workload {workload!r} is not run on DoWhy")
    return timing, answers, extra


def _import_libraries(base: str) -> None:
    """Import the system's libraries first, so the memory they take is reported apart."""
    if base in ("scm_ppl", "floor"):
        import benchmarks.floor
        import benchmarks.sys_scm_ppl
    elif base == "chirho":
        import benchmarks.sys_chirho
    else:
        import benchmarks.sys_dowhy  # noqa: F401


def main(argv: list[str]) -> None:
    system, workload, size, repeats, answers_path = argv
    size_i, repeats_i = int(size), int(repeats)
    base, _ = _split(system)
    runner = {"scm_ppl": run_jax, "floor": run_jax, "chirho": run_chirho, "dowhy": run_dowhy}
    _import_libraries(base)
    rss_before = peak_rss_mb()
    timing, answers, extra = runner[base](system, workload, size_i, repeats_i)
    np.savez(answers_path, **answers)
    record = {
        "system": system,
        "workload": workload,
        "size": size_i,
        "first_s": timing.first_s,
        "repeats_s": timing.repeats_s,
        "median_s": timing.median_s,
        "peak_rss_mb": peak_rss_mb(),
        "rss_after_imports_mb": rss_before,
        **extra,
    }
    print(json.dumps(record))


if __name__ == "__main__":
    main(sys.argv[1:])
