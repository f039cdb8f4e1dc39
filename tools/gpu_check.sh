#!/usr/bin/env bash
# A few AMP iterations of every full config on one GPU, then the throughput benchmark, as one table
# (tools/gpu_check.py --help). --dry-run: the same on a CPU at smoke sizes.
#   tools/gpu_check.sh [--dry-run] [--only CHECK ...] [--iters N] [--budget SECONDS]
set -euo pipefail
REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PYTHON="${PYTHON:-}"
if [[ -z "$PYTHON" ]]; then
  if [[ -x "$REPO/.venv/bin/python" ]]; then PYTHON="$REPO/.venv/bin/python"; else PYTHON=python3; fi
fi
cd "$REPO"
exec "$PYTHON" tools/gpu_check.py "$@"
