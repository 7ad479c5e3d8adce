"""The discriminator watch: a D that cannot tell real from fake on more than 10% of the GAN steps is
said in one line, during the run and at its end; a living one is never reported."""

from __future__ import annotations

import json

import pytest

from vaegan.trainer.liveness import CANNOT_TELL, DEAD_SHARE, MIN_STEPS, DiscriminatorWatch


def test_the_watch_warns_once_past_the_share_and_not_before():
    w = DiscriminatorWatch()
    lines = [w.update(1.5, -1.2) for _ in range(MIN_STEPS)]  # telling them apart
    assert not any(lines) and not w.is_dead
    dead_steps = int(DEAD_SHARE * MIN_STEPS) + 1
    lines = [w.update(0.01, 0.01 - CANNOT_TELL / 2) for _ in range(dead_steps + 5)]
    assert sum(line is not None for line in lines) == 1 and w.is_dead
    assert "cannot tell real from generated" in next(line for line in lines if line)


def test_a_few_dead_steps_early_are_not_a_dead_discriminator():
    w = DiscriminatorWatch()
    for _ in range(MIN_STEPS - 1):
        w.update(0.0, 0.0)  # all dead, but fewer steps than the watch judges
    assert not w.is_dead


@pytest.mark.slow
def test_a_killed_d_is_reported_and_the_shipped_recipe_is_silent(tmp_path):
    """The quick start's recipe before D was kept alive (D only from the GAN stages, DiffAugment's
    cutout on small digits, the decoder at the full rate): D could not tell real from fake on 98% of
    its GAN steps. The recipe as shipped, same data and steps: not reported."""
    from tests.conftest import run_cli
    from vaegan.core.io import read_jsonl

    args = ["--data", "digits", "--max-steps", "400", "--log-every", "4"]
    killed = ["--no-d-warmup", "--diffaug", "--adv-lr", "1e-3"]
    r = run_cli("train", *args, *killed, "--out", str(tmp_path / "dead"))
    assert r.returncode == 0, r.stderr
    assert r.stderr.count("the discriminator cannot tell real from generated") == 2, r.stderr  # mid-run, end
    rows = [row for row in read_jsonl(tmp_path / "dead" / "metrics.jsonl") if row["stage"] != "vae"]
    assert rows and all({"d_real", "d_fake", "loss_d"} <= set(row) for row in rows), json.dumps(rows[:2])
    r = run_cli("train", *args, "--out", str(tmp_path / "alive"))
    assert r.returncode == 0 and "cannot tell" not in r.stderr, r.stderr
