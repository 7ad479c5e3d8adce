"""How an export scores its decoders when they do not come from a vaegan run: in the evaluation
network trained on the calibration images (vaegan.trainer.metrics, as `vaegan eval` scores a run),
or, without images, as drift from the fp32 decoder's own samples."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

Scorer = Callable[[np.ndarray], dict[str, Any]]  # uint8 images -> quality metrics


def classifier_scorer(data: Any) -> tuple[Scorer, str]:
    """Calibration images: vaegan's evaluation network trained on them (on their labels when the
    folder has subfolders, label-free otherwise), as `vaegan eval` scores a run."""
    from vaegan.trainer.evaluate import space_name
    from vaegan.trainer.metrics import get_classifier, score_images

    train, _ = data.split(0.1, 0)
    trained: list[Any] = []  # trained when the first decoder is scored, after every check has passed

    def scorer(images: np.ndarray) -> dict[str, Any]:
        if not trained:
            trained.append(get_classifier(data))
        return score_images(images, train, trained[0])

    return scorer, space_name(data) + ", of the calibration images"


def drift_scorer(reference: np.ndarray | None) -> tuple[Scorer, str]:
    """No calibration images: FD and precision/recall/coverage of every precision against the fp32
    decoder's own samples on the same latents, in the space of their pixels' first principal
    components (at most 32x32 each). It measures drift from fp32, not quality: without real images
    nothing can."""
    from vaegan.trainer.metrics import frechet_distance, prdc

    state: dict[str, Any] = {}

    def small(images: np.ndarray) -> np.ndarray:
        h, w = images.shape[1:3]
        sh, sw = max(1, h // 32), max(1, w // 32)
        x = images[:, : h // sh * sh, : w // sw * sw].astype(np.float64) / 255.0
        x = x.reshape(len(x), h // sh, sh, w // sw, sw, -1).mean((2, 4))
        return x.reshape(len(x), -1)

    def fit(ref: np.ndarray) -> None:
        x = small(ref)
        mean = x.mean(0)
        _, _, vt = np.linalg.svd(x - mean, full_matrices=False)
        state.update(mean=mean, basis=vt[: min(64, len(x) - 1)], ref=(x - mean) @ vt[: min(64, len(x) - 1)].T)

    if reference is not None:
        fit(reference)

    def scorer(images: np.ndarray) -> dict[str, Any]:
        if not state:  # the first images scored (fp32) become the reference
            fit(images)
        f = (small(images) - state["mean"]) @ state["basis"].T
        return {"fd": frechet_distance(state["ref"], f)} | prdc(state["ref"], f, 5)

    where = "the calibration images" if reference is not None else "the fp32 decoder's samples"
    return scorer, f"pca (label-free: principal components of {where}' pixels)"
