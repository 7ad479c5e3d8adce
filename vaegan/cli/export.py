"""`vaegan export`, `vaegan engines` and `vaegan info`: from a run (or your own modules) to artifacts."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any

import click

from vaegan.cli.app import cli, fail
from vaegan.cli.options import csv_list, option_from, options_from
from vaegan.config import CALIBRATION_METHODS, ExportOptions
from vaegan.core.manifest import PRECISIONS


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
    callback=csv_list(int),
    default=None,
    help="With --model: H,W,C of the decoder's output (C 1, 3 or 4).",
)
@click.option(
    "--output-range",
    callback=csv_list(float),
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
@option_from(ExportOptions, "precisions", "--precision", callback=csv_list(str), default=",".join(PRECISIONS))
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

    if (run_dir is None) == (model_spec is None):
        fail("pass either RUN_DIR (a `vaegan train` run) or --model MODULE:FUNCTION, not both or neither")
    if run_dir is not None:
        manifest = export_run(run_dir, out, ExportOptions(precisions=precisions, **o).validate())
    else:
        if model_spec is None or latent_dim is None or image_shape is None:
            fail("--model needs --latent-dim and --image-shape H,W,C")
        encoder, decoder = _build_model(model_spec)
        calib: Any = calibration
        if calibration is not None and calibration.suffix == ".npz":
            from vaegan.core.images import read_npz_images

            calib = read_npz_images(calibration, ("x",))
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
        fail(f"--model takes MODULE:FUNCTION (e.g. my_pkg.models:build), got {spec!r}")
    sys.path.insert(0, os.getcwd())  # like `python -m`: modules in the working directory import
    try:
        func = getattr(importlib.import_module(module_name), func_name)
    except ImportError as e:
        fail(f"--model: cannot import {module_name} ({e}): is it on PYTHONPATH or in this directory?")
    except AttributeError:
        fail(f"--model: {module_name} has no {func_name}")
    except SyntaxError as e:
        fail(f"--model: {module_name} does not parse: {e.msg} ({e.filename}, line {e.lineno})")
    except SystemExit as e:
        fail(f"--model: importing {module_name} called sys.exit({e.code!r}): nothing was exported")
    except Exception as e:  # noqa: BLE001 - the user's module: one line saying where
        fail(f"--model: importing {module_name} raised {type(e).__name__}: {e}")
    try:
        built = func()
    except SystemExit as e:  # the user's code must not end vaegan with its own exit code
        fail(f"--model: {spec}() called sys.exit({e.code!r}): nothing was exported")
    except Exception as e:  # noqa: BLE001 - the user's code: one line saying where
        fail(f"--model: {spec}() raised {type(e).__name__}: {e}")
    if not (isinstance(built, tuple | list) and len(built) == 2):
        fail(f"--model: {spec}() must return (encoder or None, decoder), got {type(built).__name__}")
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
        fail(f"need 1 <= --opt-batch ({opt}) <= --max-batch ({mx})")
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
