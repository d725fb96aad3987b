#!/usr/bin/env bash
# Re-validates the main job's learning rate on demo-qa's validation questions (issue 18, item 6;
# tune-lr.toml). Resumes where it stopped; results (no checkpoints) go under results/tune-lr/.
set -euo pipefail
cd "$(dirname "$0")/../.."
.venv/bin/swirl study --config docs/study-demo-qa/tune-lr.toml \
  --out docs/study-demo-qa/results/tune-lr --tuning-only
