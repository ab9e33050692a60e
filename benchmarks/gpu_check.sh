#!/usr/bin/env bash
# The GPU check, one command: on a GPU machine that has this repository and a package registry
# (whatever pip is configured with), set up, check the driver against torch, and measure the
# paper's backbones, two runs packed on one GPU and a small GPU study, as the study runs them.
# Budget: about 12 minutes (setup with pip from PyPI 2-4 of them; the measurements stop at 9).
#
#   bash benchmarks/gpu_check.sh            # on a GPU machine
#   bash benchmarks/gpu_check.sh --dry-run  # anywhere: prints every step, runs none, exits 0
#   bash benchmarks/gpu_check.sh --no-setup # offline, from an existing venv (GPU_CHECK_VENV)
#
# Writes gpu_check.json under $OUT when OUT is set; exits 1 when a step fails (the fix is named)
# or a step finds more host-device syncs than the design allows. The steps are described in
# benchmarks/gpu_check.py. Environment: PYTHON (default python3) creates the virtual environment
# GPU_CHECK_VENV (default .venv; reused when it already imports torch and cce_bench).
set -euo pipefail
cd "$(dirname "$0")/.."

dry_run=0
setup=1
for arg in "$@"; do
    case "$arg" in
        --dry-run) dry_run=1 ;;
        --no-setup) setup=0 ;;
        -h | --help) sed -n '2,14s/^# \{0,1\}//p' "$0"; exit 0 ;;
        *) echo "gpu_check.sh: unknown option $arg; use --dry-run, --no-setup or --help" >&2; exit 2 ;;
    esac
done

export HF_HUB_OFFLINE=1 RAY_USAGE_STATS_ENABLED=0 PYTHONUNBUFFERED=1
python=${PYTHON:-python3}
venv=${GPU_CHECK_VENV:-.venv}
# One source of truth for the torch pins: constraints.txt (timm needs a matching torchvision).
pins=$(grep -oE '^(torch|torchvision)==[0-9][0-9.]*' constraints.txt | tr '\n' ' ' | sed 's/ $//')

run() {
    echo "  \$ $*"
    if [ "$dry_run" = 0 ]; then "$@"; fi
}

echo "[setup] a virtual environment $venv with $pins and this package, installed by pip"
if [ "$setup" = 0 ]; then
    echo "  --no-setup: $venv is used as it is, offline"
    if [ "$dry_run" = 0 ] && ! "$venv/bin/python" -c "import torch, cce_bench" 2>/dev/null; then
        echo "gpu_check.sh: --no-setup, but $venv/bin/python cannot import torch and cce_bench;" \
            "set GPU_CHECK_VENV to a venv that can, or drop --no-setup" >&2
        exit 2
    fi
elif [ -x "$venv/bin/python" ] && "$venv/bin/python" -c "import torch, cce_bench" 2>/dev/null; then
    echo "  $venv already imports torch and cce_bench: reused"
else
    run "$python" -m venv "$venv"
    # shellcheck disable=SC2086  # the pins are two words on purpose
    run "$venv/bin/python" -m pip install --quiet $pins
    run "$venv/bin/python" -m pip install --quiet -e .
fi

checker="$venv/bin/python"
if [ "$dry_run" = 1 ]; then
    checker=$python  # the plan needs only the standard library, and the venv may not exist yet
    "$checker" benchmarks/gpu_check.py --dry-run
    exit 0
fi
timeout 540 "$checker" benchmarks/gpu_check.py
