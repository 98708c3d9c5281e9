#!/usr/bin/env bash
# The README's main command: set up .venv/ if needed, then `spineseg demo` — synthesise a cohort, train the
# segmentation (nnU-Net) and grading models briefly on this machine, bundle them, predict the held-out
# studies (submission, result.json, report.png, segmentation.nii.gz), score them — and, when the real RSNA
# study is present (../shared/data or $SPINESEG_DATA), predict it with the demo bundle too.
# Usage: bash scripts/demo.sh [OUT_DIR] [extra `spineseg demo` options]      (default OUT_DIR: runs/demo)
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
bash "$root/scripts/bootstrap.sh"
out=${1:-$root/runs/demo}
shift || true
spineseg="$root/.venv/bin/spineseg"

"$spineseg" demo --out "$out" "$@"

data=${SPINESEG_DATA:-$root/../shared/data}
real="$data/rsna2024/train_images/100206310"
if [ -d "$real" ]; then
  echo; echo "== the real RSNA study 100206310 with the demo bundle (base segmentation model; grading trained on synthetic data only)"
  "$spineseg" predict "$real" --model "$out/bundle" --out "$out/real" \
    --series-csv "$data/rsna2024/train_series_descriptions.csv" --no-progress --no-resume
  echo "Look at: $out/real/100206310/report.png"
fi
