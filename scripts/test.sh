#!/usr/bin/env bash
# The whole test suite, after making sure .venv/ is installed: ruff (lint, format, E501 at 120), mypy, pytest.
# Extra arguments go to pytest.
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
bash "$root/scripts/bootstrap.sh"
cd "$root"
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-2} nnUNet_def_n_proc=${nnUNet_def_n_proc:-1} nnUNet_n_proc_DA=${nnUNet_n_proc_DA:-0}
.venv/bin/ruff check --quiet . || { echo "test.sh: ruff found problems (ruff check --fix .)" >&2; exit 1; }
.venv/bin/ruff format --check --quiet . || { echo "test.sh: files not formatted (ruff format .)" >&2; exit 1; }
.venv/bin/python -m mypy || { echo "test.sh: mypy found problems (spine_seg/, cli/; [tool.mypy] in pyproject.toml)" >&2; exit 1; }
set +e
.venv/bin/python -m pytest "$@"
rc=$?
set -e
if [ "$rc" -eq 5 ]; then
  echo "test.sh: pytest collected no tests: that is a failure" >&2
  exit 1
fi
exit "$rc"
