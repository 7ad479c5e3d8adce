"""The `vaegan` command line. Heavy imports happen inside each command, so `vaegan sample` and
`vaegan serve` work where only the torch-free runtime is installed."""

from __future__ import annotations

import importlib.util
import json
import logging
import sys
from pathlib import Path

import click

from vaegan import __version__
from vaegan.core.errors import VaeganError


def _fail(msg: str) -> None:
    click.echo(f"vaegan: error: {msg}", err=True)
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
@click.option("-v", "--verbose", is_flag=True, help="Debug logging.")
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
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO, format="%(message)s", stream=sys.stderr
    )


# ----------------------------------------------------------------------------------------- train
@cli.command()
@click.option(
    "--data",
    default="digits",
    show_default=True,
    help="'digits' (scikit-learn's bundled 8x8 digits, offline), an image folder "
    "(subfolders are labels) or an .npz with uint8 'x' [N,H,W(,C)] and optional 'y'.",
)
@click.option(
    "--out",
    type=click.Path(file_okay=False, path_type=Path),
    default=Path("runs/latest"),
    show_default=True,
    help="Run directory to write (weights, config, metrics, samples).",
)
@click.option(
    "--resume",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Continue a run directory where it stopped (after a crash or kill). Uses its config; "
    "--epochs/--lr may be raised/lowered.",
)
@click.option(
    "--mode",
    type=click.Choice(["vaegan", "vae", "gan"]),
    default="vaegan",
    show_default=True,
    help="vaegan: staged VAE-GAN; vae / gan: the ablations on the same budget.",
)
@click.option("--epochs", type=int, default=None, help="Passes over the training split.  [default: 30]")
@click.option(
    "--max-steps",
    type=int,
    default=0,
    show_default=True,
    help="Stop after this many steps (0: epochs decide).",
)
@click.option("--batch-size", type=int, default=32, show_default=True, help="Images per step per process.")
@click.option("--lr", type=float, default=None, help="Encoder/decoder learning rate (Adam).  [default: 1e-3]")
@click.option(
    "--lr-d",
    type=float,
    default=None,
    help="Discriminator learning rate (D trains in the GAN stages only).  [default: 1e-3]",
)
@click.option(
    "--image-size", type=int, default=32, show_default=True, help="Square size, a power of two 16..128."
)
@click.option("--channels", type=click.IntRange(1, 3), default=None, help="1 or 3 (default: from the data).")
@click.option("--latent-dim", type=int, default=16, show_default=True, help="Size of z.")
@click.option(
    "--width", type=int, default=16, show_default=True, help="Channels at full resolution (x2 per halving)."
)
@click.option("--kl-weight", type=float, default=4.0, show_default=True, help="Weight of the KL prior term.")
@click.option(
    "--gamma", type=float, default=1.0, show_default=True, help="Decoder's weight on reconstruction vs GAN."
)
@click.option("--gan-loss", type=click.Choice(["hinge", "bce"]), default="hinge", show_default=True)
@click.option(
    "--gan-weight", type=float, default=1.0, show_default=True, help="Base GAN weight (x adaptive weight)."
)
@click.option(
    "--adaptive-max",
    type=float,
    default=1.0,
    show_default=True,
    help="Clamp of the adaptive GAN weight (gradient-norm ratio at the decoder's last layer).",
)
@click.option(
    "--adv-lr",
    type=float,
    default=None,
    help="Encoder and decoder learning rate once the GAN is on.  [default: --lr]",
)
@click.option(
    "--gan-on-recon/--no-gan-on-recon",
    default=False,
    show_default=True,
    help="Also show D the reconstructions (Larsen et al.'s original); off: prior samples only.",
)
@click.option(
    "--r1", "r1_gamma", type=float, default=0.0, show_default=True, help="R1 penalty on D (0: off)."
)
@click.option("--no-diffaug", is_flag=True, help="Turn DiffAugment off.")
@click.option(
    "--ema-decay",
    type=float,
    default=0.999,
    show_default=True,
    help="EMA of decoder weights (export uses it).",
)
@click.option(
    "--amp",
    type=click.Choice(["auto", "off", "bf16", "fp16"]),
    default="auto",
    show_default=True,
    help="Mixed precision: auto = bf16/fp16 on CUDA, off on CPU.",
)
@click.option(
    "--seed", type=int, default=0, show_default=True, help="Seeds weights, noise and the train/val split."
)
@click.option(
    "--checkpoint-every",
    type=int,
    default=100,
    show_default=True,
    help="Steps between checkpoints (also every epoch).",
)
@click.option(
    "--log-every", type=int, default=20, show_default=True, help="Steps between metrics.jsonl lines."
)
@click.option("--quiet", is_flag=True, help="No progress bar or log lines.")
def train(**o) -> None:
    """Train a VAE-GAN (or an ablation) and write a run directory.

    Scale out with `torchrun --nproc-per-node N -m vaegan train ...` (gloo on CPU, NCCL on CUDA).
    """
    from vaegan.config import ModelConfig, RunConfig, TrainConfig
    from vaegan.trainer.loop import train as run_training

    if o["resume"] is not None:
        from vaegan.config import RunConfig as RC

        cfg = RC.load(Path(o["resume"]) / "config.json")
        for k in ("epochs", "lr", "lr_d"):
            if o[k] is not None:
                setattr(cfg.train, k, o[k])
        out, resume = Path(o["resume"]), True
    else:
        mc = ModelConfig(
            image_size=o["image_size"],
            channels=o["channels"] or 1,
            latent_dim=o["latent_dim"],
            width=o["width"],
        ).validate()
        tc = TrainConfig(
            data=o["data"],
            mode=o["mode"],
            epochs=o["epochs"] or 30,
            batch_size=o["batch_size"],
            lr=o["lr"] or 1e-3,
            lr_d=o["lr_d"] or 1e-3,
            kl_weight=o["kl_weight"],
            gamma=o["gamma"],
            gan_loss=o["gan_loss"],
            adaptive_max=o["adaptive_max"],
            adv_lr=o["adv_lr"] or o["lr"] or 1e-3,
            gan_on_recon=o["gan_on_recon"],
            gan_weight=o["gan_weight"],
            r1_gamma=o["r1_gamma"],
            diffaug=not o["no_diffaug"],
            ema_decay=o["ema_decay"],
            amp=o["amp"],
            seed=o["seed"],
            checkpoint_every=o["checkpoint_every"],
            log_every=o["log_every"],
            max_steps=o["max_steps"],
        ).validate()
        if o["gamma"] <= 0:
            _fail(f"--gamma must be positive, got {o['gamma']}")
        cfg, out, resume = RunConfig(model=mc, train=tc), o["out"], False
        if (out / "train_state.pt").exists():
            _fail(f"{out} already holds a run: pass --resume {out} to continue it, or choose another --out")
    if o["quiet"]:
        logging.getLogger("vaegan").setLevel(logging.WARNING)
    res = run_training(cfg, out, resume=resume, progress=not o["quiet"], infer_channels=o["channels"] is None)
    if int(__import__("os").environ.get("RANK", "0")) == 0:
        click.echo(f"trained {res.step}/{res.total_steps} steps in {res.seconds:.0f}s -> {res.out}")
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
    """Score a run: FD, precision/recall/density/coverage, class coverage/KL, PSNR, KL, active units.

    The feature space is a small classifier trained on the run's own dataset labels (cached under
    $VAEGAN_CACHE or ~/.cache/vaegan); nothing is downloaded.
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
    if json_out:
        write_json(json_out, ev.to_dict())
        click.echo(f"-> {json_out}")


# ---------------------------------------------------------------------------------------- export
@cli.command("export")
@click.argument("run_dir", type=click.Path(path_type=Path))
@click.option(
    "--out",
    type=click.Path(file_okay=False, path_type=Path),
    required=True,
    help="Artifact dir to write (replaced atomically when the export succeeds).",
)
@click.option(
    "--precision",
    "precisions",
    callback=_csv(str),
    default="fp32,fp16,int8",
    show_default=True,
    help="Comma-separated ONNX precisions; fp32 is always built (the reference).",
)
@click.option(
    "--calib-samples",
    type=int,
    default=512,
    show_default=True,
    help="Calibration inputs for int8 and the fp16 guard.",
)
@click.option(
    "--calib-method",
    type=click.Choice(["minmax", "entropy", "percentile"]),
    default="percentile",
    show_default=True,
    help="How int8 ranges are chosen from calibration activations.",
)
@click.option(
    "--max-batch", type=int, default=64, show_default=True, help="Largest batch the engines accept."
)
@click.option("--opt-batch", type=int, default=8, show_default=True, help="Batch TensorRT tunes for.")
@click.option(
    "--trt", is_flag=True, help="Also build TensorRT engines (needs TensorRT 10/11 and an NVIDIA GPU)."
)
@click.option(
    "--openvino", is_flag=True, help="Also write OpenVINO IR (fp32, fp16, and int8 from the same QDQ ONNX)."
)
@click.option("--triton", is_flag=True, help="Also write a Triton model repository under ART_DIR/triton.")
@click.option(
    "--strict",
    is_flag=True,
    help="Fail when fp16/int8 raise FD by more than --max-fd-increase, or an ONNX file breaks TensorRT's "
    "import rules (without it: a warning, and the result is recorded in manifest.json).",
)
@click.option(
    "--max-fd-increase",
    type=float,
    default=0.10,
    show_default=True,
    help="Tolerated relative FD increase vs fp32.",
)
@click.option("--quality-n", type=int, default=1000, show_default=True, help="Samples scored per precision.")
@click.option("--force", is_flag=True, help="Replace an --out dir that holds another model's artifacts.")
def export_cmd(run_dir: Path, out: Path, precisions, **o) -> None:
    """Export a run dir to ONNX (fp32/fp16/int8), optionally OpenVINO, Triton and TensorRT.

    Every artifact is checked (fp32 against torch, within one grey level at batch 1, 7 and
    --max-batch; fp16/int8 against fp32) and scored; manifest.json records it all.
    """
    from vaegan.export.pipeline import ExportOptions, export_run

    opts = ExportOptions(
        precisions=sorted(set(precisions) | {"fp32"}, key=["fp32", "fp16", "int8"].index)
        if all(p in ("fp32", "fp16", "int8") for p in precisions)
        else precisions,
        **o,
    )
    manifest = export_run(run_dir, out, opts)
    _print_manifest(manifest, out)


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
    _print_manifest(build_engines(art_dir, m, opt, mx), art_dir)


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
        _print_manifest(m, art_dir)


def _print_manifest(m, art_dir: Path) -> None:
    mc = m.model
    click.echo(
        f"{art_dir}: {mc['image_size']}x{mc['image_size']}x{mc['channels']} images, z={mc['latent_dim']}, "
        f"trained {m.run.get('mode')} for {m.run.get('step')} steps on {m.run.get('data')}; "
        f"batch 1..{m.max_batch} (opt {m.opt_batch})"
    )
    from vaegan.doctor import _conformance_summary

    rows = [
        (
            "artifact",
            "component",
            "precision",
            "format",
            "size",
            "parity (max err)",
            "TensorRT import",
            "sha256",
        )
    ]
    broken = []
    for a in m.artifacts:
        par = a.parity.get("max_abs_error")
        par_s = "" if par is None else f"{par:.3g} {a.parity.get('unit', '')} vs {a.parity.get('vs')}"
        trt = ""
        if a.conformance:
            trt = "conforms" if a.conformance["ok"] else f"{len(a.conformance['violations'])} violation(s)"
            if not a.conformance["ok"]:
                broken.append(f"  {a.path}: {_conformance_summary(a.conformance)}")
        elif a.format == "onnx":
            trt = "not checked"
        rows.append(
            (
                a.path,
                a.component,
                a.precision,
                a.format,
                f"{a.bytes / 1024:.0f} KiB",
                par_s,
                trt,
                a.sha256[:12],
            )
        )
    _table(rows)
    if broken:
        click.echo(
            "\nBreaks TensorRT's ONNX import rules (vaegan.export.conformance; `vaegan engines` refuses these):"
        )
        click.echo("\n".join(broken))
    if m.quality:
        click.echo("")
        rows = [("precision", "fd", "d_fd", "precision", "recall", "coverage", "class_kl", "px err mean/max")]
        for p, q in m.quality.items():

            def f(k, q=q):
                return f"{q[k]:.3f}" if isinstance(q.get(k), float) else "-"

            px = (
                f"{q['pixel_mean_abs_error']:.2f}/{q['pixel_max_abs_error']}"
                if "pixel_max_abs_error" in q
                else "-"
            )
            dfd = f"{q['delta_fd']:+.2f}" if "delta_fd" in q else "-"
            rows.append((p, f("fd"), dfd, f("precision"), f("recall"), f("coverage"), f("class_kl"), px))
        _table(rows)
    click.echo("\ntools: " + ", ".join(f"{k} {v}" for k, v in m.tools.items()))


def _table(rows: list[tuple]) -> None:
    from vaegan.core.text import text_table

    click.echo(text_table(rows))


# ---------------------------------------------------------------------------------- sample/serve
_backend_opt = click.option(
    "--backend",
    type=click.Choice(["auto", "ort", "openvino", "tensorrt"]),
    default="auto",
    show_default=True,
    help="Engine; auto picks the best usable one and says why.",
)
_precision_opt = click.option(
    "--precision",
    type=click.Choice(["fp32", "fp16", "int8"]),
    default="fp32",
    show_default=True,
    help="Which exported precision to run.",
)
_device_opt = click.option(
    "--device", default=None, help="Engine device (ort: cpu/cuda/tensorrt; openvino: CPU/GPU/NPU)."
)


@cli.command()
@click.argument("art_dir", type=click.Path(path_type=Path))
@click.option("-n", "n", type=int, default=64, show_default=True, help="Number of samples.")
@click.option(
    "--out",
    type=click.Path(path_type=Path),
    required=True,
    help="FILE.png: a grid; FILE.npz: 'images' (uint8 NHWC) and 'z'; a directory: one PNG per image.",
)
@click.option(
    "--seed", type=int, default=None, help="Seed for the latents (same seed, same images on every backend)."
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

    s = Sampler.load(art_dir, backend=backend, precision=precision, device=device)
    z = None
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
        images = np.stack([originals, s.reconstruct(originals)], 1).reshape(-1, *s.image_shape)
        cols = 2 * min(8, len(files))
    elif interpolate:
        za, zb = s.latents(2, seed=seed)
        images, cols = s.interpolate(za, zb, steps), steps
    else:
        z = s.latents(n, seed=seed, temperature=temperature)
        images, cols = s.decode(z), None
    if out.suffix == ".png":
        save_grid(out, images, cols=cols)
    elif out.suffix == ".npz":
        with atomic_write(out) as f:
            np.savez(f, images=images, **({"z": z} if z is not None else {}))
    elif out.suffix == "":
        out.mkdir(parents=True, exist_ok=True)
        for i, img in enumerate(images):
            save_png(out / f"{i:05d}.png", img)
    else:
        _fail(f"--out must end in .png or .npz, or be a directory (got {out.name})")
    info = s.backend_info
    click.echo(
        f"{len(images)} images -> {out}  [{info['backend']} {info['precision']} on "
        f"{info['decoder']['device']}: {info['why']}]"
    )


@cli.command()
@click.argument("art_dir", type=click.Path(path_type=Path))
@click.option("--host", default="127.0.0.1", show_default=True, help="Interface to listen on.")
@click.option("--port", type=int, default=8000, show_default=True)
@click.option(
    "--max-batch",
    type=int,
    default=None,
    help="Rows merged per engine call (default: the export's max batch).",
)
@click.option(
    "--max-delay-ms",
    type=float,
    default=0.0,
    show_default=True,
    help="How long a request may wait for company. 0: no waiting; requests that arrive while the "
    "engine is busy are still merged into the next batch (Triton's default too).",
)
@click.option(
    "--max-queue", type=int, default=64, show_default=True, help="Requests waiting before 503 + Retry-After."
)
@click.option("--max-n", type=int, default=1024, show_default=True, help="Largest n one request may ask for.")
@_backend_opt
@_precision_opt
@_device_opt
def serve(
    art_dir: Path, host, port, max_batch, max_delay_ms, max_queue, max_n, backend, precision, device
) -> None:
    """Serve the model over HTTP: POST /v1/sample, POST /v1/reconstruct, GET /healthz, GET /metrics."""
    try:
        from vaegan.runtime.server import ServeConfig
        from vaegan.runtime.server import serve as run_server
    except ImportError as e:
        _fail(f"serving needs the serve extra ({e.name} missing): pip install 'vaegan[serve]'")
    from vaegan.runtime.sampler import Sampler

    s = Sampler.load(art_dir, backend=backend, precision=precision, device=device, max_n=max_n)
    cfg = ServeConfig(
        max_batch=max_batch or s.max_batch, max_delay_ms=max_delay_ms, max_queue=max_queue, max_n=max_n
    )
    click.echo(
        f"serving {art_dir} on http://{host}:{port} ({s.backend_info['backend']} {precision}: "
        f"{s.backend_info['why']})",
        err=True,
    )
    run_server(s, host, port, cfg)


# ----------------------------------------------------------------------------------------- bench
@cli.command()
@click.argument("art_dir", type=click.Path(path_type=Path))
@click.option(
    "--engine",
    "engines",
    callback=_csv(str),
    default=",".join(
        ["vaegan-ort", "vaegan-openvino", "vaegan-tensorrt", "ort-raw", "openvino-default", "torch-eager"]
    ),
    show_default=True,
    help="Engines to compare: vaegan's runtime per backend and the peers on the same model.",
)
@click.option("--precision", "precisions", callback=_csv(str), default="fp32,int8", show_default=True)
@click.option(
    "--component",
    "components",
    callback=_csv(str),
    default="decoder",
    show_default=True,
    help="decoder, encoder or both.",
)
@click.option("--batch", "batches", callback=_csv(int), default="1,8,64", show_default=True)
@click.option("--warmup", type=int, default=10, show_default=True, help="Untimed calls before measuring.")
@click.option(
    "--iters", type=int, default=0, show_default=True, help="Timed calls per case (0: use --seconds)."
)
@click.option(
    "--seconds", type=float, default=2.0, show_default=True, help="Time per engine and case, over all rounds."
)
@click.option(
    "--rounds",
    type=int,
    default=3,
    show_default=True,
    help="Engines take turns this many times per case, so machine noise hits them all alike.",
)
@click.option("--threads", type=int, default=0, show_default=True, help="Engine threads (0: all cores).")
@click.option(
    "--run-dir",
    type=click.Path(path_type=Path),
    default=None,
    help="Run dir for the PyTorch eager peer (default: the one recorded in the manifest).",
)
@click.option("--no-peak", is_flag=True, help="Skip the peak matmul measurement.")
@click.option(
    "--json",
    "json_out",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Write results as JSON (schema in docs/benchmarks.md).",
)
@click.option("--markdown", "md_out", type=click.Path(dir_okay=False, path_type=Path), default=None)
@click.option(
    "--plot",
    "plot_out",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Throughput-vs-batch chart (PNG; needs matplotlib).",
)
def bench(
    art_dir: Path,
    engines,
    precisions,
    components,
    batches,
    warmup,
    iters,
    seconds,
    rounds,
    threads,
    run_dir,
    no_peak,
    json_out,
    md_out,
    plot_out,
) -> None:
    """Latency/throughput per engine x precision x batch, with peers and % of this machine's peak.

    Every ratio is measured in this one run; these machines are noisy, so compare rows of one run.
    """
    from vaegan import bench as B

    bad = [e for e in engines if e not in B.ENGINES]
    if bad:
        _fail(f"unknown engine {bad[0]!r}: choose from {', '.join(B.ENGINES)}")
    if any(p not in ("fp32", "fp16", "int8") for p in precisions):
        _fail("--precision takes fp32, fp16, int8")
    if any(c not in ("decoder", "encoder") for c in components):
        _fail("--component takes decoder, encoder")
    if any(b < 1 or b > 65536 for b in batches):
        _fail("--batch sizes must be between 1 and 65536")
    if iters < 0 or seconds <= 0 or warmup < 0 or rounds < 1:
        _fail("--iters and --warmup must be >= 0, --seconds > 0 and --rounds >= 1")
    if importlib.util.find_spec("onnx") is None:
        _fail("vaegan bench counts FLOPs with onnx, which is not installed: pip install 'vaegan[bench]'")
    if plot_out and importlib.util.find_spec("matplotlib") is None:
        _fail("--plot needs matplotlib: pip install 'vaegan[bench]'")
    cfg = B.BenchConfig(
        engines=engines,
        precisions=precisions,
        components=components,
        batches=batches,
        warmup=warmup,
        iters=iters,
        seconds=seconds,
        rounds=rounds,
        threads=threads,
        peak=not no_peak,
    )
    result = B.run_bench(art_dir, cfg, run_dir=run_dir, progress=True)
    click.echo(B.table(result))
    for r in result["rows"]:
        if r["note"]:
            click.echo(f"flagged {r['engine']} {r['precision']} {r['component']} b{r['batch']}: {r['note']}")
    for k, v in result["ratios"].items():
        click.echo(f"{k}: {v:.3f}")
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

    Exit code 0 when ART_DIR has at least one usable decoder here (or no ART_DIR given), 1 otherwise.
    """
    from vaegan.doctor import format_report, run_doctor

    report = run_doctor(art_dir)
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
        cmd = (
            f"vaegan {e.ctx.info_name} --help"
            if getattr(e, "ctx", None) and e.ctx.parent
            else "vaegan --help"
        )
        _fail(f"{e.format_message()} (see `{cmd}`)")
    except VaeganError as e:
        _fail(str(e))
    except KeyboardInterrupt:
        click.echo("vaegan: interrupted", err=True)
        sys.exit(130)
    except BrokenPipeError:
        sys.exit(0)
