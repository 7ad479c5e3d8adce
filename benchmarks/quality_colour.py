"""VAE and VAE-GAN (and GAN, with --modes) on a colour image folder at one wall-clock budget:
docs/results/quality_<name>.json and grids next to docs/quality.md, whose tables `make docs` renders.

    python benchmarks/quality_colour.py --data ../shared/data/emoji64 --time 15m
    python benchmarks/quality_colour.py --data DIR --runs vae=runs/v,vaegan=runs/vg  # score runs

Each mode is trained with `vaegan train --data DIR --time BUDGET --mode MODE` (the recipe's defaults,
one after another: a budget means nothing with another job on the cores), then scored with
`vaegan eval`'s metrics: the share of prior samples the evaluation classifier (the data's labels plus
a class of blurred, blended and noise images) names with p >= 0.9, class coverage and KL, FD, and
reconstruction PSNR. The "what good looks like" rows score held-out real images and degraded copies
of them in the same space. Grids of prior samples and reconstructions go next to the page.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks import docs as docs_tables  # noqa: E402
from benchmarks.quality import TEMPERATURES  # noqa: E402
from vaegan.bench.measure import provenance  # noqa: E402
from vaegan.core.images import save_grid  # noqa: E402
from vaegan.core.io import write_json  # noqa: E402
from vaegan.trainer.evaluate import evaluate_run, reference_data, scale_rows  # noqa: E402
from vaegan.trainer.metrics import get_classifier  # noqa: E402

RESULTS_SCHEMA = 1  # docs/results/quality_<name>.json (benchmarks/docs.py renders docs/quality.md from it)


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
        dst = docs / f"quality_{name}_{kind}.png"
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


def temperature_sweep(run: Path, ref, n: int, at_one: dict[str, float]) -> list[dict[str, float]]:
    """The run's samples scored at each of the digits' sweep temperatures (at_one: its scores at 1), so
    a VAE-GAN run can be held against the VAE of its seed at equal recall, as digits are."""
    evals = [at_one] + [
        evaluate_run(run, n=n, temperature=t, ref=ref, prior="fitted").metrics for t in TEMPERATURES[1:]
    ]
    return [{"temperature": t} | e for t, e in zip(TEMPERATURES, evals, strict=True)]


def run_speed(run: Path) -> tuple[int, float]:
    """Steps and images/s averaged over the whole run (evaluation and checkpoints included)."""
    import json

    last = json.loads((run / "metrics.jsonl").read_text().strip().splitlines()[-1])
    cfg = json.loads((run / "config.json").read_text())
    return int(last["step"]), last["step"] * cfg["train"]["batch_size"] / max(last["time_s"], 1e-9)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", required=True)
    ap.add_argument(
        "--name", default=None, help="results and grids are named after it (default: the folder's name)"
    )
    ap.add_argument("--time", default="15m")
    ap.add_argument("--modes", default="vae,vaegan", help="modes to train (gan too, for the comparison)")
    ap.add_argument("--runs", default=None, help="mode=run_dir,... to score instead of training")
    ap.add_argument("--runs-dir", default="runs/quality_colour")
    ap.add_argument("--n", type=int, default=1000)
    args = ap.parse_args()
    name = args.name or Path(args.data).name
    docs = ROOT / "docs"
    if args.runs:
        runs = {k: Path(v) for k, v in (item.split("=", 1) for item in args.runs.split(","))}
    else:
        runs = {mode: Path(args.runs_dir) / name / mode for mode in args.modes.split(",")}
        for mode, run in runs.items():
            train_mode(args.data, args.time, mode, run)
    from vaegan.trainer.checkpoint import load_model

    # Each run is scored against its own split (its seed's): another seed's held-out images are partly
    # the run's training images, and its PSNR and FD were flattered by them. The scale rows use the
    # first run's (held-out real images that neither it nor the classifier trained on: scale_rows).
    cfgs = {mode: load_model(run)[0] for mode, run in runs.items()}
    refs: dict[int, Any] = {}
    for cfg in cfgs.values():
        if cfg.train.seed not in refs:
            refs[cfg.train.seed] = reference_data(cfg)
    ref_of = {mode: refs[cfg.train.seed] for mode, cfg in cfgs.items()}
    rows = {}
    for mode, run in runs.items():
        ref = ref_of[mode]
        prior = "fitted" if mode != "gan" else "standard"  # as `vaegan sample` draws; the GAN has no encoder
        ev = evaluate_run(run, n=args.n, ref=ref, prior=prior)
        steps, speed = run_speed(run)
        rows[mode] = {
            "run": str(run),
            "metrics": ev.metrics,
            "missing_classes": ev.info.get("missing_classes", []),
            "copy_ratio": copy_ratio(run, ref, prior, args.n),
            "steps": steps,
            "img_per_s": speed,
        }
        if mode.startswith("vaegan") and "vae" + mode.removeprefix("vaegan") in runs:
            rows[mode]["sweep"] = temperature_sweep(run, ref, args.n, ev.metrics)
        save_grid(docs / f"quality_{name}_{mode}_prior.png", prior_images(run, ref, prior, 64, 1234), cols=8)
        _, recon = grids(run, docs, f"{name}_{mode}")
        if mode == "gan" and recon:  # no encoder is trained: its "reconstructions" mean nothing
            (docs / recon).unlink(missing_ok=True)
    ref = next(iter(ref_of.values()))
    save_grid(docs / f"quality_{name}_real.png", ref.val.images[:64], cols=8)
    out = docs / "results" / f"quality_{name}.json"
    write_json(
        out,
        {
            "producer": "benchmarks/quality_colour.py:RESULTS_SCHEMA",
            "schema_version": RESULTS_SCHEMA,
            "provenance": provenance(),
            "data": args.data,
            "budget": args.time,
            "n": args.n,
            "rows": rows,
            "scale": scale_rows(ref, args.n),
        },
    )
    print(f"-> {out}")
    docs_tables.main([])


if __name__ == "__main__":
    main()
