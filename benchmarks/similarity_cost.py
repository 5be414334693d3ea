"""What the similarity scoring of a from-scratch reproduction costs: re-score a random sample of the committed
Min-K%++ window rows (`results/similarity-windows-*.jsonl`, notebooks 23 and 26) in a scratch folder, alone on this
machine, check the scores match the committed ones, and extrapolate the seconds per row to every committed row.

    python benchmarks/similarity_cost.py --sample 3    # about a minute on SmolLM2

Writes results/similarity_cost.json (read by the README's cost).
"""
from __future__ import annotations

import argparse
import json
import random
import tempfile
import time
from pathlib import Path

import numpy as np

from calibsynth.core import atomic_write_json
from calibsynth.experiment.scores import SCORE_COLUMNS, window_similarity_table
from calibsynth.models import load_model

ROOT = Path(__file__).resolve().parents[1]


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sample", type=int, default=3, help="rows re-scored per committed file")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default=str(ROOT / "results/similarity_cost.json"))
    args = ap.parse_args(argv)
    files = sorted((ROOT / "results").glob("similarity-windows-*.jsonl"))
    if not files:
        raise SystemExit("no committed results/similarity-windows-*.jsonl to time")
    report = dict(sample=args.sample, seed=args.seed, files=[])
    for path in files:
        rows = [json.loads(line) for line in path.read_text().splitlines()]
        picked = random.Random(args.seed).sample(rows, min(args.sample, len(rows)))
        first = picked[0]
        loaded = load_model(first["model"])  # loading is the model's, once per reproduction: not counted per row
        with tempfile.TemporaryDirectory() as scratch:
            start = time.perf_counter()
            table = window_similarity_table(first["model"], [(r["source"], r["seed"]) for r in picked], first["n_windows"],
                                            first["window"], scratch, k=first["k"], loaded=loaded, progress=False)
            seconds = time.perf_counter() - start
        largest = max(float(np.max(np.abs(table[(table.source == r["source"]) & (table.seed == r["seed"])][c].to_numpy()
                                              - np.asarray(r[c])))) for r in picked for c in SCORE_COLUMNS)
        if largest != 0:
            raise SystemExit(f"{path.name}: re-scored windows differ from the committed ones by up to {largest:.3g}: "
                             "the timing would not be of the same computation")
        per_row = seconds / len(picked)
        report["files"].append(dict(file=path.name, model=first["model"], rows=len(rows), timed_rows=len(picked),
                                    seconds_per_row=round(per_row, 2), estimated_seconds=round(per_row * len(rows), 1),
                                    largest_score_difference=largest))
        print(f"{path.name}: {per_row:.1f} s a row x {len(rows)} rows = {per_row * len(rows) / 60:.1f} min; "
              f"largest score difference {largest:.2g}", flush=True)
    report["estimated_seconds"] = round(sum(f["estimated_seconds"] for f in report["files"]), 1)
    atomic_write_json(Path(args.out), report)


if __name__ == "__main__":
    main()
