"""`vaegan report`: one self-contained HTML page of a run dir or an artifact dir, to look at rather
than read: the losses by stage, whether the discriminator is alive, images/s, the sample and
reconstruction grids over time and `vaegan eval`'s figures (a run); the manifest's tables and a grid
per precision from the same latents (an artifact dir). Images are embedded: the file opens offline,
anywhere, with nothing fetched. Torch-free, so it also runs on the device.
"""

from __future__ import annotations

import base64
import html
import io
import json
from pathlib import Path
from typing import Any

from vaegan.core.errors import VaeganError
from vaegan.core.io import read_jsonl, write_bytes

REPORT = "report.html"
STAGE_COLOURS = {"vae": "#dbeafe", "adversarial": "#fde68a", "joint": "#dcfce7", "gan": "#fde68a"}


def write_report(path: str | Path, out: str | Path | None = None) -> Path:
    """The report of a run dir or an artifact dir, written atomically to `out` (default: PATH/report.html)."""
    path = Path(path)
    if (path / "manifest.json").exists():
        body = _artifact_page(path)
    elif (path / "config.json").exists():
        body = _run_page(path)
    else:
        raise VaeganError(f"{path} is neither a run dir (config.json) nor an artifact dir (manifest.json)")
    dst = Path(out) if out is not None else path / REPORT
    write_bytes(dst, _page(f"vaegan report: {path.name}", body).encode())
    return dst


# ------------------------------------------------------------------------------------ a run
def _run_page(run: Path) -> str:
    from vaegan.trainer.liveness import CANNOT_TELL, DEAD_SHARE

    cfg = json.loads((run / "config.json").read_text())
    rows = read_jsonl(run / "metrics.jsonl")
    parts = [f"<h1>{html.escape(str(run))}</h1>", _run_summary(cfg, rows)]
    gan = [r for r in rows if "d_real" in r and r.get("stage") not in ("vae",)]
    if gan:
        dead = sum(r["d_real"] - r["d_fake"] < CANNOT_TELL for r in gan) / len(gan)
        alive = dead <= DEAD_SHARE
        verdict = (
            f"The discriminator is alive: it tells real from generated images on {1 - dead:.0%} of the "
            "logged GAN steps."
            if alive
            else f"The discriminator is dead: on {dead:.0%} of the logged GAN steps its mean logit on real "
            f"images is within {CANNOT_TELL} of that on generated ones. The adversarial half is not "
            "training the decoder (lower --adv-lr or raise --lr-d)."
        )
        parts.append(f'<p class="{"ok" if alive else "bad"}" id="d-verdict">{verdict}</p>')
    parts.append(_figure(_loss_plot(rows), "losses by stage"))
    if any("d_real" in r for r in rows):
        parts.append(_figure(_d_plot(rows, CANNOT_TELL), "the discriminator on real and generated images"))
    parts.append(_figure(_rate_plot(rows), "training images per second"))
    parts.append(_grids(run / "samples"))
    ev = run / "eval.json"
    if ev.exists():
        parts.append(_eval_table(json.loads(ev.read_text())))
    return "\n".join(parts)


def _run_summary(cfg: dict[str, Any], rows: list[dict[str, Any]]) -> str:
    m, t = cfg.get("model", {}), cfg.get("train", {})
    last = rows[-1] if rows else {}
    rates = [r["imgs_per_s"] for r in rows if r.get("imgs_per_s")]
    facts = {
        "data": t.get("data"),
        "images": f"{m.get('image_size')}x{m.get('image_size')}x{m.get('channels')}",
        "mode": t.get("mode"),
        "steps": last.get("step", 0),
        "stage reached": last.get("stage", ""),
        "training time": f"{last.get('time_s', 0):.0f} s",
        "images/s (median)": f"{sorted(rates)[len(rates) // 2]:.0f}" if rates else "",
        "recipe": ", ".join(
            f"{k} {t.get(k)}"
            for k in ("lr", "adv_lr", "lr_d", "kl_weight", "d_warmup", "diffaug", "amp", "prior")
        ),
    }
    return _table([("", "")] + [(k, v) for k, v in facts.items()], header=False)


def _plot(draw) -> bytes:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 3.2), dpi=100)
    draw(ax)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    plt.close(fig)
    return buf.getvalue()


def _stages(ax, rows: list[dict[str, Any]]) -> None:
    """Shade each stage's steps behind the curves."""
    start = None
    for i, r in enumerate(rows):
        if start is None or r["stage"] != rows[start]["stage"] or i == len(rows) - 1:
            if start is not None:
                stage = rows[start]["stage"]
                ax.axvspan(rows[start]["step"], r["step"], color=STAGE_COLOURS.get(stage, "#eee"), lw=0)
                ax.text(rows[start]["step"], 1.0, f" {stage}", transform=ax.get_xaxis_transform(), va="top")
            start = i


def _loss_plot(rows: list[dict[str, Any]]) -> bytes:
    keys = sorted(
        {k for r in rows for k in r if k.startswith("loss_") and k not in ("loss_total", "loss_gan_w")}
    )

    def draw(ax):
        _stages(ax, rows)
        for k in keys:
            pts = [(r["step"], r[k]) for r in rows if k in r]
            ax.plot(*zip(*pts, strict=True), label=k[5:], lw=1.2)
        ax.set_yscale("symlog", linthresh=0.01)
        ax.set_xlabel("step")
        ax.legend(loc="upper right", fontsize=8, ncol=len(keys))

    return _plot(draw)


def _d_plot(rows: list[dict[str, Any]], band: float) -> bytes:
    def draw(ax):
        _stages(ax, rows)
        pts = [(r["step"], r["d_real"], r["d_fake"]) for r in rows if "d_real" in r]
        steps, real, fake = zip(*pts, strict=True)
        ax.plot(steps, real, label="D on real images", color="#15803d")
        ax.plot(steps, fake, label="D on generated images", color="#b91c1c")
        gap = [a - b for a, b in zip(real, fake, strict=True)]
        ax.fill_between(steps, [f for f in fake], [f + band for f in fake], color="#999", alpha=0.3,
                        label=f"cannot tell (real within {band} of generated)")  # fmt: skip
        ax.set_xlabel("step")
        ax.set_ylabel("mean logit")
        ax.legend(loc="lower left", fontsize=8)
        ax.set_title(f"gap real - generated: median {sorted(gap)[len(gap) // 2]:.2f}", fontsize=9)

    return _plot(draw)


def _rate_plot(rows: list[dict[str, Any]]) -> bytes:
    def draw(ax):
        _stages(ax, rows)
        pts = [(r["step"], r["imgs_per_s"]) for r in rows if r.get("imgs_per_s")]
        if pts:
            ax.plot(*zip(*pts, strict=True), color="#334155")
        ax.set_xlabel("step")
        ax.set_ylabel("images/s")

    return _plot(draw)


def _grids(samples: Path) -> str:
    if not samples.is_dir():
        return ""
    out = ["<h2>Samples and reconstructions over time</h2>"]
    for kind, title in (("prior", "prior samples"), ("recon", "reconstructions (original, reconstruction)")):
        files = sorted(samples.glob(f"{kind}_*.png"), key=lambda p: (p.stem.endswith("_last"), p.stem))
        if files:
            out.append(f"<h3>{title}</h3><div class='grids'>")
            out += [_img(p.read_bytes(), p.stem.split("_", 1)[1], "grid") for p in files]
            out.append("</div>")
    return "\n".join(out)


def _eval_table(ev: dict[str, Any]) -> str:
    rows = [("metric", "value")] + [
        (k, f"{v:.4f}" if isinstance(v, float) else str(v)) for k, v in ev.get("metrics", {}).items()
    ]
    scale = ev.get("info", {}).get("scale")
    out = ["<h2>vaegan eval</h2>", _table(rows)]
    if isinstance(scale, dict) and scale:
        cols = sorted({k for row in scale.values() for k in row})
        out.append(
            "<p>The scale to read them on: held-out real images, and copies that are not like the data:</p>"
        )
        out.append(
            _table(
                [("images", *cols)] + [(name, *(_fmt(r.get(k)) for k in cols)) for name, r in scale.items()]
            )
        )
    return "\n".join(out)


# ------------------------------------------------------------------------------------ an export
def _artifact_page(art: Path) -> str:
    from vaegan.core.manifest import Manifest, conformance_summary
    from vaegan.runtime.sampler import Sampler

    m = Manifest.load(art)
    parts = [f"<h1>{html.escape(str(art))}</h1>"]
    rows: list[tuple[Any, ...]] = [
        ("artifact", "component", "precision", "format", "bytes", "parity", "TensorRT import")
    ]
    for a in m.artifacts:
        par = a.parity.get("max_abs_error")
        rows.append(
            (
                a.path,
                a.component,
                a.precision,
                a.format,
                f"{a.bytes:,}",
                "" if par is None else f"{par:.3g} {a.parity.get('unit', '')}",
                conformance_summary(a.conformance) if a.conformance else "",
            )
        )
    parts += ["<h2>Artifacts</h2>", _table(rows)]
    if m.quality:
        keys = sorted({k for q in m.quality.values() for k in q if isinstance(q[k], int | float)})
        qrows: list[tuple[Any, ...]] = [("precision", *keys)]
        qrows += [(p, *(_fmt(q.get(k)) for k in keys)) for p, q in m.quality.items()]
        parts += ["<h2>Quality per precision (against fp32)</h2>", _table(qrows)]
    parts.append("<h2>The same latents through each precision</h2><div class='grids'>")
    for precision in sorted(
        {a.precision for a in m.artifacts if a.component == "decoder" and a.format == "onnx"}
    ):
        try:
            s = Sampler.load(art, backend="ort", precision=precision)
        except VaeganError as e:
            parts.append(f"<p>{precision}: {html.escape(str(e))}</p>")
            continue
        from vaegan.core.images import grid, to_pil

        buf = io.BytesIO()
        to_pil(grid(s.sample(32, seed=0), cols=8, scale=2)).save(buf, format="PNG")
        s.close()
        parts.append(_img(buf.getvalue(), precision, "grid"))
    parts.append("</div>")
    bench = art / "bench.json"
    if bench.exists():
        parts += ["<h2>vaegan bench</h2>", f"<pre>{html.escape(bench.read_text()[:20000])}</pre>"]
    return "\n".join(parts)


# ------------------------------------------------------------------------------------ HTML
def _fmt(v: Any) -> str:
    return f"{v:.4g}" if isinstance(v, float) else "" if v is None else str(v)


def _table(rows: list[tuple[Any, ...]], header: bool = True) -> str:
    head, *body = rows
    th = "" if not header else "<tr>" + "".join(f"<th>{html.escape(str(c))}</th>" for c in head) + "</tr>"
    tr = "".join("<tr>" + "".join(f"<td>{html.escape(str(c))}</td>" for c in r) + "</tr>" for r in body)
    return f"<table>{th}{tr}</table>"


def _img(png: bytes, caption: str, cls: str) -> str:
    data = base64.b64encode(png).decode()
    cap = html.escape(caption)
    return f'<figure class="{cls}"><img alt="{cap}" src="data:image/png;base64,{data}"><figcaption>{cap}</figcaption></figure>'


def _figure(png: bytes, caption: str) -> str:
    return f"<h2>{html.escape(caption.capitalize())}</h2>" + _img(png, caption, "plot")


def _page(title: str, body: str) -> str:
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)}</title>
<style>
body {{ font: 14px/1.45 system-ui, sans-serif; margin: 2em auto; max-width: 1100px; color: #1f2937 }}
table {{ border-collapse: collapse; margin: .5em 0 }} td, th {{ border: 1px solid #d1d5db; padding: 2px 8px; text-align: left }}
.grids {{ display: flex; flex-wrap: wrap; gap: 12px }} figure {{ margin: 0 }} figure.grid img {{ image-rendering: pixelated; width: 260px }}
figcaption {{ font-size: 12px; color: #6b7280 }} .ok {{ color: #15803d; font-weight: 600 }} .bad {{ color: #b91c1c; font-weight: 600 }}
</style></head><body>
{body}
</body></html>
"""
