"""Engines behind one small interface: a Runner runs one component (encoder or decoder) of one
precision on one device. Comparing backends is a loop over runners, not a special case."""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np


@dataclass
class RunnerInfo:
    backend: str  # "ort" | "openvino" | "tensorrt"
    device: str  # provider or device name, e.g. "CPUExecutionProvider", "CPU", "NVIDIA Orin"
    precision: str
    artifact: str
    details: dict[str, Any] = field(default_factory=dict)


class Runner(ABC):
    """One loaded model. `run` takes the single input array and returns the outputs in graph order.

    Runners are safe to call from several threads at once (a Sampler shared by a web app's
    workers): state that one call mutates is per thread, or behind a lock where the engine has one
    set of device buffers.
    """

    info: RunnerInfo
    input_name: str
    output_names: list[str]

    @abstractmethod
    def run(self, x: np.ndarray) -> list[np.ndarray]: ...

    def run_into(self, x: np.ndarray, outs: list[np.ndarray]) -> None:
        """Write outputs into preallocated arrays (backends that can bind outputs avoid a copy)."""
        for dst, src in zip(outs, self.run(x), strict=True):
            dst[...] = src

    def close(self) -> None:  # noqa: B027 - optional hook
        pass


@dataclass(frozen=True)
class BackendSpec:
    """Where a backend's runner lives and which artifact format it runs. Engines are imported only
    when a runner is loaded, so a machine without OpenVINO or TensorRT never imports them."""

    format: str
    module: str
    runner: str


REGISTRY: dict[str, BackendSpec] = {
    "ort": BackendSpec("onnx", "vaegan.runtime.backends.ort", "OrtRunner"),
    "openvino": BackendSpec("openvino", "vaegan.runtime.backends.openvino", "OpenVinoRunner"),
    "tensorrt": BackendSpec("tensorrt", "vaegan.runtime.backends.tensorrt", "TensorRTRunner"),
}
FORMAT_OF = {name: spec.format for name, spec in REGISTRY.items()}  # backend -> artifact format
BACKEND_OF = {spec.format: name for name, spec in REGISTRY.items()}  # artifact format -> backend


def load_runner(backend: str, path: Path, artifact, device: str | None, threads: int) -> Runner:
    """The runner for one artifact file on one backend (ValueError for an unknown backend)."""
    import importlib

    spec = REGISTRY.get(backend)
    if spec is None:
        raise ValueError(f"unknown backend {backend!r}: one of {', '.join(REGISTRY)}")
    runner_cls = getattr(importlib.import_module(spec.module), spec.runner)
    return runner_cls(path, artifact, device, threads)
