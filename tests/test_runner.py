import json
import warnings

import pytest

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
    # shards: two files that merge into the whole grid, each run once
    a, b = tmp_path / "s1.jsonl", tmp_path / "s2.jsonl"
    run_grid(grid, a, shard="1/2", progress=False)
    run_grid(grid, b, shard="2/2", progress=False)
    assert merge_results([a, b, path], tmp_path / "all.jsonl") == len(grid)
    assert len(load_results(tmp_path / "all.jsonl")) == len(grid)
