"""Configuration as plain dataclasses: JSON round-trip and validation. No torch here."""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from vaegan.core.errors import ConfigError

MODES = ("vae", "gan", "vaegan")
GAN_LOSSES = ("hinge", "bce")
AMP_CHOICES = ("auto", "off", "bf16", "fp16")


@dataclass
class ModelConfig:
    """Everything needed to rebuild the networks."""

    image_size: int = 32
    channels: int = 1
    latent_dim: int = 16
    width: int = 16  # channels of the widest-resolution block; doubled at each halving
    num_classes: int = 0  # labels seen in the data (0: unlabelled); used by evaluation only

    def validate(self) -> ModelConfig:
        s = self.image_size
        if s < 16 or s > 128 or s & (s - 1):
            raise ConfigError(f"image size {s} is not supported: use a power of two from 16 to 128")
        if self.channels not in (1, 3):
            raise ConfigError(f"channels must be 1 (grey) or 3 (RGB), got {self.channels}")
        if not 1 <= self.latent_dim <= 4096:
            raise ConfigError(f"latent dim must be between 1 and 4096, got {self.latent_dim}")
        if not 4 <= self.width <= 512:
            raise ConfigError(f"width must be between 4 and 512, got {self.width}")
        return self

    @property
    def num_blocks(self) -> int:
        """Resolution doublings between the 4x4 seed and the image."""
        return (self.image_size // 4).bit_length() - 1


@dataclass
class TrainConfig:
    """The training recipe. Stages are fractions of the total step budget."""

    data: str = "digits"
    mode: str = "vaegan"
    epochs: int = 30
    batch_size: int = 32
    lr: float = 1e-3
    lr_d: float = 1e-3  # discriminator rate (it trains in the GAN stages only)
    adv_lr: float = 1e-3  # encoder and decoder rate once the GAN is on (stages 2-3, mode gan)
    betas: tuple[float, float] = (0.5, 0.999)
    kl_weight: float = 4.0  # beta on the KL prior term (KL summed over z, divided by pixel count)
    gamma: float = 1.0  # weight of the reconstruction term for the decoder (Larsen's gamma)
    pixel_weight: float = 0.25  # the small pixel term beside the Dis_l feature term (GAN stages)
    gan_loss: str = "hinge"
    gan_weight: float = 1.0  # base GAN weight, scaled by the adaptive weight
    adaptive_gan_weight: bool = True
    adaptive_max: float = 1.0  # clamp of the adaptive weight: GAN never outweighs reconstruction
    gan_on_recon: bool = False  # Larsen also shows D reconstructions; prior samples alone measured better
    r1_gamma: float = 0.0  # R1 penalty on D (spectral norm is on by default)
    diffaug: bool = True
    ema_decay: float = 0.999
    vae_fraction: float = 0.3  # stage 1: VAE pretraining
    adv_fraction: float = 0.2  # stage 2: adversarial warm-up (encoder frozen)
    val_fraction: float = 0.1
    seed: int = 0
    amp: str = "auto"
    log_every: int = 20
    checkpoint_every: int = 100  # steps; also at each epoch's end
    max_steps: int = 0  # 0: epochs decide

    def validate(self) -> TrainConfig:
        if self.mode not in MODES:
            raise ConfigError(f"unknown mode {self.mode!r}: choose one of {', '.join(MODES)}")
        if self.gan_loss not in GAN_LOSSES:
            raise ConfigError(f"unknown GAN loss {self.gan_loss!r}: choose one of {', '.join(GAN_LOSSES)}")
        if self.amp not in AMP_CHOICES:
            raise ConfigError(f"unknown amp {self.amp!r}: choose one of {', '.join(AMP_CHOICES)}")
        if self.epochs < 1:
            raise ConfigError(f"epochs must be at least 1, got {self.epochs}")
        if self.batch_size < 2:
            raise ConfigError(f"batch size must be at least 2 (batch norm needs it), got {self.batch_size}")
        if self.lr <= 0 or self.lr_d <= 0 or self.adv_lr <= 0:
            raise ConfigError("learning rates must be positive")
        if not 0.0 <= self.ema_decay < 1.0:
            raise ConfigError(f"ema decay must be in [0, 1), got {self.ema_decay}")
        if not 0.0 < self.val_fraction < 0.5:
            raise ConfigError(f"val fraction must be in (0, 0.5), got {self.val_fraction}")
        if self.vae_fraction < 0 or self.adv_fraction < 0 or self.vae_fraction + self.adv_fraction > 1:
            raise ConfigError("vae_fraction and adv_fraction must be >= 0 and sum to at most 1")
        if self.log_every < 1 or self.checkpoint_every < 1:
            raise ConfigError("log_every and checkpoint_every must be at least 1")
        return self


@dataclass
class RunConfig:
    """What `config.json` in a run directory holds."""

    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    data_key: str = ""  # content hash of the training data; keys the evaluation classifier cache
    class_names: list[str] = field(default_factory=list)
    vaegan_version: str = ""

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> RunConfig:
        try:
            model = ModelConfig(**d["model"])
            train = dict(d["train"])
            train["betas"] = tuple(train.get("betas", (0.5, 0.999)))
            return cls(
                model=model.validate(),
                train=TrainConfig(**train).validate(),
                data_key=d.get("data_key", ""),
                class_names=list(d.get("class_names", [])),
                vaegan_version=d.get("vaegan_version", ""),
            )
        except (KeyError, TypeError) as e:
            raise ConfigError(f"config is not a vaegan run config ({e}): re-run `vaegan train`") from e

    @classmethod
    def load(cls, path: str | Path) -> RunConfig:
        path = Path(path)
        try:
            return cls.from_dict(json.loads(path.read_text()))
        except FileNotFoundError as e:
            raise ConfigError(f"{path} not found: is this a run directory written by `vaegan train`?") from e
        except json.JSONDecodeError as e:
            raise ConfigError(f"{path} is not valid JSON ({e}): the run dir is damaged") from e
