"""vaegan.core.io: every file vaegan writes appears whole or not at all, with the user's umask."""

import json
import os

import pytest

from vaegan.core import io as vio


def test_a_write_that_fails_leaves_the_old_file_and_no_temp(tmp_path):
    target = tmp_path / "manifest.json"
    vio.write_json(target, {"v": 1})
    with pytest.raises(RuntimeError), vio.atomic_write(target, "w") as f:
        f.write('{"v": 2, "half": ')
        raise RuntimeError("killed mid-write")
    assert json.loads(target.read_text()) == {"v": 1}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["manifest.json"]


def test_parent_dirs_are_made_and_bytes_round_trip(tmp_path):
    target = tmp_path / "a" / "b" / "weights.bin"
    vio.write_bytes(target, b"\x00\x01" * 1000)
    assert target.read_bytes() == b"\x00\x01" * 1000


def test_stale_temps_are_removed_and_nothing_else(tmp_path):
    for name in (".model.safetensors.k9x2_b7q.tmp", ".train_state.pt.a1b2c3d4.tmp"):  # mkstemp's names
        (tmp_path / name).write_bytes(b"half a file")
    (tmp_path / "notes.tmp").write_text("the user's")  # not a hidden temp of atomic_write's
    (tmp_path / ".notes.tmp").write_text("the user's")  # hidden, but not mkstemp's .NAME.XXXXXXXX.tmp
    (tmp_path / ".dir.tmp").mkdir()  # a directory is never removed
    removed = vio.remove_stale_temps(tmp_path)
    assert sorted(p.name for p in removed) == [
        ".model.safetensors.k9x2_b7q.tmp",
        ".train_state.pt.a1b2c3d4.tmp",
    ]
    assert sorted(p.name for p in tmp_path.iterdir()) == [".dir.tmp", ".notes.tmp", "notes.tmp"]


def test_a_torn_last_jsonl_line_is_skipped(tmp_path):
    p = tmp_path / "metrics.jsonl"
    vio.append_line(p, json.dumps({"step": 1}))
    vio.append_line(p, json.dumps({"step": 2}))
    with open(p, "a") as f:
        f.write('{"step": 3, "lo')  # a kill in the middle of a line
    assert vio.read_jsonl(p) == [{"step": 1}, {"step": 2}]
    assert vio.read_jsonl(tmp_path / "missing.jsonl") == []


def test_files_are_written_with_the_users_umask_not_0600(tmp_path, monkeypatch):
    """atomic_write's temp file is 0600; the file it becomes is not (a device user must read it)."""
    old = os.umask(0o022)
    try:
        assert vio._file_mode() == 0o644
    finally:
        os.umask(old)
    monkeypatch.setattr(vio, "FILE_MODE", 0o644)
    vio.write_bytes(tmp_path / "a.bin", b"x")
    assert (tmp_path / "a.bin").stat().st_mode & 0o777 == 0o644
