import json

import pytest
import torch

from calibsynth.models import (EMBEDDED_MODELS, bos_id, embedded_checkpoint, load_model, padded_batches, resolve_dtype,
                               tiny_model)


def test_unknown_alias_lists_embedded_models():
    with pytest.raises(ValueError, match="smollm2-135m"):
        load_model("smollm-9000")


def test_missing_local_directory_is_named(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope"):
        load_model(str(tmp_path / "nope"))


def test_hub_id_offline_fails_with_clear_error(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(OSError, match="embedded models that work offline"):
        load_model("someone/not-a-model-xyz")


def test_bad_dtype_is_named():
    with pytest.raises(ValueError, match="float8"):
        resolve_dtype("float8", torch.device("cpu"))


def test_auto_dtype_policy():
    assert resolve_dtype("auto", torch.device("cpu")) == torch.float32
    assert resolve_dtype("auto", torch.device("cuda")) == torch.bfloat16


@pytest.mark.parametrize("arch", ["llama", "gemma3"])
def test_local_directory_roundtrip(tmp_path, arch):
    model, tok = tiny_model(arch)
    model.save_pretrained(tmp_path)
    tok.save_pretrained(tmp_path)
    loaded, tok2 = load_model(str(tmp_path), device="cpu")
    ids = tok(["a small check"], return_tensors="pt").input_ids
    with torch.no_grad():
        torch.testing.assert_close(loaded(ids).logits, model(ids).logits)
    assert bos_id(tok2) == 1 and loaded.dtype == torch.float32


def test_tiny_model_unknown_arch():
    with pytest.raises(ValueError, match="mamba"):
        tiny_model("mamba")


@pytest.mark.parametrize("arch", ["llama", "gemma3"])
def test_padded_batches_score_like_one_at_a_time(arch):
    "Right padding is invisible to a causal model, also past Gemma's sliding window (16 in the tiny model)."
    model, tok = tiny_model(arch)
    texts = ["short", "a text longer than the sliding window of the tiny gemma", "mid-length text here"]
    encoded = [tok(t).input_ids for t in texts]
    seen = []
    with torch.no_grad():
        for idx, ids, mask in padded_batches(encoded, batch_size=2, pad_id=tok.pad_token_id):
            assert [len(encoded[i]) for i in idx] == sorted((len(encoded[i]) for i in idx), reverse=True)
            logits = model(input_ids=ids, attention_mask=mask).logits
            for row, i in enumerate(idx):
                alone = model(torch.tensor([encoded[i]])).logits[0]
                torch.testing.assert_close(logits[row, :len(encoded[i])], alone, rtol=1e-4, atol=1e-4)
            seen += idx
    assert sorted(seen) == [0, 1, 2] and seen[0] == 1  # the longest text first


@pytest.mark.slow
@pytest.mark.parametrize("alias,cls,n_layers,bos", [("smollm2-135m", "LlamaForCausalLM", 30, None),
                                                    ("gemma3-270m", "Gemma3ForCausalLM", 18, 2)])
def test_embedded_models_load_offline(alias, cls, n_layers, bos, request):
    model, tok = request.getfixturevalue(alias.split("-")[0])
    assert type(model).__name__ == cls and len(model.model.layers) == n_layers
    assert bos_id(tok) == bos
    ckpt = embedded_checkpoint(alias)
    info = json.loads((ckpt / "calibsynth-embedded.json").read_text())
    assert info["alias"] == alias and len(info["gguf_sha256"]) == 64
    assert any(ckpt.glob("*.safetensors"))
    enc = tok(["In the beginning God created the heaven and the earth."], return_tensors="pt")
    with torch.no_grad():
        ppl = model(**enc, labels=enc.input_ids).loss.exp().item()
    assert 1 < ppl < 200, ppl  # a real language model, not random weights (vocab >= 49k)
