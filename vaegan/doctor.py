"""`vaegan doctor`: what this machine can run, and which artifacts of an artifact dir load here.

Torch-free, like the runtime: it is meant to be run on the device (a Jetson, an edge box) itself.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import platform
import sys
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from vaegan.core.errors import ArtifactCorrupt, ArtifactMissing, VaeganError


@dataclass
class Check:
    name: str
    ok: bool
    detail: str
    fix: str = ""


@dataclass
class ArtifactCheck:
    path: str
    component: str
    precision: str
    format: str
    loadable: bool
    reason: str = ""
    fix: str = ""
    tensorrt_import: str = ""  # ONNX only: "conforms" or the first broken rule (recorded at export)


@dataclass
class Report:
    machine: list[Check] = field(default_factory=list)
    artifacts: list[ArtifactCheck] = field(default_factory=list)
    usable: list[str] = field(default_factory=list)  # "backend/precision" with a decoder that ran here
    prior: Check | None = None  # the latent prior samples are drawn from, loaded as serve loads it
    art_dir: str | None = None
    error: str | None = None

    @property
    def ok(self) -> bool:
        """What serve and sample would do here: the dir loads, its prior loads, a decoder runs."""
        if self.art_dir is None:
            return True
        return self.error is None and bool(self.usable) and (self.prior is None or self.prior.ok)

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "ok": self.ok}


def _version(dist: str) -> str | None:
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return None


def machine_checks() -> list[Check]:
    out = [
        Check(
            "python",
            sys.version_info >= (3, 10),
            f"{platform.python_version()} on {platform.machine()}",
            "vaegan needs Python >= 3.10 (JetPack 6 ships 3.10)",
        )
    ]
    from vaegan.core.cpu import int8_outlook, isa_summary

    out.append(Check("cpu", True, f"{platform.machine()}: {isa_summary()}; {int8_outlook()}"))
    import numpy as np

    out.append(Check("numpy", True, np.__version__))
    if importlib.util.find_spec("onnxruntime"):
        import onnxruntime as ort

        from vaegan.runtime.backends.ort import GPU_PROVIDERS

        providers = ort.get_available_providers()
        gpu = [p for p in providers if p in GPU_PROVIDERS]
        out.append(Check("onnxruntime", True, f"{ort.__version__}, providers: {', '.join(providers)}"))
        out.append(
            Check(
                "onnxruntime GPU",
                bool(gpu),
                ", ".join(gpu) if gpu else "CPU only",
                ""
                if gpu
                else "for NVIDIA GPUs: pip uninstall onnxruntime && pip install onnxruntime-gpu "
                "(on Jetson: the onnxruntime-gpu wheel for JetPack 6, see docs/deploying.md)",
            )
        )
    else:
        out.append(
            Check("onnxruntime", False, "not installed", "pip install onnxruntime (or onnxruntime-gpu)")
        )
    if importlib.util.find_spec("openvino"):
        from vaegan.runtime.backends.openvino import openvino_module

        ov = openvino_module()

        out.append(
            Check("openvino", True, f"{ov.__version__}, devices: {', '.join(ov.Core().available_devices)}")
        )
    else:
        out.append(
            Check(
                "openvino",
                False,
                "not installed",
                "for Intel CPUs/iGPUs/NPUs: pip install 'vaegan[openvino]'",
            )
        )
    trt_v = None
    if importlib.util.find_spec("tensorrt"):
        try:
            import tensorrt as trt

            trt_v = trt.__version__
        except Exception as e:  # noqa: BLE001 - a broken TensorRT install is a finding, not a crash
            out.append(Check("tensorrt", False, f"installed but fails to import ({e})", "reinstall TensorRT"))
    if trt_v:
        out.append(Check("tensorrt", True, trt_v))
    elif not any(c.name == "tensorrt" for c in out):
        out.append(
            Check(
                "tensorrt",
                False,
                "not installed",
                "x86 + NVIDIA GPU: pip install tensorrt-cu12 (CUDA 12 driver) or tensorrt-cu13 (CUDA 13 driver; "
                "what a bare `pip install tensorrt` resolves to) with the same cuda-python major; Jetson: "
                "JetPack 6's TensorRT 10.3 in a venv made with --system-site-packages",
            )
        )
    cuda = importlib.util.find_spec("cuda") is not None
    out.append(
        Check(
            "cuda-python",
            cuda,
            _version("cuda-python") or ("installed" if cuda else "not installed"),
            ""
            if cuda
            else "TensorRT engines need cuda-python: pip install 'cuda-python>=12.6,<13' on JetPack 6 "
            "(CUDA 12.6); elsewhere the major of the driver's CUDA",
        )
    )
    if cuda:
        from vaegan.runtime.backends.tensorrt import cuda_versions, gpu_tag

        try:
            v = cuda_versions()
            out.append(
                Check(
                    "cuda versions",
                    not v["mismatch"],
                    f"driver {v['driver']}, runtime {v['runtime']} (cuda-python's)",
                    v["mismatch"],
                )
            )
        except VaeganError as e:
            out.append(Check("cuda versions", False, str(e), "check the NVIDIA driver (nvidia-smi)"))
        try:
            tag = gpu_tag()
            out.append(Check("gpu", True, f"{tag['gpu']} (compute capability {tag['compute_capability']})"))
        except VaeganError as e:
            out.append(Check("gpu", False, str(e), "check the NVIDIA driver (nvidia-smi)"))
    else:
        out.append(Check("gpu", False, "no CUDA GPU visible (no cuda-python to ask)", "CPU backends only"))
    torch_v = _version("torch")
    out.append(Check("torch", True, torch_v or "not installed (not needed to run artifacts)"))
    return out


def check_prior(art_dir: Path) -> Check:
    """The prior, read exactly as Sampler.load reads it (sha256, size bounds, every field)."""
    from vaegan.core.manifest import Manifest, read_prior

    m = Manifest.load(art_dir)
    try:
        prior = read_prior(art_dir, m)
    except VaeganError as e:
        return Check("prior", False, str(e), "re-export the artifacts with `vaegan export RUN --out ART_DIR`")
    if prior is None or m.prior is None:
        return Check("prior", True, "N(0, I)")
    return Check("prior", True, f"{m.prior['path']}: {prior.describe()}")


def check_artifacts(art_dir: Path) -> tuple[list[ArtifactCheck], list[str]]:
    import numpy as np

    from vaegan.core.manifest import Manifest, conformance_summary, read_verified
    from vaegan.runtime.backends import BACKEND_OF, load_runner

    m = Manifest.load(art_dir)
    checks, usable = [], []
    for a in m.artifacts:
        c = ArtifactCheck(a.path, a.component, a.precision, a.format, False)
        if a.conformance:
            c.tensorrt_import = conformance_summary(a.conformance)
        try:
            with load_runner(BACKEND_OF[a.format], read_verified(art_dir, a), a, None, 1, expect=a) as runner:
                if a.component == "decoder":  # one image, as serve's first request would
                    (image,) = runner.run(np.zeros((1, m.latent_dim), np.float32))
                    if image.shape != (1, *m.image_shape) or image.dtype != np.uint8:
                        raise ArtifactCorrupt(
                            f"{a.path} gave a {image.dtype} {list(image.shape)} image, the manifest says "
                            f"uint8 {[1, *m.image_shape]}: re-export"
                        )
            c.loadable = True
            if a.component == "decoder":
                usable.append(f"{BACKEND_OF[a.format]}/{a.precision}")
        except VaeganError as e:
            c.reason = str(e)
            c.fix = _fix_for(a.format, e)
        except Exception as e:  # noqa: BLE001 - report any engine failure with its type
            c.reason = f"{type(e).__name__}: {e}"
            c.fix = "re-export the artifact with `vaegan export`"
        checks.append(c)
    return checks, sorted(set(usable))


def _fix_for(fmt: str, error: VaeganError) -> str:
    if isinstance(error, ArtifactMissing | ArtifactCorrupt):
        return "re-export the artifacts with `vaegan export RUN --out ART_DIR`"
    if fmt == "tensorrt":
        return "rebuild the engines on this device: `vaegan engines ART_DIR`"
    if fmt == "openvino":
        return "pip install 'vaegan[openvino]'"
    return "pip install onnxruntime"


def run_doctor(art_dir: str | Path | None = None) -> Report:
    r = Report(machine=machine_checks(), art_dir=str(art_dir) if art_dir else None)
    if art_dir is not None:
        try:
            r.artifacts, r.usable = check_artifacts(Path(art_dir))
            r.prior = check_prior(Path(art_dir))
        except VaeganError as e:
            r.error = str(e)
    return r


def format_report(r: Report) -> str:
    lines = ["This machine:"]
    for c in r.machine:
        mark = "ok " if c.ok else "-- "
        lines.append(
            f"  {mark}{c.name:<16} {c.detail}" + (f"\n       fix: {c.fix}" if c.fix and not c.ok else "")
        )
    if r.art_dir:
        lines.append(f"\nArtifacts in {r.art_dir}:")
        if r.error:
            lines.append(f"  error: {r.error}")
        for a in r.artifacts:
            mark = "ok " if a.loadable else "no "
            line = f"  {mark}{a.path:<32} {a.component:<8} {a.precision:<5} {a.format}"
            if a.tensorrt_import:
                line += f"  (TensorRT import: {a.tensorrt_import})"
            if not a.loadable:
                line += f"\n       why: {a.reason}\n       fix: {a.fix}"
            lines.append(line)
        if r.prior is not None:
            p = r.prior
            lines.append(
                f"  {'ok ' if p.ok else 'no '}{'prior':<32} {p.detail}"
                if p.ok
                else f"  no prior\n       why: {p.detail}\n       fix: {p.fix}"
            )
        lines.append("")
        if r.ok:
            lines.append("Usable here: " + ", ".join(r.usable))
        elif r.usable:
            lines.append(
                "Not usable: the decoders load, but `vaegan serve` and `sample` would refuse the dir (see above)."
            )
        else:
            lines.append("Nothing in this artifact dir can run here (see the fixes above).")
    return "\n".join(lines)
