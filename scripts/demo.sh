#!/usr/bin/env bash
# Install unillm with the quick engines and the serve and bench tools (what the README uses
# next), then run the demo: it builds a tiny model locally
# (no download), runs it on every installed engine and prints a timing table.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh demo
.venv/bin/unillm demo
