"""Training throughput of the known-data LLaMAs (calibsynth.pretrain) on this CPU, to size models and tokens: tokens/s
of the training step (forward under bf16 autocast, backward, clipping, AdamW) for a few model sizes, run three ways
on the two cores: one job on one thread, one job on two threads, and two jobs side by side on one thread each (the
sum of their tokens/s). Random token ids: the step's cost does not depend on the text.

    python benchmarks/pretrain_speed.py --steps 6    # a few minutes

Writes results/pretrain_speed.json.
"""
from __future__ import annotations

import argparse
import multiprocessing as mp
import time
from dataclasses import replace
from pathlib import Path

import torch

from calibsynth.core import atomic_write_json
from calibsynth.pretrain import PretrainConfig, _optimizer, torch_threads, train_step

ROOT = Path(__file__).resolve().parents[1]
SIZES = {  # (hidden, layers, heads, intermediate)
    "h256-l4": (256, 4, 8, 688),
    "h320-l6": (320, 6, 8, 864),
    "h384-l6": (384, 6, 8, 1024),
    "h448-l8": (448, 8, 8, 1200),
}


class _Tok:  # what llama_config reads from a tokenizer
    def __init__(self, n):
        self.n, self.pad_token_id, self.bos_token_id, self.eos_token_id = n, 0, 1, 2

    def __len__(self):
        return self.n


def step_rate(size: str, threads: int, steps: int, base: dict, out=None, barrier=None) -> float:
    "Tokens/s of `steps` training steps (after two untimed) of model `size` on `threads` threads."
    from transformers import LlamaForCausalLM

    from calibsynth.pretrain import llama_config

    hidden, layers, heads, inter = SIZES[size]
    config = replace(PretrainConfig(**base), hidden=hidden, layers=layers, heads=heads, intermediate=inter)
    torch.manual_seed(0)
    model = LlamaForCausalLM(llama_config(config, _Tok(config.vocab_size))).train()
    optimizer, schedule = _optimizer(model, config)
    batch = torch.randint(3, config.vocab_size, (config.batch_size, config.seqlen))
    with torch_threads(threads):
        for i in range(steps + 2):
            if i == 2:
                if barrier is not None:  # side by side jobs time the same stretch of wall clock
                    barrier.wait()
                start = time.perf_counter()
            train_step(model, batch, optimizer, schedule, config.grad_clip)
    rate = steps * config.batch_size * config.seqlen / (time.perf_counter() - start)
    if out is not None:
        out.put(rate)
    return rate


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--steps", type=int, default=6)
    ap.add_argument("--sizes", nargs="+", default=list(SIZES), choices=list(SIZES))
    ap.add_argument("--out", default=str(ROOT / "results/pretrain_speed.json"))
    args = ap.parse_args(argv)
    base = dict(steps=1000, warmup_steps=10)
    rows = []
    for size in args.sizes:
        from transformers import LlamaForCausalLM

        from calibsynth.pretrain import llama_config

        hidden, layers, heads, inter = SIZES[size]
        cfg = replace(PretrainConfig(**base), hidden=hidden, layers=layers, heads=heads, intermediate=inter)
        n_params = sum(p.numel() for p in LlamaForCausalLM(llama_config(cfg, _Tok(cfg.vocab_size))).parameters())
        one = step_rate(size, 1, args.steps, base)
        two = step_rate(size, 2, args.steps, base)
        spawn = mp.get_context("spawn")
        queue, barrier = spawn.Queue(), spawn.Barrier(2)
        jobs = [spawn.Process(target=step_rate, args=(size, 1, args.steps, base, queue, barrier)) for _ in range(2)]
        for j in jobs:
            j.start()
        side_by_side = [queue.get() for _ in jobs]
        for j in jobs:
            j.join()
        row = dict(size=size, hidden=hidden, layers=layers, intermediate=inter, parameters=n_params,
                   one_job_one_thread=round(one), one_job_two_threads=round(two),
                   two_jobs_one_thread_each=round(sum(side_by_side)))
        rows.append(row)
        print(row, flush=True)
    atomic_write_json(Path(args.out), dict(batch=[16, 256], vocab=8192, steps=args.steps, sizes=rows))


if __name__ == "__main__":
    main()
