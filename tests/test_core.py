import json
import os
import stat
import subprocess
import sys
import warnings

import pytest

from calibsynth.core import (append_jsonl, atomic_dir, atomic_path, atomic_write_json, cache_dir, read_jsonl, resolve_device,
                             sweep_abandoned, write_jsonl)
from calibsynth.core import _HOST


def test_atomic_write_keeps_old_content_when_interrupted(tmp_path):
    p = tmp_path / "r.json"
    atomic_write_json(p, {"v": 1})
    with pytest.raises(KeyboardInterrupt):
        with atomic_path(p) as tmp:
            tmp.write_text('{"v": 2')  # half written
            raise KeyboardInterrupt
    assert json.loads(p.read_text()) == {"v": 1}
    assert sorted(x.name for x in tmp_path.iterdir()) == ["r.json"]


def test_written_files_get_normal_permissions(tmp_path):
    p = write_jsonl(tmp_path / "a.jsonl", [{"text": "x"}])
    mode = stat.S_IMODE(os.stat(p).st_mode)
    assert mode & stat.S_IRGRP and mode & stat.S_IROTH, oct(mode)
    assert read_jsonl(p) == [{"text": "x"}]


def test_atomic_dir_replaces_only_on_success(tmp_path):
    target = tmp_path / "ckpt"
    with atomic_dir(target) as d:
        (d / "a").write_text("1")
    with pytest.raises(RuntimeError):
        with atomic_dir(target) as d:
            (d / "a").write_text("2")
            raise RuntimeError
    assert (target / "a").read_text() == "1" and len(list(tmp_path.iterdir())) == 1


def _finished_pid() -> int:
    "The pid of a process that has exited: the writer of a leftover was killed."
    return int(subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True,
                              text=True, check=True).stdout)


def test_leftovers_of_killed_writers_are_swept_and_live_ones_kept(tmp_path):
    dead = _finished_pid()
    (tmp_path / f".ckpt.{_HOST}-{dead}.a1.tmp").mkdir()  # killed mid-write
    (tmp_path / f".r.json.{_HOST}-{dead}.b2.tmp").write_text("{")  # a file's
    (tmp_path / f".ckpt.{_HOST}-{os.getppid()}.c3.tmp").mkdir()  # a live writer's (our parent is alive)
    (tmp_path / f".ckpt.otherhost-{dead}.d4.tmp").mkdir()  # another host's, in a shared folder: not ours to judge
    (tmp_path / f".ckpt.{_HOST}-{dead}.e5.del").mkdir()  # an old version being deleted when the writer died
    with atomic_dir(tmp_path / "ckpt") as d:
        (d / "a").write_text("1")
    atomic_write_json(tmp_path / "r.json", {"v": 1})
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([f".ckpt.{_HOST}-{os.getppid()}.c3.tmp",
                                                                 f".ckpt.otherhost-{dead}.d4.tmp", "ckpt", "r.json"])


def test_a_kill_between_the_two_renames_of_an_overwrite_loses_nothing(tmp_path):
    "The old version was moved aside and the new one not yet renamed in: the next writer puts the old one back."
    aside = tmp_path / f".ckpt.{_HOST}-{_finished_pid()}.d4.old"
    aside.mkdir()
    (aside / "a").write_text("old")
    assert sweep_abandoned(tmp_path / "ckpt") == [aside]
    assert (tmp_path / "ckpt" / "a").read_text() == "old" and not aside.exists()


def test_write_into_missing_directory_names_it(tmp_path):
    with pytest.raises(FileNotFoundError, match="missing"):
        atomic_write_json(tmp_path / "missing" / "x.json", {})


def test_cache_dir_follows_env(tmp_path, monkeypatch):
    monkeypatch.setenv("CALIBSYNTH_CACHE", str(tmp_path / "c"))
    assert cache_dir("a", "b") == tmp_path / "c" / "a" / "b" and (tmp_path / "c" / "a" / "b").is_dir()


def test_resolve_device_rejects_garbage():
    with pytest.raises(ValueError, match="gpu0"):
        resolve_device("gpu0")


def test_torn_last_line_is_dropped_and_repaired(tmp_path):
    p = tmp_path / "r.jsonl"
    whole = json.dumps({"run": 1}) + "\n" + json.dumps({"run": 2, "text": "é"}) + "\n"
    torn = json.dumps({"run": 3, "text": "éé"}).encode()[:-4]  # cut inside the last character's UTF-8 bytes
    p.write_bytes(whole.encode() + torn)
    with pytest.warns(UserWarning, match="torn last line"):
        assert read_jsonl(p) == [{"run": 1}, {"run": 2, "text": "é"}]
    assert p.read_bytes().endswith(torn)  # reading alone changes nothing
    with pytest.warns(UserWarning, match="torn last line"):
        assert len(read_jsonl(p, repair=True)) == 2
    assert p.read_text(encoding="utf-8") == whole
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # nothing left to warn about
        assert len(read_jsonl(p)) == 2


def test_complete_last_line_without_newline_is_kept(tmp_path):
    p = tmp_path / "hand.jsonl"
    p.write_text('{"text": "a"}\n{"text": "b"}')
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert read_jsonl(p) == [{"text": "a"}, {"text": "b"}]


def test_corrupt_middle_line_raises_naming_the_line(tmp_path):
    p = tmp_path / "bad.jsonl"
    p.write_text('{"a": 1}\n\n{"a": 2\n{"a": 3}\n')
    with pytest.raises(ValueError, match=r"bad\.jsonl: line 3 is not valid JSON"):
        read_jsonl(p, repair=True)
    assert p.read_text().endswith('{"a": 3}\n')  # repair never cuts a corrupt file


def test_append_writes_whole_lines(tmp_path):
    p = tmp_path / "a.jsonl"
    for i in range(3):
        append_jsonl(p, {"i": i, "text": "line\nbreak é"})
    p.write_bytes(p.read_bytes()[:-1])  # as if a kill fell between a row and its newline
    append_jsonl(p, {"z": 1, "a": 2}, sort_keys=True)
    lines = p.read_text(encoding="utf-8").split("\n")
    assert lines[-1] == "" and lines[-2] == '{"a": 2, "z": 1}' and len(lines) == 5
    assert [json.loads(line) for line in lines[:-1]] == read_jsonl(p)
    assert read_jsonl(p)[:3] == [{"i": i, "text": "line\nbreak é"} for i in range(3)]
