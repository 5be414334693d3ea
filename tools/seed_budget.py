"""How many seeds the first sections of notebooks 24 and 21 need, from their measured variance components (issue 25).

Notebook 24's first section (the narrow panel: SmolLM2 under Wanda and SparseGPT, Gemma under Wanda, at each model's
regime level) and notebook 21's (the gap between the worst and the best source at 60% and 2:4 against 50%) were run
with six seeds. Its verdicts now read the panel's genres as a random factor, so the standard error
of each declared comparison is made of a seed share, a genre share and their interaction. This tool measures the
three on all six seeds and projects the standard error to three seeds (the seeds of the wide-panel sections), and
adds up the wall time the dropped seeds cost (their runs and their self-generated sets):

    python tools/seed_budget.py            # a few seconds; writes results/seed_budget.json

It reads the runs of seeds 0-2 in results/ and those of seeds 3-5 where they were archived, results/archive/seed_budget/,
so it recomputes the same numbers after the cut.
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
RESULTS = ROOT / "results"
ARCHIVE = RESULTS / "archive/seed_budget"
OWN = "news"  # the self-generated sets' prefix corpus, notebook 24's comparison (2)
KEYS = ["seed", "eval_source", "window"]


def all_units(name: str, part: str) -> pd.DataFrame:
    "The per-window rows of `part` of the runs in results file `name`, archived seeds included."
    return pd.concat([unit_table(p, part) for p in (RESULTS / name, ARCHIVE / name) if p.exists()], ignore_index=True)


def units(part: str) -> pd.DataFrame:
    "Notebook 24's first-section rows of `part` (each model and method at its regime level, 50%)."
    t = all_units("24_main_table.jsonl", part)
    t = t[t.method.isin(["wanda", "sparsegpt"]) & (t.sparsity == 0.5) & (t.pattern == "unstructured")]
    return t.assign(self_generated=t.source.str.startswith("syn:"))


def genre_table(t: pd.DataFrame, other: str) -> pd.DataFrame:
    "Seeds x genres: the self-generated set minus `other` ('average': the real sources' mean), mean over windows."
    ours = t[t.self_generated].groupby(KEYS).log_ppl.mean()
    real = t[~t.self_generated]
    theirs = (real.groupby(KEYS).log_ppl.mean() if other == "average" else
              real[real.source == other].groupby(KEYS).log_ppl.mean())
    return (ours - theirs).dropna().groupby(["seed", "eval_source"]).mean().unstack("eval_source")


def gap_tables() -> dict:
    """Notebook 21's comparisons as seeds x genres tables: the worst source's log-ppl minus the best's (the two its
    2:4 runs hold, ranked at 50%), at 60% and at 2:4 minus at 50%, on the panel and on the leave-out domains."""
    out = {}
    for part, name in (("panel", "panel"), ("domains", "leave-out")):
        t = all_units("21_sparsity.jsonl", part)
        t = t[t.method == "wanda"]
        pair = sorted(t[t.pattern == "2:4"].source.unique())  # the two compared (60% also holds the regime run)
        at50 = t[(t.sparsity == 0.5) & (t.pattern == "unstructured")]
        best, worst = at50[at50.source.isin(pair)].groupby("source").log_ppl.mean().sort_values().index
        if part == "domains":
            t = t[~t.eval_source.isin(pair)]
        t = t.assign(setting=t.pattern.where(t.pattern != "unstructured", (t.sparsity * 100).round().astype(int).astype(str) + "%"))
        wide = t[t.source.isin(pair)].pivot_table(index=["setting"] + KEYS, columns="source", values="log_ppl")
        gap = (wide[worst] - wide[best]).groupby(["setting", "seed", "eval_source"]).mean()
        for setting in ("60%", "2:4"):
            out[f"{setting} vs 50% ({name})"] = (gap[setting] - gap["50%"]).dropna().unstack("eval_source")
    return out


def seed_sizing(seeds_kept: int = 3) -> dict:
    panel, domains = units("panel"), units("domains")
    cells = {}
    groups = [((model, method), p) for (model, method), p in panel.groupby(["model", "method"])] + [(("21", "gap"), None)]
    for (model, method), p in groups:
        if p is None:  # notebook 21's first section
            tables, cell = gap_tables(), "21_sparsity wanda gap"
        else:
            d = domains[(domains.model == model) & (domains.method == method) & (domains.eval_source != OWN)]
            tables = {"vs real average (panel)": genre_table(p, "average"), f"vs {OWN} (panel)": genre_table(p, OWN),
                      f"vs {OWN} (leave-out)": genre_table(d, OWN)}
            cell = f"24_main_table {model} {method}"
        out = {}
        for name, table in tables.items():
            seeds, genres = table.shape
            comp = crossed_components(table.to_numpy())
            se_all, se_kept = projected_se(comp, seeds, genres), projected_se(comp, seeds_kept, genres)
            out[name] = dict(seeds=seeds, genres=genres, components=comp, se={seeds: se_all, seeds_kept: se_kept},
                             widening=se_kept / se_all)
        cells[cell] = out
    return cells


def dropped_cost(seeds_kept: int = 3) -> dict:
    "Wall seconds of the archived runs and of the archived self-generated sets (the from-scratch cost they carried)."
    runs = [json.loads(l) for p in sorted(ARCHIVE.glob("*.jsonl")) for l in p.read_text().splitlines()]
    assert all(r["config"]["seed"] >= seeds_kept for r in runs), "an archived run of a kept seed"
    sets = [json.loads(p.read_text()) for p in sorted(ARCHIVE.glob("synthetic/*/*.manifest.json"))]
    return dict(runs=len(runs), run_seconds=sum(r["seconds"] for r in runs), sets=len(sets),
                set_seconds=sum(m.get("seconds_last_session") or 0.0 for m in sets))


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seeds-kept", type=int, default=3)
    ap.add_argument("--out", default=str(ROOT / "results/seed_budget.json"))
    args = ap.parse_args(argv)
    cells = seed_sizing(args.seeds_kept)
    record = dict(tool="tools/seed_budget.py", seeds_kept=args.seeds_kept, cells=cells, dropped=dropped_cost(args.seeds_kept),
                  largest_widening=max(c["widening"] for cell in cells.values() for c in cell.values()))
    atomic_write_json(args.out, record)
    for cell, comps in cells.items():
        for name, c in comps.items():
            print(f"{cell:36s} {name:26s} SD seed {c['components']['seed'] ** 0.5:.4f} genre "
                  f"{c['components']['genre'] ** 0.5:.4f} interaction {c['components']['interaction'] ** 0.5:.4f}; "
                  f"SE x{c['widening']:.3f} with {args.seeds_kept} of {c['seeds']} seeds")
    print(f"dropped: {record['dropped']}")


if __name__ == "__main__":
    main()
