"""The `vaegan` command line. Heavy imports happen inside each command, so `vaegan sample` and
`vaegan serve` work where only the torch-free runtime is installed."""

from __future__ import annotations

import dataclasses
import importlib.util
import json
import logging
import os
import sys
from pathlib import Path
from typing import Any, NoReturn

import click

from vaegan import __version__
from vaegan.config import (
    AMP_CHOICES,
    CALIBRATION_METHODS,
    ENGINES,
    GAN_LOSSES,
    MODES,
    BenchConfig,
    ExportOptions,
    ModelConfig,
    RunConfig,
    ServeConfig,
    TrainConfig,
)
from vaegan.core.errors import VaeganError
from vaegan.core.manifest import PRECISIONS
from vaegan.runtime.backends import REGISTRY as _BACKENDS

BACKEND_NAMES = tuple(_BACKENDS)


def _fail(msg: str) -> NoReturn:
    one_line = " ".join(part.strip() for part in str(msg).splitlines() if part.strip())
    click.echo(f"vaegan: error: {one_line}", err=True)
    sys.exit(2)


def _csv(kind):
    def parse(ctx, param, value):
        if value is None:
            return None
        try:
            items = [kind(v.strip()) for v in str(value).split(",") if v.strip()]
        except ValueError as e:
            raise click.BadParameter(f"{value!r} is not a comma-separated list ({e})") from e
        if not items:
            raise click.BadParameter("empty list")
        return items

    return parse


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(__version__, prog_name="vaegan")
@click.option(
    "-v", "--verbose", is_flag=True, help="Show every step and the libraries' own output (debug logging)."
)
def cli(verbose: bool) -> None:
    """Train small VAE-GAN image generators and deploy them to the edge.

    \b
    Typical flow:
      vaegan train  --data digits --out runs/digits        # PyTorch, writes a run dir
      vaegan eval   runs/digits                            # FD, precision/recall, coverage, PSNR
      vaegan export runs/digits --out artifacts/digits     # ONNX fp32/fp16/int8 (+ OpenVINO, TensorRT)
      vaegan sample artifacts/digits -n 64 --out grid.png  # torch-free runtime
      vaegan serve  artifacts/digits                       # HTTP API
      vaegan bench  artifacts/digits                       # latency vs PyTorch, ORT, OpenVINO
    """
    # vaegan's own lines (warnings, what auto picked) at INFO; the libraries' narration (onnxscript's
    # rewrite passes, the quantizer) only with -v, where everything shows at DEBUG.
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.WARNING, format="%(message)s", stream=sys.stderr
    )
    logging.getLogger("vaegan").setLevel(logging.DEBUG if verbose else logging.INFO)


# ----------------------------------------------------------------------------------------- train
def option_from(cls: type, name: str, *decls: str, **kw: Any):
    """A click option whose default and help are the config dataclass field's: written once there.

    Options whose dataclass default is None say what None means in their help (e.g. "default:
    --lr"); a default of None on the command line alone (image size, channels) means "from the data"
    and is said in the option's own help instead."""
    f = {f.name: f for f in dataclasses.fields(cls)}[name]
    default = f.default if f.default is not dataclasses.MISSING else f.default_factory()  # type: ignore[operator]
    kw.setdefault("default", default)
    kw.setdefault("show_default", kw["default"] is not None)
    kw.setdefault("help", f.metadata.get("help"))
    if isinstance(default, bool) and len(decls) == 1:
        if default:  # on by default: --x/--no-x
            flag = decls[0].removeprefix("--")
            decls = (f"--{flag}/--no-{flag}",)
        else:
            kw.setdefault("is_flag", True)
            kw["show_default"] = False
    return click.option(*decls, name, **kw)


def options_from(cls: type, names: str, **renamed: str):
    """option_from for each field in `names` (space-separated), in that order: the flag is
    --field-name (a trailing _s, for seconds, dropped) unless `renamed`, the type the field's."""
    fields = {f.name: f for f in dataclasses.fields(cls)}
    decorators = []
    for name in names.split():
        ann = str(fields[name].type)
        kind = (
            None
            if ann == "bool"
            else int
            if ann.startswith("int")
            else float
            if ann.startswith("float")
            else str
        )
        flag = renamed.get(name) or "--" + name.removesuffix("_s").replace("_", "-")
        decorators.append(option_from(cls, name, flag, **({"type": kind} if kind else {})))

    def apply(f: Any) -> Any:
        for d in reversed(decorators):
            f = d(f)
        return f

    return apply


def _dir_option(flag: str, help: str, default: Path | None = None):
    return click.option(
        flag,
        type=click.Path(file_okay=False, path_type=Path),
        default=default,
        show_default=default is not None,
        help=help,
    )


# Options --resume may change; the others belong to the run and are refused next to --resume.
def _duration(ctx, param, value):
    """--time 15m / 900s / 1h / 1h30m -> seconds."""
    if value is None:
        return 0.0
    from vaegan.trainer.recipe import parse_duration

    try:
        return parse_duration(value)  # 0: no time budget, steps decide
    except ValueError as e:
        raise click.BadParameter(str(e)) from None


@cli.command()
@option_from(TrainConfig, "data", "--data")
@_dir_option("--out", "Run directory to write (weights, config, metrics, samples).", Path("runs/latest"))
@_dir_option(
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
    callback=_duration,
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
@options_from(TrainConfig, "kl_weight pixel_weight foreground_weight gamma")
@option_from(TrainConfig, "gan_loss", "--gan-loss", type=click.Choice(GAN_LOSSES))
@options_from(TrainConfig, "gan_weight adaptive_max gan_on_recon r1_gamma diffaug ema_decay", r1_gamma="--r1")
@option_from(TrainConfig, "amp", "--amp", type=click.Choice(AMP_CHOICES))
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
        if (out / "train_state.pt").exists():
            _fail(f"{out} already holds a run: pass --resume {out} to continue it, or choose another --out")
    if quiet:
        logging.getLogger("vaegan").setLevel(logging.WARNING)
    res = run_training(
        cfg,
        out,
        resume=resume is not None,
        progress=not quiet,
        infer=infer,
        extend_time_s=o["time_s"] if resume is not None and "time_s" in given else 0.0,
    )
    if int(os.environ.get("RANK", "0")) == 0:
        steps = f"{res.step}/{res.total_steps}" if res.total_steps else str(res.step)
        click.echo(f"trained {steps} steps in {res.seconds:.0f}s ({res.imgs_per_s:.0f} img/s) -> {res.out}")
        click.echo(f"  weights:  {res.out / 'model.safetensors'}")
        click.echo(f"  samples:  {res.out / 'samples'}")
        click.echo(f"  metrics:  {res.out / 'metrics.jsonl'}")


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
    help="Scale of the prior latents, as in `vaegan sample`: below 1 trades recall for precision.",
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
    run_dir: Path, n: int, seed: int, temperature: float, images: Path | None, json_out: Path | None
) -> None:
    """Score a run: FD, precision/recall/density/coverage, the share of samples its classifier names
    confidently, class coverage/KL and missing classes, PSNR, KL, active units.

    The feature space is a small network trained on the run's own data (its labels plus a class of
    blurred, blended and noise images made from it; without labels: real vs blur, blend, noise),
    cached under $VAEGAN_CACHE or ~/.cache/vaegan; nothing is downloaded.
    """
    import numpy as np

    from vaegan.config import RunConfig
    from vaegan.core.io import write_json
    from vaegan.trainer.evaluate import evaluate_images, evaluate_run

    if images is not None:
        with np.load(images) as z:
            key = "images" if "images" in z else "x"
            if key not in z:
                _fail(f"{images} has neither 'images' nor 'x'")
            arr = z[key]
        ev = evaluate_images(arr, RunConfig.load(Path(run_dir) / "config.json"))
    else:
        ev = evaluate_run(run_dir, n=n, seed=seed, temperature=temperature)
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


# ---------------------------------------------------------------------------------------- export
@cli.command("export")
@click.argument("run_dir", type=click.Path(path_type=Path), required=False)
@click.option(
    "--model",
    "model_spec",
    metavar="MODULE:FUNCTION",
    default=None,
    help="Export your own PyTorch model instead of a run dir: FUNCTION() in MODULE (importable, e.g. "
    "my_pkg.models:build) returns (encoder or None, decoder) with weights loaded. Needs --latent-dim and "
    "--image-shape; see README, 'Bring your own model'.",
)
@click.option("--latent-dim", type=int, default=None, help="With --model: the decoder's z size.")
@click.option(
    "--image-shape",
    callback=_csv(int),
    default=None,
    help="With --model: H,W,C of the decoder's output (C 1, 3 or 4).",
)
@click.option(
    "--output-range",
    callback=_csv(float),
    default="-1,1",
    show_default=True,
    help="With --model: what the decoder returns (-1,1 for tanh, 0,1 for sigmoid).",
)
@click.option(
    "--calibration",
    type=click.Path(exists=True, path_type=Path),
    default=None,
    help="With --model: real images (a folder, subfolders = labels, or an .npz with uint8 'x' [N,H,W,C]) "
    "for int8 calibration and quality.",
)
@click.option(
    "--out",
    type=click.Path(file_okay=False, path_type=Path),
    required=True,
    help="Artifact dir to write (replaced atomically when the export succeeds).",
)
@option_from(ExportOptions, "precisions", "--precision", callback=_csv(str), default=",".join(PRECISIONS))
@options_from(ExportOptions, "calib_samples")
@option_from(ExportOptions, "calib_method", "--calib-method", type=click.Choice(CALIBRATION_METHODS))
@options_from(ExportOptions, "max_batch opt_batch trt openvino triton strict max_fd_increase quality_n force")
def export_cmd(
    run_dir: Path | None,
    model_spec: str | None,
    latent_dim: int | None,
    image_shape: list[int] | None,
    output_range: list[float],
    calibration: Path | None,
    out: Path,
    precisions: list[str],
    **o: Any,
) -> None:
    """Export a run dir (or, with --model, your own PyTorch model) to ONNX (fp32/fp16/int8),
    optionally OpenVINO, Triton and TensorRT.

    Every artifact is checked (fp32 against torch, within one grey level at batch 1, 7 and
    --max-batch; fp16/int8 against fp32; every ONNX against TensorRT's import rules) and scored;
    manifest.json records it all.
    """
    from vaegan.export.pipeline import export_model, export_run

    if all(p in PRECISIONS for p in precisions):  # fp32 is the reference: always built, listed first
        precisions = sorted(set(precisions) | {"fp32"}, key=PRECISIONS.index)
    if (run_dir is None) == (model_spec is None):
        _fail("pass either RUN_DIR (a `vaegan train` run) or --model MODULE:FUNCTION, not both or neither")
    if run_dir is not None:
        manifest = export_run(run_dir, out, ExportOptions(precisions=precisions, **o).validate())
    else:
        if model_spec is None or latent_dim is None or image_shape is None:
            _fail("--model needs --latent-dim and --image-shape H,W,C")
        encoder, decoder = _build_model(model_spec)
        calib: Any = calibration
        if calibration is not None and calibration.suffix == ".npz":
            import numpy as np

            with np.load(calibration) as z:
                if "x" not in z:
                    _fail(f"{calibration} has no array 'x' of uint8 images [N,H,W,C]")
                calib = z["x"]
        manifest = export_model(
            decoder,
            out,
            latent_dim=latent_dim,
            image_shape=image_shape,
            encoder=encoder,
            output_range=output_range,
            calibration=calib,
            **{"precisions": precisions, **o},
        )
    from vaegan.info import format_manifest

    click.echo(format_manifest(manifest, out))


def _build_model(spec: str) -> tuple[Any, Any]:
    """MODULE:FUNCTION -> FUNCTION()'s (encoder or None, decoder), with one line for each way it fails."""
    import importlib

    module_name, _, func_name = spec.partition(":")
    if not module_name or not func_name:
        _fail(f"--model takes MODULE:FUNCTION (e.g. my_pkg.models:build), got {spec!r}")
    sys.path.insert(0, os.getcwd())  # like `python -m`: modules in the working directory import
    try:
        func = getattr(importlib.import_module(module_name), func_name)
    except ImportError as e:
        _fail(f"--model: cannot import {module_name} ({e}): is it on PYTHONPATH or in this directory?")
    except AttributeError:
        _fail(f"--model: {module_name} has no {func_name}")
    except SyntaxError as e:
        _fail(f"--model: {module_name} does not parse: {e.msg} ({e.filename}, line {e.lineno})")
    except SystemExit as e:
        _fail(f"--model: importing {module_name} called sys.exit({e.code!r}): nothing was exported")
    except Exception as e:  # noqa: BLE001 - the user's module: one line saying where
        _fail(f"--model: importing {module_name} raised {type(e).__name__}: {e}")
    try:
        built = func()
    except SystemExit as e:  # the user's code must not end vaegan with its own exit code
        _fail(f"--model: {spec}() called sys.exit({e.code!r}): nothing was exported")
    except Exception as e:  # noqa: BLE001 - the user's code: one line saying where
        _fail(f"--model: {spec}() raised {type(e).__name__}: {e}")
    if not (isinstance(built, tuple | list) and len(built) == 2):
        _fail(f"--model: {spec}() must return (encoder or None, decoder), got {type(built).__name__}")
    return built[0], built[1]


@cli.command()
@click.argument("art_dir", type=click.Path(path_type=Path))
@click.option("--max-batch", type=int, default=None, help="Largest batch (default: the export's).")
@click.option("--opt-batch", type=int, default=None, help="Batch TensorRT tunes for (default: the export's).")
def engines(art_dir: Path, max_batch: int | None, opt_batch: int | None) -> None:
    """Build TensorRT engines for an artifact dir's ONNX files, on this device (no torch needed).

    Engines do not move between GPUs or TensorRT versions: run this on the Jetson or GPU box itself.
    """
    from vaegan.core.manifest import Manifest
    from vaegan.export.tensorrt import build_engines

    m = Manifest.load(art_dir)
    opt, mx = opt_batch or m.opt_batch, max_batch or m.max_batch
    if not 1 <= opt <= mx:
        _fail(f"need 1 <= --opt-batch ({opt}) <= --max-batch ({mx})")
    m.opt_batch, m.max_batch = opt, mx
    from vaegan.info import format_manifest

    click.echo(format_manifest(build_engines(art_dir, m, opt, mx), art_dir))


@cli.command()
@click.argument("art_dir", type=click.Path(path_type=Path))
@click.option("--json", "as_json", is_flag=True, help="Print the manifest as JSON.")
def info(art_dir: Path, as_json: bool) -> None:
    """Show an artifact dir's manifest: artifacts, parity, quality per precision, tool versions."""
    from vaegan.core.manifest import Manifest

    m = Manifest.load(art_dir)
    if as_json:
        click.echo(json.dumps(m.to_dict(), indent=2))
    else:
        from vaegan.info import format_manifest

        click.echo(format_manifest(m, art_dir))


# ---------------------------------------------------------------------------------- sample/serve
_backend_opt = click.option(
    "--backend",
    type=click.Choice(["auto", *BACKEND_NAMES]),
    default="auto",
    show_default=True,
    help="Engine; auto picks the best usable one and says why.",
)
_precision_opt = click.option(
    "--precision",
    type=click.Choice(PRECISIONS),
    default="fp32",
    show_default=True,
    help="Which exported precision to run.",
)
_device_opt = click.option(
    "--device", default=None, help="Engine device (ort: cpu/cuda/tensorrt; openvino: CPU/GPU/NPU)."
)


@cli.command()
@click.argument("art_dir", type=click.Path(path_type=Path))
@click.option("-n", "n", type=click.IntRange(min=1), default=64, show_default=True, help="Number of samples.")
@click.option(
    "--out",
    type=click.Path(path_type=Path),
    required=True,
    help="FILE.png: a grid (at most 1024 images); FILE.npz: 'images' (uint8 NHWC) and 'z' (the latents "
    "decoded); a directory: one PNG per image.",
)
@click.option(
    "--seed",
    type=click.IntRange(min=0),
    default=None,
    help="Seed for the latents; omit it for new random ones. The same seed gives the same images on every "
    "backend and batch size.",
)
@click.option("--temperature", type=float, default=1.0, show_default=True, help="Scale of the prior latents.")
@click.option("--interpolate", is_flag=True, help="Write a strip interpolating between two seeded latents.")
@click.option("--steps", type=int, default=10, show_default=True, help="Steps of the --interpolate strip.")
@click.option(
    "--reconstruct",
    type=click.Path(exists=True, path_type=Path),
    default=None,
    help="Reconstruct this image file or every image in this folder instead of sampling.",
)
@_backend_opt
@_precision_opt
@_device_opt
def sample(
    art_dir: Path,
    n: int,
    out: Path,
    seed,
    temperature,
    interpolate,
    steps,
    reconstruct,
    backend,
    precision,
    device,
) -> None:
    """Generate images with the torch-free runtime (also: interpolate, reconstruct)."""
    import numpy as np

    from vaegan.core.images import IMAGE_SUFFIXES, load_image, save_grid, save_png
    from vaegan.core.io import atomic_write
    from vaegan.runtime.sampler import Sampler

    if out.suffix not in (".png", ".npz", ""):
        _fail(f"--out must end in .png or .npz, or be a directory (got {out.name})")
    s = Sampler.load(art_dir, backend=backend, precision=precision, device=device)
    cols = None
    if reconstruct is not None:
        files = (
            [reconstruct]
            if reconstruct.is_file()
            else sorted(p for p in reconstruct.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)
        )
        if not files:
            _fail(f"no PNG/JPEG/BMP images in {reconstruct}")
        h, _, c = s.image_shape
        try:
            originals = np.stack([load_image(p, h, c) for p in files])
        except OSError as e:
            _fail(f"cannot read an image under {reconstruct}: {e}")
        z = s.encode(originals)[0]
        what = f"{len(files)} reconstructions (each beside its original)"
        images = np.stack([originals, s.decode(z)], 1).reshape(-1, *s.image_shape)
        cols = 2 * min(8, len(files))
    elif interpolate:
        za, zb = s.latents(2, seed=seed)
        z = s.interpolation_latents(za, zb, steps)
        images, cols, what = s.decode(z), steps, f"{steps} interpolation steps"
    else:
        z = s.latents(n, seed=seed, temperature=temperature)
        images, what = _decode_with_progress(s, z), f"{n} images"
    if out.suffix == ".png":
        if len(images) > GRID_MAX:
            click.echo(
                f"the grid shows the first {GRID_MAX} of {len(images)}: write .npz or a directory for all",
                err=True,
            )
        save_grid(out, images[:GRID_MAX], cols=cols)
    elif out.suffix == ".npz":
        with atomic_write(out) as f:
            np.savez(f, images=images, z=z)
    else:
        out.mkdir(parents=True, exist_ok=True)
        for i, img in enumerate(images):
            save_png(out / f"{i:05d}.png", img)
    info = s.backend_info
    click.echo(
        f"{what} -> {out}  [{info['backend']} {info['precision']} on {info['decoder']['device']}: {info['why']}]"
    )


GRID_MAX = 1024  # images in one PNG grid: 1024 digits is already 1 MB; more is a file, not a picture


def _decode_with_progress(s: Any, z: Any) -> Any:
    """Sampler.decode in chunks, with a progress bar when it takes a while (on a terminal)."""
    import numpy as np
    from tqdm import tqdm

    chunk = max(s.max_batch, 4096)
    if len(z) <= chunk:
        return s.decode(z)
    out = np.empty((len(z), *s.image_shape), np.uint8)
    with tqdm(total=len(z), unit="img", disable=not sys.stderr.isatty(), leave=False) as bar:
        for i in range(0, len(z), chunk):
            out[i : i + chunk] = s.decode(z[i : i + chunk])
            bar.update(len(out[i : i + chunk]))
    return out


@cli.command()
@click.argument("art_dir", type=click.Path(path_type=Path))
@click.option("--host", default="127.0.0.1", show_default=True, help="Interface to listen on.")
@click.option("--port", type=click.IntRange(0, 65535), default=8000, show_default=True)
@options_from(ServeConfig, "max_batch max_delay_ms max_queue max_n max_decoding max_connections")
@options_from(ServeConfig, "header_timeout_s body_timeout_s keep_alive_s token grpc_port")
@_backend_opt
@_precision_opt
@_device_opt
def serve(
    art_dir: Path, host: str, port: int, backend: str, precision: str, device: str | None, **o: Any
) -> None:
    """Serve the model over HTTP (POST /v1/sample, POST /v1/reconstruct, GET /healthz, GET /metrics,
    and the Open Inference Protocol under /v2, as Triton and KServe speak it), and over gRPC with
    --grpc-port.

    Listens on 127.0.0.1 unless --host says otherwise. Before exposing it (--host 0.0.0.0), set a
    token (--token or $VAEGAN_TOKEN) and put a TLS reverse proxy in front (docs/deploying.md).
    """
    cfg = ServeConfig(
        **o
    ).validate()  # --token, else $VAEGAN_TOKEN  # before loading anything: a bad flag is one line, at once
    if host not in ("127.0.0.1", "localhost", "::1") and cfg.token is None:
        click.echo(
            f"warning: serving on {host} with no token: anyone who reaches this port can use it and read "
            "/metrics; set --token or VAEGAN_TOKEN and put TLS in front (docs/deploying.md)",
            err=True,
        )
    try:
        from vaegan.runtime.server import serve as run_server
    except ImportError as e:
        _fail(f"serving needs the serve extra ({e.name} missing): pip install 'vaegan[serve]'")
    from vaegan.runtime.sampler import Sampler

    s = Sampler.load(art_dir, backend=backend, precision=precision, device=device, max_n=cfg.max_n)
    click.echo(
        f"serving {art_dir} on http://{host}:{port} ({s.backend_info['backend']} {precision}: "
        f"{s.backend_info['why']})",
        err=True,
    )
    run_server(s, host, port, cfg)


# ----------------------------------------------------------------------------------------- bench
def _output_file(flag: str, name: str, help: str):
    return click.option(flag, name, type=click.Path(dir_okay=False, path_type=Path), default=None, help=help)


@cli.command()
@click.argument("art_dirs", metavar="ART_DIR...", nargs=-1, required=True, type=click.Path(path_type=Path))
@option_from(BenchConfig, "engines", "--engine", callback=_csv(str), default=",".join(ENGINES))
@option_from(BenchConfig, "precisions", "--precision", callback=_csv(str), default="fp32,int8")
@option_from(BenchConfig, "components", "--component", callback=_csv(str), default="decoder")
@option_from(BenchConfig, "batches", "--batch", callback=_csv(int), default="1,8,64")
@options_from(BenchConfig, "warmup iters seconds rounds threads peak")
@click.option(
    "--run-dir",
    type=click.Path(path_type=Path),
    default=None,
    help="Run dir for the PyTorch eager peer (default: the one recorded in the manifest).",
)
@_output_file("--json", "json_out", "Write results as JSON (schema in docs/benchmarks.md).")
@_output_file(
    "--markdown",
    "md_out",
    "Write the table and this run's ratios as Markdown (what docs/benchmarks.md quotes).",
)
@_output_file("--plot", "plot_out", "Throughput-vs-batch chart (PNG; needs matplotlib).")
def bench(
    art_dirs: tuple[Path, ...],
    run_dir: Path | None,
    json_out: Path | None,
    md_out: Path | None,
    plot_out: Path | None,
    **o: Any,
) -> None:
    """Latency/throughput per engine x precision x batch, with peers and % of this machine's peak.

    Every ratio is measured in this one run; these machines are noisy, so compare rows of one run.
    Given several artifact dirs (say, an export before and after a change), their engines take turns
    in the same rounds and each row is compared with the same row of the first dir.
    """
    from vaegan import bench as B

    cfg = B.BenchConfig(**o).validate()
    if importlib.util.find_spec("onnx") is None:
        _fail("vaegan bench counts FLOPs with onnx, which is not installed: pip install 'vaegan[bench]'")
    if plot_out and importlib.util.find_spec("matplotlib") is None:
        _fail("--plot needs matplotlib: pip install 'vaegan[bench]'")
    result = B.run_bench(list(art_dirs), cfg, run_dir=run_dir, progress=True)
    click.echo(B.table(result))
    for r in result["rows"]:
        if r["note"]:
            click.echo(f"flagged {r['engine']} {r['precision']} {r['component']} b{r['batch']}: {r['note']}")
    for k, v in result["ratios"].items():
        click.echo(f"{k}: {v:.3f}")
    for c in result["comparisons"]:
        click.echo(
            f"{c['artifact']} vs {c['against']}: {c['engine']} {c['precision']} {c['component']} "
            f"b{c['batch']}: {c['speedup']:.3f}x"
        )
    for k, why in result["skipped"].items():
        click.echo(f"skipped {k}: {why}")
    if json_out:
        B.write_json(result, json_out)
    if md_out:
        from vaegan.core.io import write_bytes

        write_bytes(md_out, B.markdown(result).encode())
    if plot_out:
        B.plot(result, plot_out)


# ---------------------------------------------------------------------------------------- doctor
@cli.command()
@click.argument("art_dir", type=click.Path(path_type=Path), required=False)
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON (for scripts).")
def doctor(art_dir: Path | None, as_json: bool) -> None:
    """What this machine can run; with ART_DIR, which artifacts load here, why not, and the fix.

    Exit code 0 when ART_DIR has at least one usable decoder here (or no ART_DIR given), 1 when none
    is, 2 when ART_DIR is not a readable artifact dir (its manifest is missing or invalid).
    """
    from vaegan.doctor import format_report, run_doctor

    report = run_doctor(art_dir)
    if report.error and not as_json:  # the artifact dir itself is unreadable: that one line is the answer
        _fail(report.error)
    click.echo(json.dumps(report.to_dict(), indent=2) if as_json else format_report(report))
    if not report.ok:
        sys.exit(1)


def main() -> None:
    """Console entry point: every VaeganError or usage error is one line on stderr and exit code 2."""
    try:
        cli.main(standalone_mode=False, prog_name="vaegan")
    except click.exceptions.NoArgsIsHelpError as e:  # click >= 8.2: bare group prints help
        click.echo(e.ctx.get_help() if e.ctx else str(e))
        sys.exit(0)
    except click.exceptions.Abort:
        click.echo("vaegan: aborted", err=True)
        sys.exit(130)
    except click.exceptions.ClickException as e:
        ctx = getattr(e, "ctx", None)
        cmd = f"vaegan {ctx.info_name} --help" if ctx is not None and ctx.parent else "vaegan --help"
        _fail(f"{e.format_message()} (see `{cmd}`)")
    except VaeganError as e:
        _fail(str(e))
    except KeyboardInterrupt:
        click.echo("vaegan: interrupted", err=True)
        sys.exit(130)
    except BrokenPipeError:
        sys.exit(0)
