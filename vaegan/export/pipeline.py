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
import logging
import shutil
import sys
import tempfile
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import torch
from torch import nn

from vaegan import __version__
from vaegan.config import ExportOptions, RunConfig
from vaegan.core.errors import ArtifactError, ExportError
from vaegan.core.manifest import (
    COMPONENTS,
    MANIFEST,
    Artifact,
    Manifest,
    TensorSpec,
    Verified,
    sha256_file,
    tool_versions,
)
from vaegan.export import onnx as onnx_export
from vaegan.export import precision as prec
from vaegan.export.conformance import check_file
from vaegan.runtime.backends import Runner, load_runner
from vaegan.trainer import checkpoint as ckpt
from vaegan.trainer.data import to_tensor_range

log = logging.getLogger(__name__)
EVAL_CHUNK = 256  # rows per engine call when scoring


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

    def step(self, what: str) -> None:
        log.debug(what)
        self.progress.set_description(what)
        self.progress.update(1)


# ------------------------------------------------------------------------------------ the entry
def export_run(run_dir: str | Path, out: str | Path, opts: ExportOptions | None = None) -> Manifest:
    opts = dataclasses.replace(opts or ExportOptions()).validate()
    run_dir, out = Path(run_dir), Path(out)
    cfg, m = ckpt.load_model(run_dir)
    check_out_dir(out, cfg.data_key, opts.force)
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.tmp-", dir=out.parent))
    except OSError as e:
        raise ExportError(f"cannot write to {out.parent} ({e.strerror}): choose a writable --out") from e
    try:
        manifest = _export_into(tmp, cfg, m, opts, run_dir)
        replace_dir(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    if opts.trt:
        from vaegan.export.tensorrt import build_engines

        manifest = build_engines(out, manifest, opts.opt_batch, opts.max_batch)
    return manifest


def _export_into(root: Path, cfg: RunConfig, m: Any, opts: ExportOptions, run_dir: Path) -> Manifest:
    from tqdm import tqdm

    from vaegan.trainer.evaluate import reference_data

    mc = cfg.model
    reduced = [p for p in opts.precisions if p != "fp32"]
    n_ir = (1 + len(reduced)) * 2 if opts.openvino else 0
    total = 2 + 1 + 2 * len(reduced) + n_ir + 1 + 1 + int(opts.triton)
    with tqdm(total=total, unit="step", leave=False, disable=not sys.stderr.isatty()) as bar:
        job = Job(
            root=root,
            opts=opts,
            graphs={
                "encoder": onnx_export.EncoderGraph(m.encoder),
                "decoder": onnx_export.DecoderGraph(m.decoder),
            },
            image_shape=(mc.image_size, mc.image_size, mc.channels),
            latent_dim=mc.latent_dim,
            metadata={
                "vaegan_version": __version__,
                "model_config": cfg.model.__dict__,
                "data_key": cfg.data_key,
            },
            progress=bar,
        )
        write_fp32(job)
        ref = reference_data(cfg)
        calib = calibration(job, m.encoder, ref.train.images)
        z_eval = np.random.default_rng(opts.seed + 1).standard_normal((opts.quality_n, mc.latent_dim))
        z_eval = z_eval.astype(np.float32)
        val = ref.val.images
        job.decoded["fp32"] = _decode(_runner(job, "decoder", "fp32"), z_eval)
        job.mu["fp32"] = _encode(_runner(job, "encoder", "fp32"), val)
        write_reduced(job, calib, z_eval, val)
        if opts.openvino:
            write_openvino(job, z_eval, val)
        quality = score(job, cfg, ref)
        job.step("checking TensorRT conformance")
        check_conformance(job.artifacts, opts.strict)
        if opts.triton:
            write_triton(job)
        manifest = Manifest(
            model=dict(cfg.model.__dict__),
            run={
                "path": str(run_dir),
                "data": cfg.train.data,
                "data_key": cfg.data_key,
                "class_names": cfg.class_names,
                "mode": cfg.train.mode,
                "step": _run_step(run_dir),
            },
            max_batch=opts.max_batch,
            opt_batch=opts.opt_batch,
            artifacts=job.artifacts,
            quality=quality,
            tools=tool_versions(),
            vaegan_version=__version__,
            created=datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        )
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
    for comp in COMPONENTS:
        path = job.root / f"{comp}.fp32.onnx"
        job.step(f"exporting {path.name}")
        graph = job.graphs[comp].eval()
        onnx_export.export_onnx(graph, examples[comp], comp, path, {**job.metadata, "component": comp})
        job.paths[(comp, "fp32")] = path
        runner = _runner(job, comp, "fp32")
        parity = onnx_export.check_parity(
            graph, runner, path.name, comp, job.image_shape, job.latent_dim, batches, job.opts.seed
        )
        runner.close()
        job.artifacts.append(_artifact(job.root, path, comp, "fp32", "onnx", parity, {}, path))


def calibration(job: Job, encoder: nn.Module, images: np.ndarray) -> dict[str, dict[str, np.ndarray]]:
    """Calibration feeds: real images for the encoder; for the decoder, prior samples mixed half
    and half with the encoder's mu of real images (what the decoder meets when reconstructing)."""
    job.step("calibration data")
    opts, rng = job.opts, np.random.default_rng(job.opts.seed)
    n = min(opts.calib_samples, len(images))
    real = images[rng.permutation(len(images))[:n]]
    with torch.no_grad():
        mu, _ = encoder.eval()(to_tensor_range(real))
    z_prior = rng.standard_normal((opts.calib_samples - n // 2, job.latent_dim)).astype(np.float32)
    z = np.concatenate([z_prior, mu.numpy()[: n // 2].astype(np.float32)])
    return {"encoder": {"images": real}, "decoder": {"z": z[rng.permutation(len(z))]}}


def write_reduced(
    job: Job, calib: dict[str, dict[str, np.ndarray]], z_eval: np.ndarray, val: np.ndarray
) -> None:
    """fp16 (with the overflow guard) and int8 QDQ ONNX of both graphs, compared with fp32."""
    opts = job.opts
    for p in opts.precisions:
        if p == "fp32":
            continue
        for comp in COMPONENTS:
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
            parity = _parity(job, _runner(job, comp, p), comp, p, z_eval, val)
            job.artifacts.append(_artifact(job.root, dst, comp, p, "onnx", parity, notes, dst))


def write_openvino(job: Job, z_eval: np.ndarray, val: np.ndarray) -> None:
    """OpenVINO IR: fp32 (f32 inference), fp16 (fp16 weights, half-precision inference) and int8
    converted from the same QDQ ONNX that ONNX Runtime and TensorRT run."""
    from vaegan.export import openvino as ov_export

    (job.root / "openvino").mkdir(exist_ok=True)
    for comp in COMPONENTS:
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
            art.parity = _parity(job, runner, comp, f"openvino-{p}", z_eval, val, keep=p != "fp32")
            job.artifacts.append(art)


def score(job: Job, cfg: RunConfig, ref: Any) -> dict[str, dict[str, Any]]:
    """FD, precision/recall, coverage of every decoder's images of the same latents; the change from
    fp32, and whether it is within --max-fd-increase (an error under --strict)."""
    from vaegan.trainer.evaluate import evaluate_images

    job.step("scoring every precision")
    opts, quality = job.opts, dict[str, dict[str, Any]]()
    for p, images in job.decoded.items():
        ev = evaluate_images(images, cfg, ref)
        q: dict[str, Any] = dict(ev.metrics)
        if ev.unavailable:
            q["unavailable"] = sorted(ev.unavailable)
        if p != "fp32":
            base = quality["fp32"]
            q |= {f"delta_{k}": q[k] - base[k] for k in ("fd", "coverage", "precision", "recall") if k in q}
            q |= {
                "pixel_" + k: v
                for k, v in _compare_uint8(job.decoded["fp32"], images).items()
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
            v = a.conformance["violations"]
            more = f" and {len(v) - 1} more" if len(v) > 1 else ""
            msg = (
                f"{a.path} would not import into TensorRT: node {v[0]['node']!r} ({v[0]['op']}): "
                f"{v[0]['message']} [{v[0]['rule']}]{more}"
            )
            if strict:
                raise ExportError(
                    msg + "; `vaegan info` lists every violation once exported without --strict"
                )
            log.warning("warning: %s", msg)


def write_triton(job: Job) -> None:
    from vaegan.export import triton

    job.step("triton/")
    models = {}
    for comp in COMPONENTS:
        ins, outs = onnx_export.tensor_specs(job.paths[(comp, "fp32")])
        models[comp] = (job.paths[(comp, "fp32")], "onnx", ins, outs)
    triton.write_repository(job.root / "triton", models, job.opts.max_batch, job.opts.opt_batch)


# ------------------------------------------------------------------------- the output directory
def check_out_dir(out: Path, data_key: str, force: bool) -> None:
    """--out may be new, empty, or an earlier vaegan export; --force only ever replaces the last."""
    if not out.exists():
        return
    if not out.is_dir():
        raise ExportError(f"{out} exists and is not a directory: choose another --out")
    if not any(out.iterdir()):
        return
    try:
        old = Manifest.load(out)
    except ArtifactError:
        raise ExportError(
            f"{out} is not empty and is not a vaegan artifact dir (no valid manifest.json): choose another --out; "
            "--force replaces only an earlier vaegan export and never deletes anything else"
        ) from None
    if old.run.get("data_key") != data_key and not force:
        raise ExportError(
            f"{out} holds artifacts of another model (data key {old.run.get('data_key')}): choose another --out "
            "or pass --force to replace them"
        )


def replace_dir(tmp: Path, out: Path) -> None:
    """Put the finished temp dir in place; an old artifact dir is swapped out, then removed.

    Between the two renames `out` does not exist for an instant; a reader then gets "not found" and
    never a mix of old and new files. Leftovers of exports that were killed (.NAME.tmp-*, .NAME.old-*)
    are removed once a new export is in place.
    """
    old = None
    if out.exists():
        old = out.with_name(f".{out.name}.old-{datetime.datetime.now().strftime('%H%M%S%f')}")
        out.rename(old)
    tmp.rename(out)
    for stale in out.parent.glob(f".{out.name}.*"):
        if stale.is_dir() and (
            stale.name.startswith(f".{out.name}.old-") or stale.name.startswith(f".{out.name}.tmp-")
        ):
            shutil.rmtree(stale, ignore_errors=True)


# ------------------------------------------------------------------------------------ helpers
def _runner(job: Job, comp: str, precision: str) -> Runner:
    """The runtime's ONNX Runtime runner on the CPU for one exported file: what `vaegan sample` runs."""
    path = job.paths[(comp, precision)]
    return load_runner(
        "ort", Verified.unchecked(path), SimpleNamespace(path=path.name, precision=precision), "cpu", 0
    )


def _decode(runner: Runner, z: np.ndarray) -> np.ndarray:
    return np.concatenate([runner.run(z[i : i + EVAL_CHUNK])[0] for i in range(0, len(z), EVAL_CHUNK)])


def _encode(runner: Runner, images: np.ndarray) -> np.ndarray:
    return np.concatenate(
        [runner.run(images[i : i + EVAL_CHUNK])[0] for i in range(0, len(images), EVAL_CHUNK)]
    )


def _parity(
    job: Job, runner: Runner, comp: str, key: str, z_eval: np.ndarray, val: np.ndarray, keep: bool = True
) -> dict[str, Any]:
    """A reduced-precision (or IR) file against fp32: grey levels for the decoder, mu for the encoder.
    The decoder's images are kept under `key` for scoring when `keep`."""
    try:
        if comp == "decoder":
            images = _decode(runner, z_eval)
            if keep:
                job.decoded[key] = images
            return _compare_uint8(job.decoded["fp32"], images)
        d = np.abs(_encode(runner, val) - job.mu["fp32"])
        return {
            "vs": "fp32",
            "max_abs_error": float(d.max()),
            "mean_abs_error": float(d.mean()),
            "unit": "mu",
        }
    finally:
        runner.close()


def _compare_uint8(a: np.ndarray, b: np.ndarray) -> dict[str, Any]:
    d = np.abs(a.astype(np.int16) - b.astype(np.int16))
    return {
        "vs": "fp32",
        "max_abs_error": int(d.max()),
        "mean_abs_error": float(d.mean()),
        "unit": "grey levels",
    }


def _artifact(
    root: Path,
    path: Path,
    component: str,
    precision: str,
    fmt: str,
    parity: dict,
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
        parity=parity,
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


__all__ = ["MANIFEST", "ExportOptions", "export_run"]
