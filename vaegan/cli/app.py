"""The `vaegan` command group and the one way a command fails: one line on stderr, exit code 2."""

from __future__ import annotations

import logging
import sys
from typing import NoReturn

import click

from vaegan import __version__


def fail(msg: str) -> NoReturn:
    one_line = " ".join(part.strip() for part in str(msg).splitlines() if part.strip())
    click.echo(f"vaegan: error: {one_line}", err=True)
    sys.exit(2)


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
      vaegan doctor artifacts/digits                       # on the device: what runs here, and why not
      vaegan engines artifacts/digits                      # on an NVIDIA device: TensorRT engines
      vaegan sample artifacts/digits -n 64 --out grid.png  # torch-free runtime
      vaegan serve  artifacts/digits                       # HTTP and gRPC (Open Inference Protocol)
      vaegan bench  artifacts/digits                       # latency vs PyTorch, ORT, OpenVINO
    """
    # vaegan's own lines (warnings, what auto picked) at INFO; the libraries' narration (onnxscript's
    # rewrite passes, the quantizer) only with -v, where everything shows at DEBUG.
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.WARNING, format="%(message)s", stream=sys.stderr
    )
    logging.getLogger("vaegan").setLevel(logging.DEBUG if verbose else logging.INFO)
