import copy
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from calibsynth.models import byte_tokenizer, tiny_model
from calibsynth.similarity import (embedding_similarity, membership_scores, min_k_plus_plus, min_k_prob, ngram_overlap,
                                   roc_auc, train_tiny_lm)
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
