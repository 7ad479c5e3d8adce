"""Configuration as plain dataclasses: JSON round-trip and validation. No torch here."""

from __future__ import annotations

import dataclasses
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from vaegan import __version__
from vaegan.core.errors import ConfigError
from vaegan.core.manifest import BACKEND_FORMATS, COMPONENTS, PRECISIONS

MODES = ("vae", "gan", "vaegan")
CALIBRATION_METHODS = ("minmax", "entropy", "percentile")
GAN_LOSSES = ("hinge", "bce")
PRIORS = ("fitted", "standard")
AMP_CHOICES = ("auto", "off", "bf16", "fp16")


def opt(default: Any, help: str) -> Any:
    """A dataclass field with its command-line help: the one place a default and its meaning live.
    `vaegan`'s click options read both from here (cli.option_from)."""
    return field(default=default, metadata={"help": help})


@dataclass
class ModelConfig:
    """Everything needed to rebuild the networks."""

    image_size: int = opt(32, "Square size, a power of two 16..128 (digits are upscaled to it).")
    channels: int = opt(1, "1 (grey) or 3 (RGB).")
    latent_dim: int | None = opt(
        None, "Size of z (default: from the recipe: 16 for 32x32 grey, 32 for 64x64 RGB)."
    )
    width: int | None = opt(None, "Channels at full resolution, x2 per halving (default: from the recipe).")
    d_width: int | None = opt(
        None, "The discriminator's channels at full resolution (default: from the recipe)."
    )
    num_classes: int = 0  # labels seen in the data (0: unlabelled); used by evaluation only

    def validate(self) -> ModelConfig:
        """Checks what is set; unset (None) sizes come from the recipe (vaegan.trainer.recipe)."""
        s = self.image_size
        if s < 16 or s > 128 or s & (s - 1):
            raise ConfigError(f"image size {s} is not supported: use a power of two from 16 to 128")
        if self.channels not in (1, 3):
            raise ConfigError(f"channels must be 1 (grey) or 3 (RGB), got {self.channels}")
        if self.latent_dim is not None and not 1 <= self.latent_dim <= 4096:
            raise ConfigError(f"latent dim must be between 1 and 4096, got {self.latent_dim}")
        for name in ("width", "d_width"):
            value = getattr(self, name)
            if value is not None and not 4 <= value <= 512:
                raise ConfigError(f"{name.replace('_', ' ')} must be between 4 and 512, got {value}")
        return self

    @property
    def num_blocks(self) -> int:
        """Resolution doublings between the 4x4 seed and the image."""
        return (self.image_size // 4).bit_length() - 1


@dataclass
class TrainConfig:
    """The training recipe. Stages are fractions of the budget: --time when given, else the steps.
    Fields left None are filled from the data by vaegan.trainer.recipe and printed at the start."""

    data: str = opt(
        "digits",
        "'digits' (scikit-learn's bundled 8x8 digits, offline), an image folder (subfolders are labels) "
        "or an .npz with uint8 'x' [N,H,W(,C)] and optional 'y'.",
    )
    mode: str = opt("vaegan", "vaegan: staged VAE-GAN; vae / gan: the ablations on the same budget.")
    epochs: int = opt(30, "Passes over the training split (unless --time or --max-steps says otherwise).")
    time_s: float = opt(
        0.0,
        "Wall-clock budget, e.g. 15m, 900s, 1h: the stages split by time and the run ends with a checkpoint "
        "and samples when it is spent; a colour run says early on if this CPU gives it fewer steps than "
        "the recipe was measured at, and how much time to add. With --resume: that much more time. "
        "0: steps decide.",
    )
    batch_size: int | None = opt(None, "Images per step per process (default: from the recipe).")
    lr: float | None = opt(None, "Encoder/decoder learning rate, Adam (default: from the recipe).")
    lr_d: float | None = opt(
        None,
        "Discriminator learning rate; D trains in the GAN stages (and from the first step with "
        "--d-warmup) (default: from the recipe).",
    )
    adv_lr: float | None = opt(
        None,
        "Encoder and decoder learning rate once the GAN is on (default: from the recipe: --lr / 2 for "
        "32x32 grey, --lr / 10 for larger images; at the full rate the decoder overran D in a few steps).",
    )
    betas: tuple[float, float] = (0.5, 0.999)
    kl_weight: float | None = opt(
        None,
        "Weight of the KL prior term, KL summed over z divided by pixel count (default: from the recipe).",
    )
    gamma: float = opt(1.0, "Decoder's weight on reconstruction vs GAN (Larsen's gamma).")
    pixel_weight: float | None = opt(
        None,
        "Weight of the pixel term beside the Dis_l feature term in the GAN stages (default: from the recipe).",
    )
    foreground_weight: float | None = opt(
        None,
        "Extra weight of the pixel term on pixels unlike the image's background colour, so thin strokes "
        "keep their colour (default: from the recipe; 0: a plain mean).",
    )
    edge_weight: float | None = opt(
        None,
        "Weight of an edge term beside the pixel term: the reconstruction's differences between neighbouring "
        "pixels against the image's, so flat regions come back flat and edges where they were "
        "(default: from the recipe; 0: off).",
    )
    class_balance: float | None = opt(
        None,
        "How evenly a labelled data set's classes are drawn for training: each class at its share of the "
        "images to this power (0: every image equally often; 1: every class equally often). Default: from "
        "the recipe (0.5 where the largest class holds more than twice the images of the smallest, else 0); "
        "samples keep the data's class shares either way.",
    )
    gan_loss: str | None = opt(None, "GAN loss: hinge or bce (non-saturating); default: from the recipe.")
    gan_weight: float = opt(1.0, "Base GAN weight (x adaptive weight).")
    adaptive_gan_weight: bool = True
    adaptive_max: float = opt(
        1.0, "Clamp of the adaptive GAN weight (gradient-norm ratio at the decoder's last layer)."
    )
    gan_on_recon: bool = opt(
        False, "Also show D the reconstructions (Larsen et al.'s original); off: prior samples only."
    )
    r1_gamma: float | None = opt(None, "R1 penalty on D (0: off; default: from the recipe).")
    feature_layer: int | None = opt(
        None,
        "Which of D's conv blocks, counted back from its last (1: the last, 4x4; 2: the one before, 8x8), "
        "the learned-similarity (Dis_l) term compares reconstructions at (default: from the recipe).",
    )
    gan_warmup: int | None = opt(
        None,
        "GAN steps over which the encoder's and decoder's rate rises linearly to --adv-lr when the GAN "
        "turns on; their Adam moments restart there too, and so do the weight averages the run saves "
        "where the budget is short for the CPU (0: none of these; default: from the recipe).",
    )
    prior: str | None = opt(
        None,
        "Latent prior samples are drawn from: fitted (a Gaussian mixture fitted to the training images' "
        "latents at the end of the run, prior.npz) or standard (N(0, I)). Default: from the recipe "
        "(fitted for colour and larger images; standard for 32x32 grey, where it measured better FD).",
    )
    d_warmup: bool | None = opt(
        None,
        "Train D from the first step, on prior samples the decoder does not learn from, so that it is a "
        "match for the decoder when the GAN turns on (default: from the recipe).",
    )
    diffaug: bool | None = opt(
        None,
        "DiffAugment (colour, translation, cutout) on every image D sees (default: from the recipe: on "
        "for colour and larger images, off for 32x32 grey, where cutting out half a digit left D unable "
        "to tell real from fake).",
    )
    ema_decay: float | None = opt(
        None,
        "Decay of the EMA of the encoder and decoder weights, which is what the run saves and exports "
        "(default: from the recipe).",
    )
    vae_fraction: float | None = opt(
        None, "Share of the budget for stage 1, VAE pretraining (default: from the recipe)."
    )
    adv_fraction: float | None = opt(
        None,
        "Share of the budget for stage 2, the adversarial warm-up with the encoder frozen; the rest is "
        "joint training (default: from the recipe).",
    )
    val_fraction: float = 0.1
    seed: int = opt(0, "Seeds weights, noise and the train/val split.")
    amp: str | None = opt(
        None,
        "Mixed precision: auto = bf16/fp16 on CUDA, off on CPU; bf16; fp16; off. Default: the recipe's "
        "(auto on CUDA; bf16 for 64x64 and larger on CPUs with native bf16, AMX or AVX512-BF16).",
    )
    log_every: int = opt(20, "Steps between metrics.jsonl lines (and one at each stage's first step).")
    checkpoint_every: int = opt(100, "Steps between checkpoints (also every epoch).")
    max_steps: int = opt(0, "Stop after this many steps (0: epochs decide).")

    @property
    def gan_lr(self) -> float | None:
        """The encoder/decoder rate in the GAN stages."""
        return self.lr if self.adv_lr is None else self.adv_lr

    def validate(self) -> TrainConfig:
        if self.mode not in MODES:
            raise ConfigError(f"unknown mode {self.mode!r}: choose one of {', '.join(MODES)}")
        if self.gan_loss is not None and self.gan_loss not in GAN_LOSSES:
            raise ConfigError(f"unknown GAN loss {self.gan_loss!r}: choose one of {', '.join(GAN_LOSSES)}")
        if self.prior is not None and self.prior not in PRIORS:
            raise ConfigError(f"unknown prior {self.prior!r}: choose one of {', '.join(PRIORS)}")
        if self.amp is not None and self.amp not in AMP_CHOICES:
            raise ConfigError(f"unknown amp {self.amp!r}: choose one of {', '.join(AMP_CHOICES)}")
        if self.epochs < 1:
            raise ConfigError(f"epochs must be at least 1, got {self.epochs}")
        if self.max_steps < 0:
            raise ConfigError(f"max steps must be 0 (epochs decide) or positive, got {self.max_steps}")
        if not self.time_s >= 0:
            raise ConfigError(f"--time must be a positive duration (e.g. 15m), got {self.time_s}")
        if self.batch_size is not None and self.batch_size < 2:
            raise ConfigError(f"batch size must be at least 2 (batch norm needs it), got {self.batch_size}")
        for name in ("lr", "lr_d", "adv_lr"):
            value = getattr(self, name)
            if value is not None and not value > 0:
                raise ConfigError(f"{name.replace('_', ' ')} must be positive, got {value}")
        if not self.gamma > 0:
            raise ConfigError(f"gamma must be positive (the decoder divides by it), got {self.gamma}")
        for name in (
            "kl_weight",
            "pixel_weight",
            "foreground_weight",
            "edge_weight",
            "gan_weight",
            "adaptive_max",
            "r1_gamma",
        ):
            if getattr(self, name) is not None and not getattr(self, name) >= 0:
                raise ConfigError(
                    f"{name.replace('_', ' ')} must be zero or positive, got {getattr(self, name)}"
                )
        if self.feature_layer is not None and self.feature_layer < 1:
            raise ConfigError(f"feature layer must be 1 (D's last block) or more, got {self.feature_layer}")
        if self.gan_warmup is not None and self.gan_warmup < 0:
            raise ConfigError(f"gan warmup must be 0 (off) or a number of steps, got {self.gan_warmup}")
        if self.class_balance is not None and not 0.0 <= self.class_balance <= 1.0:
            raise ConfigError(f"class balance must be in [0, 1], got {self.class_balance}")
        if self.ema_decay is not None and not 0.0 <= self.ema_decay < 1.0:
            raise ConfigError(f"ema decay must be in [0, 1), got {self.ema_decay}")
        if not 0.0 < self.val_fraction < 0.5:
            raise ConfigError(f"val fraction must be in (0, 0.5), got {self.val_fraction}")
        vae, adv = self.vae_fraction or 0.0, self.adv_fraction or 0.0
        if vae < 0 or adv < 0 or vae + adv > 1:
            raise ConfigError("vae_fraction and adv_fraction must be >= 0 and sum to at most 1")
        if self.log_every < 1 or self.checkpoint_every < 1:
            raise ConfigError("log_every and checkpoint_every must be at least 1")
        return self


# What a resumed run may change: the budget, the rates and how often it logs and saves.
RESUMABLE = frozenset(
    {"epochs", "lr", "lr_d", "adv_lr", "max_steps", "time_s", "checkpoint_every", "log_every"}
)


# Recipe terms added after runs were saved without them, and the value those runs trained with: a
# resumed run keeps its own loss rather than taking up the current recipe's value mid-run.
ADDED_SINCE: dict[str, Any] = {"edge_weight": 0.0, "gan_warmup": 0, "class_balance": 0.0}


def _differs(cfg: RunConfig, name: str, value: Any, model_fields: set[str]) -> bool:
    section = cfg.model if name in model_fields else cfg.train
    return getattr(section, name, value) != value


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
            sections = (d["model"], d["train"])
            if not all(isinstance(x, dict) for x in sections):
                raise TypeError("model and train must be objects")
            unknown = sorted(
                {*sections[0]} - {f.name for f in dataclasses.fields(ModelConfig)}
                | {*sections[1]} - {f.name for f in dataclasses.fields(TrainConfig)}
            )
            if unknown:
                raise ConfigError(
                    f"config has settings this vaegan {__version__} does not know ({', '.join(unknown)}): "
                    "it was written by a newer vaegan; upgrade vaegan to use this run"
                )
            model = ModelConfig(**d["model"])
            train = ADDED_SINCE | dict(d["train"])
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

    def resumed_with(self, changes: dict[str, Any]) -> RunConfig:
        """This (saved) config with the training fields a resumed run may change; any other field
        that differs is refused, naming it: a resumed run keeps its data, model and recipe."""
        model_fields = {f.name for f in dataclasses.fields(ModelConfig)}
        fixed = sorted(
            k for k, v in changes.items() if k not in RESUMABLE and _differs(self, k, v, model_fields)
        )
        if fixed:
            names = ", ".join("--" + k.replace("_", "-") for k in fixed)
            raise ConfigError(
                f"{names} cannot change when resuming (the run keeps its data and model; it has --data "
                f"{self.train.data}): drop {names}, or start a new run with --out"
            )
        train = dataclasses.replace(self.train, **{k: v for k, v in changes.items() if k in RESUMABLE})
        return dataclasses.replace(self, train=train.validate())

    @classmethod
    def load(cls, path: str | Path) -> RunConfig:
        path = Path(path)
        try:
            return cls.from_dict(json.loads(path.read_text()))
        except FileNotFoundError as e:
            raise ConfigError(f"{path} not found: is this a run directory written by `vaegan train`?") from e
        except json.JSONDecodeError as e:
            raise ConfigError(f"{path} is not valid JSON ({e}): the run dir is damaged") from e


@dataclass
class ExportOptions:
    """`vaegan export`: what to build from a run dir, and how strictly to check it."""

    precisions: list[str] = field(
        default_factory=lambda: list(PRECISIONS),
        metadata={"help": "Comma-separated ONNX precisions; fp32 is always built (the reference)."},
    )
    calib_samples: int = opt(512, "Calibration inputs for int8 and the fp16 guard.")
    calib_method: str = opt("percentile", "How int8 ranges are chosen from calibration activations.")
    max_batch: int = opt(64, "Largest batch the engines accept.")
    opt_batch: int = opt(8, "Batch TensorRT tunes for.")
    trt: bool = opt(False, "Also build TensorRT engines (needs TensorRT 10/11 and an NVIDIA GPU).")
    openvino: bool = opt(False, "Also write OpenVINO IR (fp32, fp16, and int8 from the same QDQ ONNX).")
    triton: bool = opt(False, "Also write a Triton model repository under ART_DIR/triton.")
    strict: bool = opt(
        False,
        "Fail when fp16/int8 raise FD by more than --max-fd-increase, or an ONNX file breaks TensorRT's "
        "import rules (without it: a warning, and the result is recorded in manifest.json).",
    )
    quality_n: int = opt(1000, "Samples scored per precision.")
    max_fd_increase: float = opt(0.10, "Tolerated relative FD increase vs fp32.")
    force: bool = opt(
        False,
        "Replace an --out dir that holds an earlier vaegan export of another model. Only what vaegan wrote "
        "is replaced: anything else in --out stays where it is.",
    )
    seed: int = 0

    def validate(self) -> ExportOptions:
        bad = [p for p in self.precisions if p not in PRECISIONS]
        if bad:
            raise ConfigError(
                f"--precision takes fp32,fp16,int8 (fp32 always included), got {','.join(self.precisions)}"
            )
        # fp32 is the reference every other precision is measured against: always built, listed first
        self.precisions = sorted(set(self.precisions) | {"fp32"}, key=PRECISIONS.index)
        if not 1 <= self.opt_batch <= self.max_batch <= 4096:
            raise ConfigError(
                f"need 1 <= --opt-batch ({self.opt_batch}) <= --max-batch ({self.max_batch}) <= 4096"
            )
        if self.calib_samples < 16:
            raise ConfigError(f"--calib-samples must be at least 16, got {self.calib_samples}")
        if self.calib_method not in CALIBRATION_METHODS:
            raise ConfigError(f"--calib-method must be one of {', '.join(CALIBRATION_METHODS)}")
        if self.quality_n < 10:
            raise ConfigError(f"--quality-n must be at least 10, got {self.quality_n}")
        if not self.max_fd_increase >= 0:
            raise ConfigError(f"--max-fd-increase must be zero or positive, got {self.max_fd_increase}")
        return self


RELOADS = ("off", "poll")


@dataclass
class ServeConfig:
    """`vaegan serve`: batching, admission, request limits and who may call it."""

    max_batch: int | None = opt(None, "Rows merged per engine call (default: the export's max batch).")
    max_delay_ms: float = opt(
        0.0,
        "How long a request may wait for company. 0: no waiting; requests that arrive while the engine is "
        "busy are still merged into the next batch (Triton's default too).",
    )
    max_queue: int = opt(
        2048,
        "Images waiting for the engine before a request gets 503 + Retry-After (counted in images, so "
        "one n=1024 request weighs what 1024 n=1 requests do).",
    )
    max_n: int = opt(1024, "Largest n one request may ask for (at most --max-queue).")
    max_decoding: int = opt(
        4, "Uploaded images being decoded or waiting to be, before /v1/reconstruct gets 503 + Retry-After."
    )
    max_connections: int = opt(512, "Open connections; more are closed at once.")
    header_timeout_s: float = opt(
        10.0, "A connection that has not sent a whole request head by then is closed."
    )
    body_timeout_s: float = opt(30.0, "A request body not received by then gets 408.")
    keep_alive_s: float = opt(5.0, "Idle keep-alive connections are closed after this long.")
    token: str | None = opt(
        None,
        "Require `Authorization: Bearer TOKEN` on every endpoint but the health probes (/healthz, "
        "/v2/health/live, /v2/health/ready, a model's /ready) (default: $VAEGAN_TOKEN, "
        "else open). Use TLS in front (docs/deploying.md): a token in clear text is readable on the wire.",
    )
    grpc_port: int | None = opt(
        None,
        "Also serve the Open Inference Protocol (KServe v2) over gRPC on this port; HTTP always has it "
        "under /v2 (docs/deploying.md).",
    )
    reload: str = opt(
        "off",
        "poll: load the artifact dir again when a re-export changes it (checked every 2 s); off: only "
        "on request (POST /v2/repository/models/decoder/load, under the token). The new model is "
        "verified and warmed beside the old, then swapped with no failed request; a broken one is "
        "refused and the old one keeps serving.",
    )
    ui: bool = opt(
        True,
        "A page at / to look at the model in a browser (samples, one class, an interpolation, a "
        "reconstruction), made only of calls to the public API; static, so it costs nothing unopened.",
    )
    max_body_bytes: int = 4 << 20
    request_timeout_s: float = 60.0
    reload_poll_s: float = 2.0

    def validate(self) -> ServeConfig:
        if self.max_batch is not None and not 1 <= self.max_batch <= 65536:
            raise ConfigError(f"--max-batch must be between 1 and 65536, got {self.max_batch}")
        if not 0 <= self.max_delay_ms <= 10_000:
            raise ConfigError(f"--max-delay-ms must be between 0 and 10000, got {self.max_delay_ms}")
        if self.max_queue < 1:
            raise ConfigError(
                f"--max-queue must be at least 1 (images waiting before a 503), got {self.max_queue}"
            )
        if not 1 <= self.max_n <= self.max_queue:
            raise ConfigError(
                f"--max-n must be between 1 and --max-queue ({self.max_queue}): a larger request could never "
                f"be admitted; got {self.max_n}"
            )
        if self.reload not in RELOADS:
            raise ConfigError(f"--reload must be one of {', '.join(RELOADS)}, got {self.reload!r}")
        if self.max_decoding < 1 or self.max_connections < 1:
            raise ConfigError("--max-decoding and --max-connections must be at least 1")
        for name in ("header_timeout_s", "body_timeout_s", "keep_alive_s", "request_timeout_s"):
            if not getattr(self, name) > 0:
                raise ConfigError(f"--{name.replace('_', '-')} must be positive, got {getattr(self, name)}")
        if self.token is None:  # resolved here, once, for the CLI and the Python API alike
            self.token = os.environ.get("VAEGAN_TOKEN") or None
        if self.token is not None and len(self.token) < 16:
            raise ConfigError("--token must be at least 16 characters (e.g. `openssl rand -hex 24`)")
        if self.grpc_port is not None and not 0 <= self.grpc_port <= 65535:
            raise ConfigError(f"--grpc-port must be a port number, got {self.grpc_port}")
        if self.max_body_bytes < 1024:
            raise ConfigError("max_body_bytes must be at least 1024")
        return self


# the registry of engines bench compares: engine -> the artifact format it runs ("" = the run dir)
# vaegan's runtime on each of its backends, then the peers on the same model ("": the trained run)
ENGINE_FORMATS = {f"vaegan-{b}": fmt for b, fmt in BACKEND_FORMATS.items()} | {
    "ort-raw": "onnx",
    "openvino-default": "openvino",
    "torch-eager": "",
}
ENGINES = tuple(ENGINE_FORMATS)


@dataclass
class BenchConfig:
    """`vaegan bench`: what to compare and for how long."""

    engines: list[str] = field(
        default_factory=lambda: list(ENGINES),
        metadata={
            "help": "Engines to compare: vaegan's runtime per backend and the peers on the same model."
        },
    )
    precisions: list[str] = field(
        default_factory=lambda: ["fp32", "int8"], metadata={"help": "Comma-separated: fp32, fp16, int8."}
    )
    components: list[str] = field(
        default_factory=lambda: ["decoder"],
        metadata={"help": "Comma-separated: decoder, encoder (decoder,encoder for both)."},
    )
    batches: list[int] = field(
        default_factory=lambda: [1, 8, 64], metadata={"help": "Comma-separated batch sizes."}
    )
    warmup: int = opt(10, "Untimed calls before measuring.")
    iters: int = opt(0, "Timed calls per case (0: use --seconds).")
    seconds: float = opt(2.0, "Time per engine and case, over all rounds.")
    rounds: int = opt(3, "Engines take turns this many times per case, so machine noise hits them all alike.")
    threads: int = opt(0, "Engine threads (0: all cores).")
    peak: bool = opt(True, "Measure this machine's matmul peak, interleaved with the rows.")

    def validate(self) -> BenchConfig:
        bad = [e for e in self.engines if e not in ENGINES]
        if bad:
            raise ConfigError(f"unknown engine {bad[0]!r}: choose from {', '.join(ENGINES)}")
        if any(p not in PRECISIONS for p in self.precisions):
            raise ConfigError(f"--precision takes {', '.join(PRECISIONS)}")
        if any(c not in COMPONENTS for c in self.components):
            raise ConfigError(f"--component takes {', '.join(COMPONENTS)}")
        if any(b < 1 or b > 65536 for b in self.batches):
            raise ConfigError("--batch sizes must be between 1 and 65536")
        if self.iters < 0 or self.seconds <= 0 or self.warmup < 0 or self.rounds < 1 or self.threads < 0:
            raise ConfigError("--iters, --warmup and --threads must be >= 0, --seconds > 0 and --rounds >= 1")
        return self
