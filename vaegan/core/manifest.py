"""manifest.json: what an artifact dir holds, how to check it, how good each precision is.

Torch-free: the runtime loads and verifies manifests on edge devices.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib.metadata
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from vaegan.core.errors import ArtifactCorrupt, ArtifactError, ArtifactMissing

SCHEMA_VERSION = 1
MANIFEST = "manifest.json"
PRECISIONS = ("fp32", "fp16", "int8")
COMPONENTS = ("encoder", "decoder")
# graph input and output names of each component, in every format (ONNX, IR, engine, Triton)
IO_NAMES = {"encoder": (["images"], ["mu", "logvar"]), "decoder": (["z"], ["images"])}


@dataclass
class TensorSpec:
    name: str
    shape: list[int | str]  # "batch" for the dynamic axis
    dtype: str  # numpy dtype name


@dataclass
class Artifact:
    path: str  # relative to the artifact dir
    component: str  # "encoder" | "decoder"
    precision: str  # "fp32" | "fp16" | "int8"
    format: str  # "onnx" | "openvino" | "tensorrt"
    sha256: str
    bytes: int
    inputs: list[TensorSpec]
    outputs: list[TensorSpec]
    parity: dict[str, Any] = field(default_factory=dict)  # vs the torch model (fp32) or vs fp32 (others)
    notes: dict[str, Any] = field(default_factory=dict)  # fp32-kept nodes, calibration, engine tags
    conformance: dict[str, Any] = field(
        default_factory=dict
    )  # ONNX only: TensorRT import rules (ok, violations)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Artifact:
        d = dict(d)
        d["inputs"] = [TensorSpec(**t) for t in d["inputs"]]
        d["outputs"] = [TensorSpec(**t) for t in d["outputs"]]
        return cls(**d)


@dataclass
class Manifest:
    model: dict[str, Any]  # ModelConfig as a dict
    run: dict[str, Any]  # data key, class names, mode, step
    max_batch: int
    opt_batch: int
    artifacts: list[Artifact]
    quality: dict[str, dict[str, Any]] = field(
        default_factory=dict
    )  # precision or "openvino-<precision>" -> metrics, deltas
    tools: dict[str, str] = field(default_factory=dict)
    schema_version: int = SCHEMA_VERSION
    vaegan_version: str = ""
    created: str = ""

    @property
    def latent_dim(self) -> int:
        return int(self.model["latent_dim"])

    @property
    def image_shape(self) -> tuple[int, int, int]:
        s = int(self.model["image_size"])
        return s, s, int(self.model["channels"])

    def find(self, component: str, precision: str, fmt: str) -> Artifact | None:
        for a in self.artifacts:
            if (a.component, a.precision, a.format) == (component, precision, fmt):
                return a
        return None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def save(self, art_dir: Path) -> None:
        from vaegan.core.io import write_json

        write_json(Path(art_dir) / MANIFEST, self.to_dict())

    @classmethod
    def load(cls, art_dir: str | Path) -> Manifest:
        art_dir = Path(art_dir)
        path = art_dir / MANIFEST
        if not art_dir.is_dir():
            raise ArtifactError(f"{art_dir} is not a directory: pass the --out dir of `vaegan export`")
        if not path.exists():
            if (art_dir / "config.json").exists() and (art_dir / "model.safetensors").exists():
                raise ArtifactMissing(
                    f"{art_dir} is a training run dir, not an artifact dir: export it to a new directory "
                    f"with `vaegan export {art_dir} --out artifacts/{art_dir.name}`, then pass that"
                )
            raise ArtifactMissing(
                f"{path} not found: pass the --out dir of `vaegan export RUN_DIR --out ART_DIR`"
            )
        try:
            d = json.loads(path.read_text())
        except (json.JSONDecodeError, UnicodeDecodeError) as e:
            raise ArtifactCorrupt(f"{path} is not valid JSON ({e}): re-export the artifacts") from e
        if not isinstance(d, dict):
            raise ArtifactError(f"{path} is not a vaegan manifest: re-export the artifacts")
        version = d.get("schema_version")
        if not isinstance(version, int):
            raise ArtifactError(f"{path} has no schema_version: it is not a vaegan manifest")
        if version > SCHEMA_VERSION:
            raise ArtifactError(
                f"{path} uses manifest schema {version}, newer than this vaegan reads ({SCHEMA_VERSION}): "
                "upgrade vaegan (pip install -U vaegan) or re-export with this version"
            )
        try:
            if not isinstance(d.get("artifacts"), list):
                raise TypeError("'artifacts' must be a list")
            d["artifacts"] = [Artifact.from_dict(a) for a in d["artifacts"]]
            return cls(**d)
        except (KeyError, TypeError, ValueError, AttributeError) as e:
            raise ArtifactCorrupt(f"{path} is malformed ({e}): re-export the artifacts") from e


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def verify(art_dir: Path, artifact: Artifact) -> Path:
    """The artifact's file, after checking it exists and its sha256 matches the manifest."""
    path = Path(art_dir) / artifact.path
    if not path.is_file():
        raise ArtifactMissing(f"{path} is listed in the manifest but missing: re-export the artifacts")
    digest = sha256_file(path)
    if digest != artifact.sha256:
        raise ArtifactCorrupt(
            f"{path} does not match its sha256 in the manifest (file {digest[:12]}..., manifest "
            f"{artifact.sha256[:12]}...): the file was modified or corrupted; re-export it"
        )
    return path


def tool_versions() -> dict[str, str]:
    from vaegan import __version__

    out = {"vaegan": __version__}
    for dist in (
        "torch",
        "onnx",
        "onnxruntime",
        "onnxruntime-gpu",
        "onnxconverter-common",
        "openvino",
        "tensorrt",
        "tritonclient",
    ):
        with contextlib.suppress(importlib.metadata.PackageNotFoundError):
            out[dist] = importlib.metadata.version(dist)
    return out
