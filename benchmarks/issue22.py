"""Issue 22's benchmarks in one command: result paths, latent confounders at scale, two
processes, memory. Writes ``benchmarks/results/issue22.md``.

    .venv/bin/python -m benchmarks.issue22           # the sizes of the issue (~30 min)
    .venv/bin/python -m benchmarks.issue22 --quick   # tiny sizes: the plumbing

Each part runs in its own subprocess(es) of this interpreter, one after the other:

* **W1** (``benchmarks/w1_result_paths.py``): the floor, ``counterfactual`` read through
  ``result.world("cf")[site]`` and through ``result.predictions[site].sel(world="cf")``,
  all 10 sites, 10⁴ and 10⁶ units, median of 5 fresh processes.
* **W8** (``benchmarks/w8_latent.py``): the latent-confounder counterfactual posterior
  (evidence on ``X``, do(X := 0)) per unit (closed form) at 10², 10⁴, 10⁶ units and by joint
  NUTS at 10² and 10⁴ (at 10⁶ the joint chain would take hours); ChiRho
  (``benchmarks/w8_chirho.py``, its joint NUTS, in its side environment, made by
  ``bash benchmarks/setup_envs.sh``) at 10² and 10⁴ units, each size in its own process
  with 10 minutes to finish; the same with a saturating mechanism (``--tanh``: per-unit
  NUTS against joint NUTS, at the sizes where ``"auto"`` takes per-unit NUTS).
* **W9** (``benchmarks/multiprocess.py``): 2 processes joined by ``jax.distributed`` on
  localhost against one process and the closed form.
* **Memory** (``benchmarks/memory.py``): peak RSS of W1 at 10⁷ units, unchunked and with
  ``chunk_size=10⁶``.

The load average is recorded before and after: timings are only comparable on a quiet
machine.
"""

from __future__ import annotations

import os
import platform
import subprocess
import sys
import time
from pathlib import Path

from benchmarks.common import REPO_DIR, RESULTS_DIR

CHIRHO = REPO_DIR / "benchmarks" / ".envs" / "chirho" / "bin" / "python"


def _module(args: list[str], timeout: float = 3600, python: Path | None = None) -> str:
    start = time.perf_counter()
    try:
        out = subprocess.run(
            [str(python or sys.executable), "-m", *args], capture_output=True, text=True,
            timeout=timeout, cwd=REPO_DIR,
        )  # fmt: skip
    except subprocess.TimeoutExpired:
        return f"`{' '.join(args)}` did not finish in {timeout / 60:.0f} minutes (stopped)."
    seconds = time.perf_counter() - start
    if out.returncode != 0:
        return (
            f"`{' '.join(args)}` failed (exit {out.returncode}):\n\n```\n{out.stderr[-2000:]}\n```"
        )
    # Gloo's connection chatter (two processes interleaving on one stream) is not a result.
    lines = [line for line in out.stdout.splitlines() if line.strip() and "Gloo" not in line]
    return "\n".join(lines) + f"\n\n(`python -m {' '.join(args)}`, {seconds:.0f} s)"


def _load() -> str:
    one, five, fifteen = os.getloadavg()
    return f"{one:.2f}, {five:.2f}, {fifteen:.2f}"


def main(quick: bool) -> Path:
    if quick:
        w1 = ["benchmarks.w1_result_paths", "1000", "10000"]
        w8 = ["benchmarks.w8_latent", "--joint", "100", "100:200", "1000:200"]
        w8t = ["benchmarks.w8_latent", "--tanh", "--joint", "100", "100:200"]
        chirho = ["100:200"]
        w9 = ["benchmarks.multiprocess", "2", "1000"]
        memory = ["benchmarks.memory", "100000", "20000"]
    else:
        w1 = ["benchmarks.w1_result_paths", "10000", "1000000"]
        w8 = ["benchmarks.w8_latent", "--joint", "100,10000", "100:1000", "10000:1000",
              "1000000:100"]  # fmt: skip
        w8t = ["benchmarks.w8_latent", "--tanh", "--joint", "100,1000", "100:1000",
               "1000:1000"]  # fmt: skip
        chirho = ["100:1000", "10000:1000"]
        w9 = ["benchmarks.multiprocess", "2", "50000"]
        memory = ["benchmarks.memory", str(10**7), str(10**6)]
    parts = [
        f"# Issue 22 benchmarks{' (quick)' if quick else ''}",
        f"{platform.platform()}, {os.cpu_count()} CPUs, Python {platform.python_version()}; "
        f"started {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, "
        f"load average {_load()}",
        "## W1: reading a result (ms per call, median of 5 fresh processes)",
        _module(w1),
        "## W8: latent confounder, evidence on X, do(X := 0)",
        _module(w8),
        "### W8 on ChiRho (joint NUTS, Pyro's JIT; 10 minutes per size)",
    ]
    if CHIRHO.exists():
        parts += [_module(["benchmarks.w8_chirho", size], 600, CHIRHO) for size in chirho]
    else:
        parts.append(
            f"ChiRho: not run, its side environment ({CHIRHO.relative_to(REPO_DIR)}) does not "
            "exist on this machine (`bash benchmarks/setup_envs.sh` makes it)."
        )
    parts += ["### W8 with a saturating mechanism (per-unit NUTS)", _module(w8t)]
    parts += ["## W9: two processes (jax.distributed, CPU collectives, localhost)", _module(w9)]
    parts += ["## Memory: W1 at 10⁷ units" if not quick else "## Memory", _module(memory)]
    parts.append(f"Load average at the end: {_load()}.")
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    path = RESULTS_DIR / ("issue22_quick.md" if quick else "issue22.md")
    path.write_text("\n\n".join(parts) + "\n")
    return path


if __name__ == "__main__":
    print(main("--quick" in sys.argv[1:]).read_text())
