"""VAE-GAN losses (Larsen et al. 2016) and who they train.

Encoder:       KL prior + reconstruction                  (no GAN gradient)
Decoder:       gamma * reconstruction + w * GAN            (on reconstructions and prior samples)
Discriminator: GAN only                                    (reconstruction never trains it)

Each network's loss is built on detached inputs where another network must not learn from it, so a
single backward per optimiser step routes every gradient to the right place without retain_graph.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from vaegan.trainer.models import VAEGAN


class _ScaleGrad(torch.autograd.Function):
    """Identity forward; multiplies the gradient by `scale` on the way back."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, scale: float) -> torch.Tensor:
        ctx.scale = scale
        return x.view_as(x)

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> tuple[torch.Tensor, None]:
        return grad * ctx.scale, None


def scale_grad(x: torch.Tensor, scale: float) -> torch.Tensor:
    return _ScaleGrad.apply(x, scale)


def kl_prior(mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """KL(q(z|x) || N(0, I)) per sample, summed over latent dims."""
    return 0.5 * (mu.pow(2) + logvar.exp() - 1.0 - logvar).sum(1)


def reparameterize(mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    return mu + torch.randn_like(mu) * (0.5 * logvar).exp()


def d_loss_fn(kind: str, real: torch.Tensor, fake: torch.Tensor) -> torch.Tensor:
    if kind == "hinge":
        return F.relu(1.0 - real).mean() + F.relu(1.0 + fake).mean()
    return F.softplus(-real).mean() + F.softplus(fake).mean()


def g_loss_fn(kind: str, fake: torch.Tensor) -> torch.Tensor:
    return -fake.mean() if kind == "hinge" else F.softplus(-fake).mean()


def diff_augment(x: torch.Tensor, translate: float = 0.125, cutout: float = 0.5) -> torch.Tensor:
    """DiffAugment (Zhao et al. 2020): brightness, contrast, translation, cutout; differentiable.

    Applied to every image the discriminator sees, real and fake alike, so D cannot memorise a
    small dataset and its gradient still reaches the decoder.
    """
    n, _, h, w = x.shape
    dev = x.device
    x = x + (torch.rand(n, 1, 1, 1, device=dev) - 0.5) * 0.5
    mean = x.mean(dim=(1, 2, 3), keepdim=True)
    x = (x - mean) * (torch.rand(n, 1, 1, 1, device=dev) + 0.5) + mean
    # translation: shift by up to `translate` of the size, zero padding
    sh, sw = int(h * translate + 0.5), int(w * translate + 0.5)
    ty = torch.randint(-sh, sh + 1, (n, 1, 1), device=dev)
    tx = torch.randint(-sw, sw + 1, (n, 1, 1), device=dev)
    gy, gx = torch.meshgrid(torch.arange(h, device=dev), torch.arange(w, device=dev), indexing="ij")
    gy = (gy.unsqueeze(0) + ty).clamp(-1, h)  # -1 and h index the zero padding
    gx = (gx.unsqueeze(0) + tx).clamp(-1, w)
    padded = F.pad(x, (1, 1, 1, 1))
    idx_n = torch.arange(n, device=dev).view(n, 1, 1)
    x = padded.permute(0, 2, 3, 1)[idx_n, gy + 1, gx + 1].permute(0, 3, 1, 2)
    # cutout: one square of `cutout` of the size, zeroed
    ch, cw = int(h * cutout + 0.5), int(w * cutout + 0.5)
    oy = torch.randint(0, h, (n, 1, 1), device=dev)
    ox = torch.randint(0, w, (n, 1, 1), device=dev)
    gy, gx = torch.meshgrid(torch.arange(h, device=dev), torch.arange(w, device=dev), indexing="ij")
    inside = ((gy.unsqueeze(0) - oy).abs() <= ch // 4) & ((gx.unsqueeze(0) - ox).abs() <= cw // 4)
    return x * (~inside).unsqueeze(1).to(x.dtype)


def adaptive_weight(g_rec: torch.Tensor, g_gan: torch.Tensor) -> torch.Tensor:
    """Balance GAN against reconstruction at the decoder's last layer (as in latent-diffusion's
    autoencoder loss): w = |grad rec| / |grad gan|, from the two terms' gradients at that layer's
    weight, so neither term drowns the other."""
    return (g_rec.norm() / (g_gan.norm() + 1e-4)).clamp(0.0, 1e4).detach()


def background(x: torch.Tensor) -> torch.Tensor:
    """Each image's background colour: its per-channel median, [N, C, 1, 1]."""
    return x.flatten(2).median(dim=2).values[:, :, None, None]


def foreground_weights(x: torch.Tensor, strength: float, bg: torch.Tensor | None = None) -> torch.Tensor:
    """Per-pixel weights 1 + strength * (distance from the image's background colour, its per-channel
    median, scaled to [0, 1]). Thin strokes cover a few percent of an image: under a plain mean their
    colour costs the decoder almost nothing, and it comes out as the average colour (measured on
    letters64: white letters on the right backgrounds). Mean weight is kept at 1. bg: the images'
    background colours when known (the loop computes them once per data set: a median per batch cost
    a quarter of the VAE step)."""
    bg = background(x) if bg is None else bg
    dist = (x - bg).abs().amax(dim=1, keepdim=True) / 2.0  # [-1, 1] images: at most 1
    w = 1.0 + strength * dist
    return w / w.mean(dim=(1, 2, 3), keepdim=True)


def edge_error(x_rec: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """Squared error of the differences between horizontal and vertical neighbours, per pixel and
    image: [N]. A faint texture on a flat background costs the pixel term its small amplitude squared,
    here about four times that; a smooth shift in colour costs almost nothing."""
    d = x_rec - x  # differencing is linear: the error's neighbour differences are the differences' error
    dx, dy = d[..., :, 1:] - d[..., :, :-1], d[..., 1:, :] - d[..., :-1, :]
    return (dx.pow(2).flatten(1).sum(1) + dy.pow(2).flatten(1).sum(1)) / x[0].numel()


def vae_losses(
    m: VAEGAN,
    x: torch.Tensor,
    *,
    kl_weight: float,
    gamma: float,
    pixel_weight: float,
    use_features: bool,
    train_encoder: bool,
    foreground: float = 0.0,
    edge: float = 0.0,
    bg: torch.Tensor | None = None,
    feature_layer: int = 1,
) -> tuple[dict[str, torch.Tensor], torch.Tensor, torch.Tensor]:
    """Encoder/decoder terms that do not involve the GAN. Returns (losses, z, x_rec).

    The decoder sees gamma * rec; the encoder sees rec with weight 1, by scaling the gradient that
    flows back through z by 1/gamma. foreground > 0 weights the pixel term towards pixels unlike the
    background (foreground_weights); edge > 0 adds edge_error with that weight. feature_layer: D's
    block the Dis_l term compares at (1: its last).
    """
    pixels = x[0].numel()
    mu, logvar = m.encoder(x)
    if not train_encoder:
        mu, logvar = mu.detach(), logvar.detach()
    z = reparameterize(mu, logvar)
    x_rec = m.decoder(scale_grad(z, 1.0 / gamma) if train_encoder else z)
    err = (x_rec - x).pow(2)
    if foreground > 0:
        err = err * foreground_weights(x.float(), foreground, bg).to(err.dtype)
    rec = err.flatten(1).sum(1).mean() / pixels
    if edge > 0:
        rec = rec + edge * edge_error(x_rec, x).mean()
    if use_features:  # Larsen's Dis_l term, with a small pixel term beside it
        rec = pixel_weight * rec
        with torch.no_grad():
            _, f_real = m.discriminator(x, feature_layer)
        _, f_rec = m.discriminator(x_rec, feature_layer)
        rec = rec + (f_rec - f_real).pow(2).flatten(1).mean(1).mean()
    kl = kl_prior(mu, logvar).mean() / pixels
    losses = {"kl": kl, "rec": rec, "total": kl_weight * kl * float(train_encoder) + gamma * rec}
    return losses, z, x_rec


def generator_gan_loss(
    m: VAEGAN, z_rec: torch.Tensor | None, z_prior: torch.Tensor, kind: str, augment: bool
) -> tuple[torch.Tensor, torch.Tensor]:
    """GAN term for the decoder on reconstructions (from detached z) and prior samples.

    Returns (loss, fakes). z_rec is detached here: the GAN never reaches the encoder.
    """
    z = z_prior if z_rec is None else torch.cat([z_rec.detach(), z_prior])
    fake = m.decoder(z)
    logits, _ = m.discriminator(diff_augment(fake) if augment else fake)
    return g_loss_fn(kind, logits), fake


def discriminator_loss(
    m: VAEGAN, real: torch.Tensor, fake: torch.Tensor, kind: str, augment: bool, r1_gamma: float
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """D learns from the GAN loss alone, on detached fakes. Returns the loss and D's mean logit on
    the real images and on the fakes (detached: how well D tells them apart, liveness.py)."""
    fake = fake.detach()
    if r1_gamma > 0:
        real = real.detach().requires_grad_(True)
    real_in = diff_augment(real) if augment else real
    fake_in = diff_augment(fake) if augment else fake
    logits_real, _ = m.discriminator(real_in)
    logits_fake, _ = m.discriminator(fake_in)
    loss = d_loss_fn(kind, logits_real, logits_fake)
    if r1_gamma > 0:
        (grad,) = torch.autograd.grad(logits_real.sum(), real, create_graph=True)
        loss = loss + 0.5 * r1_gamma * grad.pow(2).flatten(1).sum(1).mean()
    return loss, logits_real.detach().float().mean(), logits_fake.detach().float().mean()
