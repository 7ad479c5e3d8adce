"""The steps of one export, in the order pipeline.py runs them, each reading and adding to a Job:
ONNX of both graphs with parity against torch, calibration, fp16 and int8 with parity against fp32,
OpenVINO IR, quality of every decoder, TensorRT's import rules, a Triton repository."""

from __future__ import annotations

import dataclasses
import logging
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from vaegan.config import ExportOptions
from vaegan.core.errors import ExportError
from vaegan.core.manifest import (
    COMPONENTS,
    IO_NAMES,
    Artifact,
    TensorSpec,
    Verified,
    conformance_summary,
    sha256_file,
)
from vaegan.core.prior import LatentPrior
from vaegan.export import onnx as onnx_export
from vaegan.export import parity
from vaegan.export import precision as prec
from vaegan.export.conformance import check_file
from vaegan.export.scoring import Scorer
from vaegan.runtime.backends import Runner, load_runner

log = logging.getLogger(__name__)


@dataclasses.dataclass
class Job:
    """What the steps of one export read and add to."""

    root: Path
    opts: ExportOptions
    graphs: dict[str, nn.Module]  # component -> torch graph with the exported uint8 I/O
    image_shape: tuple[int, int, int]
    latent_dim: int
    metadata: dict[str, Any]
    progress: Any  # a tqdm bar over the steps
    artifacts: list[Artifact] = dataclasses.field(default_factory=list)
    paths: dict[tuple[str, str], Path] = dataclasses.field(default_factory=dict)
    decoded: dict[str, np.ndarray] = dataclasses.field(default_factory=dict)  # quality key -> images
    mu: dict[str, np.ndarray] = dataclasses.field(default_factory=dict)  # "fp32" -> encoder mu on val
    prior: LatentPrior | None = None  # the latents users sample from; None: N(0, I)

    def prior_latents(self, n: int, rng: np.random.Generator) -> np.ndarray:
        """n latents as `vaegan sample` draws them: from the fitted prior, else N(0, I)."""
        if self.prior is not None:
            return self.prior.sample(n, rng)
        return rng.standard_normal((n, self.latent_dim)).astype(np.float32)

    @property
    def components(self) -> list[str]:
        return [c for c in COMPONENTS if c in self.graphs]

    def step(self, what: str) -> None:
        log.debug(what)
        self.progress.set_description(what)
        self.progress.update(1)


# ------------------------------------------------------------------------------------ the steps
def write_fp32(job: Job) -> None:
    """Both graphs as fp32 ONNX, each within one grey level (decoder) of torch at batch 1, 7 and max."""
    examples = {
        "encoder": torch.zeros(2, *job.image_shape, dtype=torch.uint8),
        "decoder": torch.zeros(2, job.latent_dim),
    }
    batches = sorted({1, 7, job.opts.max_batch})
    for comp in job.components:
        path = job.root / f"{comp}.fp32.onnx"
        job.step(f"exporting {path.name}")
        graph = job.graphs[comp].eval()
        rewrites = onnx_export.export_onnx(
            graph, examples[comp], comp, path, {**job.metadata, "component": comp}
        )
        job.paths[(comp, "fp32")] = path
        check_finite(job, comp, "fp32")
        runner = runner_for(job, comp, "fp32")
        result = onnx_export.check_parity(
            graph, runner, path.name, comp, job.image_shape, job.latent_dim, batches, job.opts.seed
        )
        runner.close()
        notes = {"rewrites": rewrites} if rewrites else {}
        job.artifacts.append(_artifact(job.root, path, comp, "fp32", "onnx", result, notes, path))


def check_finite(job: Job, comp: str, precision: str) -> None:
    """A graph whose outputs hold NaN or inf (the model's own, or fp16/int8 overflow) is refused:
    its images would come out black, with a parity of 0 grey levels against a black fp32."""
    rng = np.random.default_rng(job.opts.seed + 2)
    feed: np.ndarray
    if comp == "decoder":
        feed, what = rng.standard_normal((256, job.latent_dim)).astype(np.float32), "256 prior latents"
    else:
        feed, what = rng.integers(0, 256, (64, *job.image_shape), dtype=np.uint8), "64 images"
    share = prec.nonfinite_share(job.paths[(comp, precision)], {IO_NAMES[comp][0][0]: feed})
    if share > 0:
        cause = "the model's own outputs" if precision == "fp32" else f"{precision} overflow"
        raise ExportError(
            f"the {comp}'s {precision} graph gives NaN or inf for {share:.2%} of its outputs on {what} "
            f"({cause}): nothing was written; check the weights"
            + ("" if precision == "fp32" else f", or leave {precision} out of --precision")
        )


def calibration(
    job: Job, encoder: nn.Module | None, images: np.ndarray | None
) -> dict[str, dict[str, np.ndarray]]:
    """Calibration feeds: real images for the encoder; for the decoder, prior samples (half from the
    fitted prior `vaegan sample` draws from, half N(0, I), when there is a fitted prior) mixed half
    and half with the encoder's mu of real images (what the decoder meets when reconstructing), or
    prior samples alone when there is no encoder or no images."""
    job.step("calibration data")
    opts, rng = job.opts, np.random.default_rng(job.opts.seed)
    feeds: dict[str, dict[str, np.ndarray]] = {}
    z = job.prior_latents(opts.calib_samples, rng)
    if job.prior is not None:  # half N(0, I) too: what a client of the decoder's own API may send
        half = opts.calib_samples // 2
        z[:half] = rng.standard_normal((half, job.latent_dim)).astype(np.float32)
    if images is not None and len(images):
        real = images[rng.permutation(len(images))[: min(opts.calib_samples, len(images))]]
        feeds["encoder"] = {"images": real}
        if encoder is not None:
            with torch.no_grad():
                mu = job.graphs["encoder"].eval()(torch.from_numpy(real))[0].numpy().astype(np.float32)
            z = np.concatenate([z[: opts.calib_samples - len(real) // 2], mu[: len(real) // 2]])
            z = z[rng.permutation(len(z))]
    feeds["decoder"] = {"z": z}
    return feeds


def write_reduced(
    job: Job, calib: dict[str, dict[str, np.ndarray]], z_eval: np.ndarray, val: np.ndarray
) -> None:
    """fp16 (with the overflow guard) and int8 QDQ ONNX of both graphs, compared with fp32."""
    opts = job.opts
    for p in opts.precisions:
        if p == "fp32":
            continue
        for comp in job.components:
            src, dst = job.paths[(comp, "fp32")], job.root / f"{comp}.{p}.onnx"
            job.step(f"converting {dst.name}")
            if p == "fp16":
                notes: dict[str, Any] = {
                    "fp32_nodes": prec.convert_fp16(src, dst, {k: v[:64] for k, v in calib[comp].items()})
                }
            else:
                kept = prec.quantize_int8(src, dst, calib[comp], opts.calib_method)
                samples = len(next(iter(calib[comp].values())))
                notes = {
                    "float_nodes": kept,
                    "calibration": {"method": opts.calib_method, "samples": samples},
                }
            job.paths[(comp, p)] = dst
            check_finite(job, comp, p)
            result, images = parity.measure(
                runner_for(job, comp, p), comp, z_eval, val, job.decoded["fp32"], job.mu.get("fp32")
            )
            if images is not None:
                job.decoded[p] = images
            job.artifacts.append(_artifact(job.root, dst, comp, p, "onnx", result, notes, dst))


def write_openvino(job: Job, z_eval: np.ndarray, val: np.ndarray) -> None:
    """OpenVINO IR: fp32 (f32 inference), fp16 (fp16 weights, half-precision inference) and int8
    converted from the same QDQ ONNX that ONNX Runtime and TensorRT run."""
    from vaegan.export import openvino as ov_export

    (job.root / "openvino").mkdir(exist_ok=True)
    for comp in job.components:
        for p in job.opts.precisions:
            xml = job.root / "openvino" / f"{comp}.{p}.xml"
            src = job.paths[(comp, "int8" if p == "int8" else "fp32")]
            job.step(f"converting {xml.relative_to(job.root)}")
            ov_export.export_ir(src, xml, half=p == "fp16")
            notes = {"from": src.name} | (
                {"quantizer": "onnxruntime QDQ, shared with the ONNX int8"} if p == "int8" else {}
            )
            art = _ir_artifact(job.root, xml, comp, p, job.paths[(comp, "fp32")], notes)
            runner = load_runner(
                "openvino", Verified.unchecked(xml, xml.with_suffix(".bin")), art, "CPU", 0, expect=art
            )
            art.parity, images = parity.measure(
                runner, comp, z_eval, val, job.decoded["fp32"], job.mu.get("fp32")
            )
            if images is not None and p != "fp32":
                job.decoded[f"openvino-{p}"] = images
            job.artifacts.append(art)


def score(job: Job, scorer: Scorer) -> dict[str, dict[str, Any]]:
    """FD, precision/recall, coverage of every decoder's images of the same latents; the change from
    fp32, and whether it is within --max-fd-increase (an error under --strict)."""
    job.step("scoring every precision")
    opts, quality = job.opts, dict[str, dict[str, Any]]()
    for p, images in job.decoded.items():
        q: dict[str, Any] = scorer(images) | {"n": len(images)}
        if p != "fp32":
            base = quality["fp32"]
            q |= {f"delta_{k}": q[k] - base[k] for k in ("fd", "coverage", "precision", "recall") if k in q}
            q |= {
                "pixel_" + k: v
                for k, v in parity.compare_uint8(job.decoded["fp32"], images).items()
                if "error" in k
            }
            if "fd" in q:
                q["within_tolerance"] = bool(q["delta_fd"] <= opts.max_fd_increase * max(base["fd"], 1.0))
                if not q["within_tolerance"]:
                    msg = (
                        f"{p} decoder loses quality: FD {q['fd']:.1f} vs fp32 {base['fd']:.1f} "
                        f"(limit +{opts.max_fd_increase:.0%})"
                    )
                    if opts.strict:
                        raise ExportError(msg + "; drop --strict to keep it, or try --calib-method entropy")
                    log.warning("warning: %s", msg)
        quality[p] = q
    return quality


def check_conformance(artifacts: list[Artifact], strict: bool) -> None:
    """Every ONNX file against TensorRT's import rules: a warning, or with --strict an error."""
    for a in artifacts:
        if a.conformance and not a.conformance["ok"]:
            msg = f"{a.path} would not import into TensorRT: {conformance_summary(a.conformance)}"
            if strict:
                raise ExportError(
                    msg + "; `vaegan info` lists every violation once exported without --strict"
                )
            log.warning("warning: %s", msg)


def write_triton(job: Job) -> None:
    from vaegan.export import triton

    job.step("triton/")
    models = {}
    for comp in job.components:
        ins, outs = onnx_export.tensor_specs(job.paths[(comp, "fp32")])
        models[comp] = (job.paths[(comp, "fp32")], "onnx", ins, outs)
    triton.write_repository(job.root / "triton", models, job.opts.max_batch, job.opts.opt_batch)


# ------------------------------------------------------------------------------------ helpers
def runner_for(job: Job, comp: str, precision: str) -> Runner:
    """The runtime's ONNX Runtime runner for a file this export has written."""
    return parity.ort_runner(job.paths[(comp, precision)], precision)


def _artifact(
    root: Path,
    path: Path,
    component: str,
    precision: str,
    fmt: str,
    measured: dict,
    notes: dict,
    specs_from: Path,
) -> Artifact:
    ins, outs = onnx_export.tensor_specs(specs_from)
    return Artifact(
        path=str(path.relative_to(root)),
        component=component,
        precision=precision,
        format=fmt,
        sha256=sha256_file(path),
        bytes=path.stat().st_size,
        inputs=[TensorSpec(**t) for t in ins],
        outputs=[TensorSpec(**t) for t in outs],
        parity=measured,
        notes=notes,
        conformance=check_file(path).to_dict() if fmt == "onnx" else {},
    )


def _ir_artifact(root: Path, xml: Path, comp: str, p: str, onnx_path: Path, notes: dict) -> Artifact:
    """An OpenVINO IR pair: the .xml is the artifact, its .bin's hash rides in notes."""
    bin_path = xml.with_suffix(".bin")
    notes = {**notes, "weights": str(bin_path.relative_to(root)), "weights_sha256": sha256_file(bin_path)}
    return _artifact(root, xml, comp, p, "openvino", {}, notes, onnx_path)
