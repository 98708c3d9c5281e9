#!/usr/bin/env bash
# The README's main command: set up .venv/ if needed, then run spineseg on a study.
# Study: $1 if given, else the real RSNA study in ../shared/data (or $SPINESEG_DATA).
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
bash "$root/scripts/bootstrap.sh"
data=${SPINESEG_DATA:-$root/../shared/data}
study=${1:-$data/rsna2024/train_images/100206310}
if [ ! -d "$study" ]; then
  echo "demo: no study at $study; pass a DICOM folder: bash scripts/demo.sh PATH" >&2
  exit 2
fi
spineseg="$root/.venv/bin/spineseg"
echo "== spineseg inspect $study"
"$spineseg" inspect "$study"
sag_t2=$("$spineseg" inspect "$study" --json | "$root/.venv/bin/python" -c '
import json, sys
doc = json.load(sys.stdin)
s = next((s for s in doc["studies"][0]["series"] if s["kind"] == "Sagittal T2/STIR"), None)
if s: st = s["stacks"][0]; print(s["series_id"], st["instance_numbers"][0] if st["n_slices"] == 1 else sorted(st["instance_numbers"])[0] + st["n_slices"] // 2, st["matrix"][1] // 2, st["matrix"][0] // 2)')
if [ -n "$sag_t2" ]; then
  read -r series inst x y <<< "$sag_t2"
  echo "== spineseg locate: centre of the mid-sagittal T2 slice, cross-referenced into every other series"
  "$spineseg" locate "$study" --series "$series" --instance "$inst" --x "$x" --y "$y"
fi
