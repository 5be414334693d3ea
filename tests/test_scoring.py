import copy
import math

import numpy as np
import pytest
import torch

from calibsynth.models import tiny_model
from calibsynth.scoring import (check_forward_dtype, forward_context, perplexity_from_logprobs, score_sequences,
                                score_windows, text_token_ids)


def windows_of(n=4, seqlen=20, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randint(3, 259, (n, seqlen), generator=g)


def float64_scores(model, windows):
    "logp, mu and sigma of every next token, from the definitions, in float64 end to end."
    m = copy.deepcopy(model).double()
    with torch.no_grad():
        logp = m(windows).logits[:, :-1].log_softmax(-1)
    p = logp.exp()
    mu = (p * logp).sum(-1)
    sigma = (p * (logp - mu[..., None]) ** 2).sum(-1).sqrt()
    return dict(logp=logp.gather(2, windows[:, 1:, None]).squeeze(2), mu=mu, sigma=sigma)


@pytest.mark.parametrize("bad", ["fp16", "auto", "float64", torch.float16, ""])
def test_a_bad_forward_dtype_is_named_before_any_work(bad):
    model, tok = tiny_model("llama")
    model.get_decoder = lambda: pytest.fail("the model ran before the dtype was checked")
    with pytest.raises(ValueError, match="forward_dtype must be one of") as e:
        score_windows(model, windows_of(), forward_dtype=bad)
    assert repr(bad) in str(e.value)
    with pytest.raises(ValueError, match="forward_dtype"):
        score_sequences(model, [[1, 5, 6]], forward_dtype=bad)


def test_float32_is_refused_on_reduced_precision_weights_and_none_means_the_weights():
    model, _ = tiny_model("llama")
    half = copy.deepcopy(model).to(torch.bfloat16)
    with pytest.raises(ValueError, match="cannot run a model whose weights are torch.bfloat16"):
        score_windows(half, windows_of(), forward_dtype="float32")
    assert check_forward_dtype(None, half) == torch.bfloat16 and check_forward_dtype(None, model) == torch.float32
    assert check_forward_dtype("float16", half) == torch.float16  # same width: autocast can run it


@pytest.mark.parametrize("name,dtype", [("float32", torch.float32), ("bfloat16", torch.bfloat16),
                                        ("float16", torch.float16)])
def test_the_decoder_really_runs_in_the_forward_dtype_on_the_cpu(name, dtype):
    model, _ = tiny_model("llama", seed=1)
    seen = []
    model.model.layers[1].self_attn.o_proj.register_forward_hook(lambda mod, inp, out: seen.append(out.dtype))
    got = score_windows(model, windows_of(), forward_dtype=name)["logp"]
    assert seen and set(seen) == {dtype}
    assert got.dtype == torch.float32  # scores are float32 whatever the forward ran in
    ref = float64_scores(model, windows_of())["logp"]
    tol = 1e-4 if dtype == torch.float32 else 5e-2  # a reduced-precision forward moves scores by rounding only
    assert (got.double() - ref).abs().max() < tol


def test_an_autocast_that_does_not_engage_is_an_error(monkeypatch):
    model, _ = tiny_model("llama")
    monkeypatch.setattr(torch, "is_autocast_enabled", lambda *a: False)  # what a build without CPU float16 does
    with pytest.raises(RuntimeError, match="cannot autocast"):
        with forward_context(model, "float16"):
            pass


@pytest.mark.parametrize("arch", ["llama", "gemma3"])
def test_windows_match_float64_definitions_chunked_or_not(arch):
    model, _ = tiny_model(arch, seed=4)
    w = windows_of(5, 24, seed=1)
    ref = float64_scores(model, w)
    for chunk in (None, 1, 7, 256):
        got = score_windows(model, w, batch_size=2, stats=True, chunk=chunk)
        assert got["logp"].shape == (5, 23)
        for name in ("logp", "mu", "sigma"):
            assert (got[name].double() - ref[name]).abs().max() < 1e-4, (chunk, name)


def test_the_head_never_sees_more_than_chunk_positions():
    model, _ = tiny_model("gemma3", seed=0)
    rows = []
    model.get_output_embeddings().register_forward_hook(lambda mod, inp, out: rows.append(tuple(out.shape)))
    score_windows(model, windows_of(6, 30), batch_size=4, stats=True, chunk=16)
    assert max(r[0] for r in rows) == 16 and all(len(r) == 2 for r in rows)
    assert sum(r[0] for r in rows) == 6 * 29  # every target position once, no padding


def test_soft_capped_logits_are_scored_as_the_model_computes_them():
    model, _ = tiny_model("gemma3", seed=2)
    model.config.final_logit_softcapping = 0.05  # the random logits are small: a low cap changes every score
    w = windows_of(3, 16)
    capped = float64_scores(model, w)["logp"]
    assert (score_windows(model, w)["logp"].double() - capped).abs().max() < 1e-4
    model.config.final_logit_softcapping = None
    assert (score_windows(model, w)["logp"].double() - capped).abs().max() > 1e-2


def test_a_rescaled_head_is_refused():
    model, _ = tiny_model("llama")
    model.config.logits_scaling = 4.0
    with pytest.raises(ValueError, match="logits_scaling"):
        score_windows(model, windows_of())


def test_sequences_keep_input_order_and_equal_one_at_a_time():
    model, tok = tiny_model("llama", seed=3)
    texts = ["mid length text", "", "a somewhat longer text about calibration data", "ab", "x" * 70]
    encoded = text_token_ids(tok, texts)
    batched = score_sequences(model, encoded, batch_size=3, stats=True, chunk=5)
    assert [len(s["logp"]) for s in batched] == [len(e) - 1 for e in encoded] == [15, 0, 45, 2, 70]
    for e, b in zip(encoded, batched):
        alone = score_sequences(model, [e], batch_size=1, stats=True)[0]
        for name in ("logp", "mu", "sigma"):
            assert b[name].dtype == np.float32
            np.testing.assert_allclose(b[name], alone[name], atol=1e-4)
    ref = float64_scores(model, torch.tensor([encoded[2]]))["logp"][0].numpy()
    np.testing.assert_allclose(batched[2]["logp"], ref, atol=1e-4)


def test_text_token_ids_is_the_default_encoding_cut_to_max_length():
    _, tok = tiny_model("llama")
    _, no_bos = tiny_model("llama", add_bos=False)
    assert text_token_ids(tok, ["hi", ""]) == [[1, tok("hi").input_ids[1], tok("hi").input_ids[2]], [1]]
    assert text_token_ids(no_bos, ["hi", ""]) == [no_bos("hi").input_ids, []]
    assert len(text_token_ids(tok, ["z" * 50], max_length=8)[0]) == 8 and text_token_ids(tok, []) == []
    for bad in (1, 2.5, True):
        with pytest.raises(ValueError, match="max_length"):
            text_token_ids(tok, ["text"], max_length=bad)
    with pytest.raises(ValueError, match="list of strings"):
        text_token_ids(tok, "one string")


@pytest.mark.parametrize("kwargs,match", [(dict(batch_size=0), "batch_size"), (dict(chunk=0), "chunk"),
                                          (dict(chunk=2.0), "chunk")])
def test_bad_batch_and_chunk(kwargs, match):
    model, _ = tiny_model("llama")
    with pytest.raises(ValueError, match=match):
        score_windows(model, windows_of(), **kwargs)
    with pytest.raises(ValueError, match="LongTensor"):
        score_windows(model, windows_of().float())


def test_perplexity_from_logprobs():
    assert perplexity_from_logprobs([math.log(0.5), math.log(0.125)]) == pytest.approx(4.0)
    assert perplexity_from_logprobs(torch.full((3, 2), -math.log(9.0))) == pytest.approx(9.0)
    assert math.isnan(perplexity_from_logprobs([]))


@pytest.mark.slow
def test_smollm2_in_every_forward_dtype(smollm2):
    model, tok = smollm2
    encoded = text_token_ids(tok, ["In the beginning God created the heaven and the earth.",
                                   "def f(x):\n    return x + 1"])
    ppl = {d: [perplexity_from_logprobs(s["logp"]) for s in score_sequences(model, encoded, forward_dtype=d)]
           for d in ("float32", "bfloat16", "float16")}
    for d in ("bfloat16", "float16"):
        assert all(math.isfinite(p) for p in ppl[d])
        assert ppl[d] == pytest.approx(ppl["float32"], rel=0.05)
