"""`vaegan export`: run dir -> artifact dir, written in a temp dir and renamed into place at the end.

fp32 ONNX (parity-checked against torch) -> fp16 / int8 ONNX (checked against fp32, scored with the
evaluation metrics) -> optional OpenVINO IR, Triton repository -> manifest.json -> rename.
TensorRT engines are built last, on top of a complete and valid artifact dir.
"""

from __future__ import annotations

import datetime
import logging
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from vaegan import __version__
from vaegan.core.errors import ArtifactError, ExportError
from vaegan.core.manifest import (
    MANIFEST,
    PRECISIONS,
    Artifact,
    Manifest,
    TensorSpec,
    sha256_file,
    tool_versions,
)
from vaegan.export import onnx as onnx_export
from vaegan.export import precision as prec
from vaegan.export.conformance import check_file
from vaegan.trainer import checkpoint as ckpt
from vaegan.trainer.data import to_tensor_range

log = logging.getLogger(__name__)


@dataclass
class ExportOptions:
    precisions: list[str] = field(default_factory=lambda: list(PRECISIONS))
    calib_samples: int = 512
    calib_method: str = "percentile"
    max_batch: int = 64
    opt_batch: int = 8
    trt: bool = False
    openvino: bool = False
    triton: bool = False
    strict: bool = False
    quality_n: int = 1000
    max_fd_increase: float = 0.10  # relative FD increase over fp32 tolerated for fp16/int8
    force: bool = False
    seed: int = 0

    def validate(self) -> ExportOptions:
        bad = [p for p in self.precisions if p not in PRECISIONS]
        if bad or "fp32" not in self.precisions:
            raise ExportError(
                f"--precision takes fp32,fp16,int8 (fp32 always included), got {','.join(self.precisions)}"
            )
        if not 1 <= self.opt_batch <= self.max_batch <= 4096:
            raise ExportError(
                f"need 1 <= --opt-batch ({self.opt_batch}) <= --max-batch ({self.max_batch}) <= 4096"
            )
        if self.calib_samples < 16:
            raise ExportError(f"--calib-samples must be at least 16, got {self.calib_samples}")
        if self.calib_method not in prec.CALIBRATION_METHODS:
            raise ExportError(f"--calib-method must be one of {', '.join(prec.CALIBRATION_METHODS)}")
        return self


def _check_out_dir(out: Path, data_key: str, force: bool) -> None:
    if not out.exists():
        return
    if not out.is_dir():
        raise ExportError(f"{out} exists and is not a directory: choose another --out")
    if not any(out.iterdir()):
        return
    try:
        old = Manifest.load(out)
    except ArtifactError:
        if force:
            return
        raise ExportError(
            f"{out} is not empty and holds no vaegan manifest: choose another --out or pass --force"
        ) from None
    if old.run.get("data_key") != data_key and not force:
        raise ExportError(
            f"{out} holds artifacts of another model (data key {old.run.get('data_key')}): choose another --out "
            "or pass --force to replace them"
        )


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
    conformance = check_file(path).to_dict() if fmt == "onnx" else {}
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
        conformance=conformance,
    )


def _check_conformance(artifacts: list[Artifact], strict: bool) -> None:
    """Every ONNX file against TensorRT's import rules: a warning, or with --strict an error."""
    for a in artifacts:
        if a.conformance and not a.conformance["ok"]:
            first = a.conformance["violations"][0]
            msg = (
                f"{a.path} would not import into TensorRT: node {first['node']!r} ({first['op']}): "
                f"{first['message']} [{first['rule']}]"
                + (
                    f" and {len(a.conformance['violations']) - 1} more"
                    if len(a.conformance["violations"]) > 1
                    else ""
                )
            )
            if strict:
                raise ExportError(
                    msg + "; `vaegan info` lists every violation once exported without --strict"
                )
            log.warning("warning: %s", msg)


def _compare_uint8(a: np.ndarray, b: np.ndarray) -> dict:
    d = np.abs(a.astype(np.int16) - b.astype(np.int16))
    return {
        "vs": "fp32",
        "max_abs_error": int(d.max()),
        "mean_abs_error": float(d.mean()),
        "unit": "grey levels",
    }


def export_run(run_dir: str | Path, out: str | Path, opts: ExportOptions | None = None) -> Manifest:
    opts = (opts or ExportOptions()).validate()
    run_dir, out = Path(run_dir), Path(out)
    cfg, m = ckpt.load_model(run_dir)
    _check_out_dir(out, cfg.data_key, opts.force)
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.tmp-", dir=out.parent))
    except OSError as e:
        raise ExportError(f"cannot write to {out.parent} ({e.strerror}): choose a writable --out") from e
    try:
        manifest = _export_into(tmp, cfg, m, opts, run_dir)
        _replace_dir(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    if opts.trt:
        from vaegan.export.tensorrt import build_engines

        manifest = build_engines(out, manifest, opts.opt_batch, opts.max_batch)
    return manifest


def _replace_dir(tmp: Path, out: Path) -> None:
    """Put the finished temp dir in place; an old artifact dir is swapped out, then removed."""
    old = None
    if out.exists():
        old = out.with_name(f".{out.name}.old-{datetime.datetime.now().strftime('%H%M%S%f')}")
        out.rename(old)
    tmp.rename(out)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def _export_into(root: Path, cfg, m, opts: ExportOptions, run_dir: Path) -> Manifest:
    from vaegan.trainer.evaluate import evaluate_images, reference_data

    mc = cfg.model
    image_shape = (mc.image_size, mc.image_size, mc.channels)
    meta = {"vaegan_version": __version__, "model_config": cfg.model.__dict__, "data_key": cfg.data_key}
    graphs = {
        "encoder": onnx_export.EncoderGraph(m.encoder).eval(),
        "decoder": onnx_export.DecoderGraph(m.decoder).eval(),
    }
    examples = {
        "encoder": torch.zeros(2, *image_shape, dtype=torch.uint8),
        "decoder": torch.zeros(2, mc.latent_dim),
    }
    artifacts: list[Artifact] = []
    paths: dict[tuple[str, str], Path] = {}

    # -- fp32 ONNX, parity against torch
    batches = sorted({1, 7, opts.max_batch})
    for comp, graph in graphs.items():
        path = root / f"{comp}.fp32.onnx"
        log.info("exporting %s", path.name)
        onnx_export.export_onnx(graph, examples[comp], comp, path, {**meta, "component": comp})
        parity = onnx_export.check_parity(graph, path, comp, image_shape, mc.latent_dim, batches, opts.seed)
        artifacts.append(_artifact(root, path, comp, "fp32", "onnx", parity, {}, path))
        paths[(comp, "fp32")] = path

    # -- calibration data: real images for the encoder; prior samples mixed with encoded real images
    ref = reference_data(cfg)
    train, val = ref.train, ref.val
    rng = np.random.default_rng(opts.seed)
    n = min(opts.calib_samples, len(train.images))
    real = train.images[rng.permutation(len(train.images))[:n]]
    with torch.no_grad():
        mu, _ = m.encoder(to_tensor_range(real))
    z_prior = rng.standard_normal((opts.calib_samples - n // 2, mc.latent_dim)).astype(np.float32)
    z_calib = np.concatenate([z_prior, mu.numpy()[: n // 2].astype(np.float32)])
    z_calib = z_calib[rng.permutation(len(z_calib))]
    calib = {"encoder": {"images": real}, "decoder": {"z": z_calib}}

    # -- quality latents (fixed seed): every precision decodes the same ones
    z_eval = (
        np.random.default_rng(opts.seed + 1)
        .standard_normal((opts.quality_n, mc.latent_dim))
        .astype(np.float32)
    )
    decoded = {"fp32": _decode(paths[("decoder", "fp32")], z_eval)}
    mu_fp32 = onnx_export.ort_session(paths[("encoder", "fp32")]).run(None, {"images": val.images})[0]

    for p in opts.precisions:
        if p == "fp32":
            continue
        for comp in ("encoder", "decoder"):
            src, dst = paths[(comp, "fp32")], root / f"{comp}.{p}.onnx"
            log.info("converting %s", dst.name)
            if p == "fp16":
                kept = prec.convert_fp16(src, dst, {k: v[:64] for k, v in calib[comp].items()})
                notes = {"fp32_nodes": kept}
            else:
                kept = prec.quantize_int8(src, dst, calib[comp], opts.calib_method)
                notes = {
                    "float_nodes": kept,
                    "calibration": {
                        "method": opts.calib_method,
                        "samples": len(next(iter(calib[comp].values()))),
                    },
                }
            sess = onnx_export.ort_session(dst)
            if comp == "decoder":
                decoded[p] = _decode(dst, z_eval)
                parity = _compare_uint8(decoded["fp32"], decoded[p])
            else:
                got = sess.run(None, {"images": val.images})[0]
                parity = {
                    "vs": "fp32",
                    "max_abs_error": float(np.abs(got - mu_fp32).max()),
                    "mean_abs_error": float(np.abs(got - mu_fp32).mean()),
                    "unit": "mu",
                }
            artifacts.append(_artifact(root, dst, comp, p, "onnx", parity, notes, dst))
            paths[(comp, p)] = dst

    # -- OpenVINO IR
    if opts.openvino:
        from vaegan.export import openvino as ov_export

        def ir_parity(xml: Path, comp: str, p: str) -> dict:
            if comp == "decoder":
                return _compare_uint8(decoded["fp32"][:256], ov_export.run_ir(xml, z_eval[:256], p)[0])
            got = ov_export.run_ir(xml, val.images, p)[0]
            return {
                "vs": "fp32",
                "max_abs_error": float(np.abs(got - mu_fp32).max()),
                "mean_abs_error": float(np.abs(got - mu_fp32).mean()),
                "unit": "mu",
            }

        for comp in ("encoder", "decoder"):
            xml = root / "openvino" / f"{comp}.fp32.xml"
            xml.parent.mkdir(exist_ok=True)
            log.info("converting %s", xml.relative_to(root))
            ov_export.export_ir(paths[(comp, "fp32")], xml)
            artifacts.append(
                _ir_artifact(root, xml, comp, "fp32", paths[(comp, "fp32")], {}, ir_parity(xml, comp, "fp32"))
            )
            if "fp16" in opts.precisions:
                xml16 = root / "openvino" / f"{comp}.fp16.xml"
                log.info("converting %s (fp16 weights, half-precision inference)", xml16.relative_to(root))
                ov_export.export_ir(paths[(comp, "fp32")], xml16, half=True)
                artifacts.append(
                    _ir_artifact(
                        root, xml16, comp, "fp16", paths[(comp, "fp32")], {}, ir_parity(xml16, comp, "fp16")
                    )
                )
                if comp == "decoder":
                    decoded["openvino-fp16"] = ov_export.run_ir(xml16, z_eval, "fp16")[0]
            if "int8" in opts.precisions:
                xml8 = root / "openvino" / f"{comp}.int8.xml"
                src8 = paths[(comp, "int8")]
                log.info("converting %s from %s (the same QDQ scales)", xml8.relative_to(root), src8.name)
                ov_export.export_ir(src8, xml8)
                artifacts.append(
                    _ir_artifact(
                        root,
                        xml8,
                        comp,
                        "int8",
                        paths[(comp, "fp32")],
                        {"from": src8.name, "quantizer": "onnxruntime QDQ, shared with the ONNX int8"},
                        ir_parity(xml8, comp, "int8"),
                    )
                )
                if comp == "decoder":
                    decoded["openvino-int8"] = ov_export.run_ir(xml8, z_eval, "int8")[0]

    # -- quality per precision (and per OpenVINO half/int8 IR), from the same latents
    quality: dict[str, dict] = {}
    for p, images in decoded.items():
        ev = evaluate_images(images, cfg, ref)
        q = dict(ev.metrics)
        if ev.unavailable:
            q["unavailable"] = sorted(ev.unavailable)
        if p != "fp32":
            q |= {
                f"delta_{k}": q[k] - quality["fp32"][k]
                for k in ("fd", "coverage", "precision", "recall")
                if k in q
            }
            q |= {"pixel_" + k: v for k, v in _compare_uint8(decoded["fp32"], images).items() if "error" in k}
            if "fd" in q:
                limit = opts.max_fd_increase * max(quality["fp32"]["fd"], 1.0)
                q["within_tolerance"] = bool(q["delta_fd"] <= limit)
                if not q["within_tolerance"]:
                    msg = (
                        f"{p} decoder loses quality: FD {q['fd']:.1f} vs fp32 {quality['fp32']['fd']:.1f} "
                        f"(limit +{opts.max_fd_increase:.0%})"
                    )
                    if opts.strict:
                        raise ExportError(msg + "; drop --strict to keep it, or try --calib-method entropy")
                    log.warning("warning: %s", msg)
        quality[p] = q

    _check_conformance(artifacts, opts.strict)

    # -- Triton model repository
    if opts.triton:
        from vaegan.export import triton

        models = {}
        for comp in ("encoder", "decoder"):
            ins, outs = onnx_export.tensor_specs(paths[(comp, "fp32")])
            models[comp] = (paths[(comp, "fp32")], "onnx", ins, outs)
        triton.write_repository(root / "triton", models, opts.max_batch, opts.opt_batch)

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
        artifacts=artifacts,
        quality=quality,
        tools=tool_versions(),
        vaegan_version=__version__,
        created=datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
    )
    manifest.save(root)
    return manifest


def _ir_artifact(
    root: Path, xml: Path, comp: str, p: str, onnx_path: Path, notes: dict, parity: dict
) -> Artifact:
    """An OpenVINO IR pair: the .xml is the artifact, its .bin's hash rides in notes."""
    bin_path = xml.with_suffix(".bin")
    notes = {**notes, "weights": str(bin_path.relative_to(root)), "weights_sha256": sha256_file(bin_path)}
    return _artifact(root, xml, comp, p, "openvino", parity, notes, onnx_path)


def _run_step(run_dir: Path) -> int:
    from safetensors import safe_open

    with safe_open(str(run_dir / ckpt.WEIGHTS), "np") as f:
        return int((f.metadata() or {}).get("step", 0))


def _decode(path: Path, z: np.ndarray, batch: int = 256) -> np.ndarray:
    sess = onnx_export.ort_session(path)
    return np.concatenate([sess.run(None, {"z": z[i : i + batch]})[0] for i in range(0, len(z), batch)])


__all__ = ["MANIFEST", "ExportOptions", "export_run"]
