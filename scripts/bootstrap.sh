#!/usr/bin/env bash
# Create .venv/ at the repository root if it is missing (or stale) and install spineseg into it.
#
# torch is installed first so that you choose its build:
#   default                         torch==2.14.1 torchvision==0.29.1 from PyPI (served from local disk here)
#   SPINESEG_TORCH_INDEX=URL        e.g. https://download.pytorch.org/whl/cpu   (small CPU-only build)
#                                        https://download.pytorch.org/whl/cu126 (CUDA 12.6)
#   SPINESEG_TORCH_SPEC="torch==X torchvision==Y"   other versions
#   SPINESEG_SKIP_TORCH=1           keep whatever torch the venv already has
# PYTHON=python3.12 picks the interpreter (3.11 or newer).
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
venv="$root/.venv"
py=${PYTHON:-python3}
stamp="$venv/.spineseg-installed"
want=$(cat "$root/pyproject.toml" "$root/scripts/bootstrap.sh" | sha256sum | cut -c1-16)

if [ ! -x "$venv/bin/python" ]; then
  "$py" -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "spineseg needs Python >= 3.11; set PYTHON=python3.11 (or newer)")'
  echo "bootstrap: creating $venv" >&2
  "$py" -m venv "$venv"
fi
if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
  pip=("$venv/bin/python" -m pip install --disable-pip-version-check -q)
  echo "bootstrap: installing torch and spineseg into $venv (a few minutes the first time)" >&2
  "${pip[@]}" --upgrade pip
  if [ -z "${SPINESEG_SKIP_TORCH:-}" ]; then
    read -r -a spec <<< "${SPINESEG_TORCH_SPEC:-torch==2.14.1 torchvision==0.29.1}"
    if [ -n "${SPINESEG_TORCH_INDEX:-}" ]; then
      "${pip[@]}" "${spec[@]}" --index-url "$SPINESEG_TORCH_INDEX"
    else
      "${pip[@]}" "${spec[@]}"
    fi
  fi
  "${pip[@]}" -e "$root[test,pretrained,distributed]"
  echo "$want" > "$stamp"
fi
