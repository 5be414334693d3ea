"""Tokens/s of the evaluation scorer, before and after issue 25's change, on the same panel windows:
float32 weights under bfloat16 autocast (the committed runs' instrument) against a bfloat16 copy of the weights
(`Instrument(weights="bfloat16")`: linear layers and head in bfloat16, the rest float32 under autocast) and a copy in
bfloat16 throughout, each checked against a float32 forward on the same windows: for a dense model and
two magnitude-pruned copies (50% and 55%), and for the per-window differences a verdict is made of (pruned minus
dense, and one pruned model minus the other, as two calibration sets are compared).

    python benchmarks/eval_speed.py --models smollm2-135m gemma3-270m --windows 16
"""
from __future__ import annotations

import argparse
import copy
import platform
import time

import numpy as np
import torch

from calibsynth.core import atomic_write_json
from calibsynth.evaluate import NEUTRAL_PANEL, evaluate_panel, scored_model
from calibsynth.models import load_model
from calibsynth.prune import prune

PATHS = {  # name: (the scored copy's weights: `scored_model`, or a whole-model cast; forward dtype)
    "float32 reference": (None, "float32"),
    "autocast (committed runs)": (None, "bfloat16"),
    "bf16 linears and head": ("bfloat16", "bfloat16"),  # Instrument(weights="bfloat16"): the new instrument
    "bf16 throughout (refused)": ("whole", None),  # every weight cast, no autocast: faster, less exact
}


def timed_panel(model, tok, weights, forward_dtype, windows, batch_size):
    # the copy is part of the measured time
    scored = copy.deepcopy(model).to(torch.bfloat16) if weights == "whole" else scored_model(model, weights)
    t0 = time.perf_counter()
    table = evaluate_panel(scored, tok, NEUTRAL_PANEL, n_windows=windows, forward_dtype=forward_dtype,
                           batch_size=batch_size)
    return table.log_ppl.to_numpy(np.float64), time.perf_counter() - t0


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--models", nargs="+", default=["smollm2-135m", "gemma3-270m"])
    p.add_argument("--windows", type=int, default=16, help="windows per panel corpus")
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--out", default="results/eval_speed.json")
    a = p.parse_args()
    rows = []
    for alias in a.models:
        dense, tok = load_model(alias)
        pruned, other = copy.deepcopy(dense), copy.deepcopy(dense)
        prune(pruned, None, "magnitude", 0.5, progress=False)
        prune(other, None, "magnitude", 0.55, progress=False)
        evaluate_panel(dense, tok, NEUTRAL_PANEL[:1], n_windows=1, forward_dtype="bfloat16")  # warm-up, caches
        scores = {}
        for path, (weights, fd) in PATHS.items():
            for name, model in (("dense", dense), ("pruned", pruned), ("pruned 55%", other)):
                scores[path, name], seconds = timed_panel(model, tok, weights, fd, a.windows, a.batch_size)
                n_tokens = 3 * a.windows * 256
                rows.append(dict(model=alias, path=path, which=name, seconds=round(seconds, 3),
                                 tokens_per_s=round(n_tokens / seconds, 1)))
        contrasts = {"pruned": ("pruned", "dense"), "pruned 55%": ("pruned 55%", "pruned")}  # row: (a, b) of a - b
        for path in PATHS:
            for r in rows:
                if r["model"] == alias and r["path"] == path:
                    r["max_abs_window_error"] = float(np.abs(scores[path, r["which"]] -
                                                             scores["float32 reference", r["which"]]).max())
                    if r["which"] in contrasts:
                        x, y = contrasts[r["which"]]
                        err = (scores[path, x] - scores[path, y]) - (scores["float32 reference", x] - scores["float32 reference", y])
                        r |= dict(contrast=f"{x} - {y}", max_abs_difference_error=float(np.abs(err).max()),
                                  mean_difference_error=float(err.mean()))
        base = {r["which"]: r["tokens_per_s"] for r in rows if r["model"] == alias and r["path"].startswith("autocast")}
        for r in rows:
            if r["model"] == alias:
                r["speedup_vs_autocast"] = round(r["tokens_per_s"] / base[r["which"]], 2)
                contrast = (f"  {r['contrast']}: error max {r['max_abs_difference_error']:.4f} "
                            f"mean {r['mean_difference_error']:+.5f}") if "contrast" in r else ""
                print(f"{alias:14s} {r['which']:10s} {r['path']:26s} {r['tokens_per_s']:8.0f} tok/s  "
                      f"x{r['speedup_vs_autocast']:.2f}  window error max {r['max_abs_window_error']:.4f}{contrast}")
    atomic_write_json(a.out, dict(windows_per_corpus=a.windows, corpora=list(NEUTRAL_PANEL), seqlen=256,
                                  batch_size=a.batch_size, threads=torch.get_num_threads(), torch=torch.__version__,
                                  cpu=platform.processor() or platform.machine(), rows=rows))
    print("wrote", a.out)


if __name__ == "__main__":
    main()
