"Pre-training of the crossover models: tokenizer, member splits, deterministic training, the committed checkpoints."
import json
from dataclasses import replace
from pathlib import Path

import pytest
import torch

from calibsynth.evaluate import perplexity
from calibsynth.models import load_model
from calibsynth.pretrain import (LEGACY_CONFIGS, LEGACY_MIXTURES, MANIFEST, MIXTURES, PRETRAIN_CONFIGS, PackedStream, PretrainConfig,
                                 check_mixture, ensure_model, ensure_tokenizer, member_documents, models_dir,
                                 plan_members, read_manifest, tokenizer_sha256, train_lm, train_tokenizer, water_fill)
from calibsynth.sources import OFFLINE_SOURCES, load_texts

SMOKE = LEGACY_CONFIGS["smoke"]  # toy sizes, documents split one by one
GROUPED = PRETRAIN_CONFIGS["smoke"]  # toy sizes of the known-data recipe: 90% of documents, near-duplicates grouped
# A toy corpus of three "domains", long enough for a few batches of 8 x 64 tokens.
TOY = {
    "verse": [f"And the {w} said unto them, Behold, the {w} of the field is {i} days old." for i, w in
              enumerate(["lord", "king", "prophet", "servant", "shepherd"] * 12)],
    "code": [f"def f{i}(x):\n    return x * {i} + {i % 7}\n" for i in range(60)],
    "gloss": [f"Word{i} (n.) a thing of the kind {i % 5}; see also word{i + 1}." for i in range(60)],
}
TOY_TEXTS = [t for texts in TOY.values() for t in texts]
TOY_CONFIG = replace(SMOKE, vocab_size=320, steps=8, warmup_steps=1, eval_every=2, heldout_windows=1)
# The committed checkpoints must score their manifest's held-out perplexity within this relative tolerance:
# float32 on any CPU differs from the training machine by summation order only.
CHECKPOINT_RTOL = 1e-3


@pytest.fixture(scope="module")
def toy_tokenizer():
    return train_tokenizer(TOY_TEXTS, vocab_size=TOY_CONFIG.vocab_size)


def test_tokenizer_is_deterministic_and_saves_with_bos(toy_tokenizer, tmp_path):
    assert tokenizer_sha256(train_tokenizer(TOY_TEXTS, 320)) == tokenizer_sha256(toy_tokenizer)
    assert tokenizer_sha256(train_tokenizer(TOY["code"], 320)) != tokenizer_sha256(toy_tokenizer)
    toy_tokenizer.save_pretrained(tmp_path)
    from transformers import AutoTokenizer

    again = AutoTokenizer.from_pretrained(tmp_path)
    ids = again("def f(x): return x").input_ids
    assert ids[0] == again.bos_token_id == 1 and (again.pad_token_id, again.eos_token_id) == (0, 2)
    assert again.decode(ids, skip_special_tokens=True) == "def f(x): return x"
    assert len(again) == 320


def test_ensure_tokenizer_refuses_other_sizes(tmp_path):
    tok = ensure_tokenizer(SMOKE, tmp_path)
    assert tokenizer_sha256(ensure_tokenizer(SMOKE, tmp_path)) == tokenizer_sha256(tok)
    with pytest.raises(ValueError, match="retrain=True"):
        ensure_tokenizer(replace(SMOKE, tokenizer_chars=1000), tmp_path)


def _curve(record):
    return [(c["train_loss"], c["heldout_loss"]) for c in record["curve"]]


def test_training_is_deterministic_by_seed_and_resumes_exactly(toy_tokenizer, tmp_path):
    heldout = {"code": TOY["code"][:20], "verse": TOY["verse"][:20]}
    _, first = train_lm(toy_tokenizer, TOY_TEXTS, heldout, TOY_CONFIG)
    _, again = train_lm(toy_tokenizer, TOY_TEXTS, heldout, TOY_CONFIG)
    _, other = train_lm(toy_tokenizer, TOY_TEXTS, heldout, replace(TOY_CONFIG, seed=1))
    assert len(first["curve"]) == 4 and _curve(first) == _curve(again)
    assert _curve(first) != _curve(other)
    state = tmp_path / "state.pt"
    _, part = train_lm(toy_tokenizer, TOY_TEXTS, heldout, TOY_CONFIG, state_path=state, until_step=3)
    assert part["step"] == 3 and state.exists()
    model, resumed = train_lm(toy_tokenizer, TOY_TEXTS, heldout, TOY_CONFIG, state_path=state)
    assert resumed["step"] == TOY_CONFIG.steps and _curve(resumed) == _curve(first)
    assert not model.training
    with pytest.raises(ValueError, match="until_step must be in 1..8"):
        train_lm(toy_tokenizer, TOY_TEXTS, heldout, TOY_CONFIG, until_step=9)


def test_packed_stream_covers_each_epoch_once():
    docs = [[10 + i] * (i + 1) for i in range(10)]  # 55 tokens + 10 separators
    stream = PackedStream(docs, sep=[3], bos=1, seqlen=6, batch_size=3, seed=0)
    assert (stream.tokens_per_epoch, stream.steps_per_epoch) == (65, 4)
    epoch = torch.cat([stream.batch(s) for s in range(4)])
    assert (epoch[:, 0] == 1).all() and epoch.shape == (12, 6)
    assert not torch.equal(stream.batch(0), stream.batch(4))  # the next epoch is packed in another order
    body = epoch[:, 1:].flatten().tolist()
    assert all(body.count(10 + i) <= i + 1 for i in range(10)) and len(body) == 60


def test_water_fill_balances_and_refuses_too_little():
    assert water_fill({"news": 35, "bible": 400, "code": 1000}, 800) == {"news": 35.0, "bible": 382.5, "code": 382.5}
    with pytest.raises(ValueError, match="fewer than the 800 asked for"):
        water_fill({"news": 35, "pydoc": 50}, 800)


def test_config_refuses_bad_sizes():
    with pytest.raises(ValueError, match="steps must be a positive integer, got 0"):
        PretrainConfig(steps=0)
    with pytest.raises(ValueError, match="member_fraction must be in"):
        PretrainConfig(member_fraction=0.0)
    with pytest.raises(ValueError, match="vocab_size must exceed"):
        PretrainConfig(vocab_size=200)


@pytest.mark.parametrize("recipe", [SMOKE, GROUPED], ids=["by document", "by group"])
def test_members_and_non_members_never_share_a_document(toy_tokenizer, recipe):
    config = replace(recipe, mixture_tokens=30_000)
    plan = plan_members(["news", "pydoc", "bible"], toy_tokenizer, config)
    total = sum(p["member_tokens"] for p in plan.values())
    slack = 0.25 if config.group_ngram else 0.1  # a group of near-duplicates (parallel passages) is cut whole
    assert abs(total - 30_000) < slack * 30_000
    split = member_documents(plan, seed=config.seed)
    for domain, parts in split.items():
        members = {d["id"] for d in parts["members"]}
        others = {d["id"] for d in parts["non_members"]}
        texts = {d["text"] for d in parts["members"]}
        assert members and members.isdisjoint(others)
        assert texts.isdisjoint(d["text"] for d in parts["non_members"])
        assert len(members) + len(others) == len(load_texts(domain, "calib")) == plan[domain]["n_calib"]
        assert len(members) <= plan[domain]["n_pool"] <= config.member_fraction * plan[domain]["n_calib"] + 1
    with pytest.raises(ValueError, match="do not match the plan's checksum"):
        member_documents(plan, seed=config.seed + 1)


def test_a_toy_model_round_trips_through_load_model(tmp_path):
    config = replace(SMOKE, steps=10, eval_every=5, warmup_steps=1)
    target = ensure_model("mix-b", config=config, root=tmp_path)
    manifest = read_manifest(target)
    assert manifest["domains"] == list(LEGACY_MIXTURES["mix-b"]) and manifest["train"]["steps"] == 10
    assert len(manifest["train"]["curve"]) == 2
    stamp = (target / "model.safetensors").stat().st_mtime_ns
    assert ensure_model("mix-b", config=config, root=tmp_path) == target  # read, not trained again
    assert (target / "model.safetensors").stat().st_mtime_ns == stamp
    with pytest.raises(ValueError, match="retrain=True"):
        ensure_model("mix-b", config=replace(config, steps=11), root=tmp_path)
    model, tokenizer = load_model(target)
    got = perplexity(model, tokenizer, load_texts("foldoc", "eval"), seqlen=config.seqlen,
                     max_windows=config.eval_windows)
    assert got == pytest.approx(manifest["heldout_perplexity"]["foldoc"], rel=CHECKPOINT_RTOL)
    # a model of the same name trained on other domains (the mixture was redefined) is refused, not reused
    (target / MANIFEST).write_text(json.dumps(manifest | dict(domains=["bible", "code", "news"])))
    with pytest.raises(ValueError, match="'domains'"):
        ensure_model("mix-b", config=config, root=tmp_path)


COMMITTED = [n for n in {**MIXTURES, **LEGACY_MIXTURES} if (models_dir("quick") / n / MANIFEST).exists()]


@pytest.mark.skipif(not COMMITTED, reason=f"no committed pre-trained models in {models_dir('quick')}: "
                                          "train them with calibsynth.pretrain.ensure_model")
@pytest.mark.parametrize("name", COMMITTED)
def test_committed_checkpoint_scores_its_manifest(name):
    target = models_dir("quick") / name
    manifest = read_manifest(target)
    assert manifest["domains"] == list(check_mixture(name)), "the committed model was trained on another mixture"
    config = PretrainConfig(**manifest["config"])
    assert (target / "model.safetensors").stat().st_size <= 25 * 2**20
    model, tokenizer = load_model(target)
    assert tokenizer_sha256(tokenizer) == manifest["tokenizer"]["sha256"]
    assert sum(p.numel() for p in model.parameters()) == manifest["n_parameters"]
    assert set(manifest["heldout_perplexity"]) <= set(OFFLINE_SOURCES)
    for domain in manifest["heldout_perplexity"]:  # the sources it was scored on (a source added later is not)
        got = perplexity(model, tokenizer, load_texts(domain, "eval"), seqlen=config.seqlen,
                         max_windows=config.eval_windows)
        assert got == pytest.approx(manifest["heldout_perplexity"][domain], rel=CHECKPOINT_RTOL), domain
    split = member_documents(manifest)  # the recipe still rebuilds the very members (checksum checked inside)
    for parts in split.values():
        assert {d["id"] for d in parts["members"]}.isdisjoint(d["id"] for d in parts["non_members"])
