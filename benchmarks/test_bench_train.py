"""Training throughput of a 64x64 RGB model, per stage, with the recipe `vaegan train` picks for it.

    make bench                                   # with the other pytest-benchmark suites
    python benchmarks/test_bench_train.py        # a table: img/s per stage and the run's average,
                                                 # bf16 autocast off and on, and the recipe's pick;
                                                 # then the work per image against this CPU's
                                                 # fp32 matmul rate, and the decoder's training
                                                 # pass both ways

A step is the loop's own: `generator_step` (and `discriminator_step` in the GAN stages) on a batch
of the recipe's size, with the recipe's mixed precision. The run's average weights each stage by the
share of the time budget the recipe gives it (images = sum of time x rate). Figures depend on the
CPU: the ISA and whether bf16 is native are printed with them.
"""

from __future__ import annotations

import contextlib
import sys
import time
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from vaegan.config import ModelConfig, RunConfig, TrainConfig  # noqa: E402
from vaegan.trainer import recipe  # noqa: E402
from vaegan.trainer.loop import D_WARMUP_EVERY, autocast_for  # noqa: E402
from vaegan.trainer.losses import background  # noqa: E402
from vaegan.trainer.steps import TrainState, discriminator_step, generator_step  # noqa: E402

STAGES = ("vae", "adversarial", "joint")


def _setup(size: int = 64, channels: int = 3, n_images: int = 2700, amp: str | None = None):
    """The recipe's model and steps for 64x64 RGB; amp: "bf16" or "off" instead of the recipe's."""
    cfg, chosen = recipe.resolve(
        RunConfig(ModelConfig(image_size=size, channels=channels), TrainConfig(amp=amp)),
        n_images,
        on_cuda=False,
    )
    tc = cfg.train
    torch.manual_seed(0)
    st = TrainState.create(cfg.model, tc, torch.device("cpu"), fp16=False)
    dtype = autocast_for(torch.device("cpu"), tc.amp)

    def autocast():
        return torch.autocast("cpu", dtype=dtype) if dtype is not None else contextlib.nullcontext()

    batch = int(tc.batch_size or 32)
    x = (torch.rand(batch, channels, size, size) * 2 - 1).contiguous(memory_format=torch.channels_last)
    bg = background(x) if tc.foreground_weight else None  # the loop computes these once per data set
    return cfg, st, autocast, x, bg, chosen


def _step(st, x, stage, tc, autocast, bg) -> None:
    for opt in (st.opt_e, st.opt_g):
        for group in opt.param_groups:
            group["lr"] = tc.lr
    warm_d = bool(tc.d_warmup) and st.step % D_WARMUP_EVERY == 0  # as the loop does
    st.step += 1
    _, fake = generator_step(st, x, stage, tc, autocast, 1, bg, warm_d)
    if fake is not None:
        discriminator_step(st, x, fake, tc, autocast, 1)


@pytest.mark.parametrize("amp", ["off", "bf16"])
@pytest.mark.parametrize("stage", STAGES)
def test_training_step_64px_rgb(benchmark, stage, amp):
    cfg, st, autocast, x, bg, _ = _setup(amp=amp)
    _step(st, x, stage, cfg.train, autocast, bg)  # warm-up: oneDNN picks its kernels on the first call
    benchmark.pedantic(_step, args=(st, x, stage, cfg.train, autocast, bg), rounds=12, warmup_rounds=2)
    benchmark.extra_info["images_per_step"] = len(x)
    benchmark.extra_info["amp"] = cfg.train.amp


def _decoder_pass(dec, z: torch.Tensor, low_res: bool) -> None:
    """One training-mode forward and backward of the decoder: its own (each upsample + conv at the
    lower resolution, models.upsample_conv) or through the Upsample -> Conv modules export runs."""
    if low_res:
        x = dec(z)
    else:
        x = torch.tanh(dec.to_image(dec.blocks(dec.fc(z).view(-1, dec.seed_channels, 4, 4))))
    x.square().mean().backward()


@pytest.mark.parametrize("low_res", [True, False], ids=["upsample_conv", "upsample_then_conv"])
def test_decoder_training_pass_64px_rgb(benchmark, low_res):
    _, st, _, x, _, _ = _setup(amp="off")
    dec, z = st.models.decoder.train(), torch.randn(len(x), st.models.cfg.latent_dim or 0)
    _decoder_pass(dec, z, low_res)
    benchmark.pedantic(_decoder_pass, args=(dec, z, low_res), rounds=12, warmup_rounds=2)


def decoder_ms(rounds: int = 5, passes: int = 10) -> dict[str, float]:
    """Median ms of a decoder training pass each way, the two interleaved (this CPU's noise hits both)."""
    _, st, _, x, _, _ = _setup(amp="off")
    dec, z = st.models.decoder.train(), torch.randn(len(x), st.models.cfg.latent_dim or 0)
    times: dict[str, list[float]] = {"upsample_conv": [], "Upsample -> Conv": []}
    for _ in range(rounds):
        for name, low_res in (("upsample_conv", True), ("Upsample -> Conv", False)):
            _decoder_pass(dec, z, low_res)
            t0 = time.perf_counter()
            for _ in range(passes):
                _decoder_pass(dec, z, low_res)
            times[name].append((time.perf_counter() - t0) / passes * 1e3)
    return {k: sorted(v)[len(v) // 2] for k, v in times.items()}


def gflop_per_image(steps: int = 4) -> dict[str, float]:
    """Floating-point work of one training image per stage (torch's FlopCounterMode: 2 per
    multiply-add of the convs and matmuls), averaged over `steps` of the loop's steps (one VAE step
    in D_WARMUP_EVERY also trains D)."""
    from torch.utils.flop_counter import FlopCounterMode

    cfg, st, autocast, x, bg, _ = _setup(amp="off")
    out = {}
    for stage in STAGES:
        counter = FlopCounterMode(display=False)
        with counter:
            for _ in range(steps):
                _step(st, x, stage, cfg.train, autocast, bg)
        out[stage] = counter.get_total_flops() / steps / len(x) / 1e9
    return out


def measure(seconds: float = 8.0, amp: str | None = None) -> dict[str, float]:
    """img/s per stage (each measured for about `seconds`) and the recipe's time-weighted average."""
    cfg, st, autocast, x, bg, _ = _setup(amp=amp)
    tc = cfg.train
    rates = {}
    for stage in STAGES:
        for _ in range(2):
            _step(st, x, stage, tc, autocast, bg)
        n, t0 = 0, time.perf_counter()
        while time.perf_counter() - t0 < seconds:
            _step(st, x, stage, tc, autocast, bg)
            n += 1
        rates[stage] = n * len(x) / (time.perf_counter() - t0)
    vae, adv = float(tc.vae_fraction or 0), float(tc.adv_fraction or 0)
    rates["run average"] = vae * rates["vae"] + adv * rates["adversarial"] + (1 - vae - adv) * rates["joint"]
    return rates


if __name__ == "__main__":
    from vaegan.bench import cpu_flags
    from vaegan.bench.measure import measure_peak

    flags = cpu_flags()
    isa = next((n for f, n in (("amx_bf16", "AMX"), ("avx512_bf16", "AVX512-BF16"), ("avx512f", "AVX-512"),
                                ("avx2", "AVX2")) if f in flags), "unknown")  # fmt: skip
    cfg, *_, chosen = _setup()
    print(recipe.describe(cfg, 2700, chosen))
    print(
        f"CPU: best ISA {isa}; native bf16: {recipe.cpu_has_native_bf16()}; torch threads {torch.get_num_threads()}"
    )
    both = {amp: measure(amp=amp) for amp in ("off", "bf16")}
    print(f"  {'img/s':<12} {'fp32':>7} {'bf16':>7}  bf16/fp32")
    for stage in both["off"]:
        print(
            f"  {stage:<12} {both['off'][stage]:7.0f} {both['bf16'][stage]:7.0f}  {both['bf16'][stage] / both['off'][stage]:.2f}x"
        )
    print(f"the recipe picks: amp {cfg.train.amp}")
    work = gflop_per_image()
    fp32 = both["off"]
    print(
        "  fp32 work:   "
        + ", ".join(f"{k} {g:.3f} GFLOP/img ({g * fp32[k]:.0f} GFLOP/s)" for k, g in work.items())
    )
    # the run average at a sustained P GFLOP/s is P * sum(share / work): what 300 img/s would take
    tc = cfg.train
    vae, adv = float(tc.vae_fraction or 0), float(tc.adv_fraction or 0)
    per_gflop = vae / work["vae"] + adv / work["adversarial"] + (1 - vae - adv) / work["joint"]
    print(
        f"  a run average of 300 img/s takes {300 / per_gflop:.0f} GFLOP/s sustained in fp32 on this model; "
        f"this CPU's fp32 matmul peak (vaegan bench's) is {measure_peak()['fp32']['best']:.0f} GFLOP/s"
    )
    ms = decoder_ms()
    low, up = ms["upsample_conv"], ms["Upsample -> Conv"]
    print(
        f"decoder training pass, fp32: upsample_conv {low:.1f} ms, Upsample -> Conv {up:.1f} ms ({up / low:.2f}x)"
    )
