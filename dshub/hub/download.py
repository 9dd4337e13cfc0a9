"""Download a checkpoint completely and verifiably: plan, check disk, fetch what is missing or bad, verify, record.

`hub_plan.plan_download` resolves the revision to a commit, lists files with sizes and digests and classifies each
local file; `run_download` hashes what is present but unverified, fetches the rest with byte-range resume in
parallel, and installs each file only after its digest matched. The download manifest (`.dshub/download.json`) is
written before any transfer, so `verify_hashes` works offline later.
"""
from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
import sys
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Iterator

from tqdm.auto import tqdm

from dshub.hub.manifest import RemoteFile, hash_cache_path, save_manifest, state_dir
from dshub.errors import DshubError, HashMismatch, OutputError
from dshub.hub.hashing import HashCache, git_blob_sha1, hash_many, sha256_file
from dshub.hub.redact import scrub
from dshub.hub.validate import printable
from dshub.hub.plan import (  # noqa: F401  (re-exported: the download API lives here)
    DownloadPlan, FilePlan, FileState, check_disk, classify, offline_plan, plan_download, reclassify, select,
)
from dshub.hub.sources import hf_offline, require_usable_hf_environment
from dshub.hub.transfer import RetryPolicy, fetch_to_part, read_timeout
from dshub.arch import spec_for
from dshub.checkpoint.reader import load_config
from dshub.errors import UnsupportedArchitecture
from dshub.checks import verify as verify_structure

DEFAULT_WORKERS = 8
log = logging.getLogger("dshub.hub")


@dataclass
class FileFailure:
    path: str
    message: str
    expected: str | None = None
    actual: str | None = None


@dataclass
class DownloadResult:
    plan: DownloadPlan
    fetched: list[str] = field(default_factory=list)
    verified: list[str] = field(default_factory=list)
    refetched_bad: list[str] = field(default_factory=list)
    failures: list[FileFailure] = field(default_factory=list)
    bytes_transferred: int = 0
    offline: bool = False
    checks: list[dict[str, Any]] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.failures and not any(c.get("severity") == "error" for c in self.checks)

    def to_dict(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "plan": self.plan.to_dict(),
            "fetched": sorted(self.fetched),
            "verified": sorted(self.verified),
            "refetched_bad": sorted(self.refetched_bad),
            "failures": [f.__dict__ for f in self.failures],
            "bytes_transferred": self.bytes_transferred,
            "offline": self.offline,
            "checks": self.checks,
        }


# ------------------------------------------------------------------------------------------------------ running
class _Bar:
    """A thread-safe aggregated progress bar on stderr (bytes, rate, ETA, files done); quiet when not a TTY."""

    def __init__(self, desc: str, total: int, files: int, enabled: bool):
        self._lock = threading.Lock()
        self._files, self._done = files, 0
        self.bar = tqdm(
            total=total, desc=desc, unit="B", unit_scale=True, unit_divisor=1024, file=sys.stderr,
            disable=None if enabled else True, dynamic_ncols=True, leave=False,
        )
        self._postfix()

    def _postfix(self) -> None:
        self.bar.set_postfix_str(f"{self._done}/{self._files} files", refresh=False)

    def update(self, n: int) -> None:
        with self._lock:
            self.bar.update(n)

    def file_done(self) -> None:
        with self._lock:
            self._done += 1
            self._postfix()

    def close(self) -> None:
        self.bar.close()


def _expected(f: RemoteFile) -> tuple[str, str] | None:
    """(algorithm, digest) the hub records for a file."""
    if f.sha256:
        return "sha256", f.sha256
    if f.blob_id:
        return "git-sha1", f.blob_id
    return None


class _Runner:
    """Executes a plan: per-file tasks on a thread pool, shared hash cache and progress."""

    def __init__(self, plan: DownloadPlan, *, workers: int, progress: bool, verify: bool, retry: RetryPolicy):
        self.plan, self.workers, self.progress, self.verify, self.retry = plan, workers, progress, verify, retry
        self.cache = HashCache(plan.root, hash_cache_path(plan.root))
        self.result = DownloadResult(plan)
        self._lock = threading.Lock()

    # -- phase 1: hash files that are present but unverified
    def hash_present(self) -> None:
        present = [p for p in self.plan.files if p.state == FileState.PRESENT]
        if not present:
            return
        if not self.verify:
            for p in present:
                p.state = FileState.VERIFIED
            return
        bar = _Bar("verify", sum(p.file.size for p in present), len(present), self.progress)
        by_path = {p.file.path: p for p in present}
        try:
            digests = hash_many(by_path, self.cache, workers=self.workers, progress=bar.update)
        finally:
            bar.close()
        for rel, digest in digests.items():
            p = by_path[rel]
            if isinstance(digest, OSError):
                p.state = FileState.BAD
            elif self._matches(p.file, digest, self.plan.layout.data(p.file)):
                p.state = FileState.VERIFIED
            else:
                p.state = FileState.BAD
                self.cache.forget(rel)
                self.result.refetched_bad.append(rel)

    @staticmethod
    def _matches(f: RemoteFile, sha256: str, path: Path) -> bool:
        if f.sha256:
            return sha256 == f.sha256
        if f.blob_id:
            return git_blob_sha1(path) == f.blob_id
        return True

    # -- phase 2: fetch what is missing, partial or bad
    def fetch_all(self) -> None:
        todo = [p for p in self.plan.files if p.state not in (FileState.VERIFIED, FileState.PRESENT)]
        if not todo:
            return
        # files with the same bytes share one blob in the HF cache: transfer each blob once
        by_data: dict[Path, list[FilePlan]] = {}
        for p in todo:
            by_data.setdefault(self.plan.layout.data(p.file), []).append(p)
        firsts = sorted((group[0] for group in by_data.values()), key=lambda p: -p.remaining)
        bar = _Bar("download", sum(p.remaining for p in firsts), len(todo), self.progress)
        try:
            with ThreadPoolExecutor(max_workers=self.workers, thread_name_prefix="dshub-dl") as pool:
                for _ in pool.map(lambda p: self._fetch_one(p, bar), firsts):
                    pass
        finally:
            bar.close()
        failed = {f.path for f in self.result.failures}
        for group in by_data.values():
            for twin in group[1:]:
                if group[0].file.path in failed:
                    self._fail(twin.file.path, f"{twin.file.path}: not fetched, it shares its bytes with {group[0].file.path}")
                else:  # linked by layout.finish; a rerun hashes it once through its own path
                    self.result.fetched.append(twin.file.path)

    def _fetch_one(self, p: FilePlan, bar: _Bar) -> None:
        """Fetch one blob while holding its lock: another process fetching the same blob (another revision in the
        HF cache) is waited for, and what it installed is checked and used, never appended to."""
        try:
            with blob_lock(self.plan.layout.lock(p.file), p.file.path):
                if self._installed_meanwhile(p):
                    bar.file_done()
                    return
                self._fetch_locked(p, bar)
        except DshubError as e:
            self._fail(p.file.path, str(e))
        except OSError as e:
            self._fail(p.file.path, f"{p.file.path}: {e.strerror or e} ({e.filename})")

    def _installed_meanwhile(self, p: FilePlan) -> bool:
        """True when the blob is complete now (another process installed it while this one waited) and matches."""
        data, part = self.plan.layout.data(p.file), self.plan.layout.part(p.file)
        if not data.is_file() or data.stat().st_size != p.file.size or part.exists():
            return False
        sha = sha256_file(data)
        if not self._matches(p.file, sha, data):
            return False
        self.plan.layout.prepare([p.file])  # links the snapshot path to the blob (HF cache); nothing in a local dir
        self.cache.put(p.file.path, sha)
        with self._lock:
            self.result.fetched.append(p.file.path)
        return True

    def _fetch_locked(self, p: FilePlan, bar: _Bar) -> None:
        f, layout, src = p.file, self.plan.layout, self.plan.source
        data, part = layout.data(f), layout.part(f)
        if p.state == FileState.PARTIAL and p.have and not part.exists() and data.is_file():
            part.parent.mkdir(parents=True, exist_ok=True)
            os.replace(data, part)  # a short file at the final name: resume from its bytes
        elif p.state == FileState.BAD and data.is_file():
            data.unlink()
            self.cache.forget(f.path)

        def on_bytes(n: int) -> None:
            bar.update(n)
            with self._lock:
                self.result.bytes_transferred += n

        url = src.file_url(self.plan.manifest.repo_id, self.plan.manifest.commit, f.path)
        expected = _expected(f)
        try:
            for attempt in (1, 2):  # a digest mismatch earns one fresh transfer from byte 0
                with src.errors(self.plan.manifest.repo_id, self.plan.manifest.commit, f.path):
                    sha256, git_sha1 = fetch_to_part(
                        url, part, f.size, src.headers(), want_git_sha1=not f.sha256 and bool(f.blob_id),
                        on_bytes=on_bytes, retry=self.retry, label=f.path,
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
                with self._lock:
                    self.result.refetched_bad.append(f.path)
            layout.install(f, part, self.plan.manifest.commit)
            self.cache.put(f.path, sha256)
            with self._lock:
                self.result.fetched.append(f.path)
            bar.file_done()
        except HashMismatch as e:
            self._fail(f.path, str(e), e.expected, e.actual)
        except DshubError as e:
            self._fail(f.path, str(e))
        except OSError as e:  # local trouble with one file (permissions, a vanished directory): report, go on
            self._fail(f.path, f"{f.path}: {e.strerror or e} ({e.filename or part})")

    def _fail(self, path: str, message: str, expected: str | None = None, actual: str | None = None) -> None:
        with self._lock:
            self.result.failures.append(FileFailure(path, scrub(message), expected, actual))


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


WEIGHT_INDEXES = ("model.safetensors.index.json", "model.safetensors")


def structural_checks(plan: DownloadPlan) -> list[dict[str, Any]]:
    """`dshub verify`'s structural checks on a downloaded checkpoint, when the download holds one whole.

    Skipped (with a note) for partial downloads (--include/--exclude leaving weights out) and for architectures
    dshub has no spec for: the hash check already covered every byte.
    """
    listed = plan.manifest.files
    if "config.json" not in listed or not any(n in listed for n in WEIGHT_INDEXES):
        return []
    root = plan.root
    index = root / WEIGHT_INDEXES[0]
    if index.is_file():
        try:
            shards = set(json.loads(index.read_text()).get("weight_map", {}).values())
        except (OSError, ValueError, AttributeError):
            shards = set()
        if not shards <= set(listed):
            return [{"check": "structure", "severity": "note", "file": None, "tensor": None,
                     "message": "structural checks skipped: the selected files do not hold every shard of the index"}]
    try:
        spec_for(load_config(root))
    except (UnsupportedArchitecture, OSError, ValueError) as e:
        return [{"check": "structure", "severity": "note", "file": "config.json", "tensor": None,
                 "message": f"structural checks skipped: {e}"}]
    report = verify_structure(root)
    return [dict(f.to_dict(), message=str(f)) for f in report.findings]


def run_download(
    plan: DownloadPlan,
    *,
    workers: int = DEFAULT_WORKERS,
    verify: bool = True,
    progress: bool = True,
    retry: RetryPolicy | None = None,
) -> DownloadResult:
    """Execute a plan. Per-file failures are collected in the result; fatal errors (disk, hub) raise."""
    retry = retry or RetryPolicy.from_env()  # a bad setting is refused before anything is written
    read_timeout()  # HF_HUB_DOWNLOAD_TIMEOUT too
    plan.layout.prepare(list(plan.manifest.files.values()))
    with exclusive(plan.root):
        reclassify(plan)  # another run may have finished files since the plan was made
        return _run_locked(plan, workers=workers, verify=verify, progress=progress, retry=retry)


@contextlib.contextmanager
def exclusive(root: Path) -> Iterator[None]:
    """One dshub download per directory at a time (an advisory lock in its state dir), or a clear refusal."""
    lock_path = state_dir(root) / "lock"
    lock_path.parent.mkdir(parents=True, exist_ok=True)
    with open(lock_path, "a+") as fh:
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            fh.seek(0)
            holder = fh.read().strip() or "?"
            raise OutputError(
                f"another dshub download (pid {holder}) is writing here; wait for it or stop it", path=str(root),
            ) from None
        fh.seek(0)
        fh.truncate()
        fh.write(str(os.getpid()))
        fh.flush()
        try:
            yield
        finally:
            fh.seek(0)
            fh.truncate()
            fcntl.flock(fh, fcntl.LOCK_UN)


def _run_locked(plan: DownloadPlan, *, workers: int, verify: bool, progress: bool, retry: RetryPolicy) -> DownloadResult:
    save_manifest(plan.root, plan.manifest)
    runner = _Runner(plan, workers=workers, progress=progress, verify=verify, retry=retry)
    try:
        runner.hash_present()
        runner.result.verified = [p.file.path for p in plan.files if p.state == FileState.VERIFIED]
        if plan.source is None:  # offline: report what would need fetching
            for p in plan.files:
                if p.state not in (FileState.VERIFIED, FileState.PRESENT):
                    runner._fail(p.file.path, f"{p.file.path}: {p.state.value} and HF_HUB_OFFLINE is set; run again online")
            runner.result.offline = True
        else:
            check_disk(plan)
            runner.fetch_all()
            plan.layout.finish(plan.manifest.revision, plan.manifest.commit, list(plan.manifest.files.values()),
                               complete=not runner.result.failures)
        if verify and not runner.result.failures:
            runner.result.checks = structural_checks(plan)
    finally:
        runner.cache.save()
    runner.result.failures.sort(key=lambda x: x.path)
    return runner.result


def download(
    repo_id: str,
    *,
    revision: str | None = None,
    local_dir: str | os.PathLike | None = None,
    include: Iterable[str] = (),
    exclude: Iterable[str] = (),
    source: str = "hf",
    workers: int = DEFAULT_WORKERS,
    dry_run: bool = False,
    verify: bool = True,
    progress: bool = True,
    endpoint: str | None = None,
    token: str | None = None,
) -> DownloadResult | DownloadPlan:
    """`dshub download` as a function: the plan when `dry_run`, else the result of running it."""
    require_usable_hf_environment()
    if source == "hf" and hf_offline():
        plan = offline_plan(repo_id, revision=revision, local_dir=local_dir)
        return plan if dry_run else run_download(plan, workers=workers, verify=verify, progress=progress)
    plan = plan_download(
        repo_id, revision=revision, local_dir=local_dir, include=include, exclude=exclude, source=source,
        endpoint=endpoint, token=token,
    )
    check_disk(plan)
    if dry_run:
        return plan
    return run_download(plan, workers=workers, verify=verify, progress=progress)
