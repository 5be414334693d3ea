import json
import math
import os
import signal
import subprocess
import sys
import textwrap

import pytest
import torch

from calibsynth.core import read_jsonl
from calibsynth.models import tiny_model
from calibsynth.sources import load_texts, sample_calibration, synthetic_path
from calibsynth.synth import (SynthConfig, build_synthetic, filter_by_perplexity, make_prefixes, self_generate,
                              text_perplexities)


@pytest.fixture(scope="module")
def tiny():
    return tiny_model("llama", seed=0)


def test_defaults_are_the_papers():
    c = SynthConfig()
    assert (c.prefix_tokens, c.temperature, c.top_p, c.top_k, c.repetition_penalty, c.drop_top) == (2, 0.6, 0.95, 50, 1.2, 0.2)
    assert c.strategy == "prefix"


@pytest.mark.parametrize("kwargs,name", [
    (dict(drop_top=1.0), "drop_top"), (dict(drop_top=-0.1), "drop_top"), (dict(prefix_tokens=-1), "prefix_tokens"),
    (dict(n_docs=0), "n_docs"), (dict(top_p=0.0), "top_p"), (dict(top_p=1.5), "top_p"), (dict(strategy="magic"), "strategy"),
])
def test_bad_config_is_named(kwargs, name):
    with pytest.raises(ValueError, match=name):
        SynthConfig(**kwargs)


def test_filter_arithmetic():
    ppl = [10.0, 1.0, 7.0, 3.0, 7.0, 2.0, 9.0, 4.0, 5.0, 6.0]
    assert filter_by_perplexity(list(range(10)), ppl, 0.2) == [1, 2, 3, 4, 5, 7, 8, 9]  # 10 and 9 go
    assert filter_by_perplexity(list(range(10)), ppl, 0.0) == list(range(10))
    assert filter_by_perplexity(list(range(10)), ppl, 0.35) == [1, 2, 3, 5, 7, 8, 9]  # floor(3.5)=3: 10, 9, the later 7
    with pytest.raises(ValueError, match="length"):
        filter_by_perplexity([1, 2], [1.0], 0.2)
    with pytest.raises(ValueError, match="drop_top"):
        filter_by_perplexity([1], [1.0], 1.0)


def test_prefixes_keep_bos_and_prefix_zero_is_bos_only(tiny):
    _, tok = tiny
    p = make_prefixes(tok, ["Hello world"], SynthConfig(prefix_tokens=2))
    assert p == [[1, tok("Hello").input_ids[1]]]  # BOS + the first byte
    assert make_prefixes(tok, ["Hello"], SynthConfig(prefix_tokens=0)) == [[1]]
    assert make_prefixes(tok, ["Hello"], SynthConfig(strategy="unprompted")) == [[1]]


def test_generation_is_deterministic_by_seed(tiny):
    model, tok = tiny
    texts = load_texts("news", limit=5)
    cfg = SynthConfig(max_new_tokens=12, batch_size=3, seed=1)
    a, b = self_generate(model, tok, texts, cfg), self_generate(model, tok, texts, cfg)
    c = self_generate(model, tok, texts, SynthConfig(max_new_tokens=12, batch_size=3, seed=2))
    assert a == b and a != c and len(a) == 5
    u = self_generate(model, tok, texts[:2], SynthConfig(strategy="unprompted", max_new_tokens=8))
    assert len(u) == 2


def test_batched_perplexity_equals_one_at_a_time(tiny):
    model, tok = tiny
    texts = ["a short one", "a somewhat longer text about calibration data", "x" * 90, "mid length text"]
    batched = text_perplexities(model, tok, texts, batch_size=4)
    single = [text_perplexities(model, tok, [t], batch_size=1)[0] for t in texts]
    for b, s in zip(batched, single):
        assert abs(b - s) / s < 1e-3
    assert math.isnan(text_perplexities(model, tok, [""])[0])  # BOS alone: nothing to score


def test_build_and_use_as_a_source(tiny, tmp_path):
    model, tok = tiny
    cfg = SynthConfig(n_docs=10, batch_size=4, max_new_tokens=20, min_tokens=4)
    path = build_synthetic(model, tok, "bible", cfg, tmp_path / "syn.jsonl", progress=False)
    rows = read_jsonl(path)
    assert rows and set(rows[0]) == {"text", "prefix", "ppl", "n_tokens"}
    man = json.loads((tmp_path / "syn.manifest.json").read_text())
    assert man["n_generated"] == 10 and man["n_kept"] == len(rows) and man["config"]["n_docs"] == 10
    assert max(r["ppl"] for r in rows) <= man["ppl_threshold"]
    ids = sample_calibration(str(path), tok, 3, 16, seed=0)
    assert ids.shape == (3, 16)
    # a second call with the same settings reuses the file; other settings are refused, not overwritten
    assert build_synthetic(model, tok, "bible", cfg, path, progress=False) == path
    with pytest.raises(FileExistsError, match="overwrite"):
        build_synthetic(model, tok, "bible", SynthConfig(n_docs=10, batch_size=4, max_new_tokens=21), path, progress=False)


def test_registry_name(tiny, tmp_path, monkeypatch):
    monkeypatch.setenv("CALIBSYNTH_CACHE", str(tmp_path))
    model, tok = tiny
    with pytest.raises(FileNotFoundError, match="calibsynth synth"):
        load_texts("syn:tiny:news")
    out = synthetic_path("tiny", "news")
    build_synthetic(model, tok, "news", SynthConfig(n_docs=8, batch_size=8, max_new_tokens=48, min_tokens=2), out,
                    progress=False)
    assert load_texts("syn:tiny:news") + load_texts("syn:tiny:news", "eval")


def test_bad_outputs_and_sources(tiny, tmp_path):
    model, tok = tiny
    cfg = SynthConfig(n_docs=4, max_new_tokens=8)
    with pytest.raises(FileNotFoundError, match="missing"):
        build_synthetic(model, tok, "news", cfg, tmp_path / "missing" / "s.jsonl", progress=False)
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o500)
    if not os.access(ro, os.W_OK):  # root can write anywhere
        with pytest.raises(PermissionError):
            build_synthetic(model, tok, "news", cfg, ro / "s.jsonl", progress=False)
    (tmp_path / "empty.jsonl").write_text('{"text": "only one small document here"}\n')
    with pytest.raises(ValueError, match="fewer than n_docs"):
        build_synthetic(model, tok, str(tmp_path / "empty.jsonl"), cfg, tmp_path / "s.jsonl", progress=False)
    with pytest.raises(ValueError, match="unknown source"):
        build_synthetic(model, tok, "nowhere", cfg, tmp_path / "s.jsonl", progress=False)


RESUME_SCRIPT = textwrap.dedent("""
    import os, sys
    from calibsynth.models import tiny_model
    from calibsynth.synth import SynthConfig, build_synthetic, generate_batch
    import calibsynth.synth as S
    kill_after = int(sys.argv[2])
    calls = [0]
    original = S.generate_batch
    def counting(*a, **k):
        if calls[0] == kill_after:
            os.kill(os.getpid(), 9)  # killed between batches, like a cut session
        calls[0] += 1
        return original(*a, **k)
    S.generate_batch = counting
    m, tok = tiny_model("llama")
    cfg = SynthConfig(n_docs=12, batch_size=3, max_new_tokens=16, min_tokens=2, seed=5)
    build_synthetic(m, tok, "news", cfg, sys.argv[1], progress=False)
""")


def test_resume_after_a_killed_build_gives_the_same_file(tmp_path):
    script = tmp_path / "run.py"
    script.write_text(RESUME_SCRIPT)
    a, b = tmp_path / "a.jsonl", tmp_path / "b.jsonl"
    killed = subprocess.run([sys.executable, str(script), str(a), "2"], capture_output=True)
    assert killed.returncode == -signal.SIGKILL and not a.exists()
    assert len(read_jsonl(tmp_path / "a.partial.jsonl")) == 6  # two batches of three survived
    subprocess.run([sys.executable, str(script), str(a), "-1"], check=True, capture_output=True)
    subprocess.run([sys.executable, str(script), str(b), "-1"], check=True, capture_output=True)
    assert a.read_text() == b.read_text() and not (tmp_path / "a.partial.jsonl").exists()


def test_vllm_backend_fails_clearly_without_vllm(tiny, tmp_path):
    pytest.importorskip("transformers")
    try:
        import vllm  # noqa: F401
        pytest.skip("vllm is installed")
    except ImportError:
        pass
    model, tok = tiny
    with pytest.raises(ModuleNotFoundError, match="vllm"):
        build_synthetic(model, tok, "news", SynthConfig(n_docs=2, backend="vllm"), tmp_path / "v.jsonl", progress=False)


def test_filter_perplexity_runs_in_the_weights_dtype_unless_told(tiny):
    import copy

    model, tok = tiny
    texts = ["a short one", "a somewhat longer text about calibration data"]
    half = copy.deepcopy(model).to(torch.bfloat16)
    default = text_perplexities(half, tok, texts)  # bf16 weights (a GPU load) score in bf16, as they sampled
    assert default == text_perplexities(half, tok, texts, forward_dtype="bfloat16")
    assert default == pytest.approx(text_perplexities(model, tok, texts), rel=2e-2)
    with pytest.raises(ValueError, match="cannot run a model whose weights"):
        text_perplexities(half, tok, texts, forward_dtype="float32")
    with pytest.raises(ValueError, match="'fp16'"):
        text_perplexities(model, tok, texts, forward_dtype="fp16")


class PromptLogprobsLLM:
    "vLLM's offline `LLM` as `_build_vllm` uses it, computed with a transformers model."

    def __init__(self, model, tok):
        self.model, self.tok = model, tok

    def generate(self, prompts, params):
        from types import SimpleNamespace as NS

        outs = []
        for k, p in enumerate(prompts):
            ids = p["prompt_token_ids"]
            if params.get("prompt_logprobs") is None:  # sampling: a fixed continuation per prompt
                more = self.tok(f" {k}: and then the story goes on", add_special_tokens=False).input_ids
                outs.append(NS(outputs=[NS(token_ids=more[:params["max_tokens"]], cumulative_logprob=-1.0)]))
                continue
            assert params == dict(max_tokens=1, prompt_logprobs=0)
            with torch.no_grad():
                logp = self.model(torch.tensor([ids])).logits[0].log_softmax(-1)
            entries = [None] + [{ids[t]: NS(logprob=logp[t - 1, ids[t]].item()),
                                 int(logp[t - 1].argmax()): NS(logprob=logp[t - 1].max().item())}
                                for t in range(1, len(ids))]
            outs.append(NS(prompt_logprobs=entries))
        return outs


def test_vllm_backend_filters_on_the_tokens_the_transformers_path_scores(tiny, tmp_path, monkeypatch):
    import types

    model, tok = tiny
    fake = types.ModuleType("vllm")
    fake.SamplingParams = lambda **kw: kw
    fake.LLM = lambda model, seed: PromptLogprobsLLM(tiny[0], tok)
    monkeypatch.setitem(sys.modules, "vllm", fake)
    cfg = SynthConfig(n_docs=6, max_new_tokens=12, min_tokens=2, drop_top=0.2, backend="vllm")
    path = build_synthetic(model, tok, "news", cfg, tmp_path / "v.jsonl", progress=False)
    rows = read_jsonl(path)
    assert len(rows) == 5  # 6 generations, the highest-perplexity one dropped
    ref = text_perplexities(model, tok, [r["text"] for r in rows])
    assert [r["ppl"] for r in rows] == pytest.approx(ref, rel=1e-4)  # prefix included, as the hf path scores


# --- a token budget instead of a count (issue 14, item 5) -------------------------------------------------------

from collections import Counter  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402

import calibsynth.synth as S  # noqa: E402
from calibsynth.sources import calibration_pool, synthetic_pool, token_stream, window_starts  # noqa: E402
from calibsynth.synth import PoolTokens  # noqa: E402

BUDGET = dict(n_docs=4, batch_size=4, max_new_tokens=24, min_tokens=4, drop_top=0.2)


def spans(ids: torch.Tensor, n: int = 32) -> list[tuple]:
    "Every n-token span of the windows (BOS left out)."
    return [tuple(r[i:i + n]) for r in ids[:, 1:].tolist() for i in range(len(r) - n + 1)]


def test_key_keeps_the_committed_manifests_and_a_budget_is_validated():
    committed = sorted(Path(__file__).parent.parent.glob("results/synthetic/*/*.manifest.json"))
    assert committed
    for p in committed:  # sets built before target_tokens existed still match their manifests
        config = json.loads(p.read_text())["config"]
        assert SynthConfig(**config).key() == config, p
    assert SynthConfig(target_tokens=512).key()["target_tokens"] == 512
    for bad in (-1, True, 2.5):
        with pytest.raises(ValueError, match="target_tokens"):
            SynthConfig(target_tokens=bad)
    with pytest.raises(ValueError, match="backend='hf' only"):
        SynthConfig(target_tokens=512, backend="vllm")


def test_budget_build_generates_until_the_filtered_pool_holds_the_budget(tiny, tmp_path):
    model, tok = tiny
    cfg = SynthConfig(**BUDGET, target_tokens=4 * 64)
    path = build_synthetic(model, tok, "news", cfg, tmp_path / "b.jsonl", progress=False)
    man, rows = json.loads(S.manifest_path(path).read_text()), read_jsonl(path)
    assert man["n_generated"] > cfg.n_docs and man["n_generated"] % cfg.batch_size == 0  # went on, in whole batches
    pool = synthetic_pool(path)
    assert man["pool_tokens"] == PoolTokens(tok)(pool) >= cfg.target_tokens
    assert pool == calibration_pool([r["text"] for r in rows])
    # the threshold is the quantile of everything generated, not of each batch (a batch of 4 would drop none)
    clean = man["n_generated"] - man["n_degenerate"]
    assert man["n_kept"] == clean - int(clean * cfg.drop_top) < clean
    # no hidden split: the pool is what `sources` cuts into calib and eval, together
    assert sorted(pool) == sorted(load_texts(str(path), "calib") + load_texts(str(path), "eval"))
    assert "no eval split" in man["calibration_pool"]
    # the same settings reuse the set; another generation seed gives another set
    assert build_synthetic(model, tok, "news", cfg, path, progress=False) == path
    other = build_synthetic(model, tok, "news", SynthConfig(**BUDGET, target_tokens=4 * 64, seed=1),
                            tmp_path / "b1.jsonl", progress=False)
    assert not set(synthetic_pool(other)) & set(pool)


def test_budget_build_resumes_to_the_same_file(tiny, tmp_path, monkeypatch):
    model, tok = tiny
    cfg = SynthConfig(**BUDGET, target_tokens=4 * 64)
    whole = build_synthetic(model, tok, "news", cfg, tmp_path / "whole.jsonl", progress=False)
    original, calls = S.generate_batch, []

    def dies_on_the_second_batch(*a, **k):
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return original(*a, **k)

    monkeypatch.setattr(S, "generate_batch", dies_on_the_second_batch)
    with pytest.raises(KeyboardInterrupt):
        build_synthetic(model, tok, "news", cfg, tmp_path / "cut.jsonl", progress=False)
    partial = tmp_path / "cut.partial.jsonl"
    first = read_jsonl(partial)
    assert {r["batch"] for r in first} == {0}
    with open(partial, "a") as f:  # a batch cut short by a kill: redone, not kept
        f.write(json.dumps(dict(first[0], batch=1)) + "\n" + '{"batch": 1, "tex')
    monkeypatch.setattr(S, "generate_batch", original)
    with pytest.warns(UserWarning, match="torn last line"):
        cut = build_synthetic(model, tok, "news", cfg, tmp_path / "cut.jsonl", progress=False)
    assert cut.read_text() == whole.read_text() and not partial.exists()


def test_budget_that_cannot_be_met_stops_with_the_sizes(tiny, tmp_path):
    model, tok = tiny
    cfg = SynthConfig(n_docs=4, batch_size=4, max_new_tokens=12, min_tokens=4, target_tokens=8)  # texts < 20 chars
    with pytest.raises(ValueError, match="20 generations keep 0 tokens, fewer than target_tokens=8"):
        build_synthetic(model, tok, "news", cfg, tmp_path / "never.jsonl", progress=False)


def test_a_synthetic_calibration_draw_repeats_no_32_token_span(tiny, tmp_path, monkeypatch):
    monkeypatch.setenv("CALIBSYNTH_CACHE", str(tmp_path))
    model, tok = tiny
    n, seqlen = 4, 64
    build_synthetic(model, tok, "news", SynthConfig(**BUDGET, target_tokens=n * seqlen),
                    synthetic_path("tiny", "news", "budget"), progress=False)
    draws = [sample_calibration("syn:tiny:news:budget", tok, n, seqlen, seed=s) for s in range(4)]
    pool_stream = token_stream(tok, synthetic_pool("syn:tiny:news:budget"), per_text=True)
    for s, d in enumerate(draws):  # each draw is distinct stretches of the whole pool's stream
        starts = window_starts(len(pool_stream), seqlen - 1, n, s, placement="uniform")
        assert d.shape == (n, seqlen) and (np.diff(starts) >= seqlen - 1).all()
        assert d[:, 1:].tolist() == [pool_stream[a:a + seqlen - 1].tolist() for a in starts]
    assert not torch.equal(draws[0], draws[1])  # the seed moves the windows
    with pytest.raises(ValueError, match=r"64 x 64 tokens needs 4032 text tokens"):
        sample_calibration("syn:tiny:news:budget", tok, 64, seqlen)


def test_calibration_windows_are_disjoint_seeded_and_spread():
    _, tok = tiny_model("llama", seed=0)
    texts = load_texts("news", limit=40)
    stream = token_stream(tok, texts, per_text=True)
    w = sample_calibration(texts, tok, 50, 33, seed=3)
    assert w.shape == (50, 33) and (w[:, 0] == tok.bos_token_id).all()
    assert torch.equal(w, sample_calibration(texts, tok, 50, 33, seed=3))
    assert not torch.equal(w, sample_calibration(texts, tok, 50, 33, seed=4))
    starts = window_starts(len(stream), 32, 50, seed=3, placement="uniform")
    assert (np.diff(starts) >= 32).all() and starts[-1] + 32 <= len(stream)
    assert all(torch.equal(w[i, 1:], torch.from_numpy(stream[s:s + 32])) for i, s in enumerate(starts))
    assert starts[0] < len(stream) / 4 and starts[-1] > 3 * len(stream) / 4  # over the whole stream
    _, nobos = tiny_model("llama", add_bos=False)
    assert sample_calibration(texts, nobos, 5, 32).shape == (5, 32)
    with pytest.raises(ValueError, match="seqlen"):
        sample_calibration(texts, tok, 5, 1)
    with pytest.raises(ValueError, match="n_samples must be a positive integer"):
        sample_calibration(texts, tok, 0, 16)


def test_window_placements_are_uniform():
    # 2 windows of 3 in 10 positions: C(4 + 2, 2) = 15 placements, each as likely
    counts = Counter(tuple(window_starts(10, 3, 2, seed=s, placement="uniform")) for s in range(3000))
    assert len(counts) == 15
    assert max(counts.values()) < 260 and min(counts.values()) > 140  # 200 expected, sd 14
