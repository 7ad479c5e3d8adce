"""Files and API calls of the second attack round: each bad input is one line and exit 2 from the
CLI, or a typed error from the API, never a traceback."""

from __future__ import annotations

import json
import re
import subprocess
import sys

import numpy as np
import pytest

from vaegan.core.errors import ArtifactError, InputError


def vaegan(*args: str):
    return subprocess.run(
        [sys.executable, "-m", "vaegan", *args], capture_output=True, text=True, timeout=300
    )


def assert_one_line(r, needle: str) -> None:
    assert r.returncode == 2, (r.returncode, r.stderr)
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("vaegan: error: "), r.stderr
    assert "Traceback" not in r.stderr and needle in lines[0], lines[0]


def _rehash(art, rel: str) -> None:
    """Update the manifest's sha256 for a file an attacker changed, so only the contents are wrong."""
    from vaegan.core.manifest import sha256_file

    m = json.loads((art / "manifest.json").read_text())
    for a in m["artifacts"]:
        if a["path"] == rel:
            a["sha256"] = sha256_file(art / rel)
            a["bytes"] = (art / rel).stat().st_size
        if a["notes"].get("weights") == rel:
            a["notes"]["weights_sha256"] = sha256_file(art / rel)
    (art / "manifest.json").write_text(json.dumps(m))


@pytest.mark.reliability("round2", "a path with a NUL byte is a typed error")
def test_a_path_with_a_nul_byte(art_dir):
    from vaegan.runtime import Sampler

    with pytest.raises(ArtifactError, match="not a usable path"):
        Sampler.load(str(art_dir) + "\0x")


@pytest.mark.reliability("round2", "manifest.json that is a directory")
def test_a_manifest_that_is_a_directory(art_copy):
    (art_copy / "manifest.json").unlink()
    (art_copy / "manifest.json").mkdir()
    assert_one_line(vaegan("info", str(art_copy)), "is not a file")
    assert_one_line(vaegan("sample", str(art_copy), "--out", str(art_copy.parent / "s.png")), "is not a file")


@pytest.mark.reliability("round2", "a manifest nested 100,000 levels deep")
def test_a_manifest_nested_too_deep(art_copy):
    (art_copy / "manifest.json").write_text("[" * 100_000 + "]" * 100_000)
    assert_one_line(vaegan("info", str(art_copy)), "nested too deeply")


@pytest.mark.parametrize("damage", ["truncated", "flipped header"])
@pytest.mark.reliability("round2", "a damaged ONNX whose sha256 was updated")
def test_a_damaged_onnx_with_a_matching_hash(art_copy, damage):
    path = art_copy / "decoder.fp32.onnx"
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 3] if damage == "truncated" else bytes([data[0] ^ 0xFF]) + data[1:])
    _rehash(art_copy, "decoder.fp32.onnx")
    assert_one_line(
        vaegan(
            "sample", str(art_copy), "--backend", "ort", "-n", "2", "--out", str(art_copy.parent / "s.png")
        ),
        "decoder.fp32.onnx",
    )
    from vaegan.runtime import Sampler

    with pytest.raises(ArtifactError, match="does not load as an ONNX model"):
        Sampler.load(art_copy, backend="ort")


@pytest.mark.parametrize("where", ["artifact", "tensor", "top level"])
@pytest.mark.reliability("round2", "an unknown key in the manifest is named")
def test_an_unknown_manifest_key_is_named(art_copy, where):
    m = json.loads((art_copy / "manifest.json").read_text())
    target = {"artifact": m["artifacts"][0], "tensor": m["artifacts"][0]["inputs"][0], "top level": m}[where]
    target["surprise"] = 1
    (art_copy / "manifest.json").write_text(json.dumps(m))
    assert_one_line(vaegan("info", str(art_copy)), "'surprise' was unexpected")


@pytest.mark.reliability("round2", "an OpenVINO IR that fails to compile names the cause")
def test_an_openvino_ir_that_does_not_compile_names_the_cause(art_copy):
    pytest.importorskip("openvino")
    rel = "openvino/decoder.fp32.xml"
    xml = (art_copy / rel).read_text()
    bad = re.sub(
        r'(type="Convolution" version="opset1">\s*<data strides=)"1, 1"', r'\1"1, 1, 1"', xml, count=1
    )
    assert bad != xml
    (art_copy / rel).write_text(bad)
    _rehash(art_copy, rel)
    r = vaegan(
        "sample", str(art_copy), "--backend", "openvino", "-n", "2", "--out", str(art_copy.parent / "s.png")
    )
    assert_one_line(r, "Strides should be defined for all and only spatial dimensions")
    assert "Exception from" not in r.stderr


@pytest.mark.reliability("round2", "a huge integer temperature is an InputError")
def test_a_huge_integer_temperature_through_the_api(sampler):
    for t in (10**400, -(10**400), 10**20):
        with pytest.raises(InputError, match="temperature must be a number"):
            sampler.sample(2, temperature=t)


@pytest.mark.reliability("round2", "interpolate takes one latent or one image per end")
def test_interpolate_refuses_a_batch_at_either_end(sampler):
    z = sampler.latents(4, seed=0)
    images = sampler.decode(z[:3])
    with pytest.raises(InputError, match="one latent"):
        sampler.interpolate(z[:2], z[2], 4)
    with pytest.raises(InputError, match="one latent"):
        sampler.interpolate(z[0], z[1:3], 4)
    with pytest.raises(InputError, match="one image"):
        sampler.interpolate(images[:2], images[2], 4)
    one = sampler.interpolate(z[:1], z[1], 4)  # [1, Z] is one latent
    assert np.array_equal(one, sampler.interpolate(z[0], z[1], 4))
    assert sampler.interpolate(images[0], images[1:2], 3).shape[0] == 3
