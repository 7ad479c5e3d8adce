"""Train vae, gan and vaegan on digits with the same budget and seeds, evaluate, and write
docs/results/quality_digits.json, from which docs/quality.md's tables are rendered (`make docs`).

    python benchmarks/quality.py [--epochs 10] [--seeds 0,1,2] [--out build/quality]

Every run uses the quick start's recipe (`vaegan train --data digits --epochs N`); only --mode differs.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks import docs  # noqa: E402
from vaegan.bench.measure import provenance  # noqa: E402
from vaegan.config import ModelConfig, RunConfig, TrainConfig  # noqa: E402
from vaegan.core.images import save_grid  # noqa: E402
from vaegan.core.io import write_json  # noqa: E402
from vaegan.trainer.checkpoint import load_model  # noqa: E402
from vaegan.trainer.data import to_uint8  # noqa: E402
from vaegan.trainer.evaluate import evaluate_run, reference_data  # noqa: E402
from vaegan.trainer.loop import train  # noqa: E402

MODES = ("vae", "gan", "vaegan")
COLUMNS = ("fd", "precision", "recall", "confident", "coverage", "class_coverage", "class_kl", "psnr")
# Prior temperatures swept for the modes with an encoder: each point moves along the precision-recall curve.
TEMPERATURES = (1.0, 0.9, 0.8, 0.7, 0.6, 0.5)
SWEEP_COLUMNS = ("precision", "recall", "fd", "coverage")
LOWER_IS_BETTER = {"fd", "class_kl"}
RESULTS_SCHEMA = 1  # docs/results/quality_digits.json (benchmarks/docs.py renders docs/quality.md from it)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--epochs", type=int, default=10)
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument("--n", type=int, default=2000)
    ap.add_argument("--out", type=Path, default=ROOT / "build" / "quality")
    ap.add_argument("--results", type=Path, default=ROOT / "docs" / "results" / "quality_digits.json")
    ap.add_argument("--jobs", type=int, default=2, help="runs trained at once (one torch thread each)")
    a = ap.parse_args()
    seeds = [int(s) for s in a.seeds.split(",")]
    results: dict[str, list[dict]] = {m: [] for m in MODES}
    sweeps: dict[str, list[list[dict]]] = {m: [] for m in MODES if m != "gan"}
    jobs = [(mode, seed, a.out / f"{mode}-s{seed}", a.epochs, a.n) for seed in seeds for mode in MODES]
    todo = [j for j in jobs if not (j[2] / "eval.json").exists()]
    todo.sort(key=lambda j: j[0] == "vae")  # longest first; one torch thread per worker
    with ProcessPoolExecutor(a.jobs) as pool:
        for done in pool.map(run_one, todo):
            print(f"trained and evaluated {done}", flush=True)
    busy = 0.0
    for mode, seed, run, _, _ in jobs:
        ev = json.loads((run / "eval.json").read_text())
        busy += ev.get("train_seconds", 0.0)
        results[mode].append(ev["metrics"])
        if mode in sweeps:
            sweeps[mode].append(ev["sweep"])
        print(
            f"{mode:7s} seed {seed}: "
            + " ".join(f"{k}={ev['metrics'].get(k, float('nan')):.3f}" for k in COLUMNS),
            flush=True,
        )
    write_json(a.out / "results.json", {"metrics": results, "sweeps": sweeps})
    pictures(a.out, seeds[0], ROOT / "docs" / "quality_samples.png")
    pr_plot(sweeps, ROOT / "docs" / "quality_pr.png")
    write_results(a, results, sweeps, seeds, busy)


def run_one(job: tuple[str, int, Path, int, int]) -> str:
    mode, seed, run, epochs, n = job
    torch.set_num_threads(1)
    cfg = RunConfig(ModelConfig(), TrainConfig(mode=mode, epochs=epochs, seed=seed))
    t = time.time()
    train(cfg, run, progress=False)
    ref = reference_data(cfg)  # train() filled in the data key; one load for every evaluation below
    ev = evaluate_run(run, n=n, seed=seed, ref=ref).to_dict()
    if mode != "gan":
        evals = (
            [ev["metrics"]]
            + [  # TEMPERATURES[0] == 1.0: the evaluation above
                evaluate_run(run, n=n, seed=seed, temperature=temp, ref=ref).metrics
                for temp in TEMPERATURES[1:]
            ]
        )
        ev["sweep"] = [
            {"temperature": temp} | {k: e[k] for k in SWEEP_COLUMNS}
            for temp, e in zip(TEMPERATURES, evals, strict=True)
        ]
    ev["train_seconds"] = time.time() - t
    write_json(run / "eval.json", ev)
    return run.name


def pictures(out: Path, seed: int, path: Path) -> None:
    """One row block per mode: 32 prior samples from the same latents."""
    rows, z = [], None
    for mode in MODES:
        _, m = load_model(out / f"{mode}-s{seed}")
        if z is None:  # the same latents for every mode (the recipe gives them one latent size)
            z = torch.randn(32, int(m.cfg.latent_dim or 0), generator=torch.Generator().manual_seed(7))
        with torch.no_grad():
            rows.append(to_uint8(m.decoder(z)))
    save_grid(path, np.concatenate(rows), cols=16, scale=3)


def pr_plot(sweeps: dict[str, list[list[dict]]], path: Path) -> None:
    """Precision against recall over the temperature sweep, mean over seeds, one line per mode."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5.5, 4), dpi=120)
    for mode, runs in sweeps.items():
        p = np.mean([[pt["precision"] for pt in r] for r in runs], axis=0)
        r = np.mean([[pt["recall"] for pt in r] for r in runs], axis=0)
        ax.plot(r, p, "o-", label=mode)
        for t, x, y in zip(TEMPERATURES, r, p, strict=True):
            ax.annotate(f"T={t:g}", (x, y), textcoords="offset points", xytext=(4, 4), fontsize=7)
    ax.set_xlabel("recall (diversity)")
    ax.set_ylabel("precision (fidelity)")
    ax.set_title("digits: prior temperature sweep, mean over seeds")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def write_results(a, results, sweeps, seeds, seconds) -> None:
    """docs/results/quality_digits.json, from which `make docs` renders docs/quality.md's tables."""
    write_json(
        a.results,
        {
            "producer": "benchmarks/quality.py:RESULTS_SCHEMA",
            "schema_version": RESULTS_SCHEMA,
            "provenance": provenance(),
            "config": {
                "epochs": a.epochs,
                "seeds": seeds,
                "n": a.n,
                "train_minutes": seconds / 60,
                "columns": list(COLUMNS),
                "lower_is_better": sorted(LOWER_IS_BETTER),
                "temperatures": list(TEMPERATURES),
                "sweep_columns": list(SWEEP_COLUMNS),
            },
            "metrics": results,
            "sweeps": sweeps,
        },
    )
    print(f"-> {a.results}")
    docs.main([])


if __name__ == "__main__":
    main()
