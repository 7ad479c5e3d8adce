"""What a killed export or training run leaves behind is removed by the next one that succeeds."""

from vaegan.config import ExportOptions
from vaegan.export.pipeline import export_run
from vaegan.trainer.loop import train


def test_a_later_export_removes_a_killed_exports_temp_dirs(trained_run, tmp_path):
    out = tmp_path / "art"
    for leftover in (".art.tmp-abc123", ".art.old-101010"):
        (tmp_path / leftover).mkdir()
        (tmp_path / leftover / "decoder.fp32.onnx").write_bytes(b"x" * 1000)
    (tmp_path / ".other.tmp-keep").mkdir()  # another artifact dir's: not ours to touch
    export_run(trained_run, out, ExportOptions(precisions=["fp32"], quality_n=50, max_batch=8, opt_batch=2))
    assert sorted(p.name for p in tmp_path.iterdir()) == [".other.tmp-keep", "art"]
    from vaegan.core.io import DIR_MODE

    assert out.stat().st_mode & 0o777 == DIR_MODE  # not mkdtemp's 0700


def test_training_removes_temp_files_a_kill_left(tmp_path):
    from tests.conftest import tiny_run_config

    out = tmp_path / "run"
    cfg = tiny_run_config(max_steps=2, checkpoint_every=2)
    train(cfg, out, progress=False)
    for name in (".train_state.pt.k9x2.tmp", ".model.safetensors.a1b2.tmp"):
        (out / name).write_bytes(b"half a file")
    cfg.train.max_steps = 4
    train(cfg, out, resume=True, progress=False)
    assert not list(out.glob(".*.tmp"))


def test_files_are_written_with_the_users_umask_not_0600(tmp_path, monkeypatch):
    """atomic_write's temp file is 0600; the file it becomes is not (a device user must read it)."""
    import os

    from vaegan.core import io as vio

    old = os.umask(0o022)
    try:
        assert vio._file_mode() == 0o644
    finally:
        os.umask(old)
    monkeypatch.setattr(vio, "FILE_MODE", 0o644)
    vio.write_bytes(tmp_path / "a.bin", b"x")
    assert (tmp_path / "a.bin").stat().st_mode & 0o777 == 0o644
