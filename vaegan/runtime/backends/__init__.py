"""Engines behind one small interface: a Runner runs one component (encoder or decoder) of one
precision on one device. Comparing backends is a loop over runners, not a special case."""

from __future__ import annotations

import re
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from vaegan.core.errors import ArtifactCorrupt
from vaegan.core.manifest import BACKEND_FORMATS, Verified

if TYPE_CHECKING:
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
    # what the loaded graph itself declares: (name, dims after the batch axis, None where dynamic, dtype)
    graph_inputs: list[tuple[str, tuple[int | None, ...], str]]
    graph_outputs: list[tuple[str, tuple[int | None, ...], str]]

    @abstractmethod
    def run(self, x: np.ndarray) -> list[np.ndarray]: ...

    def run_into(self, x: np.ndarray, outs: list[np.ndarray]) -> None:
        """Write outputs into preallocated arrays (backends that can bind outputs avoid a copy)."""
        for dst, src in zip(outs, self.run(x), strict=True):
            dst[...] = src

    def close(self) -> None:  # noqa: B027 - optional hook
        pass

    def __enter__(self) -> Runner:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def first_line(e: BaseException) -> str:
    """The cause in an engine's exception text, in one line. OpenVINO's start with a stack of
    "Exception from src/...cpp:105:" and "Check '...' failed at ...": the cause is what follows."""
    lines = [ln.strip() for ln in str(e).splitlines() if ln.strip()]
    causes = [
        ln for ln in lines if not re.match(r"^(Exception from \S+:\d+:?|Check '.*' failed at \S+:\d+:?)$", ln)
    ]
    return " ".join(causes)[:400] if causes else (lines[-1] if lines else type(e).__name__)


@dataclass(frozen=True)
class BackendSpec:
    """Where a backend's runner lives and which artifact format it runs. Engines are imported only
    when a runner is loaded, so a machine without OpenVINO or TensorRT never imports them."""

    format: str
    module: str
    runner: str


_RUNNERS = {"ort": "OrtRunner", "openvino": "OpenVinoRunner", "tensorrt": "TensorRTRunner"}
REGISTRY: dict[str, BackendSpec] = {
    name: BackendSpec(fmt, f"vaegan.runtime.backends.{name}", _RUNNERS[name])
    for name, fmt in BACKEND_FORMATS.items()
}
FORMAT_OF = {name: spec.format for name, spec in REGISTRY.items()}  # backend -> artifact format
BACKEND_OF = {spec.format: name for name, spec in REGISTRY.items()}  # artifact format -> backend


def load_runner(
    backend: str, source: Verified, artifact: Any, device: str | None, threads: int, expect: Any | None
) -> Runner:
    """The runner for one artifact's verified bytes on one backend (ValueError for an unknown backend).

    artifact: what the runner reads of the file (path, precision, notes). expect: the manifest entry
    whose declared inputs and outputs the graph must have (a file in an artifact dir), or None for a
    file vaegan has just written and not yet described."""
    import importlib

    spec = REGISTRY.get(backend)
    if spec is None:
        raise ValueError(f"unknown backend {backend!r}: one of {', '.join(REGISTRY)}")
    runner_cls = getattr(importlib.import_module(spec.module), spec.runner)
    runner = runner_cls(source, artifact, device, threads)
    if expect is not None:
        try:
            check_graph_io(runner, expect, source.path)
        except BaseException:
            runner.close()
            raise
    return runner


def check_graph_io(runner: Runner, artifact: Any, path: Path) -> None:
    """A file whose graph is not what the manifest says (an encoder listed as the decoder, another
    model's file with its own sha256) is refused, naming the tensor."""
    for kind, specs, graph in (
        ("input", artifact.inputs, runner.graph_inputs),
        ("output", artifact.outputs, runner.graph_outputs),
    ):
        want = [(t.name, tuple(d for d in t.shape[1:]), t.dtype) for t in specs]
        got = [(n, dims, dt) for n, dims, dt in graph]
        same = len(want) == len(got) and all(
            wn == gn
            and wd == gd
            and len(ws) == len(gs)
            and all(g is None or g == w for w, g in zip(ws, gs, strict=True))
            for (wn, ws, wd), (gn, gs, gd) in zip(want, got, strict=True)
        )
        if not same:
            raise ArtifactCorrupt(
                f"{path.name} has graph {kind}s {got}, the manifest declares {want} for the {artifact.component}: "
                "the file is not the one the manifest describes; re-export the artifacts"
            )
