import importlib
import json
import warnings
from pathlib import Path

import pytest
import torch

from calibsynth import runner as R
from calibsynth.runner import RunConfig, in_shard, load_results, merge_results, read_results, run_grid


def test_run_id_is_a_hash_of_the_config_and_code_version(monkeypatch):
    a, b = RunConfig(seed=0), RunConfig(seed=1)
    before = a.run_id
    assert before == RunConfig(seed=0).run_id and before != b.run_id
    monkeypatch.setattr(R, "CODE_VERSION", "999")
    assert RunConfig(seed=0).run_id != before


def test_bad_configs_are_named():
    with pytest.raises(ValueError, match="pruneall"):
        RunConfig(method="pruneall")
    with pytest.raises(ValueError, match="5:4"):
        RunConfig(pattern="5:4")
    with pytest.raises(ValueError, match="n_samples"):
        RunConfig(n_samples=0)


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

    monkeypatch.setattr(R, "load_model", fake_load)
    common = dict(model="tiny", n_samples=4, seqlen=32, eval_sources=("news", "bible"), eval_seqlen=32,
                  eval_windows=2, task_limit=4, forward_dtype="float32")
    # lm-eval runs once (the dense run); the pruned runs measure perplexity only, to keep the test short
    return [RunConfig(method="dense", tasks=("cs_analogy",), **common)] + [
        RunConfig(method=m, source=s, tasks=(), **common) for m in ("wanda", "magnitude") for s in ("news", "bible")]


def test_grid_runs_resumes_and_merges(tmp_path, monkeypatch):
    grid = tiny_grid(monkeypatch)
    grid = list(dict.fromkeys(grid))
    path = tmp_path / "results.jsonl"
    df = run_grid(grid[:3], path, progress=False)
    assert len(df) == 3 and {"mean_log_ppl", "acc", "acc_stderr", "ppl.news"} <= set(df.columns)
    assert df[df.method == "dense"].acc.notna().all()
    # a kill mid-write leaves a torn line; the rerun drops it and runs only what is missing
    with open(path, "a") as f:
        f.write('{"run_id": "zz", "metr')
    with pytest.warns(UserWarning, match="torn"):
        df = run_grid(grid, path, progress=False)
    assert len(df) == len(grid) and df.run_id.is_unique
    assert (df[df.method == "wanda"].sparsity - 0.6).abs().max() < 0.01
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
    with pytest.raises(ValueError, match="sparsity"):
        RunConfig(sparsity=1.5)


def test_runs_of_other_experiments_are_reused_not_redone(tmp_path, monkeypatch):
    grid = tiny_grid(monkeypatch)[1:3]
    first = run_grid(grid, tmp_path / "10_a.jsonl", progress=False)

    def no_model(*a, **k):
        raise AssertionError("a reused run must not load a model")

    monkeypatch.setattr(R, "load_model", no_model)
    second = run_grid(grid, tmp_path / "11_b.jsonl", progress=False)
    assert sorted(second.run_id) == sorted(first.run_id) and len(read_results(tmp_path / "11_b.jsonl")) == 2
    # without reuse the runs are redone (and here the model loader refuses)
    with pytest.raises(AssertionError, match="reused"):
        run_grid(grid, tmp_path / "12_c.jsonl", progress=False, reuse=False)


def test_profiles_and_output_dirs(tmp_path, monkeypatch):
    monkeypatch.delenv("CALIBSYNTH_OUTPUT", raising=False)
    monkeypatch.setenv("CALIBSYNTH_PROFILE", "smoke")
    p = R.active_profile()
    assert p.name == "smoke" and R.active_profile("quick").name == "quick"
    with pytest.raises(ValueError, match="'huge'"):
        R.active_profile("huge")
    # smoke never writes next to the committed results; CALIBSYNTH_OUTPUT moves every profile
    assert R.repo_root() is None or R.repo_root() not in R.output_dir("results", p).parents
    monkeypatch.setenv("CALIBSYNTH_OUTPUT", str(tmp_path))
    assert R.output_dir("figures") == tmp_path / "figures" and (tmp_path / "figures").is_dir()
    run = R.PROFILES["quick"].run(method="wanda", source="code")
    assert (run.n_samples, run.seqlen, run.forward_dtype, run.task_limit) == (16, 256, "bfloat16", 12) and run.source == "code"
    assert R.PROFILES["paper"].run().tasks[0] in R.HUB_TASKS


def test_filtered_synthetic_sets_derive_from_one_generation(tmp_path, monkeypatch):
    from calibsynth.core import read_jsonl
    from calibsynth.models import tiny_model
    from calibsynth.sources import synthetic_path
    from calibsynth.synth import SynthConfig, build_synthetic

    monkeypatch.setenv("CALIBSYNTH_CACHE", str(tmp_path))
    monkeypatch.setenv("CALIBSYNTH_OUTPUT", str(tmp_path / "out"))
    loaded = tiny_model("llama", seed=0)
    cfg = SynthConfig(n_docs=8, batch_size=8, max_new_tokens=20, min_tokens=4, drop_top=0.5)
    name = R.synthetic_source("tiny", "bible", cfg, loaded, progress=False)
    assert name.startswith("syn:tiny:bible:prefix-")
    derived = read_jsonl(synthetic_path(*name[4:].split(":")))
    direct = read_jsonl(build_synthetic(*loaded, "bible", cfg, tmp_path / "direct.jsonl", progress=False))
    assert [r["text"] for r in derived] == [r["text"] for r in direct] and 0 < len(direct) < 8
    # the name changes with any setting
    assert R.synthetic_source("tiny", "bible", SynthConfig(n_docs=8, batch_size=8, max_new_tokens=20, min_tokens=4,
                                                           drop_top=0.25), loaded, progress=False) != name


def test_synthetic_sets_are_kept_with_the_results_and_read_back_by_a_clone(tmp_path, monkeypatch):
    from calibsynth.models import tiny_model
    from calibsynth.sources import synthetic_path
    from calibsynth.synth import SynthConfig

    monkeypatch.setenv("CALIBSYNTH_OUTPUT", str(tmp_path / "out"))
    monkeypatch.setenv("CALIBSYNTH_CACHE", str(tmp_path / "cache"))
    cfg = SynthConfig(n_docs=8, batch_size=8, max_new_tokens=20, min_tokens=4, drop_top=0.0)
    name = R.synthetic_source("tiny", "news", cfg, tiny_model("llama", seed=0), progress=False)
    built = synthetic_path(*name[4:].split(":"))
    kept = tmp_path / "out" / "results" / "synthetic" / "tiny" / built.name
    assert kept.read_text() == built.read_text() and kept.with_name(built.stem + ".manifest.json").exists()
    # A clone on another machine: an empty cache, the kept set, and no model to generate with.
    monkeypatch.setenv("CALIBSYNTH_CACHE", str(tmp_path / "other-cache"))
    assert R.synthetic_source("tiny", "news", cfg, loaded=None, progress=False) == name
    assert synthetic_path(*name[4:].split(":")).read_text() == kept.read_text()


def test_cached_table_computes_once(tmp_path):
    calls = []
    compute = lambda: calls.append(1) or [dict(a=1)]
    a = R.cached_table(tmp_path / "t.jsonl", dict(k=1), compute)
    b = R.cached_table(tmp_path / "t.jsonl", dict(k=1), compute)
    R.cached_table(tmp_path / "t.jsonl", dict(k=2), compute)
    assert a.equals(b) and len(calls) == 2


def test_findings_are_recorded_and_tabled(tmp_path, monkeypatch):
    monkeypatch.setenv("CALIBSYNTH_OUTPUT", str(tmp_path))
    assert "No findings" in R.findings_markdown(tmp_path / "results")
    with pytest.raises(ValueError, match="'maybe'"):
        R.record_finding("10_x", "claim", "here", "maybe")
    from calibsynth.stats import all_hold, compare, simulate_comparison

    noise = compare(simulate_comparison(effect=0.0, n_seeds=6, n_windows=40, rng_seed=3), "A", "B", "less")
    clear = compare(simulate_comparison(effect=-0.1, n_seeds=6, n_windows=40), "A", "B", "less")
    R.record_finding("11_y", "gap | grows", "0.1 -> 0.3", all_hold([clear, noise]), R.PROFILES["smoke"], [clear, noise])
    R.record_finding("10_x", "matters", "2 of 3", "partly", R.PROFILES["smoke"])  # the first instrument's label
    saved = json.loads((tmp_path / "results" / "findings" / "11_y.json").read_text())
    assert (saved["verdict"], saved["n_seeds"], saved["metric"]) == ("inconclusive", 6, "log_ppl")
    assert (saved["ci_low"], saved["ci_high"], saved["p_value"]) == (clear.ci_low, clear.ci_high, clear.p_value)
    assert [e["label"] for e in saved["evidence"]] == [clear.label, noise.label] == ["reproduced", "inconclusive"]
    table = R.findings_markdown(tmp_path / "results").splitlines()
    cells = [[c.strip() for c in line.strip("|").split("|")] for line in table]
    assert cells[0] == ["notebook", "claim", "verdict", "primary comparison: estimate [95% CI], p", "here"]
    assert set("".join(cells[1])) == {"-"}
    assert cells[2] == ["10_x", "matters", "partly (first instrument)", "none (first instrument)", "2 of 3"]
    assert cells[3][:3] == ["11_y", "gap / grows", "inconclusive"] and cells[3][4] == "0.1 -> 0.3"
    assert cells[3][3] == f"{clear} (log_ppl)"


def test_results_carry_the_setting_label_and_bad_shards_fail_first(tmp_path, monkeypatch):
    grid = tiny_grid(monkeypatch)[1:3] + [RunConfig(**{**R.asdict(tiny_grid(monkeypatch)[1]), "pattern": "2:4"})]
    df = run_grid(grid, tmp_path / "r.jsonl", progress=False)
    assert sorted(df.setting) == ["2:4", "60%", "60%"]
    with pytest.raises(ValueError, match="'3/2'"):
        run_grid(grid, tmp_path / "other.jsonl", shard="3/2", progress=False, reuse=False)
    assert not (tmp_path / "other.jsonl").exists()


COMMITTED = sorted((Path(__file__).parent.parent / "results").glob("2*_*.jsonl"))


def committed_rows():
    return [row for path in COMMITTED for row in read_results(path)]


def config_of(row, cls=RunConfig):
    "The RunConfig a results row was made from (JSON turned its tuples into lists)."
    return cls.from_row(row)


def test_every_committed_run_keeps_its_id():
    rows = committed_rows()
    assert len(COMMITTED) >= 6 and len(rows) > 200
    moved = [(row["run_id"], config_of(row).run_id) for row in rows if config_of(row).run_id != row["run_id"]]
    assert not moved, moved[:3]


# ids of configs left at their defaults, computed by the code before `allocation` and `options` existed
IDS_BEFORE = {(): "b40293d77697b4f3", (("method", "dense"),): "02ff408fffad2e44",
              (("method", "owl"), ("source", "code")): "f270fa9cc04b5cb7",
              (("method", "sparsegpt"), ("pattern", "2:4"), ("seed", 3)): "ae48d0a099690469"}


def test_new_fields_enter_the_id_only_when_set():
    for kw, run_id in IDS_BEFORE.items():
        assert RunConfig(**dict(kw)).run_id == run_id
        assert RunConfig(**dict(kw), allocation=None, options=()).run_id == run_id
    base = RunConfig()
    assert RunConfig(allocation="uniform").run_id == base.run_id  # wanda's own allocation, named
    changed = [RunConfig(allocation="owl"), RunConfig(method="sparsegpt", options=(("percdamp", 0.05),)),
               RunConfig(method="sparsegpt", options=(("percdamp", 0.01),))]
    ids = [c.run_id for c in changed]
    assert len(set(ids)) == 3 and base.run_id not in ids and RunConfig(method="sparsegpt").run_id not in ids
    # a row written by run_grid (config as JSON) gives back the same config and id
    row = dict(config=json.loads(json.dumps(R.asdict(changed[1]))))
    assert config_of(row) == changed[1] and config_of(row).run_id == ids[1]
    with pytest.raises(ValueError, match="'greedy'"):
        RunConfig(allocation="greedy")
    with pytest.raises(ValueError, match="percdamp"):
        RunConfig(method="wanda", options=(("percdamp", 0.05),))


def test_growing_registries_move_no_run_id(monkeypatch):
    import calibsynth.evaluate as E
    import calibsynth.sources as S

    methods = ("dense", "magnitude", "wanda", "owl", "sparsegpt")
    defaults = {m: RunConfig(method=m).run_id for m in methods}
    quick = R.PROFILES["quick"].run(method="wanda", source="code").run_id
    try:
        with monkeypatch.context() as m:
            m.setitem(S.OFFLINE_SOURCES, "zz_fake", S.OFFLINE_SOURCES["news"])
            m.setattr(E, "OFFLINE_TASKS", E.OFFLINE_TASKS + ("zz_fake_task",))
            grown = importlib.reload(R)  # the runner as a later session imports it, with larger registries
            assert "zz_fake" in grown.PROFILES["quick"].sources  # the registry did grow under it
            assert {m: grown.RunConfig(method=m).run_id for m in methods} == defaults
            assert grown.PROFILES["quick"].run(method="wanda", source="code").run_id == quick
            rows = committed_rows()
            assert all(config_of(row, grown.RunConfig).run_id == row["run_id"] for row in rows)
    finally:
        importlib.reload(R)


def test_panel_evaluation_keeps_paired_units_and_leaves_out_the_own_domain(tmp_path, monkeypatch):
    tiny_grid(monkeypatch)  # the tiny model behind load_model
    common = dict(model="tiny", n_samples=4, seqlen=32, eval_sources=("news", "bible"), eval_seqlen=32, eval_windows=3,
                  panel_windows=4, forward_dtype="float32", protocol="neutral", tasks=("neutral_cloze",), task_limit=12)
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
    table = R.unit_table(tmp_path / "r.jsonl", "domains")
    assert len(table) == 4 * 2 * 3 and set(table.eval_source) == {"news", "bible"}
    items = R.unit_table(tmp_path / "r.jsonl", "suite")
    assert len(items) == 4 * 12 and set(items.columns) >= {"task", "item", "correct", "seed", "source", "run_id"}
    # the legacy rows of the committed files kept no units: asking for them is an error, not an empty table
    legacy = next(p for p in COMMITTED if all(r["config"].get("protocol", "legacy") == "legacy" for r in read_results(p)))
    with pytest.raises(ValueError, match="protocol .neutral."):
        R.unit_table(legacy)


def _fake_panel_grid(panel_by_level):
    "A run_grid stand-in: each run's panel mean from its level (dense: 'dense'), as the runner's table gives it."
    import pandas as pd

    def fake(configs, path, **kw):
        return pd.DataFrame([dict(run_id=c.run_id, panel_mean=panel_by_level["dense" if c.method == "dense" else c.sparsity])
                             for c in configs])
    return fake


@pytest.mark.parametrize("target, expected", [(2.0, 0.5), (1.3, 0.4), (4.0, 0.6)])
def test_regime_is_the_level_whose_perplexity_ratio_is_nearest_the_target(monkeypatch, target, expected):
    import math
    from dataclasses import replace

    ratios = {0.4: 1.38, 0.5: 2.07, 0.6: 4.37}
    panel = {"dense": 3.7} | {s: 3.7 + math.log(r) for s, r in ratios.items()}
    monkeypatch.setattr(R, "run_grid", _fake_panel_grid(panel))
    profile = replace(R.PROFILES["quick"].neutral(), target_ppl_ratio=target)
    chosen, got, dense = R.regime_sparsity(profile, "unused.jsonl")
    assert chosen == expected and dense == 3.7
    assert got.round(6).to_dict() == ratios


def test_regime_needs_the_neutral_panel():
    with pytest.raises(ValueError, match="legacy"):
        R.regime_sparsity(R.PROFILES["quick"], "unused.jsonl")


def test_neutral_synthetic_changes_a_knob_but_keeps_the_budget(monkeypatch):
    seen = []
    monkeypatch.setattr(R, "synthetic_source", lambda model, source, cfg, loaded, progress: seen.append(cfg) or "set")
    profile = R.PROFILES["quick"].neutral()
    R.neutral_synthetic(profile, 3)
    R.neutral_synthetic(profile, 3, prefix_tokens=64)
    recipe, ablated = seen
    assert (recipe.prefix_tokens, ablated.prefix_tokens) == (profile.synth_config().prefix_tokens, 64)
    assert recipe.target_tokens == ablated.target_tokens == int(1.15 * profile.n_samples * (profile.seqlen - 1))
    assert recipe.seed == ablated.seed == 3 and ablated.strategy == "prefix"
    with pytest.raises(ValueError, match="target_tokens"):
        R.neutral_synthetic(profile, 3, target_tokens=100)


def test_an_amendment_record_lists_every_comparison_and_flags_moved_labels():
    import importlib.util
    spec = importlib.util.spec_from_file_location("findings_diff", Path(__file__).parent.parent / "benchmarks" / "findings_diff.py")
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
    for path in sorted((Path(__file__).parent.parent / "results" / "amendments").glob("*.json")):
        record = json.loads(path.read_text())  # what the README reads
        assert record["change"] and record["comparisons"] == len(record["rows"])
        assert record["labels_changed"] == sum(r["label_changed"] for r in record["rows"])
