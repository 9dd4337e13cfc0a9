"""Atomic file writes: temp name in the same directory, fsync, rename, fsync the directory; and the writer that hashes
what it writes on a second thread."""
from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import os
import queue
import shutil
import threading
from pathlib import Path
from typing import IO, Any, Iterator

from dshub.constants import TMP_SUFFIX
from dshub.errors import DiskSpaceError, OutputError

# A full disk, an exhausted quota, or a file-size limit: all mean "no room to write".
DISK_FULL_ERRNOS = (errno.ENOSPC, errno.EDQUOT, errno.EFBIG)


def tmp_name(path: Path) -> Path:
    return path.with_name(path.name + TMP_SUFFIX)


def fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


@contextlib.contextmanager
def atomic_open(path: str | os.PathLike, mode: str = "wb") -> Iterator[IO[Any]]:
    """Write `path` under a temporary name; rename only when the block finished without error."""
    path = Path(path)
    tmp = tmp_name(path)
    try:
        with open(tmp, mode) as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
        fsync_dir(path.parent)
    except OSError as e:
        tmp.unlink(missing_ok=True)
        if e.errno in DISK_FULL_ERRNOS:
            raise OutputError("disk full while writing; temporary file removed. Free space and run again", path=str(path)) from None
        raise
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


class HashedWriter:
    """Writes bytes to a file while a second thread computes their sha256, so hashing overlaps the writes instead of
    adding to them (file writes and `hashlib.update` on large buffers both release the GIL).

    The hash thread lags the writes by at most `depth` slices of `SLICE` bytes, which it keeps alive; a buffer given
    to `write` must not change afterwards.
    """

    SLICE = 8 << 20

    def __init__(self, f: IO[Any], depth: int = 4):
        self.f, self.size = f, 0
        self._sha = hashlib.sha256()
        self._queue: queue.Queue[memoryview | None] = queue.Queue(depth)
        self._thread = threading.Thread(target=self._run, name="sha256", daemon=True)
        self._thread.start()
        self._open = True

    def _run(self) -> None:
        while (part := self._queue.get()) is not None:
            self._sha.update(part)

    def write(self, data: Any) -> int:
        mv = memoryview(data).cast("B")
        for i in range(0, len(mv), self.SLICE):
            part = mv[i:i + self.SLICE]
            self.f.write(part)
            self._queue.put(part)
        self.size += len(mv)
        return len(mv)

    def close(self) -> None:
        """Stop the hash thread once it has hashed everything written (idempotent)."""
        if self._open:
            self._open = False
            self._queue.put(None)
            self._thread.join()

    def hexdigest(self) -> str:
        self.close()
        return self._sha.hexdigest()


@contextlib.contextmanager
def hashed_atomic_open(path: str | os.PathLike) -> Iterator[HashedWriter]:
    """`atomic_open` for binary output through a HashedWriter; read `.hexdigest()` after the block."""
    with atomic_open(path) as f:
        w = HashedWriter(f)
        try:
            yield w
        finally:
            w.close()


def write_json_atomic(path: str | os.PathLike, doc: Any) -> None:
    with atomic_open(path, "w") as f:
        json.dump(doc, f, indent=2, sort_keys=True)
        f.write("\n")


def copy_atomic(src: Path, dst: Path) -> None:
    with open(src, "rb") as fi, atomic_open(dst) as fo:
        shutil.copyfileobj(fi, fo, 8 << 20)


def free_space(directory: Path) -> int:
    """Free bytes on the file system that holds `directory` (or its nearest existing parent)."""
    probe = directory
    while not probe.exists():
        probe = probe.parent
    return shutil.disk_usage(probe).free


DISK_MARGIN = 1.02  # free space asked for beyond the planned bytes (filesystem overhead)


def check_free_space(directory: Path, needed: int, *, margin: float = DISK_MARGIN) -> None:
    """Raise DiskSpaceError when `directory` (or its nearest existing parent) has less than `needed` bytes free."""
    free = free_space(directory)
    if free < needed * margin:
        raise DiskSpaceError(
            f"{needed / 1e9:.2f} GB needed, {free / 1e9:.2f} GB free. Free space or choose another --out",
            path=str(directory), needed=needed, free=free,
        )


def remove_stale_temps(directory: Path) -> int:
    """Delete temp files a killed run left behind. Returns how many."""
    n = 0
    if directory.is_dir():
        for p in directory.glob(f"*{TMP_SUFFIX}"):
            p.unlink(missing_ok=True)
            n += 1
    return n
