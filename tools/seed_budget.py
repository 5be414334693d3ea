"""How many seeds notebook 24's first section needs, from its own measured variance components (issue 25's budget).

The first section (the narrow panel: SmolLM2 under Wanda and SparseGPT, Gemma under Wanda, at each model's regime
level) was run with six seeds. Its verdicts now read the panel's genres as a random factor, so the standard error
of each declared comparison is made of a seed share, a genre share and their interaction. This tool measures the
three on all six seeds and projects the standard error to three seeds (the seeds of the wide-panel sections), and
adds up the wall time the dropped seeds cost (their runs and their self-generated sets):

    python tools/seed_budget.py            # a few seconds; writes results/amendments/main_table_seeds.json

It reads the runs of seeds 0-2 in results/24_main_table.jsonl and those of seeds 3-5 where they were archived,
results/archive/seed_budget/, so it recomputes the same numbers after the cut.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import pandas as pd

from calibsynth.core import atomic_write_json
from calibsynth.experiment.grid import unit_table
from calibsynth.stats import crossed_components, projected_se

ROOT = Path(__file__).resolve().parents[1]
RUNS = ROOT / "results/24_main_table.jsonl"
ARCHIVE = ROOT / "results/archive/seed_budget"
OWN = "news"  # the self-generated sets' prefix corpus, notebook 24's comparison (2)
KEYS = ["seed", "eval_source", "window"]


def units(part: str) -> pd.DataFrame:
    "The per-window rows of `part` from the main table's runs, archived seeds included, at each cell's level."
    t = pd.concat([unit_table(p, part) for p in (RUNS, ARCHIVE / RUNS.name) if p.exists()], ignore_index=True)
    t = t[t.method.isin(["wanda", "sparsegpt"]) & (t.sparsity == 0.5) & (t.pattern == "unstructured")]
    return t.assign(self_generated=t.source.str.startswith("syn:"))


def genre_table(t: pd.DataFrame, other: str) -> pd.DataFrame:
    "Seeds x genres: the self-generated set minus `other` ('average': the real sources' mean), mean over windows."
    ours = t[t.self_generated].groupby(KEYS).log_ppl.mean()
    real = t[~t.self_generated]
    theirs = (real.groupby(KEYS).log_ppl.mean() if other == "average" else
              real[real.source == other].groupby(KEYS).log_ppl.mean())
    return (ours - theirs).dropna().groupby(["seed", "eval_source"]).mean().unstack("eval_source")


def seed_sizing(seeds_kept: int = 3) -> dict:
    panel, domains = units("panel"), units("domains")
    cells = {}
    for (model, method), p in panel.groupby(["model", "method"]):
        d = domains[(domains.model == model) & (domains.method == method) & (domains.eval_source != OWN)]
        tables = {"vs real average (panel)": genre_table(p, "average"), f"vs {OWN} (panel)": genre_table(p, OWN),
                  f"vs {OWN} (leave-out)": genre_table(d, OWN)}
        out = {}
        for name, table in tables.items():
            seeds, genres = table.shape
            comp = crossed_components(table.to_numpy())
            se_all, se_kept = projected_se(comp, seeds, genres), projected_se(comp, seeds_kept, genres)
            out[name] = dict(seeds=seeds, genres=genres, components=comp, se={seeds: se_all, seeds_kept: se_kept},
                             widening=se_kept / se_all)
        cells[f"{model} {method}"] = out
    return cells


def dropped_cost(seeds_kept: int = 3) -> dict:
    "Wall seconds of the archived runs and of the archived self-generated sets (the from-scratch cost they carried)."
    runs = [json.loads(l) for l in (ARCHIVE / RUNS.name).read_text().splitlines()] if (ARCHIVE / RUNS.name).exists() else []
    assert all(r["config"]["seed"] >= seeds_kept for r in runs), "an archived run of a kept seed"
    sets = [json.loads(p.read_text()) for p in sorted(ARCHIVE.glob("synthetic/*/*.manifest.json"))]
    return dict(runs=len(runs), run_seconds=sum(r["seconds"] for r in runs), sets=len(sets),
                set_seconds=sum(m.get("seconds_last_session") or 0.0 for m in sets))


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seeds-kept", type=int, default=3)
    ap.add_argument("--out", default=str(ROOT / "results/amendments/main_table_seeds.json"))
    args = ap.parse_args(argv)
    cells = seed_sizing(args.seeds_kept)
    record = dict(tool="tools/seed_budget.py", seeds_kept=args.seeds_kept, cells=cells, dropped=dropped_cost(args.seeds_kept),
                  largest_widening=max(c["widening"] for cell in cells.values() for c in cell.values()))
    atomic_write_json(args.out, record)
    for cell, comps in cells.items():
        for name, c in comps.items():
            print(f"{cell:24s} {name:26s} SD seed {c['components']['seed'] ** 0.5:.4f} genre "
                  f"{c['components']['genre'] ** 0.5:.4f} interaction {c['components']['interaction'] ** 0.5:.4f}; "
                  f"SE x{c['widening']:.3f} with {args.seeds_kept} of {c['seeds']} seeds")
    print(f"dropped: {record['dropped']}")


if __name__ == "__main__":
    main()
