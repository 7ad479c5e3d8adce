"""The command line and the Python API share one source of defaults and one validation, and what a
new user hits ends in one line (exit 2), never a silent default."""

import dataclasses
import json

import click
import numpy as np
import pytest
from PIL import Image

from tests.conftest import TINY, run_cli
from vaegan.bench import BenchConfig
from vaegan.cli import cli
from vaegan.config import ExportOptions, ModelConfig, ServeConfig, TrainConfig
from vaegan.core.errors import ConfigError

# command -> the dataclasses its options come from
SOURCES = {
    "train": (TrainConfig, ModelConfig),
    "export": (ExportOptions,),
    "serve": (ServeConfig,),
    "bench": (BenchConfig,),
}
# command-line defaults that differ on purpose: None there means "from the data" / "the export's"
FROM_DATA = {("train", "image_size"), ("train", "channels")}


def _default(f: dataclasses.Field):
    return f.default if f.default is not dataclasses.MISSING else f.default_factory()


@pytest.mark.parametrize("command", list(SOURCES))
def test_every_cli_default_is_its_dataclass_default(command):
    params = {p.name: p for p in cli.commands[command].params if isinstance(p, click.Option)}
    checked = 0
    for cls in SOURCES[command]:
        for f in dataclasses.fields(cls):
            p = params.get(f.name)
            if p is None or (command, f.name) in FROM_DATA:
                continue
            value = p.default
            if p.callback is not None and isinstance(value, str):  # comma-separated lists
                value = p.callback(None, p, value)
            assert value == _default(f), f"{command} --{f.name}: CLI {value!r}, dataclass {_default(f)!r}"
            assert p.help == f.metadata["help"], f"{command} --{f.name}: help is written twice"
            checked += 1
    assert checked >= 4


@pytest.mark.parametrize(
    "args, needle",
    [
        (["train", "--epochs", "0"], "epochs must be at least 1"),
        (["train", "--lr", "0"], "lr must be positive"),
        (["train", "--gamma", "0"], "gamma must be positive"),
        (["serve", "ART", "--max-batch", "0"], "--max-batch must be between 1"),
        (["serve", "ART", "--max-queue", "0"], "--max-queue must be at least 1"),
        (["export", "RUN", "--out", "X", "--opt-batch", "99"], "opt-batch"),
    ],
)
def test_bad_values_end_in_one_line_with_exit_2(args, needle, art_dir, tmp_path):
    args = [str(art_dir) if a == "ART" else str(tmp_path / a) if a in ("RUN", "X") else a for a in args]
    r = run_cli(*args, "--out", str(tmp_path / "run")) if args[0] == "train" else run_cli(*args)
    assert r.returncode == 2, r.stdout + r.stderr
    assert len(r.stderr.strip().splitlines()) == 1 and "Traceback" not in r.stderr
    assert needle in r.stderr
    assert not (tmp_path / "run").exists()  # refused before anything ran


def test_python_api_refuses_the_same_values_with_the_same_message():
    from vaegan.config import RunConfig
    from vaegan.trainer.loop import train

    with pytest.raises(ConfigError, match="gamma must be positive"):
        train(RunConfig(train=TrainConfig(gamma=0.0)), "unused", progress=False)
    with pytest.raises(ConfigError, match="--max-queue must be at least 1"):
        ServeConfig(max_queue=0).validate()


def test_openvino_device_that_is_not_here_is_one_line(art_dir, tmp_path):
    from vaegan.runtime.backends.openvino import openvino_module

    if any(d.startswith("GPU") for d in openvino_module().Core().available_devices):
        pytest.skip("this machine has an OpenVINO GPU")
    r = run_cli(
        "sample", str(art_dir), "--backend", "openvino", "--device", "GPU", "--out", str(tmp_path / "g.png")
    )
    assert r.returncode == 2 and len(r.stderr.strip().splitlines()) == 1, r.stderr
    assert "OpenVINO has no GPU device here (available: CPU" in r.stderr


def test_openvino_commands_write_nothing_under_home(art_dir, tmp_path):
    home = tmp_path / "home"
    home.mkdir()
    env = {"HOME": str(home)}
    for args in (
        [
            "sample",
            str(art_dir),
            "--backend",
            "openvino",
            "--precision",
            "int8",
            "--out",
            str(tmp_path / "s.png"),
        ],
        ["doctor", str(art_dir)],
        [
            "bench",
            str(art_dir),
            "--engine",
            "vaegan-openvino,openvino-default",
            "--batch",
            "1",
            "--iters",
            "2",
            "--warmup",
            "1",
            "--no-peak",
        ],
    ):
        r = run_cli(*args, env=env)
        assert r.returncode == 0, r.stderr
    assert not list(home.rglob("*")), list(home.rglob("*"))  # OpenVINO's telemetry writes ~/intel


def test_image_size_comes_from_the_data(tmp_path):
    rng = np.random.default_rng(0)
    np.savez(tmp_path / "faces.npz", x=rng.integers(0, 256, (40, 64, 64, 3), dtype=np.uint8))
    r = run_cli(
        "train",
        "--data",
        str(tmp_path / "faces.npz"),
        "--out",
        str(tmp_path / "run"),
        "--max-steps",
        "1",
        "--width",
        "4",
        "--latent-dim",
        "4",
        "--batch-size",
        "8",
        "--quiet",
    )
    assert r.returncode == 0, r.stderr
    cfg = json.loads((tmp_path / "run" / "config.json").read_text())
    assert cfg["model"]["image_size"] == 64 and cfg["model"]["channels"] == 3


def _folder(root, sizes_modes):
    root.mkdir()
    for i, (size, mode) in enumerate(sizes_modes):
        Image.new(mode, size, 128).save(root / f"{i}.png")


def test_mixed_sizes_without_image_size_are_refused_in_one_line(tmp_path):
    _folder(tmp_path / "mixed", [((28, 28), "L")] * 10 + [((40, 40), "RGB")] * 10)
    r = run_cli(
        "train", "--data", str(tmp_path / "mixed"), "--out", str(tmp_path / "run"), "--max-steps", "1"
    )
    assert r.returncode == 2 and len(r.stderr.strip().splitlines()) == 1, r.stderr
    assert "28x28, 40x40" in r.stderr and "--image-size" in r.stderr


def test_mixed_sizes_and_modes_are_said_once(tmp_path):
    _folder(tmp_path / "mixed", [((28, 28), "L")] * 10 + [((40, 40), "RGB")] * 10)
    r = run_cli(
        "train",
        "--data",
        str(tmp_path / "mixed"),
        "--out",
        str(tmp_path / "run"),
        *TINY,
        "--max-steps",
        "1",
        "--batch-size",
        "8",
    )
    assert r.returncode == 0, r.stderr
    said = [line for line in r.stderr.splitlines() if "sizes and" in line]
    assert len(said) == 1 and "2 sizes and 2 modes" in said[0] and "16x16, RGB" in said[0]


def test_resume_refuses_options_it_would_ignore(trained_run):
    r = run_cli("train", "--resume", str(trained_run), "--data", "other.npz", "--image-size", "64")
    assert r.returncode == 2 and len(r.stderr.strip().splitlines()) == 1, r.stderr
    assert "--data, --image-size cannot change when resuming" in r.stderr and "--data digits" in r.stderr


def test_sample_reconstruct_counts_and_keeps_its_latents(art_dir, tmp_path):
    d = tmp_path / "digits"
    d.mkdir()
    for i in range(3):
        Image.fromarray(np.full((16, 16), 40 * i, np.uint8)).save(d / f"{i}.png")
    r = run_cli("sample", str(art_dir), "--reconstruct", str(d), "--out", str(tmp_path / "r.npz"))
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith("3 reconstructions")
    with np.load(tmp_path / "r.npz") as z:
        assert z["images"].shape == (6, 16, 16, 1) and z["z"].shape == (3, 8)


def test_sample_grid_is_capped_and_says_so(art_dir, tmp_path):
    r = run_cli("sample", str(art_dir), "-n", "1500", "--seed", "0", "--out", str(tmp_path / "g.png"))
    assert r.returncode == 0, r.stderr
    assert "the grid shows the first 1024 of 1500" in r.stderr
    w, h = Image.open(tmp_path / "g.png").size
    assert w * h < 1200 * 1200 * 4


def test_sample_draws_one_class_of_a_labelled_model(art_dir, tmp_path):
    from vaegan.core.manifest import Manifest, read_prior

    prior = read_prior(art_dir, Manifest.load(art_dir))
    assert prior.class_names == tuple(str(d) for d in range(10))  # the digits, fitted per class
    r = run_cli(
        "sample", str(art_dir), "-n", "16", "--seed", "2", "--class", "7", "--out", str(tmp_path / "s.npz")
    )
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith("16 images of class 7")
    with np.load(tmp_path / "s.npz") as z:
        got = z["z"]
    assert np.array_equal(got, prior.sample(16, np.random.default_rng(2), class_name="7"))
    # each latent is nearest to one of class 7's component means
    d = ((got[:, None, :] - prior.means[None]) ** 2).sum(-1)
    assert (prior.classes[d.argmin(1)] == 7).mean() > 0.8
    r = run_cli("sample", str(art_dir), "--class", "Z", "--out", str(tmp_path / "t.png"))
    assert r.returncode == 2 and len(r.stderr.strip().splitlines()) == 1, r.stderr
    assert "no class 'Z'; the classes are 0, 1, 2" in r.stderr
