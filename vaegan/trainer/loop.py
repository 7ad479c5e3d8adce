"""The VAE-GAN training loop: one function, plain data in, a run directory out.

Stages over the budget (the seed's recipe): VAE pretraining -> adversarial warm-up (encoder frozen,
decoder learns from D) -> joint optimisation of all three networks. `mode="vae"` and `mode="gan"`
train the ablations on the same budget. The budget is wall-clock time (`time_s`, the stages split
by time) or steps (`max_steps`, else `epochs`); a run always ends with a checkpoint and samples.

Scale-out: under `torchrun`, every rank computes on its own shard and gradients are averaged
(all-reduce) before each optimiser step, so every rank holds the same weights; rank 0 alone writes
and keeps the clock. Gradients are reduced by hand rather than through DistributedDataParallel
because a GAN step runs the same network several times with other networks frozen, which DDP's
per-forward hooks do not model.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import math
import os
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist

from vaegan import __version__
from vaegan.config import ModelConfig, RunConfig, TrainConfig
from vaegan.core.errors import ConfigError, DataError, TrainingDiverged
from vaegan.core.images import save_grid
from vaegan.core.io import append_line, read_jsonl, remove_stale_temps, write_bytes, write_json
from vaegan.trainer import checkpoint as ckpt
from vaegan.trainer import outlook, recipe
from vaegan.trainer.data import (
    class_spread,
    draw_weights,
    epoch_order,
    load_dataset,
    to_tensor_range,
    to_uint8,
)
from vaegan.trainer.losses import background
from vaegan.trainer.steps import NonFinite, TrainState, discriminator_step, generator_step, is_finite

log = logging.getLogger("vaegan.train")
STAGES = ("vae", "adversarial", "joint")
TIME_CHECKPOINT_S = 60.0  # with a time budget: a checkpoint at most this often (and at the end)
# with d_warmup, D trains on every this many VAE steps: each costs a decoder pass and a D step, and
# on every step the VAE stage ran at 293 img/s against 462 without (letters64, AMX); D still meets
# the GAN stages having taken over a thousand steps
D_WARMUP_EVERY = 4
REPORT_EVERY_S = 60.0  # on_checkpoint at most this often: a report costs about a second of plotting


@dataclass
class TrainResult:
    out: Path
    step: int
    total_steps: int  # 0 with a time budget (the steps are whatever the time allows)
    seconds: float  # training time of this call
    last: dict[str, float]
    cfg: RunConfig | None = None  # the config the run used: sizes from the data, the recipe filled in
    stage: str = ""
    imgs_per_s: float = 0.0  # averaged over this call's steps


def stage_at(fraction: float, tc: TrainConfig) -> str:
    """The stage at a fraction of the budget (steps or time)."""
    if tc.mode != "vaegan":
        return tc.mode
    vae, adv = float(tc.vae_fraction or 0.0), float(tc.adv_fraction or 0.0)
    if fraction < vae:
        return "vae"
    if fraction < vae + adv:
        return "adversarial"
    return "joint"


def encoder_decoder_lr(stage: str, tc: TrainConfig, gan_steps: int = 0) -> float:
    """The encoder's and decoder's learning rate in a stage: lr, and adv_lr in VAE-GAN's GAN stages (a
    lower one keeps D from collapsing on 64x64 colour, recipe.py), reached linearly over the first
    gan_warmup GAN steps (gan_steps: those taken so far). A cosine decay over the VAE stage's second
    half was tried on letters64 and dropped: a lower reconstruction loss when the GAN came on, but PSNR
    23.22 dB at the end against 23.78 (docs/experiments/colour.md)."""
    if tc.mode == "vaegan" and stage in ("adversarial", "joint"):
        ramp = min(1.0, (gan_steps + 1) / tc.gan_warmup) if tc.gan_warmup else 1.0
        return float(tc.gan_lr or 0.0) * ramp
    return float(tc.lr or 0.0)


def pick_device() -> torch.device:
    if torch.cuda.is_available():
        return torch.device("cuda", int(os.environ.get("LOCAL_RANK", 0)))
    return torch.device("cpu")


def autocast_for(device: torch.device, amp: str | None):
    """bf16 where the GPU has it, fp16 (with a grad scaler) otherwise; on the CPU only when asked
    (the recipe asks for bf16 where the CPU computes it natively)."""
    if amp in (None, "off") or (amp == "auto" and device.type != "cuda"):
        return None
    if amp == "auto":
        amp = "bf16" if torch.cuda.is_bf16_supported() else "fp16"
    return torch.bfloat16 if amp == "bf16" else torch.float16


# ------------------------------------------------------------------------------------ the run
def train(
    cfg: RunConfig,
    out: str | Path,
    resume: bool = False,
    progress: bool = True,
    infer: set[str] | frozenset[str] | None = None,
    extend_time_s: float = 0.0,
    on_checkpoint: Callable[[Path], Any] | None = None,
) -> TrainResult:
    """Train per `cfg` into `out`. With resume, continue from out/train_state.pt; extend_time_s
    gives a resumed run that much more time (`vaegan train --resume RUN --time 5m`).

    infer: model fields to take from the data instead of cfg: "channels" (grey folder -> 1, colour
    -> 3) and "image_size" (the images' own square size; refused with one line if there is none).
    None (the default): each of the two that cfg leaves at ModelConfig's default is taken from the
    data, as `vaegan train` does for the options not given; pass set() to use cfg's as they are.
    The caller's cfg is not changed: the config the run used is in the result (and config.json).
    on_checkpoint(out): called after a checkpoint, at most once a minute (`vaegan train` writes the
    run's report.html with it); an error there is logged, never the end of the run.
    """
    t_start = time.time()
    out = Path(out)
    cfg.train.validate()
    ckpt.check_run_dir(out, resume)  # on every rank, before any rank can write (the group is not up yet)
    if resume and (out / ckpt.CONFIG).exists():  # the run keeps its data, model and recipe
        saved = RunConfig.load(out / ckpt.CONFIG)
        cfg = saved.resumed_with(_changes(cfg, saved))
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    device = pick_device()
    owns_group = world > 1 and not dist.is_initialized()
    if owns_group:
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    if device.type == "cuda":
        torch.cuda.set_device(device)
    is_main = rank == 0

    # ---- data, and the recipe for it
    mc = cfg.model
    if infer is None:
        infer = {k for k in ("image_size", "channels") if getattr(mc, k) == getattr(ModelConfig(), k)}
    infer = frozenset() if resume else frozenset(infer)
    data = load_dataset(
        cfg.train.data,
        None if "image_size" in infer else mc.image_size,
        None if "channels" in infer else mc.channels,
    )
    mc = dataclasses.replace(
        mc, image_size=data.images.shape[1], channels=data.images.shape[-1], num_classes=len(data.class_names)
    ).validate()
    train_set, val_set = data.split(cfg.train.val_fraction, cfg.train.seed)
    cfg, chosen = recipe.resolve(
        dataclasses.replace(
            cfg, model=mc, data_key=data.key, class_names=data.class_names, vaegan_version=__version__
        ),
        len(train_set.images),
        on_cuda=device.type == "cuda",
        class_spread=class_spread(data.labels),
    )
    tc, mc = cfg.train.validate(), cfg.model
    if (tc.feature_layer or 1) > mc.num_blocks + 1:
        raise ConfigError(
            f"--feature-layer {tc.feature_layer}: D has {mc.num_blocks + 1} conv blocks at {mc.image_size}x"
            f"{mc.image_size}; pick 1 (its last) to {mc.num_blocks + 1}"
        )
    batch = int(tc.batch_size or 0)
    x_all = to_tensor_range(train_set.images).to(device).contiguous(memory_format=torch.channels_last)
    n_train = len(x_all)
    per_step = batch * world
    if n_train < per_step:
        raise DataError(
            f"{n_train} training images is fewer than one batch ({batch} x {world} ranks): "
            "lower --batch-size or add images"
        )
    steps_per_epoch = n_train // per_step
    bg_all = background(x_all) if tc.foreground_weight else None  # once, not a median per step
    weights = draw_weights(train_set.labels, float(tc.class_balance or 0.0))

    # ---- models, optimisers, EMA
    torch.manual_seed(tc.seed)
    amp_dtype = autocast_for(device, tc.amp)
    st = TrainState.create(mc, tc, device, fp16=amp_dtype == torch.float16)
    if resume and not (out / ckpt.STATE).exists():
        log.info("%s has no checkpoint yet (killed before the first one): starting from step 0", out)
        resume = False
    if resume:
        rng = st.load_state_dict(ckpt.load_state(out))
        torch.set_rng_state(rng[rank] if rank < len(rng) else rng[0])
        if is_main:  # drop log lines the killed run wrote after its last checkpoint
            rows = [r for r in read_jsonl(out / "metrics.jsonl") if r.get("step", 0) <= st.step]
            write_bytes(out / "metrics.jsonl", "".join(json.dumps(r) + "\n" for r in rows).encode())
    else:
        torch.manual_seed(tc.seed + 1 + rank)  # different noise per rank, same weights
    if extend_time_s > 0 or (not resume and tc.time_s):
        st.budget_s = st.elapsed_s + (extend_time_s or tc.time_s)
    total = 0 if st.budget_s else (tc.max_steps or tc.epochs * steps_per_epoch)
    if is_main:
        out.mkdir(parents=True, exist_ok=True)
        for p in remove_stale_temps(out):  # a write cut short by a kill: never part of the run
            log.info("removed %s, left by a run that was killed mid-write", p.name)
        if not resume:  # config.json first: a dir killed after it is a run that --resume continues
            write_json(out / ckpt.CONFIG, cfg.to_dict())
            (out / "metrics.jsonl").unlink(missing_ok=True)  # a run's own, killed before its checkpoint
        (out / "samples").mkdir(exist_ok=True)
        for s in data.skipped:
            append_line(out / "skipped_files.txt", s)
        log.info("%s", recipe.describe(cfg, n_train, chosen, st.budget_s))
        if weights is not None and train_set.labels is not None:
            log.info(
                "%s",
                recipe.describe_draw(
                    train_set.labels,
                    data.class_names,
                    float(tc.class_balance or 0.0),
                    tc.vae_fraction
                    if tc.mode == "vaegan"
                    and "vae_fraction" in chosen
                    and tc.vae_fraction == recipe.UNEVEN_VAE_FRACTION
                    else None,
                ),
            )

    def autocast():
        if amp_dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(device.type, dtype=amp_dtype)

    g_fixed = torch.Generator().manual_seed(1234)
    z_fixed = torch.randn(64, mc.latent_dim or 0, generator=g_fixed).to(device)
    x_val_fixed = (
        to_tensor_range(val_set.images[:32]).to(device).contiguous(memory_format=torch.channels_last)
    )

    reported = [time.time()]  # when on_checkpoint last ran

    def save() -> None:
        rng = [torch.get_rng_state()]
        if world > 1:
            gathered: list[Any] = [None] * world
            dist.all_gather_object(gathered, rng[0])
            rng = gathered
        if is_main:
            ckpt.save_run(out, cfg, st.ema_encoder, st.ema_decoder, st.state_dict(rng))
            if on_checkpoint is not None and time.time() - reported[0] >= REPORT_EVERY_S:
                reported[0] = time.time()
                try:
                    on_checkpoint(out)
                except Exception as e:  # noqa: BLE001 - a report is never worth a training run
                    log.warning("could not write the report (%s: %s)", type(e).__name__, e)
        if world > 1:
            dist.barrier()

    def write_samples(name: str, z: torch.Tensor | None = None) -> None:
        if not is_main:
            return
        dec, enc = st.ema_decoder, st.ema_encoder
        was = enc.training
        dec.eval()
        enc.eval()
        with torch.no_grad():
            prior = to_uint8(dec(z_fixed if z is None else z).float())
            mu, _ = enc(x_val_fixed)
            rec = to_uint8(dec(mu).float())
        enc.train(was)
        save_grid(out / "samples" / f"prior_{name}.png", prior, cols=8)
        pairs = np.stack([to_uint8(x_val_fixed), rec], 1).reshape(-1, *rec.shape[1:])
        save_grid(out / "samples" / f"recon_{name}.png", pairs, cols=8)

    elapsed0, step0 = st.elapsed_s, st.step

    def clock() -> float:
        """Training seconds so far, across resumes; rank 0's clock on every rank."""
        now = torch.tensor([elapsed0 + time.time() - t_start], dtype=torch.float64)
        if world > 1:
            dist.broadcast(now, 0)
        return float(now)

    # ---- loop
    bar = _Progress(
        st.budget_s or total,
        st.elapsed_s if st.budget_s else st.step,
        progress and is_main,
        bool(st.budget_s),
    )
    t_log, step_log = time.time(), st.step
    prev_stage = st.stage  # "" on a fresh run; a resumed one goes on in its checkpoint's stage
    last: dict[str, float] = {}
    # seconds kept for the final checkpoint, the prior's fit (2-3 s for 2,700 images, 128 components)
    # and the samples; updated as checkpoints are measured
    reserve = 2.0 + (min(4.0, 0.02 * st.budget_s) if recipe.prior_of(cfg) == "fitted" else 0.0)
    step_s = 0.0  # a recent step's duration: the budget must hold the next one too
    last_ckpt = last_samples = t_loop = clock()
    # A fresh run's stages split the time left after its set-up (data, models, probes), so that a short
    # budget's first stage is not spent before the first step; a resumed run's split is its budget's.
    stage_origin = 0.0 if resume else t_loop
    order, order_epoch = torch.empty(0, dtype=torch.long), -1  # this epoch's image order (epoch_order)
    # the steps this budget buys on this CPU, judged once early in the VAE stage (outlook.py)
    outlook_watch = outlook.BudgetWatch(
        outlook.recipe_steps(mc.image_size, mc.channels) if st.budget_s and is_main else None,
        st.budget_s,
        1.0 if tc.mode == "vae" else float(tc.vae_fraction or 0.0),
        per_step,
        str(out),
        (st.step, t_loop),
    )
    st.models.train()
    try:
        while True:
            now = clock()
            if st.budget_s:
                if now + reserve + step_s >= st.budget_s:
                    break
                fraction = (now - stage_origin) / max(1e-9, st.budget_s - stage_origin)
            else:
                if st.step >= total:
                    break
                fraction = st.step / max(1, total)
            by_budget = stage_at(fraction, tc)
            stage = max(by_budget, st.stage or by_budget, key=lambda s: STAGES.index(s) if s in STAGES else 0)
            st.stage = stage
            epoch, i = divmod(st.step, steps_per_epoch)
            if epoch != order_epoch:  # one draw an epoch, not one a step
                order, order_epoch = epoch_order(n_train, tc.seed, epoch, weights), epoch
            idx = order[(i * world + rank) * batch : (i * world + rank + 1) * batch].to(device)
            x = x_all[idx]
            # Encoder and decoder run at their own rate once the GAN is on (adv_lr): a lower one keeps
            # D from collapsing. Measured on digits it cost more than it bought (docs/quality.md), so
            # the recipe keeps lr there; on 64x64 colour it is what keeps D alive (recipe.py). D trains
            # in the GAN stages, and from the first step with d_warmup, always at lr_d.
            gan_steps = st.d_watch.steps  # GAN steps taken so far, saved with the run
            gan_start = bool(tc.gan_warmup) and stage in ("adversarial", "joint") and gan_steps == 0
            if gan_start and outlook_watch.warning:
                # A run short for its CPU: the EMAs' window grows with the steps averaged
                # (steps._ema_avg), and from step 0 it lagged the samples. Restarted here it is a
                # share of the GAN steps: an AVX2 CPU's 15 minutes (2,560-2,770 steps), each run
                # scored both ways, FD 76.8 -> 69.7 and 72.2 -> 66.3 (letters64), 57.7 -> 48.5 and
                # 34.6 -> 32.5 (emoji64). Runs of the recipe's steps keep the average they were
                # measured with (docs/experiments/colour.md).
                st.restart_averages()
            for opt in (st.opt_e, st.opt_g):
                if gan_start:
                    # Adam's second moments were measured on reconstruction gradients, smaller than
                    # the GAN stages' gradients: kept, the first GAN steps can be several times
                    # adv_lr, and D fell to "cannot tell" within 30 (letters64, recipe.py)
                    opt.state.clear()
                for group in opt.param_groups:
                    group["lr"] = encoder_decoder_lr(stage, tc, gan_steps)
            t_step = time.time()
            try:
                bg = None if bg_all is None else bg_all[idx]
                warm_d = bool(tc.d_warmup) and tc.mode == "vaegan" and st.step % D_WARMUP_EVERY == 0
                losses, fake = generator_step(st, x, stage, tc, autocast, world, bg, warm_d)
                if fake is not None:
                    losses |= discriminator_step(st, x, fake, tc, autocast, world)
                    if stage != "vae":  # GAN steps only: is D still telling real from fake?
                        warning = st.d_watch.update(float(losses["d_real"]), float(losses["d_fake"]))
                        if warning and is_main:
                            bar.write(warning)
            except NonFinite as e:
                _diverged(save, st, stage, e.losses, out if is_main else None)
            st.scaler.update()
            step_s = max(time.time() - t_step, 0.9 * step_s)
            st.step += 1
            st.elapsed_s = clock()
            if short := outlook_watch.update(st.step, st.elapsed_s, stage):
                bar.write(short)

            # a row at each stage's first step too: a short stage between two logged steps would
            # otherwise leave no trace in metrics.jsonl or the report's curves
            first_of_stage = stage != prev_stage
            prev_stage = stage
            log_now = st.step % tc.log_every == 0 or first_of_stage or (not st.budget_s and st.step == total)
            row: dict[str, Any] = {"step": st.step, "total_steps": total, "epoch": epoch, "stage": stage}
            if log_now or bar.bar is not None:  # d_real, d_fake: D's mean logits (liveness.py)
                row |= {
                    k if k.startswith("d_") else f"loss_{k}": float(v.detach())
                    for k, v in losses.items()
                    if k != "total"
                }
                row["loss_total"] = float(losses["total"].detach())
            row["imgs_per_s"] = (
                (st.step - step_log) * per_step / max(1e-9, time.time() - t_log) if log_now else 0.0
            )
            if log_now:
                t_log, step_log = time.time(), st.step
                row["time_s"] = round(st.elapsed_s, 2)
                last = {k: float(v) for k, v in row.items() if k.startswith("loss_")}
                if is_main:
                    append_line(out / "metrics.jsonl", json.dumps(row))
            bar.update(row, log_now, st.elapsed_s if st.budget_s else st.step)
            if st.budget_s:  # checkpoints and sample grids by time
                if st.elapsed_s - last_ckpt >= TIME_CHECKPOINT_S:
                    t0 = time.time()
                    save()
                    reserve = max(reserve, 3 * (time.time() - t0) + 1.0)
                    last_ckpt = st.elapsed_s
                if st.elapsed_s - last_samples >= st.budget_s / 10:
                    write_samples(f"{int(st.elapsed_s):05d}s")
                    last_samples = st.elapsed_s
            else:
                end_of_epoch = st.step % steps_per_epoch == 0 or st.step == total
                if st.step % tc.checkpoint_every == 0 or end_of_epoch:
                    save()
                if end_of_epoch:
                    write_samples(f"epoch{math.ceil(st.step / steps_per_epoch):03d}")
    finally:
        bar.close()
    st.elapsed_s = clock()
    save()  # every run ends with a checkpoint and samples, whatever stopped it
    z_last = None
    if is_main and recipe.prior_of(cfg) == "fitted":  # the prior samples are drawn from (core/prior.py)
        prior = ckpt.fit_run_prior(
            st.ema_encoder, train_set.images, tc.seed, train_set.labels, data.class_names
        )
        prior.save(out / ckpt.PRIOR)
        z_last = torch.from_numpy(prior.sample(64, np.random.default_rng(1234))).to(device)
    write_samples("last", z_last)
    seconds = time.time() - t_start
    rate = (st.step - step0) * per_step / max(1e-9, st.elapsed_s - elapsed0)
    if is_main and st.d_watch.is_dead:  # said in the run's last lines too, not only mid-run
        log.warning("%s", st.d_watch.warning())
    if short := outlook_watch.final(st.step, st.elapsed_s):  # restated with the steps it took
        log.warning("%s", short)
    if is_main and progress:
        log.info(
            "reached step %d (epoch %.1f, %s stage) in %s%s at %.0f img/s; weights %s, samples %s",
            st.step,
            st.step / steps_per_epoch,
            st.stage or tc.mode,
            recipe.format_duration(st.elapsed_s),
            f" of a {recipe.format_duration(st.budget_s)} budget"
            if st.budget_s
            else f" ({st.step}/{total} steps)",
            rate,
            out / ckpt.WEIGHTS,
            out / "samples" / "prior_last.png",
        )
    if owns_group:
        # Every rank leaves together and closes its connections itself: a rank that just exits
        # can make gloo's reader thread in the other one throw "Connection closed by peer" and
        # abort it (SIGABRT), failing a finished run.
        dist.barrier()
        dist.destroy_process_group()
    return TrainResult(out, st.step, total, seconds, last, cfg, st.stage, rate)


# ------------------------------------------------------------------------------------ helpers
def _changes(cfg: RunConfig, saved: RunConfig) -> dict[str, Any]:
    """The fields a caller set (not None) that differ from a saved run's; the sizes the data decides
    are left out."""
    out = {}
    for section, old in ((cfg.model, saved.model), (cfg.train, saved.train)):
        for f in dataclasses.fields(section):
            if f.name in ("image_size", "channels", "num_classes"):
                continue
            value = getattr(section, f.name)
            if value is not None and value != getattr(old, f.name):
                out[f.name] = value
    return out


def _diverged(save, st: TrainState, stage: str, losses: dict[str, torch.Tensor], out: Path | None) -> None:
    """Save the last good weights (no step was taken with the bad loss) and stop with a clear message."""
    save()
    bad = ", ".join(f"{k}={float(v.detach()):.3g}" for k, v in losses.items() if not is_finite(v)) or "loss"
    raise TrainingDiverged(
        f"training diverged at step {st.step} ({stage} stage): {bad}. The last good state (step {st.step}) is "
        f"saved; resume with `vaegan train --resume {out}` and a lower --lr, or raise --gamma"
    )


class _Progress:
    """tqdm bar with the stage, live losses and the ETA on a terminal (over seconds with a time
    budget, over steps otherwise); plain log lines elsewhere (CI, files)."""

    def __init__(self, total: float, start: float, enabled: bool, timed: bool):
        self.bar, self.enabled, self.timed = None, enabled, timed
        if enabled and sys.stderr.isatty():
            from tqdm import tqdm

            fmt = "{desc} {percentage:3.0f}%|{bar}| {n:.0f}/{total:.0f}s [{elapsed}<{remaining}{postfix}]"
            self.bar = tqdm(
                total=round(total, 1) if timed else int(total),
                initial=round(start, 1) if timed else int(start),
                unit="s" if timed else "step",
                dynamic_ncols=True,
                bar_format=fmt if timed else None,
            )

    def update(self, row: dict[str, Any], log_line: bool, position: float) -> None:
        if self.bar is not None:
            self.bar.set_description(row["stage"], refresh=False)
            self.bar.update(round(position - self.bar.n, 3))
            if log_line:
                self.bar.set_postfix(
                    {k.removeprefix("loss_"): f"{v:.3g}" for k, v in row.items() if _shown(k)}
                )
        elif log_line and self.enabled:
            losses = " ".join(f"{k.removeprefix('loss_')}={v:.4g}" for k, v in row.items() if _shown(k))
            where = f"{row.get('time_s', 0):.0f}s" if self.timed else f"{row['step']}/{row['total_steps']}"
            log.info(
                "step %d (%s) epoch %d %s %s %.0f img/s",
                row["step"],
                where,
                row["epoch"],
                row["stage"],
                losses,
                row["imgs_per_s"],
            )

    def write(self, line: str) -> None:
        """A line above the bar (or a log line without one)."""
        if self.bar is not None:
            self.bar.write(line, file=sys.stderr)
        else:
            log.warning("%s", line)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def _shown(key: str) -> bool:
    return key.startswith(("loss_", "d_real", "d_fake"))
