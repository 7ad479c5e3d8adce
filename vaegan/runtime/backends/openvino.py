"""OpenVINO: Intel CPUs, iGPUs and NPUs, from the IR in the artifact dir."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from vaegan.errors import BackendUnavailable
from vaegan.runtime.backends import Runner, RunnerInfo


def openvino_module():
    try:
        import openvino as ov
    except ImportError as e:
        raise BackendUnavailable("OpenVINO is not installed: pip install 'vaegan[openvino]'") from e
    return ov


class OpenVinoRunner(Runner):
    def __init__(self, path: Path, artifact, device: str | None, threads: int, hint: str = "LATENCY"):
        ov = openvino_module()
        core = ov.Core()
        dev = (device or "CPU").upper()
        if dev in ("AUTO", "CPU") and "CPU" not in core.available_devices:
            raise BackendUnavailable(f"OpenVINO sees no CPU device (has {core.available_devices})")
        config = {"PERFORMANCE_HINT": hint}
        if artifact.precision == "fp32" and dev == "CPU":
            # keep fp32 IR in fp32: OpenVINO would pick bf16 on AMX CPUs and drift by a few grey levels
            config["INFERENCE_PRECISION_HINT"] = "f32"
        if threads and dev == "CPU":
            config["INFERENCE_NUM_THREADS"] = threads
        self.compiled = core.compile_model(str(path), dev, config)
        self.request = self.compiled.create_infer_request()
        self.input_name = self.compiled.inputs[0].get_any_name()
        self.output_names = [o.get_any_name() for o in self.compiled.outputs]
        self.info = RunnerInfo(
            "openvino",
            dev,
            artifact.precision,
            artifact.path,
            {"openvino": ov.__version__, "hint": hint, **{k: str(v) for k, v in config.items()}},
        )

    def run(self, x: np.ndarray) -> list[np.ndarray]:
        self.request.infer({0: x})
        return [self.request.get_output_tensor(i).data.copy() for i in range(len(self.output_names))]

    def run_into(self, x: np.ndarray, outs: list[np.ndarray]) -> None:
        self.request.infer({0: x})
        for i, out in enumerate(outs):
            out[...] = self.request.get_output_tensor(i).data
