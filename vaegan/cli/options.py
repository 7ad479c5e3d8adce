"""Option builders shared by the commands: options generated from the config dataclasses (their
defaults and help written once, there), comma lists, durations, and the engine choices."""

from __future__ import annotations

import dataclasses
import typing
from pathlib import Path
from typing import Any

import click

from vaegan.core.manifest import PRECISIONS
from vaegan.runtime.backends import REGISTRY as _BACKENDS

BACKEND_NAMES = tuple(_BACKENDS)


def csv_list(kind):
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
    hints = typing.get_type_hints(cls)
    decorators = []
    for name in names.split():
        # int | None -> int; bool fields are flags and take no type
        kinds = [t for t in typing.get_args(hints[name]) or (hints[name],) if t is not type(None)]
        kind = None if kinds == [bool] else kinds[0] if kinds[0] in (int, float) else str
        flag = renamed.get(name) or "--" + name.removesuffix("_s").replace("_", "-")
        decorators.append(option_from(cls, name, flag, **({"type": kind} if kind else {})))

    def apply(f: Any) -> Any:
        for d in reversed(decorators):
            f = d(f)
        return f

    return apply


def dir_option(flag: str, help: str, default: Path | None = None):
    return click.option(
        flag,
        type=click.Path(file_okay=False, path_type=Path),
        default=default,
        show_default=default is not None,
        help=help,
    )


# Options --resume may change; the others belong to the run and are refused next to --resume.
def duration(ctx, param, value):
    """--time 15m / 900s / 1h / 1h30m -> seconds."""
    if value is None:
        return 0.0
    from vaegan.trainer.recipe import parse_duration

    try:
        return parse_duration(value)  # 0: no time budget, steps decide
    except ValueError as e:
        raise click.BadParameter(str(e)) from None


backend_option = click.option(
    "--backend",
    type=click.Choice(["auto", *BACKEND_NAMES]),
    default="auto",
    show_default=True,
    help="Engine; auto picks the best usable one and says why.",
)
precision_option = click.option(
    "--precision",
    type=click.Choice(PRECISIONS),
    default="fp32",
    show_default=True,
    help="Which exported precision to run.",
)
device_option = click.option(
    "--device", default=None, help="Engine device (ort: cpu/cuda/tensorrt; openvino: CPU/GPU/NPU)."
)


def output_file(flag: str, name: str, help: str):
    return click.option(flag, name, type=click.Path(dir_okay=False, path_type=Path), default=None, help=help)
