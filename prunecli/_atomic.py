"""Atomic writes: a reader (or a run killed half-way) sees the old file or directory or the new one, never a mix."""

from __future__ import annotations

import contextlib
import errno
import json
import os
import shutil
import signal
import stat
import tempfile
import threading
from pathlib import Path
from typing import Any, Callable, Iterator


def fsync_dir(path: Path) -> None:
    """Make a rename inside ``path`` durable."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_bytes(path: Path, data: bytes) -> None:
    """Write ``data`` to a temp file beside ``path``, fsync it, rename it over ``path`` (see :func:`staged`)."""
    with staged(path) as (tmp,):
        tmp.write_bytes(data)


def json_bytes(obj: Any) -> bytes:
    """``obj`` as indented JSON, as :func:`write_json` writes it."""
    return (json.dumps(obj, indent=2, sort_keys=False) + "\n").encode()


def write_json(path: Path, obj: Any) -> None:
    """Atomically write ``obj`` as indented JSON."""
    write_bytes(path, json_bytes(obj))


_KINDS = {stat.S_IFDIR: "directory", stat.S_IFCHR: "character device", stat.S_IFBLK: "block device",
          stat.S_IFIFO: "fifo", stat.S_IFSOCK: "socket"}


def file_kind(path: Path) -> str | None:
    """What exists at ``path`` if it is not a regular file (``"directory"``, ``"fifo"`` ...); None otherwise."""
    try:
        mode = os.stat(path).st_mode
    except OSError:
        return None
    return None if stat.S_ISREG(mode) else _KINDS.get(stat.S_IFMT(mode), "special file")


@contextlib.contextmanager
def staged(*paths: Path) -> Iterator[tuple[Path, ...]]:
    """Temp paths beside ``paths`` to write in the block; on leaving it cleanly, each is fsynced and renamed
    over its path. On any error (in the block, fsync, rename) the temps are removed and the paths untouched.

    A path where something other than a regular file exists is refused (``OSError``, nothing renamed): a
    rename would replace a device, fifo or socket with a file. An ``OSError`` about a temp names its path.
    """
    paths = tuple(Path(p) for p in paths)
    temps: tuple[Path, ...] = ()
    try:
        temps = tuple(_fresh_temp(p) for p in paths)
        yield temps
        for tmp in temps:
            with open(tmp, "rb") as f:
                os.fsync(f.fileno())
        for path in paths:
            if kind := file_kind(path):
                raise OSError(errno.EEXIST, f"a {kind} is there, not a regular file", str(path))
        with deferred_sigint():
            for tmp, path in zip(temps, paths):
                os.replace(tmp, path)
        for parent in dict.fromkeys(p.parent for p in paths):
            fsync_dir(parent)
    except OSError as err:
        if err.filename is not None and Path(err.filename) in temps:   # name the user's path, not our temp
            raise OSError(err.errno, err.strerror, str(paths[temps.index(Path(err.filename))])) from err
        raise
    finally:
        for tmp in temps:
            with contextlib.suppress(OSError):
                tmp.unlink()


def _fresh_temp(path: Path) -> Path:
    """A new, empty temp file beside ``path`` under a random name (created exclusively: nothing placed there
    beforehand, such as a link, is followed, and two writers of one path never share a temp)."""
    fd, name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    return Path(name)


def replace_dir(path: Path, fill: Callable[[Path], None]) -> None:
    """Build a directory with ``fill(tmp_dir)`` and swap it in for ``path``.

    POSIX cannot rename a directory over a non-empty one, so the old one moves to ``<path>.old`` for the
    instant between the two renames; :func:`recover_dir` finds it if a crash lands exactly there.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp, old = path.with_name(path.name + ".tmp"), path.with_name(path.name + ".old")
    if tmp.exists():
        shutil.rmtree(tmp)
    if old.exists() and path.exists():
        shutil.rmtree(old)
    tmp.mkdir()
    try:
        fill(tmp)
        for f in tmp.iterdir():
            with open(f, "rb") as fh:
                os.fsync(fh.fileno())
        fsync_dir(tmp)
        with deferred_sigint():
            if path.exists():
                os.replace(path, old)
            os.replace(tmp, path)
            fsync_dir(path.parent)
    except BaseException:  # a full disk, Ctrl-C mid-fill: leave the old directory as it was, and no temp dir
        _undo_replace(path, tmp, old)
        raise
    if old.exists():
        shutil.rmtree(old)


def _undo_replace(path: Path, tmp: Path, old: Path) -> None:
    """After a failed :func:`replace_dir`: put ``<path>.old`` back if it had moved away, remove the temp dir."""
    if not path.exists() and old.is_dir():
        os.replace(old, path)
    shutil.rmtree(tmp, ignore_errors=True)


def recover_dir(path: Path) -> Path:
    """``path``, or its ``.old`` twin when a crash fell between the two renames of :func:`replace_dir`."""
    old = path.with_name(path.name + ".old")
    return old if not path.exists() and old.is_dir() else path


@contextlib.contextmanager
def deferred_sigint() -> Iterator[None]:
    """Hold Ctrl-C until the block is done (main thread only), so a save is never cut in half."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    caught: list[Any] = []
    previous = signal.signal(signal.SIGINT, lambda *args: caught.append(args))
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
        if caught and callable(previous):
            previous(*caught[0])
