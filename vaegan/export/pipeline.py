"""`vaegan export`: run dir -> artifact dir, written in a temp dir and renamed into place at the end.

The steps, in order (each a function below):
  write_fp32        ONNX of both graphs, parity against torch
  calibration       real images for the encoder; prior samples and encoded images for the decoder
  write_reduced     fp16 and int8 ONNX, parity against fp32
  write_openvino    IR of every precision (int8 from the same QDQ ONNX)
  score             quality of every decoder on the same latents
  check_conformance TensorRT's import rules on every ONNX
  write_triton      a Triton model repository
TensorRT engines are built last, on top of a complete and valid artifact dir. Every file is run
through the runtime's own runners (vaegan.runtime.backends), so parity is measured on the path that
serves.
"""

from __future__ import annotations

import dataclasses
import datetime
import hashlib
import json
import logging
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from vaegan import __version__
from vaegan.config import ExportOptions
from vaegan.core.errors import ExportError
from vaegan.core.manifest import (
    COMPONENTS,
    IO_NAMES,
    MANIFEST,
    PRECISIONS,
    Artifact,
    Manifest,
    TensorSpec,
    Verified,
    conformance_summary,
    sha256_file,
    tool_versions,
)
from vaegan.core.outdir import Staging, check_out_dir, describe_kept, list_files, resolve_out
from vaegan.export import onnx as onnx_export
from vaegan.export import parity
from vaegan.export import precision as prec
from vaegan.export.conformance import check_file
from vaegan.export.scoring import Scorer, classifier_scorer, drift_scorer
from vaegan.export.user_model import calibration_data, check_modules, check_shape, describe
from vaegan.runtime.backends import Runner, load_runner
from vaegan.trainer import checkpoint as ckpt

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

    @property
    def components(self) -> list[str]:
        return [c for c in COMPONENTS if c in self.graphs]

    def step(self, what: str) -> None:
        log.debug(what)
        self.progress.set_description(what)
        self.progress.update(1)


# ------------------------------------------------------------------------------------ the entry


@dataclasses.dataclass
class Model:
    """What one export needs to know about the model, wherever it came from."""

    decoder: nn.Module
    encoder: nn.Module | None
    latent_dim: int
    image_shape: tuple[int, int, int]  # H, W, C
    output_range: tuple[float, float]
    model: dict[str, Any]  # manifest "model": image shape, latent dim, config
    run: dict[str, Any]  # manifest "run": where the model came from
    key: str  # identifies the model: --out holding another key needs --force
    calibration: np.ndarray | None  # real uint8 images [N, H, W, C]
    validation: np.ndarray | None  # real images the encoder parity is measured on
    scorer: Scorer
    quality_space: str  # which feature space the quality figures are in


def export_model(
    decoder: nn.Module,
    out: str | Path,
    *,
    latent_dim: int,
    image_shape: Sequence[int],
    encoder: nn.Module | None = None,
    output_range: Sequence[float] = (-1.0, 1.0),
    calibration: np.ndarray | str | Path | None = None,
    precisions: tuple[str, ...] | list[str] = PRECISIONS,
    openvino: bool = False,
    triton: bool = False,
    trt: bool = False,
    **options: Any,
) -> Manifest:
    """Export any PyTorch decoder (z [B, latent_dim] -> image [B, C, H, W] in output_range) and
    optional encoder (image -> (mu, logvar)) with vaegan's checks, precisions and manifest.

    calibration: real images as uint8 [N, H, W, C], or a folder of images (subfolders = labels); it
    calibrates int8 and is what quality is measured against, in vaegan's evaluation network trained on
    them (their labels plus a class of blurred, blended and noise images; without labels, real vs
    blur, blend and noise), as `vaegan eval` does; the manifest says which. `options` are ExportOptions fields
    (max_batch, force, strict, quality_n, ...).
    """
    opts = ExportOptions(
        precisions=list(precisions), openvino=openvino, triton=triton, trt=trt, **options
    ).validate()
    shape = check_shape(latent_dim, image_shape, output_range)
    output_range = (float(output_range[0]), float(output_range[1]))
    data = calibration_data(calibration, shape)
    if data is None and "int8" in opts.precisions:
        raise ExportError("int8 needs calibration images: pass calibration= (uint8 [N, H, W, C] or a folder)")
    check_modules(decoder, encoder, latent_dim, shape, output_range, None if data is None else data.images)
    if data is not None:
        scorer, space = classifier_scorer(data)
    else:
        scorer, space = drift_scorer(None)
    described = {
        "decoder": describe(decoder),
        **({"encoder": describe(encoder)} if encoder is not None else {}),
    }
    key = hashlib.sha256(json.dumps(described, sort_keys=True).encode()).hexdigest()[:16]
    images = None if data is None else data.images
    model = Model(
        decoder=decoder,
        encoder=encoder,
        latent_dim=int(latent_dim),
        image_shape=shape,
        output_range=(float(output_range[0]), float(output_range[1])),  # checked by _check_shape
        model={"latent_dim": int(latent_dim), "image_shape": list(shape), "output_range": list(output_range)},
        run={"source": "user modules", "modules": described, "data_key": key, "quality_space": space},
        key=key,
        calibration=images,
        validation=None if images is None else images[:256],
        scorer=scorer,
        quality_space=space,
    )
    return export(model, Path(out), opts)


def export_run(run_dir: str | Path, out: str | Path, opts: ExportOptions | None = None) -> Manifest:
    """`vaegan export RUN`: a run dir's encoder and EMA decoder through export_model's path, scored
    in the classifier space of the run's own labelled data."""
    from vaegan.trainer.evaluate import evaluate_images, reference_data

    opts = dataclasses.replace(opts or ExportOptions()).validate()
    run_dir = Path(run_dir)
    cfg, m = ckpt.load_model(run_dir)
    mc = cfg.model
    ref = reference_data(cfg)

    def scorer(images: np.ndarray) -> dict[str, Any]:
        ev = evaluate_images(images, cfg, ref)
        return dict(ev.metrics) | ({"unavailable": sorted(ev.unavailable)} if ev.unavailable else {})

    shape = (mc.image_size, mc.image_size, mc.channels)
    model = Model(
        decoder=m.decoder,
        encoder=m.encoder,
        latent_dim=int(mc.latent_dim or 0),
        image_shape=shape,
        output_range=(-1.0, 1.0),
        model={**cfg.model.__dict__, "image_shape": list(shape)},
        run={
            "source": "vaegan run",
            "path": str(run_dir),
            "data": cfg.train.data,
            "data_key": cfg.data_key,
            "class_names": cfg.class_names,
            "mode": cfg.train.mode,
            "step": _run_step(run_dir),
            "quality_space": "classifier",
        },
        key=cfg.data_key,
        calibration=ref.train.images,
        validation=ref.val.images,
        scorer=scorer,
        quality_space="classifier",
    )
    return export(model, Path(out), opts)


def export(model: Model, out: Path, opts: ExportOptions) -> Manifest:
    """The one export path: a temp dir beside `out`, every step, then one swap into place that keeps
    whatever the old dir held that vaegan did not write (vaegan.core.outdir)."""
    out = resolve_out(out)
    old = check_out_dir(out, model.key, opts.force)
    staging = Staging(out)
    try:
        manifest = _export_into(staging.path, model, opts)
        kept = staging.commit(old)
    except BaseException:
        staging.discard()
        raise
    if kept:
        log.info("%s", describe_kept(out, kept))
    if opts.trt:
        from vaegan.export.tensorrt import build_engines

        manifest = build_engines(out, manifest, opts.opt_batch, opts.max_batch)
    return manifest


def _export_into(root: Path, model: Model, opts: ExportOptions) -> Manifest:
    from tqdm import tqdm

    components = [c for c in COMPONENTS if c == "decoder" or model.encoder is not None]
    reduced = [p for p in opts.precisions if p != "fp32"]
    n_ir = (1 + len(reduced)) * len(components) if opts.openvino else 0
    total = len(components) * (1 + len(reduced)) + 1 + n_ir + 1 + 1 + int(opts.triton) + 1
    with tqdm(total=total, unit="step", leave=False, disable=not sys.stderr.isatty()) as bar:
        graphs: dict[str, nn.Module] = {
            "decoder": onnx_export.DecoderGraph(model.decoder, model.output_range)
        }
        if model.encoder is not None:
            graphs["encoder"] = onnx_export.EncoderGraph(model.encoder, model.output_range)
        job = Job(
            root=root,
            opts=opts,
            graphs=graphs,
            image_shape=model.image_shape,
            latent_dim=model.latent_dim,
            metadata={"vaegan_version": __version__, "model_config": model.model, "data_key": model.key},
            progress=bar,
        )
        write_fp32(job)
        calib = calibration(job, model.encoder, model.calibration)
        z_eval = np.random.default_rng(opts.seed + 1).standard_normal((opts.quality_n, model.latent_dim))
        z_eval = z_eval.astype(np.float32)
        val = (
            model.validation if model.validation is not None else np.zeros((0, *model.image_shape), np.uint8)
        )
        job.decoded["fp32"] = parity.decode(_runner(job, "decoder", "fp32"), z_eval)
        if "encoder" in graphs and len(val):
            job.mu["fp32"] = parity.encode(_runner(job, "encoder", "fp32"), val)
        write_reduced(job, calib, z_eval, val)
        if opts.openvino:
            write_openvino(job, z_eval, val)
        quality = score(job, model.scorer)
        job.step("checking TensorRT conformance")
        check_conformance(job.artifacts, opts.strict)
        if opts.triton:
            write_triton(job)
        manifest = Manifest(
            model=model.model,
            run=model.run,
            max_batch=opts.max_batch,
            opt_batch=opts.opt_batch,
            artifacts=job.artifacts,
            quality=quality,
            tools=tool_versions(),
            vaegan_version=__version__,
            created=datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        )
        manifest.files = [*list_files(root), MANIFEST]
        manifest.save(root)
        job.step("manifest.json")
    return manifest


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
        runner = _runner(job, comp, "fp32")
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
    """Calibration feeds: real images for the encoder; for the decoder, prior samples mixed half
    and half with the encoder's mu of real images (what the decoder meets when reconstructing), or
    prior samples alone when there is no encoder or no images."""
    job.step("calibration data")
    opts, rng = job.opts, np.random.default_rng(job.opts.seed)
    feeds: dict[str, dict[str, np.ndarray]] = {}
    z = rng.standard_normal((opts.calib_samples, job.latent_dim)).astype(np.float32)
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
                _runner(job, comp, p), comp, z_eval, val, job.decoded["fp32"], job.mu.get("fp32")
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
            runner = load_runner("openvino", Verified.unchecked(xml, xml.with_suffix(".bin")), art, "CPU", 0)
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
def _runner(job: Job, comp: str, precision: str) -> Runner:
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


def _run_step(run_dir: Path) -> int:
    from safetensors import safe_open

    with safe_open(str(run_dir / ckpt.WEIGHTS), "np") as f:
        return int((f.metadata() or {}).get("step", 0))


__all__ = ["MANIFEST", "ExportOptions", "export_model", "export_run"]
