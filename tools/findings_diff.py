"""Record what a change to the analysis did to the committed verdicts: every comparison of results/findings/*.json
at an earlier commit against the same comparison now, matched by finding and metric.

    python tools/findings_diff.py --before df7bff1 --change "..." --out results/amendments/corpus_balanced.json

A change of the statistics after the data were seen is an amendment to the declared analysis. It is only
honest when it is disclosed with what it moved, in both directions: this writes, for each comparison, the
label, estimate and interval before and after, and which labels changed. The README reads the file.
"""
from __future__ import annotations

import argparse
import datetime
import json
import subprocess
from pathlib import Path

from calibsynth.core import atomic_write_json

ROOT = Path(__file__).resolve().parents[1]
FINDINGS = "results/findings"
FIELDS = ("label", "estimate", "ci_low", "ci_high", "p_value")


def findings_at(rev: str | None) -> dict[str, dict]:
    "The findings files at git revision `rev` (None: the working tree), by file name."
    if rev is None:
        return {p.name: json.loads(p.read_text()) for p in sorted((ROOT / FINDINGS).glob("*.json"))}
    names = subprocess.run(["git", "ls-tree", "--name-only", f"{rev}:{FINDINGS}"], cwd=ROOT, check=True,
                           capture_output=True, text=True).stdout.split()
    show = lambda name: subprocess.run(["git", "show", f"{rev}:{FINDINGS}/{name}"], cwd=ROOT, check=True,
                                       capture_output=True, text=True).stdout
    return {name: json.loads(show(name)) for name in names if name.endswith(".json")}


def comparisons(finding: dict) -> dict[str, dict]:
    "A finding's claim and its comparisons, keyed by position and metric (two comparisons may share a metric)."
    if not finding:
        return {}
    out = {"claim": {k: finding.get(k) for k in FIELDS} | {"label": finding.get("verdict")}}
    for i, part in enumerate(finding.get("evidence", [])):
        out[f"{i}: {part.get('metric', '')}"] = {k: part.get(k) for k in FIELDS}
    return out


def diff(before: dict[str, dict], after: dict[str, dict]) -> list[dict]:
    rows = []
    for name in sorted(set(before) | set(after)):
        old, new = comparisons(before.get(name, {})), comparisons(after.get(name, {}))
        for key in list(dict.fromkeys([*old, *new])):
            a, b = old.get(key), new.get(key)
            rows.append(dict(finding=name.removesuffix(".json"), comparison=key, before=a, after=b,
                             label_changed=(a or {}).get("label") != (b or {}).get("label")))
    return rows


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--before", required=True, help="git revision whose findings are the 'before'")
    ap.add_argument("--change", required=True, help="what changed in the analysis, in a sentence")
    ap.add_argument("--out", required=True, help="JSON file to write (atomically)")
    args = ap.parse_args()
    rows = diff(findings_at(args.before), findings_at(None))
    if not rows:
        raise SystemExit(f"no comparisons found in {FINDINGS} at {args.before!r} or now")
    report = dict(date=datetime.date.today().isoformat(), before=args.before, change=args.change,
                  comparisons=len(rows), labels_changed=sum(r["label_changed"] for r in rows), rows=rows)
    atomic_write_json(args.out, report)
    print(f"{report['comparisons']} comparisons, {report['labels_changed']} labels changed")
    for r in rows:
        if r["label_changed"]:
            print(f"  {r['finding']}: {r['comparison']}: {(r['before'] or {}).get('label')} -> {(r['after'] or {}).get('label')}")


if __name__ == "__main__":
    main()
