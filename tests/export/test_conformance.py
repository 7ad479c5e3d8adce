"""TensorRT's ONNX import rules (vaegan.export.conformance), checked without TensorRT: on what the
export writes, and on hand-made graphs that break one rule each."""

import json
import shutil

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from tests.conftest import run_cli
from vaegan.core.manifest import Manifest, sha256_file
from vaegan.export.conformance import check_file, check_model


def _model(nodes, inputs, outputs, inits=(), opset=18):
    g = helper.make_graph(nodes, "g", inputs, outputs, initializer=list(inits))
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", opset)])
    onnx.checker.check_model(m)
    return m


def _vi(name, elem, shape):
    return helper.make_tensor_value_info(name, elem, shape)


def _rules(model):
    return [(v.rule, v.node) for v in check_model(model).violations]


def test_every_onnx_the_export_writes_conforms(art_dir):
    m = Manifest.load(art_dir)
    onnx_artifacts = [a for a in m.artifacts if a.format == "onnx"]
    assert len(onnx_artifacts) == 6
    for a in onnx_artifacts:
        assert a.conformance["ok"], a.conformance  # recorded at export
        assert check_file(art_dir / a.path).ok  # and true of the file now


@pytest.mark.slow
def test_a_64x64_rgb_model_exports_conforming_graphs(tmp_path):
    from vaegan.config import ModelConfig, RunConfig, TrainConfig
    from vaegan.export.pipeline import ExportOptions, export_run
    from vaegan.trainer.loop import train

    rng = np.random.default_rng(0)
    data = tmp_path / "rgb.npz"
    np.savez(data, x=rng.integers(0, 256, (64, 64, 64, 3), dtype=np.uint8))
    run = tmp_path / "run"
    cfg = RunConfig(
        ModelConfig(image_size=64, channels=3, width=8, latent_dim=8),
        TrainConfig(data=str(data), max_steps=2, batch_size=16, checkpoint_every=2),
    )
    train(cfg, run, progress=False)
    m = export_run(
        run,
        tmp_path / "art",
        ExportOptions(max_batch=8, opt_batch=2, calib_samples=32, quality_n=50, strict=False),
    )
    onnx_artifacts = [a for a in m.artifacts if a.format == "onnx"]
    assert {a.precision for a in onnx_artifacts} == {"fp32", "fp16", "int8"}
    for a in onnx_artifacts:
        assert a.outputs[0].shape[1:] == [64, 64, 3] or a.inputs[0].shape[1:] == [64, 64, 3]
        assert check_file(tmp_path / "art" / a.path).ok, check_file(tmp_path / "art" / a.path).violations


def test_uint8_transpose_before_the_cast_is_refused():
    """The encoder graph vaegan wrote before: images (uint8) -> Transpose -> Cast."""
    m = _model(
        [
            helper.make_node("Transpose", ["images"], ["t"], name="nhwc_to_nchw", perm=[0, 3, 1, 2]),
            helper.make_node("Cast", ["t"], ["y"], name="to_float", to=TensorProto.FLOAT),
        ],
        [_vi("images", TensorProto.UINT8, ["batch", 8, 8, 1])],
        [_vi("y", TensorProto.FLOAT, ["batch", 1, 8, 8])],
    )
    assert ("uint8-io", "nhwc_to_nchw") in _rules(m)
    assert "nhwc_to_nchw" in str(check_model(m).violations[0])


def test_uint8_intermediate_made_by_a_cast_is_refused():
    """The decoder graph vaegan wrote before: Cast to uint8 -> Transpose -> output."""
    m = _model(
        [
            helper.make_node("Cast", ["x"], ["u"], name="to_uint8", to=TensorProto.UINT8),
            helper.make_node("Transpose", ["u"], ["images"], name="nchw_to_nhwc", perm=[0, 2, 3, 1]),
        ],
        [_vi("x", TensorProto.FLOAT, ["batch", 1, 8, 8])],
        [_vi("images", TensorProto.UINT8, ["batch", 8, 8, 1])],
    )
    rules = _rules(m)
    assert ("uint8-io", "to_uint8") in rules  # an intermediate uint8 tensor
    assert ("uint8-io", "nchw_to_nhwc") in rules  # a uint8 output not written by a Cast


def test_the_conforming_orderings_pass():
    enc = _model(
        [
            helper.make_node("Cast", ["images"], ["f"], name="to_float", to=TensorProto.FLOAT),
            helper.make_node("Transpose", ["f"], ["y"], name="t", perm=[0, 3, 1, 2]),
        ],
        [_vi("images", TensorProto.UINT8, ["batch", 8, 8, 1])],
        [_vi("y", TensorProto.FLOAT, ["batch", 1, 8, 8])],
    )
    dec = _model(
        [
            helper.make_node("Transpose", ["x"], ["t"], name="t", perm=[0, 2, 3, 1]),
            helper.make_node("Cast", ["t"], ["images"], name="to_uint8", to=TensorProto.UINT8),
        ],
        [_vi("x", TensorProto.FLOAT, ["batch", 1, 8, 8])],
        [_vi("images", TensorProto.UINT8, ["batch", 8, 8, 1])],
    )
    assert check_model(enc).ok and check_model(dec).ok


def _qdq(zero_point, scale, per_channel_on=None):
    x = np.zeros((4, 2, 3, 3), np.int8)
    inits = [
        numpy_helper.from_array(x, "w_q"),
        numpy_helper.from_array(np.asarray(scale, np.float32), "s"),
        numpy_helper.from_array(np.asarray(zero_point, np.int8), "zp"),
        numpy_helper.from_array(np.float32(0.1), "as"),
        numpy_helper.from_array(np.int8(0), "azp"),
    ]
    kw = {} if per_channel_on is None else {"axis": per_channel_on}
    return _model(
        [
            helper.make_node("QuantizeLinear", ["x", "as", "azp"], ["xq"], name="act_q"),
            helper.make_node("DequantizeLinear", ["xq", "as", "azp"], ["xd"], name="act_dq"),
            helper.make_node("DequantizeLinear", ["w_q", "s", "zp"], ["w"], name="weight_dq", **kw),
            helper.make_node("Conv", ["xd", "w"], ["y"], name="conv", pads=[1, 1, 1, 1]),
        ],
        [_vi("x", TensorProto.FLOAT, ["batch", 2, 8, 8])],
        [_vi("y", TensorProto.FLOAT, ["batch", 4, 8, 8])],
        inits,
    )


def test_symmetric_per_channel_qdq_passes():
    assert check_model(_qdq([0, 0, 0, 0], [0.1, 0.2, 0.3, 0.4], per_channel_on=0)).ok


def test_asymmetric_int8_zero_point_is_refused():
    m = _qdq([0, 3, 0, 0], [0.1, 0.2, 0.3, 0.4], per_channel_on=0)
    v = check_model(m).violations
    assert [(x.rule, x.node) for x in v] == [("qdq", "weight_dq")]
    assert "zero point must be all zeros" in v[0].message


def test_per_channel_weight_scales_on_another_axis_are_refused():
    m = _qdq([0, 0], [0.1, 0.2], per_channel_on=1)
    assert ("qdq", "weight_dq") in _rules(m)


def test_op_outside_the_list_is_refused():
    m = _model(
        [helper.make_node("Det", ["x"], ["y"], name="determinant")],
        [_vi("x", TensorProto.FLOAT, ["batch", 3, 3])],
        [_vi("y", TensorProto.FLOAT, ["batch"])],
    )
    v = check_model(m).violations
    assert [(x.rule, x.node, x.op) for x in v] == [("operator", "determinant", "Det")]


@pytest.mark.parametrize(
    "attrs",
    [{"mode": "cubic"}, {"coordinate_transformation_mode": "tf_crop_and_resize"}, {"antialias": 1}],
)
def test_resize_modes_tensorrt_does_not_take_are_refused(attrs):
    inits = [numpy_helper.from_array(np.array([1, 1, 2, 2], np.float32), "scales")]
    m = _model(
        [helper.make_node("Resize", ["x", "", "scales"], ["y"], name="upsample", **attrs)],
        [_vi("x", TensorProto.FLOAT, ["batch", 4, 8, 8])],
        [_vi("y", TensorProto.FLOAT, ["batch", 4, 16, 16])],
        inits,
        opset=19 if "antialias" in attrs else 18,
    )
    v = check_model(m).violations
    assert [(x.rule, x.node) for x in v] == [("operator", "upsample")]
    assert next(iter(attrs)) in v[0].message


def test_dynamic_dimension_other_than_batch_is_refused():
    m = _model(
        [helper.make_node("Relu", ["x"], ["y"], name="relu")],
        [_vi("x", TensorProto.FLOAT, ["batch", "height", 8])],
        [_vi("y", TensorProto.FLOAT, ["batch", "height", 8])],
    )
    assert ("static-shape", "x") in _rules(m)


def test_info_shows_the_conformance_of_each_onnx_artifact(art_dir):
    r = run_cli("info", str(art_dir))
    assert r.returncode == 0, r.stderr
    assert "TensorRT import" in r.stdout
    rows = [line for line in r.stdout.splitlines() if ".onnx " in line]
    assert len(rows) == 6 and all("conforms" in line for line in rows)


def test_engines_refuses_a_non_conforming_onnx_before_tensorrt(art_dir, tmp_path):
    """A decoder in the old uint8 ordering, listed with its true sha256: refused with the node named."""
    art = tmp_path / "art"
    shutil.copytree(art_dir, art)
    bad = _model(
        [
            helper.make_node("Cast", ["z"], ["u"], name="to_uint8", to=TensorProto.UINT8),
            helper.make_node("Reshape", ["u", "shape"], ["images"], name="reshape"),
        ],
        [_vi("z", TensorProto.FLOAT, ["batch", 8])],
        [_vi("images", TensorProto.UINT8, ["batch", 2, 4, 1])],
        [numpy_helper.from_array(np.array([-1, 2, 4, 1], np.int64), "shape")],
    )
    (art / "decoder.fp32.onnx").write_bytes(bad.SerializeToString())
    m = json.loads((art / "manifest.json").read_text())
    for a in m["artifacts"]:
        if a["path"] == "decoder.fp32.onnx":
            a["sha256"], a["bytes"] = sha256_file(art / a["path"]), (art / a["path"]).stat().st_size
    (art / "manifest.json").write_text(json.dumps(m))
    r = run_cli("engines", str(art))
    assert r.returncode == 2, r.stdout + r.stderr
    assert len(r.stderr.strip().splitlines()) == 1 and "Traceback" not in r.stderr
    assert "decoder.fp32.onnx breaks TensorRT's ONNX import rules" in r.stderr and "'to_uint8'" in r.stderr
