#!/usr/bin/env bash
# The main job: set up (idempotent), then run calibsynth's main command on the embedded default.
set -euo pipefail
cd "$(dirname "$0")/.."
bash tools/setup.sh
export HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 TRANSFORMERS_OFFLINE=1 TOKENIZERS_PARALLELISM=false
.venv/bin/calibsynth quickstart "$@"
