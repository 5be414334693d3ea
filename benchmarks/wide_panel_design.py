"""The measurements behind the wide panel's window count (nbs/08_evaluate.ipynb, "The wide panel"): per-window
log-perplexity on every corpus of `WIDE_PANEL` for SmolLM2-135M pruned by Wanda at 60% (the paper's high-sparsity
setting), calibrated on two sources (news, pydoc) with two calibration seeds of the first, scored as the wide panel
scores (`Instrument(weights="bfloat16")`). From them the notebook estimates the variance components of a paired
difference between calibration sets (between genres, windows within a genre, calibration seeds) and sizes the
windows per corpus.

    python benchmarks/wide_panel_design.py            # about 10 minutes on 2 idle CPU cores

Writes results/wide_panel_design.json atomically after every model, and resumes from it.
"""
from __future__ import annotations

import argparse
import copy
import json
import os
import time
from pathlib import Path

import torch

from calibsynth.core import atomic_write_json
from calibsynth.evaluate import WIDE_PANEL, evaluate_panel, scored_model, window_capacity
from calibsynth.models import load_model
from calibsynth.prune import prune
from calibsynth.sources import sample_calibration

MODEL, METHOD, SPARSITY = "smollm2-135m", "wanda", 0.6
CALIBRATIONS = {"news-0": ("news", 0), "news-1": ("news", 1), "pydoc-0": ("pydoc", 0)}  # name: (source, seed)


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--windows", type=int, default=48, help="windows per corpus (fewer where a corpus holds fewer)")
    p.add_argument("--out", default="results/wide_panel_design.json")
    a = p.parse_args()
    out = Path(a.out)
    dense, tok = load_model(MODEL)
    counts = {s: min(a.windows, window_capacity(tok, s)) for s in WIDE_PANEL}
    res = json.loads(out.read_text()) if out.exists() else {}
    if res.get("windows") != counts:
        res = dict(model=MODEL, method=METHOD, sparsity=SPARSITY, windows=counts, calibration=dict(n_samples=32, seqlen=256),
                   scoring=dict(weights="bfloat16", forward_dtype="bfloat16", seqlen=256, seed=0),
                   machine=dict(cpus=os.cpu_count(), torch_threads=torch.get_num_threads()), runs={})
    for name, (source, seed) in CALIBRATIONS.items():
        if name in res["runs"]:
            continue
        model = copy.deepcopy(dense)
        t0 = time.perf_counter()
        prune(model, sample_calibration(source, tok, 32, 256, seed=seed), METHOD, SPARSITY, forward_dtype="bfloat16",
              progress=False)
        t1 = time.perf_counter()
        table = evaluate_panel(scored_model(model, "bfloat16"), tok, WIDE_PANEL, n_windows=counts, forward_dtype="bfloat16")
        t2 = time.perf_counter()
        res["runs"][name] = dict(source=source, seed=seed, prune_s=round(t1 - t0, 1), eval_s=round(t2 - t1, 1),
                                 log_ppl={s: [round(float(v), 5) for v in part.log_ppl]
                                          for s, part in table.groupby("source", sort=False)})
        atomic_write_json(out, res)
        print(f"{name}: prune {t1 - t0:.0f} s, panel {t2 - t1:.0f} s", flush=True)
    print("wrote", out)


if __name__ == "__main__":
    main()
