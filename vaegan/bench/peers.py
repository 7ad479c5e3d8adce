"""The engines a bench row runs on, each behind the runtime's Runner interface: vaegan's own runtime
per backend, and the peers people would otherwise use on the same model (a raw ONNX Runtime session,
OpenVINO's defaults, PyTorch eager)."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any

import numpy as np

from vaegan.config import ENGINE_FORMATS
from vaegan.core.errors import BackendUnavailable
from vaegan.core.manifest import Artifact, Manifest, verify
from vaegan.runtime.backends import Runner, RunnerInfo


def _compute_kind(precision: str, ov_hint: str = "") -> str:
    """The peak a row is measured against: int8, or the float type OpenVINO says it computes in
    (its hint reads "bf16" in a config, "<Type: 'bfloat16'>" from a compiled model); else fp32."""
    if precision == "int8":
        return "int8"
    hint = ov_hint.lower()
    if "bf16" in hint or "bfloat16" in hint:
        return "bf16"
    return "fp16" if "f16" in hint or "float16" in hint else "fp32"


class SamplerRunner(Runner):
    """vaegan's own runtime on one backend: Sampler.decode/encode, input checks and chunking included."""

    def __init__(self, sampler: Any, component: str):
        self.sampler, self.component = sampler, component
        self.info = RunnerInfo(**sampler.backend_info[component])

    def run(self, x: np.ndarray) -> list[np.ndarray]:
        out = self.sampler.decode(x) if self.component == "decoder" else self.sampler.encode(x)
        return list(out) if isinstance(out, tuple) else [out]

    def close(self) -> None:
        self.sampler.close()


class RawOrtRunner(Runner):
    """The peer: an ONNX Runtime session with its default options, as most people run a model."""

    def __init__(self, path: Path, artifact: Artifact):
        import onnxruntime as ort

        self.session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        self.input_name = self.session.get_inputs()[0].name
        self.info = RunnerInfo("ort-raw", "CPUExecutionProvider", artifact.precision, artifact.path)

    def run(self, x: np.ndarray) -> list[np.ndarray]:
        return self.session.run(None, {self.input_name: x})


class OpenVinoDefaultRunner(Runner):
    """The peer: OpenVINO's CPU plugin with its own defaults (bf16 for fp32 IR where the CPU has it)."""

    def __init__(self, path: Path, artifact: Artifact):
        from vaegan.runtime.backends.openvino import openvino_module

        compiled = openvino_module().Core().compile_model(str(path), "CPU")
        self.request = compiled.create_infer_request()
        hint = str(compiled.get_property("INFERENCE_PRECISION_HINT"))
        self.info = RunnerInfo("openvino-default", "CPU", artifact.precision, artifact.path, {"hint": hint})

    def run(self, x: np.ndarray) -> list[np.ndarray]:
        return list(self.request.infer({0: x}).values())


class TorchEagerRunner(Runner):
    """The peer: the trained fp32 model in PyTorch eager mode, wrapped in the exported graph's I/O."""

    def __init__(
        self, module: Any, component: str, threads: int, output_range: Any = (-1.0, 1.0), origin: str = ""
    ):
        import torch

        from vaegan.export.onnx import DecoderGraph, EncoderGraph

        if threads:
            torch.set_num_threads(threads)
        graph = DecoderGraph if component == "decoder" else EncoderGraph
        self.graph = graph(module, tuple(output_range)).eval()
        self.info = RunnerInfo("torch-eager", "cpu", "fp32", origin)

    def run(self, x: np.ndarray) -> list[np.ndarray]:
        import torch

        with torch.inference_mode():
            out = self.graph(torch.from_numpy(x))
        return [t.numpy() for t in (out if isinstance(out, tuple) else (out,))]


def make_runner(
    engine: str,
    art_dir: Path,
    m: Manifest,
    precision: str,
    component: str,
    threads: int,
    modules: dict[str, Any] | None = None,
    run_dir: str | Path | None = None,
) -> tuple[Runner, str] | str:
    """(runner, the precision it computes in), or why the engine is skipped.

    The compute precision is what the row's peak fraction is measured against: ONNX Runtime's CPU
    kernels run fp16 models in fp32; OpenVINO reports its own choice (bf16 for fp32 IR by default
    on CPUs that have it).
    """
    fmt = ENGINE_FORMATS[engine]
    try:
        if engine == "torch-eager":
            if importlib.util.find_spec("torch") is None:
                return "torch is not installed"
            if precision != "fp32":
                return "PyTorch eager runs the fp32 model only"
            output_range = m.model.get("output_range", (-1.0, 1.0))
            if modules and modules.get(component) is not None:
                return TorchEagerRunner(
                    modules[component], component, threads, output_range, "given modules"
                ), "fp32"
            if m.run.get("source") == "user modules":
                return "exported from user modules: PyTorch eager runs only when they are given (run_bench(modules=...))"
            run = Path(run_dir if run_dir is not None else m.run.get("path", ""))
            if not (run / "model.safetensors").exists():
                return f"the run dir {run} is not here (pass --run-dir)"
            from vaegan.trainer.checkpoint import load_model

            _, model = load_model(run)
            return TorchEagerRunner(
                getattr(model, component), component, threads, output_range, str(run)
            ), "fp32"
        art = m.find(component, precision, fmt)
        if art is None:
            return f"no {precision} {fmt} {component} in the artifact dir"
        path = verify(art_dir, art)
        if engine.startswith("vaegan-"):
            from vaegan.runtime import Sampler

            s = Sampler.load(
                art_dir,
                backend=engine.removeprefix("vaegan-"),
                precision=precision,
                threads=threads,
                max_n=10**6,
            )
            runner: Runner = SamplerRunner(s, component)
            return runner, _compute_kind(precision, runner.info.details.get("INFERENCE_PRECISION_HINT", ""))
        if engine == "ort-raw":
            return RawOrtRunner(path, art), _compute_kind(precision)
        runner = OpenVinoDefaultRunner(path, art)
        return runner, _compute_kind(precision, runner.info.details["hint"])
    except BackendUnavailable as e:
        return str(e)
