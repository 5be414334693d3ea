#!/usr/bin/env bash
# The test command: set up (idempotent), then run every notebook (nbdev-test) and pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
bash tools/setup.sh
export HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 TRANSFORMERS_OFFLINE=1 TOKENIZERS_PARALLELISM=false
export CALIBSYNTH_PROFILE=smoke
echo "== notebooks (nbdev-test)"
.venv/bin/nbdev-test --n-workers 2 --timing
echo "== pytest"
.venv/bin/python -m pytest -q -ra "$@"
