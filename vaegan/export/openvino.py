"""OpenVINO IR from the FP32 ONNX, and INT8 IR through NNCF post-training quantization.

FP32 IR is saved uncompressed: OpenVINO runs it in bf16 by itself on CPUs with AMX.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from vaegan.errors import BackendUnavailable

log = logging.getLogger(__name__)


def _ov():
    try:
        import openvino as ov
    except ImportError as e:
        raise BackendUnavailable("--openvino needs OpenVINO: pip install 'vaegan[openvino]'") from e
    return ov


def export_ir(onnx_path: Path, xml_path: Path) -> None:
    ov = _ov()
    model = ov.convert_model(str(onnx_path))
    ov.save_model(model, str(xml_path), compress_to_fp16=False)


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


def run_ir(xml_path: Path, feed: np.ndarray) -> list[np.ndarray]:
    """Outputs of an IR on the CPU for one input array (parity checks)."""
    ov = _ov()
    # f32 hint: on AMX/AVX512-bf16 CPUs OpenVINO would otherwise run fp32 IR in bf16
    compiled = ov.Core().compile_model(str(xml_path), "CPU", {"INFERENCE_PRECISION_HINT": "f32"})
    result = compiled(feed)
    return [result[o] for o in compiled.outputs]
