"""Time and memory of `calibsynth.prune.prune` on an embedded model, and held-out perplexity after each
method. Prints tables and writes JSON. Not a test: run it on an otherwise idle machine.

`--quality` is an engine check, not the project's instrument: perplexity on the leading windows of the calibration
corpus's held-out split (`calibsynth.evaluate.perplexity`), calibrated on the same corpus. The committed
results/prune_benchmark.json was measured with the calibration sampler of its time (windows drawn one by one); the
sampler now draws without reuse, so a rerun calibrates on other windows.

    python benchmarks/prune_speed.py --model smollm2-135m --n-samples 64 --seqlen 512 --speed
    python benchmarks/prune_speed.py --model smollm2-135m --quality --n-samples 32 --forward-dtype bfloat16
"""
from __future__ import annotations

import argparse
import copy
import json
import threading
import time
from pathlib import Path

import psutil
import torch

from calibsynth.core import atomic_write_json
from calibsynth.evaluate import perplexity
from calibsynth.models import load_model
from calibsynth.prune import capture_block_inputs, find_blocks, prunable_linears, prune, supports_nm, _run_block
from calibsynth.sources import load_texts, sample_calibration


class PeakRSS:
    "Peak resident memory of this process while the block runs (sampled every 20 ms)."

    def __enter__(self):
        self.proc, self.peak, self.stop = psutil.Process(), 0, False
        self.thread = threading.Thread(target=self._sample, daemon=True)
        self.thread.start()
        return self

    def _sample(self):
        while not self.stop:
            self.peak = max(self.peak, self.proc.memory_info().rss)
            time.sleep(0.02)

    def __exit__(self, *exc):
        self.stop = True
        self.thread.join()
        self.mb = self.peak / 2**20


def forward_floor(model, calib, dtype):
    "Seconds for two forwards of the calibration set through every block (the engine's floor)."
    prefix, blocks = find_blocks(model)
    cpu = torch.device("cpu")
    hidden, args = capture_block_inputs(model, blocks, prefix, calib, 8, cpu, False)
    start = time.perf_counter()
    for i, b in enumerate(blocks):
        runner = b if dtype == torch.float32 else copy.deepcopy(b).to(dtype)
        hidden = _run_block(runner, hidden, args[i], cpu, cpu, dtype)
    return 2 * (time.perf_counter() - start)


def masks(model):
    return {n: (l.weight != 0).clone() for n, l in prunable_linears(model).items()}


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--model", default="smollm2-135m")
    p.add_argument("--source", default="bible")
    p.add_argument("--n-samples", type=int, default=64)
    p.add_argument("--seqlen", type=int, default=512)
    p.add_argument("--speed", action="store_true", help="time each method at 50%%, 60%% and 2:4 in fp32 and bf16")
    p.add_argument("--quality", action="store_true", help="held-out perplexity at 50/60/70%% and 2:4, 4:8")
    p.add_argument("--methods", default="magnitude,wanda,sparsegpt,dsnot,owl")
    p.add_argument("--settings", default=None, help="comma list of sparsities or N:M patterns")
    p.add_argument("--dtypes", default="float32,bfloat16")
    p.add_argument("--no-floor", action="store_true", help="skip the two-forwards floor (already measured)")
    p.add_argument("--forward-dtype", default="bfloat16", help="forward dtype of the --quality runs")
    p.add_argument("--eval-windows", type=int, default=32)
    p.add_argument("--out", default="results/prune_benchmark.json")
    a = p.parse_args()

    model, tok = load_model(a.model)
    state = copy.deepcopy(model.state_dict())
    calib = sample_calibration(a.source, tok, a.n_samples, a.seqlen, seed=0)
    eval_texts = load_texts(a.source, "eval")
    out_path = Path(a.out)
    results = json.loads(out_path.read_text()) if out_path.exists() else {}
    key = f"{a.model}|{a.source}|{a.n_samples}x{a.seqlen}"
    res = results.setdefault(key, {})
    methods = a.methods.split(",")

    def run(method, setting, dtype):
        model.load_state_dict(state)
        pattern, sparsity = (setting, int(setting.split(":")[0]) / int(setting.split(":")[1])) if ":" in setting \
            else ("unstructured", float(setting))
        if pattern != "unstructured" and not supports_nm(method):
            return None
        with PeakRSS() as mem:
            rep = prune(model, calib, method, sparsity, pattern, forward_dtype=dtype, progress=False)
        return rep, mem.mb

    if a.speed:
        rows = res.setdefault("speed", [])
        for dt in [] if a.no_floor else a.dtypes.split(","):
            floor = forward_floor(model, calib, getattr(torch, dt))
            rows.append(dict(method="(floor: 2 block-forwards)", setting="-", dtype=dt, seconds=round(floor, 1)))
            print(f"floor {dt}: {floor:.1f} s", flush=True)
        ref_masks = {}
        for setting in (a.settings or "0.5,0.6,2:4").split(","):
            for method in methods:
                for dt in a.dtypes.split(","):
                    out = run(method, setting, dt)
                    if out is None:
                        continue
                    rep, mb = out
                    row = dict(method=method, setting=setting, dtype=dt, seconds=round(rep.seconds, 1),
                               peak_rss_mb=round(mb), sparsity=round(rep.sparsity, 4), timings=rep.timings)
                    m = masks(model)
                    if dt == "float32":
                        ref_masks[(method, setting)] = m
                    elif (method, setting) in ref_masks:
                        ref = ref_masks[(method, setting)]
                        row["mask_entries_differing_from_fp32"] = int(sum((m[n] != ref[n]).sum().item() for n in m))
                        row["mask_entries_total"] = int(sum(v.numel() for v in m.values()))
                    rows.append(row)
                    print(json.dumps(row), flush=True)
                    atomic_write_json(out_path, results)

    if a.quality:
        rows = res.setdefault(f"quality_{a.forward_dtype}", [])
        model.load_state_dict(state)
        dense = perplexity(model, tok, eval_texts, seqlen=a.seqlen, max_windows=a.eval_windows)
        rows.append(dict(method="dense", setting="-", ppl=round(dense, 2)))
        print(f"dense perplexity on {a.source} eval: {dense:.2f}", flush=True)
        for setting in (a.settings or "0.5,0.6,0.7,2:4,4:8").split(","):
            for method in methods:
                out = run(method, setting, a.forward_dtype)
                if out is None:
                    continue
                rep, mb = out
                ppl = perplexity(model, tok, eval_texts, seqlen=a.seqlen, max_windows=a.eval_windows)
                row = dict(method=method, setting=setting, ppl=round(ppl, 2), seconds=round(rep.seconds, 1))
                rows.append(row)
                print(json.dumps(row), flush=True)
                atomic_write_json(out_path, results)

    for section, rows in res.items():
        print(f"\n== {key} {section}")
        for r in rows:
            print("  ".join(f"{k}={v}" for k, v in r.items() if k != "timings"))


if __name__ == "__main__":
    main()
