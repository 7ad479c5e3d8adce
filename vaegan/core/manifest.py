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

from vaegan.core.contract import contract
from vaegan.core.errors import ArtifactCorrupt, ArtifactError, ArtifactMissing

SCHEMA_VERSION = 2  # 2: an optional fitted latent prior (prior.npz)
MANIFEST = "manifest.json"
PRECISIONS = ("fp32", "fp16", "int8")
COMPONENTS = ("encoder", "decoder")
# graph input and output names of each component, in every format (ONNX, IR, engine, Triton)
IO_NAMES = {"encoder": (["images"], ["mu", "logvar"]), "decoder": (["z"], ["images"])}

# the runtime's backends and the artifact format each runs; runtime.backends.REGISTRY and bench's
# vaegan-* engines are built from this one table
BACKEND_FORMATS = {"ort": "onnx", "openvino": "openvino", "tensorrt": "tensorrt"}
FORMATS = tuple(BACKEND_FORMATS.values())

_TENSOR = {
    "type": "object",
    "additionalProperties": False,
    "required": ["name", "shape", "dtype"],
    "properties": {
        "name": {"type": "string", "minLength": 1},
        "shape": {
            "type": "array",
            "items": {"anyOf": [{"type": "integer", "minimum": 1}, {"const": "batch"}]},
        },
        "dtype": {"enum": ["float32", "float16", "uint8", "int8"]},
    },
}
# The manifest's shape, checked with jsonschema before any field is used: a manifest is read from
# disk and may have been edited by hand, copied half-way or written by something else.
SCHEMA: dict[str, Any] = {
    "type": "object",
    "additionalProperties": False,  # a key vaegan does not know is refused by name, not half-read
    "required": ["schema_version", "model", "run", "max_batch", "opt_batch", "artifacts"],
    "properties": {
        "schema_version": {"type": "integer", "minimum": 1},
        "model": {
            "type": "object",
            "required": ["latent_dim"],
            "anyOf": [{"required": ["image_shape"]}, {"required": ["image_size", "channels"]}],
            "properties": {
                "image_shape": {  # H, W, C; any model (vaegan.export.export_model)
                    "type": "array",
                    "prefixItems": [
                        {"type": "integer", "minimum": 4, "maximum": 4096},
                        {"type": "integer", "minimum": 4, "maximum": 4096},
                        {"enum": [1, 3, 4]},
                    ],
                    "minItems": 3,
                    "maxItems": 3,
                },
                "image_size": {"enum": [16, 32, 64, 128]},  # vaegan's own square models
                "channels": {"enum": [1, 3]},
                "latent_dim": {"type": "integer", "minimum": 1, "maximum": 4096},
            },
        },
        "run": {"type": "object"},
        "max_batch": {"type": "integer", "minimum": 1, "maximum": 65536},
        "opt_batch": {"type": "integer", "minimum": 1, "maximum": 65536},
        "artifacts": {
            "type": "array",
            "minItems": 1,
            "items": {
                "type": "object",
                "additionalProperties": False,
                "required": [
                    "path",
                    "component",
                    "precision",
                    "format",
                    "sha256",
                    "bytes",
                    "inputs",
                    "outputs",
                ],
                "properties": {
                    "path": {"type": "string", "minLength": 1},
                    "component": {"enum": list(COMPONENTS)},
                    "precision": {"enum": list(PRECISIONS)},
                    "format": {"enum": list(FORMATS)},
                    "sha256": {"type": "string", "pattern": "^[0-9a-f]{64}$"},
                    "bytes": {"type": "integer", "minimum": 0},
                    "inputs": {"type": "array", "items": _TENSOR},
                    "outputs": {"type": "array", "items": _TENSOR},
                    "parity": {"type": "object"},
                    "notes": {"type": "object"},
                    "conformance": {"type": "object"},
                },
            },
        },
        "quality": {"type": "object", "additionalProperties": {"type": "object"}},
        "tools": {"type": "object"},
        "files": {"type": "array", "items": {"type": "string"}},  # every file the export wrote
        # the latent prior samples are drawn from (core/prior.py); absent: N(0, I)
        "prior": {
            "type": "object",
            "additionalProperties": False,
            "required": ["path", "sha256", "components"],
            "properties": {
                "path": {"type": "string"},
                "sha256": {"type": "string", "pattern": "^[0-9a-f]{64}$"},
                "components": {"type": "integer", "minimum": 1, "maximum": 4096},
            },
        },
        "vaegan_version": {"type": "string"},
        "created": {"type": "string"},
    },
}


def conformance_summary(record: dict[str, Any]) -> str:
    """One phrase for a conformance record (vaegan.export.conformance's to_dict): "conforms", or the
    first TensorRT import rule broken, e.g. "node 'x' (Transpose): ... [uint8-io] (+1 more)"."""
    if record.get("ok"):
        return "conforms"
    v = record["violations"]
    more = f" (+{len(v) - 1} more)" if len(v) > 1 else ""
    return f"node {v[0]['node']!r} ({v[0]['op']}): {v[0]['message']} [{v[0]['rule']}]{more}"


def image_shape_of(model: dict[str, Any]) -> tuple[int, int, int]:
    """(H, W, C) of a manifest's model: its image_shape, or a vaegan model's square image_size."""
    if "image_shape" in model:
        h, w, c = model["image_shape"]
        return int(h), int(w), int(c)
    s = int(model["image_size"])
    return s, s, int(model["channels"])


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
    files: list[str] = field(default_factory=list)  # every file the export wrote, relative
    prior: dict[str, Any] | None = None  # {path, sha256, components} of the fitted latent prior
    schema_version: int = SCHEMA_VERSION
    vaegan_version: str = ""
    created: str = ""

    @property
    def latent_dim(self) -> int:
        return int(self.model["latent_dim"])

    @property
    def image_shape(self) -> tuple[int, int, int]:
        return image_shape_of(self.model)

    def find(self, component: str, precision: str, fmt: str) -> Artifact | None:
        for a in self.artifacts:
            if (a.component, a.precision, a.format) == (component, precision, fmt):
                return a
        return None

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        if d["prior"] is None:  # optional in the schema: absent, not null
            del d["prior"]
        return d

    def save(self, art_dir: Path) -> None:
        from vaegan.core.io import write_json

        write_json(Path(art_dir) / MANIFEST, self.to_dict())

    @classmethod
    def load(cls, art_dir: str | Path) -> Manifest:
        art_dir = Path(art_dir)
        path = art_dir / MANIFEST
        if "\0" in str(art_dir):
            raise ArtifactError(f"{str(art_dir)!r} is not a usable path: it contains a NUL byte")
        try:
            is_dir = art_dir.is_dir()
        except (ValueError, OSError) as e:  # a name too long, say
            raise ArtifactError(f"{str(art_dir)!r} is not a usable path ({e})") from None
        if not is_dir:
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
        if not path.is_file():
            raise ArtifactCorrupt(f"{path} is not a file: re-export the artifacts")
        try:
            d = json.loads(path.read_text())
        except (json.JSONDecodeError, UnicodeDecodeError) as e:
            raise ArtifactCorrupt(f"{path} is not valid JSON ({e}): re-export the artifacts") from e
        except RecursionError:
            raise ArtifactCorrupt(
                f"{path} is JSON nested too deeply for a manifest: re-export the artifacts"
            ) from None
        except OSError as e:
            raise ArtifactError(f"cannot read {path} ({e.strerror}): check its permissions") from None
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
        _validate(d, path)
        if "prior" in d and version < 2:
            raise ArtifactCorrupt(
                f"{path}: a prior needs manifest schema 2, this manifest says {version}: re-export the artifacts"
            )
        d["artifacts"] = [Artifact.from_dict(a) for a in d["artifacts"]]
        return cls(**d)


def _where(error: Any) -> str:
    """A jsonschema error's field as a path, e.g. artifacts[3].sha256."""
    out = ""
    for part in error.absolute_path:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out or "the top level"


def _validate(d: dict[str, Any], path: Path) -> None:
    """The schema, then what a schema cannot say: opt <= max batch, each artifact's declared I/O is
    its component's contract, and no two artifacts claim the same slot."""
    import jsonschema

    error = jsonschema.exceptions.best_match(jsonschema.Draft202012Validator(SCHEMA).iter_errors(d))
    if error is not None:
        raise ArtifactCorrupt(f"{path}: {_where(error)} is wrong ({error.message}): re-export the artifacts")
    if d["opt_batch"] > d["max_batch"]:
        raise ArtifactCorrupt(
            f"{path}: opt_batch {d['opt_batch']} is above max_batch {d['max_batch']}: re-export"
        )
    m = d["model"]
    image_shape = image_shape_of(m)
    if (
        "image_size" in m
        and "image_shape" in m
        and (m["image_size"], m["image_size"], m["channels"]) != image_shape
    ):
        raise ArtifactCorrupt(
            f"{path}: model.image_size {m['image_size']} and model.channels {m['channels']} disagree with "
            f"model.image_shape {list(image_shape)}: the manifest was edited; re-export the artifacts"
        )
    seen = set()
    for i, a in enumerate(d["artifacts"]):
        ins, outs = contract(a["component"], m["latent_dim"], image_shape)
        for field_name, want in (("inputs", ins), ("outputs", outs)):
            got = [{k: t[k] for k in ("name", "shape", "dtype")} for t in a[field_name]]
            if got != want:
                raise ArtifactCorrupt(
                    f"{path}: artifacts[{i}].{field_name} of {a['path']} are {got}, but a {a['component']} of this "
                    f"model ({m['latent_dim']} latents, {image_shape[0]}x{image_shape[1]}x{image_shape[2]} images) "
                    f"has {want}: the manifest does not describe this model; re-export"
                )
        slot = (a["component"], a["precision"], a["format"])
        if slot in seen:
            raise ArtifactCorrupt(
                f"{path}: artifacts[{i}] is a second {' '.join(slot)}: re-export the artifacts"
            )
        seen.add(slot)


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def resolve_inside(art_dir: Path, rel: Any, what: str) -> Path:
    """`art_dir / rel`, refused unless it resolves (symbolic links followed) inside art_dir."""
    if not isinstance(rel, str) or not rel or Path(rel).is_absolute():
        raise ArtifactCorrupt(
            f"{art_dir}/{MANIFEST}: {what} {rel!r} is not a relative path inside the artifact dir"
        )
    root = Path(art_dir).resolve()
    path = (root / rel).resolve()
    if not path.is_relative_to(root):
        raise ArtifactCorrupt(
            f"{art_dir}/{MANIFEST}: {what} {rel!r} leads outside the artifact dir (to {path}): vaegan loads only "
            "files inside it; re-export the artifacts"
        )
    return path


@dataclass(frozen=True)
class Verified:
    """An artifact's bytes, read once and matched against the manifest's sha256: the engine loads
    exactly these bytes, never the file again (which could have changed since)."""

    path: Path
    data: bytes
    weights: bytes | None = None  # OpenVINO's .bin, verified the same way

    @classmethod
    def unchecked(cls, path: Path, weights: Path | None = None) -> Verified:
        """For files vaegan has just written itself (the export measuring them)."""
        return cls(path, path.read_bytes(), weights.read_bytes() if weights else None)


def _read_checked(
    art_dir: Path, rel: Any, sha: Any, what: str, max_bytes: int | None = None, max_bytes_why: str = ""
) -> tuple[Path, bytes]:
    path = resolve_inside(art_dir, rel, what)
    if not path.is_file():
        raise ArtifactMissing(f"{path} is listed in the manifest but missing: re-export the artifacts")
    if max_bytes is not None and path.stat().st_size > max_bytes:
        raise ArtifactCorrupt(
            f"{path} is {path.stat().st_size:,} bytes, more than its manifest entry describes "
            f"({max_bytes:,}{max_bytes_why}): re-export the artifacts"
        )
    data = path.read_bytes()
    digest = hashlib.sha256(data).hexdigest()
    if digest != sha:
        raise ArtifactCorrupt(
            f"{path} does not match its sha256 in the manifest (file {digest[:12]}..., manifest "
            f"{str(sha)[:12]}...): the file was modified or corrupted; re-export it"
        )
    return path, data


def read_verified(art_dir: Path, artifact: Artifact) -> Verified:
    """The artifact's bytes (and an OpenVINO IR's weights), inside the dir and matching the manifest.

    OpenVINO reads the weights next to the .xml, so the manifest's weights entry must be exactly
    that file: a manifest pointing the hash at another copy is refused."""
    path, data = _read_checked(art_dir, artifact.path, artifact.sha256, "path")
    if artifact.format != "openvino":
        return Verified(path, data)
    rel = artifact.notes.get("weights")
    expected = str(Path(artifact.path).with_suffix(".bin"))
    if rel != expected:
        raise ArtifactCorrupt(
            f"{art_dir}/{MANIFEST}: the weights of {artifact.path} must be {expected} (the file OpenVINO loads), "
            f"the manifest says {rel!r}: re-export the artifacts"
        )
    _, weights = _read_checked(art_dir, rel, artifact.notes.get("weights_sha256"), "weights")
    return Verified(path, data, weights)


def read_prior(art_dir: Path, m: Manifest) -> Any:
    """The artifact dir's latent prior (core.prior.LatentPrior), its bytes matched against the
    manifest; None when the manifest has none (samples are then drawn from N(0, I))."""
    if not m.prior:
        return None
    from vaegan.core.prior import LatentPrior

    k, d = m.prior["components"], m.latent_dim
    most = 8 * k * (d * d + d + 2) + 4 * 256 * k + 65536  # its arrays stored uncompressed, with headers
    why = f" for {k} components over {d} latents"
    path, data = _read_checked(art_dir, m.prior["path"], m.prior["sha256"], "prior", most, why)
    return LatentPrior.from_bytes(data, str(path), components=m.prior["components"], latent_dim=m.latent_dim)


def verify(art_dir: Path, artifact: Artifact) -> Path:
    """The artifact's file, after the checks of read_verified."""
    return read_verified(art_dir, artifact).path


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
