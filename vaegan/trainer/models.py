"""Encoder, decoder (generator) and discriminator of the VAE-GAN.

Export-friendly by construction: the decoder is nearest-upsample + 3x3 conv + batch norm + ReLU,
no ConvTranspose (checkerboard artefacts, poor INT8 on TensorRT) and no GroupNorm or attention
(FP16 overflow, slow on edge devices). Batch norm folds into the convs at export.
"""

from __future__ import annotations

import dataclasses

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils.parametrizations import spectral_norm

from vaegan.config import ModelConfig

LOGVAR_MIN, LOGVAR_MAX = -30.0, 20.0


def _widths(cfg: ModelConfig, width: int | None = None) -> list[int]:
    """Channels per resolution, from 4x4 up to the image: width * 2^k ... width."""
    k, w = cfg.num_blocks, int(width or cfg.width or 0)
    return [w * 2 ** (k - i) for i in range(k + 1)]


class Encoder(nn.Module):
    """Image in [-1, 1], NCHW -> (mu, logvar)."""

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        w = _widths(cfg)[::-1]  # image resolution first
        layers: list[nn.Module] = [nn.Conv2d(cfg.channels, w[0], 3, 1, 1), nn.LeakyReLU(0.2)]
        for c_in, c_out in zip(w[:-1], w[1:], strict=True):
            layers += [nn.Conv2d(c_in, c_out, 4, 2, 1, bias=False), nn.BatchNorm2d(c_out), nn.LeakyReLU(0.2)]
        self.features = nn.Sequential(*layers)
        self.head = nn.Linear(w[-1] * 16, 2 * int(cfg.latent_dim or 0))

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        mu, logvar = self.head(self.features(x).flatten(1)).chunk(2, dim=1)
        return mu, logvar.clamp(LOGVAR_MIN, LOGVAR_MAX)


class Decoder(nn.Module):
    """Latent z -> image in [-1, 1], NCHW."""

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        w = _widths(cfg)
        self.seed_channels = w[0]
        self.fc = nn.Linear(int(cfg.latent_dim or 0), w[0] * 16)
        blocks: list[nn.Module] = [nn.BatchNorm2d(w[0]), nn.ReLU()]
        for c_in, c_out in zip(w[:-1], w[1:], strict=True):
            blocks += [
                nn.Upsample(scale_factor=2, mode="nearest"),
                nn.Conv2d(c_in, c_out, 3, 1, 1, bias=False),
                nn.BatchNorm2d(c_out),
                nn.ReLU(),
            ]
        self.blocks = nn.Sequential(*blocks)
        self.to_image = nn.Conv2d(w[-1], cfg.channels, 3, 1, 1)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        h = self.fc(z).view(-1, self.seed_channels, 4, 4)
        if not self.training:  # the graph export traces and runtimes run: Upsample -> Conv
            return torch.tanh(self.to_image(self.blocks(h)))
        norm, act, *layers = self.blocks
        h = act(norm(h))
        for i in range(0, len(layers), 4):  # (Upsample, Conv2d, BatchNorm2d, ReLU) per block
            conv, norm, act = layers[i + 1 : i + 4]
            assert isinstance(conv, nn.Conv2d)
            h = act(norm(upsample_conv(h, conv.weight, conv.bias)))
        return torch.tanh(self.to_image(h))

    @property
    def last_layer(self) -> torch.Tensor:
        """The weight the adaptive GAN weight measures gradient norms at."""
        return self.to_image.weight


def upsample_conv(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None = None) -> torch.Tensor:
    """Nearest 2x upsampling then a 3x3 conv (padding 1), computed at the input's resolution.

    Over the upsampled image, a 3x3 window reads a 2x2 window of the input, with the taps summed
    where two of them read the same input pixel: output row 2p reads input rows p-1, p with taps
    (w0, w1 + w2), row 2p - 1 reads rows p-1, p with (w0 + w1, w2); columns alike. One 2x2 conv with
    the four phases' kernels stacked computes them all: 16 multiply-adds per input and output channel
    pair and input pixel instead of 36 (a CPU training step is bound by these convs). The same
    function and gradients as Upsample -> Conv2d, to float rounding.
    """

    def split(k: torch.Tensor, dim: int) -> tuple[torch.Tensor, torch.Tensor]:  # (odd, even) phase
        t0, t1, t2 = k.unbind(dim)
        return torch.stack([t0 + t1, t2], dim), torch.stack([t0, t1 + t2], dim)

    kernels = torch.cat([k for rows in split(weight, 2) for k in split(rows, 3)])
    y = F.conv2d(x, kernels, None if bias is None else bias.repeat(4), padding=1)  # [N, 4C, H+1, W+1]
    n, _, h, w = x.shape
    c = weight.shape[0]
    # y's pixel (p, q) holds output pixels (2p - 1, 2q - 1), (2p - 1, 2q), (2p, 2q - 1), (2p, 2q):
    # interleaved they are the image with a pixel more at each edge, cropped. Plain copies: one
    # strided view of the phases costs slow gathers and a scatter in its gradient.
    y = y.permute(0, 2, 3, 1).reshape(n, h + 1, w + 1, 2, 2 * c).transpose(2, 3)
    big = y.reshape(n, 2 * h + 2, 2 * w + 2, c)[:, 1 : 2 * h + 1, 1 : 2 * w + 1]
    return big.permute(0, 3, 1, 2).contiguous(memory_format=torch.channels_last)


class Discriminator(nn.Module):
    """Image -> (logits [N], features of a conv block for the learned-similarity loss: the last
    (feature_layer 1) or one before it)."""

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        w = _widths(cfg, cfg.d_width)[::-1]
        layers: list[nn.Module] = [spectral_norm(nn.Conv2d(cfg.channels, w[0], 3, 1, 1)), nn.LeakyReLU(0.2)]
        for c_in, c_out in zip(w[:-1], w[1:], strict=True):
            layers += [spectral_norm(nn.Conv2d(c_in, c_out, 4, 2, 1)), nn.LeakyReLU(0.2)]
        # Dis_l: a conv block's activations; they carry layout and stroke, not just "real"
        self.features = nn.Sequential(*layers)
        self.head = spectral_norm(nn.Linear(w[-1] * 16, 1))

    def forward(self, x: torch.Tensor, feature_layer: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
        blocks = len(self.features) // 2
        if not 1 <= feature_layer <= blocks:
            raise ValueError(f"feature_layer must be 1..{blocks} for this discriminator, got {feature_layer}")
        f = picked = x
        for block in range(blocks):  # (conv, LeakyReLU) pairs
            f = self.features[2 * block + 1](self.features[2 * block](f))
            if block == blocks - feature_layer:
                picked = f
        return self.head(f.flatten(1)).squeeze(1), picked


class VAEGAN(nn.Module):
    """The three networks together, plus the EMA decoder that export uses."""

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.cfg = cfg
        self.encoder = Encoder(cfg)
        self.decoder = Decoder(cfg)
        self.discriminator = Discriminator(cfg)


def build_models(cfg: ModelConfig) -> VAEGAN:
    """The networks of a config; sizes it leaves unset come from the recipe for its image shape."""
    from vaegan.trainer.recipe import model_defaults

    unset = {k: v for k, v in model_defaults(cfg.image_size, cfg.channels).items() if getattr(cfg, k) is None}
    return VAEGAN(dataclasses.replace(cfg, **unset).validate())
