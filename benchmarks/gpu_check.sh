#!/usr/bin/env bash
# The GPU check (benchmarks/gpu_check.py): the test suite on CUDA, the vit-b16 train step eager and compiled
# (samples/s, MFU), data-loader images/s from JPEG tar shards, LLM rewriting batched vs one at a time, all
# into one JSON. <= 8 min on one H100/H200; offline (random models, generated images).
#
#   bash benchmarks/gpu_check.sh                      # -> gpu_check.json in the repository root
#   bash benchmarks/gpu_check.sh --dry-run --out /tmp/dry.json     # every part on the CPU, tiny sizes, ~1 min
#   PYTHON=/path/to/venv/bin/python bash benchmarks/gpu_check.sh --parts train_step,rewrite
#
# GPU_CHECK_LIMIT (seconds, default 480) stops a run that overstays; the JSON keeps every finished part.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON="${PYTHON:-python}"
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
exec timeout --signal=TERM --kill-after=20 "${GPU_CHECK_LIMIT:-480}" "$PYTHON" benchmarks/gpu_check.py "$@"
