"""OpenVINO IR from the FP32 ONNX, and INT8 IR through NNCF post-training quantization.

FP32 IR is saved uncompressed and run in f32. FP16 IR has fp16 weights and runs in half precision
(bf16 on CPUs with AVX512-bf16 or AMX, f16 on GPUs): the same graph, OpenVINO's fast CPU path.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from vaegan.errors import BackendUnavailable
from vaegan.runtime.backends.openvino import inference_precision

log = logging.getLogger(__name__)


def _ov():
    try:
        import openvino as ov
    except ImportError as e:
        raise BackendUnavailable("--openvino needs OpenVINO: pip install 'vaegan[openvino]'") from e
    return ov


def export_ir(onnx_path: Path, xml_path: Path, half: bool = False) -> None:
    ov = _ov()
    model = ov.convert_model(str(onnx_path))
    ov.save_model(model, str(xml_path), compress_to_fp16=half)


def quantize_ir(onnx_path: Path, xml_path: Path, calib: np.ndarray, batch: int = 32) -> None:
    ov = _ov()
    try:
        import nncf
    except ImportError as e:
        raise BackendUnavailable("OpenVINO INT8 needs NNCF: pip install nncf") from e
    model = ov.convert_model(str(onnx_path))
    items = [calib[i : i + batch] for i in range(0, len(calib), batch)]
    # pre/post-processing (uint8 casts, rounding) stays in float, as in the ONNX INT8 model
    ignored = nncf.IgnoredScope(types=["Round", "Clamp", "Convert"], validate=False)
    logging.getLogger("nncf").setLevel(logging.WARNING)
    q = nncf.quantize(
        model,
        nncf.Dataset(items),
        subset_size=len(items),
        preset=nncf.QuantizationPreset.PERFORMANCE,
        ignored_scope=ignored,
    )
    ov.save_model(q, str(xml_path), compress_to_fp16=False)


def run_ir(xml_path: Path, feed: np.ndarray, precision: str) -> list[np.ndarray]:
    """Outputs of an IR on the CPU for one input array, compiled as the runtime compiles it."""
    ov = _ov()
    core = ov.Core()
    hint = inference_precision(core, "CPU", precision)
    compiled = core.compile_model(str(xml_path), "CPU", {"INFERENCE_PRECISION_HINT": hint} if hint else {})
    result = compiled(feed)
    return [result[o] for o in compiled.outputs]
