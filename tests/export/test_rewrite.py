"""The export's graph rewrites (vaegan.export.rewrite): the decoder's thin output conv computed a
block of pixels at a time, and batch norm folded into the Gemm before it. Each gives the same output
on ONNX Runtime, keeps TensorRT's import rules and the useful FLOPs, and leaves a graph that does not
have its pattern as it was."""

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from onnx import TensorProto, helper, numpy_helper

from tests.conftest import run_cli
from vaegan.bench import model_flops
from vaegan.config import ModelConfig
from vaegan.core.manifest import Manifest
from vaegan.export.conformance import check_model
from vaegan.export.onnx import DecoderGraph, export_onnx
from vaegan.export.rewrite import fold_batch_norm_into_gemm, split_thin_output_conv
from vaegan.trainer.models import Decoder


def _run(model: onnx.ModelProto, x: np.ndarray) -> np.ndarray:
    sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return sess.run(None, {sess.get_inputs()[0].name: x})[0]


def _tail(
    channels: int, size: int, k: int = 3, scale_shape: tuple = (), upsample: bool = False
) -> onnx.ModelProto:
    """x [N,8,size,size] -> Conv(8->channels, kxk) -> Tanh -> (x+1)*127.5 -> Round -> Clip
    [-> Resize x2] -> NHWC -> uint8."""
    rng = np.random.default_rng(channels * 100 + size)
    inits = [
        numpy_helper.from_array(rng.standard_normal((channels, 8, k, k)).astype(np.float32) * 0.3, "w"),
        numpy_helper.from_array(rng.standard_normal(channels).astype(np.float32) * 0.1, "b"),
        numpy_helper.from_array(np.ones(scale_shape, np.float32), "one"),
        numpy_helper.from_array(np.full((), 127.5, np.float32), "half"),
        numpy_helper.from_array(np.zeros((), np.float32), "lo"),
        numpy_helper.from_array(np.full((), 255.0, np.float32), "hi"),
        numpy_helper.from_array(np.array([1, 1, 2, 2], np.float32), "scales"),
    ]
    nodes = [
        helper.make_node("Conv", ["x", "w", "b"], ["c"], kernel_shape=[k, k], pads=[k // 2] * 4, name="out"),
        helper.make_node("Tanh", ["c"], ["t"]),
        helper.make_node("Add", ["t", "one"], ["a"]),
        helper.make_node("Mul", ["a", "half"], ["m"]),
        helper.make_node("Round", ["m"], ["r"]),
        helper.make_node("Clip", ["r", "lo", "hi"], ["p"]),
    ]
    if upsample:  # an op between the conv and the output that moves pixels
        nodes.append(helper.make_node("Resize", ["p", "", "scales"], ["u"], mode="nearest"))
    nodes += [
        helper.make_node("Transpose", ["u" if upsample else "p"], ["nhwc"], perm=[0, 2, 3, 1]),
        helper.make_node("Cast", ["nhwc"], ["images"], to=TensorProto.UINT8),
    ]
    out = size * 2 if upsample else size
    g = helper.make_graph(
        nodes,
        "tail",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 8, size, size])],
        [helper.make_tensor_value_info("images", TensorProto.UINT8, ["batch", out, out, channels])],
        [t for t in inits if upsample or t.name != "scales"],
    )
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 18)])
    onnx.checker.check_model(m, full_check=True)
    return m


@pytest.mark.parametrize(
    ("channels", "size", "k", "block"), [(1, 16, 3, 4), (3, 8, 3, 2), (4, 12, 5, 2), (1, 6, 3, 2)]
)
def test_rewritten_tail_gives_the_same_pixels(channels, size, k, block, tmp_path):
    before = _tail(channels, size, k)
    after = onnx.ModelProto()
    after.CopyFrom(before)
    done = split_thin_output_conv(after)
    assert done is not None and f"8->{channels * block * block} at stride {block}" in done
    onnx.checker.check_model(after, full_check=True)
    conv = next(n for n in after.graph.node if n.op_type == "Conv")
    assert [a.ints for a in conv.attribute if a.name == "strides"][0] == [block, block]
    assert [n.op_type for n in after.graph.node][-3:] == ["DepthToSpace", "Transpose", "Cast"]
    x = np.random.default_rng(1).standard_normal((5, 8, size, size)).astype(np.float32)
    a, b = _run(before, x), _run(after, x)
    assert a.shape == b.shape == (5, size, size, channels) and b.dtype == np.uint8
    assert np.abs(a.astype(int) - b.astype(int)).max() <= 1 and (a == b).mean() > 0.999
    assert check_model(after).ok, check_model(after).violations  # TensorRT's rules still hold
    onnx.save(before, tmp_path / "before.onnx")
    onnx.save(after, tmp_path / "after.onnx")
    assert model_flops(tmp_path / "after.onnx") == model_flops(tmp_path / "before.onnx")  # zeros not counted


def _also_output(m: onnx.ModelProto, name: str, shape: list) -> onnx.ModelProto:
    m.graph.output.append(helper.make_tensor_value_info(name, TensorProto.FLOAT, ["batch", *shape]))
    return m


@pytest.mark.parametrize(
    ("why", "model"),
    [
        ("too many output channels", lambda: _tail(8, 16)),
        ("a per-channel constant in the chain", lambda: _tail(3, 16, scale_shape=(3, 1, 1))),
        ("an op that is not elementwise after the conv", lambda: _tail(1, 8, upsample=True)),
        ("an odd output size", lambda: _tail(1, 7)),
        (
            "a tensor of the chain that is also a graph output",
            lambda: _also_output(_tail(1, 16), "t", [1, 16, 16]),
        ),
    ],
)
def test_graphs_outside_the_pattern_are_left_alone(why, model):
    m = model()
    before = m.SerializeToString()
    assert split_thin_output_conv(m) is None, why
    assert m.SerializeToString() == before


def _seed(
    trans_b: int, channels: int = 6, hw: int = 4, reshape_channels: int | None = None
) -> onnx.ModelProto:
    """z [N,5] -> Gemm -> Reshape [N, C, h, w] -> BatchNormalization -> Relu."""
    rng = np.random.default_rng(trans_b)
    feats = channels * hw * hw
    w = rng.standard_normal((feats, 5) if trans_b else (5, feats)).astype(np.float32)
    c = reshape_channels or channels
    inits = [
        numpy_helper.from_array(w, "w"),
        numpy_helper.from_array(rng.standard_normal(feats).astype(np.float32), "b"),
        numpy_helper.from_array(np.array([-1, c, feats // c // hw, hw], np.int64), "shape"),
        numpy_helper.from_array(rng.uniform(0.5, 2, c).astype(np.float32), "gamma"),
        numpy_helper.from_array(rng.standard_normal(c).astype(np.float32), "beta"),
        numpy_helper.from_array(rng.standard_normal(c).astype(np.float32), "mean"),
        numpy_helper.from_array(rng.uniform(0.1, 3, c).astype(np.float32), "var"),
    ]
    nodes = [
        helper.make_node("Gemm", ["z", "w", "b"], ["y"], transB=trans_b, name="fc"),
        helper.make_node("Reshape", ["y", "shape"], ["seed"]),
        helper.make_node("BatchNormalization", ["seed", "gamma", "beta", "mean", "var"], ["n"], name="bn"),
        helper.make_node("Relu", ["n"], ["out"]),
    ]
    g = helper.make_graph(
        nodes,
        "seed",
        [helper.make_tensor_value_info("z", TensorProto.FLOAT, ["batch", 5])],
        [helper.make_tensor_value_info("out", TensorProto.FLOAT, ["batch", c, feats // c // hw, hw])],
        inits,
    )
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", 18)])


@pytest.mark.parametrize("trans_b", [0, 1])
def test_batch_norm_after_a_gemm_is_folded_into_it(trans_b):
    before = _seed(trans_b)
    after = onnx.ModelProto()
    after.CopyFrom(before)
    assert "(6 channels) folded" in (fold_batch_norm_into_gemm(after) or "")
    onnx.checker.check_model(after, full_check=True)
    assert [n.op_type for n in after.graph.node] == ["Gemm", "Reshape", "Relu"]
    assert {t.name for t in after.graph.initializer} == {"fc_bn_weight", "fc_bn_bias", "shape"}
    z = np.random.default_rng(2).standard_normal((7, 5)).astype(np.float32)
    np.testing.assert_allclose(_run(after, z), _run(before, z), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("why", ["a norm parameter that is an input", "the Gemm's output read twice"])
def test_batch_norm_chains_that_cannot_be_folded_are_left_alone(why):
    m = _seed(1)
    if why.startswith("a norm"):
        gamma = next(t for t in m.graph.initializer if t.name == "gamma")
        m.graph.input.append(helper.make_tensor_value_info("gamma", TensorProto.FLOAT, list(gamma.dims)))
        m.graph.initializer.remove(gamma)
    else:
        m.graph.output.append(helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 96]))
    onnx.checker.check_model(m)
    before = m.SerializeToString()
    assert fold_batch_norm_into_gemm(m) is None
    assert m.SerializeToString() == before


def test_export_rewrites_the_vaegan_decoder_and_records_it(tmp_path, art_dir):
    cfg = ModelConfig(image_size=16, channels=3, latent_dim=8, width=8)
    graph = DecoderGraph(Decoder(cfg).eval())
    path = tmp_path / "decoder.fp32.onnx"
    rewrites = export_onnx(graph, torch.zeros(2, 8), "decoder", path, {})
    assert len(rewrites) == 2 and "folded into the Gemm" in rewrites[0] and "->12 at stride 2" in rewrites[1]
    z = torch.randn(9, 8, generator=torch.Generator().manual_seed(0))
    ref = graph(z).numpy().astype(int)
    got = _run(onnx.load(path), z.numpy()).astype(int)
    assert np.abs(ref - got).max() <= 1
    # the fixture's export recorded it in its manifest, on the fp32 decoder the others come from
    fp32 = Manifest.load(art_dir).find("decoder", "fp32", "onnx")
    assert fp32 is not None and "stride 4" in fp32.notes["rewrites"][1]
    shown = run_cli("info", str(art_dir)).stdout
    assert "Graph rewrites at export" in shown and "decoder.fp32.onnx: output conv" in shown
