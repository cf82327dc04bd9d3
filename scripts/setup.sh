#!/usr/bin/env bash
# Create .venv and install unillm with every engine that runs on this machine.
#
#   bash scripts/setup.sh demo   # the quick engines only (what the demo needs)
#   bash scripts/setup.sh all    # every engine, tool and test dependency (what CI runs)
#   bash scripts/setup.sh demo --print-extras   # the unillm extras a profile installs; installs nothing
#
# torch is pinned through constraints/cpu.txt: an unpinned torch pulls several GB of CUDA
# packages. Components add themselves in scripts/install.d/*.sh: each may append to EXTRAS
# (extras of unillm to install in the one resolve below) and POST (functions run afterwards).
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)
PROFILE=${1:-all}
PYTHON=${PYTHON:-python3.11}
command -v "$PYTHON" >/dev/null || PYTHON=python3
CONSTRAINTS=$ROOT/constraints/cpu.txt
VENV=$ROOT/.venv
export PIP_DISABLE_PIP_VERSION_CHECK=1

make_venv() {
  local dir=$1
  if [ ! -x "$dir/bin/python" ]; then
    "$PYTHON" -m venv "$dir"
  fi
  "$dir/bin/python" -m pip install -q -U pip "setuptools>=70" wheel
}

EXTRAS=(transformers)
POST=()
if [ "$PROFILE" = "all" ]; then
  EXTRAS+=(test)
  for part in scripts/install.d/*.sh; do
    [ -e "$part" ] || continue
    # shellcheck source=/dev/null
    source "$part"
  done
else
  for part in scripts/install.d/*.sh; do
    [ -e "$part" ] || continue
    if grep -q '^# demo: yes' "$part"; then
      # shellcheck source=/dev/null
      source "$part"
    fi
  done
fi

if [ "${2:-}" = "--print-extras" ]; then
  echo "${EXTRAS[*]}"
  exit 0
fi

make_venv "$VENV"
joined=$(IFS=,; echo "${EXTRAS[*]}")
echo "unillm setup ($PROFILE): installing unillm[$joined] into $VENV"
"$VENV/bin/python" -m pip install -q -c "$CONSTRAINTS" "torch==2.13.0"
"$VENV/bin/python" -m pip install -q -c "$CONSTRAINTS" -e ".[$joined]"
for step in "${POST[@]}"; do
  echo "unillm setup: $step"
  "$step"
done
"$VENV/bin/unillm" engines
