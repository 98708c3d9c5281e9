#!/usr/bin/env bash
# The README's main command: set up .venv/ if needed, generate a small synthetic cohort, and run spineseg on it
# (and on the real RSNA study in ../shared/data or $SPINESEG_DATA when that is present).
# Usage: bash scripts/demo.sh [OUT_DIR]      (default: runs/demo)
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
bash "$root/scripts/bootstrap.sh"
out=${1:-$root/runs/demo}
py="$root/.venv/bin/python"
spineseg="$root/.venv/bin/spineseg"

echo "== spineseg synth: 3 synthetic studies in the competition's layout, with previews"
"$spineseg" synth --studies 3 --out "$out/cohort" --seed 1 --preview --overwrite
study=$("$py" -c 'import json,sys; print(json.load(open(sys.argv[1]))["train_ids"][0])' "$out/cohort/cohort.json")

echo; echo "== spineseg inspect: series, kinds, stacks and geometry of study $study"
"$spineseg" inspect "$out/cohort/train_images/$study" --series-csv "$out/cohort/train_series_descriptions.csv"

echo; echo "== spineseg locate: its L4/L5 spinal keypoint (Sagittal T2) cross-referenced into the other series"
read -r series inst x y < <("$py" - "$out/cohort/train_label_coordinates.csv" "$study" <<'PY'
import sys, pandas as pd
from spine_seg.constants import normalize_condition, normalize_level
df = pd.read_csv(sys.argv[1], dtype={"study_id": str})
df = df[(df.study_id == sys.argv[2]) & (df.condition.map(normalize_condition) == "spinal_canal_stenosis")
        & (df.level.map(normalize_level) == "l4_l5")]
r = df.iloc[0]
print(r.series_id, r.instance_number, r.x, r.y)
PY
)
"$spineseg" locate "$out/cohort/train_images/$study" --series "$series" --instance "$inst" --x "$x" --y "$y"

data=${SPINESEG_DATA:-$root/../shared/data}
real="$data/rsna2024/train_images/100206310"
if [ -d "$real" ]; then
  echo; echo "== the real RSNA study 100206310: its L4/L5 spinal keypoint into the Axial T2 (annotated: instance 46)"
  "$spineseg" locate "$real" --series 1792451510 --instance 9 --x 231.4451294 --y 316.5182927
fi

echo
echo "Look at: $out/cohort/previews/*.png (montages), $out/cohort/truth/*.json (ground truth),"
echo "         $out/cohort/train.csv and train_label_coordinates.csv (competition labels)."
