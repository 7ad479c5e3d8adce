"""`vaegan export` for real: ONNX Runtime, OpenVINO and Triton's schema, no mocks."""

import json
import os
import shutil
import stat

import numpy as np
import onnx
import pytest

from tests.conftest import run_cli
from vaegan.core.errors import CheckpointError, ConfigError, ExportError
from vaegan.core.manifest import Manifest, sha256_file
from vaegan.export.pipeline import ExportOptions, export_run


@pytest.fixture(scope="module")
def exported(trained_run, tmp_path_factory):
    out = tmp_path_factory.mktemp("export") / "art"
    manifest = export_run(
        trained_run,
        out,
        ExportOptions(
            openvino=True, triton=True, max_batch=16, opt_batch=4, calib_samples=128, quality_n=300
        ),
    )
    return out, manifest


def test_every_artifact_is_listed_with_a_matching_sha256(exported):
    out, m = exported
    kinds = {(a.component, a.precision, a.format) for a in m.artifacts}
    for comp in ("encoder", "decoder"):
        for p in ("fp32", "fp16", "int8"):
            assert (comp, p, "onnx") in kinds
        for p in ("fp32", "fp16", "int8"):
            assert (comp, p, "openvino") in kinds
    for a in m.artifacts:
        assert sha256_file(out / a.path) == a.sha256
    assert Manifest.load(out).to_dict() == m.to_dict()
    assert not [p for p in out.parent.iterdir() if p.name.startswith(".")]  # no temp dirs left behind


def test_fp32_parity_within_one_grey_level_at_every_batch(exported):
    _, m = exported
    dec = m.find("decoder", "fp32", "onnx")
    assert dec.parity["vs"] == "torch" and sorted(map(int, dec.parity["per_batch"])) == [1, 7, 16]
    assert dec.parity["max_abs_error"] <= 1
    assert m.find("encoder", "fp32", "onnx").parity["max_abs_error"] < 1e-3


def test_onnx_graphs_have_uint8_io_dynamic_batch_and_metadata(exported):
    out, m = exported
    dec = onnx.load(str(out / "decoder.fp32.onnx"))
    onnx.checker.check_model(dec, full_check=True)
    meta = {p.key: p.value for p in dec.metadata_props}
    assert json.loads(meta["model_config"])["latent_dim"] == 8 and meta["component"] == "decoder"
    a = m.find("decoder", "fp32", "onnx")
    assert a.inputs[0].shape == ["batch", 8] and a.inputs[0].dtype == "float32"
    assert a.outputs[0].shape == ["batch", 16, 16, 1] and a.outputs[0].dtype == "uint8"
    enc = m.find("encoder", "fp32", "onnx")
    assert enc.inputs[0].dtype == "uint8" and enc.inputs[0].shape == ["batch", 16, 16, 1]
    assert not any(n.op_type == "ConvTranspose" for n in dec.graph.node)


def test_fp16_and_int8_keep_fp32_io_and_are_quantized(exported):
    out, m = exported
    f16 = onnx.load(str(out / "decoder.fp16.onnx"))
    assert f16.graph.input[0].type.tensor_type.elem_type == onnx.TensorProto.FLOAT
    assert any(i.data_type == onnx.TensorProto.FLOAT16 for i in f16.graph.initializer)
    assert m.find("decoder", "fp16", "onnx").notes["fp32_nodes"]  # post-processing kept in fp32
    q = onnx.load(str(out / "decoder.int8.onnx"))
    ops = {n.op_type for n in q.graph.node}
    assert {"QuantizeLinear", "DequantizeLinear"} <= ops
    # symmetric: every zero point is 0; bias left in float
    zps = [i for i in q.graph.initializer if i.name.endswith("zero_point")]
    assert zps and all(not onnx.numpy_helper.to_array(z).any() for z in zps)
    assert m.find("decoder", "int8", "onnx").notes["calibration"]["method"] == "percentile"


def test_quality_per_precision_is_recorded(exported):
    _, m = exported
    assert set(m.quality) == {"fp32", "fp16", "int8", "openvino-fp16", "openvino-int8"}
    for p in ("fp16", "int8", "openvino-fp16", "openvino-int8"):
        q = m.quality[p]
        assert {"fd", "coverage", "delta_fd", "delta_coverage", "pixel_max_abs_error"} <= set(q)
        assert q["pixel_mean_abs_error"] < 8
    assert m.quality["fp16"]["pixel_max_abs_error"] <= 2
    # OpenVINO's half precision is bf16 on this CPU: coarser than fp16, still a few grey levels
    assert m.quality["openvino-fp16"]["pixel_mean_abs_error"] < 2
    assert abs(m.quality["int8"]["delta_fd"]) <= 0.25 * m.quality["fp32"]["fd"]


def test_triton_configs_parse_against_tritons_schema(exported):
    from vaegan.export.triton import parse_config

    out, _ = exported
    for comp in ("encoder", "decoder"):
        cfg = parse_config((out / "triton" / comp / "config.pbtxt").read_text())
        assert cfg.name == comp and cfg.max_batch_size == 16 and cfg.platform == "onnxruntime_onnx"
        assert list(cfg.dynamic_batching.preferred_batch_size) == [4, 16]
        assert (out / "triton" / comp / "1" / "model.onnx").exists()
    dec = parse_config((out / "triton" / "decoder" / "config.pbtxt").read_text())
    assert list(dec.output[0].dims) == [16, 16, 1]
    from google.protobuf.text_format import ParseError

    with pytest.raises(ParseError):
        parse_config('name: "x"\nmax_batch_size: "lots"\n')


def test_fp16_overflow_guard_keeps_overflowing_nodes_in_fp32(tmp_path):
    from onnx import TensorProto, helper

    from vaegan.export.precision import convert_fp16

    big = helper.make_tensor("big", TensorProto.FLOAT, [], [1e6])
    small = helper.make_tensor("small", TensorProto.FLOAT, [], [1e-6])
    graph = helper.make_graph(
        [
            helper.make_node("Mul", ["x", "big"], ["h"], name="scale_up"),
            helper.make_node("Mul", ["h", "small"], ["y"], name="scale_down"),
            helper.make_node("Relu", ["y"], ["out"], name="relu"),
        ],
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n", 4])],
        [helper.make_tensor_value_info("out", TensorProto.FLOAT, ["n", 4])],
        initializer=[big, small],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    src, dst = tmp_path / "m.onnx", tmp_path / "m16.onnx"
    onnx.save(model, str(src))
    kept = convert_fp16(src, dst, {"x": np.ones((3, 4), np.float32)})
    assert "scale_up" in kept
    import onnxruntime as ort

    y = ort.InferenceSession(str(dst), providers=["CPUExecutionProvider"]).run(
        None, {"x": np.ones((3, 4), np.float32)}
    )
    assert np.isfinite(y[0]).all() and np.allclose(y[0], 1.0, rtol=1e-2)


def test_info_prints_the_manifest(exported):
    out, _ = exported
    r = run_cli("info", str(out))
    assert r.returncode == 0, r.stderr
    assert "decoder.int8.onnx" in r.stdout and "grey levels vs torch" in r.stdout and "fd" in r.stdout


def test_trt_without_tensorrt_fails_cleanly_after_the_onnx(trained_run, tmp_path):
    try:
        import tensorrt  # noqa: F401

        pytest.skip("TensorRT is installed here: the engine build itself is tested in test_tensorrt")
    except ImportError:
        pass
    out = tmp_path / "art"
    r = run_cli(
        "export",
        str(trained_run),
        "--out",
        str(out),
        "--precision",
        "fp32",
        "--trt",
        "--max-batch",
        "8",
        "--quality-n",
        "200",
    )
    assert r.returncode == 2
    lines = r.stderr.strip().splitlines()
    # no GPU driver (cuda-python answers) or no cuda-python / TensorRT: either way one line saying which
    assert "TensorRT" in lines[-1] and "Traceback" not in r.stderr
    assert (
        "no NVIDIA driver here" in lines[-1]
        or "cuda-python" in lines[-1]
        or "pip install tensorrt" in lines[-1]
    )
    m = Manifest.load(out)  # the ONNX artifacts are written and valid
    assert (
        m.find("decoder", "fp32", "onnx") and sha256_file(out / "decoder.fp32.onnx") == m.artifacts[1].sha256
    )


def test_run_dir_without_weights(tmp_path):
    with pytest.raises(CheckpointError, match="not a directory"):
        export_run(tmp_path / "nope", tmp_path / "art")
    (tmp_path / "half").mkdir()
    (tmp_path / "half" / "train_state.pt").write_bytes(b"")
    with pytest.raises(CheckpointError, match="first checkpoint"):
        export_run(tmp_path / "half", tmp_path / "art")
    assert not (tmp_path / "art").exists()


def test_config_that_does_not_match_weights(trained_run, tmp_path):
    bad = tmp_path / "bad"
    shutil.copytree(trained_run, bad)
    c = json.loads((bad / "config.json").read_text())
    c["model"]["latent_dim"] = 9
    (bad / "config.json").write_text(json.dumps(c))
    r = run_cli("export", str(bad), "--out", str(tmp_path / "art"))
    assert r.returncode == 2 and "does not match" in r.stderr and not (tmp_path / "art").exists()


def test_out_dir_with_another_models_artifacts_is_not_overwritten(exported, trained_run, tmp_path):
    out, _ = exported
    other = tmp_path / "other"
    shutil.copytree(out, other)
    m = json.loads((other / "manifest.json").read_text())
    m["run"]["data_key"] = "someoneelse"
    (other / "manifest.json").write_text(json.dumps(m))
    before = sorted(p.name for p in other.iterdir())
    with pytest.raises(ExportError, match="another model"):
        export_run(trained_run, other, ExportOptions(precisions=["fp32"]))
    assert sorted(p.name for p in other.iterdir()) == before
    (tmp_path / "junk").mkdir()
    (tmp_path / "junk" / "notes.txt").write_text("mine")
    with pytest.raises(ExportError, match="not a vaegan artifact dir"):
        export_run(trained_run, tmp_path / "junk", ExportOptions(precisions=["fp32"]))
    assert (tmp_path / "junk" / "notes.txt").read_text() == "mine"


def test_force_never_deletes_what_vaegan_did_not_write(trained_run, tmp_path):
    """--force replaces an earlier export only: a folder of someone's files, or the run dir itself,
    is refused in one line and left exactly as it was."""
    (tmp_path / "x").mkdir()
    (tmp_path / "x" / "thesis.txt").write_text("keep")
    before_run = sorted(p.name for p in trained_run.iterdir())
    for out in (tmp_path / "x", trained_run):
        r = run_cli("export", str(trained_run), "--out", str(out), "--precision", "fp32", "--force")
        assert r.returncode == 2 and len(r.stderr.strip().splitlines()) == 1, r.stderr
        assert "not a vaegan artifact dir" in r.stderr and "never deletes" in r.stderr
    assert (tmp_path / "x" / "thesis.txt").read_text() == "keep"
    assert sorted(p.name for p in trained_run.iterdir()) == before_run


@pytest.mark.skipif(os.geteuid() == 0, reason="root can write to read-only directories")
def test_unwritable_out_dir(trained_run, tmp_path):
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(stat.S_IRUSR | stat.S_IXUSR)
    try:
        with pytest.raises(ExportError, match="cannot write"):
            export_run(trained_run, ro / "art", ExportOptions(precisions=["fp32"]))
    finally:
        ro.chmod(stat.S_IRWXU)


def test_unwritable_out_dir_even_as_root(trained_run, tmp_path):
    """A path under a regular file cannot be created by anyone, root included."""
    (tmp_path / "file").write_text("x")
    with pytest.raises(ExportError, match="cannot write"):
        export_run(trained_run, tmp_path / "file" / "art", ExportOptions(precisions=["fp32"]))


def test_bad_options():
    with pytest.raises(ConfigError, match="opt-batch"):
        ExportOptions(opt_batch=32, max_batch=8).validate()
    with pytest.raises(ConfigError, match="precision"):
        ExportOptions(precisions=["int4"]).validate()


def test_fp32_is_always_built_and_listed_first_for_the_api_as_for_the_cli():
    """One home for the rule: ExportOptions.validate, which `vaegan export` and export_run share."""
    assert ExportOptions(precisions=["int8"]).validate().precisions == ["fp32", "int8"]
    assert ExportOptions(precisions=["int8", "fp16", "fp32"]).validate().precisions == [
        "fp32",
        "fp16",
        "int8",
    ]
