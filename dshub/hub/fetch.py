"""One file of a download put in place: under its blob lock, resumed from its partial file, verified against the hub's
digest, then moved to its final name (atomic rename, fsynced). The same function runs in a thread of `dshub download`
and in a Ray task of `dshub download --executor ray`; its outcome is plain data (`Fetched`), recorded by the caller.
"""
from __future__ import annotations

import contextlib
import fcntl
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator

from dshub.errors import DshubError, HashMismatch
from dshub.hub.hashing import git_blob_sha1, sha256_file
from dshub.hub.layout import Layout
from dshub.hub.manifest import RemoteFile
from dshub.hub.plan import FilePlan, FileState
from dshub.hub.redact import scrub
from dshub.hub.sources import Source
from dshub.hub.transfer import RetryPolicy, fetch_to_part
from dshub.hub.validate import printable

log = logging.getLogger("dshub.hub")


@dataclass
class Fetched:
    """What became of one file: its sha256 once in place, or the error (one line, scrubbed of tokens)."""

    path: str
    sha256: str | None = None
    refetched: bool = False  # a transfer's digest did not match and the file was fetched again
    transferred: int = 0  # bytes received (negative parts when a server restarted a resumed transfer)
    error: str | None = None
    expected: str | None = None
    actual: str | None = None


def expected_digest(f: RemoteFile) -> tuple[str, str] | None:
    """(algorithm, digest) the hub records for a file."""
    if f.sha256:
        return "sha256", f.sha256
    if f.blob_id:
        return "git-sha1", f.blob_id
    return None


def matches(f: RemoteFile, sha256: str, path: Path) -> bool:
    """True when the file's bytes (sha256 given, git sha1 computed when that is all the hub lists) are the hub's."""
    if f.sha256:
        return sha256 == f.sha256
    if f.blob_id:
        return git_blob_sha1(path) == f.blob_id
    return True


@dataclass(frozen=True)
class Origin:
    """Where a download's files come from: the source, the repository and its commit."""

    source: Source
    repo_id: str
    commit: str


def fetch_file(p: FilePlan, layout: Layout, origin: Origin, retry: RetryPolicy,
               on_bytes: Callable[[int], None]) -> Fetched:
    """Fetch one blob into place while holding its lock: another process fetching the same blob (another revision in
    the HF cache, another node) is waited for, and what it installed is checked and used, never appended to."""
    out = Fetched(p.file.path)

    def counted(n: int) -> None:
        out.transferred += n
        on_bytes(n)

    try:
        with blob_lock(layout.lock(p.file), p.file.path):
            out.sha256 = _installed_meanwhile(p, layout) or _fetch_locked(p, layout, origin, retry, counted, out)
    except HashMismatch as e:
        out.error, out.expected, out.actual = scrub(str(e)), e.expected, e.actual
    except DshubError as e:
        out.error = scrub(str(e))
    except OSError as e:  # local trouble with one file (permissions, a vanished directory): report, go on
        out.error = scrub(f"{p.file.path}: {e.strerror or e} ({e.filename or layout.part(p.file)})")
    return out


def _installed_meanwhile(p: FilePlan, layout: Layout) -> str | None:
    """The sha256 when the blob is complete now (another process installed it while this one waited) and matches."""
    data, part = layout.data(p.file), layout.part(p.file)
    if not data.is_file() or data.stat().st_size != p.file.size or part.exists():
        return None
    sha = sha256_file(data)
    if not matches(p.file, sha, data):
        return None
    layout.prepare([p.file])  # links the snapshot path to the blob (HF cache); nothing in a local dir
    return sha


def _fetch_locked(p: FilePlan, layout: Layout, origin: Origin, retry: RetryPolicy, on_bytes: Callable[[int], None],
                  out: Fetched) -> str:
    f, src = p.file, origin.source
    data, part = layout.data(f), layout.part(f)
    if p.state == FileState.PARTIAL and p.have and not part.exists() and data.is_file():
        part.parent.mkdir(parents=True, exist_ok=True)
        os.replace(data, part)  # a short file at the final name: resume from its bytes
    elif p.state == FileState.BAD and data.is_file():
        data.unlink()
    url = src.file_url(origin.repo_id, origin.commit, f.path)
    expected = expected_digest(f)
    for attempt in (1, 2):  # a digest mismatch earns one fresh transfer from byte 0
        with src.errors(origin.repo_id, origin.commit, f.path):
            sha256, git_sha1 = fetch_to_part(
                url, part, f.size, src.headers(), want_git_sha1=not f.sha256 and bool(f.blob_id),
                on_bytes=on_bytes, retry=retry, label=f.path,
            )
        actual = sha256 if f.sha256 else git_sha1
        if expected is None or actual == expected[1]:
            break
        part.unlink(missing_ok=True)
        if attempt == 2:
            raise HashMismatch(
                f"{expected[0]} {actual} does not match the hub's {expected[1]}; "
                "fetched twice, the source serves bad bytes",
                path=f.path, expected=expected[1], actual=str(actual),
            )
        out.refetched = True
    layout.install(f, part, origin.commit)
    return sha256


@contextlib.contextmanager
def blob_lock(lock_path: Path, label: str) -> Iterator[None]:
    """An advisory lock (fcntl.flock) on one blob's partial file. A holder in another process or thread is waited
    for, with one message naming it; the lock file is removed on release (and re-taken if it was replaced meanwhile)."""
    lock_path.parent.mkdir(parents=True, exist_ok=True)
    told = False
    while True:
        fh = open(lock_path, "a+")
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            if not told:
                fh.seek(0)
                log.warning("%s: waiting for another dshub download (pid %s) fetching the same bytes",
                            printable(label), fh.read().strip() or "?")
                told = True
            fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            same = os.fstat(fh.fileno()).st_ino == os.stat(lock_path).st_ino
        except FileNotFoundError:
            same = False
        if same:
            break
        fh.close()  # the holder removed the file we waited on: take the lock on the one that is there now
    try:
        fh.seek(0)
        fh.truncate()
        fh.write(str(os.getpid()))
        fh.flush()
        yield
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(lock_path)
        fcntl.flock(fh, fcntl.LOCK_UN)
        fh.close()
