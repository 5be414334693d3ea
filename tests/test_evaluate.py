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


from calibsynth.evaluate import OFFLINE_TASKS, build_task_items, evaluate_tasks, mean_sample_perplexity
from calibsynth.synth import text_perplexities


def test_mean_sample_perplexity_is_the_mean_of_each_texts_own():
    model, tok = tiny_model("llama", seed=3)
    texts = load_texts("bible", "eval", limit=4)
    texts = [t[:200] for t in texts]
    each = [text_perplexities(model, tok, [t])[0] for t in texts]
    assert mean_sample_perplexity(model, tok, texts, batch_size=3) == pytest.approx(sum(each) / len(each), rel=1e-4)


@pytest.mark.parametrize("task", OFFLINE_TASKS)
def test_task_items_are_deterministic_balanced_and_unique(task):
    a, b = build_task_items(task, 40, seed=0), build_task_items(task, 40, seed=0)
    assert a == b and a != build_task_items(task, 40, seed=1)
    assert len(a) >= 36 and len({it["context"] for it in a}) == len(a)
    counts = [sum(it["label"] == k for it in a) for k in range(4)]
    assert max(counts) - min(counts) <= 1 and all(len(set(it["choices"])) == 4 for it in a)


@pytest.mark.parametrize("task", ["cs_continuation", "cs_cloze"])
def test_task_text_never_comes_from_calibration_text(task):
    items = build_task_items(task, 40, seed=0)
    for src in {it["group"] for it in items}:
        calib = [" ".join(t.split()) for t in load_texts(src, "calib")]
        for it in [i for i in items if i["group"] == src][:5]:
            assert not any(it["context"] in c for c in calib)


def test_lm_eval_path_on_a_tiny_model():
    model, tok = tiny_model("llama")
    res = evaluate_tasks(model, tok, ["cs_analogy", "cs_definition"], limit=6, batch_size=8)
    assert set(res) == {"cs_analogy", "cs_definition", "average"}
    for t in ("cs_analogy", "cs_definition"):
        assert res[t]["n"] == 6 and 0 <= res[t]["acc"] <= 1 and res[t]["acc_stderr"] >= 0
    assert res["average"]["acc"] == pytest.approx((res["cs_analogy"]["acc"] + res["cs_definition"]["acc"]) / 2)


def test_task_errors():
    model, tok = tiny_model("llama")
    with pytest.raises(ValueError, match="cs_analogy"):
        evaluate_tasks(model, tok, ["lambada"])
    with pytest.raises(ValueError, match="unknown task"):
        evaluate_tasks(model, tok, [])
    with pytest.raises(ValueError, match="limit"):
        evaluate_tasks(model, tok, ["cs_cloze"], limit=0)
    with pytest.raises(ConnectionError, match="offline tasks"):
        evaluate_tasks(model, tok, ["boolq"])


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
