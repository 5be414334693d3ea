"""Regenerate named committed self-generated sets alone on this machine: is each identical, and how long does it take?

A set's generation time is recorded when it is written, and some sets were written while other jobs held the
cores, so their recorded time overstates what a from-scratch reproduction spends on them. `calibsynth verify --sets N`
regenerates a random sample; this regenerates the sets named, so the ones whose recorded time is suspect can be
measured again with nothing else running:

    python tools/regenerate_sets.py smollm2-135m/news-prefix-d223c8b9    # about 3.5 min a SmolLM2 set

Writes the verifier's report format (`sets`: set, model, seconds, identical, ...) to results/rerun_generation.json
atomically after every set, and leaves out a set the report already holds.
"""
from __future__ import annotations

import argparse
import json
import platform
import tempfile
from pathlib import Path

from calibsynth.core import atomic_write_json
from calibsynth.experiment.verify import committed_sets, regenerate_set

ROOT = Path(__file__).resolve().parents[1]


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("sets", nargs="+", help="MODEL/NAME of a set under results/synthetic/")
    ap.add_argument("--out", default=str(ROOT / "results/rerun_generation.json"))
    args = ap.parse_args(argv)
    known = {f"{p.parent.name}/{p.name.removesuffix('.manifest.json')}": p for p in committed_sets(ROOT / "results")}
    unknown = [s for s in args.sets if s not in known]
    if unknown:
        raise SystemExit(f"not a committed budgeted set: {unknown}; known: {sorted(known)}")
    out = Path(args.out)
    report = json.loads(out.read_text()) if out.exists() else dict(
        committed_runs=0, committed_sets=len(known), machine=platform.machine(), seed=None, runs=[], sets=[])
    for name in args.sets:
        model, set_name = name.split("/")
        if any(s["set"] == set_name and s["model"] == model for s in report["sets"]):
            continue
        with tempfile.TemporaryDirectory() as scratch:
            row = regenerate_set(known[name], Path(scratch))
        report["sets"].append(row)
        atomic_write_json(out, report)
        print(f"{name}: {row['seconds']:.0f} s, identical {row['identical']}", flush=True)


if __name__ == "__main__":
    main()
