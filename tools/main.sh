#!/usr/bin/env bash
# The main job: set up (idempotent), then reproduce every experiment of the paper on the embedded
# default (the quick profile): executes the experiment notebooks nbs/2*.ipynb in place, writes results/ and
# figures/. Resumable: rerun the same command after an interruption and finished runs are skipped.
set -euo pipefail
cd "$(dirname "$0")/.."
bash tools/setup.sh
export HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 TRANSFORMERS_OFFLINE=1 TOKENIZERS_PARALLELISM=false
.venv/bin/calibsynth reproduce --profile "${CALIBSYNTH_PROFILE:-quick}" "$@"
