"""ONNX Runtime: the default engine everywhere (CPU, CUDA, TensorRT EP, Jetson wheels)."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from vaegan.errors import BackendUnavailable
from vaegan.runtime.backends import Runner, RunnerInfo

GPU_PROVIDERS = ("TensorrtExecutionProvider", "CUDAExecutionProvider")


def available_providers() -> list[str]:
    import onnxruntime as ort

    return list(ort.get_available_providers())


def pick_provider(device: str | None) -> str:
    avail = available_providers()
    if device in (None, "auto"):
        for p in (*GPU_PROVIDERS, "CPUExecutionProvider"):
            if p in avail:
                return p
    wanted = {
        "cpu": "CPUExecutionProvider",
        "cuda": "CUDAExecutionProvider",
        "tensorrt": "TensorrtExecutionProvider",
    }
    p = wanted.get(str(device).lower(), device)
    if p not in avail:
        raise BackendUnavailable(
            f"ONNX Runtime has no {p} here (available: {', '.join(avail)}): install onnxruntime-gpu for CUDA, "
            "or pick --device cpu"
        )
    return p


class OrtRunner(Runner):
    def __init__(self, path: Path, artifact, device: str | None, threads: int):
        import onnxruntime as ort

        provider = pick_provider(device)
        so = ort.SessionOptions()
        so.log_severity_level = 3
        so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        so.intra_op_num_threads = threads or (os.cpu_count() or 1)
        so.inter_op_num_threads = 1
        so.add_session_config_entry("session.intra_op.allow_spinning", "1")
        providers: list = [provider]
        if provider != "CPUExecutionProvider":
            providers.append("CPUExecutionProvider")
        self.session = ort.InferenceSession(str(path), so, providers=providers)
        self.input_name = self.session.get_inputs()[0].name
        self.output_names = [o.name for o in self.session.get_outputs()]
        self._cpu = provider == "CPUExecutionProvider"
        self._binding = self.session.io_binding()
        self.info = RunnerInfo(
            "ort",
            provider,
            artifact.precision,
            artifact.path,
            {"threads": so.intra_op_num_threads, "onnxruntime": ort.__version__},
        )

    def run(self, x: np.ndarray) -> list[np.ndarray]:
        return self.session.run(self.output_names, {self.input_name: x})

    def run_into(self, x: np.ndarray, outs: list[np.ndarray]) -> None:
        if not self._cpu:  # on GPU, ORT copies device -> host itself
            super().run_into(x, outs)
            return
        # CPU: bind the caller's arrays so ORT writes the result in place, no extra copy
        b = self._binding
        b.clear_binding_inputs()
        b.clear_binding_outputs()
        b.bind_cpu_input(self.input_name, x)
        for name, out in zip(self.output_names, outs, strict=True):
            b.bind_output(name, "cpu", 0, out.dtype, list(out.shape), out.ctypes.data)
        self.session.run_with_iobinding(b)
