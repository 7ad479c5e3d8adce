"""`vaegan export`: run dir -> artifact dir, written in a temp dir and renamed into place at the end.

The steps, in order (each a function in steps.py):
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
from torch import nn

from vaegan import __version__
from vaegan.config import ExportOptions
from vaegan.core.errors import ExportError
from vaegan.core.manifest import COMPONENTS, MANIFEST, PRECISIONS, Manifest, sha256_file, tool_versions
from vaegan.core.outdir import Staging, check_out_dir, describe_kept, list_files, resolve_out
from vaegan.core.prior import PRIOR_FILE, LatentPrior
from vaegan.export import onnx as onnx_export
from vaegan.export import parity
from vaegan.export.scoring import Scorer, classifier_scorer, drift_scorer
from vaegan.export.steps import (
    Job,
    calibration,
    check_conformance,
    runner_for,
    score,
    write_fp32,
    write_openvino,
    write_reduced,
    write_triton,
)
from vaegan.export.user_model import calibration_data, check_modules, check_shape, describe
from vaegan.trainer import checkpoint as ckpt

log = logging.getLogger(__name__)


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
    prior: LatentPrior | None = None  # the fitted latent prior samples are drawn from (core/prior.py)


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
    from vaegan.trainer.evaluate import evaluate_images, reference_data, run_prior

    opts = dataclasses.replace(opts or ExportOptions()).validate()
    run_dir = Path(run_dir)
    cfg, m = ckpt.load_model(run_dir)
    mc = cfg.model
    ref = reference_data(cfg)
    prior = run_prior(run_dir, cfg, m, ref)  # fitted now for a run from before priors were

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
        prior=prior,
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
            prior=model.prior,
        )
        write_fp32(job)
        calib = calibration(job, model.encoder, model.calibration)
        z_eval = job.prior_latents(opts.quality_n, np.random.default_rng(opts.seed + 1))
        val = (
            model.validation if model.validation is not None else np.zeros((0, *model.image_shape), np.uint8)
        )
        job.decoded["fp32"] = parity.decode(runner_for(job, "decoder", "fp32"), z_eval)
        if "encoder" in graphs and len(val):
            job.mu["fp32"] = parity.encode(runner_for(job, "encoder", "fp32"), val)
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
        if model.prior is not None:
            model.prior.save(root / PRIOR_FILE)
            manifest.prior = {
                "path": PRIOR_FILE,
                "sha256": sha256_file(root / PRIOR_FILE),
                "components": model.prior.components,
            }
        manifest.files = [*list_files(root), MANIFEST]
        manifest.save(root)
        job.step("manifest.json")
    return manifest


def _run_step(run_dir: Path) -> int:
    from safetensors import safe_open

    with safe_open(str(run_dir / ckpt.WEIGHTS), "np") as f:
        return int((f.metadata() or {}).get("step", 0))


__all__ = ["MANIFEST", "ExportOptions", "export_model", "export_run"]
