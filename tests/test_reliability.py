"""Training killed with SIGKILL at random points, resumed each time: the run dir is never left
unreadable and the final step count is the uninterrupted one."""

import random
import signal
import subprocess
import sys
import time

import pytest

from tests.conftest import ROOT, TINY, check_logged_steps, run_cli
from tests.runtime.reliability import measured
from vaegan.core.io import read_jsonl
from vaegan.trainer.checkpoint import load_model, load_state

STEPS = 80


def _last_logged_step(out) -> int:
    rows = read_jsonl(out / "metrics.jsonl")
    return rows[-1]["step"] if rows else 0


@pytest.mark.slow
def test_random_sigkills_then_resume(tmp_path):
    rng = random.Random(1234)
    out = tmp_path / "run"
    args = [*TINY, "--max-steps", str(STEPS), "--checkpoint-every", "7", "--log-every", "4", "--quiet"]
    # one kill during start-up, then kills just after random steps (between and at checkpoints)
    targets = [0, *sorted(rng.sample(range(4, STEPS - 4), 5))]
    kills, readable = 0, 0
    for target in targets:
        cmd = (
            ["train", "--resume", str(out), "--quiet"]
            if (out / "config.json").exists()
            else ["train", *args, "--out", str(out)]
        )
        p = subprocess.Popen(
            [sys.executable, "-m", "vaegan", *cmd],
            cwd=ROOT,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        deadline = time.time() + 120
        while p.poll() is None and _last_logged_step(out) < target and time.time() < deadline:
            time.sleep(0.01)
        time.sleep(rng.uniform(0.0, 0.4) if target else 0.5)
        if p.poll() is not None:
            assert p.returncode == 0, p.stderr.read().decode()[-2000:]
            break
        p.send_signal(signal.SIGKILL)
        p.wait()
        kills += 1
        if (out / "train_state.pt").exists():  # never a torn checkpoint
            assert 0 < load_state(out)["step"] <= STEPS
            load_model(out)
            read_jsonl(out / "metrics.jsonl")
            readable += 1
    r = run_cli("train", "--resume", str(out), "--quiet")
    assert r.returncode == 0, r.stderr
    assert load_state(out)["step"] == STEPS
    check_logged_steps(read_jsonl(out / "metrics.jsonl"), 4, STEPS)
    assert not list(out.glob(".*.tmp"))
    assert kills >= 4
    measured(
        "training_kills",
        sigkills=kills,
        kill_after_steps=targets,
        run_dir_readable_after_kill=readable,
        final_step=STEPS,
        expected_step=STEPS,
    )
