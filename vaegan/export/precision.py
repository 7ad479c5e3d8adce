"""FP16 and INT8 (QDQ) versions of the FP32 ONNX graphs.

FP16: onnxconverter-common with fp32 I/O. The uint8 pre/post-processing stays fp32 (rounding to a
grey level needs more than fp16's 11 bits near 255), and an overflow guard runs the fp16 model on
calibration inputs and keeps every node in fp32 whose output is inf/NaN or far from fp32's.

INT8: ONNX Runtime static quantization in the QDQ form TensorRT's explicit quantization accepts:
symmetric int8 activations and weights (7-bit range, see `quantize_int8`), per-channel weights,
bias left in float. The same file feeds ONNX Runtime, OpenVINO and TensorRT.
"""

from __future__ import annotations

import contextlib
import io
import logging
import tempfile
import warnings
from pathlib import Path

import numpy as np
import onnx

log = logging.getLogger(__name__)


def io_nodes(model: onnx.ModelProto) -> list[str]:
    """Pre-processing nodes before the first Conv/Gemm and post-processing nodes after the last Tanh."""
    nodes = list(model.graph.node)
    compute = [i for i, n in enumerate(nodes) if n.op_type in ("Conv", "Gemm", "MatMul")]
    tanh = [i for i, n in enumerate(nodes) if n.op_type == "Tanh"]
    out = []
    if compute:
        out += [n.name for n in nodes[: compute[0]]]
    if tanh:
        out += [n.name for n in nodes[tanh[-1] :]]
    return out


def _with_all_outputs(model: onnx.ModelProto) -> tuple[onnx.ModelProto, list[str]]:
    """A copy whose graph outputs include every float intermediate tensor (for the overflow guard)."""
    inferred = onnx.shape_inference.infer_shapes(model)
    floats = {
        vi.name: vi
        for vi in inferred.graph.value_info
        if vi.type.tensor_type.elem_type in (onnx.TensorProto.FLOAT, onnx.TensorProto.FLOAT16)
    }
    m = onnx.ModelProto()
    m.CopyFrom(inferred)
    existing = {o.name for o in m.graph.output}
    names = []
    for n in m.graph.node:
        for o in n.output:
            if o in floats and o not in existing:
                m.graph.output.append(floats[o])
                names.append(o)
    return m, names


def _run(model: onnx.ModelProto, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.log_severity_level = 3
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL  # keep tensors observable
    sess = ort.InferenceSession(model.SerializeToString(), so, providers=["CPUExecutionProvider"])
    names = [o.name for o in sess.get_outputs()]
    return dict(zip(names, sess.run(names, feeds), strict=True))


def nonfinite_share(path: Path, feeds: dict[str, np.ndarray]) -> float:
    """The share of NaN/inf among a graph's float outputs on `feeds`, counting for a uint8 output the
    float tensor its final Cast reads (a cast hides NaN as a black pixel)."""
    model = onnx.load(str(path))
    uint8_out = {o.name for o in model.graph.output if o.type.tensor_type.elem_type == onnx.TensorProto.UINT8}
    watch = [
        n.input[0] for n in model.graph.node if n.op_type == "Cast" and n.output and n.output[0] in uint8_out
    ]
    existing = {o.name for o in model.graph.output}
    typed = {vi.name: vi for vi in onnx.shape_inference.infer_shapes(model).graph.value_info}
    for name in watch:
        if name not in existing:
            elem = typed[name].type.tensor_type.elem_type if name in typed else onnx.TensorProto.FLOAT
            model.graph.output.append(onnx.helper.make_tensor_value_info(name, elem, None))
    got = _run(model, feeds)
    floats = [v for v in got.values() if np.issubdtype(v.dtype, np.floating)]
    total = sum(v.size for v in floats)
    return float(sum(int((~np.isfinite(v)).sum()) for v in floats) / max(total, 1))


def convert_fp16(
    src: Path, dst: Path, calib_feeds: dict[str, np.ndarray], rel_tol: float = 0.05, max_rounds: int = 4
) -> list[str]:
    """Write an fp16 model with fp32 I/O; return the names of the nodes kept in fp32."""
    from onnxconverter_common import float16

    from vaegan.core.io import write_bytes

    fp32 = onnx.load(str(src))
    keep = set(io_nodes(fp32))
    probe32, names = _with_all_outputs(fp32)
    ref = _run(probe32, calib_feeds)
    producer = {o: n.name for n in fp32.graph.node for o in n.output}
    for _ in range(max_rounds):
        with warnings.catch_warnings(record=True) as caught:  # "will be truncated": shown with -v
            warnings.simplefilter("always")
            fp16 = float16.convert_float_to_float16(
                fp32, keep_io_types=True, node_block_list=sorted(keep), disable_shape_infer=False
            )
        for w in caught:
            log.debug("onnxconverter-common: %s", w.message)
        probe16, _ = _with_all_outputs(fp16)
        got = _run(probe16, calib_feeds)
        bad = set()
        for name in names:
            if name not in got or producer.get(name) in keep:
                continue
            a, b = ref[name].astype(np.float32), got[name].astype(np.float32)
            if not np.isfinite(b).all() or np.abs(a - b).max() > rel_tol * max(1.0, float(np.abs(a).max())):
                bad.add(producer[name])
        if not bad:
            break
        log.info("fp16 overflow guard: keeping %s in fp32", ", ".join(sorted(bad)))
        keep |= bad
    write_bytes(dst, fp16.SerializeToString())
    return sorted(keep)


class _Reader:
    """onnxruntime.quantization CalibrationDataReader over a list of feed dicts."""

    def __init__(self, feeds: list[dict[str, np.ndarray]]):
        self._it = iter(feeds)

    def get_next(self):
        return next(self._it, None)

    def rewind(self):
        pass


def quantize_int8(
    src: Path, dst: Path, calib: dict[str, np.ndarray], method: str = "percentile", batch: int = 32
) -> list[str]:
    """Static QDQ int8; returns the nodes left in float (pre/post-processing)."""
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    from vaegan.core.io import write_bytes

    methods = {
        "minmax": CalibrationMethod.MinMax,
        "entropy": CalibrationMethod.Entropy,
        "percentile": CalibrationMethod.Percentile,
    }
    if method not in methods:
        raise ValueError(f"calibration method must be one of {', '.join(methods)}, got {method!r}")
    ((name, data),) = calib.items()
    if len(data) > batch and len(data) % batch:
        # ONNX Runtime's calibrators stack every batch's tensors into one array, so a short last batch
        # fails ("inhomogeneous shape"); it is filled up with the first images instead (min/max are
        # unchanged by repeats, histograms barely)
        data = np.concatenate([data, data[: batch - len(data) % batch]])
    feeds = [{name: data[i : i + batch]} for i in range(0, len(data), batch)]
    exclude = io_nodes(onnx.load(str(src)))
    with tempfile.TemporaryDirectory() as tmp:
        pre, out = Path(tmp) / "pre.onnx", Path(tmp) / "q.onnx"
        quant_pre_process(str(src), str(pre), skip_symbolic_shape=True)
        exclude = sorted(set(exclude) & {n.name for n in onnx.load(str(pre)).graph.node}) or exclude
        with contextlib.redirect_stdout(io.StringIO()):  # the calibrator prints its histogram settings
            quantize_static(
                str(pre),
                str(out),
                _Reader(feeds),
                quant_format=QuantFormat.QDQ,
                activation_type=QuantType.QInt8,
                weight_type=QuantType.QInt8,
                per_channel=True,
                # 7-bit weights: x86 CPUs without VNNI (AVX2 only) multiply u8 x s8 with VPMADDUBSW,
                # which saturates at int16; ONNX Runtime and OpenVINO then both miss the graph's own
                # arithmetic (measured: 3.3 grey levels mean error against 0.9 for the exact QDQ math).
                # With weights in [-64, 63] no pair can saturate, every engine computes what the Q/DQ
                # nodes say (0.94), and TensorRT still sees plain symmetric int8.
                reduce_range=True,
                calibrate_method=methods[method],
                nodes_to_exclude=exclude,
                op_types_to_quantize=["Conv", "Gemm", "MatMul", "Resize", "LeakyRelu", "Relu"],
                extra_options={
                    "ActivationSymmetric": True,
                    "WeightSymmetric": True,
                    "QuantizeBias": False,
                    "CalibPercentile": 99.99,
                    "CalibMovingAverage": False,
                },
            )
        model = onnx.load(str(out))
    onnx.checker.check_model(model)
    write_bytes(dst, model.SerializeToString())
    return exclude
