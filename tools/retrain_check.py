"""Retrain committed pre-trained models (models/<name>) from scratch at their full size and compare
each retrained model's held-out perplexity with the committed manifest's, domain by domain, against RETRAIN_RTOL.

    python tools/retrain_check.py --names python            # one model (one torch thread)
    python tools/retrain_check.py --names python,lexicon    # two, one process each

Each model trains in a temporary folder (the committed checkpoints are never touched), resumably through the
training state in the cache. The script writes results/retrain_check.json atomically after each model; notebook
12_pretrain reads it. About 2.5 hours per known-data model on one core of this machine (13 minutes for the first two); nbdev-test never runs it.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

from calibsynth.core import atomic_write_json, cpu_arithmetic
from calibsynth.pretrain import MIXTURES, RETRAIN_RTOL, ensure_model, matches_manifest, models_dir, read_manifest
from calibsynth.experiment.profiles import active_profile


def retrain(name: str) -> dict:
    "Train `name` into a temporary root and compare its manifest with the committed one."
    committed = read_manifest(name, root=models_dir())
    with tempfile.TemporaryDirectory(prefix="calibsynth-retrain-") as root:
        start = time.perf_counter()
        retrained = read_manifest(ensure_model(name, retrain=True, root=root))
        seconds = time.perf_counter() - start
    a, b = committed["heldout_perplexity"], retrained["heldout_perplexity"]
    return dict(name=name, seconds=round(seconds, 1), within_rtol=matches_manifest(committed, retrained),
                committed=a, retrained=b, relative_difference={d: round(b[d] / a[d] - 1, 6) for d in a},
                committed_code_version=committed["code_version"], retrained_code_version=retrained["code_version"],
                final_heldout_loss=dict(committed=committed["final"]["heldout_loss"],
                                        retrained=retrained["final"]["heldout_loss"]))


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--names", required=True, help=f"comma-separated mixtures to retrain, of {list(MIXTURES)}")
    p.add_argument("--out", default="results/retrain_check.json")
    args = p.parse_args()
    names = [n for n in args.names.split(",") if n]
    if unknown := [n for n in names if n not in MIXTURES]:
        raise SystemExit(f"unknown mixture(s) {unknown}; mixtures: {list(MIXTURES)}")
    if active_profile().name != "quick":
        raise SystemExit("the committed models are the quick profile's: unset CALIBSYNTH_PROFILE")
    out = Path(args.out)
    report = dict(rtol=RETRAIN_RTOL, machine=dict(cpus=os.cpu_count(), processor=platform.processor() or platform.machine(),
                                                 arithmetic=cpu_arithmetic()),
                  models={})
    if out.exists():
        report["models"] = json.loads(out.read_text()).get("models", {})
    with ProcessPoolExecutor(max_workers=len(names)) as pool:
        for row in pool.map(retrain, names):
            report["models"][row["name"]] = row
            atomic_write_json(out, report)
            print(f"{row['name']}: {row['seconds']:.0f} s, within {RETRAIN_RTOL:.0%}: {row['within_rtol']}, "
                  f"relative differences {row['relative_difference']}")


if __name__ == "__main__":
    main()
