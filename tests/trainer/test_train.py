"""The training loop for real: run dirs, checkpoints, resume after SIGKILL, the NaN guard, DDP."""

import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from tests.conftest import ROOT, TINY, check_logged_steps, run_cli, tiny_run_config, two_colour_folder
from vaegan.core.errors import CheckpointError, ConfigError, TrainingDiverged
from vaegan.core.io import read_jsonl
from vaegan.trainer import recipe
from vaegan.trainer.checkpoint import load_model, load_state
from vaegan.trainer.loop import encoder_decoder_lr, stage_at, train


def test_run_dir_contents(trained_run):
    names = {p.name for p in trained_run.iterdir()}
    assert {"model.safetensors", "config.json", "train_state.pt", "metrics.jsonl", "samples"} <= names
    rows = read_jsonl(trained_run / "metrics.jsonl")
    check_logged_steps(rows, 2, 30)
    assert {"vae", "adversarial", "joint"} <= {r["stage"] for r in rows}
    assert all(np.isfinite(r["loss_total"]) for r in rows)
    assert any(p.name.startswith("prior_epoch") for p in (trained_run / "samples").iterdir())
    assert not list(trained_run.glob(".*.tmp"))  # atomic writes leave no temp files


def test_checkpoint_round_trip(trained_run):
    cfg, m = load_model(trained_run)
    st = load_state(trained_run)
    assert st["step"] == 30
    for name, module in (("ema", m.decoder), ("ema_encoder", m.encoder)):  # the run ships the EMAs
        ema = {k.removeprefix("module."): v for k, v in st[name].items() if k.startswith("module.")}
        for k, v in module.state_dict().items():
            assert torch.equal(v, ema[k]), k
    assert any(
        not torch.equal(v, st["encoder"][k])
        for k, v in m.encoder.state_dict().items()
        if v.is_floating_point()
    )
    assert cfg.model.image_size == 16 and cfg.data_key and cfg.class_names[0] == "0"


def test_a_run_by_steps_saves_averages_over_every_step(tmp_path):
    # only a time budget short for the CPU restarts them with the GAN (test_outlook.py)
    out = tmp_path / "r"
    train(tiny_run_config(max_steps=20, gan_warmup=3), out, progress=False)
    st = load_state(out)
    assert 0 < st["d_watch"][0] < st["step"] == 20  # a VAE stage, then GAN steps
    assert int(st["ema"]["n_averaged"]) == int(st["ema_encoder"]["n_averaged"]) == 20


def test_config_mismatch_is_reported(trained_run, tmp_path):
    import shutil

    bad = tmp_path / "bad"
    shutil.copytree(trained_run, bad)
    c = json.loads((bad / "config.json").read_text())
    c["model"]["width"] = 12
    (bad / "config.json").write_text(json.dumps(c))
    with pytest.raises(CheckpointError, match="does not match"):
        load_model(bad)
    (bad / "model.safetensors").unlink()
    with pytest.raises(CheckpointError, match="not found"):
        load_model(bad)


def test_stage_schedule():
    cfg = tiny_run_config(vae_fraction=0.3, adv_fraction=0.2).train
    stages = [stage_at(s / 100, cfg) for s in range(100)]
    assert stages[0] == "vae" and stages[40] == "adversarial" and stages[-1] == "joint"
    assert stages.index("adversarial") == 30 and stages.index("joint") == 50


def test_each_network_trains_at_its_own_rate(tmp_path):
    # 3 VAE steps at lr, then GAN steps: encoder and decoder at adv_lr, the discriminator at lr_d.
    out = tmp_path / "rates"
    train(
        tiny_run_config(max_steps=10, lr=1e-3, adv_lr=2e-4, lr_d=3e-3, vae_fraction=0.3), out, progress=False
    )
    st = load_state(out)
    rates = {k: st[k]["param_groups"][0]["lr"] for k in ("opt_e", "opt_g", "opt_d")}
    assert rates == {"opt_e": 2e-4, "opt_g": 2e-4, "opt_d": 3e-3}


def test_d_warmup_trains_d_on_every_fourth_vae_step(tmp_path):
    from vaegan.trainer.loop import D_WARMUP_EVERY

    out = tmp_path / "warm"
    train(
        tiny_run_config(max_steps=9, vae_fraction=1.0, adv_fraction=0.0, d_warmup=True), out, progress=False
    )
    st = load_state(out)
    d_steps = {int(v["step"]) for v in st["opt_d"]["state"].values()}
    assert d_steps == {len(range(0, 9, D_WARMUP_EVERY))}  # steps 0, 4, 8
    assert {int(v["step"]) for v in st["opt_g"]["state"].values()} == {9}


def test_the_gan_turns_on_gently(tmp_path):
    # 4 VAE steps, then 6 joint steps: the encoder's and decoder's Adam restarted at the first GAN
    # step and their rate is still climbing to adv_lr (gan_warmup 100 steps)
    out = tmp_path / "gentle"
    cfg = tiny_run_config(
        max_steps=10, lr=1e-3, adv_lr=2e-4, vae_fraction=0.4, adv_fraction=0.0, gan_warmup=100
    )
    train(cfg, out, progress=False)
    st = load_state(out)
    for opt in ("opt_e", "opt_g"):
        assert {int(v["step"]) for v in st[opt]["state"].values()} == {6}
        assert st[opt]["param_groups"][0]["lr"] == pytest.approx(2e-4 * 6 / 100)
    tc = cfg.train
    assert encoder_decoder_lr("vae", tc, 0) == tc.lr
    assert encoder_decoder_lr("joint", tc, 0) == pytest.approx(2e-6)
    assert encoder_decoder_lr("adversarial", tc, 500) == pytest.approx(2e-4)


def test_a_run_saved_before_a_recipe_term_existed_keeps_training_without_it(trained_run, tmp_path):
    # config.json from before --edge-weight and --gan-warmup: the run resumes with both off, as it
    # was trained, not with whatever the recipe now chooses for an unset field
    from vaegan.config import RunConfig

    saved = json.loads((trained_run / "config.json").read_text())
    old, new = tmp_path / "old.json", tmp_path / "new.json"
    for key in ("edge_weight", "gan_warmup", "class_balance"):
        del saved["train"][key]
    old.write_text(json.dumps(saved))
    saved["train"] |= {"edge_weight": 2.5, "gan_warmup": 7}
    new.write_text(json.dumps(saved))
    before = RunConfig.load(old)
    assert (before.train.edge_weight, before.train.gan_warmup, before.train.class_balance) == (0.0, 0, 0.0)
    resolved, chosen = recipe.resolve(before, 100)
    assert resolved.train.edge_weight == 0.0 and "edge_weight" not in chosen
    assert (RunConfig.load(new).train.edge_weight, RunConfig.load(new).train.gan_warmup) == (2.5, 7)
    saved["train"]["a_newer_term"], saved["model"]["a_newer_size"] = 1, 2  # from a newer vaegan
    new.write_text(json.dumps(saved))
    with pytest.raises(ConfigError, match=r"\(a_newer_size, a_newer_term\).*newer vaegan; upgrade"):
        RunConfig.load(new)


def test_a_state_from_before_the_encoder_ema_resumes(tmp_path):
    # train_state.pt written by an earlier vaegan has no "ema_encoder": the run resumes with the
    # encoder as saved, also when there is nothing left to train (the weights it rewrites are real)
    out = tmp_path / "old"
    train(tiny_run_config(max_steps=4), out, progress=False)
    st = load_state(out)
    del st["ema_encoder"]
    torch.save(st, out / "train_state.pt")
    train(tiny_run_config(max_steps=4), out, resume=True, progress=False)
    _, m = load_model(out)
    assert all(torch.equal(v, st["encoder"][k]) for k, v in m.encoder.state_dict().items())
    train(tiny_run_config(max_steps=8), out, resume=True, progress=False)
    again = load_state(out)
    assert again["step"] == 8 and "ema_encoder" in again
    _, m = load_model(out)
    ema = {k.removeprefix("module."): v for k, v in again["ema_encoder"].items() if k.startswith("module.")}
    assert all(torch.equal(v, ema[k]) for k, v in m.encoder.state_dict().items())


def test_nan_guard_stops_with_a_resumable_checkpoint(tmp_path):
    out = tmp_path / "nan"
    with pytest.raises(TrainingDiverged, match=r"diverged at step \d+.*--resume"):
        train(
            tiny_run_config(max_steps=200, lr=1e30, lr_d=1e30, adv_lr=1e30, vae_fraction=0.0),
            out,
            progress=False,
        )
    st = load_state(out)
    assert 0 < st["step"] < 200
    weights = load_file(out / "model.safetensors")
    assert all(torch.isfinite(v.float()).all() for v in weights.values())  # no NaN weights written


@pytest.mark.slow
def test_resume_after_sigkill_reaches_the_same_step_and_weights(tmp_path):
    args = ["train", *TINY, "--max-steps", "60", "--checkpoint-every", "5", "--log-every", "5", "--quiet"]
    ref = tmp_path / "ref"
    assert run_cli(*args, "--out", str(ref)).returncode == 0

    killed = tmp_path / "killed"
    p = subprocess.Popen(
        [sys.executable, "-m", "vaegan", *args, "--out", str(killed)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        cwd=ROOT,
    )
    deadline = time.time() + 120
    while time.time() < deadline:  # kill mid-run, after at least two checkpoints
        rows = read_jsonl(killed / "metrics.jsonl")
        if rows and rows[-1]["step"] >= 25:
            break
        time.sleep(0.05)
    p.send_signal(signal.SIGKILL)
    p.wait()
    assert load_state(killed)["step"] < 60  # it really stopped early

    r = run_cli("train", "--resume", str(killed), "--quiet")
    assert r.returncode == 0, r.stderr
    assert load_state(killed)["step"] == 60
    rows = read_jsonl(killed / "metrics.jsonl")
    check_logged_steps(rows, 5, 60)  # no duplicated or missing log lines
    assert {row["stage"] for row in rows} == {"vae", "adversarial", "joint"}
    a, b = load_file(ref / "model.safetensors"), load_file(killed / "model.safetensors")
    for k in a:
        assert torch.allclose(a[k], b[k], atol=1e-5), k  # the same run as if never killed


def test_cli_train_then_refuse_to_overwrite(tmp_path):
    out = tmp_path / "r"
    r = run_cli("train", *TINY, "--max-steps", "3", "--out", str(out))
    assert r.returncode == 0, r.stderr
    assert "model.safetensors" in r.stdout
    r = run_cli("train", *TINY, "--max-steps", "3", "--out", str(out))
    assert r.returncode == 2 and "--resume" in r.stderr


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["--image-size", "20"], "power of two"),
        (["--latent-dim", "0"], "latent dim"),
        (["--data", "imagenet"], "unknown dataset"),
        (["--data", "/no/such/dir"], "unknown dataset"),
        (["--batch-size", "1"], "batch size"),
        (["--mode", "diffusion"], "diffusion"),
        (["--epochs", "many"], "many"),
        (["--feature-layer", "0"], "feature layer"),
        (["--gan-warmup", "-1"], "gan warmup"),
        (["--edge-weight", "-1"], "edge weight"),
        (["--class-balance", "2"], "class balance"),
        (["--feature-layer", "9", "--max-steps", "1"], "conv blocks"),
    ],
)
def test_bad_cli_input_is_one_line_and_exit_2(tmp_path, args, needle):
    r = run_cli("train", "--out", str(tmp_path / "x"), *args)
    assert r.returncode == 2
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and needle in lines[0] and "Traceback" not in r.stderr


def test_cli_resume_of_missing_dir(tmp_path):
    r = run_cli("train", "--resume", str(tmp_path / "nope"))
    assert r.returncode == 2 and len(r.stderr.strip().splitlines()) == 1


def test_cli_help_and_version():
    r = run_cli("--help")
    assert r.returncode == 0 and "train" in r.stdout and "export" in r.stdout
    r = run_cli("train", "--help")
    assert "--kl-weight" in r.stdout and "from the recipe" in r.stdout and "--time DURATION" in r.stdout
    assert run_cli("--version").stdout.strip().startswith("vaegan, version")


def test_rgb_folder_at_32(tmp_path):
    data = two_colour_folder(tmp_path / "data")
    res = train(
        tiny_run_config(data=str(data), max_steps=4),
        tmp_path / "run",
        progress=False,
        infer={"channels"},
    )
    cfg, m = load_model(res.out)
    assert cfg.model.channels == 3 and cfg.class_names == ["blue", "red"]


@pytest.mark.slow
def test_ddp_two_processes_gloo(tmp_path):
    out = tmp_path / "ddp"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    r = subprocess.run(
        [
            sys.executable,
            "-m",
            "torch.distributed.run",
            "--standalone",
            "--nproc-per-node",
            "2",
            "-m",
            "vaegan",
            "train",
            *TINY,
            "--max-steps",
            "6",
            "--checkpoint-every",
            "3",
            "--out",
            str(out),
            "--quiet",
        ],
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
        cwd=ROOT,
    )
    assert r.returncode == 0, r.stderr[-2000:]
    assert r.stdout.count("trained 6/6 steps") == 1  # rank 0 alone reports and writes
    st = load_state(out)
    assert st["step"] == 6 and len(st["rng"]) == 2
    load_model(out)


def test_ddp_train_leaves_no_process_group_behind(tmp_path):
    """train() closes the gloo group it opened, every rank together: one that merely exits can make
    the other abort with "Connection closed by peer" after the run has finished (seen in CI)."""
    script = tmp_path / "ddp_train.py"
    script.write_text(
        "import sys\n"
        "import torch.distributed as dist\n"
        "from tests.conftest import tiny_run_config\n"
        "from vaegan.trainer.loop import train\n"
        "train(tiny_run_config(max_steps=4), sys.argv[1], progress=False)\n"
        "sys.stdout.write(f'group open after train: {dist.is_initialized()}\\n')\n"
    )
    r = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2"]
        + [str(script), str(tmp_path / "run")],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)},
        cwd=ROOT,
    )
    assert r.returncode == 0, r.stderr[-2000:]
    assert r.stdout.count("group open after train: False") == 2, r.stdout  # one line per rank


def test_time_budget_ends_with_a_checkpoint_samples_and_the_recipe(tmp_path):
    """`--time` splits the stages by time and ends, within the budget, with a checkpoint, sample
    grids and a final line; `--resume --time` gives the run that much more time."""
    out = tmp_path / "timed"
    r = run_cli("train", "--data", "digits", *TINY, "--time", "12s", "--prior", "fitted", "--out", str(out))
    assert r.returncode == 0, r.stderr
    recipe_line = next(ln for ln in r.stderr.splitlines() if ln.startswith("recipe for"))
    assert (
        "16x16x1 (grey), 12s budget" in recipe_line
        and "width 8*" in recipe_line
        and "KL weight 4," in recipe_line
        and "fitted prior*" in recipe_line
    )
    assert "reached step" in r.stderr and "of a 12s budget" in r.stderr
    assert "the recipe was measured at" not in r.stderr  # the digits recipe is tuned by steps (outlook.py)
    st = load_state(out)
    assert 0 < st["elapsed_s"] <= 12.0 and st["budget_s"] == 12.0 and st["stage"] == "joint"
    assert (out / "samples" / "prior_last.png").exists() and (out / "samples" / "recon_last.png").exists()
    assert (out / "prior.npz").exists()  # the fitted latent prior, inside the budget
    assert {row["stage"] for row in read_jsonl(out / "metrics.jsonl")} == {"vae", "adversarial", "joint"}
    # the budget counts start-up (loading the data and the checkpoint): 2.5-4 s of these 10 on an
    # AVX2 CPU, where 6 s left some resumes no time for a step
    r = run_cli("train", "--resume", str(out), "--time", "10s")
    assert r.returncode == 0, r.stderr
    budget = recipe.format_duration(st["elapsed_s"] + 10.0)
    assert f", {budget} budget:" in next(ln for ln in r.stderr.splitlines() if ln.startswith("recipe for"))
    again = load_state(out)
    assert again["budget_s"] == pytest.approx(st["elapsed_s"] + 10.0)
    assert again["step"] > st["step"] and st["elapsed_s"] + 3 < again["elapsed_s"] <= again["budget_s"]
    assert again["stage"] == "joint"  # more time never sends a run back to an earlier stage


def test_recipe_follows_the_data_and_keeps_what_the_user_set():
    from vaegan.config import ModelConfig, RunConfig, TrainConfig

    digits, chosen = recipe.resolve(RunConfig(ModelConfig(image_size=32, channels=1), TrainConfig()), 1617)
    assert (digits.model.width, digits.model.latent_dim, digits.train.kl_weight, digits.train.amp) == (
        16,
        16,
        4.0,
        "off",
    )
    rgb, _ = recipe.resolve(
        RunConfig(ModelConfig(image_size=64, channels=3), TrainConfig(kl_weight=0.3)), 2700
    )
    assert rgb.model.latent_dim == 64 and rgb.train.kl_weight == 0.3 and rgb.train.pixel_weight == 1.0
    assert (digits.train.ema_decay, rgb.train.ema_decay) == (0.999, 0.9995)
    line = recipe.describe(rgb, 2700, [k for k in chosen if k != "kl_weight"])
    assert line.startswith("recipe for 2700 images of 64x64x3 (RGB)") and "KL weight 0.3*" in line
    assert "EMA 0.9995," in line
    for mode, absent, present in (("vae", "D width", "KL weight"), ("gan", "KL weight", "D width")):
        ablation, chosen = recipe.resolve(
            RunConfig(ModelConfig(image_size=64, channels=3), TrainConfig(mode=mode)), 2700
        )
        line = recipe.describe(ablation, 2700, chosen)  # only what the mode uses
        assert absent not in line and present in line and f"mode {mode}" in line
    assert "standard prior" in line and "GAN stages" not in line
    assert recipe.parse_duration("15m") == 900 and recipe.parse_duration("1h30m") == 5400
    assert recipe.parse_duration("900s") == recipe.parse_duration("900") == 900
    with pytest.raises(ValueError, match="not a duration"):
        recipe.parse_duration("fifteen minutes")


def test_an_uneven_labelled_data_set_draws_its_small_classes_more_often(tmp_path, caplog):
    """Where the largest class holds over twice the images of the smallest, the recipe draws each class
    at its share to the power 0.5 (emoji64: people 60% of the images, 30% of the batches) and, at 64x64
    RGB, gives the VAE stage 60% of the budget; an even or unlabelled data set keeps one plain
    permutation an epoch, the order it always had."""
    import logging

    from vaegan.config import ModelConfig, RunConfig, TrainConfig
    from vaegan.trainer.data import class_draw_shares, class_spread, draw_weights, epoch_order, load_dataset

    d = load_dataset("digits", 16)
    keep = (d.labels != 9) | (np.cumsum(d.labels == 9) <= 30)  # 30 nines against about 180 of each digit
    labels = d.labels[keep]
    assert class_spread(d.labels) < 1.1 and class_spread(None) == 1.0 and class_spread(labels) > 5
    colour = RunConfig(ModelConfig(image_size=64, channels=3), TrainConfig())
    grey = RunConfig(ModelConfig(image_size=32, channels=1), TrainConfig())
    for cfg in (colour, grey):
        uneven, chosen = recipe.resolve(cfg, 1500, class_spread=class_spread(labels))
        assert uneven.train.class_balance == 0.5 and "class_balance" in chosen
        assert "classes drawn at share^0.5," in recipe.describe(uneven, 1500, chosen)
        even, chosen = recipe.resolve(cfg, 1500, class_spread=class_spread(d.labels))
        assert even.train.class_balance == 0.0 and "classes drawn" not in recipe.describe(even, 1500, chosen)
        # 64x64 RGB on uneven classes: a longer VAE stage, for the small classes to be learnt in it
        longer = cfg is colour
        assert (uneven.train.vae_fraction > even.train.vae_fraction) == longer
        assert (uneven.train.vae_fraction == recipe.UNEVEN_VAE_FRACTION) == longer
    mine = RunConfig(ModelConfig(image_size=64, channels=3), TrainConfig(class_balance=1.0))
    resolved, chosen = recipe.resolve(mine, 1500, class_spread=class_spread(labels))
    assert resolved.train.class_balance == 1.0 and "share^1*" in recipe.describe(resolved, 1500, chosen)
    why = recipe.describe_draw(labels, d.class_names, 0.5, recipe.UNEVEN_VAE_FRACTION)
    assert "the VAE stage takes 60% of the budget" in why and "--vae-fraction" in why
    assert "VAE stage" not in recipe.describe_draw(labels, d.class_names, 0.5)

    assert draw_weights(labels, 0.0) is None and draw_weights(None, 0.5) is None
    plain = epoch_order(len(labels), 3, 7)
    expected = torch.randperm(len(labels), generator=torch.Generator().manual_seed(3 * 100003 + 7))
    assert torch.equal(plain, expected)  # even data: the same batches as before the option existed
    w = draw_weights(labels, 0.5)
    drawn = torch.cat([epoch_order(len(labels), 3, e, w) for e in range(20)]).numpy()
    np.testing.assert_allclose(
        np.bincount(labels[drawn]) / len(drawn), class_draw_shares(labels, 0.5), atol=0.01
    )
    assert torch.equal(epoch_order(len(labels), 3, 7, w), epoch_order(len(labels), 3, 7, w))  # resumable
    nines = class_draw_shares(labels, 0.5)[9]
    assert nines > 2 * (labels == 9).mean()  # 30 nines of 1,647 images: drawn over twice as often

    np.savez(tmp_path / "uneven.npz", x=d.images[keep][..., 0], y=labels)
    cfg = tiny_run_config(data=str(tmp_path / "uneven.npz"), max_steps=2)
    with caplog.at_level(logging.INFO, logger="vaegan"):
        res = train(cfg, tmp_path / "r", progress=False)
    assert res.cfg is not None and res.cfg.train.class_balance == 0.5
    assert "classes of 2" in caplog.text and "drawn for training at its share" in caplog.text
    assert "VAE stage takes" not in caplog.text  # 16x16 grey: the stage split is the grey recipe's

    # the same classes as 64x64 RGB: the colour recipe's longer VAE stage, said in the run's first lines
    big = np.kron(d.images[keep][..., 0], np.ones((4, 4), d.images.dtype))
    np.savez(tmp_path / "uneven_rgb.npz", x=np.repeat(big[..., None], 3, -1), y=labels)
    rgb = tiny_run_config(data=str(tmp_path / "uneven_rgb.npz"), max_steps=2)
    rgb.model.image_size = 64
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="vaegan"):
        res = train(rgb, tmp_path / "rgb", progress=False)
    assert res.cfg is not None and res.cfg.train.vae_fraction == recipe.UNEVEN_VAE_FRACTION
    assert "the VAE stage takes 60% of the budget" in caplog.text and "stages vae 60%" in caplog.text
    assert json.loads((tmp_path / "r" / "config.json").read_text())["train"]["class_balance"] == 0.5


def test_train_returns_the_config_it_used_and_leaves_the_callers_alone(tmp_path):
    cfg = tiny_run_config(max_steps=2, checkpoint_every=2)
    cfg.model.width = None  # from the recipe
    res = train(cfg, tmp_path / "r", progress=False)
    assert cfg.model.width is None and cfg.train.batch_size == 16 and cfg.data_key == ""
    assert res.cfg is not None and res.cfg.model.width == 16 and res.cfg.data_key


def test_too_little_data_is_a_data_error(tmp_path):
    from vaegan.core.errors import DataError

    np.savez(tmp_path / "few.npz", x=np.zeros((10, 16, 16), np.uint8))
    with pytest.raises(DataError, match="fewer than one batch"):
        train(tiny_run_config(data=str(tmp_path / "few.npz")), tmp_path / "r", progress=False)
    r = run_cli(
        "train", "--data", str(tmp_path / "few.npz"), *TINY, "--time", "2s", "--out", str(tmp_path / "c")
    )
    assert r.returncode == 2 and "fewer than one batch" in r.stderr
    assert run_cli("train", "--time", "soon", "--out", str(tmp_path / "d")).returncode == 2


def test_the_recipe_picks_the_prior_by_measurement_and_a_run_keeps_it():
    """N(0, I) for 32x32 grey (the quick start measured better FD with it), a fitted mixture for
    colour; the choice is the run's, and a run saved before it gets the recipe's."""
    from vaegan.config import ModelConfig, RunConfig, TrainConfig
    from vaegan.trainer.recipe import prior_of, resolve

    grey = RunConfig(model=ModelConfig(image_size=32, channels=1), train=TrainConfig())
    colour = RunConfig(model=ModelConfig(image_size=64, channels=3), train=TrainConfig())
    assert resolve(grey, 1617)[0].train.prior == "standard" and prior_of(grey) == "standard"
    assert resolve(colour, 2700)[0].train.prior == "fitted" and prior_of(colour) == "fitted"
    mine = RunConfig(model=ModelConfig(image_size=64, channels=3), train=TrainConfig(prior="standard"))
    assert resolve(mine, 2700)[0].train.prior == "standard"
    gan = RunConfig(model=ModelConfig(image_size=64, channels=3), train=TrainConfig(mode="gan"))
    assert prior_of(gan) == "standard"  # no encoder to fit one to
