"""OpenVINO IR from the ONNX files.

FP32 IR is saved uncompressed and run in f32. FP16 IR has fp16 weights and runs in half precision
(bf16 on CPUs with AVX512-bf16 or AMX, f16 on GPUs): the same graph, OpenVINO's fast CPU path.
INT8 IR is converted from the same QDQ `*.int8.onnx` that ONNX Runtime and TensorRT run: OpenVINO
reads the QuantizeLinear/DequantizeLinear pairs and fuses them into int8 kernels, so one
quantization (one set of scales) gives the same numbers on every engine. A second quantization with
NNCF was measured faster (3.87 vs 4.41 ms at batch 64) but +11.5% FD against fp32, so it is not used.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from vaegan.core.errors import BackendUnavailable
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


def run_ir(xml_path: Path, feed: np.ndarray, precision: str) -> list[np.ndarray]:
    """Outputs of an IR on the CPU for one input array, compiled as the runtime compiles it."""
    ov = _ov()
    core = ov.Core()
    hint = inference_precision(core, "CPU", precision)
    compiled = core.compile_model(str(xml_path), "CPU", {"INFERENCE_PRECISION_HINT": hint} if hint else {})
    result = compiled(feed)
    return [result[o] for o in compiled.outputs]
