"""Will a time budget buy the recipe the steps it was measured at? `--time 15m` is the same promise on
every machine, but the steps it buys are not: on the 2-core CPUs of docs/experiments/colour.md a
15-minute letters64 run took about 10,400 steps with AVX-512 VNNI and bf16, 6,700 with AVX-512 bf16
and 2,700 with AVX2 only, and at 2,700 its FD was 67-76 against 13-23. A run on a slow CPU is
otherwise silent about it until the user looks at the grids.

Early in the VAE stage (a twentieth of the budget), the run projects its step count from its own step
rate and says in one line, during the run and at its end, when that falls short of what the recipe
was measured at, and how much more time would make it up (`--resume RUN --time ...`). Such a run
also restarts the weight averages it saves when its GAN stages begin (loop.py)."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

# The fewest steps of the 15-minute colour runs the recipe was tuned on (AVX-512 bf16, 2 cores)
COLOUR_RECIPE_STEPS = 6_700
# A GAN-stage step (encoder, decoder twice, D on real, reconstructed and sampled images) against a
# VAE step: 1.98-2.46x in img/s over whole runs on an AVX2 CPU (letters64, emoji64), counted 2x
GAN_STEP_COST = 2.0
JUDGE_AT = 0.05  # share of the budget after which the rate is measured: past start-up and warm-up


def recipe_steps(image_size: int, channels: int) -> int | None:
    """The steps the recipe for this image shape was measured at; None where it was tuned by steps
    or epochs (32x32 grey: the quick start)."""
    return None if image_size * image_size * channels <= 32 * 32 else COLOUR_RECIPE_STEPS


def projected_steps(
    step: int, steps_per_s: float, elapsed_s: float, budget_s: float, vae_fraction: float
) -> int:
    """Steps a time-budgeted run ends with, from its VAE-stage rate: the rest of the VAE stage at that
    rate, the GAN stages at 1 / GAN_STEP_COST of it."""
    vae_end = vae_fraction * budget_s
    vae_left = max(0.0, vae_end - elapsed_s)
    gan_left = budget_s - max(elapsed_s, vae_end)
    return int(step + steps_per_s * (vae_left + gan_left / GAN_STEP_COST))


def time_for(missing_steps: int, gan_steps_per_s: float) -> float:
    """Seconds, in whole minutes, that `--resume --time` needs for `missing_steps` more: a resumed run
    goes on in the joint stage, so every one of them is a GAN step."""
    return 60.0 * math.ceil(max(0, missing_steps) / max(1e-9, gan_steps_per_s) / 60.0 - 1e-6)


def short_budget_warning(
    steps: int,
    wanted: int,
    rate_img_s: float,
    gan_steps_per_s: float,
    budget_s: float,
    out: str,
    final: bool = False,
) -> str:
    """The line a run prints when its budget buys fewer steps than the recipe was measured at:
    projected early in the run, or (final) the steps it took."""
    from vaegan.trainer.recipe import format_duration

    more = format_duration(time_for(wanted - steps, gan_steps_per_s))
    took = (
        f"gave the {format_duration(budget_s)} budget"
        if final
        else f"gives the {format_duration(budget_s)} budget about"
    )
    return (
        f"warning: at {rate_img_s:.0f} img/s this CPU {took} {steps:,} steps, fewer than the {wanted:,} "
        f"the recipe was measured at: expect softer, less varied samples; "
        f"`vaegan train --resume {out} --time {more}` gives it the rest"
    )


@dataclass
class BudgetWatch:
    """One time-budgeted run's outlook: `update` after every step returns the early warning once
    (judged a JUDGE_AT share into the run, in the VAE stage), `final` the line for the run's end."""

    wanted: int | None  # recipe_steps for the run's image shape; None: nothing to judge
    budget_s: float
    vae_share: float  # of the budget: the recipe's vae_fraction, 1.0 for --mode vae
    per_step: int  # images a step, over every rank
    out: str
    start: tuple[int, float]  # (step, elapsed seconds) when this process's loop began
    gan_from: tuple[int, float] = field(default=(0, 0.0), init=False)  # where this process's GAN steps began
    warning: str = field(default="", init=False)
    judged: bool = field(default=False, init=False)

    def __post_init__(self) -> None:
        self.gan_from = self.start

    def update(self, step: int, elapsed_s: float, stage: str) -> str | None:
        if stage == "vae":
            self.gan_from = (step, elapsed_s)
        ran = elapsed_s - self.start[1]
        if (
            self.judged
            or not self.wanted
            or stage != "vae"
            or ran < JUDGE_AT * (self.budget_s - self.start[1])
        ):
            return None
        self.judged = True
        steps_per_s = (step - self.start[0]) / ran
        projected = projected_steps(step, steps_per_s, elapsed_s, self.budget_s, self.vae_share)
        if projected >= self.wanted:
            return None
        gan_rate = steps_per_s if self.vae_share >= 1.0 else steps_per_s / GAN_STEP_COST
        self.warning = short_budget_warning(
            projected, self.wanted, steps_per_s * self.per_step, gan_rate, self.budget_s, self.out
        )
        return self.warning

    def final(self, step: int, elapsed_s: float) -> str | None:
        """The early warning restated with the steps the run took (None if it gave none or the run
        reached the recipe's steps)."""
        if not self.warning or not self.wanted or step >= self.wanted:
            return None
        rate = (step - self.start[0]) * self.per_step / max(1e-9, elapsed_s - self.start[1])
        gan_steps = step - self.gan_from[0]  # none with --mode vae: more time buys VAE steps
        gan_rate = gan_steps / max(1e-9, elapsed_s - self.gan_from[1]) if gan_steps else rate / self.per_step
        return short_budget_warning(step, self.wanted, rate, gan_rate, self.budget_s, self.out, final=True)
