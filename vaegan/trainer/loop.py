"""The VAE-GAN training loop: one function, plain data in, a run directory out.

Stages over the step budget (the seed's recipe): VAE pretraining -> adversarial warm-up (encoder
frozen, decoder learns from D) -> joint optimisation of all three networks. `mode="vae"` and
`mode="gan"` train the ablations on the same budget.

Scale-out: under `torchrun`, every rank computes on its own shard and gradients are averaged
(all-reduce) before each optimiser step, so every rank holds the same weights; rank 0 alone writes.
Gradients are reduced by hand rather than through DistributedDataParallel because a GAN step runs
the same network several times with other networks frozen, which DDP's per-forward hooks do not model.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import numpy as np
import torch
import torch.distributed as dist
from torch.optim.swa_utils import AveragedModel

from vaegan import __version__
from vaegan.config import RunConfig
from vaegan.core.errors import CheckpointError, TrainingDiverged
from vaegan.core.images import save_grid
from vaegan.core.io import append_line, read_jsonl, remove_stale_temps, write_bytes, write_json
from vaegan.trainer import checkpoint as ckpt
from vaegan.trainer.data import load_dataset, to_tensor_range, to_uint8
from vaegan.trainer.losses import adaptive_weight, discriminator_loss, generator_gan_loss, vae_losses
from vaegan.trainer.models import Decoder, build_models

log = logging.getLogger("vaegan.train")


@dataclass
class TrainResult:
    out: Path
    step: int
    total_steps: int
    seconds: float
    last: dict[str, float]


def stage_at(step: int, total: int, cfg) -> str:
    if cfg.mode != "vaegan":
        return cfg.mode
    f = step / max(1, total)
    if f < cfg.vae_fraction:
        return "vae"
    if f < cfg.vae_fraction + cfg.adv_fraction:
        return "adversarial"
    return "joint"


def pick_device() -> torch.device:
    if torch.cuda.is_available():
        return torch.device("cuda", int(os.environ.get("LOCAL_RANK", 0)))
    return torch.device("cpu")


def autocast_for(device: torch.device, amp: str):
    """bf16 where the GPU has it, fp16 (with a grad scaler) otherwise; off on CPU unless asked."""
    if amp == "off" or (amp == "auto" and device.type != "cuda"):
        return None
    if amp == "auto":
        amp = "bf16" if torch.cuda.is_bf16_supported() else "fp16"
    return torch.bfloat16 if amp == "bf16" else torch.float16


def _ema_avg(decay: float):
    def avg(ema: torch.Tensor, p: torch.Tensor, n: torch.Tensor) -> torch.Tensor:
        d = min(decay, (1.0 + float(n)) / (10.0 + float(n)))  # warm-up: early EMA follows the weights
        return ema + (p - ema) * (1.0 - d)

    return avg


def _all_reduce_grads(params: list[torch.nn.Parameter], world: int) -> None:
    grads = [p.grad for p in params if p.grad is not None]
    if world == 1 or not grads:
        return
    flat = torch.cat([g.reshape(-1) for g in grads])
    dist.all_reduce(flat)
    flat /= world
    i = 0
    for g in grads:
        g.copy_(flat[i : i + g.numel()].view_as(g))
        i += g.numel()


def _is_finite(*values: torch.Tensor) -> bool:
    return all(bool(torch.isfinite(v).all()) for v in values)


class _Progress:
    """tqdm bar with live losses on a terminal; plain log lines otherwise (CI, files)."""

    def __init__(self, total: int, start: int, enabled: bool):
        self.bar, self.enabled = None, enabled
        if enabled and sys.stderr.isatty():
            from tqdm import tqdm

            self.bar = tqdm(total=total, initial=start, unit="step", dynamic_ncols=True)

    def update(self, row: dict[str, Any], log_line: bool) -> None:
        if self.bar is not None:
            self.bar.update(1)
            if log_line:
                self.bar.set_postfix({k: f"{v:.3g}" for k, v in row.items() if k.startswith("loss_")})
        elif log_line and self.enabled:
            losses = " ".join(f"{k[5:]}={v:.4g}" for k, v in row.items() if k.startswith("loss_"))
            log.info(
                "step %d/%d epoch %d %s %s %.0f img/s",
                row["step"],
                row["total_steps"],
                row["epoch"],
                row["stage"],
                losses,
                row["imgs_per_s"],
            )

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def train(
    cfg: RunConfig,
    out: str | Path,
    resume: bool = False,
    progress: bool = True,
    infer: set[str] | frozenset[str] = frozenset(),
) -> TrainResult:
    """Train per `cfg` into `out`. With resume, continue from out/train_state.pt.

    infer: model fields to take from the data instead of cfg: "channels" (grey folder -> 1, colour
    -> 3) and "image_size" (the images' own square size; refused with one line if there is none).
    """
    out = Path(out)
    tc, mc = cfg.train.validate(), cfg.model
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    device = pick_device()
    owns_group = world > 1 and not dist.is_initialized()
    if owns_group:
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    if device.type == "cuda":
        torch.cuda.set_device(device)
    is_main = rank == 0

    # ---- data
    infer = frozenset() if resume else frozenset(infer)
    data = load_dataset(
        tc.data,
        None if "image_size" in infer else mc.image_size,
        None if "channels" in infer else mc.channels,
    )
    mc.image_size, mc.channels = data.images.shape[1], data.images.shape[-1]
    mc.num_classes = len(data.class_names)
    mc.validate()
    cfg.data_key, cfg.class_names, cfg.vaegan_version = data.key, data.class_names, __version__
    train_set, val_set = data.split(tc.val_fraction, tc.seed)
    x_all = to_tensor_range(train_set.images).to(device)
    n_train = len(x_all)
    per_step = tc.batch_size * world
    if n_train < per_step:
        raise CheckpointError(
            f"{n_train} training images is fewer than one batch ({tc.batch_size} x {world} ranks): "
            "lower --batch-size or add images"
        )
    steps_per_epoch = n_train // per_step
    total = tc.max_steps or tc.epochs * steps_per_epoch

    # ---- models, optimisers, EMA
    torch.manual_seed(tc.seed)
    m = build_models(mc).to(device)
    opt_e = torch.optim.Adam(m.encoder.parameters(), lr=tc.lr, betas=tc.betas)
    opt_g = torch.optim.Adam(m.decoder.parameters(), lr=tc.lr, betas=tc.betas)
    opt_d = torch.optim.Adam(m.discriminator.parameters(), lr=tc.lr_d, betas=tc.betas)
    ema = AveragedModel(m.decoder, avg_fn=_ema_avg(tc.ema_decay), use_buffers=True)

    def ema_decoder() -> Decoder:
        return cast(Decoder, ema.module)

    start = 0
    if resume and not (out / ckpt.STATE).exists():
        log.info("%s has no checkpoint yet (killed before the first one): starting from step 0", out)
        resume = False
    if resume:
        st = ckpt.load_state(out)
        m.encoder.load_state_dict(st["encoder"])
        m.decoder.load_state_dict(st["decoder"])
        m.discriminator.load_state_dict(st["discriminator"])
        ema.load_state_dict(st["ema"])
        opt_e.load_state_dict(st["opt_e"])
        opt_g.load_state_dict(st["opt_g"])
        opt_d.load_state_dict(st["opt_d"])
        torch.set_rng_state(st["rng"][rank] if rank < len(st["rng"]) else st["rng"][0])
        start = int(st["step"])
        if is_main:  # drop log lines the killed run wrote after its last checkpoint
            rows = [r for r in read_jsonl(out / "metrics.jsonl") if r.get("step", 0) <= start]
            write_bytes(out / "metrics.jsonl", "".join(json.dumps(r) + "\n" for r in rows).encode())
    else:
        torch.manual_seed(tc.seed + 1 + rank)  # different noise per rank, same weights
    if is_main:
        out.mkdir(parents=True, exist_ok=True)
        (out / "samples").mkdir(exist_ok=True)
        for p in remove_stale_temps(out):  # a write cut short by a kill: never part of the run
            log.info("removed %s, left by a run that was killed mid-write", p.name)
        if not resume:
            (out / "metrics.jsonl").unlink(missing_ok=True)
            write_json(out / ckpt.CONFIG, cfg.to_dict())  # before any state exists to resume
        for s in data.skipped:
            append_line(out / "skipped_files.txt", s)

    amp_dtype = autocast_for(device, tc.amp)
    scaler = torch.amp.GradScaler("cuda", enabled=amp_dtype == torch.float16)

    def autocast():
        if amp_dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(device.type, dtype=amp_dtype)

    g_fixed = torch.Generator().manual_seed(1234)
    z_fixed = torch.randn(64, mc.latent_dim, generator=g_fixed).to(device)
    x_val_fixed = to_tensor_range(val_set.images[:32]).to(device)

    def state_dict(step: int) -> dict[str, Any]:
        rng = [torch.get_rng_state()]
        if world > 1:
            gathered: list[Any] = [None] * world
            dist.all_gather_object(gathered, rng[0])
            rng = gathered
        return {
            "step": step,
            "encoder": m.encoder.state_dict(),
            "decoder": m.decoder.state_dict(),
            "discriminator": m.discriminator.state_dict(),
            "ema": ema.state_dict(),
            "opt_e": opt_e.state_dict(),
            "opt_g": opt_g.state_dict(),
            "opt_d": opt_d.state_dict(),
            "rng": rng,
        }

    def save(step: int) -> None:
        st = state_dict(step)  # every rank joins the gather
        if is_main:
            ckpt.save_run(out, cfg, m, ema_decoder(), st)
        if world > 1:
            dist.barrier()

    def write_samples(epoch: int) -> None:
        if not is_main:
            return
        dec = ema_decoder()
        was = m.encoder.training
        dec.eval()
        m.encoder.eval()
        with torch.no_grad():
            prior = to_uint8(dec(z_fixed))
            mu, _ = m.encoder(x_val_fixed)
            rec = to_uint8(dec(mu))
        m.encoder.train(was)
        save_grid(out / "samples" / f"prior_epoch{epoch:03d}.png", prior, cols=8)
        pairs = np.stack([to_uint8(x_val_fixed), rec], 1).reshape(-1, *rec.shape[1:])
        save_grid(out / "samples" / f"recon_epoch{epoch:03d}.png", pairs, cols=8)

    # ---- loop
    bar = _Progress(total, start, progress and is_main)
    params_e, params_g, params_d = (list(n.parameters()) for n in (m.encoder, m.decoder, m.discriminator))
    t0, t_log = time.time(), time.time()
    last: dict[str, float] = {}
    m.train()
    step = start
    try:
        while step < total:
            epoch, i = divmod(step, steps_per_epoch)
            perm = torch.randperm(n_train, generator=torch.Generator().manual_seed(tc.seed * 100003 + epoch))
            idx = perm[(i * world + rank) * tc.batch_size : (i * world + rank + 1) * tc.batch_size].to(device)
            x = x_all[idx]
            stage = stage_at(step, total, tc)
            use_gan = stage in ("adversarial", "joint", "gan")
            # Encoder and decoder may run at their own rate once the GAN is on (adv_lr): a lower one
            # keeps D from collapsing, but measured on digits it cost more than it bought
            # (docs/quality.md). D trains in the GAN stages only, always at lr_d.
            for opt in (opt_e, opt_g):
                for group in opt.param_groups:
                    group["lr"] = tc.gan_lr if use_gan else tc.lr
            train_encoder = stage in ("vae", "joint")
            z_prior = torch.randn(x.shape[0], mc.latent_dim, device=device)

            # -- encoder + decoder
            m.discriminator.requires_grad_(False)
            with autocast():
                if stage == "gan":
                    losses = {}
                    g_total, fake = generator_gan_loss(m, None, z_prior, tc.gan_loss, tc.diffaug)
                    losses["gan"] = g_total
                else:
                    losses, z, _ = vae_losses(
                        m,
                        x,
                        kl_weight=tc.kl_weight,
                        gamma=tc.gamma,
                        pixel_weight=tc.pixel_weight,
                        use_features=use_gan,
                        train_encoder=train_encoder,
                    )
                    g_total = losses["total"]
                    if use_gan:
                        z_rec = z if tc.gan_on_recon else None
                        gan, fake = generator_gan_loss(m, z_rec, z_prior, tc.gan_loss, tc.diffaug)
                        w: float | torch.Tensor = tc.gan_weight
                        if tc.adaptive_gan_weight:
                            w = w * adaptive_weight(losses["rec"], gan, m.decoder.last_layer).clamp(
                                max=tc.adaptive_max
                            )
                        losses["gan"], losses["gan_w"] = gan, torch.as_tensor(w)
                        g_total = g_total + w * gan
            if not _finite_everywhere(g_total, world):
                _diverged(save, step, stage, losses, out if is_main else None)
            opt_e.zero_grad(set_to_none=True)
            opt_g.zero_grad(set_to_none=True)
            scaler.scale(g_total).backward()
            _all_reduce_grads(params_e + params_g, world)
            if train_encoder:
                scaler.step(opt_e)
            scaler.step(opt_g)
            ema.update_parameters(m.decoder)

            # -- discriminator
            if use_gan:
                m.discriminator.requires_grad_(True)
                with autocast():
                    d_loss = discriminator_loss(m, x, fake, tc.gan_loss, tc.diffaug, tc.r1_gamma)
                if not _finite_everywhere(d_loss, world):
                    _diverged(save, step, stage, {"d": d_loss}, out if is_main else None)
                opt_d.zero_grad(set_to_none=True)
                scaler.scale(d_loss).backward()
                _all_reduce_grads(params_d, world)
                scaler.step(opt_d)
                losses["d"] = d_loss
            scaler.update()
            step += 1

            log_now = step % tc.log_every == 0 or step == total
            row: dict[str, Any] = {"step": step, "total_steps": total, "epoch": epoch, "stage": stage}
            if log_now or bar.bar is not None:
                row |= {f"loss_{k}": float(v.detach()) for k, v in losses.items() if k != "total"}
                row["loss_total"] = float(g_total.detach())
            row["imgs_per_s"] = tc.log_every * per_step / max(1e-9, time.time() - t_log) if log_now else 0.0
            if log_now:
                t_log = time.time()
                row["time_s"] = round(time.time() - t0, 2)
                last = {k: float(v) for k, v in row.items() if k.startswith("loss_")}
                if is_main:
                    append_line(out / "metrics.jsonl", json.dumps(row))
            bar.update(row, log_now)
            end_of_epoch = step % steps_per_epoch == 0 or step == total
            if step % tc.checkpoint_every == 0 or end_of_epoch:
                save(step)
            if end_of_epoch:
                write_samples(math.ceil(step / steps_per_epoch))
    finally:
        bar.close()
    if step == start:  # nothing left to do (resumed a finished run): still leave a complete run dir
        save(step)
    if owns_group:
        # Every rank leaves together and closes its connections itself: a rank that just exits
        # can make gloo's reader thread in the other one throw "Connection closed by peer" and
        # abort it (SIGABRT), failing a finished run.
        dist.barrier()
        dist.destroy_process_group()
    return TrainResult(out, step, total, time.time() - t0, last)


def _finite_everywhere(loss: torch.Tensor, world: int) -> bool:
    ok = torch.tensor([1.0 if _is_finite(loss) else 0.0], device=loss.device)
    if world > 1:
        dist.all_reduce(ok, op=dist.ReduceOp.MIN)
    return bool(ok.item() == 1.0)


def _diverged(save, step: int, stage: str, losses: dict[str, torch.Tensor], out: Path | None) -> None:
    """Save the last good weights (no step was taken with the bad loss) and stop with a clear message."""
    save(step)
    bad = ", ".join(f"{k}={float(v.detach()):.3g}" for k, v in losses.items() if not _is_finite(v)) or "loss"
    raise TrainingDiverged(
        f"training diverged at step {step} ({stage} stage): {bad}. The last good state (step {step}) is "
        f"saved; resume with `vaegan train --resume {out}` and a lower --lr, or raise --gamma"
    )
