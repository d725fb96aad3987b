#!/usr/bin/env bash
# The demo-hops study in order (docs/study-demo-hops.md); every step resumes where it stopped.
# Results (everything but checkpoints) go under docs/study-demo-hops/results/, to be committed.
# Tuning first: the RL arms' grid, then SFT's on the same Stage-1 data (seed 100), copied
# rather than sampled again. The test study's config is written from the tuning reports.
set -euo pipefail
cd "$(dirname "$0")/../.."
results=docs/study-demo-hops/results
swirl=.venv/bin/swirl
$swirl study --config docs/study-demo-hops/tune-rl.toml --out $results/tune-rl --tuning-only
for shared in seed-100/stage1 tuning/base; do
  if [ ! -e "$results/tune-sft/$shared" ]; then
    mkdir -p "$(dirname "$results/tune-sft/$shared")"
    cp -r "$results/tune-rl/$shared" "$results/tune-sft/$shared"
  fi
done
$swirl study --config docs/study-demo-hops/tune-sft.toml --out $results/tune-sft --tuning-only
if [ -e docs/study-demo-hops/study.toml ]; then
  $swirl study --config docs/study-demo-hops/study.toml --out $results/study
fi
