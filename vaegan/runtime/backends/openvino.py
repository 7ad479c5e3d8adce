"""OpenVINO: Intel CPUs, iGPUs and NPUs, from the IR in the artifact dir."""

from __future__ import annotations

import threading
from typing import Any

import numpy as np

from vaegan.core.errors import ArtifactCorrupt, BackendUnavailable
from vaegan.core.manifest import Verified
from vaegan.runtime.backends import Runner, RunnerInfo, first_line


def inference_precision(core, device: str, precision: str) -> str:
    """OpenVINO's INFERENCE_PRECISION_HINT for an IR of `precision` on `device`.

    fp32 IR stays in f32 (OpenVINO's CPU default is bf16 where the CPU has it, a few grey levels
    off). fp16 IR is the half-precision path: bf16 on CPUs with AVX512-bf16 or AMX, f16 on GPUs and
    CPUs with fp16 arithmetic, else f32. int8 IR keeps OpenVINO's choice for its float parts.
    """
    if precision == "fp32":
        return "f32"
    if precision == "int8":
        return ""
    caps = set(core.get_property(device, "OPTIMIZATION_CAPABILITIES")) if device != "AUTO" else set()
    if device.startswith("CPU") and "BF16" in caps:
        return "bf16"
    return "f16" if "FP16" in caps else "f32"


def openvino_module():
    """`import openvino`, or BackendUnavailable saying how to install it. Its telemetry is already off
    (vaegan/__init__.py: importing openvino would otherwise write ~/intel/)."""
    try:
        import openvino as ov
    except ImportError as e:
        raise BackendUnavailable("OpenVINO is not installed: pip install 'vaegan[openvino]'") from e
    return ov


def _spec(port) -> tuple[str, tuple[int | None, ...], str]:
    dims = tuple(d.get_length() if d.is_static else None for d in port.get_partial_shape())
    return port.get_any_name(), dims[1:], np.dtype(port.get_element_type().to_dtype()).name


SPLIT_MIN_BATCH = 16  # from this batch on, run_into splits it across the CPU's throughput streams


class OpenVinoRunner(Runner):
    def __init__(self, source: Verified, artifact, device: str | None, threads: int, hint: str = "LATENCY"):
        ov = openvino_module()
        core = ov.Core()
        dev = (device or "CPU").upper()
        have = core.available_devices
        base = dev.split(":")[0].split(".")[0]
        if base not in ("AUTO", "MULTI", "HETERO") and not any(d.split(".")[0] == base for d in have):
            raise BackendUnavailable(
                f"OpenVINO has no {dev} device here (available: {', '.join(have) or 'none'}): pick --device "
                f"{have[0] if have else 'CPU'}, or install the {base} driver (docs/deploying.md)"
            )
        config: dict[str, Any] = {"PERFORMANCE_HINT": hint}
        if precision_hint := inference_precision(core, dev, artifact.precision):
            config["INFERENCE_PRECISION_HINT"] = precision_hint
        if threads and dev == "CPU":
            config["INFERENCE_NUM_THREADS"] = threads
        if source.weights is None:
            raise ArtifactCorrupt(f"{source.path.name}: an OpenVINO IR needs its verified .bin weights")
        path = source.path
        try:
            model = core.read_model(source.data, ov.Tensor(np.frombuffer(source.weights, np.uint8)))
            self.compiled = core.compile_model(model, dev, config)
        except RuntimeError as e:  # a device that is listed but cannot take this model
            raise BackendUnavailable(
                f"OpenVINO could not compile {path.name} for {dev}: {first_line(e)}"
            ) from e
        self._local = threading.local()  # an infer request per calling thread
        # a large batch on the CPU is split across OpenVINO's throughput streams (one core each); the
        # model for them is compiled on the first such batch
        self._split = dev == "CPU" and hint == "LATENCY"
        self._streams_model: Any = None
        self._streams_lock = threading.Lock()
        self._core, self._model, self._config, self._dev = core, model, config, dev
        self.input_name = self.compiled.inputs[0].get_any_name()
        self.output_names = [o.get_any_name() for o in self.compiled.outputs]
        self.graph_inputs = [_spec(p) for p in self.compiled.inputs]
        self.graph_outputs = [_spec(p) for p in self.compiled.outputs]
        self.info = RunnerInfo(
            "openvino",
            dev,
            artifact.precision,
            artifact.path,
            {"openvino": ov.__version__, "hint": hint, **{k: str(v) for k, v in config.items()}},
        )

    @property
    def request(self):
        req = getattr(self._local, "request", None)
        if req is None:
            req = self._local.request = self.compiled.create_infer_request()
        return req

    # share_inputs: OpenVINO reads the caller's array in place instead of copying it into its own
    # tensor (the call is synchronous, so the array cannot change under it): 320 -> 300 us a batch-1
    # call on the 64x64 decoder, where OpenVINO's own default pays the copy.
    def run(self, x: np.ndarray) -> list[np.ndarray]:
        req = self.request
        req.infer({0: x}, share_inputs=True)
        return [req.get_output_tensor(i).data.copy() for i in range(len(self.output_names))]

    def _stream_requests(self) -> list:
        """An infer request per throughput stream for this thread; [] where there is one stream."""
        reqs = getattr(self._local, "streams", None)
        if reqs is None:
            with self._streams_lock:
                if self._streams_model is None:
                    config = self._config | {"PERFORMANCE_HINT": "THROUGHPUT"}
                    self._streams_model = self._core.compile_model(self._model, self._dev, config)
            n = int(self._streams_model.get_property("NUM_STREAMS"))
            reqs = [self._streams_model.create_infer_request() for _ in range(n)] if n > 1 else []
            self._local.streams = reqs
        return reqs

    def run_into(self, x: np.ndarray, outs: list[np.ndarray]) -> None:
        # One request at batch 64 keeps both cores inside every layer and pays a sync per layer; each
        # stream on its own share of the images does not: 6.5 -> 5.6 ms for the 64x64 int8 decoder on 2
        # cores (docs/benchmarks.md). The same images come out either way (a test checks it).
        if self._split and len(x) >= SPLIT_MIN_BATCH and (reqs := self._stream_requests()):
            bounds = np.linspace(0, len(x), len(reqs) + 1).astype(int)
            parts = list(zip(reqs, bounds[:-1], bounds[1:], strict=True))
            for req, a, b in parts:
                req.start_async({0: x[a:b]}, share_inputs=True)
            for req, a, b in parts:
                req.wait()
                for i, out in enumerate(outs):
                    out[a:b] = req.get_output_tensor(i).data
            return
        req = self.request
        req.infer({0: x}, share_inputs=True)
        for i, out in enumerate(outs):
            out[...] = req.get_output_tensor(i).data
