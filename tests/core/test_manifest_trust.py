"""The manifest is a trust boundary: the loader never leaves the artifact dir, loads only bytes it
hashed, and refuses a manifest that does not describe its files, naming the field."""

import json
import os
import shutil
import subprocess
import sys

import pytest

from vaegan.core.errors import ArtifactError
from vaegan.core.manifest import Manifest, sha256_file
from vaegan.runtime import Sampler


def _edit(art, fn):
    p = art / "manifest.json"
    m = json.loads(p.read_text())
    fn(m)
    p.write_text(json.dumps(m))


def _entry(m, path):
    return next(a for a in m["artifacts"] if a["path"] == path)


def _cli(*args):
    return subprocess.run(
        [sys.executable, "-m", "vaegan", *args], capture_output=True, text=True, timeout=300
    )


def test_a_path_that_leaves_the_artifact_dir_is_refused(art_copy, tmp_path):
    outside = tmp_path / "outside"
    outside.mkdir()
    shutil.copy(art_copy / "decoder.fp32.onnx", outside / "evil.onnx")  # a valid model, with its true hash
    _edit(art_copy, lambda m: _entry(m, "decoder.fp32.onnx").update(path="../outside/evil.onnx"))
    with pytest.raises(ArtifactError, match="leads outside the artifact dir"):
        Sampler.load(art_copy, backend="ort")
    r = _cli("doctor", str(art_copy))
    assert "ok decoder.fp32.onnx" not in r.stdout and "ort/fp32" not in r.stdout.split("Usable here:")[-1]


def test_etc_passwd_is_never_read(art_copy):
    _edit(
        art_copy, lambda m: _entry(m, "decoder.fp32.onnx").update(path="../../../../../../../../etc/passwd")
    )
    with pytest.raises(ArtifactError, match="leads outside the artifact dir"):
        Sampler.load(art_copy, backend="ort")


def test_a_symbolic_link_out_of_the_dir_is_refused(art_copy, tmp_path):
    real = tmp_path / "elsewhere.onnx"
    shutil.move(art_copy / "decoder.fp32.onnx", real)
    os.symlink(real, art_copy / "decoder.fp32.onnx")
    with pytest.raises(ArtifactError, match="leads outside the artifact dir"):
        Sampler.load(art_copy, backend="ort")


def test_openvino_weights_hashed_are_the_weights_loaded(art_copy):
    """The hash may not be pointed at a pristine copy while OpenVINO loads a tampered .bin."""
    b = art_copy / "openvino" / "decoder.int8.bin"
    shutil.copy(b, art_copy / "openvino" / "pristine.bin")
    data = bytearray(b.read_bytes())
    data[len(data) // 2] ^= 0xFF
    b.write_bytes(bytes(data))
    _edit(
        art_copy,
        lambda m: _entry(m, "openvino/decoder.int8.xml")["notes"].update(weights="openvino/pristine.bin"),
    )
    with pytest.raises(ArtifactError, match="must be openvino/decoder.int8.bin"):
        Sampler.load(art_copy, backend="openvino", precision="int8")


def _swap_files(m):
    enc, dec = _entry(m, "encoder.fp32.onnx"), _entry(m, "decoder.fp32.onnx")
    (enc["path"], enc["sha256"]), (dec["path"], dec["sha256"]) = (
        (dec["path"], dec["sha256"]),
        (enc["path"], enc["sha256"]),
    )


def _swap_components(m):
    enc, dec = _entry(m, "encoder.fp32.onnx"), _entry(m, "decoder.fp32.onnx")
    enc["component"], dec["component"] = dec["component"], enc["component"]


CASES = {
    "sha256 an int": (lambda m: _entry(m, "decoder.fp32.onnx").update(sha256=123), "sha256"),
    "path null": (lambda m: _entry(m, "decoder.fp32.onnx").update(path=None), "path"),
    "latent_dim 32": (lambda m: m["model"].update(latent_dim=32), "artifacts[0].outputs"),
    "latent_dim 4": (lambda m: m["model"].update(latent_dim=4), "artifacts[0].outputs"),
    "latent_dim 0": (lambda m: m["model"].update(latent_dim=0), "model.latent_dim"),
    "latent_dim abc": (lambda m: m["model"].update(latent_dim="abc"), "model.latent_dim"),
    "image_size 64": (lambda m: m["model"].update(image_size=64), "model.image_size 64"),
    "image_shape 16x16x3": (
        lambda m: m["model"].update(image_shape=[16, 16, 3]),
        "model.image_shape [16, 16, 3]",
    ),
    "model empty": (lambda m: m.update(model={}), "model"),
    "max_batch x": (lambda m: m.update(max_batch="x"), "max_batch"),
    "max_batch -5": (lambda m: m.update(max_batch=-5), "max_batch"),
    "max_batch 0": (lambda m: m.update(max_batch=0), "max_batch"),
    "files swapped with their shas": (_swap_files, "graph inputs"),
    "components swapped": (_swap_components, "artifacts[0].inputs"),
    "channels 3 on a 1-channel model": (lambda m: m["model"].update(channels=3), "model.channels 3"),
}


@pytest.mark.reliability("manifest", "wrong content refused")
@pytest.mark.parametrize("case", list(CASES))
def test_valid_json_with_wrong_content_names_the_field(art_copy, case):
    edit, field = CASES[case]
    _edit(art_copy, edit)
    with pytest.raises(ArtifactError) as e:
        Sampler.load(art_copy, backend="ort")
    assert field in str(e.value)


@pytest.mark.parametrize("case", ["max_batch -5", "components swapped", "sha256 an int"])
@pytest.mark.parametrize("command", ["sample", "info", "doctor"])
def test_every_command_refuses_in_one_line_with_exit_2(art_copy, tmp_path, case, command):
    edit, field = CASES[case]
    _edit(art_copy, edit)
    extra = ["--out", str(tmp_path / "s.npz"), "-n", "16"] if command == "sample" else []
    r = _cli(command, str(art_copy), *extra)
    assert r.returncode == 2, r.stdout + r.stderr
    assert len(r.stderr.strip().splitlines()) == 1 and "Traceback" not in r.stderr
    assert field in r.stderr
    assert not (tmp_path / "s.npz").exists()


def test_the_fixture_itself_passes_every_check(art_dir):
    m = Manifest.load(art_dir)
    for a in m.artifacts:
        assert sha256_file(art_dir / a.path) == a.sha256
