"""`calibsynth.select` and `calibsynth compare` (issue 27): every selection meets its budget without reusing text, is
seeded, and the lexical one does what it claims; the comparison ranks, resumes, ranks by the user's text when given,
and refuses bad input before any model loads."""
import json

import numpy as np
import pytest
import torch

import calibsynth.compare as CMP
from calibsynth.cli import main
from calibsynth.compress import repeated_spans
from calibsynth.models import tiny_model
from calibsynth.select import SELECTIONS, lexical_diversity, select_calibration

CANDIDATES = {"random": "random:news+foldoc", "diverse": "diverse:news+foldoc", "mix": "mix:news+pydoc+bible",
              "ppl": "ppl:news"}


@pytest.fixture(scope="module")
def tiny():
    return tiny_model("llama", layers=2)


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory, tiny):
    path = tmp_path_factory.mktemp("models") / "tiny"
    tiny[0].save_pretrained(path)
    tiny[1].save_pretrained(path)
    return path


def test_every_registered_selection_is_tested():
    assert set(SELECTIONS) == set(CANDIDATES)


@pytest.mark.parametrize("name", sorted(CANDIDATES))
def test_a_selection_meets_its_budget_without_reusing_text_and_is_seeded(tiny, name):
    model, tok = tiny
    ids = select_calibration(CANDIDATES[name], tok, 12, 128, seed=3, model=model)
    assert ids.shape == (12, 128) and ids.dtype == torch.long
    assert repeated_spans(ids, 32) == 0  # no 32-token span twice: no text drawn twice
    assert torch.equal(ids, select_calibration(CANDIDATES[name], tok, 12, 128, seed=3, model=model))
    assert not torch.equal(ids, select_calibration(CANDIDATES[name], tok, 12, 128, seed=4, model=model))


def test_lexical_selection_beats_random_on_the_statistic_it_maximises(tiny):
    _, tok = tiny
    for seed in range(3):
        diverse, rand = (lexical_diversity(tok, select_calibration(CANDIDATES[k], tok, 16, 256, seed=seed))
                         for k in ("diverse", "random"))
        assert diverse > rand, (seed, diverse, rand)


def test_a_budget_the_pool_cannot_fill_is_refused(tiny):
    _, tok = tiny
    for name in ("diverse", "mix", "random"):
        with pytest.raises(ValueError, match="give fewer samples"):
            select_calibration(CANDIDATES[name], tok, 10**5, 128, seed=0)


TOY = ["--n-samples", "2", "--seqlen", "32", "--eval-windows", "3", "--eval-seqlen", "32", "--seeds", "3",
       "--forward-dtype", "float32", "--quiet"]


def test_compare_ranks_writes_its_report_and_resumes(tiny_dir, tmp_path, capsys):
    args = ["compare", "--model", str(tiny_dir), "--candidates", "news,diverse:news+foldoc,mix:news+pydoc,ppl:news",
            "--out", str(tmp_path / "cmp")] + TOY
    assert main(args) == 0
    out = capsys.readouterr().out
    assert "ranked by the neutral panel (genre a random factor)" in out and out.count(" best ") == 1
    report = json.loads((tmp_path / "cmp" / "report.json").read_text())
    assert report["runs"] == 4 * 3 and {r["label"] for r in report["table"]} <= {"best", "worse", "tie", "better"}
    assert all(r["p_holm"] is None or r["verdict"]["family_size"] == 6 for r in report["table"])  # every pair
    assert (tmp_path / "cmp" / "compare.png").stat().st_size > 10_000
    rows = (tmp_path / "cmp" / "runs.jsonl").read_text()
    assert main(args) == 0  # a second call: everything is there, nothing is redone (the model-scored set too)
    assert "every run is done" in capsys.readouterr().out
    assert (tmp_path / "cmp" / "runs.jsonl").read_text() == rows
    assert json.loads((tmp_path / "cmp" / "report.json").read_text())["table"] == report["table"]


def test_compare_ranks_by_the_users_own_text(tiny_dir, tmp_path, capsys):
    mine = tmp_path / "mine.jsonl"
    mine.write_text("".join(json.dumps(dict(text=f"Record {i}: the valve on line {i % 13} was inspected and found "
                                                  f"in order by the night crew, shift {i % 3}.")) + "\n"
                            for i in range(200)))
    assert main(["compare", "--model", str(tiny_dir), "--candidates", "news,bible", "--eval-text", str(mine),
                 "--out", str(tmp_path / "cmp")] + TOY) == 0
    out = capsys.readouterr().out
    assert "ranked by your text" in out
    table = json.loads((tmp_path / "cmp" / "report.json").read_text())["table"]
    assert table[0]["label"] == "best" and table[0]["log_ppl"] <= table[1]["log_ppl"]


@pytest.mark.parametrize("change,message", [
    (["--candidates", "news"], "at least 2 candidates"),
    (["--candidates", "news,zipcal:news"], "unknown selection 'zipcal'"),
    (["--candidates", "news,EMPTY"], "holds no text"),
    (["--n-samples", "100000"], "give fewer samples"),
    (["--seeds", "2"], "seeds must be an integer >= 3"),
    (["--candidates", "news,self", "--synth-temperature", "-1"], "invalid temperature"),
])
def test_bad_input_is_refused_before_any_model_loads(tiny_dir, tmp_path, capsys, monkeypatch, change, message):
    monkeypatch.setattr(CMP, "load_model", lambda *a, **k: pytest.fail("the model was loaded"))
    (tmp_path / "empty.txt").write_text("\n\n")
    change = [c.replace("EMPTY", str(tmp_path / "empty.txt")) for c in change]
    args = ["compare", "--model", str(tiny_dir), "--candidates", "news,bible", "--out", str(tmp_path / "cmp")] + TOY
    assert main(args + change) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err
    assert not (tmp_path / "cmp").exists()


def test_self_generated_candidates_are_written_afresh_per_seed_with_the_given_settings():
    cfg = CMP.CompareConfig(candidates=("news", "self"), synth=(("n_docs", 8), ("max_new_tokens", 32)))
    assert [cfg.synth_config(s).seed for s in (0, 1, 2)] == [0, 1, 2]
    assert cfg.synth_config(1).n_docs == 8 and cfg.synth_config(1).max_new_tokens == 32
    with pytest.raises(ValueError, match="neither seed"):
        CMP.CompareConfig(candidates=("news", "self"), synth=(("seed", 4),)).check()


def _rows(scores: dict, seeds=(0, 1, 2)) -> list[dict]:
    "Pruned-model rows as run_comparison writes them: per candidate and seed, 4 windows on each of 3 panel corpora."
    rng = np.random.default_rng(0)
    return [dict(kind="pruned", candidate=c, method="wanda", sparsity=0.5, pattern="unstructured", seed=s,
                 measurement=dict(units=dict(panel={g: list(base + rng.normal(0, 0.01, 4)) for g in ("a", "b", "c")})))
            for c, base in scores.items() for s in seeds]


def test_a_diverged_candidate_is_ranked_last_and_left_out_of_the_family():
    table = CMP.rank_candidates(_rows({"good": 5.0, "bad": 5.5, "nan": np.nan}))
    assert list(table.candidate) == ["good", "bad", "nan"] and list(table.label)[::2] == ["best", "diverged"]
    assert table.verdict[1]["family_size"] == 1 and table.label[1] == "worse"


def test_one_finite_candidate_is_ranked_alone_without_a_family():
    table = CMP.rank_candidates(_rows({"good": 5.0, "nan": np.nan}))
    assert list(table.label) == ["best", "diverged"] and table.p_holm.isna().all()


def test_a_selection_from_the_evaluation_text_is_refused_and_the_file_alone_is_held_out(tiny, tmp_path):
    _, tok = tiny
    mine = tmp_path / "mine.jsonl"
    rng = np.random.default_rng(0)  # documents that share no 13-word run
    mine.write_text("".join(json.dumps(dict(text=" ".join(f"w{k}" for k in rng.integers(0, 10**6, 60)))) + "\n"
                            for _ in range(120)))
    with pytest.raises(ValueError, match="selects from the evaluation text"):
        CMP.CompareConfig(candidates=("news", f"diverse:{mine}+news"), eval_text=str(mine)).check()
    held = CMP.draw_candidate(str(mine), tok, 4, 64, seed=0, eval_text=str(mine))
    every = CMP.draw_candidate(str(mine), tok, 4, 64, seed=0)
    assert held.shape == every.shape and not torch.equal(held, every)  # the held-out documents are not drawn from


def test_candidates_run_on_different_seeds_are_refused():
    rows = _rows({"x": 5.0}) + _rows({"y": 5.1}, seeds=(0, 1, 3))
    with pytest.raises(ValueError, match="not run on the same seeds"):
        CMP.rank_candidates(rows)
