import hashlib
import json
import subprocess
import sys

import pytest


def _doctor(*args):
    return subprocess.run([sys.executable, "-m", "vaegan", "doctor", *args], capture_output=True, text=True)


def test_doctor_reports_this_machine():
    r = _doctor("--json")
    assert r.returncode == 0, r.stderr
    checks = {c["name"]: c for c in json.loads(r.stdout)["machine"]}
    assert checks["onnxruntime"]["ok"]
    try:
        import tensorrt  # noqa: F401
    except ImportError:
        assert not checks["tensorrt"]["ok"] and "pip install tensorrt" in checks["tensorrt"]["fix"]
    if not checks["onnxruntime GPU"]["ok"]:
        assert "onnxruntime-gpu" in checks["onnxruntime GPU"]["fix"]


def test_doctor_on_a_usable_artifact_dir(art_dir):
    r = _doctor(str(art_dir))
    assert r.returncode == 0, r.stdout + r.stderr
    assert "Usable here:" in r.stdout and "ort/fp32" in r.stdout


def test_doctor_fails_on_an_artifact_dir_of_only_tensorrt_engines(art_dir, tmp_path):
    try:
        import tensorrt  # noqa: F401

        pytest.skip("TensorRT is installed here; the fake engines would be tried for real")
    except ImportError:
        pass
    m = json.loads((art_dir / "manifest.json").read_text())
    engines = []
    (tmp_path / "tensorrt").mkdir()
    for a in m["artifacts"]:
        if a["format"] == "onnx":
            data = b"plan for " + a["path"].encode()
            path = f"tensorrt/{a['component']}.{a['precision']}.plan"
            (tmp_path / path).write_bytes(data)
            engines.append(
                {
                    **a,
                    "path": path,
                    "format": "tensorrt",
                    "sha256": hashlib.sha256(data).hexdigest(),
                    "bytes": len(data),
                    "notes": {"engine": {"tensorrt": "10.3.0", "gpu": "Orin", "compute_capability": "8.7"}},
                }
            )
    m["artifacts"] = engines
    (tmp_path / "manifest.json").write_text(json.dumps(m))
    r = _doctor(str(tmp_path))
    assert r.returncode != 0
    assert "TensorRT is not installed" in r.stdout and "Nothing in this artifact dir can run here" in r.stdout
    rep = json.loads(_doctor(str(tmp_path), "--json").stdout)
    assert rep["ok"] is False and rep["usable"] == [] and all(not a["loadable"] for a in rep["artifacts"])


def test_doctor_names_a_corrupted_file(art_copy):
    p = art_copy / "decoder.int8.onnx"
    p.write_bytes(p.read_bytes()[:100])  # truncated
    rep = json.loads(_doctor(str(art_copy), "--json").stdout)
    bad = [a for a in rep["artifacts"] if not a["loadable"]]
    corrupt = [a for a in bad if "sha256" in a["reason"]]
    assert [a["path"] for a in corrupt] == ["decoder.int8.onnx"] and "re-export" in corrupt[0]["fix"]
    # the rest load, or their engine is not installed here (OpenVINO on emulated aarch64)
    assert all("not installed" in a["reason"] for a in bad if a not in corrupt) and rep["ok"]
