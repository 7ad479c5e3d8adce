"""Re-exporting into an artifact dir, for real on the file system: what vaegan did not write stays,
a symbolic link stays a link, `--out .` works, and siblings vaegan did not make are never touched."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper

from tests.conftest import run_cli
from vaegan.config import ExportOptions
from vaegan.core.manifest import Manifest
from vaegan.export.pipeline import export_run

FAST = ["--precision", "fp32", "--quality-n", "64", "--max-batch", "8", "--opt-batch", "2"]


@pytest.fixture(scope="module")
def first_export(trained_run, tmp_path_factory):
    out = tmp_path_factory.mktemp("reexport") / "art"
    export_run(trained_run, out, ExportOptions(precisions=["fp32"], quality_n=64, max_batch=8, opt_batch=2))
    return out


@pytest.mark.parametrize("force", [False, True])
@pytest.mark.reliability("round2", "re-export keeps the user's files and siblings")
def test_reexport_keeps_what_vaegan_did_not_write(trained_run, first_export, tmp_path, force):
    out = tmp_path / "e_c"
    shutil.copytree(first_export, out)
    (out / "notes.txt").write_text("precious")
    (out / "tensorrt").mkdir()
    (out / "tensorrt" / "decoder.fp32.plan").write_text("plan")
    (out / "empty-folder").mkdir()
    (out / "link-to-notes").symlink_to("notes.txt")
    for sibling in (".e_c.old-my-backup", ".e_c.tmp-scratch"):
        (tmp_path / sibling).mkdir()
        (tmp_path / sibling / "keep.txt").write_text(sibling)
    r = run_cli("export", str(trained_run), "--out", str(out), *FAST, *(["--force"] if force else []))
    assert r.returncode == 0, r.stderr
    assert (out / "notes.txt").read_text() == "precious"
    assert (out / "tensorrt" / "decoder.fp32.plan").read_text() == "plan"
    assert (out / "empty-folder").is_dir() and os.readlink(out / "link-to-notes") == "notes.txt"
    for sibling in (".e_c.old-my-backup", ".e_c.tmp-scratch"):
        assert (tmp_path / sibling / "keep.txt").read_text() == sibling
    assert sorted(p.name for p in tmp_path.iterdir()) == [".e_c.old-my-backup", ".e_c.tmp-scratch", "e_c"]
    said = [ln for ln in r.stderr.splitlines() if "vaegan did not write" in ln]
    assert len(said) == 1 and "kept 3 file(s)" in said[0], r.stderr
    m = Manifest.load(out)
    assert "notes.txt" not in m.files and "decoder.fp32.onnx" in m.files
    assert m.find("decoder", "fp32", "onnx") is not None


def test_files_an_earlier_export_wrote_are_replaced_not_kept(trained_run, first_export, tmp_path):
    """A file the old manifest lists (an fp16 decoder, say) is vaegan's: a fp32-only re-export drops it."""
    out = tmp_path / "art"
    shutil.copytree(first_export, out)
    (out / "decoder.stale.onnx").write_bytes(b"user's")
    export_run(trained_run, out, ExportOptions(precisions=["fp32"], quality_n=64, max_batch=8, opt_batch=2))
    old = set(Manifest.load(first_export).files)
    assert old <= {p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file()}
    assert (out / "decoder.stale.onnx").read_bytes() == b"user's"


@pytest.mark.reliability("round2", "--out as a symlink is followed, the link kept")
def test_out_as_a_symlink_to_a_dir_is_followed(trained_run, first_export, tmp_path):
    real = tmp_path / "real"
    shutil.copytree(first_export, real)
    (real / "mine.txt").write_text("x")
    link = tmp_path / "current"
    link.symlink_to(real, target_is_directory=True)
    r = run_cli("export", str(trained_run), "--out", str(link), *FAST)
    assert r.returncode == 0, r.stderr
    assert link.is_symlink() and link.resolve() == real.resolve()
    assert Manifest.load(link).find("decoder", "fp32", "onnx") and (real / "mine.txt").read_text() == "x"


@pytest.mark.reliability("round2", "export --out . --force")
def test_out_dot_with_force(trained_run, first_export, tmp_path):
    """Into an earlier export in the working directory: refused in one line (the swap would leave the
    caller's shell in the retired dir), the export untouched."""
    here = tmp_path / "here"
    shutil.copytree(first_export, here)
    before = (here / "manifest.json").read_bytes()
    r = run_cli("export", str(trained_run.resolve()), "--out", ".", "--force", *FAST, cwd=here)
    assert r.returncode == 2 and r.stderr.count("\n") == 1 and "current directory" in r.stderr, r.stderr
    assert (here / "manifest.json").read_bytes() == before


@pytest.mark.reliability("round3", "export --out . in an empty working directory keeps the shell's dir")
def test_out_dot_in_an_empty_dir_is_filled_in_place(trained_run, tmp_path):
    here = tmp_path / "here"
    here.mkdir()
    inode = here.stat().st_ino
    r = run_cli("export", str(trained_run.resolve()), "--out", ".", "--force", *FAST, cwd=here)
    assert r.returncode == 0, r.stderr
    assert here.stat().st_ino == inode  # the same directory, not a new one swapped in
    assert Manifest.load(here).find("decoder", "fp32", "onnx") is not None
    assert [p.name for p in tmp_path.iterdir()] == ["here"]  # no staging dir left beside it


def test_a_killed_exports_leftovers_are_removed_and_nothing_else(trained_run, tmp_path):
    dead = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True
    )
    pid = int(dead.stdout)
    ours = [f".art.vaegan-tmp-{pid}-0a1b2c3d", f".art.vaegan-old-{pid}-deadbeef"]
    alive = f".art.vaegan-tmp-{os.getppid()}-00000000"  # a running process's: still in use
    theirs = [".art.tmp-abc123", ".art.old-101010", ".other.vaegan-tmp-1-00000000"]
    for name in (*ours, alive, *theirs):
        (tmp_path / name).mkdir()
        (tmp_path / name / "decoder.fp32.onnx").write_bytes(b"x" * 100)
    out = tmp_path / "art"
    export_run(trained_run, out, ExportOptions(precisions=["fp32"], quality_n=50, max_batch=8, opt_batch=2))
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([alive, *theirs, "art"])
    from vaegan.core.io import DIR_MODE

    assert out.stat().st_mode & 0o777 == DIR_MODE  # not mkdtemp's 0700


@pytest.mark.reliability("round2", "--calib-samples that is not a multiple of the batch")
def test_calibration_with_a_count_that_is_not_a_multiple_of_32(trained_run, tmp_path):
    r = run_cli(
        "export", str(trained_run), "--out", str(tmp_path / "art"), "--precision", "fp32,int8",
        "--calib-samples", "500", "--quality-n", "64", "--max-batch", "8", "--opt-batch", "2",
    )  # fmt: skip
    assert r.returncode == 0, r.stderr
    art = Manifest.load(tmp_path / "art").find("decoder", "int8", "onnx")
    assert art is not None and art.notes["calibration"]["samples"] == 500


@pytest.mark.parametrize("dtype", [TensorProto.FLOAT, TensorProto.FLOAT16])
def test_nonfinite_share_sees_nan_behind_the_uint8_cast(tmp_path, dtype):
    """What the export checks at every precision: NaN or overflow before the final Cast to uint8,
    which would otherwise come out as black pixels. Here a Mul overflows fp16 for large inputs."""
    from vaegan.export.precision import nonfinite_share

    np_t = np.float16 if dtype == TensorProto.FLOAT16 else np.float32
    nodes = [
        helper.make_node("Cast", ["z"], ["zt"], to=dtype),
        helper.make_node("Mul", ["zt", "big"], ["y"]),  # inf in fp16 where z * 60000 > 65504
        helper.make_node("Cast", ["y"], ["images"], to=TensorProto.UINT8),
    ]
    graph = helper.make_graph(
        nodes,
        "g",
        [helper.make_tensor_value_info("z", TensorProto.FLOAT, [None, 4])],
        [helper.make_tensor_value_info("images", TensorProto.UINT8, [None, 4])],
        [onnx.numpy_helper.from_array(np.array(60000.0, np_t), "big")],
    )
    path = tmp_path / "g.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)]), str(path))
    z = np.array([[0.5, 0.5, 0.5, 0.5], [0.5, 0.5, 2.0, 2.0]], np.float32)
    share = nonfinite_share(path, {"z": z})
    assert share == (0.25 if dtype == TensorProto.FLOAT16 else 0.0)
