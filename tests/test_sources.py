import json
import re
import string

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch

from calibsynth import sources as S
from calibsynth.core import read_jsonl, sha256_file
from calibsynth.evaluate import NEUTRAL_PANEL, WIDE_PANEL, WIDE_PANEL_WINDOWS, held_out_texts
from calibsynth.models import byte_tokenizer

TOK = byte_tokenizer()
TOK_NOBOS = byte_tokenizer(add_bos=False)


def test_registry_has_five_offline_domains_and_the_four_hub_names():
    reg = S.list_sources()
    offline = [n for n, v in reg.items() if v["kind"] == "offline"]
    assert len(offline) >= 5 and len({reg[n]["domain"] for n in offline}) == len(offline)
    assert {"c4", "wikipedia", "slimpajama", "dclm"} <= {n for n, v in reg.items() if v["kind"] == "hub"}


@pytest.mark.parametrize("name", sorted(S.OFFLINE_SOURCES))
def test_offline_source_builds_with_disjoint_splits(name):
    calib, evals = S.load_texts(name, "calib"), S.load_texts(name, "eval")
    assert len(calib) > 10 and len(evals) > 5
    assert not set(calib) & set(evals)
    assert all(S.split_of(t) == "eval" for t in evals[:200])
    manifest = json.loads(S.source_path(name).with_suffix(".manifest.json").read_text())
    assert manifest["n_documents"] == len(calib) + len(evals)
    assert manifest["calib"]["n_documents"] == len(calib)


def test_committed_manifests_cover_every_offline_source():
    from pathlib import Path

    root = Path(__file__).resolve().parents[1] / "data" / "sources"
    for name in S.OFFLINE_SOURCES:
        m = json.loads((root / f"{name}.json").read_text())
        assert m["name"] == name and len(m["sha256"]) == 64 and m["licence"] and m["origin"]["version"]
        assert m["calib"]["n_tokens"] > 0 and m["eval"]["n_tokens"] > 0


def test_split_is_a_function_of_the_text_only():
    docs1 = S.prepare_documents(["alpha beta gamma delta", "epsilon zeta eta theta"], "a")
    docs2 = S.prepare_documents(["epsilon zeta eta theta", "alpha beta gamma delta"], "b")
    assert {d["text"]: d["split"] for d in docs1} == {d["text"]: d["split"] for d in docs2}


def test_sample_calibration_is_deterministic_per_seed():
    a = S.sample_calibration("bible", TOK, 8, 128, seed=3)
    b = S.sample_calibration("bible", TOK, 8, 128, seed=3)
    c = S.sample_calibration("bible", TOK, 8, 128, seed=4)
    assert a.dtype == torch.long and a.shape == (8, 128)
    assert torch.equal(a, b) and not torch.equal(a, c)


def test_every_window_starts_with_bos_when_the_tokenizer_uses_one():
    ids = S.sample_calibration("news", TOK, 6, 100, seed=0)
    assert (ids[:, 0] == TOK.bos_token_id).all() and not (ids[:, 1:] == TOK.bos_token_id).any()
    ids = S.sample_calibration("news", TOK_NOBOS, 6, 100, seed=0)
    assert not (ids == TOK.bos_token_id).any()


def test_a_window_is_a_contiguous_stretch_of_the_texts_joined_by_blank_lines():
    texts = ["x" * 50 + " ".join(f"w{i}" for i in range(400)), "y " * 300, "z " * 300]
    joined = "\n\n".join(texts)
    ids = S.sample_calibration(texts, TOK_NOBOS, 4, 64, seed=1)
    for row in ids:
        assert TOK_NOBOS.decode(row) in joined


def test_short_documents_are_joined_and_windows_cross_their_boundaries():
    texts = [f"entry {i}: a short definition." for i in range(50)]  # every doc far shorter than seqlen
    ids = S.sample_calibration(texts, TOK, 4, 256, seed=0)
    assert ids.shape == (4, 256)
    assert "\n\n" in TOK.decode(ids[0, 1:])  # windows cross document boundaries


def test_a_budget_the_text_cannot_fill_is_refused_with_the_numbers():
    with pytest.raises(ValueError, match="2 x 4096 tokens needs 8190 text tokens.*holds 28.*give fewer samples"):
        S.sample_calibration(["tiny text one", "tiny text two"], TOK, 2, 4096, seed=0)


@pytest.mark.parametrize("kwargs,match", [
    (dict(n_samples=0), "n_samples"), (dict(n_samples=-3), "n_samples"), (dict(seqlen=0), "seqlen"),
    (dict(seqlen=1.5), "seqlen"), (dict(n_samples=True), "n_samples"),
])
def test_bad_sampling_arguments_are_named(kwargs, match):
    args = dict(n_samples=2, seqlen=16, seed=0) | kwargs
    with pytest.raises(ValueError, match=match):
        S.sample_calibration(["some text " * 20], TOK, **args)


def test_unknown_source_lists_the_valid_ones():
    with pytest.raises(ValueError, match="bible"):
        S.load_texts("wikitext")
    with pytest.raises(ValueError, match="split"):
        S.load_texts("news", split="train")
    with pytest.raises(ValueError, match="limit"):
        S.load_texts("news", limit=0)
    with pytest.raises(ValueError, match="empty"):
        S.sample_calibration([], TOK, 1, 8)


@pytest.fixture
def docs():
    return [f"Document number {i} talks about topic {i % 7} at some length, with more words." for i in range(60)]


@pytest.mark.parametrize("suffix", [".txt", ".jsonl", ".json", ".parquet"])
def test_file_sources(tmp_path, docs, suffix):
    p = tmp_path / f"corpus{suffix}"
    if suffix == ".txt":
        p.write_text("\n\n".join(docs))
    elif suffix == ".jsonl":
        p.write_text("\n".join(json.dumps({"text": d, "id": i}) for i, d in enumerate(docs)))
    elif suffix == ".json":
        p.write_text(json.dumps([{"text": d} for d in docs]))
    else:
        pq.write_table(pa.table({"text": docs}), p)
    calib, evals = S.load_texts(str(p), "calib"), S.load_texts(p, "eval")
    assert sorted(calib + evals) == sorted(docs) and not set(calib) & set(evals)
    ids = S.sample_calibration(str(p), TOK, 3, 40, seed=0)
    assert ids.shape == (3, 40)


def test_bad_files(tmp_path):
    with pytest.raises(FileNotFoundError, match="absent.jsonl"):
        S.load_texts(str(tmp_path / "absent.jsonl"))
    (tmp_path / "empty.txt").write_text("  \n\n ")
    with pytest.raises(ValueError, match="no text"):
        S.load_texts(str(tmp_path / "empty.txt"))
    (tmp_path / "nofield.jsonl").write_text('{"content": "a long enough text here"}\n')
    with pytest.raises(ValueError, match="content"):
        S.load_texts(str(tmp_path / "nofield.jsonl"))
    (tmp_path / "x.csv").write_text("text\nabc\n")
    with pytest.raises(ValueError, match=".csv"):
        S.load_texts(str(tmp_path / "x.csv"))
    (tmp_path / "numbers.json").write_text("[1, 2, 3]")  # one line naming the file and the item, no traceback
    with pytest.raises(ValueError, match=r"numbers.json': item 0 is 1, not a text"):
        S.load_texts(str(tmp_path / "numbers.json"))
    (tmp_path / "mixed.jsonl").write_text('{"text": "a long enough text here"}\n{"text": 7}\n')
    with pytest.raises(ValueError, match=r"mixed.jsonl': item 1 is 7"):
        S.load_texts(str(tmp_path / "mixed.jsonl"))
    (tmp_path / "weights.txt").write_bytes(bytes(range(256)) * 4)  # a binary file named .txt
    with pytest.raises(ValueError, match=r"weights.txt' is not UTF-8 text \(byte 0x80 at offset 128\)"):
        S.load_texts(str(tmp_path / "weights.txt"))


def test_hub_source_code_path_on_a_local_stand_in(tmp_path, docs, monkeypatch):
    (tmp_path / "c4").mkdir()
    pq.write_table(pa.table({"text": docs[:30], "url": ["u"] * 30}), tmp_path / "c4" / "part-0.parquet")
    pq.write_table(pa.table({"text": docs[30:], "url": ["u"] * 30}), tmp_path / "c4" / "part-1.parquet")
    stand_in = S.HubSource("c4", str(tmp_path / "c4"), None, "local stand-in")
    monkeypatch.setitem(S.HUB_SOURCES, "c4", stand_in)
    calib = S.load_texts("c4", "calib", limit=10)
    assert len(calib) == 10 and all(S.split_of(t) == "calib" for t in calib)
    evals = S.load_texts("c4", "eval")
    assert evals and not set(evals) & set(S.load_texts("c4", "calib"))
    assert S.sample_calibration("c4", TOK, 2, 32, seed=0).shape == (2, 32)


def test_hub_source_offline_error_names_offline_sources(monkeypatch):
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    monkeypatch.setattr(S, "cache_dir", lambda *a, **k: __import__("pathlib").Path("/nonexistent-cache"))
    with pytest.raises(S.HubUnavailableError, match="unreachable.*Offline sources.*bible"):
        S.load_texts("dclm")


@pytest.mark.slow
def test_gemma_windows_start_with_bos_and_smollm2_windows_do_not(smollm2, gemma3):
    g = S.sample_calibration("bible", gemma3[1], 4, 64, seed=0)
    s = S.sample_calibration("bible", smollm2[1], 4, 64, seed=0)
    assert (g[:, 0] == 2).all() and g.shape == s.shape == (4, 64)
    assert smollm2[1].bos_token_id not in s[:, 0].tolist()


# --- the neutral evaluation panel ---------------------------------------------------------------------------------

REPO = __import__("pathlib").Path(__file__).resolve().parents[1]
DATA = REPO / "data"


def _words13(text):
    "An independent word 13-gram reader: whitespace tokens stripped of punctuation, lowercased."
    words = [w for w in (t.strip(string.punctuation + "“”‘’").lower() for t in text.split()) if w]
    return zip(*(words[i:] for i in range(13)))


def _panel_documents_sharing_a_13gram(panel_texts, calib_texts):
    grams = set()
    for t in panel_texts:
        grams.update(_words13(t))
    shared = set()
    for t in calib_texts:
        shared |= grams.intersection(_words13(t))
    return [t for t in panel_texts if not shared.isdisjoint(_words13(t))]


def test_panel_is_its_own_kind_never_an_offline_source():
    reg = S.list_sources()
    assert len(S.PANEL_SOURCES) >= 3 and not set(S.PANEL_SOURCES) & set(S.OFFLINE_SOURCES)
    assert all(reg[n]["kind"] == "panel" for n in S.PANEL_SOURCES)
    genres = {reg[n]["domain"] for n in S.PANEL_SOURCES}
    assert len(genres) == len(S.PANEL_SOURCES) and not genres & {s.domain for s in S.OFFLINE_SOURCES.values()}


@pytest.mark.parametrize("name", sorted(S.PANEL_SOURCES))
def test_panel_source_loads_its_eval_split_only(name):
    docs = S.load_texts(name, "eval")
    assert len(docs) >= 30 and len(set(docs)) == len(docs)  # the smallest, `history`, has one section a document
    assert S.load_texts(name, "eval", limit=5) == docs[:5]
    with pytest.raises(ValueError, match="held out for evaluation"):
        S.load_texts(name, "calib")
    assert S.check_source(name) == "panel"


@pytest.mark.parametrize("name", sorted(S.PANEL_SOURCES))
def test_panel_documents_are_deterministic_and_match_the_committed_manifest(name):
    built = read_jsonl(S.build_source(name))
    rebuilt = S.prepare_documents(S.PANEL_SOURCES[name].read(), name)  # read the packages again
    assert [(d["id"], d["text"]) for d in built] == [(d["id"], d["text"]) for d in rebuilt]
    committed = json.loads((DATA / "panel" / f"{name}.json").read_text())
    installed_versions = S.PANEL_SOURCES[name].package_versions()
    if committed["origin"]["packages"] != installed_versions:  # a Debian update is news, not a broken build
        pytest.skip(f"{name}: installed {installed_versions}, manifest {committed['origin']['packages']}: "
                    "regenerate data/panel/ (calibsynth sources --manifests)")
    assert committed["sha256"] == sha256_file(S.source_path(name))
    assert committed["eval"]["n_documents"] == len(S.load_texts(name, "eval"))
    assert committed["calib"]["n_documents"] == 0
    # the first three corpora hold 150 windows of 512 tokens; every one 1.5 times the wide panel's windows of 256,
    # so that its stratified windows still have room to move
    enough = 150 * 512 if name in NEUTRAL_PANEL else 1.5 * WIDE_PANEL_WINDOWS * 256
    assert committed["eval"]["n_tokens"] >= enough and committed["licence"] and committed["tokenizer"]
    installed = {f["path"]: f["sha256"] for f in committed["files"]}
    assert installed == {S.provenance_path(p): sha256_file(p) for _, p in S.PANEL_SOURCES[name].files()}


def test_panel_text_is_clean():
    manuals, fortunes, devil = (S.load_texts(n, "eval") for n in ("manuals", "fortunes", "devil"))
    for junk in ("\x1f", "\x00", "\x08", "\x7f", "* Menu:", "*note", "File: ", "(line ", "0. PREAMBLE"):
        assert not any(junk in t for t in manuals), junk
    assert not any(re.search(r"^[*=]{3,}$", t, re.M) for t in manuals)  # heading underlines
    assert not any("\x08" in t or re.search(r"^%$", t, re.M) for t in fortunes)
    attributed = [t for t in fortunes if re.search(r"^-- \S", t, re.M)]
    assert len(attributed) > len(fortunes) // 4 and any(t.endswith("-- Mark Twain") for t in attributed)
    assert not any(re.search(r"[\w.]+@[\w-]+\.\w", t) for t in fortunes)  # no addresses or message ids
    assert sum(bool(re.match(r"^[A-Z][A-Z' .-]*, ", t)) for t in devil) > 0.95 * len(devil)  # `HEADWORD, n. ...`


def test_wide_panel_text_is_clean():
    wiki, posts, lines, law = (S.load_texts(n, "eval") for n in ("encyclopedia", "usenet", "dialogue", "licences"))
    for junk in ("{{", "}}", "[[", "]]", "<ref", "<math", "&nbsp;", "&amp;", "'''", "[http", "http://", "thumb|"):
        assert not any(junk in t for t in wiki), junk
    assert not any(re.search(r"^(?:From|Path|Message-ID|Lines|Organization): ", t, re.M) for t in posts)  # headers
    assert not any(re.search(r"[\w.]+@[\w-]+\.\w", t) or re.search(r"^\s*>", t, re.M) for t in posts)  # addresses, quotes
    speakers = [line.split(": ", 1)[0] for t in lines for line in t.splitlines() if ": " in line]
    assert "Konrad" in speakers and not any("$" in s or "=" in s for s in speakers)
    assert not any("<i>" in t or '""' in t for t in lines)  # markup and WML's doubled quotes resolved
    assert any(t.startswith("GNU GENERAL PUBLIC LICENSE") for t in law)


def test_wide_panel_shares_no_13gram_with_any_committed_synthetic_set():
    """Self-generated text is calibration data too: a model that recites a licence or an encyclopedia article would be
    rewarded for resembling the evaluation text. Every committed synthetic set is checked against the wide panel."""
    sets = sorted((REPO / "results" / "synthetic").rglob("*.jsonl"))
    assert len(sets) >= 12
    synthetic = [row["text"] for p in sets for row in read_jsonl(p)]
    new = [t for n in WIDE_PANEL if n not in NEUTRAL_PANEL for t in S.load_texts(n, "eval")]
    assert _panel_documents_sharing_a_13gram(new, synthetic) == []


def test_wide_panel_windows_are_seeded_spread_and_identical_across_runs(smollm2):
    _, tok = smollm2
    body = S.window_body(tok, 256)
    for name in WIDE_PANEL:
        stream = S.token_stream(tok, held_out_texts(name))
        starts = S.window_starts(len(stream), body, WIDE_PANEL_WINDOWS, seed=0)
        assert np.array_equal(starts, S.window_starts(len(stream), body, WIDE_PANEL_WINDOWS, seed=0))  # identical
        assert not np.array_equal(starts, S.window_starts(len(stream), body, WIDE_PANEL_WINDOWS, seed=1))  # seeded
        assert (np.diff(starts) >= body).all()  # never overlapping
        strata = np.floor(starts / (len(stream) / WIDE_PANEL_WINDOWS)).astype(int)
        assert np.array_equal(strata, np.arange(WIDE_PANEL_WINDOWS)), name  # one window in each equal stretch: spread


def test_no_13gram_is_shared_by_the_panel_and_any_calibration_split():
    panel = [t for n in S.PANEL_SOURCES for t in S.load_texts(n, "eval")]
    calib = [t for n in S.OFFLINE_SOURCES for t in S.load_texts(n, "calib")]
    assert _panel_documents_sharing_a_13gram(panel, calib) == []
    assert not S.shares_ngram(panel, calib).any()


def test_a_source_added_later_is_held_apart_from_the_older_sources_and_the_panel():
    late = [n for n in S.OFFLINE_SOURCES if n not in S.HOLD_OUT_AGAINST]
    assert late == ["manpages"]
    docs = read_jsonl(S.build_source("manpages"))
    manifest = json.loads(S.source_path("manpages").with_suffix(".manifest.json").read_text())
    dropped = [d for d in docs if d["split"] == "overlap"]
    assert manifest["held_apart"]["n_dropped"] == len(dropped) > 0  # the check can fail: some pages do quote others
    kept = [d["text"] for d in docs if d["split"] in S.SPLITS]
    rng = np.random.default_rng(0)
    sample = [kept[i] for i in rng.choice(len(kept), 300, replace=False)] + [d["text"] for d in dropped[:20]]
    older = (d["text"] for n in [*S.HOLD_OUT_AGAINST, *S.PANEL_SOURCES] for d in read_jsonl(S.build_source(n)))
    shared = S.shares_ngram(sample, older)
    assert not shared[:300].any() and shared[300:].all()


def test_the_13gram_check_catches_a_planted_copy():
    verse = S.load_texts("bible", "calib")[3]
    planted = "A fortune that quotes scripture: " + " ".join(verse.split()[40:53]) + " -- Anonymous"
    panel = S.load_texts("devil", "eval")[:50] + [planted]
    assert _panel_documents_sharing_a_13gram(panel, [verse]) == [planted]
    assert S.shares_ngram(panel, [verse]).tolist() == [False] * 50 + [True]
    near_miss = "A fortune that quotes scripture: " + " ".join(verse.split()[40:52])
    assert not S.shares_ngram([near_miss], [verse]).any()
    assert not _panel_documents_sharing_a_13gram([near_miss], [verse])


def test_building_a_panel_source_drops_documents_that_quote_calibration_text(monkeypatch, tmp_path):
    quote = " ".join(S.load_texts("bible", "calib")[0].split()[20:40])
    texts = [quote + " -- Genesis", "An original quip that nobody has written down before today, surely."]
    fake = S.PanelSource("quips", "test quips", "two quips", "CC0", lambda: [], lambda: texts)
    monkeypatch.setitem(S.PANEL_SOURCES, "quips", fake)
    real_path = S.source_path
    monkeypatch.setattr(S, "source_path", lambda name: tmp_path / f"{name}.jsonl" if name == "quips" else real_path(name))
    monkeypatch.setattr(S, "HOLD_OUT_AGAINST", ("bible",))  # one calib split is enough here
    assert S.load_texts("quips", "eval") == [texts[1]]
    held_out = json.loads((tmp_path / "quips.manifest.json").read_text())["held_out"]
    assert held_out["n_dropped"] == 1 and held_out["calib_splits_of"] == ["bible"]


@pytest.mark.parametrize("name", sorted(S.PANEL_SOURCES))
def test_sample_calibration_refuses_a_panel_source(name):
    with pytest.raises(ValueError, match=f"{name}.*evaluation panel"):
        S.sample_calibration(name, TOK, 2, 32, seed=0)
    ids = S.sample_calibration(name, TOK, 2, 32, seed=0, allow_panel=True)  # a deliberate control
    assert ids.shape == (2, 32)


def test_shares_ngram_names_a_bad_n():
    with pytest.raises(ValueError, match="n must be"):
        S.shares_ngram(["a b c"], ["a b c"], n=0)
