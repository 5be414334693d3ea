import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from calibsynth.cli import main

ROOT = Path(__file__).resolve().parents[1]


def test_sources_command_lists_every_source(capsys):
    assert main(["sources"]) == 0
    out = capsys.readouterr().out
    for name in ["news", "bible", "dictionary", "foldoc", "pydoc", "code", "c4", "dclm"]:
        assert f"\n{name} " in "\n" + out


def test_cli_reports_bad_input_without_traceback(capsys):
    assert main(["quickstart", "--model", "smollm-9000"]) == 2
    assert "smollm-9000" in capsys.readouterr().err


def test_console_script_help():
    exe = Path(sys.executable).with_name("calibsynth")
    out = subprocess.run([str(exe), "--help"], capture_output=True, text=True, check=True).stdout
    assert "sources" in out and "quickstart" in out


def test_help_and_version_answer_without_importing_torch():
    "They are what a user types first: no 3 s and 430 MB of torch to list the commands or print the version."
    probe = ("import sys\nfrom calibsynth.cli import main\n"
             "for argv in (['--help'], ['--version']):\n"
             "    try:\n        main(argv)\n    except SystemExit as e:\n        assert e.code == 0, (argv, e.code)\n"
             "assert 'torch' not in sys.modules, 'torch was imported'\n")
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert "verify" in out.stdout and "calibsynth 0." in out.stdout  # the list of commands, then the version


def test_export_is_fresh(tmp_path):
    "nbdev-export on a clean copy of the notebooks reproduces calibsynth/ exactly."
    for item in ["nbs", "pyproject.toml", "calibsynth"]:
        src = ROOT / item
        (shutil.copytree if src.is_dir() else shutil.copy)(src, tmp_path / item)
    exe = Path(sys.executable).with_name("nbdev-export")
    subprocess.run([str(exe)], cwd=tmp_path, check=True, capture_output=True)
    exported = lambda root: sorted(str(p.relative_to(root)) for p in (root / "calibsynth").rglob("*.py"))
    assert exported(tmp_path) == exported(ROOT)
    for name in exported(ROOT):
        assert (tmp_path / name).read_text() == (ROOT / name).read_text(), f"{name} is stale: run nbdev-export"


def test_readme_is_rendered_from_the_index_notebook(tmp_path):
    exe = Path(sys.executable).with_name("jupyter")
    subprocess.run([str(exe), "nbconvert", "--to", "markdown", "--no-input", str(ROOT / "nbs" / "index.ipynb"), "--output-dir",
                    str(tmp_path), "--output", "README"], check=True, capture_output=True)
    assert (tmp_path / "README.md").read_text() == (ROOT / "README.md").read_text(), "README.md is stale: re-render it (jupyter nbconvert --to markdown --no-input nbs/index.ipynb --output-dir . --output README)"


def test_eval_pruned_from_a_run_id(tmp_path, capsys, monkeypatch):
    "The run's config re-creates its pruned model; unknown ids are named, a missing results file too."
    import json
    from dataclasses import asdict

    from calibsynth.experiment.runs import RunConfig

    cfg = RunConfig(model="nope-model", method="wanda", source="news", n_samples=4, seqlen=32)
    (tmp_path / "r.jsonl").write_text(json.dumps(dict(run_id=cfg.run_id, config=cfg.row_config(), metrics={})) + "\n")
    assert main(["eval", "--pruned-from", "ffff", "--results", str(tmp_path / "r.jsonl")]) == 2
    assert "ffff" in capsys.readouterr().err
    assert main(["eval", "--pruned-from", "ffff", "--results", str(tmp_path / "none.jsonl")]) == 2
    assert "none.jsonl" in capsys.readouterr().err
    assert main(["eval", "--pruned-from", cfg.run_id, "--results", str(tmp_path / "r.jsonl"), "--eval-windows", "4"]) == 2
    assert "run's own instrument: ['--eval-windows'] do not apply" in capsys.readouterr().err
    # the stored config reaches load_model: an unknown model in the run is reported by name
    assert main(["eval", "--pruned-from", cfg.run_id, "--results", str(tmp_path / "r.jsonl")]) == 2
    assert "nope-model" in capsys.readouterr().err


@pytest.mark.slow
def test_eval_pruned_from_rebuilds_a_committed_run_on_its_arithmetic(capsys, tmp_path):
    """A committed run rebuilt by `eval --pruned-from` (its own calibration draw) gives its committed windows back: to
    the bit on the arithmetic its row records, within what other arithmetic moves elsewhere (rows made before they
    recorded it included)."""
    import json

    import torch
    from calibsynth.core import cpu_arithmetic
    from calibsynth.experiment.grid import made_here
    from calibsynth.experiment.verify import committed_runs

    runs = committed_runs(ROOT / "results")
    cheap = min((r for r in runs.values() if r["config"]["model"] == "smollm2-135m" and not r["config"]["tasks"]
                 and r.get("threads", 2) == torch.get_num_threads()), key=lambda r: r["seconds"], default=None)
    if cheap is None:
        pytest.skip(f"no committed SmolLM2 run was made on {torch.get_num_threads()} threads: its bits cannot match here")
    assert main(["eval", "--pruned-from", cheap["run_id"], "--out", str(tmp_path / "e.json")]) == 0
    out = capsys.readouterr().out
    report = json.loads((tmp_path / "e.json").read_text())
    if made_here(cheap) or report["matches_row"]:
        assert "every window and item matches the committed row" in out
        assert report["measured"]["units"]["panel"] == cheap["metrics"]["units"]["panel"] and report["matches_row"]
    else:
        assert f"made on other arithmetic ({cheap.get('arithmetic') or 'unrecorded'}, here {cpu_arithmetic()})" in out
        assert report["agreement"] == "noise", report["units"]


def test_reproduce_runs_experiment_notebooks_into_the_output_folder(tmp_path, capsys):
    import nbformat

    repo = tmp_path / "clone"
    (repo / "nbs").mkdir(parents=True)
    (repo / "pyproject.toml").write_text("")
    code = ("import os\nfrom pathlib import Path\nfrom calibsynth.experiment.profiles import active_profile, output_dir\n"
            "assert active_profile().name == 'smoke'\n(output_dir('figures') / '20_toy.png').write_bytes(b'png')\nprint('drawn')")
    nbformat.write(nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(code)],
                                            metadata={"kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"}}),
                   repo / "nbs" / "20_toy.ipynb")
    out = tmp_path / "out"
    env_before = dict(os.environ)
    assert main(["reproduce", "--profile", "smoke", "--repo", str(repo), "--out", str(out)]) == 0
    assert dict(os.environ) == env_before  # the profile and output folder go to the kernels only
    assert (out / "figures" / "20_toy.png").exists() and (out / "nbs" / "20_toy.ipynb").exists()
    assert (out / "results" / "reproduce_smoke.json").exists()
    executed = nbformat.read(out / "nbs" / "20_toy.ipynb", as_version=4)
    assert executed.cells[0].outputs[0].text == "drawn\n"
    # written as nbdev-clean leaves it: no execution counts or timings, so an unchanged notebook re-runs to the same bytes
    assert executed.cells[0].execution_count is None and "execution" not in executed.cells[0].metadata
    first = (out / "nbs" / "20_toy.ipynb").read_bytes()
    assert main(["reproduce", "--profile", "smoke", "--repo", str(repo), "--out", str(out)]) == 0
    assert (out / "nbs" / "20_toy.ipynb").read_bytes() == first
    assert "20_toy.ipynb" in capsys.readouterr().out
    # bad input is named before anything runs; a failing notebook stops the run with its name
    assert main(["reproduce", "--profile", "smoke", "--repo", str(repo), "--only", "11"]) == 2
    assert "'11'" in capsys.readouterr().err
    bad = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("raise RuntimeError('boom')")],
                                   metadata=executed.metadata)
    nbformat.write(bad, repo / "nbs" / "21_bad.ipynb")
    assert main(["reproduce", "--profile", "smoke", "--repo", str(repo), "--out", str(out)]) == 1
    err = capsys.readouterr().err
    assert "21_bad.ipynb failed" in err and "boom" in err


# --- choices and options generated from the registries and the dataclasses -------------------------------------------

import contextlib
import io

import pytest

from calibsynth.cli import build_parser
from calibsynth.prune import ALLOCATIONS, METHODS
from calibsynth.synth import SynthConfig


def _help(*command) -> str:
    out = io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.suppress(SystemExit):
        main([*command, "--help"])
    return " ".join(out.getvalue().split())  # argparse wraps lines


@pytest.mark.parametrize("method", list(METHODS))
def test_every_registered_method_and_its_options_are_on_the_command_line(method):
    parse = build_parser().parse_args
    assert parse(["prune", "--out", "x", "--method", method]).method == method
    assert parse(["eval", "--prune", method]).method == method
    for command in ("prune", "eval"):
        text = _help(command)
        assert method in text
        for option, default in METHODS[method].options.items():  # one flag each, named after the option
            assert f"{method}: default {default}" in text and option.replace("_", "-") in text


@pytest.mark.parametrize("allocation", list(ALLOCATIONS))
def test_every_registered_allocation_and_its_options_are_on_the_command_line(allocation):
    assert build_parser().parse_args(["prune", "--out", "x", "--allocation", allocation]).allocation == allocation
    for option in ALLOCATIONS[allocation].options:
        assert f"--{option.replace('_', '-')}" in _help("prune")


def test_a_method_registered_later_appears_without_editing_the_cli(monkeypatch):
    from dataclasses import replace

    monkeypatch.setitem(METHODS, "toy", replace(METHODS["magnitude"], name="toy", options=dict(toy_strength=0.5)))
    args = build_parser().parse_args(["prune", "--out", "x", "--method", "toy", "--toy-strength", "0.25"])
    from calibsynth.cli import pruning_options

    assert (args.method, pruning_options(args)) == ("toy", dict(toy_strength=0.25))


def test_synthesis_options_come_from_synth_config():
    from dataclasses import fields

    synth, prune = _help("synth"), _help("prune")
    for f in fields(SynthConfig):
        assert f"--{f.name.replace('_', '-')} " in synth
        assert (f"--synth-{f.name.replace('_', '-')} " in prune) == (f.name != "strategy")  # 'self' fixes the strategy
    args = build_parser().parse_args(["synth", "--n-docs", "8", "--temperature", "0.8"])
    from calibsynth.cli import dataclass_args

    assert SynthConfig(**dataclass_args(SynthConfig, args)) == SynthConfig(n_docs=8, temperature=0.8)


def test_eval_and_prune_share_the_sparsity_parser(tmp_path, capsys):
    from calibsynth.models import tiny_model

    model, tok = tiny_model()
    model.save_pretrained(tmp_path / "tiny")
    tok.save_pretrained(tmp_path / "tiny")
    parse = build_parser().parse_args
    for command in (["prune", "--out", "x"], ["eval"]):
        assert parse(command + ["--sparsity", "2:4"]).sparsity == (0.5, "2:4")
        assert parse(command + ["--sparsity", "0.6"]).sparsity == (0.6, "unstructured")
    assert main(["eval", "--model", str(tmp_path / "tiny"), "--prune", "wanda", "--sparsity", "2:4", "--calib", "news",
                 "--n-samples", "2", "--seqlen", "32", "--eval-windows", "2", "--eval-seqlen", "32",
                 "--forward-dtype", "float32"]) == 0
    said = capsys.readouterr().out
    assert "PruneReport(wanda, 2:4, target 0.500, achieved 0.5000" in said
    assert "against the dense model, same windows" in said  # measured before and after on the same windows
    # an option the method does not have is named before the model loads
    assert main(["eval", "--model", "no-such-model", "--prune", "magnitude", "--percdamp", "0.1"]) == 2
    assert "percdamp" in capsys.readouterr().err
