"""A Triton Inference Server model repository: decoder/ and encoder/, dynamic batching.

    <repo>/decoder/config.pbtxt   <repo>/decoder/1/model.onnx (or model.plan)
    <repo>/encoder/config.pbtxt   <repo>/encoder/1/model.onnx

Configs are written as protobuf text of Triton's own ModelConfig (from the tritonclient package) so a
config that Triton would reject cannot be written.
"""

from __future__ import annotations

import shutil
from pathlib import Path

TRITON_DTYPES = {"float32": "TYPE_FP32", "float16": "TYPE_FP16", "uint8": "TYPE_UINT8"}


def model_config_pb2():
    try:
        from tritonclient.grpc import model_config_pb2
    except ImportError as e:
        from vaegan.core.errors import BackendUnavailable

        raise BackendUnavailable("--triton needs tritonclient: pip install 'tritonclient[grpc]'") from e
    return model_config_pb2


def config_text(
    name: str,
    fmt: str,
    inputs: list[dict],
    outputs: list[dict],
    max_batch: int,
    opt_batch: int,
    max_queue_delay_us: int = 2000,
) -> str:
    from google.protobuf import text_format

    pb = model_config_pb2()
    cfg = pb.ModelConfig(name=name, max_batch_size=max_batch)
    if fmt == "tensorrt":
        cfg.platform = "tensorrt_plan"
    else:
        cfg.platform = "onnxruntime_onnx"
    for spec, field in ((inputs, cfg.input), (outputs, cfg.output)):
        for t in spec:
            field.add(
                name=t["name"],
                data_type=pb.DataType.Value(TRITON_DTYPES[t["dtype"]]),
                dims=[int(d) for d in t["shape"][1:]],
            )
    preferred = sorted({b for b in (opt_batch, max_batch) if 1 < b <= max_batch})
    cfg.dynamic_batching.preferred_batch_size.extend(preferred)
    cfg.dynamic_batching.max_queue_delay_microseconds = max_queue_delay_us
    return text_format.MessageToString(cfg)


def parse_config(text: str):
    """Parse config.pbtxt against Triton's ModelConfig schema (raises on unknown fields or bad types)."""
    from google.protobuf import text_format

    return text_format.Parse(text, model_config_pb2().ModelConfig())


def write_repository(
    repo: Path, models: dict[str, tuple[Path, str, list[dict], list[dict]]], max_batch: int, opt_batch: int
) -> list[Path]:
    """models: name -> (model file, format, inputs, outputs). Returns the files written."""
    written = []
    for name, (src, fmt, inputs, outputs) in models.items():
        version = repo / name / "1"
        version.mkdir(parents=True, exist_ok=True)
        dst = version / ("model.plan" if fmt == "tensorrt" else "model.onnx")
        shutil.copyfile(src, dst)
        text = config_text(name, fmt, inputs, outputs, max_batch, opt_batch)
        parse_config(text)
        (repo / name / "config.pbtxt").write_text(text)
        written += [dst, repo / name / "config.pbtxt"]
    return written
