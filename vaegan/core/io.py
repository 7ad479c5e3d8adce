"""Atomic file writes: write beside the target, fsync, rename. A reader never sees half a file."""

from __future__ import annotations

import contextlib
import json
import os
import re
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any


def _file_mode() -> int:
    """The mode open() would give a new file here (0o666 less the umask); mkstemp's is 0o600."""
    umask = os.umask(0)
    os.umask(umask)
    return 0o666 & ~umask


FILE_MODE = _file_mode()  # read once, at import: os.umask cannot be read without setting it
DIR_MODE = FILE_MODE | ((FILE_MODE & 0o444) >> 2)  # the same, searchable: 0o755 under umask 022


@contextlib.contextmanager
def atomic_write(path: str | Path, mode: str = "wb") -> Iterator[IO[Any]]:
    """Yield a file object; on success it replaces `path` in one rename, on error nothing changes."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, mode) as f:
            yield f
            f.flush()
            os.fchmod(f.fileno(), FILE_MODE)  # readable like any file the user writes, not 0600
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


_TEMP = re.compile(r"^\..+\.[a-z0-9_]{8}\.tmp$")  # what atomic_write's mkstemp names: .NAME.XXXXXXXX.tmp


def is_temp(name: str) -> bool:
    """Whether a file name is one of atomic_write's temp files."""
    return bool(_TEMP.match(name))


def remove_stale_temps(directory: str | Path) -> list[Path]:
    """Delete the temp files atomic_write leaves when its process is killed mid-write
    (.NAME.XXXXXXXX.tmp); call it where one writer owns the directory (a run dir at training start).
    Returns what was removed."""
    removed = []
    for p in Path(directory).glob(".*.tmp"):
        if is_temp(p.name) and p.is_file():
            with contextlib.suppress(FileNotFoundError):
                p.unlink()
                removed.append(p)
    return removed


def write_bytes(path: str | Path, data: bytes) -> None:
    with atomic_write(path, "wb") as f:
        f.write(data)


def write_json(path: str | Path, obj: Any) -> None:
    with atomic_write(path, "w") as f:
        json.dump(obj, f, indent=2, sort_keys=False)
        f.write("\n")


def append_line(path: str | Path, line: str) -> None:
    """Append one line (metrics.jsonl). A crash can leave at most a torn last line, which readers skip."""
    with open(path, "a") as f:
        f.write(line.rstrip("\n") + "\n")
        f.flush()


def read_jsonl(path: str | Path) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    p = Path(path)
    if not p.exists():
        return rows
    for line in p.read_text().splitlines():
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError:
            continue  # a torn last line after a kill
    return rows
