"""The measurements behind the evaluation design in nbs/08_evaluate.ipynb, on SmolLM2-135M with bf16 forwards:

- per-window log-perplexity of the neutral panel (`--windows` random 256-token windows per panel source) for
  Wanda 50% pruned models calibrated on two sources (and a second calibration seed of the first source), from
  which the notebook computes the paired standard error of the panel-mean difference against the window count;
- per-item correctness on the neutral zero-shot suite (`--items` per task) for the dense model and the two
  pruned models: the dense accuracy against chance, and the paired standard error of an accuracy difference;
- the wall seconds of each step (and the machine's load average, which such numbers depend on).

    python benchmarks/evaluation_design.py            # about half an hour on 2 idle CPU cores

The committed results/evaluation_design.json was measured with the calibration sampler of its time (windows drawn
one by one, with replacement); the sampler now draws without reuse, so a rerun calibrates its three models on other
windows. What the design takes from it, the spread of paired per-window differences, is a property of the panel's
windows, not of which calibration windows were drawn.

It writes results/evaluation_design.json (atomically, after every step). The notebook reads it; nbdev-test never
runs this script.
"""
from __future__ import annotations

import argparse
import copy
import os
import time

import torch

from calibsynth.core import atomic_write_json
from calibsynth.evaluate import NEUTRAL_TASKS, PANEL_SEQLEN, evaluate_panel, evaluate_suite
from calibsynth.models import load_model
from calibsynth.prune import prune
from calibsynth.sources import PANEL_SOURCES, sample_calibration

MODEL, METHOD, SPARSITY, FORWARD_DTYPE = "smollm2-135m", "wanda", 0.5, "bfloat16"
CALIB_SAMPLES, CALIB_SEQLEN = 32, 256


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--windows", type=int, default=64, help="random windows per panel source")
    p.add_argument("--items", type=int, default=200, help="items per neutral task")
    p.add_argument("--runs", default="bible:0,pydoc:0,bible:1", help="calibration source:seed of each pruned model")
    p.add_argument("--suite-runs", type=int, default=2, help="how many of the pruned runs (the first ones) take the suite")
    p.add_argument("--out", default="results/evaluation_design.json")
    a = p.parse_args()
    out = dict(model=MODEL, forward_dtype=FORWARD_DTYPE, method=METHOD, sparsity=SPARSITY,
               calibration=dict(n_samples=CALIB_SAMPLES, seqlen=CALIB_SEQLEN),
               panel=dict(sources=list(PANEL_SOURCES), seqlen=PANEL_SEQLEN, n_windows=a.windows, seed=0),
               suite=dict(tasks=list(NEUTRAL_TASKS), n_items=a.items, seed=0),
               machine=dict(cpus=os.cpu_count(), torch_threads=torch.get_num_threads(), loadavg_start=os.getloadavg()[0]),
               runs={})
    model, tok = load_model(MODEL)

    def suite(m):
        t0 = time.perf_counter()
        df = evaluate_suite(m, tok, NEUTRAL_TASKS, a.items, seed=0, forward_dtype=FORWARD_DTYPE)
        return dict(suite={t: g.correct.tolist() for t, g in df.groupby("task", sort=False)},
                    suite_norm={t: g.correct_norm.tolist() for t, g in df.groupby("task", sort=False)},
                    suite_seconds=time.perf_counter() - t0)

    def save():
        out["machine"]["loadavg_end"] = os.getloadavg()[0]
        atomic_write_json(a.out, out)

    out["runs"]["dense"] = suite(model)
    save()
    print("dense suite", round(out["runs"]["dense"]["suite_seconds"]), "s", flush=True)
    for k, spec in enumerate(a.runs.split(",")):
        source, seed = spec.split(":")
        run = dict(source=source, seed=int(seed))
        pruned = copy.deepcopy(model)
        calib = sample_calibration(source, tok, CALIB_SAMPLES, CALIB_SEQLEN, seed=int(seed))
        t0 = time.perf_counter()
        prune(pruned, calib, METHOD, SPARSITY, forward_dtype=FORWARD_DTYPE, progress=False)
        run["prune_seconds"] = time.perf_counter() - t0
        t0 = time.perf_counter()
        df = evaluate_panel(pruned, tok, PANEL_SOURCES, PANEL_SEQLEN, a.windows, seed=0, forward_dtype=FORWARD_DTYPE)
        run["panel_seconds"] = time.perf_counter() - t0
        run["panel"] = {s: g.log_ppl.astype(float).round(6).tolist() for s, g in df.groupby("source", sort=False)}
        if k < a.suite_runs:
            run |= suite(pruned)
        out["runs"][f"{METHOD}{int(SPARSITY * 100)}-{source}-s{seed}"] = run
        save()
        print(spec, {key: round(v) for key, v in run.items() if key.endswith("seconds")}, flush=True)
        del pruned


if __name__ == "__main__":
    main()
