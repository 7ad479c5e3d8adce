"""docs/quality_colour.md: VAE, GAN and VAE-GAN on a colour image folder at one wall-clock budget.

    python benchmarks/quality_colour.py --data ../shared/data/letters64 --time 15m
    python benchmarks/quality_colour.py --data DIR --runs vae=runs/v,gan=runs/g,vaegan=runs/vg  # score runs

Each mode is trained with `vaegan train --data DIR --time BUDGET --mode MODE` (the recipe's defaults,
one after another: a budget means nothing with another job on the cores), then scored with
`vaegan eval`'s metrics: the share of prior samples the evaluation classifier (the data's labels plus
a class of blurred, blended and noise images) names with p >= 0.9, class coverage and KL, FD, and
reconstruction PSNR. The "what good looks like" rows score held-out real images and degraded copies
of them in the same space. Grids of prior samples and reconstructions go next to the page.
"""

from __future__ import annotations

import argparse
import platform
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from vaegan.core.images import save_grid  # noqa: E402
from vaegan.trainer.evaluate import evaluate_run, reference_data  # noqa: E402
from vaegan.trainer.metrics import DEGRADED, degraded, get_classifier, score_images  # noqa: E402

MODES = ("vae", "gan", "vaegan")
COLUMNS = ("confident", "class_coverage", "class_kl", "fd", "precision", "recall", "coverage", "psnr")


def train_mode(data: str, budget: str, mode: str, out: Path) -> float:
    t0 = time.time()
    cmd = [sys.executable, "-m", "vaegan", "train", "--data", data, "--time", budget, "--mode", mode]
    subprocess.run([*cmd, "--out", str(out)], check=True)
    return time.time() - t0


def scale_rows(ref, n: int = 1000) -> dict[str, dict[str, float]]:
    """Held-out real images and degraded copies of them, scored like samples."""
    clf = get_classifier(ref.data)
    rng = np.random.default_rng(0)
    real = ref.val.images[:n]
    rows = {"held-out real images": score_images(real, ref.train, clf)}
    for kind in DEGRADED:
        rows[f"real images, {kind}"] = score_images(degraded(real, kind, rng), ref.train, clf)
    return rows


def grids(run: Path, docs: Path, name: str) -> tuple[str, str]:
    """The run's last prior and reconstruction grids, copied under docs/."""
    from PIL import Image

    out = []
    for kind in ("prior", "recon"):
        src = run / "samples" / f"{kind}_last.png"
        dst = docs / f"quality_colour_{name}_{kind}.png"
        if src.exists():
            Image.open(src).save(dst, optimize=True)
            out.append(dst.name)
        else:
            out.append("")
    return out[0], out[1]


def fmt(v) -> str:
    return f"{v:.3f}" if isinstance(v, float) else str(v)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", required=True)
    ap.add_argument("--time", default="15m")
    ap.add_argument("--runs", default=None, help="mode=run_dir,... to score instead of training")
    ap.add_argument("--runs-dir", default="runs/quality_colour")
    ap.add_argument("--n", type=int, default=1000)
    ap.add_argument("--out", default=str(ROOT / "docs" / "quality_colour.md"))
    args = ap.parse_args()
    docs = Path(args.out).parent
    runs: dict[str, Path] = {}
    wall: dict[str, float] = {}
    if args.runs:
        runs = {k: Path(v) for k, v in (item.split("=", 1) for item in args.runs.split(","))}
    else:
        for mode in MODES:
            runs[mode] = Path(args.runs_dir) / mode
            wall[mode] = train_mode(args.data, args.time, mode, runs[mode])
    results, ref = {}, None
    for mode, run in runs.items():
        ev = evaluate_run(run, n=args.n, ref=ref)
        if ref is None:
            from vaegan.trainer.checkpoint import load_model

            ref = reference_data(load_model(run)[0])
        results[mode] = ev
    assert ref is not None
    scale = scale_rows(ref, args.n)
    lines = [
        f"# Sample quality on colour data: VAE vs GAN vs VAE-GAN at {args.time}",
        "",
        f"`python benchmarks/quality_colour.py --data {args.data} --time {args.time}` on {platform.machine()}, "
        f"{platform.processor() or 'CPU'}, 2 cores: each mode trained with `vaegan train --time {args.time} "
        "--mode MODE` and the recipe's defaults, one after another, then scored with `vaegan eval`'s metrics "
        f"on n={args.n} prior samples at temperature 1.",
        "",
        "The evaluation classifier is trained on the data's labels plus a class of images that are not like "
        "the data (heavy blur, two-image blends, smooth noise, made from the real images): **confident** is "
        "the share of samples it names as one of the data's classes with p >= 0.9. Class coverage counts "
        "classes with at least 10% of their share; class KL is KL(data || samples) over the named classes.",
        "",
        "What was tried to get here, and what did not work: [colour_experiments.md](colour_experiments.md).",
        "",
        "| mode | " + " | ".join(COLUMNS) + " | steps | missing classes |",
        "|---|" + "---|" * (len(COLUMNS) + 2),
    ]
    for mode, ev in results.items():
        cells = [fmt(ev.metrics.get(c, "n/a")) for c in COLUMNS]
        missing = ", ".join(ev.info.get("missing_classes", [])) or "none"
        from vaegan.trainer.checkpoint import load_state

        steps = load_state(runs[mode])["step"]
        lines.append(f"| {mode} | " + " | ".join(cells) + f" | {steps} | {missing} |")
    lines += [
        "",
        "## What good looks like",
        "",
        f"The same metrics for {args.n} held-out real images and for degraded copies of them (the kinds of "
        "image the classifier's reject class learns from), in the same space:",
        "",
        "| images | confident | fd | precision | coverage |",
        "|---|---|---|---|---|",
    ]
    for name, s in scale.items():
        lines.append(
            f"| {name} | {fmt(s.get('confident'))} | {fmt(s['fd'])} | {fmt(s['precision'])} | {fmt(s['coverage'])} |"
        )
    lines += ["", "## Grids", ""]
    for mode, run in runs.items():
        prior, recon = grids(run, docs, mode)
        if mode == "gan":  # no encoder is trained: its "reconstructions" mean nothing
            (docs / recon).unlink(missing_ok=True)
            recon = ""
        lines += [
            f"**{mode}**: prior samples"
            + (", then held-out images and their reconstructions in pairs" if recon else ""),
            "",
            f"![{mode} prior samples]({prior}) ![{mode} reconstructions]({recon})"
            if recon
            else f"![{mode}]({prior})",
            "",
        ]
    real_grid = docs / "quality_colour_real.png"
    save_grid(real_grid, ref.val.images[:64], cols=8)
    lines += ["Held-out real images, for comparison:", "", f"![real images]({real_grid.name})", ""]
    Path(args.out).write_text("\n".join(lines))
    print(f"-> {args.out}")


if __name__ == "__main__":
    main()
