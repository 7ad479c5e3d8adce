"""vaegan: train small VAE-GAN image generators and deploy them to the edge.

Importing this package imports nothing heavy: `vaegan.runtime` must stay torch-free.

vaegan is an offline tool for edge devices, so the engines' telemetry is off in its process: ONNX
Runtime (1.2x on Linux writes ~/.cache/Microsoft/DeveloperTools/.onnxruntime/ unless
ORT_DISABLE_TELEMETRY is set, which it reads when loaded) and OpenVINO (`import openvino` writes
~/intel/ and reports usage through the `openvino_telemetry` package; without that package it uses its
own no-op stub). Both are set before either engine can be imported, and a value the user set wins.
"""

import os as _os
import sys as _sys

_os.environ.setdefault("ORT_DISABLE_TELEMETRY", "1")
if _os.environ.get("VAEGAN_OPENVINO_TELEMETRY") != "1":
    _sys.modules.setdefault("openvino_telemetry", None)  # type: ignore[arg-type]

__version__ = "0.1.0"
