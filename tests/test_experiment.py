"The experiment layer: run configs and ids, the grid, profiles, self-generated sets, findings, the audit."
import ast
import json
import warnings
from dataclasses import asdict, replace
from pathlib import Path

import pytest
import torch

import calibsynth
from calibsynth.experiment import grid as G
from calibsynth.experiment import profiles as P
from calibsynth.experiment import runs as R
from calibsynth.experiment.findings import findings_markdown, record_finding
from calibsynth.experiment.grid import in_shard, load_results, merge_results, read_results, run_grid, unit_table
from calibsynth.experiment.runs import RunConfig

ROOT = Path(__file__).parent.parent
LIBRARY = sorted(p for p in (ROOT / "calibsynth").glob("*.py") if p.name not in ("cli.py", "_modidx.py"))


def test_no_library_module_imports_the_experiment_layer():
    "The library stands below the experiment layer: compress() works in a user's program without it."
    for path in LIBRARY:
        tree = ast.parse(path.read_text())
        imported = [n.module or "" for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)]
        imported += [a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names]
        bad = [m for m in imported if "experiment" in m.split(".") or m in ("runner", "calibsynth.runner")]
        assert not bad, f"{path.name} imports {bad}"
    assert not (ROOT / "calibsynth" / "runner.py").exists()
    assert max(len(p.read_text().splitlines()) for p in (ROOT / "calibsynth" / "experiment").glob("*.py")) < 300


def test_run_id_is_a_hash_of_the_config_and_code_version(monkeypatch):
    a, b = RunConfig(seed=0), RunConfig(seed=1)
    before = a.run_id
    assert before == RunConfig(seed=0).run_id and before != b.run_id
    monkeypatch.setattr(R, "CODE_VERSION", "999")
    assert RunConfig(seed=0).run_id != before


def test_bad_configs_are_named():
    for kw, match in [(dict(method="pruneall"), "pruneall"), (dict(pattern="5:4"), "5:4"),
                      (dict(n_samples=0), "n_samples"), (dict(sparsity=1.5), "sparsity"),
                      (dict(eval_sources=("devil",)), "calibration domains"), (dict(tasks=("cs_cloze",)), "neutral tasks"),
                      (dict(panel_sources=("devil", "devil")), "distinct panel"), (dict(task_limit=0), "task_limit")]:
        with pytest.raises(ValueError, match=match):
            RunConfig(**kw)


def test_shards_partition_the_grid():
    ids = [RunConfig(seed=s).run_id for s in range(40)]
    parts = [[i for i in ids if in_shard(i, f"{k}/3")] for k in (1, 2, 3)]
    assert sorted(sum(parts, [])) == sorted(ids) and all(parts)
    with pytest.raises(ValueError, match="k/n"):
        in_shard(ids[0], "4/3")


def test_torn_last_line_is_dropped_with_a_warning(tmp_path):
    p = tmp_path / "r.jsonl"
    p.write_text(json.dumps({"run_id": "a", "config": {}, "metrics": {}}) + "\n" + '{"run_id": "b", "conf')
    with pytest.warns(UserWarning, match="torn"):
        rows = read_results(p, repair=True)
    assert [r["run_id"] for r in rows] == ["a"] and p.read_text().count("\n") == 1
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert len(read_results(p)) == 1


def tiny_grid(monkeypatch):
    "Configs on a tiny random model registered under an alias, with small evaluation."
    from calibsynth.models import tiny_model

    def fake_load(spec, **kw):
        m, t = tiny_model("llama", seed=0)
        m.name_or_path = spec
        return m, t

    monkeypatch.setattr(G, "load_model", fake_load)
    common = dict(model="tiny", n_samples=4, seqlen=32, eval_sources=("news", "bible"), eval_seqlen=32,
                  eval_windows=2, panel_windows=2, task_limit=4, forward_dtype="float32")
    # the suite once (the dense run); the pruned runs measure perplexity only, to keep the test short
    return [RunConfig(method="dense", tasks=("neutral_analogy",), **common)] + [
        RunConfig(method=m, source=s, tasks=(), **common) for m in ("wanda", "magnitude") for s in ("news", "bible")]


def test_grid_runs_resumes_and_merges(tmp_path, monkeypatch):
    grid = list(dict.fromkeys(tiny_grid(monkeypatch)))
    path = tmp_path / "results.jsonl"
    df = run_grid(grid[:3], path, progress=False)
    assert len(df) == 3 and {"panel_mean", "leave_out", "acc", "acc_stderr", "panel_log_ppl.devil"} <= set(df.columns)
    assert df[df.method == "dense"].acc.notna().all()
    # a kill mid-write leaves a torn line; the rerun drops it and runs only what is missing
    with open(path, "a") as f:
        f.write('{"run_id": "zz", "metr')
    with pytest.warns(UserWarning, match="torn"):
        df = run_grid(grid, path, progress=False)
    assert len(df) == len(grid) and df.run_id.is_unique
    wanda = df[df.method == "wanda"]
    assert (wanda.sparsity == 0.5).all() and (wanda.achieved_sparsity - 0.5).abs().max() < 0.01  # target and achieved
    # a row records the thread count: the CPU's reduction order, which moves bf16 numbers
    assert {r["threads"] for r in read_results(path)} == {torch.get_num_threads()}
    # shards: two files that merge into the whole grid, each run once
    a, b = tmp_path / "s1.jsonl", tmp_path / "s2.jsonl"
    run_grid(grid, a, shard="1/2", progress=False)
    run_grid(grid, b, shard="2/2", progress=False)
    assert merge_results([a, b, path], tmp_path / "all.jsonl") == len(grid)
    assert len(load_results(tmp_path / "all.jsonl")) == len(grid)


def test_configs_are_canonical():
    # runs that ignore a field share an id whatever that field says
    assert RunConfig(method="dense", source="code", seed=3).run_id == RunConfig(method="dense", source="news").run_id
    assert RunConfig(method="magnitude", source="code").run_id == RunConfig(method="magnitude", source="bible").run_id
    assert RunConfig(method="magnitude", sparsity=0.5).run_id != RunConfig(method="magnitude", sparsity=0.6).run_id
    assert RunConfig(pattern="2:4", sparsity=0.6) == RunConfig(pattern="2:4", sparsity=0.5)
    assert RunConfig(method="wanda", source="code").run_id != RunConfig(method="wanda", source="news").run_id


def test_runs_of_other_experiments_are_reused_not_redone(tmp_path, monkeypatch):
    grid = tiny_grid(monkeypatch)[1:3]
    first = run_grid(grid, tmp_path / "20_a.jsonl", progress=False)

    def no_model(*a, **k):
        raise AssertionError("a reused run must not load a model")

    monkeypatch.setattr(G, "load_model", no_model)
    second = run_grid(grid, tmp_path / "21_b.jsonl", progress=False)
    assert sorted(second.run_id) == sorted(first.run_id) and len(read_results(tmp_path / "21_b.jsonl")) == 2
    with pytest.raises(AssertionError, match="reused"):  # without reuse the runs are redone
        run_grid(grid, tmp_path / "22_c.jsonl", progress=False, reuse=False)


def test_results_carry_the_setting_label_and_bad_shards_fail_first(tmp_path, monkeypatch):
    base = tiny_grid(monkeypatch)[1:3]
    grid = base + [replace(base[0], pattern="2:4")]
    df = run_grid(grid, tmp_path / "r.jsonl", progress=False)
    assert sorted(df.setting) == ["2:4", "50%", "50%"]
    with pytest.raises(ValueError, match="'3/2'"):
        run_grid(grid, tmp_path / "other.jsonl", shard="3/2", progress=False, reuse=False)
    assert not (tmp_path / "other.jsonl").exists()


def test_panel_evaluation_keeps_paired_units_and_leaves_out_the_own_domain(tmp_path, monkeypatch):
    tiny_grid(monkeypatch)  # the tiny model behind load_model
    common = dict(model="tiny", n_samples=4, seqlen=32, eval_sources=("news", "bible"), eval_seqlen=32, eval_windows=3,
                  panel_windows=4, forward_dtype="float32", tasks=("neutral_cloze",), task_limit=12)
    configs = [RunConfig(method="wanda", source=s, seed=seed, **common) for s in ("news", "bible") for seed in (0, 1)]
    run_grid(configs, tmp_path / "r.jsonl", progress=False)
    rows = read_results(tmp_path / "r.jsonl")
    assert len(rows) == 4
    for row in rows:
        m = row["metrics"]
        assert {s: len(v) for s, v in m["units"]["panel"].items()} == {"manuals": 4, "fortunes": 4, "devil": 4}
        assert {s: len(v) for s, v in m["units"]["domains"].items()} == {"news": 3, "bible": 3}
        assert len(m["units"]["suite"]["neutral_cloze"]) == 12 and set(m["units"]["suite"]["neutral_cloze"]) <= {0, 1}
        means = {s: sum(v) / len(v) for s, v in m["units"]["panel"].items()}
        assert m["panel_mean"] == pytest.approx(sum(means.values()) / 3, abs=1e-4)
        other = "bible" if row["config"]["source"] == "news" else "news"  # the one domain left in the leave-out mean
        assert m["leave_out"] == pytest.approx(m["domain_log_ppl"][other], abs=1e-5)
    table = unit_table(tmp_path / "r.jsonl", "domains")
    assert len(table) == 4 * 2 * 3 and set(table.eval_source) == {"news", "bible"}
    items = unit_table(tmp_path / "r.jsonl", "suite")
    assert len(items) == 4 * 12 and set(items.columns) >= {"task", "item", "correct", "seed", "source", "run_id"}


def test_profiles_and_output_dirs(tmp_path, monkeypatch):
    monkeypatch.delenv("CALIBSYNTH_OUTPUT", raising=False)
    monkeypatch.setenv("CALIBSYNTH_PROFILE", "smoke")
    p = P.active_profile()
    assert p.name == "smoke" and P.active_profile("quick").name == "quick"
    with pytest.raises(ValueError, match="'huge'"):
        P.active_profile("huge")
    # smoke never writes next to the committed results; CALIBSYNTH_OUTPUT moves every profile
    assert ROOT not in P.output_dir("results", p).parents
    monkeypatch.setenv("CALIBSYNTH_OUTPUT", str(tmp_path))
    assert P.output_dir("figures") == tmp_path / "figures" and (tmp_path / "figures").is_dir()
    run = P.PROFILES["quick"].run(method="wanda", source="code")
    assert (run.n_samples, run.seqlen, run.forward_dtype, run.task_limit, run.panel_windows) == (32, 256, "bfloat16", 60, 64)


def test_filtered_synthetic_sets_derive_from_one_generation(tmp_path, monkeypatch):
    from calibsynth.core import read_jsonl
    from calibsynth.models import tiny_model
    from calibsynth.sources import synthetic_path
    from calibsynth.synth import SynthConfig, build_synthetic

    monkeypatch.setenv("CALIBSYNTH_CACHE", str(tmp_path))
    monkeypatch.setenv("CALIBSYNTH_OUTPUT", str(tmp_path / "out"))
    loaded = tiny_model("llama", seed=0)
    cfg = SynthConfig(n_docs=8, batch_size=8, max_new_tokens=20, min_tokens=4, drop_top=0.5)
    name = P.synthetic_source("tiny", "bible", cfg, loaded, progress=False)
    assert name.startswith("syn:tiny:bible:prefix-")
    derived = read_jsonl(synthetic_path(*name[4:].split(":")))
    direct = read_jsonl(build_synthetic(*loaded, "bible", cfg, tmp_path / "direct.jsonl", progress=False))
    assert [r["text"] for r in derived] == [r["text"] for r in direct] and 0 < len(direct) < 8
    # the name changes with any setting
    assert P.synthetic_source("tiny", "bible", replace(cfg, drop_top=0.25), loaded, progress=False) != name


def test_synthetic_sets_are_kept_with_the_results_and_read_back_by_a_clone(tmp_path, monkeypatch):
    from calibsynth.models import tiny_model
    from calibsynth.sources import sample_calibration, synthetic_path
    from calibsynth.synth import SynthConfig

    monkeypatch.chdir(tmp_path)  # a clone: pyproject.toml and nbs/ beside results/
    (tmp_path / "pyproject.toml").write_text("")
    (tmp_path / "nbs").mkdir()
    monkeypatch.setenv("CALIBSYNTH_OUTPUT", str(tmp_path))
    monkeypatch.setenv("CALIBSYNTH_CACHE", str(tmp_path / "cache"))
    cfg = SynthConfig(n_docs=8, batch_size=8, max_new_tokens=20, min_tokens=4, drop_top=0.0)
    loaded = tiny_model("llama", seed=0)
    name = P.synthetic_source("tiny", "news", cfg, loaded, progress=False)
    built = synthetic_path(*name[4:].split(":"))
    kept = tmp_path / "results" / "synthetic" / "tiny" / built.name
    assert kept.read_text() == built.read_text() and kept.with_name(built.stem + ".manifest.json").exists()
    draw = sample_calibration(name, loaded[1], 2, 16, seed=1)
    # A fresh clone on another machine: an empty cache, the committed set, and no model to generate with.
    monkeypatch.setenv("CALIBSYNTH_CACHE", str(tmp_path / "other-cache"))
    assert P.synthetic_source("tiny", "news", cfg, loaded=(None, None), progress=False) == name
    assert torch.equal(sample_calibration(name, loaded[1], 2, 16, seed=1), draw)  # found by name, the same draw


def test_findings_are_recorded_and_tabled(tmp_path, monkeypatch):
    monkeypatch.setenv("CALIBSYNTH_OUTPUT", str(tmp_path))
    assert "No findings" in findings_markdown(tmp_path / "results")
    from calibsynth.stats import all_hold, compare, simulate_comparison

    with pytest.raises(ValueError, match="'maybe'"):
        record_finding("20_x", "claim", "here", "maybe")
    with pytest.raises(ValueError, match="evidence"):
        record_finding("20_x", "claim", "here", "reproduced")  # a label without its comparisons
    noise = compare(simulate_comparison(effect=0.0, n_seeds=6, n_windows=40, rng_seed=3), "A", "B", "less")
    clear = compare(simulate_comparison(effect=-0.1, n_seeds=6, n_windows=40), "A", "B", "less")
    record_finding("21_y", "gap | grows", "0.1 -> 0.3", all_hold([clear, noise]), P.PROFILES["smoke"], [clear, noise])
    saved = json.loads((tmp_path / "results" / "findings" / "21_y.json").read_text())
    assert (saved["verdict"], saved["n_seeds"], saved["metric"]) == ("inconclusive", 6, "log_ppl")
    assert (saved["ci_low"], saved["ci_high"], saved["p_value"]) == (clear.ci_low, clear.ci_high, clear.p_value)
    assert [e["label"] for e in saved["evidence"]] == [clear.label, noise.label] == ["reproduced", "inconclusive"]
    cells = [[c.strip() for c in line.strip("|").split("|")] for line in findings_markdown(tmp_path / "results").splitlines()]
    assert cells[0] == ["notebook", "claim", "verdict", "primary comparison: estimate [95% CI], p",
                        "across genres (genre random): [95% CI], corrected p, genres won/tied/lost", "here"]
    assert cells[2][:3] == ["21_y", "gap / grows", "inconclusive"] and cells[2][5] == "0.1 -> 0.3"
    # a verdict without genres says why it has no across-genre reading
    assert saved["across_genres"] == dict(not_computed=f"not a comparison over evaluation genres ({clear.test})")
    assert cells[2][4].startswith("not computed: not a comparison over evaluation genres")
    assert cells[2][3] == f"{clear} (log_ppl)"


COMMITTED = sorted((ROOT / "results").glob("2[0-9]_*.jsonl"))


def committed_rows():
    return [row for path in COMMITTED for row in read_results(path)]


def test_every_committed_run_keeps_its_id():
    rows = committed_rows()
    assert len(COMMITTED) >= 6 and len(rows) > 300
    moved = [(row["run_id"], RunConfig.from_row(row).run_id) for row in rows if RunConfig.from_row(row).run_id != row["run_id"]]
    assert not moved, moved[:3]


def test_archived_first_instrument_rows_are_not_runs_any_more():
    archive = sorted((ROOT / "results" / "archive" / "first_instrument").glob("2*.jsonl"))
    assert archive, "the first instrument's rows are archived"
    for path in archive:
        row = read_results(path)[0]
        assert "protocol" not in row["config"]  # the first instrument's rows named none
        with pytest.raises(ValueError, match="retired first instrument"):
            RunConfig.from_row(row)


def _calib_document(text: str) -> str:
    "`text` under a prefix that puts it in the `calib` split (documents are split by a hash of their text)."
    from calibsynth.sources import split_of

    return next(f"({i}) {text}" for i in range(100) if split_of(f"({i}) {text}") == "calib")


def grow_registries(m, tmp_path):
    """Register a throwaway calibration source whose calib split quotes a panel entry and a held-out news article (a
    filter that iterated the registry would drop both from what committed runs were scored on), and a throwaway
    panel corpus (a suite that pooled the registry would reshuffle its items); both build into `tmp_path`."""
    import calibsynth.sources as S

    from calibsynth.evaluate import held_out_texts

    planted = [_calib_document(S.load_texts("devil", "eval")[5]), _calib_document(held_out_texts("news")[0])]
    m.setitem(S.OFFLINE_SOURCES, "zz_fake", replace(S.OFFLINE_SOURCES["news"], name="zz_fake", read=lambda: planted))
    m.setitem(S.PANEL_SOURCES, "zz_panel", replace(S.PANEL_SOURCES["devil"], name="zz_panel"))
    real = S.source_path
    m.setattr(S, "source_path", lambda name: tmp_path / f"{name}.jsonl" if name in ("zz_fake", "zz_panel", "devil") else real(name))
    # built whole: a late source's build drops text it shares with the older sources and the panel (`_held_apart`,
    # tested in test_sources), which would leave nothing here to tempt a filter that iterates the registry
    m.setattr(S, "_held_apart", lambda docs: docs)
    assert S.load_texts("zz_fake", "calib") == planted and S.load_texts("zz_panel", "eval")  # the registries did grow


def test_growing_registries_move_no_run_id_and_no_evaluation_data(monkeypatch, tmp_path):
    "A source, a panel corpus or a task registered later changes neither a committed id nor the data behind it."
    import calibsynth.evaluate as E
    import calibsynth.sources as S
    from calibsynth.core import sha256_file

    methods = ("dense", "magnitude", "wanda", "owl", "sparsegpt")
    defaults = {m: RunConfig(method=m).run_id for m in methods}
    quick = P.PROFILES["quick"].run(method="wanda", source="code").run_id
    items = {t: E.suite_items(t, 60) for t in E.NEUTRAL_TASKS}
    digests = E.data_digests(RunConfig().instrument)
    committed_devil = json.loads((ROOT / "data" / "panel" / "devil.json").read_text())["sha256"]
    with monkeypatch.context() as m:
        grow_registries(m, tmp_path)
        assert sha256_file(S.build_source("devil")) == committed_devil  # rebuilt under the grown registry, the same
        E._source_digest.cache_clear()
        E._digests.cache_clear()
        assert E.data_digests(RunConfig().instrument) == digests  # no text a committed run is scored on moved
        assert {t: E.suite_items(t, 60) for t in E.NEUTRAL_TASKS} == items  # no item moved
        assert {m_: RunConfig(method=m_).run_id for m_ in methods} == defaults
        assert P.PROFILES["quick"].run(method="wanda", source="code").run_id == quick
        assert all(RunConfig.from_row(row).run_id == row["run_id"] for row in committed_rows())
    E._source_digest.cache_clear()
    E._digests.cache_clear()
    with pytest.raises(ValueError, match="registered twice"):
        with monkeypatch.context() as m:
            m.setitem(S.PANEL_SOURCES, "news", S.PANEL_SOURCES["devil"])
            S._check_distinct_names()


def test_other_evaluation_text_gives_new_runs_not_stale_rows(monkeypatch):
    "A piece of evaluation data whose text is not the committed runs' (or is new) enters the id with its digest."
    import calibsynth.evaluate as E

    committed = RunConfig().run_id
    monkeypatch.setattr(R, "data_digests", lambda inst: E.data_digests(inst) | {"panel:devil": "0000000000000000"})
    assert R.moved_eval_data(RunConfig().instrument) == {"panel:devil": "0000000000000000"}
    assert RunConfig().run_id != committed
    monkeypatch.setattr(R, "data_digests", lambda inst: E.data_digests(inst) | {"panel:zz_new": "1234"})
    assert RunConfig().run_id not in (committed, RunConfig(seed=1).run_id)
    monkeypatch.undo()
    assert RunConfig().run_id == committed


def _fake_panel_grid(panel_by_level):
    "A run_grid stand-in: each run's panel mean from its level (dense: 'dense'), as the grid's table gives it."
    import pandas as pd

    def fake(configs, path, **kw):
        return pd.DataFrame([dict(run_id=c.run_id, panel_mean=panel_by_level["dense" if c.method == "dense" else c.sparsity])
                             for c in configs])
    return fake


@pytest.mark.parametrize("target, expected", [(2.0, 0.5), (1.3, 0.4), (4.0, 0.6)])
def test_regime_is_the_level_whose_perplexity_ratio_is_nearest_the_target(monkeypatch, target, expected):
    import math

    ratios = {0.4: 1.38, 0.5: 2.07, 0.6: 4.37}
    panel = {"dense": 3.7} | {s: 3.7 + math.log(r) for s, r in ratios.items()}
    monkeypatch.setattr(P, "run_grid", _fake_panel_grid(panel))
    profile = replace(P.PROFILES["quick"], target_ppl_ratio=target)
    chosen, got, dense = P.regime_sparsity(profile, "unused.jsonl")
    assert chosen == expected and dense == 3.7
    assert got.round(6).to_dict() == ratios


def test_self_generated_set_changes_a_knob_but_keeps_the_budget(monkeypatch):
    seen = []
    monkeypatch.setattr(P, "synthetic_source", lambda model, source, cfg, loaded, progress: seen.append(cfg) or "set")
    profile = P.PROFILES["quick"]
    P.self_generated_set(profile, 3)
    P.self_generated_set(profile, 3, prefix_tokens=64)
    recipe, ablated = seen
    assert (recipe.prefix_tokens, ablated.prefix_tokens) == (profile.synth_config().prefix_tokens, 64)
    assert recipe.target_tokens == ablated.target_tokens == int(1.15 * profile.n_samples * (profile.seqlen - 1))
    assert recipe.seed == ablated.seed == 3 and ablated.strategy == "prefix"
    with pytest.raises(ValueError, match="target_tokens"):
        P.self_generated_set(profile, 3, target_tokens=100)


def test_an_amendment_record_lists_every_comparison_and_flags_moved_labels():
    import importlib.util
    spec = importlib.util.spec_from_file_location("findings_diff", ROOT / "tools" / "findings_diff.py")
    fd = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(fd)
    part = lambda label, est, metric: dict(label=label, estimate=est, ci_low=est - 0.01, ci_high=est + 0.01, p_value=0.03,
                                           metric=metric)
    finding = lambda *labels: dict(verdict="inconclusive", estimate=0.1, ci_low=0.0, ci_high=0.2, p_value=0.2,
                                   evidence=[part(l, 0.1, "panel log-ppl") for l in labels])  # a metric shared twice
    rows = fd.diff({"22_x.json": finding("reproduced", "inconclusive")}, {"22_x.json": finding("reproduced", "contradicted")})
    assert [r["comparison"] for r in rows] == ["claim", "0: panel log-ppl", "1: panel log-ppl"]
    assert [r["label_changed"] for r in rows] == [False, False, True]
    assert rows[2]["before"]["label"] == "inconclusive" and rows[2]["after"]["label"] == "contradicted"
    gone = fd.diff({"22_x.json": finding("reproduced")}, {})  # a finding that disappears is a change too
    assert all(r["label_changed"] and r["after"] is None for r in gone)
    for path in sorted((ROOT / "results" / "amendments").glob("*.json")):
        record = json.loads(path.read_text())  # what the README reads
        assert record["change"] and record["comparisons"] == len(record["rows"])
        assert record["labels_changed"] == sum(r["label_changed"] for r in record["rows"])


@pytest.mark.slow
def test_a_committed_run_recomputes_on_its_arithmetic_with_grown_registries(tmp_path, monkeypatch):
    """The cheapest committed run, rebuilt from its config with a throwaway source and panel corpus registered: the
    same calibration draw, and every window back to the bit where the row was made on this CPU's arithmetic (within
    what other arithmetic moves elsewhere, rows made before they recorded it included)."""
    import calibsynth.evaluate as E
    from calibsynth.experiment.runs import RunConfig, draw_calibration
    from calibsynth.experiment.grid import made_here
    from calibsynth.experiment.verify import committed_runs, recompute_run
    from calibsynth.models import load_model

    runs = committed_runs(ROOT / "results")
    cheap = min((r for r in runs.values() if r["config"]["model"] == "smollm2-135m" and not r["config"]["tasks"]
                 and r["config"]["method"] == "wanda"), key=lambda r: r["seconds"])
    config = RunConfig.from_row(cheap)
    _, tok = load_model("smollm2-135m")
    draw = draw_calibration(config, tok)
    grow_registries(monkeypatch, tmp_path)
    E._source_digest.cache_clear()
    E._digests.cache_clear()
    assert torch.equal(draw_calibration(config, tok), draw)  # integers: the same on every machine
    checked = recompute_run(cheap, tmp_path, ROOT / "results")  # on the thread count its row records
    assert checked["agreement"] == "exact" if made_here(cheap) else checked["agreement"] in ("exact", "noise"), \
        (checked["arithmetic"], checked["units"])  # "noise" already requires every unit on both sides
