"""`calibsynth.compress` and `calibsynth prune`: the round trip, the manifest, every refusal of issue 16 (before the
model loads), the interrupted write, and the README's quick start at toy sizes."""
import json
import os
from dataclasses import asdict
import re
import shlex
import signal
import subprocess
import sys

import pytest
import torch
from transformers import AutoModelForCausalLM

import calibsynth.compress as C
from calibsynth.cli import main
from calibsynth.compress import MANIFEST, compress, token_ids_sha256, weights_sha256
from calibsynth.models import load_model, tiny_model
from calibsynth.prune import prunable_linears
from calibsynth.sources import sample_calibration
from calibsynth.synth import SynthConfig, draw_budget

TINY_SYNTH = dict(n_docs=8, max_new_tokens=24, batch_size=8, min_tokens=4)
TOY = dict(n_samples=2, seqlen=32, eval_text="news", eval_windows=2, eval_seqlen=32, progress=False)


@pytest.fixture(autouse=True)
def results_elsewhere(tmp_path, monkeypatch):
    "The runner keeps a copy of every synthetic set with the results; keep the tests' copies out of the clone."
    monkeypatch.setenv("CALIBSYNTH_OUTPUT", str(tmp_path / "results"))


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory):
    "A tiny random LLaMA (context 1024) saved as a checkpoint directory."
    path = tmp_path_factory.mktemp("models") / "tiny-llama"
    model, tok = tiny_model("llama", layers=2)
    model.save_pretrained(path)
    tok.save_pretrained(path)
    return path


@pytest.fixture
def no_model_load(monkeypatch):
    "Fail the test if the weights are loaded: every refusal must come before."
    def refuse(*args, **kwargs):
        raise AssertionError("the model was loaded before the bad input was refused")
    monkeypatch.setattr(C, "load_model", refuse)


def _linear_sparsity(model) -> dict:
    return {n: (l.weight == 0).float().mean().item() for n, l in prunable_linears(model).items()}


# --- the round trip ------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
def test_round_trip_gives_bit_identical_logits_in_the_saved_dtype(tiny_dir, tmp_path, dtype):
    out = tmp_path / "pruned"
    pruned, report = compress(tiny_dir, calibration="news", method="wanda", sparsity=0.5, output_dir=out,
                              dtype=dtype, **TOY)
    assert {p.name for p in out.iterdir()} >= {"model.safetensors", "config.json", "tokenizer.json", MANIFEST,
                                               "README.md"}
    reloaded = AutoModelForCausalLM.from_pretrained(out, dtype="auto")
    assert reloaded.dtype == pruned.dtype == getattr(torch, dtype)
    ids = sample_calibration("bible", load_model(out)[1], 3, 32, seed=5)
    with torch.no_grad():
        assert torch.equal(reloaded(ids).logits, pruned(ids).logits)
    # the decoder linears hold exactly the sparsity the engine reported, and the manifest says the same
    assert _linear_sparsity(reloaded) == report.prune.per_linear
    assert json.loads((out / MANIFEST).read_text())["linear_sparsity"] == report.prune.per_linear


def test_load_model_and_eval_command_read_the_output(tiny_dir, tmp_path, capsys):
    out = tmp_path / "pruned"
    compress(tiny_dir, calibration="news", method="sparsegpt", sparsity="2:4", output_dir=out, **TOY)
    model, tok = load_model(out)
    assert _linear_sparsity(model) == json.loads((out / MANIFEST).read_text())["linear_sparsity"]
    capsys.readouterr()
    report = tmp_path / "eval.json"
    assert main(["eval", "--model", str(out), "--eval-text", "news", "--eval-windows", "2", "--eval-seqlen", "32",
                 "--out", str(report)]) == 0
    said = capsys.readouterr().out
    assert "against the dense model, same windows" in said and re.search(r"panel\s+mean\s+[+-]\d", said)
    # the card and `eval` run one measurement: eval's pruned numbers are the card's, paired with its dense ones
    card, got = json.loads((out / MANIFEST).read_text())["quality"], json.loads(report.read_text())
    assert got["measured"]["units"] == card["pruned"]["units"] and got["dense"]["units"] == card["dense"]["units"]
    assert [r["source"] for r in got["comparison"]["panel"]] == ["manuals", "fortunes", "devil", "mean"]


# --- the manifest --------------------------------------------------------------------------------------------------

def test_manifest_checksum_reproduces_from_the_same_seed(tiny_dir, tmp_path):
    run = lambda out, seed: json.loads((compress(tiny_dir, calibration="self", method="wanda", sparsity=0.5,
                                                 output_dir=tmp_path / out, seed=seed, synth=TINY_SYNTH,
                                                 **TOY)[1].output_dir / MANIFEST).read_text())
    first, again, other = run("a", 0), run("b", 0), run("c", 1)
    cal = first["calibration"]
    assert cal["token_ids_sha256"] == again["calibration"]["token_ids_sha256"]
    assert cal["token_ids_sha256"] != other["calibration"]["token_ids_sha256"]
    # the checksum is that of the windows the sampler draws from the recorded synthetic set with the recorded seed
    tok = load_model(tiny_dir)[1]
    ids = sample_calibration(cal["synthetic_set"], tok, cal["n_samples"], cal["seqlen"], seed=cal["seed"])
    assert token_ids_sha256(ids) == cal["token_ids_sha256"]
    # generated to the draw's budget: the model's own text fills it without repeating
    assert cal["synth_config"] == asdict(SynthConfig(**TINY_SYNTH, target_tokens=draw_budget(2, 32)))
    # what the issue asks the manifest to hold
    assert first["model"]["spec"] == str(tiny_dir)
    assert first["model"]["weights_sha256"] == weights_sha256(load_model(tiny_dir)[0])
    assert (first["method"], first["allocation"], first["sparsity"], first["pattern"], first["seed"]) == \
        ("wanda", "uniform", 0.5, "unstructured", 0)
    assert first["calibsynth"].keys() == {"version", "code_version"} and first["block_sparsity"] == [0.5, 0.5]
    assert {"prepare", "load", "generate", "prune", "evaluate", "total"} <= first["timings"].keys()
    card = (tmp_path / "a" / "README.md").read_text()
    assert "neutral evaluation panel (manuals, fortunes, devil" in card and cal["token_ids_sha256"] in card
    assert "| panel mean | 6 |" in card and "| your text: news | 2 |" in card  # per text and the mean, with windows
    assert "no neutral evaluation panel" not in card
    # where the weights and the code come from; the calibration never uses text twice
    assert first["model"]["source"] == {"path": str(tiny_dir.resolve())} and f"`{tiny_dir.resolve()}`" in card
    assert first["environment"]["torch"] == torch.__version__ and first["environment"]["commit"]["commit"][:12] in card
    assert (cal["repeated_spans"], cal["span"]) == (0, 32) and "no text is used twice" in card


def test_a_file_that_is_also_the_evaluation_text_is_split_by_document_and_checked(tiny_dir, tmp_path):
    path = tmp_path / "mine.jsonl"
    path.write_text("".join(json.dumps(dict(text=f"Document {i} is about subject number {i * 7919 % 1000} and "
                                                 f"nothing else at all, word {i}.")) + "\n" for i in range(60)))
    _, report = compress(tiny_dir, calibration=path, output_dir=tmp_path / "out", **TOY | dict(eval_text=path))
    cal = report.manifest["calibration"]
    assert cal["documents"].startswith("the calib split") and cal["eval_documents_sharing_13gram"] == 0
    card = (tmp_path / "out" / "README.md").read_text()
    assert f"its calib documents only: its {cal['eval_documents']} eval documents are the evaluation text, and 0 " in card
    boiler = tmp_path / "boilerplate.jsonl"  # every document shares its long opening with every other
    boiler.write_text("".join(json.dumps(dict(text="This file is part of a project and is distributed under the same "
                                                   f"licence as the project itself, see notice {i}.")) + "\n"
                              for i in range(60)))
    with pytest.warns(UserWarning, match="share a 13-word sequence with its calibration documents"):
        _, report = compress(tiny_dir, calibration=boiler, **TOY | dict(eval_text=boiler))
    cal = report.manifest["calibration"]
    assert cal["eval_documents_sharing_13gram"] == cal["eval_documents"] > 0


def test_options_and_allocation_are_recorded_with_their_defaults(tiny_dir, tmp_path):
    _, report = compress(tiny_dir, calibration="news", method="sparsegpt", sparsity=0.6, allocation="owl",
                         output_dir=tmp_path / "o", percdamp=0.05, **TOY)
    m = report.manifest
    assert m["options"] == dict(blocksize=128, percdamp=0.05, owl_m=5.0, owl_lambda=0.08)
    assert m["allocation"] == "owl" and len(set(m["block_target"])) == 2  # OWL: one sparsity per block


def test_an_option_named_like_a_parameter_goes_in_method_options(tiny_dir):
    "random's `seed` option beside compress's own `seed` (of the calibration windows)."
    def masks(seed):
        model, report = compress(tiny_dir, method="random", sparsity=0.5, method_options=dict(seed=seed), **TOY)
        assert report.manifest["options"] == dict(seed=seed) and report.manifest["calibration"] is None
        return [l.weight == 0 for l in prunable_linears(model).values()]
    same, other = masks(1), masks(2)
    assert all(torch.equal(a, b) for a, b in zip(masks(1), same))
    assert not all(torch.equal(a, b) for a, b in zip(other, same))


def test_token_ids_as_calibration(tiny_dir):
    model, tok = load_model(tiny_dir)
    ids = sample_calibration("code", tok, 2, 24, seed=3)
    _, report = compress((model, tok), calibration=ids, method="wanda", sparsity=0.5, **TOY)
    assert report.manifest["calibration"] | dict(kind="ids", n_samples=2, seqlen=24,
                                                 token_ids_sha256=token_ids_sha256(ids)) == report.manifest["calibration"]
    assert report.manifest["model"]["kind"] == "directory"  # load_model keeps the spec as the model's name


def test_a_file_with_its_text_field(tiny_dir, tmp_path):
    path = tmp_path / "texts.jsonl"
    path.write_text("".join(json.dumps(dict(content=f"Document number {i} talks about pruning.")) + "\n"
                            for i in range(20)))
    _, report = compress(tiny_dir, calibration=path, text_field="content", method="wanda", sparsity=0.5, **TOY)
    cal = report.manifest["calibration"]
    assert (cal["kind"], cal["text_field"]) == ("file", "content") and len(cal["file_sha256"]) == 64
    with pytest.raises(ValueError, match="no text field 'text'"):
        compress(tiny_dir, calibration=path, method="wanda", sparsity=0.5, **TOY)


def test_magnitude_ignores_calibration_with_a_warning(tiny_dir):
    with pytest.warns(UserWarning, match="reads no calibration data"):
        _, report = compress(tiny_dir, calibration="news", method="magnitude", sparsity=0.5, **TOY)
    assert report.manifest["calibration"] is None and report.prune.sparsity == 0.5


# --- bad input, refused before the model loads ---------------------------------------------------------------------

BAD = [
    (dict(sparsity=0), "sparsity must be in (0, 1)"),
    (dict(sparsity=1), "sparsity must be in (0, 1)"),
    (dict(sparsity=1.2), "sparsity must be in (0, 1)"),
    (dict(sparsity=-0.5), "sparsity must be in (0, 1)"),
    (dict(sparsity="2:4:8"), "'2:4:8'"),
    (dict(sparsity="4:2"), "0 < N < M"),
    (dict(sparsity=None, pattern="two:four"), "'two:four'"),
    (dict(method="wandaa"), "unknown method 'wandaa'"),
    (dict(method="magnitude", percdmp=0.5), "percdmp"),
    (dict(method="sparsegpt", percdamp=-1.0), "option percdamp of method 'sparsegpt' must be > 0, got -1.0"),
    (dict(method="dsnot", max_cycles=2.5), "option max_cycles of method 'dsnot' takes a int"),
    (dict(method="owl", owl_lambda=-0.1), "option owl_lambda of allocation 'owl' must be >= 0"),
    (dict(allocation="owll"), "unknown allocation 'owll'"),
    (dict(calibration="newz"), "unknown calibration 'newz'"),
    (dict(calibration="missing.jsonl"), "does not exist"),
    (dict(calibration=None), "reads calibration data"),
    (dict(seqlen=2048), "seqlen 2048 is above the context length"),
    (dict(synth=dict(n_docs=8)), "only to calibration='self'"),
    (dict(n_samples=0), "n_samples must be a positive integer"),
    (dict(eval_text="newz"), "newz"),
    (dict(eval_windows=-1), "eval_windows must be a non-negative integer"),
    (dict(calibration="allenai/c4:en"), "allenai/c4:en"),  # the hub is offline in the tests: named, not hung on
    (dict(ignore="*.down_proj"), "ignore takes a list of module name patterns"),
    (dict(save_dtype="int8"), "save_dtype must be one of"),
]


@pytest.mark.parametrize("change,message", BAD, ids=[m for _, m in BAD])
def test_bad_input_is_refused_before_the_model_loads(tiny_dir, tmp_path, no_model_load, change, message):
    kw = dict(calibration="news", method="wanda", sparsity=0.5, output_dir=tmp_path / "out") | TOY | change
    with pytest.raises((ValueError, OSError), match=re.escape(message)):
        compress(tiny_dir, **kw)
    assert not (tmp_path / "out").exists()


@pytest.mark.skipif(torch.cuda.is_available(), reason="the refusal on a machine without a GPU")
def test_a_cuda_device_without_a_gpu_is_refused_before_the_model_loads(tiny_dir, no_model_load):
    with pytest.raises(ValueError, match="device 'cuda': torch sees no CUDA GPU"):
        compress(tiny_dir, calibration="news", device="cuda", **TOY)


def test_ignored_linears_stay_dense_and_the_saved_dtype_is_the_asked_one(tiny_dir, tmp_path, capsys):
    out = tmp_path / "pruned"
    assert main(["prune", "--model", str(tiny_dir), "--calib", "news", "--out", str(out), "--n-samples", "2",
                 "--seqlen", "32", "--eval-windows", "0", "--ignore", "*.down_proj", "model.layers.0.*",
                 "--save-dtype", "bfloat16", "--quiet"]) == 0
    assert "it/s" not in capsys.readouterr().err  # --quiet: no progress bars
    manifest = json.loads((out / MANIFEST).read_text())
    ignored = manifest["ignored"]
    assert "model.layers.1.mlp.down_proj" in ignored and all(n.startswith("model.layers.0.") or
                                                             n.endswith(".down_proj") for n in ignored)
    model = AutoModelForCausalLM.from_pretrained(out)
    assert model.dtype == torch.bfloat16 and manifest["model"]["dtype"] == "bfloat16"
    for name, sparsity in _linear_sparsity(model).items():
        assert sparsity == (0.0 if name in ignored else 0.5), name
    assert f"Left dense on request: {len(ignored)} decoder linears" in (out / "README.md").read_text()
    assert main(["prune", "--model", str(tiny_dir), "--calib", "news", "--out", str(tmp_path / "x"), "--seqlen", "32",
                 "--ignore", "*.dwn_proj"]) == 2
    assert "'*.dwn_proj' matches no decoder linear" in capsys.readouterr().err


def test_a_dry_run_checks_everything_and_loads_and_writes_nothing(tiny_dir, tmp_path, no_model_load, capsys):
    model, plan = compress(tiny_dir, calibration="news", output_dir=tmp_path / "out", ignore=["*.down_proj"],
                           dry_run=True, **TOY)
    assert model is None and not (tmp_path / "out").exists()
    assert (plan.decoder_linears, len(plan.ignored), plan.calibration_passes) == (14, 2, 1)
    down = sum(p.numel() for n, p in load_model(tiny_dir)[0].named_parameters() if n.endswith("down_proj.weight"))
    assert plan.weights_to_prune == round(0.5 * (plan.decoder_weights - down))
    drawn = sample_calibration("news", load_model(tiny_dir)[1], 2, 32, seed=0)  # what a real run draws
    assert plan.calibration["token_ids_sha256"] == token_ids_sha256(drawn)
    _, plan = compress(tiny_dir, calibration="self", method="sparsegpt", allocation="owl", dry_run=True, **TOY)
    assert plan.calibration["generate_tokens"] == draw_budget(2, 32) and plan.calibration_passes == 2
    with pytest.raises(ValueError, match="'model.layer.*' matches no decoder linear"):  # a typo, before the load
        compress(tiny_dir, calibration="news", ignore=["model.layer.*"], **TOY)
    assert main(["prune", "--model", str(tiny_dir), "--calib", "news", "--out", str(tmp_path / "out"), "--seqlen",
                 "32", "--n-samples", "2", "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("dry run: nothing loaded or written") and "14 decoder linears" in out
    assert not (tmp_path / "out").exists()


def test_calibration_files_that_are_empty_or_too_short(tiny_dir, tmp_path, no_model_load):
    (tmp_path / "empty.txt").write_text("\n\n")
    (tmp_path / "short.txt").write_text("Twenty-two bytes long.")  # the byte tokenizer: one token per byte
    with pytest.raises(ValueError, match="holds no text"):
        compress(tiny_dir, calibration=tmp_path / "empty.txt", **TOY)
    with pytest.raises(ValueError, match=re.escape("needs 62 text tokens without repeating any, and the text holds 22: "
                                                   "give fewer samples (at most 0 at this seqlen)")):
        compress(tiny_dir, calibration=tmp_path / "short.txt", **TOY)


def test_non_empty_output_is_not_touched(tiny_dir, tmp_path, no_model_load):
    out = tmp_path / "taken"
    out.mkdir()
    (out / "notes.txt").write_text("keep me")
    before = (out / "notes.txt").stat().st_mtime_ns
    with pytest.raises(FileExistsError, match="not empty; pass overwrite=True"):
        compress(tiny_dir, calibration="news", output_dir=out, **TOY)
    with pytest.raises(FileExistsError, match="not an earlier calibsynth output"):  # overwrite replaces only our own
        compress(tiny_dir, calibration="news", output_dir=out, overwrite=True, **TOY)
    assert [p.name for p in out.iterdir()] == ["notes.txt"] and (out / "notes.txt").stat().st_mtime_ns == before


def test_self_calibration_needs_a_model_that_can_generate(tiny_dir, tmp_path, no_model_load, monkeypatch):
    mute = tmp_path / "mute"  # a tokenizer with neither BOS nor EOS: generation has nowhere to start
    model, tok = tiny_model()
    tok.bos_token = tok.eos_token = None
    model.save_pretrained(mute)
    tok.save_pretrained(mute)
    with pytest.raises(ValueError, match=re.escape(f"model '{mute}' cannot write its own calibration data")):
        compress(mute, calibration="self", **TOY)
    from transformers import LlamaForCausalLM

    monkeypatch.setattr(LlamaForCausalLM, "can_generate", classmethod(lambda cls: False))
    with pytest.raises(ValueError, match="cannot generate text"):
        compress(tiny_dir, calibration="self-unprompted", **TOY)


def test_the_command_line_refuses_the_same_input(tiny_dir, tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(C, "load_model", lambda *a, **k: pytest.fail("the model was loaded"))
    base = ["prune", "--model", str(tiny_dir), "--calib", "news", "--out", str(tmp_path / "out"), "--seqlen", "32"]
    for extra, message in [(["--seqlen", "4096"], "above the context length"), (["--calib", "newz"], "newz"),
                           (["--percdmp", "0.1"], "unrecognized arguments: --percdmp"),
                           (["--method", "magnitude", "--percdamp", "0.1"], "unknown option(s) ['percdamp']"),
                           (["--sparsity", "1.0"], "sparsity must be in (0, 1)"), (["--sparsity", "2:4:8"], "'2:4:8'"),
                           (["--method", "wandaa"], "invalid choice: 'wandaa'"),
                           (["--method", "sparsegpt", "--percdamp", "-1"], "option percdamp of method 'sparsegpt' must be > 0"),
                           (["--model", str(tmp_path)], "holds no config.json"),
                           (["--n-samples", "0"], "--n-samples must be a positive integer, got 0")]:
        try:
            code = main(base + extra)
        except SystemExit as e:  # argparse's own refusals
            code = e.code
        assert code == 2, extra
        err = capsys.readouterr().err
        assert "Traceback" not in err and message in err.strip().splitlines()[-1], (extra, err)  # argparse adds usage above
    assert not (tmp_path / "out").exists()
    (tmp_path / "taken").mkdir()
    (tmp_path / "taken" / "notes.txt").write_text("mine")
    assert main(base[:-4] + ["--out", str(tmp_path / "taken")]) == 2  # the flag, not the Python parameter
    assert capsys.readouterr().err.endswith("exists and is not empty; pass --overwrite to replace it\n")


# --- the interrupted write -----------------------------------------------------------------------------------------

def _leftovers(parent):
    return sorted(p.name for p in parent.iterdir())


@pytest.mark.parametrize("interruption", [RuntimeError("disk full"), KeyboardInterrupt()])
def test_an_interrupted_write_leaves_nothing(tiny_dir, tmp_path, monkeypatch, interruption):
    "The weights are on disk when the card fails: neither the directory nor its temporary twin may remain."
    parent = tmp_path / "outputs"
    parent.mkdir()

    def fail(manifest):
        assert any(parent.glob(".pruned.*.tmp/model.safetensors"))  # mid-save: the weights are written
        raise interruption
    monkeypatch.setattr(C, "model_card", fail)
    with pytest.raises(type(interruption)):
        compress(tiny_dir, calibration="news", output_dir=parent / "pruned", **TOY)
    assert _leftovers(parent) == []


def test_an_interrupted_overwrite_keeps_the_earlier_output(tiny_dir, tmp_path, monkeypatch):
    out = tmp_path / "pruned"
    compress(tiny_dir, calibration="news", output_dir=out, **TOY)
    earlier = (out / MANIFEST).read_text()
    monkeypatch.setattr(C, "model_card", lambda manifest: (_ for _ in ()).throw(KeyboardInterrupt()))
    with pytest.raises(KeyboardInterrupt):
        compress(tiny_dir, calibration="bible", output_dir=out, overwrite=True, **TOY)
    assert (out / MANIFEST).read_text() == earlier
    assert [name for name in _leftovers(tmp_path) if name.startswith(".")] == []


def test_a_killed_command_leaves_nothing(tiny_dir, tmp_path, monkeypatch):
    "SIGTERM (a plain `kill`) mid-save unwinds `calibsynth prune` like Ctrl-C."
    parent = tmp_path / "outputs"
    parent.mkdir()
    handler = signal.getsignal(signal.SIGTERM)
    monkeypatch.setattr(C, "model_card", lambda manifest: os.kill(os.getpid(), signal.SIGTERM) or "card")
    with pytest.raises(SystemExit) as stopped:
        main(["prune", "--model", str(tiny_dir), "--calib", "news", "--out", str(parent / "pruned"), "--n-samples", "2",
              "--seqlen", "32", "--eval-windows", "0"])
    assert stopped.value.code == 128 + signal.SIGTERM and _leftovers(parent) == []
    assert signal.getsignal(signal.SIGTERM) == handler  # the unwinding handler is only there while pruning


def test_a_save_killed_with_sigkill_is_swept_by_the_next_run(tiny_dir, tmp_path):
    "SIGKILL cannot be caught: the half-written copy stays until the next save to the same place removes it."
    out = tmp_path / "outputs" / "pruned"
    script = (f"import time, calibsynth.compress as C\n"
              f"C.model_card = lambda manifest: print('saving', flush=True) or time.sleep(600)\n"
              f"C.compress({str(tiny_dir)!r}, calibration='news', output_dir={str(out)!r}, **{TOY!r})\n")
    proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "saving"
        assert any(out.parent.glob(".pruned.*.tmp/model.safetensors"))  # killed with the weights on disk
    finally:
        proc.kill()
        proc.wait()
    compress(tiny_dir, calibration="news", output_dir=out, **TOY)
    assert _leftovers(out.parent) == ["pruned"]
    assert {MANIFEST, "README.md", "model.safetensors", "config.json"} <= set(os.listdir(out))


def test_ctrl_c_exits_130_with_one_line_and_leaves_nothing(tiny_dir, tmp_path):
    parent = tmp_path / "outputs"
    parent.mkdir()
    args = ["prune", "--model", str(tiny_dir), "--calib", "news", "--out", str(parent / "pruned"), "--n-samples", "2",
            "--seqlen", "32", "--eval-windows", "0"]
    script = ("import sys, time, calibsynth.compress as C\n"
              "from calibsynth.cli import main\n"
              "C.model_card = lambda manifest: print('saving', flush=True) or time.sleep(600)\n"
              f"sys.exit(main({args!r}))\n")
    proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "saving"
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=60)
    finally:
        proc.kill()
    assert proc.returncode == 130 and "Traceback" not in err, err
    assert err.strip().splitlines()[-1] == "calibsynth prune: interrupted"
    assert _leftovers(parent) == []


def test_the_output_directory_has_ordinary_permissions(tiny_dir, tmp_path):
    "Readable by another user or a container's uid as far as the umask allows (mkdtemp alone gives 0700)."
    out = tmp_path / "pruned"
    compress(tiny_dir, calibration="news", output_dir=out, **TOY)
    umask = os.umask(0)
    os.umask(umask)
    assert out.stat().st_mode & 0o777 == 0o777 & ~umask


# --- 2:4 for inference ---------------------------------------------------------------------------------------------

@pytest.mark.skipif(torch.cuda.is_available(), reason="the CPU refusal")
def test_semi_structured_needs_a_gpu(tiny_dir, capsys):
    with pytest.raises(ValueError, match="need a CUDA GPU"):
        C.to_semi_structured(load_model(tiny_dir)[0])
    assert main(["eval", "--model", str(tiny_dir), "--semi-structured"]) == 2
    assert "need a CUDA GPU" in capsys.readouterr().err


# --- the README's quick start, at toy sizes ------------------------------------------------------------------------

def _readme_block(language: str, after: str) -> str:
    "The first fenced `language` block after the heading `after` in nbs/index.ipynb (the README's source)."
    from pathlib import Path

    nb = json.loads((Path(__file__).resolve().parents[1] / "nbs" / "index.ipynb").read_text())
    text = "\n".join("".join(c["source"]) for c in nb["cells"] if c["cell_type"] == "markdown")
    return re.search(rf"{re.escape(after)}.*?```{language}\n(.*?)```", text, re.S).group(1)


TOY_FLAGS = dict(prune=["--n-samples", "2", "--seqlen", "32", "--synth-n-docs", "8", "--synth-max-new-tokens", "24",
                        "--synth-min-tokens", "4", "--eval-windows", "2", "--eval-seqlen", "32"],
                 eval=["--eval-windows", "2", "--eval-seqlen", "32"])


@pytest.mark.slow
def test_readme_quick_start_runs_at_toy_sizes(tmp_path, monkeypatch, capsys):
    "The shell example prunes SmolLM2 on its own text into a directory and evaluates it; then the Python example."
    shell = [shlex.split(line) for line in _readme_block("bash", "### Prune your own model").splitlines() if line]
    assert [cmd[:2] for cmd in shell] == [["calibsynth", "prune"], ["calibsynth", "eval"]]
    assert "smollm2-135m" in shell[0] and shell[0][shell[0].index("--calib") + 1] == "self"
    monkeypatch.chdir(tmp_path)
    for cmd in shell:  # flags given twice: argparse keeps the last, so the toy sizes win
        assert main(cmd[1:] + TOY_FLAGS[cmd[1]]) == 0, cmd
    out = capsys.readouterr().out
    assert "token ids sha256" in out and "against the dense model, same windows" in out
    directory = tmp_path / shell[0][shell[0].index("--out") + 1]
    manifest = json.loads((directory / MANIFEST).read_text())
    assert (manifest["model"]["spec"], manifest["calibration"]["kind"], manifest["sparsity"]) == ("smollm2-135m", "self", 0.5)
    assert AutoModelForCausalLM.from_pretrained(directory).config.model_type == "llama"
    card = (directory / "README.md").read_text()  # issue 28: what the model is, and calibration text used once
    assert "base_model: HuggingFaceTB/SmolLM2-135M-Instruct" in card and "license: apache-2.0" in card
    assert "SmolLM2-135M-Instruct.Q4_1.gguf" in card and "no text is used twice" in card
    assert manifest["calibration"]["repeated_spans"] == 0

    python = _readme_block("python", "### Prune your own model")
    toy = lambda *a, **kw: compress(*a, **kw | dict(n_samples=2, seqlen=32, eval_windows=2, eval_seqlen=32, progress=False,
                                                    synth=dict(n_docs=8, max_new_tokens=24, min_tokens=4)))
    monkeypatch.setattr(C, "compress", toy)
    (tmp_path / "py").mkdir()
    monkeypatch.chdir(tmp_path / "py")
    scope = {}
    exec(python, scope)
    assert scope["report"].manifest["calibration"]["token_ids_sha256"] == manifest["calibration"]["token_ids_sha256"]
