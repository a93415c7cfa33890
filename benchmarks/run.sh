#!/usr/bin/env bash
# One command: create the environments (first time only), run every workload on every
# system, write benchmarks/results/results.md and scaling.png. Arguments go to run.py
# (--quick, --systems scm_ppl,floor, --workloads w1,w3_linear).
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
bash "$here/setup_envs.sh"
cd "$(dirname "$here")"
exec "$here/.envs/scm_ppl/bin/python" -m benchmarks.run "$@"
