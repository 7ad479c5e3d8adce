"""`vaegan sample` and `vaegan serve`: the torch-free runtime."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import click

from vaegan.cli.app import cli, fail
from vaegan.cli.options import backend_option, device_option, option_from, options_from, precision_option
from vaegan.config import RELOADS, ServeConfig


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
@click.option(
    "--class",
    "class_name",
    default=None,
    help="Draw one class of a labelled training set (a folder per class): the prior is fitted per class.",
)
@click.option("--interpolate", is_flag=True, help="Write a strip interpolating between two seeded latents.")
@click.option("--steps", type=int, default=10, show_default=True, help="Steps of the --interpolate strip.")
@click.option(
    "--reconstruct",
    type=click.Path(exists=True, path_type=Path),
    default=None,
    help="Reconstruct this image file or every image in this folder instead of sampling.",
)
@backend_option
@precision_option
@device_option
def sample(
    art_dir: Path,
    n: int,
    out: Path,
    seed,
    temperature,
    class_name,
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
        fail(f"--out must end in .png or .npz, or be a directory (got {out.name})")
    s = Sampler.load(art_dir, backend=backend, precision=precision, device=device)
    cols = None
    if reconstruct is not None:
        files = (
            [reconstruct]
            if reconstruct.is_file()
            else sorted(p for p in reconstruct.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)
        )
        if not files:
            fail(f"no PNG/JPEG/BMP images in {reconstruct}")
        h, _, c = s.image_shape
        try:
            originals = np.stack([load_image(p, h, c) for p in files])
        except OSError as e:
            fail(f"cannot read an image under {reconstruct}: {e}")
        z = s.encode(originals)[0]
        what = f"{len(files)} reconstructions (each beside its original)"
        images = np.stack([originals, s.decode(z)], 1).reshape(-1, *s.image_shape)
        cols = 2 * min(8, len(files))
    elif interpolate:
        za, zb = s.latents(2, seed=seed)
        z = s.interpolation_latents(za, zb, steps)
        images, cols, what = s.decode(z), steps, f"{steps} interpolation steps"
    else:
        z = s.latents(n, seed=seed, temperature=temperature, class_name=class_name)
        images, what = (
            _decode_with_progress(s, z),
            f"{n} images" + (f" of class {class_name}" if class_name else ""),
        )
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
@option_from(ServeConfig, "reload", "--reload", type=click.Choice(RELOADS))
@option_from(ServeConfig, "ui", "--ui")
@backend_option
@precision_option
@device_option
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
        from vaegan.runtime.launch import serve as run_server
    except ImportError as e:
        fail(f"serving needs the serve extra ({e.name} missing): pip install 'vaegan[serve]'")
    from vaegan.runtime.sampler import Sampler

    def load() -> Sampler:
        return Sampler.load(art_dir, backend=backend, precision=precision, device=device, max_n=cfg.max_n)

    s = load()
    click.echo(
        f"serving {art_dir} on http://{host}:{port} ({s.backend_info['backend']} {precision}: "
        f"{s.backend_info['why']})",
        err=True,
    )
    run_server(s, host, port, cfg, load)
