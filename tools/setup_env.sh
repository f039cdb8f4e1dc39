#!/usr/bin/env bash
# Installs the pinned stack of requirements.txt and this package into .venv (idempotent).
#
# Three stages, because mmcv 2.1.0 compiles its CPU ops against the torch already installed:
#   1. build tooling, numpy and torch/torchvision;
#   2. mmcv, built from source once (15-30 min on 2 cores) and reused from pip's wheel cache;
#   3. everything else, the annotation-tool clients the deployment tests run (samexporter and
#      AnyLabeling/X-AnyLabeling without their declared dependencies, a second torch and a Qt GUI;
#      X-AnyLabeling installs the same top-level package as AnyLabeling, so it goes in a folder of its
#      own that a .pth file appends to the path), then this package in editable mode.
# A stamp holding the hash of this script, requirements.txt and setup.py makes a second run install nothing.
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON=${PYTHON:-python3.11}
VENV=.venv
STAMP="$VENV/.stack-$(cat tools/setup_env.sh requirements.txt setup.py | sha256sum | cut -c1-16)"

if [ -f "$STAMP" ]; then
    echo "setup_env: $VENV is up to date ($STAMP)"
    exit 0
fi

[ -x "$VENV/bin/python" ] || "$PYTHON" -m venv "$VENV"
PIP=("$VENV/bin/python" -m pip --disable-pip-version-check)

"${PIP[@]}" install -c requirements.txt 'setuptools<81' wheel numpy torch torchvision
MMCV_WITH_OPS=1 MAX_JOBS=${MAX_JOBS:-2} FORCE_CUDA=${FORCE_CUDA:-0} \
    "${PIP[@]}" install --no-build-isolation -c requirements.txt opencv-python mmcv
"${PIP[@]}" install -r requirements.txt
"${PIP[@]}" install --no-deps samexporter==0.5.0 anylabeling==0.4.43
"${PIP[@]}" install --no-deps --upgrade --target "$VENV/x-anylabeling" x-anylabeling-cvhub==4.2.1
SITE=$("$VENV/bin/python" -c 'import sysconfig; print(sysconfig.get_path("purelib"))')
realpath "$VENV/x-anylabeling" > "$SITE/x_anylabeling.pth"
"${PIP[@]}" install --no-deps --no-build-isolation -e .

rm -f "$VENV"/.stack-*
touch "$STAMP"
echo "setup_env: installed into $VENV"
