"""What one training step touches: the state a run saves and resumes (networks, EMA decoder,
optimisers, scaler, step, time spent, budget, stage), and the two optimiser steps of a VAE-GAN
step, each returning its losses. The loop (loop.py) decides which stage runs, the steps run it."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, cast

import torch
import torch.distributed as dist
from torch.optim.swa_utils import AveragedModel

from vaegan.config import ModelConfig, TrainConfig
from vaegan.trainer.liveness import DiscriminatorWatch
from vaegan.trainer.losses import adaptive_weight, discriminator_loss, generator_gan_loss, vae_losses
from vaegan.trainer.models import VAEGAN, Decoder, Encoder, build_models


def _ema_avg(decay: float):
    def avg(ema: torch.Tensor, p: torch.Tensor, n: torch.Tensor) -> torch.Tensor:
        d = min(decay, (1.0 + float(n)) / (10.0 + float(n)))  # warm-up: early EMA follows the weights
        return ema + (p - ema) * (1.0 - d)

    return avg


# ------------------------------------------------------------------------------------ the state
@dataclass
class TrainState:
    """Everything a resumed run needs: networks, their EMAs, optimisers, scaler, the step, the
    training time spent (across resumes), the time budget and the furthest stage reached.

    The run ships the EMA encoder with the EMA decoder: the live encoder is fitted to the live
    decoder, and paired with a decoder averaged over the last thousand steps it reconstructs worse
    than the two averages do together (docs/experiments/colour.md)."""

    models: VAEGAN
    ema: AveragedModel
    ema_enc: AveragedModel
    opt_e: torch.optim.Optimizer
    opt_g: torch.optim.Optimizer
    opt_d: torch.optim.Optimizer
    scaler: torch.amp.GradScaler
    step: int = 0
    elapsed_s: float = 0.0
    budget_s: float = 0.0  # 0: steps decide
    stage: str = ""
    d_watch: DiscriminatorWatch = field(default_factory=DiscriminatorWatch)

    @classmethod
    def create(cls, mc: ModelConfig, tc: TrainConfig, device: torch.device, fp16: bool) -> TrainState:
        m = build_models(mc).to(device)
        m.to(memory_format=torch.channels_last)  # type: ignore[call-overload]  # 1.5x on CPU convs (measured)
        lr, betas, decay = float(tc.lr or 0.0), tc.betas, float(tc.ema_decay or 0.0)
        return cls(
            models=m,
            ema=AveragedModel(m.decoder, avg_fn=_ema_avg(decay), use_buffers=True),
            ema_enc=AveragedModel(m.encoder, avg_fn=_ema_avg(decay), use_buffers=True),
            opt_e=torch.optim.Adam(m.encoder.parameters(), lr=lr, betas=betas),
            opt_g=torch.optim.Adam(m.decoder.parameters(), lr=lr, betas=betas),
            opt_d=torch.optim.Adam(m.discriminator.parameters(), lr=float(tc.lr_d or 0.0), betas=betas),
            scaler=torch.amp.GradScaler("cuda", enabled=fp16),
        )

    def restart_averages(self) -> None:
        """Start the EMAs again from the networks as they are, warm-up included: at the GAN's start
        of a run short for its CPU, so the weights it ships average its GAN steps only."""
        self.ema.n_averaged.zero_()
        self.ema_enc.n_averaged.zero_()

    @property
    def ema_decoder(self) -> Decoder:
        return cast(Decoder, self.ema.module)

    @property
    def ema_encoder(self) -> Encoder:
        return cast(Encoder, self.ema_enc.module)

    def state_dict(self, rng: list[torch.Tensor]) -> dict[str, Any]:
        m = self.models
        return {
            "step": self.step,
            "elapsed_s": self.elapsed_s,
            "budget_s": self.budget_s,
            "stage": self.stage,
            "encoder": m.encoder.state_dict(),
            "decoder": m.decoder.state_dict(),
            "discriminator": m.discriminator.state_dict(),
            "ema": self.ema.state_dict(),
            "ema_encoder": self.ema_enc.state_dict(),
            "opt_e": self.opt_e.state_dict(),
            "opt_g": self.opt_g.state_dict(),
            "opt_d": self.opt_d.state_dict(),
            "scaler": self.scaler.state_dict(),
            "d_watch": [self.d_watch.steps, self.d_watch.dead],
            "rng": rng,
        }

    def load_state_dict(self, st: dict[str, Any]) -> list[torch.Tensor]:
        """Restore everything; returns the saved RNG states (one per rank)."""
        m = self.models
        m.encoder.load_state_dict(st["encoder"])
        m.decoder.load_state_dict(st["decoder"])
        m.discriminator.load_state_dict(st["discriminator"])
        self.ema.load_state_dict(st["ema"])
        if "ema_encoder" in st:
            self.ema_enc.load_state_dict(st["ema_encoder"])
        else:  # a state saved before the encoder had an EMA: it starts from the encoder as saved
            self.ema_enc.update_parameters(m.encoder)
        self.opt_e.load_state_dict(st["opt_e"])
        self.opt_g.load_state_dict(st["opt_g"])
        self.opt_d.load_state_dict(st["opt_d"])
        if st.get("scaler"):
            self.scaler.load_state_dict(st["scaler"])
        self.step = int(st["step"])
        self.elapsed_s = float(st.get("elapsed_s", 0.0))
        self.budget_s = float(st.get("budget_s", 0.0))
        self.stage = str(st.get("stage", ""))
        steps, dead = st.get("d_watch", [0, 0])
        self.d_watch = DiscriminatorWatch(int(steps), int(dead))
        return list(st["rng"])


class NonFinite(Exception):
    """A loss that is NaN or inf on some rank: no step was taken with it."""

    def __init__(self, losses: dict[str, torch.Tensor]):
        self.losses = losses


# ------------------------------------------------------------------------------------ the steps
def generator_step(
    st: TrainState,
    x: torch.Tensor,
    stage: str,
    tc: TrainConfig,
    autocast: Any,
    world: int,
    bg: torch.Tensor | None = None,
    warm_d: bool = False,
) -> tuple[dict[str, torch.Tensor], torch.Tensor | None]:
    """One optimiser step of the encoder (VAE and joint stages) and decoder; returns the losses and
    the decoded prior samples D learns from next (None in the VAE stage unless warm_d: the loop asks
    for them on some VAE steps with tc.d_warmup). bg: the batch's background colours for the
    foreground weight (computed from x when None)."""
    m = st.models
    use_gan = stage in ("adversarial", "joint", "gan")
    train_encoder = stage in ("vae", "joint")
    z_prior = torch.randn(x.shape[0], m.cfg.latent_dim or 0, device=x.device)
    fake = None
    m.discriminator.requires_grad_(False)
    with autocast():
        if stage == "gan":
            g_total, fake = generator_gan_loss(m, None, z_prior, str(tc.gan_loss), bool(tc.diffaug))
            losses = {"gan": g_total}
        else:
            losses, z, _ = vae_losses(
                m,
                x,
                kl_weight=float(tc.kl_weight or 0.0),
                gamma=tc.gamma,
                pixel_weight=float(tc.pixel_weight or 0.0),
                use_features=use_gan,
                train_encoder=train_encoder,
                foreground=float(tc.foreground_weight or 0.0),
                edge=float(tc.edge_weight or 0.0),
                bg=bg,
                feature_layer=int(tc.feature_layer or 1),
            )
            g_total = losses.pop("total")
            if use_gan:
                gan, fake = generator_gan_loss(
                    m, z if tc.gan_on_recon else None, z_prior, str(tc.gan_loss), bool(tc.diffaug)
                )
                w: float | torch.Tensor = tc.gan_weight
                if tc.adaptive_gan_weight:
                    w = w * adaptive_weight(losses["rec"], gan, m.decoder.last_layer).clamp(
                        max=tc.adaptive_max
                    )
                losses["gan"], losses["gan_w"] = gan, torch.as_tensor(w)
                g_total = g_total + w * gan
    if fake is None and stage == "vae" and warm_d:  # D learns alongside; the decoder does not see it
        with torch.no_grad(), autocast():
            fake = m.decoder(z_prior)
    losses["total"] = g_total
    if not _finite_everywhere(g_total, world):
        raise NonFinite(losses)
    st.opt_e.zero_grad(set_to_none=True)
    st.opt_g.zero_grad(set_to_none=True)
    st.scaler.scale(g_total).backward()
    _all_reduce_grads([*m.encoder.parameters(), *m.decoder.parameters()], world)
    if train_encoder:
        st.scaler.step(st.opt_e)
    st.scaler.step(st.opt_g)
    st.ema.update_parameters(m.decoder)
    st.ema_enc.update_parameters(m.encoder)
    return losses, fake


def discriminator_step(
    st: TrainState, x: torch.Tensor, fake: torch.Tensor, tc: TrainConfig, autocast: Any, world: int
) -> dict[str, torch.Tensor]:
    """One optimiser step of D on real images and the detached fakes; returns its loss."""
    m = st.models
    m.discriminator.requires_grad_(True)
    with autocast():
        d_loss, d_real, d_fake = discriminator_loss(
            m, x, fake, str(tc.gan_loss), bool(tc.diffaug), float(tc.r1_gamma or 0.0)
        )
    if not _finite_everywhere(d_loss, world):
        raise NonFinite({"d": d_loss})
    st.opt_d.zero_grad(set_to_none=True)
    st.scaler.scale(d_loss).backward()
    _all_reduce_grads(list(m.discriminator.parameters()), world)
    st.scaler.step(st.opt_d)
    return {"d": d_loss, "d_real": d_real, "d_fake": d_fake}


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


def is_finite(*values: torch.Tensor) -> bool:
    return all(bool(torch.isfinite(v).all()) for v in values)


def _finite_everywhere(loss: torch.Tensor, world: int) -> bool:
    ok = torch.tensor([1.0 if is_finite(loss) else 0.0], device=loss.device)
    if world > 1:
        dist.all_reduce(ok, op=dist.ReduceOp.MIN)
    return bool(ok.item() == 1.0)
