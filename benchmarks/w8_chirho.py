"""W8 on ChiRho 0.3 (Pyro 1.9, torch CPU): the latent-confounder counterfactual posterior.

    benchmarks/.envs/chirho/bin/python -m benchmarks.w8_chirho [units:draws ...]

``models/latent_confounder.py`` written for ChiRho as in ``benchmarks/sys_chirho.py``
(``make_w2``: ``Y``'s noise an explicit site upstream of the intervention, so that both
worlds share it), evidence on ``X`` only, do(X := 0): Pyro's NUTS over every unit's ``U``
and ``Y`` noise jointly (500 warmup steps, JIT-compiled potential), then ``Predictive`` for
the two worlds: the way ChiRho's docs answer a counterfactual under a latent confounder
(it has no per-unit or closed-form abduction). Same evidence as ``benchmarks/w8_latent.py``
(``default_rng(0).normal(size=n)``), same check: the largest z-score of the per-unit
posterior mean of ``Y_cf`` against the closed form on 1,000 random units, with the standard
error ``sqrt(var / ESS)`` at the smallest ESS of the sampled sites (Pyro's estimator).

The model's constants are read from ``models/latent_confounder.py`` as text (this
environment has no NumPyro to import it with). One line per size, as
``benchmarks/w8_latent.py`` prints them; run it under a timeout (``benchmarks/issue22.py``
gives each size 10 minutes).
"""

from __future__ import annotations

import ast
import sys
import time
from pathlib import Path

import numpy as np
import torch
from pyro.ops.stats import effective_sample_size

from benchmarks.sys_chirho import make_w2

WARMUP = 500
REPEAT_UNDER = 120.0
"""Seconds: a first call that took longer is reported alone (its draws are checked)."""
_MODEL = Path(__file__).resolve().parents[1] / "models" / "latent_confounder.py"


def constants() -> dict[str, float]:
    """``ALPHA, BETA, GAMMA, SIGMA_U, SIGMA_X, SIGMA_Y`` of the model file."""
    out: dict[str, float] = {}
    for node in ast.parse(_MODEL.read_text()).body:
        if isinstance(node, ast.Assign) and len(node.targets) == 1:
            target = node.targets[0]
            if isinstance(target, ast.Name) and target.id in (
                "ALPHA", "BETA", "GAMMA", "SIGMA_U", "SIGMA_X", "SIGMA_Y",
            ):  # fmt: skip
                out[target.id] = float(ast.literal_eval(node.value))
    return out


def truth(x: np.ndarray, x_prime: float, c: dict[str, float]) -> tuple[np.ndarray, np.ndarray]:
    """Mean and variance of ``Y_{x'} | X = x`` (Gaussian conditioning of ``U`` on ``x``)."""
    v = 1.0 / (1.0 / c["SIGMA_U"] ** 2 + c["ALPHA"] ** 2 / c["SIGMA_X"] ** 2)
    m = v * c["ALPHA"] * x / c["SIGMA_X"] ** 2
    return c["BETA"] * x_prime + c["GAMMA"] * m, np.full_like(
        x, c["GAMMA"] ** 2 * v + c["SIGMA_Y"] ** 2
    )


def run(n: int, draws: int) -> tuple[float, float, float]:
    c = constants()
    consts = [c[k] for k in ("ALPHA", "BETA", "GAMMA", "SIGMA_U", "SIGMA_X", "SIGMA_Y")]
    x = np.random.default_rng(0).normal(size=n).astype(np.float32)
    program = make_w2(consts, WARMUP, draws, jit=True)
    xt, x_prime = torch.as_tensor(x), torch.zeros(n)
    start = time.perf_counter()
    _, y_cf = program(0, xt, x_prime)
    first = time.perf_counter() - start
    steady = float("nan")  # a first call past REPEAT_UNDER is not repeated
    if first < REPEAT_UNDER:
        start = time.perf_counter()
        _, y_cf = program(1, xt, x_prime)
        steady = time.perf_counter() - start
    y = y_cf.detach().numpy().astype(np.float64)  # (draw, unit)
    units = np.random.default_rng(2).choice(n, size=min(n, 1000), replace=False)
    mean, var = truth(x[units].astype(np.float64), 0.0, c)
    # The ESS of Y_cf itself per unit (it is a function of U and the noise of Y).
    ess = effective_sample_size(torch.as_tensor(y[None, :, units]), chain_dim=0, sample_dim=1)
    ess_min = float(ess.min())
    z = np.abs(y[:, units].mean(0) - mean) / np.sqrt(var / ess_min)
    return first, steady, float(z.max())


def main(argv: list[str]) -> None:
    sizes = [tuple(int(v) for v in a.split(":")) for a in argv] or [(100, 1000), (10_000, 1000)]
    print("| system | units | draws | first call (s) | steady (s) | max z (1,000 units) |")
    print("|---|---|---|---|---|---|", flush=True)
    for n, draws in sizes:
        first, steady, z = run(n, draws)
        again = "not repeated" if steady != steady else f"{steady:.2f}"
        row = f"| chirho (joint NUTS) | {n:,} | {draws} | {first:.2f} | {again} | {z:.2f} |"
        print(row, flush=True)


if __name__ == "__main__":
    main(sys.argv[1:])
