import json
import os
import stat

import pytest

from calibsynth.core import atomic_dir, atomic_path, atomic_write_json, cache_dir, read_jsonl, resolve_device, write_jsonl


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


def test_write_into_missing_directory_names_it(tmp_path):
    with pytest.raises(FileNotFoundError, match="missing"):
        atomic_write_json(tmp_path / "missing" / "x.json", {})


def test_cache_dir_follows_env(tmp_path, monkeypatch):
    monkeypatch.setenv("CALIBSYNTH_CACHE", str(tmp_path / "c"))
    assert cache_dir("a", "b") == tmp_path / "c" / "a" / "b" and (tmp_path / "c" / "a" / "b").is_dir()


def test_resolve_device_rejects_garbage():
    with pytest.raises(ValueError, match="gpu0"):
        resolve_device("gpu0")
