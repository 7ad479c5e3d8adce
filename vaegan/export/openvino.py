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

from vaegan.core.errors import BackendUnavailable
from vaegan.runtime.backends.openvino import openvino_module

log = logging.getLogger(__name__)


def _ov():
    try:
        return openvino_module()
    except BackendUnavailable as e:
        raise BackendUnavailable("--openvino needs OpenVINO: pip install 'vaegan[openvino]'") from e


def export_ir(onnx_path: Path, xml_path: Path, half: bool = False) -> None:
    ov = _ov()
    model = ov.convert_model(str(onnx_path))
    ov.save_model(model, str(xml_path), compress_to_fp16=half)
