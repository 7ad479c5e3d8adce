"""A time budget that buys fewer steps than the recipe was measured at is said in one line, early in
the run and at its end, with the time that would make it up; runs whose recipe was tuned by steps
(the digits quick start) say nothing. A short run also saves weight averages over its GAN steps only."""

from __future__ import annotations

import pytest

from tests.conftest import run_cli, two_colour_folder
from vaegan.trainer import outlook
from vaegan.trainer.checkpoint import load_state


def test_the_projection_runs_the_rest_of_the_vae_stage_at_its_rate_and_the_gan_stages_at_half():
    # 10 steps/s, 5 s into a 100 s budget with 40 s of VAE: 50 + 10 * (35 + 60 / 2)
    assert outlook.projected_steps(50, 10.0, 5.0, 100.0, 0.4) == 700
    assert outlook.projected_steps(50, 10.0, 5.0, 100.0, 1.0) == 50 + 950  # --mode vae: all VAE steps
    assert outlook.projected_steps(500, 10.0, 60.0, 100.0, 0.4) == 500 + 200  # already in the GAN stages
    # more time is priced at the GAN steps' rate (a resumed run goes on in the joint stage), in whole
    # minutes
    assert outlook.time_for(700, 5.0) == 180.0 and outlook.time_for(600, 5.0) == 120.0
    assert outlook.time_for(-5, 5.0) == 0.0


def test_only_the_colour_recipe_has_a_step_count_to_fall_short_of():
    assert outlook.recipe_steps(32, 1) is None and outlook.recipe_steps(16, 3) is None
    assert outlook.recipe_steps(64, 3) == outlook.recipe_steps(32, 3) == outlook.COLOUR_RECIPE_STEPS
    line = outlook.short_budget_warning(2694, 6700, 96.0, 2.0, 900.0, "runs/letters")
    assert line.startswith("warning: at 96 img/s this CPU gives the 15m budget about 2,694 steps")
    assert line.endswith("`vaegan train --resume runs/letters --time 34m` gives it the rest")  # 4,006 / 2 s
    final = outlook.short_budget_warning(2694, 6700, 96.0, 2.0, 900.0, "runs/letters", final=True)
    assert "gave the 15m budget 2,694 steps" in final


def _run(watch: outlook.BudgetWatch, vae_steps_per_s: float, gan_steps_per_s: float) -> list[str]:
    """Feed the watch a whole 100 s run, 40 s of VAE steps then GAN steps, at the given rates."""
    lines, step, t = [], 0, 0.0
    while t < 100.0:
        vae = t < 40.0
        t += 1.0 / (vae_steps_per_s if vae else gan_steps_per_s)
        step += 1
        lines.append(watch.update(step, t, "vae" if vae else "joint"))
    lines.append(watch.final(step, t))
    return [line for line in lines if line]


def test_the_watch_warns_early_and_at_the_end_only_when_the_steps_fall_short():
    def watch(wanted):
        return outlook.BudgetWatch(wanted, 100.0, 0.4, 32, "runs/x", (0, 0.0))

    # 10 VAE and 5 GAN steps a second: 400 + 300 = 700 steps, short of 1,000
    early, end = _run(watch(1000), 10.0, 5.0)
    assert "gives the 1m40s budget about 700 steps" in early and "--time 1m`" in early  # 300 / 5 s
    assert "gave the 1m40s budget 700 steps" in end and "--time 1m`" in end
    # the GAN steps slower than projected: the end prices the missing steps at their real rate
    _, end = _run(watch(1000), 10.0, 2.0)
    assert "gave the 1m40s budget 520 steps" in end and "--time 4m`" in end  # 480 / 2 s
    assert _run(watch(600), 10.0, 5.0) == []  # enough steps
    assert _run(watch(None), 10.0, 5.0) == []  # a recipe tuned by steps


@pytest.mark.slow
def test_a_short_colour_budget_says_so_during_the_run_and_at_its_end(tmp_path):
    data = two_colour_folder(tmp_path / "data", n=24, square=16)
    out = tmp_path / "run"
    small = ["--width", "8", "--latent-dim", "8", "--batch-size", "16"]
    r = run_cli("train", "--data", str(data), *small, "--time", "8s", "--out", str(out))
    assert r.returncode == 0, r.stderr
    lines = [ln for ln in r.stderr.splitlines() if "the recipe was measured at" in ln]
    assert len(lines) == 2, r.stderr  # projected early in the VAE stage, then the steps it took
    assert f"fewer than the {outlook.COLOUR_RECIPE_STEPS:,}" in lines[0] and "budget about" in lines[0]
    assert f"--resume {out} --time " in lines[1] and "budget about" not in lines[1]
    # the run is short, so the averages it saved start at its first GAN step, not at step 0
    st = load_state(out)
    assert 0 < st["d_watch"][0] < st["step"]
    assert int(st["ema"]["n_averaged"]) == int(st["ema_encoder"]["n_averaged"]) == st["d_watch"][0]
