"""Graph rewrites of the exported ONNX that every engine runs faster, with the same arithmetic.

`apply` runs them all on a freshly exported graph and returns what it changed; each rewrite matches
a pattern and leaves a graph that does not have it as it was, so a user's own model gets the ones
that fit. The export then checks the result against torch (parity) and TensorRT's import rules.

**A thin output conv** (`split_thin_output_conv`): the decoder's last conv, 1-4 channels out at full
resolution. CPU engines compute a conv in blocks of output channels (ONNX Runtime's NCHWc and
oneDNN, which OpenVINO uses, block by 8), so a 1-channel conv costs as much as an 8- or 16-channel
one: in the quick-start decoder it was 1% of the MACs and 13-19% of the time. The rewrite computes
each r x r block of output pixels at once, as r*r times the channels (at most 16) at 1/r of the
resolution:

    Conv(C -> c, k x k, stride 1, pad k//2) -> elementwise ... -> Transpose(NCHW -> NHWC)
    Conv(C -> c*r*r, (k+r-1)^2, stride r, pad k//2) -> the same elementwise ... -> DepthToSpace(r)
        -> Transpose(NCHW -> NHWC)

Output channel c*r*r + a*r + b holds the pixel (r*i + a, r*j + b) of channel c: its kernel is the
original one shifted by (a, b) in a window of zeros, so each output is the same sum of the same
products. DepthToSpace is on TensorRT's list (onnx-tensorrt docs/operators.md: FP32, FP16, INT32,
INT64; here it moves float pixels before the final Cast).

**Batch norm after a Gemm** (`fold_batch_norm_into_gemm`): a decoder's first layer maps z to a
[C, h, w] seed through Linear -> view -> BatchNorm2d. torch's exporter folds batch norm into convs
but not across the view, so it ran as its own layer, and in the int8 graph it kept the seed and the
first upsample in float. Its scale and shift are folded into the Gemm's rows, channel by channel.

Measured on the quick-start decoder, both rewrites against neither, one run with the two exports
taking turns on a 2-core AVX2 EPYC (`vaegan bench before after --engine vaegan-ort,vaegan-openvino
--precision fp32,int8 --batch 1,64`, docs/benchmarks.md): batch 64 ONNX Runtime fp32 1.01x, OpenVINO
fp32 1.20x, ONNX Runtime int8 1.38x, OpenVINO int8 1.19x; batch 1 1.09-1.25x.
"""

from __future__ import annotations

import numpy as np
import onnx
from onnx import helper, numpy_helper

# Ops that act on each element alone, so they commute with moving pixels between channels and
# space, provided every other input is a scalar constant.
ELEMENTWISE = {
    "Tanh",
    "Sigmoid",
    "Relu",
    "LeakyRelu",
    "HardSigmoid",
    "Clip",
    "Round",
    "Add",
    "Sub",
    "Mul",
    "Div",
}
MAX_CHANNELS = 4  # rewrite convs with at most this many output channels


def apply(model: onnx.ModelProto) -> list[str]:
    """Every rewrite that matches, in place; what each one changed."""
    done = [fold_batch_norm_into_gemm(model), split_thin_output_conv(model)]
    return [d for d in done if d]


def _attrs(node: onnx.NodeProto) -> dict:
    return {a.name: helper.get_attribute_value(a) for a in node.attribute}


def _graph_maps(g: onnx.GraphProto) -> tuple[dict, dict, dict[str, list[onnx.NodeProto]]]:
    init = {t.name: t for t in g.initializer}
    producer = {o: n for n in g.node for o in n.output}
    consumers: dict[str, list[onnx.NodeProto]] = {}
    for n in g.node:
        for i in n.input:
            consumers.setdefault(i, []).append(n)
    for o in g.output:  # a graph output is read from outside: a rewrite must not change it
        consumers.setdefault(o.name, []).append(
            helper.make_node("Identity", [o.name], [], name="graph output")
        )
    return init, producer, consumers


def _optional(init: dict, node: onnx.NodeProto, i: int) -> np.ndarray | None:
    """The constant value of a node's optional input i (a bias), or None where it has none."""
    return numpy_helper.to_array(init[node.input[i]]) if len(node.input) > i and node.input[i] else None


def _replace_nodes(g: onnx.GraphProto, edit, stale: set[str]) -> None:
    """Rebuild the node list from copies, `edit(copy)` returning the nodes to put in its place (a
    node proto is not to be held across edits of its repeated field), then drop the initializers
    no node reads any more and the shapes recorded for the `stale` tensors, which have changed."""
    nodes = []
    for n in g.node:
        copy = onnx.NodeProto()
        copy.CopyFrom(n)
        nodes += edit(copy)
    del g.node[:]
    g.node.extend(nodes)
    used = {i for n in g.node for i in n.input}
    for i in reversed(range(len(g.initializer))):
        if g.initializer[i].name not in used:
            del g.initializer[i]
    for i in reversed(range(len(g.value_info))):
        if g.value_info[i].name in stale:
            del g.value_info[i]


def _gemm_reshape_bn(g: onnx.GraphProto) -> tuple[onnx.NodeProto, onnx.NodeProto, onnx.NodeProto] | None:
    """The first Gemm -> Reshape [N, C, h, w] -> BatchNormalization chain with constant parameters."""
    init, producer, consumers = _graph_maps(g)
    for bn in g.node:
        if bn.op_type != "BatchNormalization" or len(bn.output) != 1:
            continue
        reshape = producer.get(bn.input[0])
        if reshape is None or reshape.op_type != "Reshape":
            continue
        gemm = producer.get(reshape.input[0])
        if gemm is None or gemm.op_type != "Gemm":
            continue
        a = _attrs(gemm)
        if a.get("alpha", 1.0) != 1.0 or a.get("beta", 1.0) != 1.0 or a.get("transA", 0):
            continue
        params = [*bn.input[1:], gemm.input[1], reshape.input[1], *[i for i in gemm.input[2:] if i]]
        if any(i not in init for i in params):
            continue
        if len(consumers[gemm.output[0]]) != 1 or len(consumers[reshape.output[0]]) != 1:
            continue
        shape = numpy_helper.to_array(init[reshape.input[1]])
        features = init[gemm.input[1]].dims[0 if a.get("transB", 0) else 1]
        if len(shape) == 4 and shape[1] == init[bn.input[1]].dims[0] and int(np.prod(shape[1:])) == features:
            return gemm, reshape, bn
    return None


def fold_batch_norm_into_gemm(model: onnx.ModelProto) -> str | None:
    """Gemm -> Reshape to [N, C, h, w] -> BatchNormalization becomes Gemm -> Reshape, in place.
    Returns what was folded, or None where the graph has no such chain."""
    g = model.graph
    found = _gemm_reshape_bn(g)
    if found is None:
        return None
    gemm, reshape, bn = found
    init = {t.name: t for t in g.initializer}
    scale, shift, mean, var = (numpy_helper.to_array(init[i]).astype(np.float64) for i in bn.input[1:])
    trans_b = _attrs(gemm).get("transB", 0)
    w = numpy_helper.to_array(init[gemm.input[1]])
    rows = w if trans_b else w.T  # [features, z]; feature f belongs to channel f // (h*w)
    per_channel = scale / np.sqrt(var + _attrs(bn).get("epsilon", 1e-5))
    s = np.repeat(per_channel, rows.shape[0] // len(scale))
    t = np.repeat(shift - mean * per_channel, rows.shape[0] // len(scale))
    bias = _optional(init, gemm, 2)
    w_new = (rows * s[:, None]).astype(w.dtype)
    w_name, b_name = f"{gemm.name or 'gemm'}_bn_weight", f"{gemm.name or 'gemm'}_bn_bias"
    g.initializer.extend(
        [
            numpy_helper.from_array(w_new if trans_b else np.ascontiguousarray(w_new.T), w_name),
            numpy_helper.from_array(((0.0 if bias is None else bias) * s + t).astype(w.dtype), b_name),
        ]
    )
    gemm_out, bn_in, bn_out = gemm.output[0], reshape.output[0], bn.output[0]
    what = f"batch norm {bn.name or '(unnamed)'} ({len(scale)} channels) folded into the Gemm before it"

    def edit(n: onnx.NodeProto) -> list[onnx.NodeProto]:
        if n.output[0] == bn_out:
            return []
        if n.output[0] == gemm_out:
            del n.input[1:]
            n.input.extend([w_name, b_name])
        elif n.output[0] == bn_in:
            n.output[0] = bn_out  # the reshape now produces what the batch norm did
        return [n]

    _replace_nodes(g, edit, stale={bn_in})
    return what


def split_thin_output_conv(model: onnx.ModelProto) -> str | None:
    """Rewrite, in place, a thin last conv of a decoder graph (see the module doc). Returns what was
    rewritten, or None where the graph does not end in that pattern (it is then left as it was)."""
    g = model.graph
    init, producer, consumers = _graph_maps(g)
    image = g.output[0]  # the decoder's images: the first output, made by Cast <- Transpose to NHWC
    cast = producer.get(image.name)
    transpose = producer.get(cast.input[0]) if cast is not None and cast.op_type == "Cast" else None
    if transpose is None or transpose.op_type != "Transpose" or _attrs(transpose).get("perm") != [0, 2, 3, 1]:
        return None
    shape = [d.dim_value for d in image.type.tensor_type.shape.dim]
    if len(shape) != 4 or 0 in shape[1:]:
        return None
    _, height, width, channels = shape

    chain, tensor = [], transpose.input[0]  # the elementwise nodes between the conv and the transpose
    while tensor in producer and producer[tensor].op_type in ELEMENTWISE:
        node = producer[tensor]
        others = [i for i in node.input[1:] if i]
        if any(i not in init or numpy_helper.to_array(init[i]).size != 1 for i in others):
            return None
        if len(consumers.get(tensor, [])) != 1:
            return None
        chain.append(node)
        tensor = node.input[0]
    conv = producer.get(tensor)
    if conv is None or conv.op_type != "Conv" or len(consumers.get(tensor, [])) != 1:
        return None
    a = _attrs(conv)
    if conv.input[1] not in init or (len(conv.input) > 2 and conv.input[2] and conv.input[2] not in init):
        return None
    w = numpy_helper.to_array(init[conv.input[1]])
    c_out, c_in, kh, kw = w.shape
    k = kh
    if (
        c_out != channels
        or c_out > MAX_CHANNELS
        or kh != kw
        or k % 2 == 0
        or a.get("group", 1) != 1
        or a.get("strides", [1, 1]) != [1, 1]
        or a.get("dilations", [1, 1]) != [1, 1]
        or a.get("pads", [0, 0, 0, 0]) != [k // 2] * 4
        or a.get("auto_pad", b"NOTSET") not in (b"NOTSET", "NOTSET")
        or height % 2
        or width % 2
    ):
        return None

    r = next(r for r in (4, 2) if c_out * r * r <= 16 and height % r == 0 and width % r == 0)
    big = k + r - 1
    w2 = np.zeros((c_out, r, r, c_in, big, big), dtype=w.dtype)
    for dy in range(r):
        for dx in range(r):
            w2[:, dy, dx, :, dy : dy + k, dx : dx + k] = w
    w2 = w2.reshape(c_out * r * r, c_in, big, big)
    bias = _optional(init, conv, 2)
    b2 = np.repeat(bias if bias is not None else np.zeros(c_out, w.dtype), r * r)

    name = conv.name or "output_conv"
    w_name, b_name, blocks = f"{name}_s2d_weight", f"{name}_s2d_bias", f"{name}_s2d_blocks"
    g.initializer.extend([numpy_helper.from_array(w2, w_name), numpy_helper.from_array(b2, b_name)])
    new_conv = helper.make_node(
        "Conv",
        [conv.input[0], w_name, b_name],
        list(conv.output),
        name=f"{name}_s2d",
        kernel_shape=[big, big],
        pads=[k // 2] * 4,
        strides=[r, r],
    )
    # CRD: channel c*r*r + a*r + b goes to pixel (r*i + a, r*j + b) of channel c
    to_space = helper.make_node(
        "DepthToSpace", [transpose.input[0]], [blocks], name=f"{name}_d2s", blocksize=r, mode="CRD"
    )
    conv_out, transpose_out = conv.output[0], transpose.output[0]

    def edit(n: onnx.NodeProto) -> list[onnx.NodeProto]:
        if n.output[0] == conv_out:
            return [new_conv]
        if n.output[0] == transpose_out:
            n.input[0] = blocks
            return [to_space, n]
        return [n]

    _replace_nodes(g, edit, stale={conv_out, *(n.output[0] for n in chain)})  # now [N, c*r*r, H/r, W/r]
    return (
        f"output conv {name} ({c_in}->{c_out}, {k}x{k}) computed as {c_in}->{c_out * r * r} at stride {r} "
        "with depth-to-space: the same sums, fewer wasted SIMD lanes"
    )
