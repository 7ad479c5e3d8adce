"""Does an ONNX file import into TensorRT 10.3 (JetPack 6) and 11.x as a strongly typed network?

No machine that builds or tests vaegan can run TensorRT, so every exported graph is held to the
rules TensorRT's own ONNX importer (onnx-tensorrt) enforces, read from its sources. Each rule names
where it comes from. Torch-free and TensorRT-free: it needs only `onnx`, so `vaegan export` runs it
on every file it writes and `vaegan engines` runs it again on the device before touching TensorRT.

Sources (onnx-tensorrt is the parser inside TensorRT; its release branches track TensorRT's):
  [importer]  onnx-tensorrt ModelImporter.cpp, parseNode(): "TensorRT does not support UINT8 types
              for intermediate tensors" (10.x; 10.x later also allows UINT8 Constants and, behind the
              DLA-only kIMPORT_UINT8_QUANTIZATION flag, UINT8 Q/Gather, neither of which vaegan uses)
  [qdq]       onnx-tensorrt onnxOpImporters.cpp, QuantDequantLinearHelper(): "TensorRT only supports
              symmetric quantization. The zero point ... must be all zeros", "Scale coefficients must
              all be positive", "Dynamic shape for scale tensor is not supported", per-axis scales only
              for weights ("Activations-quantization does not support per-axis quantization")
  [ops]       onnx-tensorrt docs/operators.md, release/10.1-GA ("TensorRT 10.0 supports operators in
              the inclusive range of opset 9 to opset 20"), the operator matrix and its Restrictions
              column; the 10.x changelog through 10.15 only adds operators
  [resize]    operators.md, Resize row, and onnxOpImporters.cpp Resize importer ("Unsupported
              coordinate transformation mode"; half_pixel_symmetric and tf_crop_and_resize unsupported)
  [strong]    TensorRT developer guide, "Strongly Typed Networks" and "Explicit Quantization" (10.x,
              kept as the only mode in 11): precision comes from the graph's types and Q/DQ nodes;
              int8 Q/DQ with per-tensor activation scales and per-output-channel (axis 0) weight scales
  [profile]   TensorRT developer guide, "Working with Dynamic Shapes": vaegan builds one optimization
              profile over the batch axis only, so every other dimension must be static
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import onnx
from onnx import TensorProto, numpy_helper

from vaegan.core.errors import ArtifactCorrupt

TARGET = "TensorRT 10.3 (JetPack 6) and 11.x, strongly typed ONNX import"
OPSET_RANGE = (9, 20)  # [ops]: inclusive range the 10.x parser imports

# [ops]: operators marked supported ("Y") in onnx-tensorrt's docs/operators.md (release/10.1-GA).
SUPPORTED_OPS = frozenset(
    """Abs Acos Acosh Add And ArgMax ArgMin Asin Asinh Atan Atanh AveragePool BatchNormalization Cast
    CastLike Ceil Celu Clip Concat Constant ConstantOfShape Conv ConvTranspose Cos Cosh CumSum DeformConv
    DepthToSpace DequantizeLinear Div Dropout Einsum Elu Equal Erf Exp Expand EyeLike Flatten Floor Gather
    GatherElements GatherND Gelu Gemm GlobalAveragePool GlobalLpPool GlobalMaxPool Greater GreaterOrEqual
    GridSample GroupNormalization GRU HardSigmoid HardSwish Hardmax Identity If ImageScaler
    InstanceNormalization IsInf IsNaN LayerNormalization LeakyRelu Less LessOrEqual Log LogSoftmax Loop LRN
    LSTM LpNormalization LpPool MatMul Max MaxPool Mean MeanVarianceNormalization Min Mish Mod Mul Neg
    NonMaxSuppression NonZero Not OneHot Or Pad ParametricSoftplus Pow PRelu QuantizeLinear RandomNormal
    RandomNormalLike RandomUniform RandomUniformLike Range Reciprocal ReduceL1 ReduceL2 ReduceLogSum
    ReduceLogSumExp ReduceMax ReduceMean ReduceMin ReduceProd ReduceSum ReduceSumSquare Relu Reshape Resize
    ReverseSequence RNN RoiAlign Round ScaledTanh Scan Scatter ScatterElements ScatterND Selu Shape Shrink
    Sigmoid Sign Sin Sinh Size Slice Softmax Softplus Softsign SpaceToDepth Split Sqrt Squeeze Sub Sum Tan
    Tanh ThresholdedRelu Tile TopK Transpose Trilu Unsqueeze Upsample Where Xor""".split()  # noqa: SIM905
)

# [resize]: the attribute values the Resize importer accepts.
RESIZE_ALLOWED = {
    "mode": {"nearest", "linear"},
    "coordinate_transformation_mode": {
        "half_pixel",
        "pytorch_half_pixel",
        "tf_half_pixel_for_nn",
        "asymmetric",
        "align_corners",
    },
    "nearest_mode": {"floor", "ceil", "round_prefer_floor", "round_prefer_ceil"},
    "keep_aspect_ratio_policy": {"stretch"},
}
# [ops]: operators whose `axes` (input 1, or the named input) must be an initializer or Constant.
CONSTANT_AXES_INPUT = {"Squeeze": 1, "Unsqueeze": 1, "ReduceMean": 1, "ReduceSum": 1, "ReduceSumSquare": 1}
QDQ = ("QuantizeLinear", "DequantizeLinear")


@dataclass(frozen=True)
class Violation:
    rule: str  # uint8-io | operator | opset | qdq | static-shape
    node: str  # node name, or the tensor/graph the rule is about
    op: str
    message: str

    def __str__(self) -> str:
        return f"node {self.node!r} ({self.op}): {self.message} [{self.rule}]"


@dataclass
class Conformance:
    target: str = TARGET
    violations: list[Violation] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.violations

    def to_dict(self) -> dict[str, Any]:
        return {"target": self.target, "ok": self.ok, "violations": [asdict(v) for v in self.violations]}

    def summary(self) -> str:
        if self.ok:
            return "conforms"
        more = f" (+{len(self.violations) - 1} more)" if len(self.violations) > 1 else ""
        return f"{self.violations[0]}{more}"


def check_file(path: str | Path) -> Conformance:
    return check_model(load_onnx(path))


def load_onnx(path: str | Path) -> onnx.ModelProto:
    """onnx.load, with a file that does not parse as ONNX (truncated, a flipped header) refused as
    ArtifactCorrupt in one line rather than protobuf's DecodeError."""
    try:
        return onnx.load(str(path), load_external_data=False)
    except Exception as e:  # noqa: BLE001 - protobuf's DecodeError and onnx's own errors alike
        raise ArtifactCorrupt(
            f"{Path(path).name} is not a readable ONNX model ({type(e).__name__}): re-export the artifacts"
        ) from None


def check_model(model: onnx.ModelProto) -> Conformance:
    """Every TensorRT import rule this graph breaks (an empty list when it conforms)."""
    model = onnx.shape_inference.infer_shapes(model)
    g = model.graph
    consts = {t.name: t for t in g.initializer}
    for n in g.node:
        if n.op_type == "Constant" and n.output:
            value = next((a.t for a in n.attribute if a.name == "value"), None)
            if value is not None:
                consts[n.output[0]] = value
    out: list[Violation] = []
    out += _opset(model)
    out += _uint8_io(g)
    out += _static_io(g)
    for n in g.node:
        out += _operator(n, consts)
        if n.op_type in QDQ:
            out += _qdq(n, consts)
    return Conformance(violations=out)


def _name(n: onnx.NodeProto) -> str:
    return n.name or f"<{n.op_type} -> {','.join(n.output)}>"


def _elem_types(g: onnx.GraphProto) -> dict[str, int]:
    types = {t.name: t.data_type for t in g.initializer}
    for vi in [*g.input, *g.value_info, *g.output]:
        types[vi.name] = vi.type.tensor_type.elem_type
    return types


def _opset(model: onnx.ModelProto) -> list[Violation]:
    lo, hi = OPSET_RANGE
    return [
        Violation("opset", "graph", "opset_import", f"default-domain opset {o.version} is outside {lo}..{hi}")
        for o in model.opset_import
        if o.domain in ("", "ai.onnx") and not lo <= o.version <= hi
    ]


def _uint8_io(g: onnx.GraphProto) -> list[Violation]:
    """[importer]: UINT8 only as a graph input read by Casts, or a graph output written by a Cast."""
    types = _elem_types(g)
    inputs, outputs = {i.name for i in g.input}, {o.name for o in g.output}
    out = []
    for n in g.node:
        for o in n.output:
            if types.get(o) != TensorProto.UINT8:
                continue
            if o not in outputs:
                out.append(
                    Violation(
                        "uint8-io",
                        _name(n),
                        n.op_type,
                        f"produces UINT8 tensor {o!r} that is not a graph output",
                    )
                )
            elif n.op_type != "Cast":
                out.append(
                    Violation(
                        "uint8-io",
                        _name(n),
                        n.op_type,
                        f"UINT8 graph output {o!r} must come straight from a Cast",
                    )
                )
        for i in n.input:
            if i in inputs and types.get(i) == TensorProto.UINT8 and n.op_type != "Cast":
                out.append(
                    Violation(
                        "uint8-io", _name(n), n.op_type, f"reads UINT8 graph input {i!r}: only a Cast may"
                    )
                )
    return out


def _static_io(g: onnx.GraphProto) -> list[Violation]:
    """[profile]: the batch axis (0) is the only dynamic dimension of a graph input or output."""
    out = []
    for vi in [*g.input, *g.output]:
        dims = vi.type.tensor_type.shape.dim
        for axis, d in enumerate(dims):
            if axis > 0 and not d.HasField("dim_value"):
                out.append(
                    Violation(
                        "static-shape",
                        vi.name,
                        "graph I/O",
                        f"dimension {axis} is dynamic ({d.dim_param or '?'})",
                    )
                )
    return out


def _attr(n: onnx.NodeProto, name: str, default: Any = None) -> Any:
    for a in n.attribute:
        if a.name == name:
            v = onnx.helper.get_attribute_value(a)
            return v.decode() if isinstance(v, bytes) else v
    return default


def _operator(n: onnx.NodeProto, consts: dict[str, TensorProto]) -> list[Violation]:
    """[ops], [resize]: the operator is in the list and its attributes within the restrictions."""
    if n.domain not in ("", "ai.onnx"):
        return [
            Violation("operator", _name(n), n.op_type, f"custom domain {n.domain!r} needs a TensorRT plugin")
        ]
    if n.op_type not in SUPPORTED_OPS:
        return [Violation("operator", _name(n), n.op_type, "not in onnx-tensorrt's supported-operator list")]
    bad = []
    if n.op_type == "Resize":
        defaults = {
            "mode": "nearest",
            "coordinate_transformation_mode": "half_pixel",
            "nearest_mode": "round_prefer_floor",
            "keep_aspect_ratio_policy": "stretch",
        }
        for key, allowed in RESIZE_ALLOWED.items():
            value = _attr(n, key, defaults[key])
            if value not in allowed:
                bad.append(f"{key}={value!r} (TensorRT takes {', '.join(sorted(allowed))})")
        if _attr(n, "antialias", 0):
            bad.append("antialias=1 (not supported)")
    elif n.op_type in ("MaxPool", "AveragePool"):
        if any(d != 1 for d in _attr(n, "dilations", []) or []):
            bad.append("dilations must be empty or all ones")
        if n.op_type == "MaxPool" and len(n.output) > 1 and n.output[1]:
            bad.append("the Indices output is not supported")
    elif n.op_type == "LayerNormalization" and any(n.output[1:]):
        bad.append("only the first output Y is supported")
    elif n.op_type in CONSTANT_AXES_INPUT:
        i = CONSTANT_AXES_INPUT[n.op_type]
        if len(n.input) > i and n.input[i] and n.input[i] not in consts:
            bad.append("`axes` must be an initializer or Constant")
    return [Violation("operator", _name(n), n.op_type, b) for b in bad]


def _qdq(n: onnx.NodeProto, consts: dict[str, TensorProto]) -> list[Violation]:
    """[qdq], [strong]: int8, zero point 0, positive constant scales; per-tensor for activations,
    per-channel on axis 0 only for weights (a DequantizeLinear of an initializer)."""
    out = []

    def bad(msg: str) -> None:
        out.append(Violation("qdq", _name(n), n.op_type, msg))

    scale = consts.get(n.input[1]) if len(n.input) > 1 else None
    if scale is None:
        bad("scale must be an initializer or Constant")
    else:
        s = numpy_helper.to_array(scale)
        if not (s > 0).all():
            bad("scale coefficients must all be positive")
    zp = consts.get(n.input[2]) if len(n.input) > 2 and n.input[2] else None
    if len(n.input) > 2 and n.input[2] and zp is None:
        bad("zero point must be an initializer or Constant")
    if zp is not None:
        if zp.data_type != TensorProto.INT8:
            bad(
                f"quantized type is {TensorProto.DataType.Name(zp.data_type)}; vaegan's TensorRT path is INT8 only"
            )
        if np.any(numpy_helper.to_array(zp) != 0):
            bad("zero point must be all zeros (TensorRT quantizes symmetrically)")
    elif n.op_type == "QuantizeLinear" and _attr(n, "output_dtype", TensorProto.UINT8) != TensorProto.INT8:
        bad("no INT8 zero point: ONNX then quantizes to UINT8, which TensorRT does not take")
    per_channel = scale is not None and numpy_helper.to_array(scale).size > 1
    if per_channel:
        is_weight = n.op_type == "DequantizeLinear" and n.input[0] in consts
        if not is_weight:
            bad("per-channel scales on an activation: TensorRT takes per-tensor activation scales only")
        elif _attr(n, "axis", 1) != 0:
            bad(
                f"per-channel weight scales on axis {_attr(n, 'axis', 1)}: vaegan's rule is axis 0 (output channels)"
            )
    return out
