"""`vaegan train` and `vaegan eval`: the PyTorch side."""

from __future__ import annotations

import dataclasses
import logging
import os
from pathlib import Path
from typing import Any

import click

from vaegan.cli.app import cli
from vaegan.cli.options import dir_option, duration, option_from, options_from
from vaegan.config import AMP_CHOICES, GAN_LOSSES, MODES, PRIORS, ModelConfig, RunConfig, TrainConfig


@cli.command()
@option_from(TrainConfig, "data", "--data")
@dir_option("--out", "Run directory to write (weights, config, metrics, samples).", Path("runs/latest"))
@dir_option(
    "--resume",
    "Continue a run directory where it stopped (after a crash or kill), with its own config and data; only "
    "--time (more time), --epochs, --max-steps, the learning rates and the log/checkpoint intervals may change.",
)
@option_from(TrainConfig, "mode", "--mode", type=click.Choice(MODES))
@option_from(
    TrainConfig,
    "time_s",
    "--time",
    metavar="DURATION",
    callback=duration,
    default="0",
    show_default=False,
    type=str,
)
@options_from(TrainConfig, "epochs max_steps batch_size lr lr_d adv_lr")
@option_from(
    ModelConfig,
    "image_size",
    "--image-size",
    type=int,
    default=None,
    help="Square size, a power of two 16..128. Default: the images' own size when they are all one such "
    "square (an .npz or folder); digits are upscaled to 32.",
)
@option_from(
    ModelConfig,
    "channels",
    "--channels",
    type=click.IntRange(1, 3),
    default=None,
    help="1 or 3 (default: from the data).",
)
@options_from(ModelConfig, "latent_dim width d_width")
@options_from(
    TrainConfig,
    "kl_weight pixel_weight foreground_weight edge_weight class_balance gamma vae_fraction adv_fraction",
)
@option_from(TrainConfig, "gan_loss", "--gan-loss", type=click.Choice(GAN_LOSSES))
@options_from(
    TrainConfig,
    "gan_weight adaptive_max gan_on_recon r1_gamma feature_layer gan_warmup ema_decay",
    r1_gamma="--r1",
)
@option_from(TrainConfig, "diffaug", "--diffaug/--no-diffaug", default=None, show_default=False)
@option_from(TrainConfig, "amp", "--amp", type=click.Choice(AMP_CHOICES))
@option_from(TrainConfig, "d_warmup", "--d-warmup/--no-d-warmup", default=None, show_default=False)
@option_from(TrainConfig, "prior", "--prior", type=click.Choice(PRIORS))
@options_from(TrainConfig, "seed checkpoint_every log_every")
@click.option("--quiet", is_flag=True, help="No progress bar or log lines.")
@click.pass_context
def train(ctx: click.Context, out: Path, resume: Path | None, quiet: bool, **o: Any) -> None:
    """Train a VAE-GAN (or an ablation) and write a run directory.

    \b
    Settings you leave out follow the data (image size, channels, number of images) and are printed
    in one line at the start. Budget: --time 15m (the stages split by time; the run ends with a
    checkpoint and samples when it is spent), else --max-steps, else --epochs. --resume RUN --time 5m
    gives a run 5 more minutes.

    Scale out with `torchrun --nproc-per-node N -m vaegan train ...` (gloo on CPU, NCCL on CUDA).
    """
    from vaegan.trainer.loop import train as run_training

    given = {k for k in o if ctx.get_parameter_source(k) is not click.core.ParameterSource.DEFAULT}
    model_keys = {f.name for f in dataclasses.fields(ModelConfig)}
    if resume is not None:
        saved = RunConfig.load(resume / "config.json")
        # any given option other than the budget, rates and log/save intervals is refused, naming it;
        # --time on resume is more time (extend_time_s below), not the budget's total
        cfg = saved.resumed_with({k: o[k] for k in given if k != "time_s" and o[k] is not None})
        out, infer = resume, set()
    else:
        mc = ModelConfig(**{k: o[k] for k in model_keys if k in o and o[k] is not None})
        tc = TrainConfig(**{k: v for k, v in o.items() if k not in model_keys}).validate()
        cfg = RunConfig(model=mc, train=tc)
        infer = {k for k in ("image_size", "channels") if o[k] is None}
    if quiet:
        logging.getLogger("vaegan").setLevel(logging.WARNING)
    res = run_training(
        cfg,
        out,
        resume=resume is not None,
        progress=not quiet,
        infer=infer,
        extend_time_s=o["time_s"] if resume is not None and "time_s" in given else 0.0,
        on_checkpoint=_report,
    )
    if int(os.environ.get("RANK", "0")) == 0:
        steps = f"{res.step}/{res.total_steps}" if res.total_steps else str(res.step)
        click.echo(f"trained {steps} steps in {res.seconds:.0f}s ({res.imgs_per_s:.0f} img/s) -> {res.out}")
        click.echo(f"  weights:  {res.out / 'model.safetensors'}")
        click.echo(f"  samples:  {res.out / 'samples'}")
        click.echo(f"  metrics:  {res.out / 'metrics.jsonl'}")
        click.echo(f"  report:   {_report(res.out)}")


def _report(run: Path) -> str:
    """The run's report.html (vaegan report), or why it was not written."""
    try:
        from vaegan.report import write_report

        return str(write_report(run))
    except ImportError as e:  # matplotlib is the train extra's; a partial install still trains
        return f"not written ({e.name} is missing)"


# ------------------------------------------------------------------------------------------ eval
@cli.command("eval")
@click.argument("run_dir", type=click.Path(path_type=Path))
@click.option(
    "-n",
    "--n",
    "n",
    type=click.IntRange(10, 100000),
    default=2000,
    show_default=True,
    help="Prior samples to score.",
)
@click.option("--seed", type=int, default=0, show_default=True, help="Seed for the latents (repeatable).")
@click.option(
    "--temperature",
    type=click.FloatRange(0, 10, min_open=True),
    default=1.0,
    show_default=True,
    help="Scale of the prior latents, as in `vaegan sample` (docs/quality.md measures what it does to precision and recall).",
)
@click.option(
    "--prior",
    type=click.Choice(PRIORS),
    default=None,
    help="Latents from a mixture fitted to the run's latents (fitted; fitted here and saved if the run "
    "has none) or from N(0, I) (standard). Default: the run's own, what `vaegan sample` draws from its export.",
)
@click.option(
    "--images",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    default=None,
    help="Score these uint8 images instead (an .npz with 'images' or 'x', e.g. from `vaegan sample`).",
)
@click.option(
    "--json",
    "json_out",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Also write the metrics as JSON here.",
)
def eval_cmd(
    run_dir: Path,
    n: int,
    seed: int,
    temperature: float,
    prior: str | None,
    images: Path | None,
    json_out: Path | None,
) -> None:
    """Score a run: FD, precision/recall/density/coverage, the share of samples its classifier names
    confidently, class coverage/KL and missing classes, PSNR, KL, active units.

    The feature space is a small network trained on the run's own data (its labels plus a class of
    blurred, blended and noise images made from it; without labels: real vs blur, blend, noise),
    cached under $VAEGAN_CACHE or ~/.cache/vaegan; nothing is downloaded.
    """

    from vaegan.config import RunConfig
    from vaegan.core.io import write_json
    from vaegan.trainer.evaluate import evaluate_images, evaluate_run

    if images is not None:
        from vaegan.core.images import read_npz_images

        ev = evaluate_images(
            read_npz_images(images, ("images", "x")), RunConfig.load(Path(run_dir) / "config.json")
        )
    else:
        ev = evaluate_run(run_dir, n=n, seed=seed, temperature=temperature, prior=prior)
    width = max(len(k) for k in [*ev.metrics, *ev.unavailable, "metric"])
    click.echo(f"{'metric':<{width}}  value")
    for k, v in ev.metrics.items():
        click.echo(f"{k:<{width}}  {v:.4f}" if isinstance(v, float) else f"{k:<{width}}  {v}")
    for k, why in ev.unavailable.items():
        click.echo(f"{k:<{width}}  n/a ({why})")
    missing = ev.info.get("missing_classes")
    if isinstance(missing, list):
        click.echo(f"missing classes: {', '.join(missing)}" if missing else "missing classes: none")
    click.echo(
        f"(n={ev.info.get('n')} samples in the {ev.info.get('space')}; `vaegan export` scores --quality-n "
        "samples through the fp32 ONNX decoder, so its figures differ by n and sampling noise)"
    )
    if json_out:
        write_json(json_out, ev.to_dict())
        click.echo(f"-> {json_out}")
