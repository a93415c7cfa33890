#!/usr/bin/env bash
# Re-render the tutorials' figures for the documentation site from smoke runs
# (SCM_PPL_SMOKE=1: few samples, a few minutes in all) and copy them into
# docs/tutorials/figures/, which the site shows beside each tutorial. CI does not run
# this: the site builds from the committed figures in well under a minute.
set -euo pipefail
cd "$(dirname "$0")/.."
for script in tutorials/[0-9][0-9]_*.py; do
  echo "== $script"
  SCM_PPL_SMOKE=1 MPLBACKEND=Agg .venv/bin/python "$script" >/dev/null
done
cp tutorials/output/*.png docs/tutorials/figures/
# Tutorial 04's smoke run draws blurs: its figure comes from the full run's saved images.
.venv/bin/python benchmarks/morpho_mnist_figure.py docs/tutorials/figures/04_counterfactual_images.png
