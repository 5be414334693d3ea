import math

import pytest
import torch
import torch.nn.functional as F

from calibsynth.evaluate import mean_sample_perplexity, perplexity
from calibsynth.models import tiny_model
from calibsynth.sources import load_texts


def plain_perplexity(model, tok, text, seqlen):
    "One window at a time, BOS prepended to each and not scored."
    ids = tok(text, add_special_tokens=False).input_ids
    body = seqlen - 1
    nll, n = 0.0, 0
    for k in range(len(ids) // body):
        w = torch.tensor([[tok.bos_token_id] + ids[k * body:(k + 1) * body]])
        with torch.no_grad():
            logits = model(w).logits[0, 1:-1]
        nll += F.cross_entropy(logits, w[0, 2:], reduction="sum").item()
        n += body - 1
    return math.exp(nll / n)


def test_perplexity_matches_a_plain_loop():
    model, tok = tiny_model("llama", seed=1)
    texts = load_texts("news", "eval", limit=3)
    got = perplexity(model, tok, texts, seqlen=48, batch_size=3)
    assert got == pytest.approx(plain_perplexity(model, tok, "\n\n".join(texts), 48), rel=1e-5)


@pytest.mark.parametrize("kwargs,match", [(dict(seqlen=1), "seqlen"), (dict(batch_size=0), "batch_size")])
def test_bad_arguments(kwargs, match):
    model, tok = tiny_model("llama")
    with pytest.raises(ValueError, match=match):
        perplexity(model, tok, ["some text here"], **kwargs)
    with pytest.raises(ValueError, match="non-empty"):
        perplexity(model, tok, [])


@pytest.mark.parametrize("bad", ["fp16", "bf16", "auto"])
def test_a_bad_forward_dtype_is_named(bad):
    model, tok = tiny_model("llama")
    with pytest.raises(ValueError, match=repr(bad)):
        perplexity(model, tok, ["some text here"], forward_dtype=bad)
    with pytest.raises(ValueError, match=repr(bad)):
        mean_sample_perplexity(model, tok, ["some text here"], forward_dtype=bad)


def test_perplexity_in_each_forward_dtype_is_the_float32_one_up_to_rounding():
    model, tok = tiny_model("llama", seed=1)
    texts = load_texts("news", "eval", limit=3)
    seen = []
    model.model.layers[0].mlp.down_proj.register_forward_hook(lambda mod, inp, out: seen.append(out.dtype))
    full = perplexity(model, tok, texts, seqlen=48, batch_size=3, max_windows=6)
    for name, dtype in (("bfloat16", torch.bfloat16), ("float16", torch.float16)):
        seen.clear()
        low = perplexity(model, tok, texts, seqlen=48, batch_size=3, max_windows=6, forward_dtype=name)
        assert set(seen) == {dtype} and low != full and low == pytest.approx(full, rel=1e-2)


from calibsynth.evaluate import HUB_TASKS, evaluate_tasks, mean_sample_perplexity
from calibsynth.synth import text_perplexities


def test_mean_sample_perplexity_is_the_mean_of_each_texts_own():
    model, tok = tiny_model("llama", seed=3)
    texts = load_texts("bible", "eval", limit=4)
    texts = [t[:200] for t in texts]
    each = [text_perplexities(model, tok, [t])[0] for t in texts]
    assert mean_sample_perplexity(model, tok, texts, batch_size=3) == pytest.approx(sum(each) / len(each), rel=1e-4)


def _local_task(folder, name="sums", rows=6):
    "An lm-eval multiple-choice task of one's own over a local JSONL file (what `include_path` reads)."
    import json

    items = [dict(q=f"{a} plus {a} is", choices=[f" {2 * a}", f" {2 * a + 1}", f" {a}"], label=0) for a in range(rows)]
    (folder / f"{name}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in items))
    (folder / f"{name}.yaml").write_text(
        f"task: {name}\ndataset_path: json\ndataset_kwargs:\n  data_files:\n    test: {folder}/{name}.jsonl\n"
        "test_split: test\noutput_type: multiple_choice\ndoc_to_text: \"{{q}}\"\ndoc_to_choice: \"{{choices}}\"\n"
        "doc_to_target: label\nmetric_list:\n  - metric: acc\n  - metric: acc_norm\n")
    return items


def test_lm_eval_path_on_a_tiny_model_with_a_local_task(tmp_path):
    model, tok = tiny_model("llama")
    _local_task(tmp_path, "sums", 6)
    _local_task(tmp_path, "twice", 4)
    res = evaluate_tasks(model, tok, ["sums", "twice"], limit=3, batch_size=8, include_path=tmp_path)
    assert set(res) == {"sums", "twice", "average"}
    for t in ("sums", "twice"):
        assert res[t]["n"] == 3 and 0 <= res[t]["acc"] <= 1 and res[t]["acc_stderr"] >= 0 and "acc_norm" in res[t]
    assert res["average"]["acc"] == pytest.approx((res["sums"]["acc"] + res["twice"]["acc"]) / 2)


def test_task_errors(tmp_path):
    model, tok = tiny_model("llama")
    _local_task(tmp_path)
    with pytest.raises(ValueError, match="knows no task \\['lambada_nope'\\]"):
        evaluate_tasks(model, tok, ["lambada_nope"], include_path=tmp_path)
    with pytest.raises(ValueError, match="at least one task"):
        evaluate_tasks(model, tok, [])
    with pytest.raises(ValueError, match="limit must be a positive integer"):
        evaluate_tasks(model, tok, ["sums"], limit=0, include_path=tmp_path)
    with pytest.raises(ConnectionError, match="need the dataset hub"):
        evaluate_tasks(model, tok, ["boolq"], include_path=tmp_path)
    assert "boolq" in HUB_TASKS


def test_windows_tokenize_only_the_text_they_need(monkeypatch):
    from calibsynth import evaluate as E

    _, tok = tiny_model("llama", seed=0)
    texts = load_texts("dictionary", "eval")[:400]
    full = E._windows(tok, texts, 32, None)
    seen = []
    real = tok.__call__
    monkeypatch.setattr(type(tok), "__call__", lambda self, text, **kw: seen.append(len(text)) or real(text, **kw))
    few = E._windows(tok, texts, 32, 3)
    assert torch.equal(few, full[:3])
    assert seen and sum(seen) < len("\n\n".join(texts)) / 4  # the whole split was never tokenized


# --- random windows, the neutral panel and the neutral suite --------------------------------------------------

import numpy as np
import pandas as pd

from calibsynth import evaluate as E
from calibsynth import sources as S
from calibsynth.sources import random_windows, token_stream, window_starts
from calibsynth.evaluate import (NEUTRAL_TASKS, PANEL_SEQLEN, PANEL_WINDOWS, SUITE_PANEL, choice_logliks, evaluate_panel,
                                 evaluate_suite, held_out_texts, leave_out_mean, panel_mean,
                                 source_means, suite_accuracy, suite_items, window_capacity, window_log_ppl)
from calibsynth.sources import OFFLINE_SOURCES, PANEL_SOURCES, shares_ngram
from calibsynth.stats import paired_differences


@pytest.mark.parametrize("seed", range(5))
def test_window_starts_are_one_per_stratum_and_reach_both_ends(seed):
    n_tokens, length, n = 10_000, 100, 20
    starts = window_starts(n_tokens, length, n, seed)
    assert np.array_equal(starts, window_starts(n_tokens, length, n, seed))
    stratum = n_tokens // n
    assert all(k * stratum <= s and s + length <= (k + 1) * stratum for k, s in enumerate(starts))
    assert (np.diff(starts) >= length).all()
    assert starts[0] < n_tokens / n and starts[-1] + length > n_tokens * (n - 1) / n
    assert not np.array_equal(starts, window_starts(n_tokens, length, n, seed + 5))


def test_window_starts_refuse_more_windows_than_fit():
    window_starts(1000, 100, 10)  # exactly full
    with pytest.raises(ValueError, match="at most 10 non-overlapping windows"):
        window_starts(1000, 100, 11)
    with pytest.raises(ValueError, match="n_windows"):
        window_starts(1000, 100, 0)


def test_random_windows_are_deterministic_spread_and_the_same_with_a_cold_cache(monkeypatch, tmp_path):
    _, tok = tiny_model("llama")
    texts = held_out_texts("bible")
    stream = np.asarray(tok("\n\n".join(texts), add_special_tokens=False).input_ids)
    warm = random_windows(tok, texts, 64, 32, seed=3)
    assert torch.equal(warm, random_windows(tok, texts, 64, 32, seed=3))
    assert not torch.equal(warm, random_windows(tok, texts, 64, 32, seed=4))
    monkeypatch.setattr(S, "cache_dir", lambda *parts: tmp_path)  # another machine: nothing cached
    assert torch.equal(random_windows(tok, texts, 64, 32, seed=3), warm)
    assert list(tmp_path.glob("*.npy"))
    assert torch.equal(random_windows(tok, texts, 64, 32, seed=3), warm)  # and read back from that cache
    # each window is BOS + the run of the stream at its start; together they reach from the first tenth to the last
    starts = window_starts(len(stream), 63, 32, seed=3)
    for row, start in zip(warm, starts):
        assert row[0] == tok.bos_token_id and row[1:].tolist() == stream[start:start + 63].tolist()
    assert starts.min() < len(stream) / 10 and starts.max() > len(stream) * 9 / 10
    assert (np.diff(starts) >= 63).all()  # no overlap


def test_windows_have_no_bos_for_a_tokenizer_without_one():
    _, tok = tiny_model("llama", add_bos=False)
    texts = load_texts("devil", "eval")
    w = random_windows(tok, texts, 32, 8, seed=0)
    starts = window_starts(len(token_stream(tok, texts)), 32, 8, 0)
    assert w.shape == (8, 32) and w[0].tolist() == token_stream(tok, texts)[starts[0]:starts[0] + 32].tolist()


@pytest.mark.parametrize("add_bos", [True, False])
def test_window_log_ppl_is_the_log_of_perplexity_window_by_window(add_bos):
    model, tok = tiny_model("llama", seed=2, add_bos=add_bos)
    texts = load_texts("news", "eval", limit=4)
    windows = E._windows(tok, texts, 48, 5)
    per_window = window_log_ppl(model, tok, windows)
    assert per_window.dtype == np.float32 and per_window.shape == (5,)
    for k in range(5):  # each window alone is the perplexity of that one window
        one = windows[k, int(add_bos):]
        assert per_window[k] == pytest.approx(math.log(perplexity(model, tok, one, seqlen=48)), rel=1e-5)


def test_two_runs_of_the_panel_pair_window_by_window():
    sources = ["devil", "news"]
    runs = []
    for seed in (1, 2):
        model, tok = tiny_model("llama", seed=seed)
        runs.append(evaluate_panel(model, tok, sources, seqlen=48, n_windows=5).assign(set=f"m{seed}", seed=0))
    a, b = runs
    assert a[["source", "window", "start"]].equals(b[["source", "window", "start"]])
    assert not np.allclose(a.log_ppl, b.log_ppl)
    diffs = paired_differences(pd.concat(runs), "m1", "m2", within=("source", "window"))
    assert diffs.shape == (1, 10)
    assert diffs.to_numpy().mean() == pytest.approx(a.log_ppl.mean() - b.log_ppl.mean(), abs=1e-6)


def test_panel_and_leave_out_means():
    table = pd.DataFrame(dict(source=["manuals"] * 2 + ["fortunes"] * 4 + ["news"] * 2 + ["bible"] * 2 + ["pydoc"],
                              log_ppl=[3.0, 5.0, 1.0, 1.0, 2.0, 4.0, 6.0, 8.0, 2.0, 2.0, 10.0]))
    assert source_means(table).to_dict() == {"manuals": 4.0, "fortunes": 2.0, "news": 7.0, "bible": 2.0, "pydoc": 10.0}
    assert panel_mean(table) == 3.0  # each panel source weighs the same, not each window
    assert leave_out_mean(table, exclude="news") == 6.0
    assert leave_out_mean(table, exclude=("news", "pydoc")) == 2.0
    assert leave_out_mean(table, exclude=()) == pytest.approx(19 / 3)
    with pytest.raises(ValueError, match="'devil'"):
        leave_out_mean(table, exclude=["devil"])
    with pytest.raises(ValueError, match="no calibration domain is left"):
        leave_out_mean(table, exclude=["news", "bible", "pydoc"])
    with pytest.raises(ValueError, match="no panel source"):
        panel_mean(table[table.source.isin(OFFLINE_SOURCES)])
    with pytest.raises(ValueError, match="log_ppl"):
        source_means(table.rename(columns={"log_ppl": "ppl"}))


def test_evaluate_panel_checks_everything_before_running_the_model():
    model, tok = tiny_model("llama")
    calls = []
    model.register_forward_hook(lambda *a: calls.append(1))
    for kwargs, match in [(dict(sources=["devil", "nope"]), "'nope'"), (dict(n_windows={"devil": 2}), "no count"),
                          (dict(sources=["devil", "pydoc"], n_windows=window_capacity(tok, "pydoc", 32) + 1), "'pydoc' holds"),
                          (dict(n_windows=0), "positive integer"), (dict(seqlen=2), "seqlen"),
                          (dict(forward_dtype="fp16"), "'fp16'")]:
        with pytest.raises(ValueError, match=match):
            evaluate_panel(model, tok, **{"sources": ["devil", "news"], "seqlen": 32, **kwargs})
    assert not calls


def test_held_out_calibration_text_shares_no_13gram_with_calibration_text():
    calibration = [t for name in OFFLINE_SOURCES for t in load_texts(name, "calib")]
    kept = held_out_texts("bible")
    full = load_texts("bible", "eval")
    shared = shares_ngram(full, calibration)
    assert shared.any()  # the raw eval split does repeat calibration text
    assert kept == [t for t, s in zip(full, shared) if not s] and 0 < len(kept) < len(full)


def test_no_evaluation_window_or_item_shares_a_13gram_with_any_calibration_split():
    from transformers import AutoTokenizer

    from calibsynth.models import embedded_checkpoint

    tok = AutoTokenizer.from_pretrained(embedded_checkpoint("smollm2-135m"))
    texts = []
    for source in [*PANEL_SOURCES, *OFFLINE_SOURCES]:
        n = min(PANEL_WINDOWS, window_capacity(tok, source))  # pydoc's held-out text holds fewer
        texts += [tok.decode(w) for w in random_windows(tok, held_out_texts(source), PANEL_SEQLEN, n, seed=0)]
    items = [it for task in NEUTRAL_TASKS for it in suite_items(task, E.NEUTRAL_ITEMS[task])]
    texts += [it["context"] + " " + " ".join(it["choices"]) for it in items]
    # the check can fail: windows of the Bible's raw eval split do share 13-grams with its calib split
    raw = [tok.decode(w) for w in random_windows(tok, load_texts("bible", "eval"), PANEL_SEQLEN, PANEL_WINDOWS)]
    calibration = (t for name in OFFLINE_SOURCES for t in load_texts(name, "calib"))
    shared = shares_ngram(texts + raw, calibration)  # one pass over the calibration text
    assert not shared[:len(texts)].any() and shared[len(texts):].any()


@pytest.mark.parametrize("task", NEUTRAL_TASKS)
def test_neutral_items_are_a_seeded_stratified_shuffle(task):
    items = suite_items(task, 120, seed=0)
    assert items == suite_items(task, 120, seed=0) and items != suite_items(task, 120, seed=1)
    assert suite_items(task, 40, seed=0) == items[:40]
    for prefix in (12, 40, 120):  # any prefix holds the strata in equal shares
        counts = pd.Series([it["group"] for it in items[:prefix]]).value_counts()
        assert counts.max() - counts.min() <= 1
    assert [it["label"] for it in items] == [k % 4 for k in range(120)]
    assert all(len(set(it["choices"])) == 4 for it in items)
    assert len({it["context"] for it in items}) == len(items)
    if task in ("neutral_continuation", "neutral_cloze"):
        assert {it["group"] for it in items} == set(SUITE_PANEL)  # the suite's corpora, not every panel corpus


def test_neutral_items_come_from_the_whole_text_not_its_first_documents():
    items = suite_items("neutral_continuation", 150, seed=0)
    docs = {s: [" ".join(t.split()) for t in load_texts(s, "eval")] for s in PANEL_SOURCES}
    where = []
    for it in items:
        opening = " ".join(it["context"].split()[:8])
        k = next(i for i, t in enumerate(docs[it["group"]]) if opening in t)
        where.append(k / len(docs[it["group"]]))
    assert min(where) < 0.1 and max(where) > 0.9


@pytest.mark.parametrize("add_bos", [True, False])
def test_choice_logliks_sum_the_choice_tokens_after_the_context(add_bos):
    model, tok = tiny_model("llama", seed=4, add_bos=add_bos)
    items = suite_items("neutral_cloze", 3)
    ll = choice_logliks(model, tok, items, batch_size=5)
    for i, it in enumerate(items):
        for j, choice in enumerate(it["choices"]):
            ids = tok(it["context"] + choice).input_ids
            n_context = len(tok(it["context"]).input_ids)
            with torch.no_grad():
                logp = torch.log_softmax(model(torch.tensor([ids])).logits[0].float(), -1)
            want = sum(logp[k - 1, ids[k]].item() for k in range(n_context, len(ids)))
            assert ll[i, j] == pytest.approx(want, abs=1e-3)


def test_suite_runs_pair_item_by_item():
    tables = []
    for seed in (1, 2):
        model, tok = tiny_model("llama", seed=seed)
        tables.append(evaluate_suite(model, tok, ["neutral_analogy", "neutral_definition"], n_items=8).assign(set=f"m{seed}", seed=0))
    a, b = tables
    assert a[["task", "item", "group", "label"]].equals(b[["task", "item", "group", "label"]])
    d = paired_differences(pd.concat(tables), "m1", "m2", within=("task", "item"), value="correct")
    assert d.shape == (1, 16)
    acc = suite_accuracy(a)
    assert list(acc.index) == ["neutral_analogy", "neutral_definition"] and (acc.n == 8).all()
    assert acc.loc["neutral_analogy", "acc"] == a[a.task == "neutral_analogy"].correct.mean()
    with pytest.raises(ValueError, match="neutral tasks"):
        evaluate_suite(model, tok, ["cs_analogy"])
    with pytest.raises(ValueError, match="no count"):
        evaluate_suite(model, tok, ["neutral_analogy", "neutral_cloze"], n_items={"neutral_cloze": 4})


@pytest.mark.slow
def test_every_neutral_task_is_above_chance_by_3_standard_errors_on_smollm2(smollm2):
    model, tok = smollm2
    acc = suite_accuracy(evaluate_suite(model, tok, NEUTRAL_TASKS, n_items=E.NEUTRAL_ITEMS, forward_dtype="bfloat16"))
    assert list(acc.index) == list(NEUTRAL_TASKS)
    assert (acc.acc - 0.25 > 3 * acc.acc_se).all(), acc
