"""The training recipe from the data: every setting a user leaves unset follows the image size, the
channels and the data-set size, is printed in one line at the start, and stays overridable.

Where the numbers come from (docs/quality.md has the runs):
- 32x32 grey (the bundled digits): the settings the quick start was tuned with; unchanged.
- 64x64 RGB (letters64, 3,000 images, 15 minutes on 2 cores): a wider latent for colour and pose (64
  numbers: against 32, reconstructions 1.3-2.2 dB closer and a lower FD on every letters and emoji run
  measured, docs/experiments/colour.md), a lighter KL (12,288 values per image: the per-pixel KL is
  tiny), a pixel term weighted towards pixels unlike the background (without it thin letters came back
  white on the right backgrounds), an edge term that keeps flat fills flat, a half-width discriminator
  (it runs up to four times per joint step) and bf16 autocast where the CPU computes bf16 natively and
  measures faster (3.4x the fp32 VAE step with channels-last on AMX).
Other sizes follow the 64x64 RGB settings, the latent growing with the pixel count.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np

from vaegan.config import RunConfig
from vaegan.trainer.data import class_draw_shares, uneven_balance

UNEVEN_VAE_FRACTION = 0.6  # the VAE stage's share of a 64x64 RGB run on uneven classes (train_defaults)


def model_defaults(image_size: int, channels: int) -> dict[str, Any]:
    """Width, latent size and discriminator width for an image size and channel count."""
    pixels = image_size * image_size * channels
    if pixels <= 32 * 32:  # grey digits and smaller: the quick start's model
        return {"width": 16, "latent_dim": 16, "d_width": 16}
    latent = 32 if pixels < 64 * 64 * 3 else 64
    return {"width": 16, "latent_dim": latent, "d_width": 8}


def train_defaults(
    image_size: int, channels: int, n_images: int, bf16: bool, class_spread: float = 1.0
) -> dict[str, Any]:
    """Batch, learning rates, loss weights, stage split, the classes' draw and mixed precision.
    class_spread: the largest class's image count over the smallest's (data.class_spread)."""
    pixels = image_size * image_size * channels
    # A data set of uneven classes draws each at its share to the power 0.5 (the prior still samples the
    # data's shares). emoji64 (85 to 2,261 images a category), 15 minutes on an AVX2 CPU, seeds 0 / 1,
    # against drawing every image equally often: all 9 categories on both seeds vs 8 / 7, FD 58.4 /
    # 56.8 vs 92.4 / 53.7, precision 0.673 / 0.719 vs 0.591 / 0.723, confident 0.653 / 0.688 vs
    # 0.686 / 0.649; recall 0.791 / 0.704 vs 0.802 / 0.775 and PSNR 0.7 dB lower (docs/experiments/colour.md)
    class_balance = uneven_balance(class_spread)
    # 32 images a step, fewer for a small data set (at least 16 steps an epoch, batch norm needs 8)
    batch = 32 if n_images >= 512 else max(8, 1 << max(3, (n_images // 16).bit_length() - 1))
    if pixels <= 32 * 32:
        return {
            "batch_size": batch,
            "lr": 1e-3,
            "lr_d": 1e-3,
            "kl_weight": 4.0,
            "pixel_weight": 0.25,
            "foreground_weight": 0.0,
            "edge_weight": 0.0,
            "class_balance": class_balance,
            "gan_loss": "hinge",
            "r1_gamma": 0.0,
            "vae_fraction": 0.3,
            "adv_fraction": 0.2,
            "amp": "off",
            "ema_decay": 0.999,
            # D alive through the GAN stages (vaegan/trainer/liveness.py). With D from the GAN stages,
            # DiffAugment and the decoder at the full rate in them, D's mean logits on real and fake
            # were within 0.1 on 98% of the GAN steps (hinge loss 2.00, "cannot tell"); without
            # DiffAugment's cutout (half a 32x32 digit), D from the first step and the decoder at half
            # the rate: 0% of the steps, FD 47.0 vs 52.9, precision 0.528 vs 0.485 (seed 0, 20 epochs;
            # seed 1: FD 46.6 vs 40.8, precision 0.544 vs 0.533; docs/quality.md)
            "d_warmup": True,
            "diffaug": False,
            "feature_layer": 1,
            "gan_warmup": 0,  # D lives on the quick start without it (liveness above)
            # measured on the quick start: N(0, I) FD 62.7, precision 0.47, recall 0.98; a fitted
            # mixture FD 67.9, precision 0.91, recall 0.27: the digits' posteriors fill the prior
            "prior": "standard",
        }
    return {
        "batch_size": batch,
        "lr": 1e-3,
        "lr_d": 1e-3,
        # samples come from a prior fitted after training (core/prior.py), so the KL term need not hold
        # the posteriors on N(0, I): halving it gave sharper samples and reconstructions both
        # (letters64, 15 minutes: confident 0.569 -> 0.619, FD 49 -> 31, PSNR 23.78 -> 23.94 dB)
        "kl_weight": 0.5,
        # 4 (a pixel term four times D's feature term in the GAN stages) was measured: FD 42 vs 49,
        # confident 0.58 vs 0.57, but PSNR 23.4 vs 23.8 dB (docs/experiments/colour.md)
        "pixel_weight": 1.0,
        "foreground_weight": 4.0,
        # Letters and emoji are flat fills with hard outlines. The GAN stages paint a faint mottle on
        # the fills that the pixel term prices at its small amplitude squared (flattening the
        # backgrounds of letters64 reconstructions alone took FD 27.6 to 18.5); the edge term
        # (neighbour differences against the image's, losses.edge_error) prices it about four times
        # higher. Two seeds on letters64, 15 minutes: precision 0.816 / 0.795 vs 0.775 / 0.757,
        # confident 0.449 / 0.593 vs 0.503 / 0.436, FD 38.4 / 19.4 vs 26.3 / 31.5; emoji64 precision
        # 0.754 vs 0.737, PSNR 18.1 vs 17.5 dB (docs/experiments/colour.md)
        "edge_weight": 1.0,
        "class_balance": class_balance,
        "gan_loss": "hinge",
        "r1_gamma": 0.0,
        # 40% of the budget for the VAE at the full rate, the GAN stages with the decoder at a tenth of it.
        # A GAN step costs two VAE steps, so on a CPU without AMX (AVX-512 bf16, 6,700 steps in 15
        # minutes) 60% left the GAN about 1,700 steps; 40% (2,350): letters64 FD 22.7 vs 37.7, confident
        # 0.527 vs 0.474, PSNR 22.9 vs 23.6 dB. Uneven classes take 60%: their small classes, drawn more
        # often, are learnt in the VAE stage, and the GAN sharpens what it learnt. emoji64, AVX-512
        # bf16, with the one-backward GAN step, seeds 0 / 1, 60% against 40%: FD 27.0 / 35.8 vs
        # 38.5 / 43.7, precision 0.784 / 0.783 vs 0.780 / 0.738, confident 0.771 / 0.756 vs 0.739 /
        # 0.745 (evaluation classifier v5; in v6's space FD and recall ahead on both seeds, precision
        # on seed 0); letters64 (even classes), seeds 0 / 1: FD 19.8 / 21.3 vs 14.8 / 17.5
        # (docs/experiments/colour.md)
        "vae_fraction": UNEVEN_VAE_FRACTION if class_balance else 0.4,
        "adv_fraction": 0.1,
        "amp": "bf16" if bf16 else "off",
        # the saved encoder and decoder are averages over up to the last 2,000 steps (fewer while the
        # warm-up window, a ninth of the steps averaged, is shorter: steps._ema_avg): two seeds each on
        # letters64, 15 minutes, against 0.999: confident 0.661 vs 0.640, FD 24.3 vs 26.0, PSNR 24.37 vs
        # 24.15 dB (docs/experiments/colour.md). On a run short for its CPU (outlook.py) the average
        # restarts with the GAN (loop.py), so that window is a share of the GAN steps: shorter, and it
        # lags the samples less.
        "ema_decay": 0.9995,
        # D trained against the VAE's samples from the start (every fourth VAE step, loop.D_WARMUP_EVERY),
        # then a decoder at a tenth of its rate once
        # the GAN is on: measured on letters64, a VAE-pretrained decoder at the full rate (Adam, tuned to
        # small reconstruction gradients) flipped D's logits in 4 steps and left D a constant
        # (hinge 2.0) for the rest of the run; at 1e-4 D kept separating real from fake.
        "d_warmup": True,
        "diffaug": True,
        # Dis_l one block before D's last (8x8, Larsen et al. took an inner layer too): compared at the
        # block D's head reads, the decoder learns to match exactly what D judges by, and on letters
        # (9% of the pixels are the letter) D's last-block features shrank to a constant it could no
        # longer separate real from fake with (hinge 2.00 on most GAN steps)
        "feature_layer": 2,
        # The GAN turns on gently: the encoder's and decoder's Adam moments restart and their rate
        # rises to adv_lr over 200 GAN steps. Kept from the VAE stage, the moments are scaled to
        # reconstruction gradients (the first GAN steps can be several times adv_lr), and D fell from
        # a logit gap of 1.7 to 0.3 in 30 steps. Letters64, the adversarial stage resumed from one
        # 6-minute VAE run for 2 minutes (about 560 steps): D "cannot tell" on 23% of the GAN steps
        # as before, 11% with the restart, 12% with the ramp, 11% with both (docs/experiments/colour.md)
        "gan_warmup": 200,
        # N(0, I) falls between the images' posteriors on colour data: 16% confident vs 42% from a
        # mixture fitted to them, 57% from one mixture per class (docs/experiments/colour.md)
        "prior": "fitted",
    }


def cpu_has_native_bf16() -> bool:
    """oneDNN computes bf16 in hardware here (AVX512-BF16 or AMX); elsewhere it is emulated, slower
    than fp32."""
    import torch

    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        return False


def resolve(
    cfg: RunConfig, n_images: int, on_cuda: bool = False, class_spread: float = 1.0
) -> tuple[RunConfig, list[str]]:
    """A copy of cfg with every unset (None) recipe field filled; also the names the recipe set.
    class_spread: the data set's largest class over its smallest (data.class_spread)."""
    mc, tc = cfg.model, cfg.train
    size, ch = mc.image_size, mc.channels
    chosen: list[str] = []
    model_vals: dict[str, Any] = {}
    for k, v in model_defaults(size, ch).items():
        if getattr(mc, k) is None:
            model_vals[k] = v
            chosen.append(k)
    bf16 = not on_cuda and cpu_has_native_bf16()
    train_vals: dict[str, Any] = {}
    for k, v in train_defaults(size, ch, n_images, bf16, class_spread).items():
        if getattr(tc, k) is None:
            train_vals[k] = "auto" if (k == "amp" and on_cuda) else v
            chosen.append(k)
    if tc.adv_lr is None:  # relative to the run's own lr, whoever set it
        lr = float(train_vals.get("lr", tc.lr) or 0.0)
        train_vals["adv_lr"] = lr / 2 if size * size * ch <= 32 * 32 else lr / 10
        chosen.append("adv_lr")
    out = dataclasses.replace(
        cfg,
        model=dataclasses.replace(mc, **model_vals),
        train=dataclasses.replace(tc, **train_vals),
    )
    if "amp" in chosen and out.train.amp == "bf16":  # native bf16: kept only where it measures faster
        from vaegan.trainer.amp_probe import faster_cpu_amp

        amp, _ = faster_cpu_amp(build_config(out.model), out.train)
        out = dataclasses.replace(out, train=dataclasses.replace(out.train, amp=amp))
    return out, chosen


def build_config(mc: Any) -> Any:
    """The model config with every size the recipe decides filled in (as build_models does)."""
    unset = {k: v for k, v in model_defaults(mc.image_size, mc.channels).items() if getattr(mc, k) is None}
    return dataclasses.replace(mc, **unset)


def describe(cfg: RunConfig, n_images: int, chosen: list[str], budget_s: float = 0.0) -> str:
    """The one line `vaegan train` prints at the start: data shape, then every recipe setting; the
    ones the user set are marked with *. budget_s: the run's whole time budget where a resume gave it
    more than its config's --time."""
    mc, tc = cfg.model, cfg.train

    def mark(name: str, text: str) -> str:
        return text if name in chosen else text + "*"

    budget = (
        f"{format_duration(budget_s or tc.time_s)} budget"
        if budget_s or tc.time_s
        else (f"{tc.max_steps} steps" if tc.max_steps else f"{tc.epochs} epochs")
    )
    stages = (
        f"stages vae {tc.vae_fraction or 0:.0%} / adversarial {tc.adv_fraction or 0:.0%} / joint "
        f"{1 - (tc.vae_fraction or 0) - (tc.adv_fraction or 0):.0%}"
        if tc.mode == "vaegan"
        else f"mode {tc.mode}"
    )
    # an ablation run prints only what it uses: --mode vae has no D, --mode gan no encoder
    has_d, has_encoder, vaegan = tc.mode != "vae", tc.mode != "gan", tc.mode == "vaegan"
    rates = [mark("lr", f"lr {tc.lr or 0:g}")]
    rates += [mark("adv_lr", f"GAN stages {tc.adv_lr or 0:g}")] if vaegan else []
    rates += [mark("lr_d", f"D {tc.lr_d or 0:g}")] if has_d else []
    parts = [
        mark("width", f"width {mc.width}"),
        mark("latent_dim", f"latent {mc.latent_dim}"),
        *(
            [
                mark("d_width", f"D width {mc.d_width}"),
                mark("gan_loss", f"{tc.gan_loss} GAN loss"),
                mark("r1_gamma", f"R1 {tc.r1_gamma or 0:g}"),
            ]
            if has_d
            else []
        ),
        mark("batch_size", f"batch {tc.batch_size}"),
        " / ".join(rates),
        *(
            [
                mark("d_warmup", "D from the first step" if tc.d_warmup else "D from the GAN stages"),
                mark("feature_layer", f"Dis_l at D's block -{tc.feature_layer or 1}"),
                mark(
                    "gan_warmup",
                    f"GAN rate warm-up {tc.gan_warmup} steps" if tc.gan_warmup else "no GAN warm-up",
                ),
            ]
            if vaegan
            else []
        ),
        *([mark("diffaug", "DiffAugment" if tc.diffaug else "no DiffAugment")] if has_d else []),
        mark("prior", f"{tc.prior} prior") if has_encoder else "standard prior",
        *(
            [
                mark("kl_weight", f"KL weight {tc.kl_weight or 0:g}"),
                mark("foreground_weight", f"foreground weight {tc.foreground_weight or 0:g}"),
                mark("edge_weight", f"edge weight {tc.edge_weight or 0:g}"),
            ]
            if has_encoder
            else []
        ),
        *(
            [mark("class_balance", f"classes drawn at share^{tc.class_balance:g}")]
            if tc.class_balance
            else []
        ),
        *([mark("pixel_weight", f"pixel weight {tc.pixel_weight or 0:g}")] if vaegan else []),
        mark("vae_fraction", stages),
        mark("ema_decay", f"EMA {tc.ema_decay}"),
        mark("amp", f"amp {tc.amp}"),
    ]
    return (
        f"recipe for {n_images} images of {mc.image_size}x{mc.image_size}x{mc.channels} "
        f"({'RGB' if mc.channels == 3 else 'grey'}), {budget}: " + ", ".join(parts) + " (* = set by you)"
    )


def describe_draw(
    labels: np.ndarray, class_names: list[str], balance: float, vae_fraction: float | None = None
) -> str:
    """Why a run draws its classes unevenly, and what that does to its largest and smallest class.
    vae_fraction: the VAE stage's share of the budget where the recipe chose it for uneven classes."""
    counts = np.bincount(labels, minlength=len(class_names))
    drawn = class_draw_shares(labels, balance)
    shares = counts / counts.sum()
    big, small = int(np.argmax(counts)), int(np.argmin(np.where(counts > 0, counts, counts.max() + 1)))
    return (
        f"classes of {counts[small]:,} to {counts[big]:,} images: each is drawn for training at its share "
        f"of the images to the power {balance:g}, so {class_names[big]} makes {drawn[big]:.0%} of the "
        f"batches instead of {shares[big]:.0%} and {class_names[small]} {drawn[small]:.1%} instead of "
        f"{shares[small]:.1%}; samples keep the data's shares (--class-balance 0 draws every image "
        "equally often)"
        + (
            f"; the VAE stage takes {vae_fraction:.0%} of the budget, so the small classes are learnt "
            "before the GAN sharpens them (--vae-fraction)"
            if vae_fraction is not None
            else ""
        )
    )


def parse_duration(text: str) -> float:
    """'15m', '900s', '1h', '1h30m', '90' (seconds) -> seconds."""
    import re

    t = str(text).strip().lower()
    if re.fullmatch(r"\d+(\.\d+)?", t):
        return float(t)
    parts = re.findall(r"(\d+(?:\.\d+)?)\s*(h|m|s)", t)
    if not parts or "".join(n + u for n, u in parts) != t.replace(" ", ""):
        raise ValueError(f"{text!r} is not a duration: use e.g. 15m, 900s, 1h or 1h30m")
    return sum(float(n) * {"h": 3600, "m": 60, "s": 1}[u] for n, u in parts)


def format_duration(seconds: float) -> str:
    s = int(round(seconds))
    h, rest = divmod(s, 3600)
    m, s = divmod(rest, 60)
    return (f"{h}h" if h else "") + (f"{m}m" if m else "") + (f"{s}s" if s or not (h or m) else "")


def prior_of(cfg: RunConfig) -> str:
    """The prior a run samples from: its config's, or the recipe's for a run saved before the choice."""
    if cfg.train.mode == "gan":
        return "standard"  # no encoder to fit one to
    if cfg.train.prior:
        return str(cfg.train.prior)
    mc = cfg.model
    return str(train_defaults(mc.image_size, mc.channels, 1024, False)["prior"])
