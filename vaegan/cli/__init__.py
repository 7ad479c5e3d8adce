"""The `vaegan` command line: one module per group of commands (train, export, serve, inspect), the
group and its error rule in app, shared option builders in options. Heavy imports happen inside each
command, so `vaegan sample` and `vaegan serve` work where only the torch-free runtime is installed."""

from __future__ import annotations

import sys

import click

from vaegan.cli import export, inspect, serve, train  # noqa: F401 - each registers its commands
from vaegan.cli.app import cli, fail
from vaegan.core.errors import VaeganError

__all__ = ["cli", "main"]


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
        fail(f"{e.format_message()} (see `{cmd}`)")
    except VaeganError as e:
        fail(str(e))
    except KeyboardInterrupt:
        click.echo("vaegan: interrupted", err=True)
        sys.exit(130)
    except BrokenPipeError:
        sys.exit(0)
