import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
# Triton's CPU interpreter, so the GPU kernels are checked here; must be set before triton is imported.
os.environ.setdefault("TRITON_INTERPRET", "1")

import pytest

from calibsynth.models import load_model


@pytest.fixture(scope="session")
def smollm2():
    "The embedded SmolLM2-135M (dequantized and cached on first use)."
    return load_model("smollm2-135m")


@pytest.fixture(scope="session")
def gemma3():
    "The embedded Gemma-3-270M (dequantized and cached on first use)."
    return load_model("gemma3-270m")
