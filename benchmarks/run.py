"""Run every workload on scm_ppl, the floor, ChiRho and DoWhy; write the report.

    bash benchmarks/run.sh            # creates the environments on first use, then this
    python -m benchmarks.run --quick  # tiny sizes, one round: checks the plumbing

Each (system, workload, size) runs in a fresh subprocess of that system's own interpreter
(benchmarks/.envs/<env>/bin/python): a first call (trace + compile + run) and then
repeats; the systems take turns in a rotating order, round after round, so slow drift of
the machine touches them alike. Every answer is checked against a closed form (or the
ground truth) here, with one function for all systems, ESS included.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from benchmarks.common import BENCH_DIR, REPO_DIR, RESULTS_DIR

ENVS = {"scm_ppl": "scm_ppl", "floor": "scm_ppl", "chirho": "chirho", "dowhy": "dowhy"}
W6_SYSTEMS = ("scm_ppl", "scm_ppl[loop]", "scm_ppl[fit_loop]")
W7_SYSTEMS = ("scm_ppl", "scm_ppl[icm]")


@dataclass(frozen=True)
class Job:
    workload: str
    size: int
    systems: tuple[str, ...]
    repeats: int
    rounds: int


def plan(quick: bool) -> list[Job]:
    """What runs. ``quick``: tiny sizes, one round (the plumbing, not the numbers)."""
    all4 = ("scm_ppl", "floor", "chirho", "dowhy")
    prng = ("floor[fast]", "scm_ppl[rbg]", "scm_ppl[unsafe_rbg]", "floor[rbg]", "floor[unsafe_rbg]")
    if quick:
        return [
            Job("w1", 1_000, all4, 3, 1),
            Job("w1", 10_000, all4, 3, 1),
            Job("w2", 100, ("scm_ppl", "floor"), 1, 1),
            Job("w3_linear", 10_000, all4 + prng, 3, 1),
            Job("w3_nonlinear", 10_000, all4, 3, 1),
            Job("rng", 100_000, ("floor", "floor[fast]", "floor[rbg]", "chirho"), 3, 1),
            Job("w4", 2, ("scm_ppl", "dowhy"), 0, 1),
            Job("w6_refits", 2, W6_SYSTEMS, 0, 1),
            Job("w7_icm_dense", 4, W7_SYSTEMS, 1, 1),
            Job("w7_icm_conv", 100, W7_SYSTEMS, 1, 1),
        ]
    return [
        Job("w1", 10_000, all4, 20, 3),
        Job("w1", 100_000, all4, 10, 3),
        Job("w1", 1_000_000, all4, 5, 3),
        Job("w3_linear", 10_000, all4, 10, 3),
        Job("w3_linear", 1_000_000, all4 + prng, 5, 3),
        Job("w3_nonlinear", 1_000_000, (*all4, "floor[fast]"), 5, 3),
        Job(
            "rng",
            10_000_000,
            ("floor", "floor[fast]", "floor[rbg]", "floor[unsafe_rbg]", "chirho"),
            5,
            3,
        ),
        Job("w2", 100, ("scm_ppl", "floor"), 2, 3),
        # scm_ppl answers W5 in one call, so it is timed like the floor; the peers loop.
        Job("w5a", 10_000, ("scm_ppl", "floor"), 3, 1),
        Job("w5b", 10_000, ("scm_ppl", "floor"), 3, 1),
        Job("w5a", 10_000, ("chirho", "dowhy"), 0, 1),
        Job("w5b", 10_000, ("chirho", "dowhy"), 0, 1),
        Job("w4", 150, ("scm_ppl", "dowhy"), 0, 1),
        # Pyro's NUTS pays its whole cost (with jit_compile, its tracing too) on every run.
        Job("w2", 100, ("chirho[jit]", "chirho"), 0, 1),
        # Mechanism level, scm_ppl alone: 16 refits vmapped vs two loops; an epoch with
        # the ICM penalty vs one without (the dense toy at n = 12, the conv generator).
        Job("w6_refits", 16, W6_SYSTEMS, 0, 1),
        Job("w7_icm_dense", 12, W7_SYSTEMS, 3, 3),
        Job("w7_icm_conv", 1_000, W7_SYSTEMS, 1, 1),
    ]


def selected(workload: str, wanted: list[str]) -> bool:
    """``--workloads`` names workloads or their families: ``w7_icm`` selects
    ``w7_icm_dense`` and ``w7_icm_conv``, ``w3`` both W3 models."""
    return any(workload == w or workload.startswith(w + "_") for w in wanted)


def python_of(system: str) -> str:
    base = system.split("[", 1)[0]
    return str(BENCH_DIR / ".envs" / ENVS[base] / "bin" / "python")


def run_one(system: str, job: Job, answers: Path, timeout_s: float) -> dict[str, Any]:
    cmd = [python_of(system), "-m", "benchmarks.worker", system, job.workload, str(job.size)]
    cmd += [str(job.repeats), str(answers)]
    env = dict(os.environ, PYTHONPATH=str(REPO_DIR), PYTHONWARNINGS="ignore")
    start = time.perf_counter()
    try:
        proc = subprocess.run(
            cmd, cwd=REPO_DIR, env=env, capture_output=True, text=True, timeout=timeout_s
        )
    except subprocess.TimeoutExpired:
        return {"system": system, "workload": job.workload, "size": job.size, "error": "timeout"}
    wall = time.perf_counter() - start
    if proc.returncode != 0:
        tail = proc.stderr.strip().splitlines()[-3:]
        return {"system": system, "workload": job.workload, "size": job.size, "error": tail}
    record = json.loads(proc.stdout.strip().splitlines()[-1])
    record["process_wall_s"] = wall
    return record


def run_all(jobs: list[Job], systems: set[str] | None, log: Any, save: Any) -> list[dict[str, Any]]:
    answers_dir = BENCH_DIR / ".envs" / "answers"
    answers_dir.mkdir(parents=True, exist_ok=True)
    records = []
    for job in jobs:
        chosen = [s for s in job.systems if not systems or s.split("[")[0] in systems]
        for r in range(job.rounds):
            order = chosen[r % len(chosen) :] + chosen[: r % len(chosen)] if chosen else []
            for system in order:
                path = answers_dir / f"{system}_{job.workload}_{job.size}_{r}.npz"
                record = run_one(system, job, path, timeout_s=1200)
                record["round"] = r
                record["answers"] = str(path)
                records.append(record)
                save(records)
                shown = record.get("error") or f"{record['median_s']:.4g} s"
                print(f"[{job.workload} n={job.size} round {r}] {system}: {shown}", file=log)
                log.flush()
    return records


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="tiny sizes, one round")
    parser.add_argument("--systems", help="comma-separated subset, e.g. scm_ppl,floor")
    parser.add_argument(
        "--workloads", help="comma-separated subset, e.g. w1,w3_linear (w7_icm: both W7 models)"
    )
    parser.add_argument("--report-only", action="store_true", help="rewrite the report")
    parser.add_argument("--rounds", type=int, help="at most this many rounds per job")
    parser.add_argument(
        "--append", action="store_true", help="keep the saved records of jobs not rerun"
    )
    args = parser.parse_args()
    from benchmarks import data, report

    stem = "results_quick" if args.quick else "results"
    if args.report_only:
        saved = json.loads((RESULTS_DIR / f"{stem}.json").read_text())
        print(report.write(saved["records"], saved["meta"], stem=stem), file=sys.stderr)
        return

    jobs = plan(args.quick)
    if args.rounds:
        jobs = [
            Job(j.workload, j.size, j.systems, j.repeats, min(j.rounds, args.rounds)) for j in jobs
        ]
    if args.workloads:
        jobs = [j for j in jobs if selected(j.workload, str(args.workloads).split(","))]
    start = time.time()
    data.write_all(sorted({j.size for j in jobs if j.workload == "w1"}))
    systems = set(str(args.systems).split(",")) if args.systems else None
    RESULTS_DIR.mkdir(exist_ok=True)
    out = RESULTS_DIR / f"{stem}.json"

    def save(records: list[dict[str, Any]]) -> dict[str, Any]:
        # After every record, so an interrupted run still reports what it measured.
        meta = {
            "quick": args.quick,
            "wall_s": time.time() - start,
            "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
            "load_average": os.getloadavg(),
            "cpus": os.cpu_count(),
        }
        out.write_text(json.dumps({"meta": meta, "records": records}, indent=1))
        return meta

    kept: list[dict[str, Any]] = []
    if args.append and out.exists():
        # Records of the (workload, size, system) triples rerun now are replaced.
        rerun = {(j.workload, j.size, s) for j in jobs for s in j.systems}
        rerun = {k for k in rerun if not systems or k[2].split("[")[0] in systems}
        old = json.loads(out.read_text())["records"]
        kept = [r for r in old if (r["workload"], r["size"], r["system"]) not in rerun]
    records = kept + run_all(jobs, systems, sys.stderr, lambda rs: save(kept + rs))
    meta = save(records)
    report.write(records, meta, stem=stem)
    print(f"done in {meta['wall_s']:.0f} s; {out}", file=sys.stderr)


if __name__ == "__main__":
    main()
