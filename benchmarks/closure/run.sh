#!/usr/bin/env bash
# The closure benchmark in one command: 3 loops x 3 seeds (about 80 min on a 2-core CPU), then the summary and plots.
#   bash benchmarks/closure/run.sh [RUNS_DIR]
set -euo pipefail
cd "$(dirname "$0")/../.."
RUNS="${1:-runs/closure}"
for S in 0 1 2; do for L in closed spurious open; do
  [ -f "$RUNS/$L-s$S/summary.json" ] || rlvr train "recipes/closure_$L.yaml" seed=$S run_dir="$RUNS/$L-s$S" log.progress=false
done; done
python benchmarks/closure/collect.py "$RUNS" --out benchmarks/closure/results
