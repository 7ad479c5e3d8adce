"""An artifact dir, replaced as a whole when an export succeeds, without losing what is not vaegan's.

An export is written into a temp dir beside --out and swapped into place with two renames, so a
reader sees the old export or the new one, never a mix. What the old dir holds that no vaegan export
wrote (the user's notes, engines they built by hand, any folder) is hard-linked into the new dir
before the swap: a kill at any moment leaves every user file where it was, in the old dir or the new.

Siblings vaegan makes are named `.NAME.vaegan-tmp-PID-XXXX` and `.NAME.vaegan-old-PID-XXXX`; a later
export removes one only when the process that made it is gone. Nothing else beside --out is touched.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import secrets
import shutil
from collections.abc import Iterable
from pathlib import Path

from vaegan.core.errors import ArtifactError, ExportError
from vaegan.core.io import DIR_MODE
from vaegan.core.manifest import MANIFEST, Manifest

log = logging.getLogger(__name__)


def resolve_out(out: str | Path) -> Path:
    """--out as the real directory it names: a symbolic link is followed (the dir it points to is
    replaced and the link stays), `.` is the working directory. Refused: NUL bytes, the root."""
    try:
        path = Path(out).expanduser().resolve()
    except (ValueError, OSError, RuntimeError) as e:  # NUL byte, a symlink loop
        raise ExportError(f"--out {str(out)!r} is not a usable path ({e})") from None
    if path.parent == path:
        raise ExportError(f"--out {out} is the root of the file system: choose a directory for the artifacts")
    return path


def check_out_dir(out: Path, data_key: str, force: bool) -> Manifest | None:
    """--out may be new, empty, or an earlier vaegan export (of another model only with --force).
    Returns the earlier export's manifest, if there is one."""
    if not out.exists():
        return None
    if not out.is_dir():
        raise ExportError(f"{out} exists and is not a directory: choose another --out")
    if not any(out.iterdir()):
        return None
    if _holds_cwd(out):
        raise ExportError(
            f"--out {out} holds the current directory: a re-export swaps the whole dir, which would leave "
            f"your shell in the retired copy; run it from outside: cd {out.parent} && vaegan export RUN --out {out.name}"
        )
    try:
        old = Manifest.load(out)
    except ArtifactError:
        raise ExportError(
            f"{out} is not empty and is not a vaegan artifact dir (no valid {MANIFEST}): choose another --out; "
            "--force replaces only an earlier vaegan export and never deletes anything else"
        ) from None
    if old.run.get("data_key") != data_key and not force:
        raise ExportError(
            f"{out} holds artifacts of another model (data key {old.run.get('data_key')}): choose another --out "
            "or pass --force to replace them"
        )
    return old


def written_by(manifest: Manifest) -> set[str]:
    """The files (relative paths) an export wrote: its own list, or for manifests written before
    vaegan kept one, the artifacts, their weights, the manifest and the Triton repository."""
    out = {MANIFEST, *manifest.files}
    for a in manifest.artifacts:  # engines built after the export are listed here only
        out.add(a.path)
        if isinstance(a.notes.get("weights"), str):
            out.add(a.notes["weights"])
    if not manifest.files:
        out.add("triton/")  # a prefix: every file under it
    return out


def _owned(rel: str, owned: set[str]) -> bool:
    return rel in owned or any(o.endswith("/") and rel.startswith(o) for o in owned)


def list_files(root: Path) -> list[str]:
    """Every entry under root that is not a directory, as relative POSIX paths (links not followed)."""
    out = []
    for dirpath, dirnames, filenames in os.walk(root):
        for name in filenames + [d for d in dirnames if os.path.islink(os.path.join(dirpath, d))]:
            out.append(Path(dirpath, name).relative_to(root).as_posix())
    return sorted(out)


class Staging:
    """A temp dir beside `out` for one export; `commit()` swaps it into place."""

    def __init__(self, out: Path):
        self.out = out
        remove_stale_siblings(out)
        try:
            out.parent.mkdir(parents=True, exist_ok=True)
            self.path = _sibling(out, "tmp")
            self.path.mkdir(mode=0o700)
            self.path.chmod(DIR_MODE)  # the artifact dir is for every user of the device
        except OSError as e:
            raise ExportError(f"cannot write to {out.parent} ({e.strerror}): choose a writable --out") from e

    def commit(self, old: Manifest | None) -> list[str]:
        """Put the staged export in place. Entries of the old dir that neither the old export nor
        this one wrote are kept (hard links, or copies across file systems); returns them."""
        kept: list[str] = []
        if self.out.exists() and _holds_cwd(
            self.out
        ):  # empty (check_out_dir): filled in place, manifest last
            names = sorted(os.listdir(self.path), key=lambda n: n == MANIFEST)
            for name in names:
                os.rename(self.path / name, self.out / name)
            self.path.rmdir()
        elif self.out.exists():
            owned = set(list_files(self.path)) | (written_by(old) if old is not None else set())
            kept = [rel for rel in list_files(self.out) if not _owned(rel, owned)]
            for rel in kept:
                _link(self.out / rel, self.path / rel)
            for rel in _empty_dirs(self.out):
                if not _owned(rel + "/", owned):
                    (self.path / rel).mkdir(parents=True, exist_ok=True)
            retired = _sibling(self.out, "old")
            self.out.rename(retired)
            try:
                self.path.rename(self.out)
            except OSError:
                retired.rename(self.out)
                raise
            shutil.rmtree(retired, ignore_errors=True)
        else:
            self.path.rename(self.out)
        return kept

    def discard(self) -> None:
        shutil.rmtree(self.path, ignore_errors=True)


def _holds_cwd(out: Path) -> bool:
    """Whether out is the working directory or one of its parents: swapping it away would leave the
    caller's shell in a retired directory."""
    try:
        return Path.cwd().resolve().is_relative_to(out)
    except OSError:  # the working directory was removed
        return False


def _sibling(out: Path, kind: str) -> Path:
    return out.with_name(f".{out.name}.vaegan-{kind}-{os.getpid()}-{secrets.token_hex(4)}")


def remove_stale_siblings(out: Path) -> list[Path]:
    """Remove the temp and retired dirs of earlier exports to `out` whose process is gone (a kill
    mid-export). Anything else beside `out`, whatever its name, is left alone."""
    pattern = re.compile(rf"^\.{re.escape(out.name)}\.vaegan-(tmp|old)-(\d+)-[0-9a-f]+$")
    removed = []
    with contextlib.suppress(OSError):
        for p in out.parent.iterdir():
            m = pattern.match(p.name)
            if m and p.is_dir() and not p.is_symlink() and not _alive(int(m.group(2))):
                shutil.rmtree(p, ignore_errors=True)
                removed.append(p)
    return removed


def _alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's live process
        return True
    return True


def _link(src: Path, dst: Path) -> None:
    dst.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.link(src, dst, follow_symlinks=False)
    except OSError:  # another file system, or one without hard links
        if src.is_symlink():
            os.symlink(os.readlink(src), dst)
        else:
            shutil.copy2(src, dst)


def _empty_dirs(root: Path) -> Iterable[str]:
    for dirpath, dirnames, filenames in os.walk(root):
        if not dirnames and not filenames and Path(dirpath) != root:
            yield Path(dirpath).relative_to(root).as_posix()


def describe_kept(out: Path, kept: list[str]) -> str:
    """The one line an export says about the files it left in place."""
    shown = ", ".join(kept[:5]) + (f" and {len(kept) - 5} more" if len(kept) > 5 else "")
    return f"kept {len(kept)} file(s) in {out} that vaegan did not write: {shown}"
