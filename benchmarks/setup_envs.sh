#!/usr/bin/env bash
# Create the benchmark environments under benchmarks/.envs/ (an env whose .ready stamp
# exists is reused). One venv per system, so the peers' pins never touch ours:
#   scm_ppl : this repo, editable, pinned by .ci/constraints.txt (runs the floor too)
#   chirho  : chirho 0.3 + pyro-ppl 1.9 + torch 2.13.0 (CPU build, see benchmarks/README.md)
#   dowhy   : dowhy 0.14 (its gcm module)
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(dirname "$here")"
envs="$here/.envs"
python="${PYTHON:-python3.11}"
mkdir -p "$envs"

make_env() {  # name, then pip install arguments
  local name="$1"; shift
  local env="$envs/$name"
  [[ -f "$env/.ready" ]] && return 0
  echo "[setup] creating $env" >&2
  rm -rf "$env"
  "$python" -m venv "$env"
  # pip warns about every local index folder this machine lacks: keep the log readable.
  "$env/bin/python" -m pip install -q --upgrade "pip>=24" 2>&1 | grep -v "is ignored" >&2 || true
  "$env/bin/python" -m pip install -q "$@" 2>&1 | grep -v "is ignored" >&2 || true
  "$env/bin/python" -m pip check >/dev/null 2>&1 || "$env/bin/python" -m pip check >&2 || true
  touch "$env/.ready"
}

check_import() {  # name, module: fail loudly if the install did not take
  "$envs/$1/bin/python" -c "import $2" || { rm -f "$envs/$1/.ready"; echo "[setup] $1 broken" >&2; exit 1; }
}

make_env scm_ppl -c "$repo/.ci/constraints.txt" -e "$repo" &
# torch pinned in the same resolve: pip then takes the 2.13.0 CPU wheel instead of
# pulling a newer CUDA build (several GB) for pyro's "torch>=..." requirement.
make_env chirho "torch==2.13.0" "chirho==0.3.0" "pyro-ppl==1.9.2" &
make_env dowhy "dowhy==0.14" &
wait
check_import scm_ppl "scm_ppl, arviz, matplotlib"
check_import chirho "chirho, pyro, torch"
check_import dowhy "dowhy.gcm"
echo "[setup] environments ready in $envs" >&2
