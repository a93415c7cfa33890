"""W8: counterfactual posteriors under a latent confounder, per unit and joint.

    .venv/bin/python -m benchmarks.w8_latent [--joint 100,10000] [units:draws ...]

``models/latent_confounder.py``, evidence on ``X`` only, do(X := 0). For each size:
the steady-state time of one ``counterfactual`` call (after a first call that
compiles) reading ``result.world("cf")["Y"]`` as NumPy, and the largest z-score of
the per-unit posterior mean against the closed form on 1,000 random units (independent
draws: standard error ``sqrt(var / draws)``; the joint NUTS path uses its minimum ESS).
"""

from __future__ import annotations

import sys
import time
import warnings

import jax
import numpy as np

from models import latent_confounder as lc
from scm_ppl import counterfactual


def run(n: int, draws: int, method: str) -> tuple[float, float, float, str]:
    x = np.random.default_rng(0).normal(size=n).astype(np.float32)

    def once(seed: int):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            result = counterfactual(
                lc.model, {"X": x}, {"X": 0.0}, rng_key=jax.random.key(seed), method=method,
                model_args=(n,), num_samples=draws,
            )  # fmt: skip
        return result, np.asarray(result.world("cf")["Y"]).reshape(-1, n)

    start = time.perf_counter()
    once(0)
    first = time.perf_counter() - start
    start = time.perf_counter()
    result, y = once(1)
    steady = time.perf_counter() - start
    units = np.random.default_rng(2).choice(n, size=min(n, 1000), replace=False)
    truth = lc.counterfactual_y_given_x(x[units], 0.0)
    ess = float(result.attrs.get("min_ess", y.shape[0]))
    z = np.abs(y[:, units].mean(0) - truth.mean) / np.sqrt(truth.var / ess)
    return first, steady, float(z.max()), result.method


def main(argv: list[str]) -> None:
    joint: list[int] = []
    if argv[:1] == ["--joint"]:
        joint, argv = [int(v) for v in argv[1].split(",")], argv[2:]
    sizes = [tuple(int(v) for v in a.split(":")) for a in argv] or [
        (100, 1000), (10_000, 1000), (1_000_000, 100)
    ]  # fmt: skip
    print("| method | units | draws | first call (s) | steady (s) | max z (1,000 units) |")
    print("|---|---|---|---|---|---|")
    for n, draws in sizes:
        for method in ["per_unit", *(["nuts"] if n in joint else [])]:
            first, steady, z, used = run(n, draws, method)
            print(
                f"| {used} | {n:,} | {draws} | {first:.2f} | {steady:.2f} | {z:.2f} |", flush=True
            )


if __name__ == "__main__":
    main(sys.argv[1:])
