"""What a killed training run leaves behind is removed by the next one (exports: tests/test_reexport.py)."""

from vaegan.trainer.loop import train


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
