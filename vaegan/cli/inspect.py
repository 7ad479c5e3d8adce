"""`vaegan bench` and `vaegan doctor`: what this machine does with an export."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path
from typing import Any

import click

from vaegan.cli.app import cli, fail
from vaegan.cli.options import csv_list, option_from, options_from, output_file
from vaegan.config import ENGINES, BenchConfig


@cli.command()
@click.argument("art_dirs", metavar="ART_DIR...", nargs=-1, required=True, type=click.Path(path_type=Path))
@option_from(BenchConfig, "engines", "--engine", callback=csv_list(str), default=",".join(ENGINES))
@option_from(BenchConfig, "precisions", "--precision", callback=csv_list(str), default="fp32,int8")
@option_from(BenchConfig, "components", "--component", callback=csv_list(str), default="decoder")
@option_from(BenchConfig, "batches", "--batch", callback=csv_list(int), default="1,8,64")
@options_from(BenchConfig, "warmup iters seconds rounds threads peak")
@click.option(
    "--run-dir",
    type=click.Path(path_type=Path),
    default=None,
    help="Run dir for the PyTorch eager peer (default: the one recorded in the manifest).",
)
@output_file("--json", "json_out", "Write results as JSON (schema in docs/benchmarks.md).")
@output_file(
    "--markdown",
    "md_out",
    "Write the table and this run's ratios as Markdown (what docs/benchmarks.md quotes).",
)
@output_file("--plot", "plot_out", "Throughput-vs-batch chart (PNG; needs matplotlib).")
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
        fail("vaegan bench counts FLOPs with onnx, which is not installed: pip install 'vaegan[bench]'")
    if plot_out and importlib.util.find_spec("matplotlib") is None:
        fail("--plot needs matplotlib: pip install 'vaegan[bench]'")
    result = B.run_bench(list(art_dirs), cfg, run_dir=run_dir, progress=True)
    click.echo(B.table(result.rows))
    for r in result.rows:
        if r.note:
            click.echo(f"flagged {r.engine} {r.precision} {r.component} b{r.batch}: {r.note}")
    if result.peak_spread:
        click.echo(
            "measured peak (large matmul, best trial; worst in brackets): "
            + ", ".join(
                f"{k} {v['best']:.0f} ({v['worst']:.0f}) GFLOP/s" for k, v in result.peak_spread.items()
            )
            + f"; {result.machine['cpu']}, ISA: {result.machine.get('isa', '?')}"
        )
    for b in result.best:
        click.echo(
            f"batch {b['batch']}: vaegan's best within quality tolerance, {b['vaegan']} {b['vaegan_ms']:.3f} ms, "
            f"vs the best peer, {b['peer']} {b['peer_ms']:.3f} ms: {b['ratio']:.3f}x"
        )
    for k, v in result.ratios.items():
        click.echo(f"{k}: {v:.3f}")
    for c in result.comparisons:
        click.echo(
            f"{c['artifact']} vs {c['against']}: {c['engine']} {c['precision']} {c['component']} "
            f"b{c['batch']}: {c['speedup']:.3f}x"
        )
    for k, why in result.skipped.items():
        click.echo(f"skipped {k}: {why}")
    from vaegan.core.io import write_bytes, write_json

    if json_out:
        write_json(json_out, result.to_dict())
    if md_out:
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
        fail(report.error)
    click.echo(json.dumps(report.to_dict(), indent=2) if as_json else format_report(report))
    if not report.ok:
        sys.exit(1)


@cli.command()
@click.argument("path", type=click.Path(path_type=Path))
@click.option(
    "--out",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Where to write the page (default: PATH/report.html).",
)
def report(path: Path, out: Path | None) -> None:
    """One self-contained HTML page of a run dir or an artifact dir.

    \b
    A run: losses by stage, the discriminator on real and generated images (alive or not), images/s,
    the sample and reconstruction grids over time, and `vaegan eval`'s figures if it was run.
    An artifact dir: the manifest's tables and the same latents through each precision.
    Images are embedded; the page needs no network to open. `vaegan train` writes one for every run.
    """
    from vaegan.report import write_report

    click.echo(f"-> {write_report(path, out)}")
