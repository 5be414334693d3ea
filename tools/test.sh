#!/usr/bin/env bash
# The test command: set up (idempotent), then run the library notebooks (nbdev-test), pytest, and every
# experiment notebook at toy sizes (the smoke profile, written to a temporary folder).
set -euo pipefail
cd "$(dirname "$0")/.."
bash tools/setup.sh
export HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 TRANSFORMERS_OFFLINE=1 TOKENIZERS_PARALLELISM=false
# The kernel checks run Triton's CPU interpreter, which must be on before any notebook imports triton.
export TRITON_INTERPRET=${TRITON_INTERPRET:-1}
export CALIBSYNTH_PROFILE=smoke
echo "== library notebooks (nbdev-test)"
.venv/bin/nbdev-test --n-workers 2 --timing --skip-file-re '^([2-9][0-9]_|[_.])'
echo "== pytest"
.venv/bin/python -m pytest -q -ra "$@"
echo "== experiment notebooks, smoke profile"
smoke_out=$(mktemp -d -t calibsynth-smoke-XXXXXX)
.venv/bin/calibsynth reproduce --profile smoke --out "$smoke_out"
rm -rf "$smoke_out"
