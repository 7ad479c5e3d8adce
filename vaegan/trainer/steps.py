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
    """AveragedModel's multi_avg_fn: one foreach lerp over all of a network's floating tensors (a
    loop of per-tensor ops cost 5-9 ms a step for the two averages on a 64x64 RGB model, 0.7 ms)."""

    @torch.no_grad()
    def avg(ema: list[torch.Tensor], p: list[torch.Tensor], n: torch.Tensor) -> None:
        d = min(decay, (1.0 + float(n)) / (10.0 + float(n)))  # warm-up: early EMA follows the weights
        if torch.is_floating_point(ema[0]):
            torch._foreach_lerp_(ema, p, 1.0 - d)
        else:  # batch norm's integer step counters
            for e, q in zip(ema, p, strict=True):
                e.copy_(e + (q - e) * (1.0 - d))

    return avg


def _adam(params: Any, lr: float, betas: tuple[float, float], device: torch.device) -> torch.optim.Adam:
    """Adam, fused where torch has the kernel: one call per step instead of a dozen small ops per
    tensor (4-11 ms a step for the three networks on a 64x64 RGB model, about 2 ms fused; same update)."""
    return torch.optim.Adam(params, lr=lr, betas=betas, fused=device.type in ("cpu", "cuda"))


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
            ema=AveragedModel(m.decoder, multi_avg_fn=_ema_avg(decay), use_buffers=True),
            ema_enc=AveragedModel(m.encoder, multi_avg_fn=_ema_avg(decay), use_buffers=True),
            opt_e=_adam(m.encoder.parameters(), lr, betas, device),
            opt_g=_adam(m.decoder.parameters(), lr, betas, device),
            opt_d=_adam(m.discriminator.parameters(), float(tc.lr_d or 0.0), betas, device),
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
    fake: torch.Tensor | None = None
    gan_term: torch.Tensor | None = None  # the GAN loss beside the reconstruction terms
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
                losses["gan"] = gan_term = gan
    if fake is None and stage == "vae" and warm_d:  # D learns alongside; the decoder does not see it
        with torch.no_grad(), autocast():
            fake = m.decoder(z_prior)
    st.opt_e.zero_grad(set_to_none=True)
    st.opt_g.zero_grad(set_to_none=True)
    if gan_term is not None:
        losses["gan_w"] = _backward_with_gan(st, g_total, gan_term, tc, world, losses)
        g_total = g_total + losses["gan_w"] * gan_term
    else:
        losses["total"] = g_total
        if not _finite_everywhere(g_total, world):
            raise NonFinite(losses)
        st.scaler.scale(g_total).backward()
    losses["total"] = g_total
    _all_reduce_grads([*m.encoder.parameters(), *m.decoder.parameters()], world)
    if train_encoder:
        st.scaler.step(st.opt_e)
    st.scaler.step(st.opt_g)
    st.ema.update_parameters(m.decoder)
    st.ema_enc.update_parameters(m.encoder)
    return losses, fake


def _backward_with_gan(
    st: TrainState,
    g_total: torch.Tensor,
    gan: torch.Tensor,
    tc: TrainConfig,
    world: int,
    losses: dict[str, torch.Tensor],
) -> torch.Tensor:
    """Backward of g_total + w * gan, the GAN weight w adaptive (losses.adaptive_weight) or fixed;
    returns w.

    One backward per term: the reconstruction terms' gradients are kept aside while the GAN term's
    fill the decoder's, and the two are summed with the weight their norms at the decoder's last
    layer give. Taking those norms with two autograd.grad calls first ran D's backward twice more (a
    tenth of a 64x64 RGB GAN step). The terms' graphs share no activations (the GAN term decodes
    its own batch from detached codes), so two backward calls cost what one over their sum does."""
    fixed = not tc.adaptive_gan_weight
    if not _finite_everywhere(g_total + gan, world):
        raise NonFinite(losses | {"total": g_total + gan})
    if fixed:
        w = torch.as_tensor(float(tc.gan_weight))
        st.scaler.scale(g_total + w * gan).backward()
        return w
    decoder = list(st.models.decoder.parameters())
    last = st.models.decoder.last_layer
    scale = float(st.scaler.get_scale()) if st.scaler.is_enabled() else 1.0
    st.scaler.scale(g_total).backward()  # the decoder sees gamma * rec (vae_losses)
    g_rec = last.grad / (scale * float(tc.gamma)) if last.grad is not None else torch.zeros_like(last)
    rec_grads = [p.grad for p in decoder]
    for p in decoder:
        p.grad = None
    st.scaler.scale(gan).backward()
    g_gan = last.grad / scale if last.grad is not None else torch.zeros_like(last)
    w = tc.gan_weight * adaptive_weight(g_rec, g_gan).clamp(max=tc.adaptive_max)
    if not st.scaler.is_enabled() and not _finite_everywhere(w, world):
        raise NonFinite(losses | {"gan_w": w})  # a scaler skips the step itself (inf gradients)
    for p, r in zip(decoder, rec_grads, strict=True):
        if p.grad is None:
            p.grad = r
        else:
            p.grad.mul_(w)
            if r is not None:
                p.grad.add_(r)
    return w


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
