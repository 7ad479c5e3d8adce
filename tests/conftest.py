"""Shared helpers: a tiny model config, running the real CLI in a subprocess."""

from __future__ import annotations

import itertools
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
TINY = ["--image-size", "16", "--width", "8", "--latent-dim", "8", "--batch-size", "16"]


def run_cli(*args: str, timeout: float = 600, env: dict | None = None, cwd: Path | None = None):
    """Run `python -m vaegan ARGS` for real; return the CompletedProcess."""
    e = {**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})}
    return subprocess.run(
        [sys.executable, "-m", "vaegan", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=e,
        cwd=cwd,
    )


def two_colour_folder(root: Path, n: int = 20, square: int = 0) -> Path:
    """root/red and root/blue with n 32x32 RGB PNGs each, of random brightness; square: a centred
    square of that side on black instead of the whole image."""
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(0)
    lo, hi = (16 - square // 2, 16 + square // 2) if square else (0, 32)
    for label in ("red", "blue"):
        (root / label).mkdir(parents=True)
        for i in range(n):
            a = np.zeros((32, 32, 3), np.uint8)
            a[lo:hi, lo:hi, 0 if label == "red" else 2] = rng.integers(100, 255)
            Image.fromarray(a).save(root / label / f"{i}.png")
    return root


def tiny_run_config(**train):
    from vaegan.config import ModelConfig, RunConfig, TrainConfig

    tc = dict(max_steps=8, batch_size=16, log_every=2, checkpoint_every=4)
    tc.update(train)
    return RunConfig(model=ModelConfig(image_size=16, width=8, latent_dim=8), train=TrainConfig(**tc))


@pytest.fixture(scope="session")
def trained_run(tmp_path_factory) -> Path:
    """A short real vaegan training run on digits, shared by the tests that only read it."""
    from vaegan.trainer.loop import train

    out = tmp_path_factory.mktemp("run") / "digits"
    # the fitted prior (colour data's default) on these grey digits too, so its path is exercised
    train(tiny_run_config(max_steps=30, checkpoint_every=10, prior="fitted"), out, progress=False)
    return out


@pytest.fixture
def art_copy(art_dir, tmp_path) -> Path:
    """A private copy of the fixture artifact dir, to corrupt."""
    import shutil

    dst = tmp_path / "art"
    shutil.copytree(art_dir, dst)
    return dst


@pytest.fixture(scope="session")
def art_dir() -> Path:
    """The exported fixture artifacts (tests/make_fixture.py), as the runtime tests use them."""
    path = Path(os.environ.get("VAEGAN_FIXTURE", ROOT / "build" / "fixture-artifacts"))
    if not (path / "manifest.json").exists():
        import importlib.util

        if importlib.util.find_spec("torch") is None:  # the torch-free runtime venv cannot export
            pytest.fail(f"no fixture artifacts at {path}: run `make fixture` first (needs the dev venv)")
        subprocess.run([sys.executable, str(ROOT / "tests" / "make_fixture.py"), str(path)], check=True)
    return path


def pytest_configure(config):
    config.addinivalue_line(
        "markers", "reliability(section, key): counted by its real outcome in docs/reliability.md"
    )


def pytest_runtest_logreport(report):
    """Count each reliability-marked test by what really happened to it."""
    if report.when != "call" and not (report.when == "setup" and report.outcome != "passed"):
        return
    marker = next((m for m in getattr(report, "reliability_markers", [])), None)
    if marker is None:
        return
    from tests.runtime.reliability import OUTCOMES

    section, key = marker
    OUTCOMES[section][f"{key} {report.outcome}"] += 1


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    report.reliability_markers = [tuple(m.args) for m in item.iter_markers("reliability")]


def pytest_sessionfinish(session):
    from tests.runtime.reliability import write

    write()


def check_logged_steps(rows: list[dict], every: int, last: int) -> None:
    """metrics.jsonl after any kills and resumes: a row every `every` steps up to `last` and one at
    each stage's first step, each once, in order."""
    steps = [row["step"] for row in rows]
    assert steps == sorted(set(steps)), steps  # none duplicated, none out of order
    assert [s for s in steps if s % every == 0] == list(range(every, last + 1, every)), steps
    firsts = [b["step"] for a, b in itertools.pairwise([{"stage": ""}, *rows]) if a["stage"] != b["stage"]]
    assert [s for s in steps if s % every] == [s for s in firsts if s % every], steps
