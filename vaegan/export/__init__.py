"""Export: ONNX (fp32, fp16, int8 QDQ), OpenVINO IR, TensorRT engines, a Triton model repository and
the manifest that describes them.

    from vaegan.export import export_model      # any PyTorch decoder (and encoder)
    from vaegan.export import export_run        # a run dir written by `vaegan train`

Importing this package imports nothing heavy: `vaegan engines` uses `vaegan.export.tensorrt` on
devices without torch. The two entry points load the exporter (and torch) when first used.
"""

from __future__ import annotations

from typing import Any

__all__ = ["export_model", "export_run"]


def __getattr__(name: str) -> Any:
    if name in __all__:
        from vaegan.export import pipeline

        return getattr(pipeline, name)
    raise AttributeError(name)
