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

from vaegan.core.cpu import isa_summary  # noqa: E402
from vaegan.core.images import save_grid  # noqa: E402
from vaegan.trainer.evaluate import evaluate_run, reference_data, scale_rows  # noqa: E402
from vaegan.trainer.metrics import get_classifier  # noqa: E402

MODES = ("vae", "gan", "vaegan")
COLUMNS = ("confident", "class_coverage", "class_kl", "fd", "precision", "recall", "coverage", "psnr")


def train_mode(data: str, budget: str, mode: str, out: Path) -> float:
    t0 = time.time()
    cmd = [sys.executable, "-m", "vaegan", "train", "--data", data, "--time", budget, "--mode", mode]
    subprocess.run([*cmd, "--out", str(out)], check=True)
    return time.time() - t0


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


def prior_images(run: Path, ref, prior: str, n: int, seed: int = 0) -> np.ndarray:
    """n samples of a run, drawn as evaluate_run draws them."""
    import torch

    from vaegan.trainer.checkpoint import load_model
    from vaegan.trainer.data import to_uint8
    from vaegan.trainer.evaluate import run_prior

    cfg, m = load_model(run)
    fitted = run_prior(run, cfg, m, ref) if prior == "fitted" else None
    rng = np.random.default_rng(seed)
    z = (
        fitted.sample(n, rng)
        if fitted is not None
        else rng.standard_normal((n, int(cfg.model.latent_dim or 0)))
    )
    with torch.no_grad():
        return to_uint8(m.decoder(torch.from_numpy(np.asarray(z, np.float32))))


def copy_ratio(run: Path, ref, prior: str, n: int) -> float:
    """Median nearest-training-image distance of samples over that of held-out real images, in the
    evaluation classifier's features."""
    clf = get_classifier(ref.data)
    train, _ = clf.run(ref.train.images)

    def nn(images: np.ndarray) -> float:
        f, _ = clf.run(images)
        d = (f * f).sum(1)[:, None] + (train * train).sum(1)[None, :] - 2 * f @ train.T
        return float(np.median(np.sqrt(np.maximum(d.min(1), 0))))

    return nn(prior_images(run, ref, prior, n)) / nn(ref.val.images[:n])


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
    runs_of: dict[str, Path] = {}
    wall: dict[str, float] = {}
    if args.runs:
        runs = {k: Path(v) for k, v in (item.split("=", 1) for item in args.runs.split(","))}
    else:
        for mode in MODES:
            runs[mode] = Path(args.runs_dir) / mode
            wall[mode] = train_mode(args.data, args.time, mode, runs[mode])
    from vaegan.trainer.checkpoint import load_model

    ref = reference_data(load_model(next(iter(runs.values())))[0])
    results, copies = {}, {}
    for mode, run in runs.items():
        # the fitted prior is what `vaegan sample` draws from; N(0, I) shows what it adds
        for prior in ("fitted", "standard") if mode != "gan" else ("standard",):
            key = mode if prior == "fitted" or mode == "gan" else f"{mode}, N(0, I) prior"
            results[key] = evaluate_run(run, n=args.n, ref=ref, prior=prior)
            copies[key] = copy_ratio(run, ref, prior, args.n)
            runs_of[key] = run
    scale = scale_rows(ref, args.n)
    lines = [
        f"# Sample quality on colour data: VAE vs GAN vs VAE-GAN at {args.time}",
        "",
        (
            f"`python benchmarks/quality_colour.py --data {args.data} --time {args.time}` on {platform.machine()} "
            f"({isa_summary()}), 2 cores: each mode trained with `vaegan train --time {args.time} --mode MODE` "
            "and the recipe's defaults, one after another"
            if not args.runs
            else f"`python benchmarks/quality_colour.py --data {args.data} --runs {args.runs}` on {platform.machine()} "
            f"({isa_summary()}), 2 cores: runs trained with `vaegan train --time {args.time} --mode MODE`, each "
            "alone on the machine"
        )
        + f", then scored with `vaegan eval`'s metrics on n={args.n} samples at temperature 1.",
        "",
        "The evaluation classifier is trained on the data's labels plus a class of images that are not like "
        "the data (heavy blur, two-image blends, smooth noise, made from the real images): **confident** is "
        "the share of samples it names as one of the data's classes with p >= 0.9. Class coverage counts "
        "classes with at least 10% of their share; class KL is KL(data || samples) over the named classes.",
        "",
        "What was tried to get here, and what did not work: [colour_experiments.md](colour_experiments.md).",
        "",
        "Samples are drawn as `vaegan sample` draws them: from the run's fitted prior (a mixture of Gaussians "
        "fitted to where the encoder puts the training images, vaegan/core/prior.py), or N(0, I) where a row "
        "says so (and for the GAN, which has no encoder). **copy ratio**: the median distance, in the "
        "classifier's features, from a sample to its nearest training image, over the same for held-out real "
        "images: near or above 1, the samples are no closer to the training set than new real images are; "
        "well below 1 would mean copies.",
        "",
        "| samples | " + " | ".join(COLUMNS) + " | copy ratio | steps | missing classes |",
        "|---|" + "---|" * (len(COLUMNS) + 3),
    ]
    from vaegan.trainer.checkpoint import load_state

    for key, ev in results.items():
        cells = [fmt(ev.metrics.get(c, "n/a")) for c in COLUMNS]
        missing = ", ".join(ev.info.get("missing_classes", [])) or "none"
        steps = load_state(runs_of[key])["step"]
        lines.append(f"| {key} | " + " | ".join(cells) + f" | {copies[key]:.2f} | {steps} | {missing} |")
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
        # the prior grid as `vaegan sample` draws it (an older run's prior_last.png predates its prior)
        prior = f"quality_colour_{mode}_prior.png"
        draw = "fitted" if mode != "gan" else "standard"
        save_grid(docs / prior, prior_images(run, ref, draw, 64, 1234), cols=8)
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
    summary = colour_summary(results, scale, Path(args.out).name, args.time, args.data)
    quality = docs / "quality.md"
    if quality.exists():
        quality.write_text(replace_block(quality.read_text(), summary))
        print(f"-> {quality} (its colour section)")


BEGIN, END = (
    "<!-- colour section: benchmarks/quality_colour.py writes it -->",
    "<!-- end of colour section -->",
)


def colour_summary(results: dict, scale: dict, page: str, budget: str, data: str) -> str:
    """docs/quality.md's colour section: the headline rows, the scale and the grids."""
    rows = [k for k in results if "N(0, I)" not in k]
    lines = [
        BEGIN,
        f"## Colour data: VAE, GAN and VAE-GAN at a {budget} budget",
        "",
        f"`{data}` (64x64 RGB letters), each mode trained with `vaegan train --time {budget} --mode MODE` "
        f"alone on 2 cores and scored on its prior samples as `vaegan sample` draws them. All the rows, "
        f"the N(0, I) comparison, copy ratios and the commands: [{page}]({page}).",
        "",
        "| mode | confident | class KL | FD | PSNR | missing classes |",
        "|---|---|---|---|---|---|",
    ]
    for k in rows:
        m, info = results[k].metrics, results[k].info
        missing = ", ".join(info.get("missing_classes", [])) or "none"
        lines.append(
            f"| {k} | {fmt(m.get('confident'))} | {fmt(m.get('class_kl'))} | {fmt(m.get('fd'))} | "
            f"{fmt(m.get('psnr', 'n/a'))} | {missing} |"
        )
    lines += [
        "",
        "What good looks like, in the same space:",
        "",
        "| images | confident | FD |",
        "|---|---|---|",
    ]
    for name, sc in scale.items():
        lines.append(f"| {name} | {fmt(sc.get('confident'))} | {fmt(sc['fd'])} |")
    lines += [""]
    for k in rows:
        prior, recon = f"quality_colour_{k}_prior.png", f"quality_colour_{k}_recon.png"
        pics = f"![{k} prior samples]({prior})" + (f" ![{k} reconstructions]({recon})" if k != "gan" else "")
        lines += [
            f"**{k}**: prior samples"
            + (", then held-out images and their reconstructions" if k != "gan" else ""),
            "",
            pics,
            "",
        ]
    lines += ["Held-out real images: ![real images](quality_colour_real.png)", "", END]
    return "\n".join(lines)


def replace_block(text: str, block: str) -> str:
    """text with its colour section replaced by block (appended when it has none)."""
    if BEGIN in text and END in text:
        head, rest = text.split(BEGIN, 1)
        return head + block + rest.split(END, 1)[1]
    return text.rstrip("\n") + "\n\n" + block + "\n"


if __name__ == "__main__":
    main()
