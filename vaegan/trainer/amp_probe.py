"""bf16 autocast on the CPU only where it is faster: measured, not assumed.

A CPU with native bf16 (AVX512-BF16, AMX) runs the recipe's convolutions in bf16 through oneDNN, but
how much that buys depends on the chip: with AMX the VAE step ran 3.4x fp32 (letters64), and on
AVX512-BF16 without AMX it has not been assumed to pay. The first colour run on a machine times a few
VAE and joint steps of its own model both ways (about 3 s) and keeps the faster; the answer is cached
by CPU, torch version and model shape under $VAEGAN_CACHE, so later runs read it.
"""

from __future__ import annotations

import contextlib
import json
import logging
import time
from typing import Any

import torch

from vaegan.config import ModelConfig, TrainConfig
from vaegan.core.cpu import cpuinfo, isa_summary
from vaegan.core.io import write_json

log = logging.getLogger("vaegan.train")
STEPS = 4  # timed steps a stage and precision, after one warm-up step


def faster_cpu_amp(mc: ModelConfig, tc: TrainConfig) -> tuple[str, dict[str, float]]:
    """ "bf16" or "off", and the img/s each gave (from the cache when this machine measured it)."""
    from vaegan.trainer.metrics import cache_dir

    key = _key(mc, tc)
    path = cache_dir() / "amp-probe.json"
    cached: dict[str, Any] = {}
    with contextlib.suppress(OSError, ValueError):
        cached = json.loads(path.read_text())
    if isinstance(cached.get(key), dict):
        rates = cached[key]
    else:
        rates = {amp: _rate(mc, tc, amp) for amp in ("off", "bf16")}
        log.info(
            "bf16 autocast: %.0f img/s, fp32: %.0f img/s on this CPU (%s)",
            rates["bf16"],
            rates["off"],
            isa_summary(),
        )
        with contextlib.suppress(OSError):
            write_json(path, {**cached, key: rates})
    return ("bf16" if rates["bf16"] > rates["off"] else "off"), rates


def _key(mc: ModelConfig, tc: TrainConfig) -> str:
    model = next(
        (ln.split(":", 1)[1].strip() for ln in cpuinfo().splitlines() if ln.startswith("model name")), ""
    )
    shape = f"{mc.image_size}x{mc.channels} w{mc.width} z{mc.latent_dim} d{mc.d_width} b{tc.batch_size}"
    return f"{model} [{isa_summary()}] torch {torch.__version__} threads {torch.get_num_threads()}: {shape}"


def _rate(mc: ModelConfig, tc: TrainConfig, amp: str) -> float:
    """img/s of the loop's own steps, the VAE and joint stages weighted as the recipe splits time."""
    from vaegan.trainer.steps import TrainState, discriminator_step, generator_step

    dtype = torch.bfloat16 if amp == "bf16" else None
    state = torch.get_rng_state()
    torch.manual_seed(0)
    st = TrainState.create(mc, tc, torch.device("cpu"), fp16=False)
    batch = int(tc.batch_size or 32)
    x = (torch.rand(batch, mc.channels, mc.image_size, mc.image_size) * 2 - 1).contiguous(
        memory_format=torch.channels_last
    )

    def autocast():
        return torch.autocast("cpu", dtype=dtype) if dtype is not None else contextlib.nullcontext()

    seconds = {}
    for stage in ("vae", "joint"):
        for i in range(STEPS + 1):
            if i == 1:
                t0 = time.perf_counter()
            _, fake = generator_step(st, x, stage, tc, autocast, 1, None, False)
            if fake is not None:
                discriminator_step(st, x, fake, tc, autocast, 1)
        seconds[stage] = (time.perf_counter() - t0) / STEPS
    torch.set_rng_state(state)
    vae = float(tc.vae_fraction or 0.0)
    return batch / (vae * seconds["vae"] + (1 - vae) * seconds["joint"])
