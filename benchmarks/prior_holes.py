"""Where a run's imprecise prior samples come from: the prior's holes and tails.

    python benchmarks/prior_holes.py build/quality/vaegan-s0 build/quality/vae-s0 [--n 2000]

For each run, in the evaluation classifier's feature space (the one `vaegan eval` uses):
- precision and FD of three latent sources decoded by the same EMA decoder: the posterior means of the
  training images (reconstructions), the aggregate posterior (z = mu + sigma * eps of a random
  training image) and the prior N(0, I) that `vaegan sample` draws from;
- the prior samples' precision per fifth of |z|, from the middle of the prior to its tails.

Precision is a per-sample test (is the sample inside some real k-NN ball?), so the precision of a
subset of samples is that subset's share of inside samples.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from vaegan.trainer.checkpoint import load_model  # noqa: E402
from vaegan.trainer.data import to_tensor_range, to_uint8  # noqa: E402
from vaegan.trainer.evaluate import reference_data  # noqa: E402
from vaegan.trainer.metrics import frechet_distance, get_classifier, prdc  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("runs", nargs="+", type=Path)
    ap.add_argument("--n", type=int, default=2000)
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args()
    for run in a.runs:
        cfg, m = load_model(run)
        ref = reference_data(cfg)
        clf = get_classifier(ref.data)
        f_real, _ = clf.features_and_classes(ref.train.images)
        g = torch.Generator().manual_seed(a.seed)
        with torch.no_grad():
            mu, logvar = m.encoder(to_tensor_range(ref.train.images))
        pick = torch.randint(0, len(mu), (a.n,), generator=g)
        eps = torch.randn(a.n, mu.shape[1], generator=g)
        sources = {
            "reconstruction": mu[: a.n],
            "aggregate posterior": mu[pick] + eps * (0.5 * logvar[pick]).exp(),
            "prior": torch.randn(a.n, mu.shape[1], generator=g),
        }
        print(f"{run} ({cfg.train.mode})")
        feats = {}
        for name, z in sources.items():
            with torch.no_grad():
                images = np.concatenate([to_uint8(m.decoder(z[i : i + 500])) for i in range(0, len(z), 500)])
            feats[name], _ = clf.features_and_classes(images)
            p = prdc(f_real, feats[name])
            print(
                f"  {name:20s} precision {p['precision']:.3f}  recall {p['recall']:.3f}  "
                f"fd {frechet_distance(f_real, feats[name]):7.2f}"
            )
        norm = sources["prior"].norm(dim=1).numpy()
        edges = np.quantile(norm, np.linspace(0, 1, 6))
        fifths = [(norm >= lo) & (norm <= hi) for lo, hi in zip(edges[:-1], edges[1:], strict=True)]
        by_norm = [prdc(f_real, feats["prior"][sel])["precision"] for sel in fifths]
        print("  prior precision by fifth of |z|, middle to tails: " + "  ".join(f"{p:.3f}" for p in by_norm))


if __name__ == "__main__":
    main()
