"""Re-run a seeded random sample of the committed neutral-protocol runs from their configs, and regenerate a
seeded random sample of the committed self-generated sets, from scratch, and compare with what is committed.

    python benchmarks/rerun_check.py                        # 4 runs and 1 synthetic set (about 10 minutes on 2 idle cores)
    python benchmarks/rerun_check.py --runs 8 --sets 2      # a larger sample
    python benchmarks/rerun_check.py --ids ID [ID ...] --sets 0 --replace --out results/rerun_refresh.json
                                                            # recompute these runs and write them over the stale rows
    python benchmarks/rerun_check.py --ids ID --sets 0 --threads 1 --out results/rerun_threads.json
                                                            # the same run on one thread: another reduction order
    python benchmarks/rerun_check.py --all --skip-checked --sets 0 --resume --out results/rerun_full.json
                                                            # every committed run no earlier report checked, in a
                                                            # seeded random order (a cut-off leaves a random sample)

A committed row is only as good as the code that wrote it: results made by an earlier state of the code would
still be read back by `run_grid` (a run id hashes the settings and CODE_VERSION, not the code itself). This check
recomputes sampled runs in a scratch results folder (`reuse=False`: nothing is copied) and compares every metric
and every window's and item's score with the committed row; each run's config must also hash to its committed id.
Each regenerated set is written to a scratch file from its manifest's settings and compared text by text. The
script writes results/rerun_check.json atomically; notebook 10_runner reads it. nbdev-test never runs it.

With `--replace`, each recomputed run is written over its committed row in every results file that holds it (the
file rewritten atomically, the other rows untouched) when any of its units differs, and the report says so: a
run found stale is refreshed, not left for `run_grid` to read back. The report is written after every run, and a
rerun with the same `--out` skips the runs it already checked, so a cut-off loses at most one run; `--resume` does
the same without `--replace`. `--skip-checked` leaves out the runs another report in results/ (rerun_*.json)
already found matching or replaced, so audits add up instead of repeating.
"""
from __future__ import annotations

import argparse
import json
import platform
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from calibsynth.core import atomic_write_json, read_jsonl, write_jsonl
from calibsynth.runner import RunConfig, read_results, rerun_is_stale as is_stale, run_grid, unit_table, UNIT_PARTS

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "results"
SUMMARY_METRICS = ("panel_mean", "leave_out", "acc")


def committed_runs() -> dict[str, dict]:
    "Every committed neutral-protocol run, by id, with the files it is in."
    runs = {}
    for path in sorted(RESULTS.glob("2*-neutral.jsonl")):
        for row in read_results(path):
            runs.setdefault(row["run_id"], row | {"files": []})["files"].append(path.name)
    return runs


def replace_rows(new: dict, files: list[str]) -> None:
    "Write the recomputed row `new` over the row of the same run id in each of `files` (in results/)."
    for name in files:
        path = RESULTS / name
        rows = read_results(path)
        at = [i for i, r in enumerate(rows) if r["run_id"] == new["run_id"]]
        if len(at) != 1:
            raise ValueError(f"{name} holds run {new['run_id']} {len(at)} times, expected once")
        rows[at[0]] = new
        write_jsonl(path, rows, sort_keys=True)  # the runner's own line format: keys sorted


def unit_differences(old: dict, new: dict) -> dict:
    "Per part: the largest absolute difference of a unit's score (log-ppl or correctness) and the units compared."
    out = {}
    for part, (group, index, value) in UNIT_PARTS.items():
        if part not in old["metrics"].get("units", {}):
            continue  # e.g. a run that skips the suite
        a, b = (unit_table([r], part)[[group, index, value]] for r in (old, new))
        joined = a.merge(b, on=[group, index], how="outer", suffixes=("_old", "_new"), indicator=True)
        diff = (joined[f"{value}_old"] - joined[f"{value}_new"]).abs()
        out[part] = dict(units=int(len(joined)), unmatched=int((joined["_merge"] != "both").sum()),
                         max_abs_diff=float(diff.max()), differing=int((diff > 0).sum()))
    return out


def rerun(row: dict, scratch: Path, replace: bool = False) -> dict:
    config = RunConfig.from_row(row)
    if config.run_id != row["run_id"]:
        raise ValueError(f"committed run {row['run_id']} hashes to {config.run_id} under this code")
    start = time.perf_counter()
    run_grid([config], scratch / "rerun.jsonl", progress=False, reuse=False)
    new = next(r for r in read_results(scratch / "rerun.jsonl") if r["run_id"] == row["run_id"])
    metrics = {m: dict(committed=row["metrics"].get(m), rerun=new["metrics"].get(m)) for m in SUMMARY_METRICS
               if m in row["metrics"]}
    units = unit_differences(row, new)
    stale = is_stale(dict(units=units))
    if replace and stale:  # a row that matches keeps its line (and its recorded seconds)
        replace_rows(new, row["files"])
    return dict(run_id=row["run_id"], files=row["files"], model=config.model, method=config.method,
                pattern=config.pattern, stale=stale, replaced=replace and stale,
                source=config.source, seed=config.seed, sparsity=config.sparsity, seconds=round(time.perf_counter() - start, 1),
                metrics=metrics, units=units)


def regenerate(manifest: Path, scratch: Path) -> dict:
    "Build the set of `manifest` again from its settings and compare its texts with the committed ones."
    from calibsynth.models import load_model
    from calibsynth.synth import SynthConfig, build_synthetic

    man = json.loads(manifest.read_text())
    committed = [r["text"] for r in read_jsonl(manifest.with_name(manifest.name.replace(".manifest.json", ".jsonl")))]
    model, tok = load_model(man["model"])
    out = scratch / manifest.name.replace(".manifest.json", ".jsonl")
    start = time.perf_counter()
    build_synthetic(model, tok, man["source"], SynthConfig(**man["config"]), out, model_spec=man["model"], progress=False)
    again = [r["text"] for r in read_jsonl(out)]
    return dict(set=manifest.name.replace(".manifest.json", ""), model=man["model"], seconds=round(time.perf_counter() - start, 1),
                committed_texts=len(committed), regenerated_texts=len(again), identical=committed == again,
                same_texts=len(set(committed) & set(again)))


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=4, help="committed neutral runs to recompute")
    ap.add_argument("--sets", type=int, default=1, help="committed budgeted self-generated sets to regenerate")
    ap.add_argument("--seed", type=int, default=0, help="seed of the sample")
    ap.add_argument("--ids", nargs="+", help="recompute these committed runs instead of a random sample")
    ap.add_argument("--all", action="store_true", help="every committed run, in a seeded random order")
    ap.add_argument("--skip-checked", action="store_true",
                    help="leave out runs another results/rerun_*.json found matching or replaced")
    ap.add_argument("--resume", action="store_true", help="keep the runs and sets --out already holds; do the rest")
    ap.add_argument("--replace", action="store_true", help="write each recomputed run over its committed rows")
    ap.add_argument("--threads", type=int, help="torch threads to recompute with (default: torch's own choice)")
    ap.add_argument("--out", default=str(RESULTS / "rerun_check.json"))
    args = ap.parse_args()
    if args.runs < 0 or args.sets < 0:
        raise SystemExit(f"--runs and --sets must be >= 0, got {args.runs}, {args.sets}")
    if args.threads is not None:
        if args.threads < 1:
            raise SystemExit(f"--threads must be >= 1, got {args.threads}")
        torch.set_num_threads(args.threads)  # the CPU's reduction order: it moves a run's numbers
    rng = np.random.default_rng(args.seed)
    runs = committed_runs()
    unknown = sorted(set(args.ids or ()) - set(runs))
    if unknown:
        raise SystemExit(f"--ids: no committed neutral run has the id(s) {unknown}")
    if args.ids and args.all:
        raise SystemExit("--ids and --all both name the runs to check: give one")
    size = len(runs) if args.all else min(args.runs, len(runs))
    run_sample = ([runs[i] for i in dict.fromkeys(args.ids)] if args.ids else
                  [runs[i] for i in rng.choice(sorted(runs), size=size, replace=False)])
    if args.skip_checked:
        checked = set()
        for other in sorted(RESULTS.glob("rerun_*.json")):
            earlier = json.loads(other.read_text())
            # a report made on another thread count checked another reduction order, not the committed rows
            if other.resolve() != Path(args.out).resolve() and earlier.get("threads", torch.get_num_threads()) == torch.get_num_threads():
                checked |= {r["run_id"] for r in earlier["runs"] if r.get("replaced") or not is_stale(r)}
        run_sample = [row for row in run_sample if row["run_id"] not in checked]
    # the neutral protocol's sets: built to a token budget
    manifests = sorted(p for p in (RESULTS / "synthetic").glob("*/*.manifest.json")
                       if "target_tokens" in json.loads(p.read_text())["config"])
    set_sample = [manifests[i] for i in rng.choice(len(manifests), size=min(args.sets, len(manifests)), replace=False)]
    report = dict(seed=args.seed, machine=platform.machine(), threads=torch.get_num_threads(), committed_runs=len(runs), committed_sets=len(manifests),
                  runs=[], sets=[])
    if (args.replace or args.resume) and Path(args.out).exists():  # the runs and sets already checked are not redone
        before = json.loads(Path(args.out).read_text())
        report["runs"], report["sets"] = before["runs"], before["sets"]
    done = {r["run_id"] for r in report["runs"]}
    built = {s["set"] for s in report["sets"]}
    with tempfile.TemporaryDirectory(prefix="calibsynth-rerun-") as scratch:
        for row in run_sample:
            if row["run_id"] in done:
                continue
            report["runs"].append(rerun(row, Path(scratch), args.replace))
            print(report["runs"][-1], flush=True)
            atomic_write_json(args.out, report)
        for manifest in set_sample:
            if manifest.name.replace(".manifest.json", "") in built:
                continue
            report["sets"].append(regenerate(manifest, Path(scratch)))
            print(report["sets"][-1], flush=True)
            atomic_write_json(args.out, report)
    atomic_write_json(args.out, report)


if __name__ == "__main__":
    main()
