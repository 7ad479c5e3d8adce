"""The run directory: weights, config, resumable train state. Every file is written atomically.

- model.safetensors   encoder.* and decoder.* (their EMAs): what eval and export read
- config.json         RunConfig: everything needed to rebuild the networks
- train_state.pt      all networks, optimisers, step and RNG, self-contained so a kill between two
                      file renames can never pair weights of one step with optimisers of another
- prior.npz           the latent prior fitted to the training images' posteriors at the end of the
                      run (core/prior.py); sampling, eval and export draw latents from it
"""

from __future__ import annotations

import dataclasses
import io
import json
import os
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors import SafetensorError
from safetensors.torch import load as st_load
from safetensors.torch import save as st_save

from vaegan.config import RunConfig
from vaegan.core.errors import CheckpointError, ConfigError
from vaegan.core.io import is_temp, write_bytes, write_json
from vaegan.core.prior import PRIOR_FILE, LatentPrior, fit_prior
from vaegan.trainer.models import VAEGAN, Decoder, Encoder, build_models

WEIGHTS = "model.safetensors"
PRIOR = PRIOR_FILE
CONFIG = "config.json"
STATE = "train_state.pt"


def is_run_dir(path: Path) -> bool:
    """Whether `path` holds a run `vaegan train` wrote: a config.json that is a vaegan run config."""
    try:
        RunConfig.load(path / CONFIG)
    except (ConfigError, OSError, ValueError):  # absent, not JSON, not text, another tool's config
        return False
    return True


def check_run_dir(out: Path, resume: bool) -> None:
    """Refuse an --out that training would damage, before anything is written: a new run goes into
    a new or empty directory, a run directory is continued only with --resume, and nothing vaegan
    did not write is ever replaced (a user's config.json or metrics.jsonl included)."""
    if out.is_symlink() and not out.exists():
        raise CheckpointError(
            f"--out {out} is a symbolic link to {os.readlink(out)}, which does not exist: create that "
            "directory or choose another --out"
        )
    if out.exists() and not out.is_dir():
        raise CheckpointError(f"--out {out} exists and is not a directory: choose another --out")
    if resume:
        if not is_run_dir(out):
            raise CheckpointError(
                f"{out} is not a run directory of `vaegan train` (no run's {CONFIG}): nothing to resume; "
                "start a new run with --out"
            )
        return
    if not out.exists() or all(is_temp(p.name) for p in out.iterdir()):  # new, empty, or killed mid-write
        return
    if is_run_dir(out):
        raise CheckpointError(
            f"{out} already holds a run: pass --resume {out} to continue it, or choose another --out"
        )
    raise CheckpointError(
        f"{out} is not empty and is not a vaegan run directory: choose a new or empty --out "
        "(vaegan never writes over files it did not write)"
    )


def save_weights(path: Path, encoder: Encoder, decoder: Decoder, cfg: RunConfig, step: int) -> None:
    tensors = {f"encoder.{k}": v.detach().cpu().contiguous() for k, v in encoder.state_dict().items()}
    tensors |= {f"decoder.{k}": v.detach().cpu().contiguous() for k, v in decoder.state_dict().items()}
    meta = {"step": str(step), "config": json.dumps(cfg.to_dict()), "format": "vaegan-weights-1"}
    write_bytes(path, st_save(tensors, metadata=meta))


def save_run(out: Path, cfg: RunConfig, encoder: Encoder, decoder: Decoder, state: dict[str, Any]) -> None:
    """Write config.json, then train_state.pt, then model.safetensors (the encoder and decoder given:
    the run's EMAs), each atomic on its own, so a kill at any point leaves a config beside any state
    it could resume."""
    write_json(out / CONFIG, cfg.to_dict())
    buf = io.BytesIO()
    torch.save(state, buf)
    write_bytes(out / STATE, buf.getvalue())
    save_weights(out / WEIGHTS, encoder, decoder, cfg, int(state["step"]))


def load_state(run_dir: Path) -> dict[str, Any]:
    path = run_dir / STATE
    if not path.exists():
        raise CheckpointError(f"{path} not found: nothing to resume; start a new run without --resume")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 - torch raises many types for a damaged pickle/zip
        raise CheckpointError(f"{path} is damaged ({type(e).__name__}): start a new run") from e


def load_model(run_dir: str | Path, device: str = "cpu") -> tuple[RunConfig, VAEGAN]:
    """Rebuild encoder and (EMA) decoder from a run dir for evaluation and export."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise CheckpointError(f"{run_dir} is not a directory: pass the --out dir of `vaegan train`")
    weights = run_dir / WEIGHTS
    if not weights.exists():
        hint = " (training has not reached its first checkpoint)" if (run_dir / STATE).exists() else ""
        raise CheckpointError(f"{weights} not found{hint}: train first with `vaegan train --out {run_dir}`")
    cfg = RunConfig.load(run_dir / CONFIG)
    try:
        tensors = st_load(weights.read_bytes())
    except (SafetensorError, OSError) as e:
        raise CheckpointError(f"{weights} is damaged ({e}): re-run training or restore the file") from e
    models = build_models(cfg.model)
    for name, module in (("encoder", models.encoder), ("decoder", models.decoder)):
        sd = {k[len(name) + 1 :]: v for k, v in tensors.items() if k.startswith(name + ".")}
        try:
            module.load_state_dict(sd, strict=True)
        except RuntimeError as e:
            first = str(e).strip().splitlines()[0][:200]
            raise CheckpointError(
                f"{weights} does not match {run_dir / CONFIG} ({first}): the config was edited or the files "
                "come from different runs"
            ) from e
    return dataclasses.replace(cfg, model=models.cfg), models.to(device).eval()


@torch.no_grad()
def fit_run_prior(
    encoder: Encoder,
    images: Any,
    seed: int,
    labels: Any = None,
    class_names: list[str] | None = None,
    batch: int = 256,
) -> LatentPrior:
    """The mixture prior of a trained encoder: fitted to its posterior means of `images` (uint8 NHWC,
    the training split), one mixture per class where `labels` (indices into class_names) are given."""
    from vaegan.trainer.data import to_tensor_range

    was = encoder.training
    encoder.eval()
    device = next(encoder.parameters()).device
    mu = torch.cat(
        [
            encoder(to_tensor_range(images[i : i + batch]).to(device))[0].float().cpu()
            for i in range(0, len(images), batch)
        ]
    )
    encoder.train(was)
    if labels is None:
        return fit_prior(mu.double().numpy(), seed)
    return fit_prior(mu.double().numpy(), seed, labels=np.asarray(labels), class_names=class_names)


def load_prior(run_dir: str | Path) -> LatentPrior | None:
    """The run's fitted prior, or None (a run from before priors were fitted, or mode gan)."""
    path = Path(run_dir) / PRIOR
    if not path.exists():
        return None
    try:
        dim = RunConfig.load(Path(run_dir) / CONFIG).model.latent_dim if is_run_dir(Path(run_dir)) else None
        return LatentPrior.from_bytes(path.read_bytes(), str(path), latent_dim=dim)
    except Exception as e:  # noqa: BLE001 - ArtifactCorrupt or a read error: say what to do
        raise CheckpointError(
            f"{path} is damaged ({e}): delete it and run `vaegan eval` to refit it"
        ) from None
