"""Streaming file digests (sha256, git blob sha1), hashed in parallel, remembered by size + mtime."""
from __future__ import annotations

import hashlib
import json
import os
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable

from dshub.fsutil import write_json_atomic

CHUNK = 8 << 20  # bytes per read; hashlib releases the GIL on large updates, so threads scale across cores
HASH_CACHE_FORMAT = 1

ProgressFn = Callable[[int], None]


def sha256_file(path: str | os.PathLike, progress: ProgressFn | None = None) -> str:
    """sha256 hex digest of a file, read in CHUNK-sized pieces into one reused buffer."""
    h = hashlib.sha256()
    buf = bytearray(CHUNK)
    view = memoryview(buf)
    with open(path, "rb", buffering=0) as f:
        while n := f.readinto(buf):
            h.update(view[:n])
            if progress:
                progress(n)
    return h.hexdigest()


def git_blob_hasher(size: int) -> "hashlib._Hash":
    """A sha1 primed with git's blob header; fed a file's `size` bytes it gives git's object id for them."""
    return hashlib.sha1(b"blob %d\0" % size)


def git_blob_sha1(path: str | os.PathLike, progress: ProgressFn | None = None) -> str:
    """Git's object id for a file's bytes: sha1(b"blob <size>\\0" + content). The hub's `oid` for non-LFS files."""
    h = git_blob_hasher(os.stat(path).st_size)
    with open(path, "rb") as f:
        while chunk := f.read(CHUNK):
            h.update(chunk)
            if progress:
                progress(len(chunk))
    return h.hexdigest()


@dataclass(frozen=True)
class Stamp:
    """What identifies a file's content cheaply: size and mtime in nanoseconds."""

    size: int
    mtime_ns: int

    @classmethod
    def of(cls, path: str | os.PathLike) -> "Stamp":
        st = os.stat(path)
        return cls(st.st_size, st.st_mtime_ns)


class HashCache:
    """Remembered sha256 digests of files under one directory, valid while size and mtime are unchanged.

    Stored as JSON at `cache_path`; keys are paths relative to `root`. Thread-safe; `save()` writes atomically.
    """

    def __init__(self, root: Path, cache_path: Path):
        self.root = root
        self.cache_path = cache_path
        self._lock = threading.Lock()
        self._entries: dict[str, dict[str, int | str]] = {}
        self._dirty = False
        try:
            doc = json.loads(cache_path.read_text())
            if doc.get("format_version") == HASH_CACHE_FORMAT and isinstance(doc.get("files"), dict):
                self._entries = doc["files"]
        except (OSError, ValueError, AttributeError):
            pass  # no cache or an unreadable one: start empty, it is only an optimisation

    def get(self, rel: str) -> str | None:
        """The remembered sha256 of `rel`, or None when unknown or the file changed since."""
        try:
            stamp = Stamp.of(self.root / rel)
        except OSError:
            return None
        with self._lock:
            e = self._entries.get(rel)
        if e and e.get("size") == stamp.size and e.get("mtime_ns") == stamp.mtime_ns:
            return str(e["sha256"])
        return None

    def put(self, rel: str, sha256: str, stamp: Stamp | None = None) -> None:
        stamp = stamp or Stamp.of(self.root / rel)
        with self._lock:
            self._entries[rel] = {"size": stamp.size, "mtime_ns": stamp.mtime_ns, "sha256": sha256}
            self._dirty = True

    def forget(self, rel: str) -> None:
        with self._lock:
            self._dirty |= self._entries.pop(rel, None) is not None

    def save(self) -> None:
        with self._lock:
            if not self._dirty:
                return
            doc = {"format_version": HASH_CACHE_FORMAT, "files": dict(sorted(self._entries.items()))}
            self._dirty = False
        self.cache_path.parent.mkdir(parents=True, exist_ok=True)
        write_json_atomic(self.cache_path, doc)

    def sha256(self, rel: str, progress: ProgressFn | None = None, *, refresh: bool = False) -> str:
        """sha256 of `rel`, from the cache unless `refresh` or the file changed; a fresh digest is remembered."""
        if not refresh and (known := self.get(rel)) is not None:
            return known
        path = self.root / rel
        before = Stamp.of(path)
        digest = sha256_file(path, progress)
        if Stamp.of(path) == before:  # don't remember a digest of a file that changed while we read it
            self.put(rel, digest, before)
        return digest


def default_workers() -> int:
    """Hash workers: one per usable core."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not Linux
        return max(1, os.cpu_count() or 1)


def hash_many(
    rels: Iterable[str],
    cache: HashCache,
    *,
    workers: int | None = None,
    refresh: bool = False,
    progress: ProgressFn | None = None,
) -> dict[str, str | OSError]:
    """sha256 of many files in parallel (one file per worker). Unreadable files map to their OSError."""

    def one(rel: str) -> tuple[str, str | OSError]:
        try:
            return rel, cache.sha256(rel, progress, refresh=refresh)
        except OSError as e:
            return rel, e

    def size(rel: str) -> int:
        try:
            return os.stat(cache.root / rel).st_size
        except OSError:
            return 0

    rels = sorted(rels, key=size, reverse=True)  # largest first balances the workers
    with ThreadPoolExecutor(max_workers=workers or default_workers(), thread_name_prefix="dshub-hash") as pool:
        return dict(pool.map(one, rels))
