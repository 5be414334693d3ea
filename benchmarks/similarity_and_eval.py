"""Numbers for the similarity and evaluation notebooks, on both embedded models:
- Min-K%++ (k=0.5) median per offline source, and its throughput (texts/s, tokens/s);
- offline zero-shot accuracy, dense (fp32 and bf16) and after 70% magnitude pruning, with timings.

    python benchmarks/similarity_and_eval.py --models smollm2-135m,gemma3-270m
"""
from __future__ import annotations

import argparse
import json
import time

import numpy as np

from calibsynth.evaluate import OFFLINE_TASKS, evaluate_tasks, perplexity
from calibsynth.core import atomic_write_json
from calibsynth.models import load_model
from calibsynth.prune import prune
from calibsynth.similarity import membership_scores
from calibsynth.sources import OFFLINE_SOURCES, load_texts


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--models", default="smollm2-135m,gemma3-270m")
    p.add_argument("--texts", type=int, default=48, help="calib texts per source for Min-K%%++")
    p.add_argument("--max-chars", type=int, default=2000)
    p.add_argument("--limit", type=int, default=None, help="items per task")
    p.add_argument("--skip-eval", action="store_true")
    p.add_argument("--out", default="results/similarity_eval_benchmark.json")
    a = p.parse_args()
    out = {}
    for spec in a.models.split(","):
        model, tok = load_model(spec)
        res = out.setdefault(spec, {})
        medians, n_texts, n_tokens, t0 = {}, 0, 0, time.perf_counter()
        for src in OFFLINE_SOURCES:
            texts = [t[:a.max_chars] for t in load_texts(src, "calib")[:a.texts]]
            s = membership_scores(model, tok, texts, k=0.5, forward_dtype="bfloat16")
            medians[src] = dict(min_k_pp=float(np.median(s["min_k_pp"])), min_k=float(np.median(s["min_k"])))
            n_texts += len(texts)
            n_tokens += sum(len(x) for x in tok(texts).input_ids)
        dt = time.perf_counter() - t0
        res["min_k_pp_median"] = medians
        res["similarity_throughput"] = dict(texts_per_s=n_texts / dt, tokens_per_s=n_tokens / dt)
        print(spec, json.dumps(res, indent=1), flush=True)
        if a.skip_eval:
            continue
        for label, dtype in [("dense_fp32", "float32"), ("dense_bf16", "bfloat16")]:
            t0 = time.perf_counter()
            ppl = perplexity(model, tok, load_texts("news", "eval"), seqlen=512, max_windows=16, forward_dtype=dtype)
            acc = evaluate_tasks(model, tok, OFFLINE_TASKS, limit=a.limit, forward_dtype=dtype)
            res[label] = dict(ppl_news=ppl, tasks=acc, seconds=time.perf_counter() - t0)
            print(spec, label, f"{time.perf_counter() - t0:.0f} s", json.dumps({t: round(v['acc'], 3) for t, v in acc.items()}), flush=True)
        prune(model, None, "magnitude", 0.7, progress=False)
        t0 = time.perf_counter()
        ppl = perplexity(model, tok, load_texts("news", "eval"), seqlen=512, max_windows=16, forward_dtype="bfloat16")
        acc = evaluate_tasks(model, tok, OFFLINE_TASKS, limit=a.limit, forward_dtype="bfloat16")
        res["magnitude70_bf16"] = dict(ppl_news=ppl, tasks=acc, seconds=time.perf_counter() - t0)
        print(spec, "magnitude70", json.dumps({t: round(v['acc'], 3) for t, v in acc.items()}), flush=True)
        atomic_write_json(a.out, out)
    atomic_write_json(a.out, out)


if __name__ == "__main__":
    main()
