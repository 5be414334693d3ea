import copy
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from calibsynth.models import byte_tokenizer, tiny_model
from calibsynth.similarity import (embedding_similarity, membership_scores, min_k_plus_plus, min_k_prob, ngram_overlap,
                                   train_tiny_lm)
from calibsynth.stats import roc_auc
from calibsynth.sources import load_texts


def reference_scores(model, tok, text, k):
    "Float64 end to end, one text, written from the definitions."
    m = copy.deepcopy(model).double()
    ids = tok(text, return_tensors="pt").input_ids
    with torch.no_grad():
        logits = m(ids).logits[0, :-1].double()
    logp = F.log_softmax(logits, -1)
    p = logp.exp()
    tgt = ids[0, 1:]
    lp = logp[torch.arange(len(tgt)), tgt]
    mu = (p * logp).sum(-1)
    sigma = ((p * (logp - mu[:, None]) ** 2).sum(-1)).sqrt()
    z = (lp - mu) / sigma
    n = max(1, int(len(tgt) * k))
    return lp.sort().values[:n].mean().item(), z.sort().values[:n].mean().item()


TEXTS = ["In the beginning God created the heaven and the earth.",
         "def f(x):\n    return x + 1",
         "A short one."]


@pytest.mark.parametrize("arch", ["llama", "gemma3"])
def test_scores_match_a_float64_reference_on_tiny_models(arch):
    model, tok = tiny_model(arch, seed=4)
    got = membership_scores(model, tok, TEXTS, k=0.5, batch_size=2, chunk=7)
    for i, t in enumerate(TEXTS):
        ref_mk, ref_pp = reference_scores(model, tok, t, 0.5)
        assert got["min_k"][i] == pytest.approx(ref_mk, abs=1e-4)
        assert got["min_k_pp"][i] == pytest.approx(ref_pp, abs=1e-4)


@pytest.mark.slow
def test_scores_match_a_float64_reference_on_smollm2(smollm2):
    model, tok = smollm2
    mk, pp = min_k_prob(model, tok, TEXTS, k=0.2), min_k_plus_plus(model, tok, TEXTS, k=0.2)
    for i, t in enumerate(TEXTS):
        ref_mk, ref_pp = reference_scores(model, tok, t, 0.2)
        assert mk[i] == pytest.approx(ref_mk, abs=1e-3) and pp[i] == pytest.approx(ref_pp, abs=1e-3)


def test_chunks_and_forward_dtypes():
    model, tok = tiny_model("gemma3", seed=4)
    whole = membership_scores(model, tok, TEXTS, k=0.5, chunk=None)
    for chunk in (1, 3):
        got = membership_scores(model, tok, TEXTS, k=0.5, chunk=chunk)
        np.testing.assert_allclose(got["min_k_pp"], whole["min_k_pp"], atol=1e-4)
        np.testing.assert_allclose(got["min_k"], whole["min_k"], atol=1e-5)
    half = membership_scores(model, tok, TEXTS, k=0.5, forward_dtype="float16")
    assert half != whole
    np.testing.assert_allclose(half["min_k_pp"], whole["min_k_pp"], atol=0.05)
    with pytest.raises(ValueError, match="'fp16'"):
        min_k_prob(model, tok, TEXTS, forward_dtype="fp16")


def test_batched_equals_one_at_a_time():
    model, tok = tiny_model("llama", seed=2)
    texts = load_texts("news", limit=5)
    batched = min_k_plus_plus(model, tok, [t[:300] for t in texts], batch_size=5)
    single = [min_k_plus_plus(model, tok, [t[:300]], batch_size=1)[0] for t in texts]
    np.testing.assert_allclose(batched, single, atol=1e-4)


def test_ngram_overlap():
    ref = load_texts("bible", limit=20)
    inside = " ".join(ref[3].split()[10:60])
    disjoint = "completely unrelated words about compilers, registers, caches and pipelines " * 3
    assert ngram_overlap([inside, disjoint], iter(ref), n=13) == [1.0, 0.0]
    assert math.isnan(ngram_overlap(["too short"], ref, n=13)[0])


def test_membership_is_detected():
    docs = [d for d in load_texts("news") if len(d) > 300]
    members, nonmembers = docs[:24], docs[24:48]
    model, tok, loss = train_tiny_lm(members)
    s = membership_scores(model, tok, [d[:128] for d in members + nonmembers])
    assert roc_auc(s["min_k_pp"][:24], s["min_k_pp"][24:]) >= 0.9, loss
    assert roc_auc(s["min_k"][:24], s["min_k"][24:]) >= 0.9


def test_embedding_similarity_prefers_the_same_domain():
    code, bible = load_texts("code", limit=12), load_texts("bible", limit=12)
    same = embedding_similarity(code[6:], code[:6])
    other = embedding_similarity(bible[:6], code[:6])
    assert np.mean(same["cosine"]) > np.mean(other["cosine"])
    assert same["mean_distance"] < other["mean_distance"] and same["mmd2"] < other["mmd2"]


def test_roc_auc():
    assert roc_auc([3, 4], [1, 2]) == 1.0 and roc_auc([1], [1]) == 0.5


@pytest.mark.parametrize("k", [0, 1.5, -0.2, True])
def test_bad_k(k):
    model, tok = tiny_model("llama")
    with pytest.raises(ValueError, match="k must be"):
        min_k_plus_plus(model, tok, ["some text"], k=k)


def test_bad_inputs():
    model, tok = tiny_model("llama")
    with pytest.raises(ValueError, match="non-empty"):
        min_k_prob(model, tok, [])
    with pytest.raises(ValueError, match="fewer than 2 tokens"):
        min_k_plus_plus(model, tok, ["fine text", ""])
    with pytest.raises(ValueError, match="n must be"):
        ngram_overlap(["a b c"], ["a b c"], n=0)


# --- Min-K%++ on fixed-length windows (issue 14, item 4) --------------------------------------------------------

import pandas as pd  # noqa: E402

from calibsynth.similarity import score_correlations, summarize_with_ci, window_scores  # noqa: E402
from calibsynth.sources import sample_calibration  # noqa: E402


def test_similarity_windows_are_deterministic_counted_and_of_one_length():
    _, tok = tiny_model("llama")
    texts = load_texts("news")
    w = sample_calibration(texts, tok, 120, 128, seed=0)  # the windows Min-K%++ is scored on: the calibration sampler
    assert w.shape == (120, 128) and w.dtype == torch.long
    assert torch.equal(w, sample_calibration(texts, tok, 120, 128, seed=0))
    assert not torch.equal(w, sample_calibration(texts, tok, 120, 128, seed=1))
    assert (w[:, 0] == tok.bos_token_id).all()
    body = [tuple(r) for r in w[:, 1:].tolist()]
    assert len(set(body)) == 120  # no window drawn twice
    with pytest.raises(ValueError, match="give fewer samples"):
        sample_calibration(texts[:2], tok, 1000, 128)


def test_window_scores_agree_with_the_per_text_scores_and_have_one_length():
    model, tok = tiny_model("gemma3", seed=4)
    w = sample_calibration(load_texts("bible", limit=50), tok, 10, 48, seed=2)
    df = window_scores(model, tok, w, k=0.2, batch_size=3)
    assert len(df) == 10 and df.n_tokens.unique().tolist() == [47]
    for i in (0, 7):  # the same numbers as the float64 definition, through a different batch
        m = copy.deepcopy(model).double()
        with torch.no_grad():
            logp = F.log_softmax(m(w[i:i + 1]).logits[0, :-1], -1)
        lp = logp[torch.arange(47), w[i, 1:]]
        mu = (logp.exp() * logp).sum(-1)
        z = (lp - mu) / (logp.exp() * (logp - mu[:, None]) ** 2).sum(-1).sqrt()
        assert df.min_k[i] == pytest.approx(lp.sort().values[:9].mean().item(), abs=1e-4)
        assert df.min_k_pp[i] == pytest.approx(z.sort().values[:9].mean().item(), abs=1e-4)
        assert df.entropy[i] == pytest.approx(-mu.mean().item(), abs=1e-4)
        assert df.nll[i] == pytest.approx(-lp.mean().item(), abs=1e-4)
    with pytest.raises(ValueError, match="k must be"):
        window_scores(model, tok, w, k=0)
    with pytest.raises(ValueError, match="outside the tokenizer's vocabulary"):
        window_scores(model, tok, w + len(tok))
    with pytest.raises(ValueError, match="LongTensor"):
        window_scores(model, tok, w.float())


def test_summarize_with_ci_covers_the_true_mean_at_about_95_percent():
    rng = np.random.default_rng(1)
    hits, trials = 0, 200
    for t in range(trials):
        df = pd.DataFrame(dict(source=["s"] * 128, score=rng.normal(0.3, 1.0, 128)))
        ci = summarize_with_ci(df, "score", n_resamples=999, seed=t).loc["s"]
        hits += ci.low <= 0.3 <= ci.high
    assert 0.89 <= hits / trials <= 0.99
    two = pd.DataFrame(dict(src=list("aabbb"), x=[1.0, 3.0, 5.0, 5.0, 5.0]))
    out = summarize_with_ci(two, "x", by="src")
    assert list(out.index) == ["b", "a"] and out.loc["b"].tolist() == [5.0, 5.0, 5.0, 3]  # constant: a point
    assert out.loc["a", "mean"] == 2.0
    with pytest.raises(ValueError, match="columns"):
        summarize_with_ci(two, "y", by="src")
    with pytest.raises(ValueError, match="an interval needs 2"):
        summarize_with_ci(two.iloc[1:], "x", by="src")


def test_score_correlations_are_spearman_per_group():
    df = pd.DataFrame(dict(source=list("aaaabbbb"), s=[1, 2, 3, 4, 1, 2, 3, 4],
                           entropy=[1, 4, 9, 16, 4, 3, 2, 1], nll=[2, 1, 4, 3, 1, 1, 1, 2]))
    out = score_correlations(df, "s")
    assert out.loc["a", "entropy"] == 1.0 and out.loc["b", "entropy"] == -1.0
    assert out.loc["a", "nll"] == pytest.approx(0.6)
    with pytest.raises(ValueError, match="columns"):
        score_correlations(df, "s", ("length",))
