"""`vaegan info`: an artifact dir's manifest as text: the model and where it came from, every
artifact with its parity and TensorRT conformance, graph rewrites, quality per precision, tools."""

from __future__ import annotations

from pathlib import Path

from vaegan.core.errors import VaeganError
from vaegan.core.manifest import Manifest, conformance_summary, read_prior
from vaegan.core.text import text_table


def _prior_line(m: Manifest, art_dir: Path) -> str:
    """The prior as it loads (as `serve` would load it), never as the manifest alone describes it."""
    if not m.prior:
        return "N(0, I)"
    try:
        prior = read_prior(art_dir, m)
    except VaeganError as e:
        return f"nothing: {m.prior['path']} does not load ({e})"
    return f"{prior.describe()}, over the training images' latents ({m.prior['path']})"


def format_manifest(m: Manifest, art_dir: Path) -> str:
    """The text `vaegan info` (and `vaegan export`, at its end) prints."""
    out: list[str] = []
    h, w, c = m.image_shape
    if m.run.get("source") == "user modules":
        mods = m.run.get("modules", {})
        origin = (
            "exported from user modules (" + ", ".join(f"{k} {v['class']}" for k, v in mods.items()) + ")"
        )
    else:
        origin = f"trained {m.run.get('mode')} for {m.run.get('step')} steps on {m.run.get('data')}"
    out.append(
        f"{art_dir}: {h}x{w}x{c} images, z={m.latent_dim}, {origin}; batch 1..{m.max_batch} (opt {m.opt_batch})"
    )
    if m.run.get("quality_space"):
        out.append(f"quality measured in: {m.run['quality_space']}")
    out.append(f"samples drawn from: {_prior_line(m, art_dir)}")
    rows: list[tuple] = [
        (
            "artifact",
            "component",
            "precision",
            "format",
            "size",
            "parity (max err)",
            "TensorRT import",
            "sha256",
        )
    ]
    broken = []
    for a in m.artifacts:
        par = a.parity.get("max_abs_error")
        par_s = "" if par is None else f"{par:.3g} {a.parity.get('unit', '')} vs {a.parity.get('vs')}"
        trt = ""
        if a.conformance:
            trt = "conforms" if a.conformance["ok"] else f"{len(a.conformance['violations'])} violation(s)"
            if not a.conformance["ok"]:
                broken.append(f"  {a.path}: {conformance_summary(a.conformance)}")
        elif a.format == "onnx":
            trt = "not checked"
        rows.append(
            (
                a.path,
                a.component,
                a.precision,
                a.format,
                f"{a.bytes / 1024:.0f} KiB",
                par_s,
                trt,
                a.sha256[:12],
            )
        )
    out.append(text_table(rows))
    rewrites = [f"  {a.path}: {r}" for a in m.artifacts for r in a.notes.get("rewrites", [])]
    if rewrites:
        out.append(
            "\nGraph rewrites at export (same arithmetic; the other precisions are made from these files):"
        )
        out.extend(rewrites)
    if broken:
        out.append(
            "\nBreaks TensorRT's ONNX import rules (vaegan.export.conformance; `vaegan engines` refuses these):"
        )
        out.extend(broken)
    if m.quality:
        out.append("")
        rows = [
            (
                "precision",
                "n",
                "fd",
                "d_fd",
                "confident",
                "precision",
                "recall",
                "coverage",
                "class_kl",
                "px err mean/max",
            )
        ]
        for p, q in m.quality.items():

            def f(k: str, q: dict = q) -> str:
                return f"{q[k]:.3f}" if isinstance(q.get(k), float) else "-"

            px = (
                f"{q['pixel_mean_abs_error']:.2f}/{q['pixel_max_abs_error']}"
                if "pixel_max_abs_error" in q
                else "-"
            )
            dfd = f"{q['delta_fd']:+.2f}" if "delta_fd" in q else "-"
            n = str(q.get("n", "-"))
            rows.append(
                (
                    p,
                    n,
                    f("fd"),
                    dfd,
                    f("confident"),
                    f("precision"),
                    f("recall"),
                    f("coverage"),
                    f("class_kl"),
                    px,
                )
            )
        out.append(text_table(rows))
        out.append(
            "(n samples of the same latents per precision; `vaegan eval` scores its own n (default 2000) from the "
            "torch model, so its figures differ by n and sampling noise)"
        )
    out.append("\ntools: " + ", ".join(f"{k} {v}" for k, v in m.tools.items()))
    return "\n".join(out)
