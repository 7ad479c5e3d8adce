"""What a killed training run leaves behind is removed by the next one (exports: tests/export/test_reexport.py; the
writes themselves: tests/core/test_io.py)."""

from vaegan.trainer.loop import train


def test_training_removes_temp_files_a_kill_left(tmp_path):
    from tests.conftest import tiny_run_config

    out = tmp_path / "run"
    cfg = tiny_run_config(max_steps=2, checkpoint_every=2)
    train(cfg, out, progress=False)
    for name in (".train_state.pt.k9x2_wq1.tmp", ".model.safetensors.a1b2c3d4.tmp"):  # mkstemp names
        (out / name).write_bytes(b"half a file")
    cfg.train.max_steps = 4
    train(cfg, out, resume=True, progress=False)
    assert not list(out.glob(".*.tmp"))
