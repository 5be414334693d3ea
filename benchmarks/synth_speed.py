"""Tokens/s of calibsynth.synth.self_generate (batched, left-padded, KV cache) against a naive loop calling
`generate` on one prompt at a time, on an embedded model; plus a few generations with their perplexities.

    python benchmarks/synth_speed.py --model smollm2-135m --n 32 --max-new-tokens 128
"""
from __future__ import annotations

import argparse
import json
import resource
import time

import torch

from calibsynth.core import atomic_write_json
from calibsynth.models import load_model
from calibsynth.sources import load_texts
from calibsynth.synth import SynthConfig, generate_batch, make_prefixes, self_generate, text_perplexities


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--model", default="smollm2-135m")
    p.add_argument("--source", default="news")
    p.add_argument("--n", type=int, default=32)
    p.add_argument("--max-new-tokens", type=int, default=128)
    p.add_argument("--naive-n", type=int, default=8, help="prompts for the one-at-a-time loop")
    p.add_argument("--out", default="results/synth_benchmark.json")
    a = p.parse_args()
    model, tok = load_model(a.model)
    docs = load_texts(a.source, limit=a.n)
    cfg = SynthConfig(max_new_tokens=a.max_new_tokens, batch_size=a.n, n_docs=a.n)
    prompts = make_prefixes(tok, docs, cfg)

    t0 = time.perf_counter()
    seqs = generate_batch(model, tok, prompts, cfg, 0)
    batched_s = time.perf_counter() - t0
    batched_tokens = sum(len(s) - len(p) for s, p in zip(seqs, prompts))

    naive_tokens, t0 = 0, time.perf_counter()
    one = SynthConfig(max_new_tokens=a.max_new_tokens, batch_size=1)
    for i, p in enumerate(prompts[:a.naive_n]):
        s = generate_batch(model, tok, [p], one, i)[0]
        naive_tokens += len(s) - len(p)
    naive_s = time.perf_counter() - t0

    texts = [tok.decode(s, skip_special_tokens=True) for s in seqs]
    ppl = text_perplexities(model, tok, texts)
    res = dict(model=a.model, batch_size=a.n, max_new_tokens=a.max_new_tokens,
               batched_tokens_per_s=batched_tokens / batched_s, naive_tokens_per_s=naive_tokens / naive_s,
               speedup=(batched_tokens / batched_s) / (naive_tokens / naive_s),
               peak_rss_mb=resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
               samples=[dict(text=t[:300], ppl=round(q, 2)) for t, q in sorted(zip(texts, ppl), key=lambda x: x[1])[::8]])
    print(f"{'':24}{'tokens/s':>10}")
    print(f"{'batched (batch ' + str(a.n) + ')':24}{res['batched_tokens_per_s']:>10.1f}")
    print(f"{'naive (one at a time)':24}{res['naive_tokens_per_s']:>10.1f}")
    print(f"speed-up x{res['speedup']:.1f}, peak RSS {res['peak_rss_mb']:.0f} MB")
    for s in res["samples"]:
        print(f"  ppl {s['ppl']:>7}: {s['text'][:160]!r}")
    atomic_write_json(a.out, res)


if __name__ == "__main__":
    main()
