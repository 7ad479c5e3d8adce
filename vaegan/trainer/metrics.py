"""Offline sample-quality metrics; no downloaded weights.

Feature space: a small classifier trained in-project on the dataset's own labels, cached by the
dataset's content key and a version stamp, and reused by every evaluation of that dataset.

- fd:                  Fréchet distance between real and generated features (FID's formula)
- precision, recall,   Naeem et al. 2020, k-nearest-neighbour manifolds in feature space
  density, coverage
- class_coverage:      fraction of classes found among generated samples (>= 10% of their data share)
- class_kl:            KL(data class histogram || generated class histogram)
- psnr, kl,            reconstructions of held-out images, mean posterior KL, active latent units
  active_units
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from vaegan.trainer.data import Dataset, to_tensor_range

log = logging.getLogger(__name__)
CLASSIFIER_VERSION = 2  # 2: trained on a fixed split of the whole dataset, one thread
LABEL_METRICS = ("fd", "precision", "recall", "density", "coverage", "class_coverage", "class_kl")


def cache_dir() -> Path:
    return Path(os.environ.get("VAEGAN_CACHE", Path.home() / ".cache" / "vaegan"))


class FeatureNet(nn.Module):
    """Classifier whose penultimate layer is the evaluation feature space."""

    def __init__(self, channels: int, size: int, classes: int, dim: int = 128):
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(channels, 32, 3, 1, 1),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Conv2d(32, 64, 3, 1, 1),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Conv2d(64, 64, 3, 1, 1),
            nn.ReLU(),
            nn.AdaptiveAvgPool2d(4),
            nn.Flatten(),
            nn.Linear(64 * 16, dim),
            nn.ReLU(),
        )
        self.head = nn.Linear(dim, classes)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        f = self.body(x)
        return f, self.head(f)


@dataclass
class Classifier:
    net: FeatureNet
    accuracy: float  # on the held-out split

    @torch.no_grad()
    def features_and_classes(self, images: np.ndarray, batch: int = 512) -> tuple[np.ndarray, np.ndarray]:
        feats, classes = [], []
        self.net.eval()
        threads = torch.get_num_threads()
        torch.set_num_threads(1)  # the same bits on any thread count (oneDNN splits sums by thread)
        try:
            for i in range(0, len(images), batch):
                f, logits = self.net(to_tensor_range(images[i : i + batch]))
                feats.append(f.numpy().astype(np.float64))
                classes.append(logits.argmax(1).numpy())
        finally:
            torch.set_num_threads(threads)
        return np.concatenate(feats), np.concatenate(classes)


def get_classifier(data: Dataset, epochs: int = 8, seed: int = 0) -> Classifier:
    """The evaluation feature space of a labelled dataset, cached by its content key.

    Trained once (seconds on digits) on a fixed split of the whole dataset, on one thread, so every
    run on that data is scored in the same space whatever its own split, seed or thread count.
    """
    from safetensors.torch import load_file, save

    from vaegan.core.io import write_bytes

    if data.labels is None:
        raise ValueError("the dataset has no labels: no feature space for label-based metrics")
    classes = len(data.class_names)
    _, h, _, c = data.images.shape
    path = cache_dir() / "classifiers" / f"{data.key}-{h}px{c}c-v{CLASSIFIER_VERSION}.safetensors"
    if path.exists():
        try:
            sd = load_file(path)
            acc = float(sd.pop("_accuracy").item())
            with torch.random.fork_rng(devices=[]):  # the weights are overwritten: spend no caller RNG
                net = FeatureNet(c, h, classes)
            net.load_state_dict(sd)
            return Classifier(net.eval(), acc)
        except Exception as e:  # noqa: BLE001 - a damaged cache is rebuilt, never trusted
            log.warning("classifier cache %s unusable (%s); retraining", path, e)
    train, val = data.split(0.1, seed)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # float sums differ between thread counts; the feature space must not
    try:
        with torch.random.fork_rng(devices=[]):  # seeded init and order, caller's RNG untouched
            torch.manual_seed(seed)
            net = FeatureNet(c, h, classes)
            clf = _train_classifier(net, train, val, epochs, seed)
    finally:
        torch.set_num_threads(threads)
    sd = {k: v.contiguous() for k, v in net.state_dict().items()} | {
        "_accuracy": torch.tensor(clf.accuracy, dtype=torch.float64)
    }
    write_bytes(path, save(sd))
    log.info("trained evaluation classifier (held-out accuracy %.3f) -> %s", clf.accuracy, path)
    return clf


def _train_classifier(net: FeatureNet, train: Dataset, val: Dataset, epochs: int, seed: int) -> Classifier:
    g = torch.Generator().manual_seed(seed)
    x, y = to_tensor_range(train.images), torch.from_numpy(train.labels)
    opt = torch.optim.Adam(net.parameters(), lr=2e-3)
    net.train()
    for _ in range(epochs):
        perm = torch.randperm(len(x), generator=g)
        for i in range(0, len(x), 64):
            idx = perm[i : i + 64]
            xb = x[idx]
            shift = torch.randint(-1, 2, (2,), generator=g)  # mild jitter: features robust to 1px shifts
            xb = torch.roll(xb, (int(shift[0]), int(shift[1])), dims=(2, 3))
            loss = nn.functional.cross_entropy(net(xb)[1], y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
    clf = Classifier(net.eval(), 0.0)
    _, pred = clf.features_and_classes(val.images)
    clf.accuracy = float((pred == val.labels).mean())
    return clf


def frechet_distance(a: np.ndarray, b: np.ndarray) -> float:
    """|mu1 - mu2|^2 + tr(S1 + S2 - 2 (S1^1/2 S2 S1^1/2)^1/2), via symmetric eigendecompositions,
    which stay exact when ReLU features make the covariances singular."""
    mu1, mu2 = a.mean(0), b.mean(0)
    s1, s2 = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    w, v = np.linalg.eigh(s1)
    root1 = (v * np.sqrt(np.clip(w, 0, None))) @ v.T
    cross = np.sqrt(np.clip(np.linalg.eigvalsh(root1 @ s2 @ root1), 0, None)).sum()
    return float(((mu1 - mu2) ** 2).sum() + np.trace(s1) + np.trace(s2) - 2 * cross)


def _pairwise(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    d = (a * a).sum(1)[:, None] + (b * b).sum(1)[None, :] - 2 * a @ b.T
    return np.sqrt(np.maximum(d, 0))


def prdc(real: np.ndarray, fake: np.ndarray, k: int = 5) -> dict[str, float]:
    """Precision, recall, density, coverage (Naeem et al. 2020)."""
    real_radius = np.sort(_pairwise(real, real), axis=1)[:, k]  # column 0 is the point itself
    fake_radius = np.sort(_pairwise(fake, fake), axis=1)[:, k]
    d = _pairwise(real, fake)  # [R, F]
    inside = d < real_radius[:, None]
    return {
        "precision": float(inside.any(0).mean()),
        "recall": float((d < fake_radius[None, :]).any(1).mean()),
        "density": float(inside.sum(0).mean() / k),
        "coverage": float((d.min(1) < real_radius).mean()),
    }


def class_stats(pred: np.ndarray, ref_labels: np.ndarray, classes: int) -> dict[str, float]:
    eps = 1e-6
    p = np.bincount(ref_labels, minlength=classes) / len(ref_labels)
    q = np.bincount(pred, minlength=classes) / len(pred)
    return {
        # a class counts as covered at >= 10% of its share in the data, so that a handful of
        # classifier mistakes does not count as a mode the generator has
        "class_coverage": float((q >= 0.1 * p).mean()),
        "class_kl": float((p * np.log((p + eps) / (q + eps))).sum()),
    }


def score_images(images: np.ndarray, reference: Dataset, clf: Classifier, k: int = 5) -> dict[str, float]:
    """Label-based metrics of uint8 NHWC `images` against the reference split."""
    if images.shape[1:] != reference.images.shape[1:]:
        raise ValueError(f"images are {images.shape[1:]}, the dataset is {reference.images.shape[1:]}")
    f_real, _ = clf.features_and_classes(reference.images)
    f_fake, pred = clf.features_and_classes(images)
    out = {"fd": frechet_distance(f_real, f_fake)}
    out |= prdc(f_real, f_fake, k)
    if reference.labels is not None:
        out |= class_stats(pred, reference.labels, len(reference.class_names))
    return out


@torch.no_grad()
def vae_stats(encoder, decoder, val: Dataset) -> dict[str, float]:
    """PSNR of reconstructions from the posterior mean, mean KL, active units (Burda et al.)."""
    from vaegan.trainer.data import to_uint8
    from vaegan.trainer.losses import kl_prior

    x = to_tensor_range(val.images)
    mu, logvar = encoder(x)
    rec = to_uint8(decoder(mu)).astype(np.float64)
    mse = ((rec - val.images.astype(np.float64)) ** 2).reshape(len(rec), -1).mean(1)
    psnr = float(np.mean(10 * np.log10(255.0**2 / np.maximum(mse, 1e-10))))
    return {
        "psnr": psnr,
        "kl": float(kl_prior(mu, logvar).mean()),
        "active_units": int((mu.var(0) > 0.01).sum()),
    }
