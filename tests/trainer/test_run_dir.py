"""`vaegan train --out` never writes over what it did not write (third attack round, issue 29)."""

from __future__ import annotations

import pytest

from tests.conftest import TINY, run_cli

QUICK = [*TINY, "--max-steps", "2", "--quiet"]


def _user_files(d):
    files = {
        "config.json": '{"my": "settings"}',
        "metrics.jsonl": '{"accuracy": 0.91}\n',
        "my_thesis.txt": "chapter 1",
        "samples/mine.png": "not really a png",
    }
    for rel, text in files.items():
        (d / rel).parent.mkdir(parents=True, exist_ok=True)
        (d / rel).write_text(text)
    return files


@pytest.mark.reliability("round3", "train --out on a directory of the user's files")
def test_train_refuses_a_directory_that_is_not_a_run(tmp_path):
    files = _user_files(tmp_path)
    r = run_cli("train", "--data", "digits", *QUICK, "--out", str(tmp_path))
    assert r.returncode == 2, r.stderr
    assert r.stderr.count("\n") == 1 and "not a vaegan run directory" in r.stderr
    assert {rel: (tmp_path / rel).read_text() for rel in files} == files
    assert sorted(p.relative_to(tmp_path).as_posix() for p in tmp_path.rglob("*")) == sorted(
        [*files, "samples"]
    )


@pytest.mark.reliability("round3", "train --out on a run without --resume, --resume on a non-run")
def test_a_run_is_continued_only_with_resume(tmp_path):
    run = tmp_path / "run"
    assert run_cli("train", "--data", "digits", *QUICK, "--out", str(run)).returncode == 0
    before = {p.name: p.read_bytes() for p in run.iterdir() if p.is_file()}
    r = run_cli("train", "--data", "digits", *QUICK, "--out", str(run))
    assert r.returncode == 2 and f"--resume {run}" in r.stderr and r.stderr.count("\n") == 1
    assert {p.name: p.read_bytes() for p in run.iterdir() if p.is_file()} == before
    other = tmp_path / "notes"
    _user_files(other)
    r = run_cli("train", "--resume", str(other), "--quiet")
    assert r.returncode == 2 and r.stderr.count("\n") == 1, r.stderr
    assert (other / "config.json").read_text() == '{"my": "settings"}'


def test_an_empty_dir_and_one_killed_mid_write_are_new_runs(tmp_path_factory):
    empty = tmp_path_factory.mktemp("empty")
    r = run_cli("train", "--data", "digits", *QUICK, "--out", str(empty))
    assert r.returncode == 0, r.stderr
    tmp_path = tmp_path_factory.mktemp("killed")
    (tmp_path / ".config.json.ab12cd_x.tmp").write_text("{")  # atomic_write's temp, killed mid-write
    (tmp_path / ".notes.tmp").write_text("the user's")  # not atomic_write's name: never removed
    r = run_cli("train", "--data", "digits", *QUICK, "--out", str(tmp_path))
    assert r.returncode == 2  # .notes.tmp is the user's file: the dir is not empty
    (tmp_path / ".notes.tmp").unlink()
    r = run_cli("train", "--data", "digits", *QUICK, "--out", str(tmp_path))
    assert r.returncode == 0, r.stderr
    assert not (tmp_path / ".config.json.ab12cd_x.tmp").exists() and (tmp_path / "model.safetensors").exists()


@pytest.mark.reliability("round3", "train --out as a dangling symlink")
def test_out_as_a_dangling_symlink_is_one_line(tmp_path):
    link = tmp_path / "run"
    link.symlink_to(tmp_path / "nowhere")
    r = run_cli("train", "--data", "digits", *QUICK, "--out", str(link))
    assert r.returncode == 2 and r.stderr.count("\n") == 1 and "does not exist" in r.stderr, r.stderr
    assert "Traceback" not in r.stderr


def test_the_python_api_refuses_the_same(tmp_path):
    from tests.conftest import tiny_run_config
    from vaegan.core.errors import CheckpointError
    from vaegan.trainer.loop import train

    _user_files(tmp_path)
    with pytest.raises(CheckpointError, match="not a vaegan run directory"):
        train(tiny_run_config(), tmp_path, progress=False)
    assert (tmp_path / "metrics.jsonl").read_text() == '{"accuracy": 0.91}\n'
