import math

import pytest
import torch
import torch.nn.functional as F

from calibsynth.evaluate import perplexity
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
