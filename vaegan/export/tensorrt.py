"""TensorRT engines from the ONNX files, as strongly typed networks.

One code path for TensorRT 10 (JetPack 6) and TensorRT 11: precision comes from the ONNX itself
(fp16 tensors, int8 Q/DQ nodes), so no FP16/INT8 builder flags and no calibrators are used; TensorRT
11 removed both. Engines do not move between GPUs or TensorRT versions: each is tagged with the
version, GPU name and compute capability it was built for, and the runtime refuses a mismatch.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

from vaegan.core.errors import BackendUnavailable, ExportError
from vaegan.core.manifest import Artifact, Manifest, conformance_summary, sha256_file, tool_versions, verify
from vaegan.runtime.backends.tensorrt import gpu_tag

log = logging.getLogger(__name__)


def require_tensorrt():
    """(tensorrt module, GPU tag dict) or BackendUnavailable saying what to install or where to run.

    The GPU and its driver are asked first: without them nothing else matters, and cuda-python
    imports and answers on a machine with no driver, so that answer is tested for real in CI."""
    tag = gpu_tag()
    try:
        import tensorrt as trt
    except ImportError as e:
        raise BackendUnavailable(
            "TensorRT engines need TensorRT 10 or 11: on a Jetson use JetPack 6's TensorRT 10.3 (a venv made "
            "with --system-site-packages); on x86 pip install tensorrt-cu12 or tensorrt-cu13 to match the "
            "driver's CUDA (docs/deploying.md); the ONNX artifacts are ready"
        ) from e
    return trt, tag


def check_conformance(art_dir: Path, artifact: Artifact) -> None:
    """Refuse an ONNX file that breaks TensorRT's import rules before TensorRT sees it.

    The file is checked again here when `onnx` is installed (it is sha256-verified first, so it is
    the file the manifest describes); without `onnx` the export's recorded result is used."""
    path = verify(art_dir, artifact)
    try:
        from vaegan.export.conformance import check_file
    except ImportError:
        result = artifact.conformance
    else:
        result = check_file(path).to_dict()
    if result and not result["ok"]:
        raise ExportError(
            f"{artifact.path} breaks TensorRT's ONNX import rules: {conformance_summary(result)}; re-export it "
            "with this vaegan (`vaegan export RUN --out ART_DIR`)"
        )


@dataclass
class EngineSpec:
    onnx_path: Path
    engine_path: Path
    input_name: str
    input_tail: tuple[int, ...]  # shape without the batch axis
    min_batch: int
    opt_batch: int
    max_batch: int
    workspace_bytes: int = 1 << 30
    timing_cache: Path | None = None


def build_engine(spec: EngineSpec) -> dict:
    """Build and write one engine; return the tags to record in the manifest."""
    trt, tag = require_tensorrt()
    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    network = builder.create_network(1 << int(trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED))
    parser = trt.OnnxParser(network, logger)
    if not parser.parse(spec.onnx_path.read_bytes()):
        errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise ExportError(f"TensorRT could not parse {spec.onnx_path.name}: {errors}")
    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, spec.workspace_bytes)
    profile = builder.create_optimization_profile()
    profile.set_shape(
        spec.input_name,
        (spec.min_batch, *spec.input_tail),
        (spec.opt_batch, *spec.input_tail),
        (spec.max_batch, *spec.input_tail),
    )
    config.add_optimization_profile(profile)
    cache_bytes = spec.timing_cache.read_bytes() if spec.timing_cache and spec.timing_cache.exists() else b""
    cache = config.create_timing_cache(cache_bytes)
    config.set_timing_cache(cache, ignore_mismatch=True)
    serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        raise ExportError(
            f"TensorRT failed to build an engine from {spec.onnx_path.name} (see the log above)"
        )
    from vaegan.core.io import write_bytes

    write_bytes(spec.engine_path, bytes(serialized))
    if spec.timing_cache:
        write_bytes(spec.timing_cache, bytes(config.get_timing_cache().serialize()))
    return {"tensorrt": trt.__version__, **tag, "profile": [spec.min_batch, spec.opt_batch, spec.max_batch]}


def build_engines(out: Path, manifest: Manifest, opt_batch: int, max_batch: int) -> Manifest:
    """Engines for every ONNX artifact of an artifact dir, added to its manifest. Torch-free, so it runs
    on the device that will use the engines. Raises BackendUnavailable without TensorRT or a GPU."""
    onnx_artifacts = [a for a in manifest.artifacts if a.format == "onnx"]
    for a in onnx_artifacts:
        check_conformance(out, a)
    require_tensorrt()
    cache = out / "tensorrt" / "timing.cache"
    manifest.artifacts = [a for a in manifest.artifacts if a.format != "tensorrt"]  # rebuilt, not appended
    for a in onnx_artifacts:
        engine = out / "tensorrt" / f"{a.component}.{a.precision}.plan"
        engine.parent.mkdir(exist_ok=True)
        spec = EngineSpec(
            out / a.path,
            engine,
            a.inputs[0].name,
            tuple(int(d) for d in a.inputs[0].shape[1:]),
            1,
            opt_batch,
            max_batch,
            timing_cache=cache,
        )
        log.info("building TensorRT engine %s", engine.relative_to(out))
        tags = build_engine(spec)
        manifest.artifacts.append(
            Artifact(
                path=str(engine.relative_to(out)),
                component=a.component,
                precision=a.precision,
                format="tensorrt",
                sha256=sha256_file(engine),
                bytes=engine.stat().st_size,
                inputs=a.inputs,
                outputs=a.outputs,
                notes={"engine": tags, "from": a.path},
            )
        )
    manifest.tools = tool_versions()
    manifest.save(out)
    return manifest
