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
from typing import Any, Callable, Iterable, Iterator

from tqdm.auto import tqdm

from dshub import raycluster
from dshub.hub import ray_fetch
from dshub.hub.fetch import Fetched, Origin, fetch_file, matches
from dshub.hub.manifest import hash_cache_path, save_manifest, state_dir
from dshub.errors import OutputError
from dshub.hub.hashing import HashCache, hash_many
from dshub.hub.redact import scrub
from dshub.hub.plan import (  # noqa: F401  (re-exported: the download API lives here)
    DownloadPlan, FilePlan, FileState, check_disk, classify, offline_plan, plan_download, reclassify, select,
)
from dshub.hub.sources import hf_offline, require_usable_hf_environment
from dshub.hub.transfer import RetryPolicy, read_timeout
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


Fetch = Callable[["_Runner", list[FilePlan], _Bar], None]  # fetches the first file of each blob, records each


class _Runner:
    """Executes a plan: hash what is present, fetch the rest (`fetch`: threads here, or Ray tasks), record outcomes."""

    def __init__(self, plan: DownloadPlan, *, workers: int, progress: bool, verify: bool, retry: RetryPolicy,
                 fetch: Fetch | None = None):
        self.plan, self.workers, self.progress, self.verify, self.retry = plan, workers, progress, verify, retry
        self.fetch = fetch or fetch_in_threads
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
            elif matches(p.file, digest, self.plan.layout.data(p.file)):
                p.state = FileState.VERIFIED
            else:
                p.state = FileState.BAD
                self.cache.forget(rel)
                self.result.refetched_bad.append(rel)

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
            self.fetch(self, firsts, bar)
        finally:
            bar.close()
        failed = {f.path for f in self.result.failures}
        for group in by_data.values():
            for twin in group[1:]:
                if group[0].file.path in failed:
                    self._fail(twin.file.path, f"{twin.file.path}: not fetched, it shares its bytes with {group[0].file.path}")
                else:  # linked by layout.finish; a rerun hashes it once through its own path
                    self.result.fetched.append(twin.file.path)

    @property
    def origin(self) -> Origin:
        assert self.plan.source is not None
        return Origin(self.plan.source, self.plan.manifest.repo_id, self.plan.manifest.commit)

    def record(self, out: Fetched, bar: _Bar) -> None:
        """One file's outcome into the result, the hash cache and the progress."""
        with self._lock:
            self.result.bytes_transferred += out.transferred
            if out.refetched:
                self.result.refetched_bad.append(out.path)
            if out.error is not None:
                self.cache.forget(out.path)
                self.result.failures.append(FileFailure(out.path, out.error, out.expected, out.actual))
                return
            assert out.sha256 is not None
            self.cache.put(out.path, out.sha256)
            self.result.fetched.append(out.path)
        bar.file_done()

    def _fail(self, path: str, message: str, expected: str | None = None, actual: str | None = None) -> None:
        with self._lock:
            self.result.failures.append(FileFailure(path, scrub(message), expected, actual))


def fetch_in_threads(runner: _Runner, firsts: list[FilePlan], bar: _Bar) -> None:
    """The local executor: `--workers` threads in this process, bytes counted on the bar as they arrive."""
    origin = runner.origin

    def one(p: FilePlan) -> None:
        out = fetch_file(p, runner.plan.layout, origin, runner.retry, bar.update)
        runner.record(out, bar)

    with ThreadPoolExecutor(max_workers=runner.workers, thread_name_prefix="dshub-dl") as pool:
        for _ in pool.map(one, firsts):
            pass


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


def _local(address: str | None, plan: DownloadPlan) -> contextlib.AbstractContextManager[Fetch]:
    return contextlib.nullcontext(fetch_in_threads)


EXECUTORS: dict[str, Callable[[str | None, DownloadPlan], contextlib.AbstractContextManager[Fetch]]] = {
    "local": _local,  # --workers threads in this process
    "ray": ray_fetch.on_cluster,  # one Ray task per file on a cluster that mounts the target directory
}


def run_download(
    plan: DownloadPlan,
    *,
    workers: int = DEFAULT_WORKERS,
    verify: bool = True,
    progress: bool = True,
    retry: RetryPolicy | None = None,
    executor: str = "local",
    ray_address: str | None = None,
) -> DownloadResult:
    """Execute a plan. Per-file failures are collected in the result; fatal errors (disk, hub) raise. `executor`
    fetches the files: `local` (--workers threads) or `ray` (one task per file; see `dshub.hub.ray_fetch`)."""
    raycluster.check_executor(executor, EXECUTORS, ray_address)
    retry = retry or RetryPolicy.from_env()  # a bad setting is refused before anything is written
    read_timeout()  # HF_HUB_DOWNLOAD_TIMEOUT too
    plan.layout.prepare(list(plan.manifest.files.values()))
    with exclusive(plan.root), EXECUTORS[executor](ray_address, plan) as fetch:
        reclassify(plan)  # another run may have finished files since the plan was made
        return _run_locked(plan, workers=workers, verify=verify, progress=progress, retry=retry, fetch=fetch)


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


def _run_locked(plan: DownloadPlan, *, workers: int, verify: bool, progress: bool, retry: RetryPolicy,
                fetch: Fetch) -> DownloadResult:
    save_manifest(plan.root, plan.manifest)
    runner = _Runner(plan, workers=workers, progress=progress, verify=verify, retry=retry, fetch=fetch)
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
    executor: str = "local",
    ray_address: str | None = None,
) -> DownloadResult | DownloadPlan:
    """`dshub download` as a function: the plan when `dry_run`, else the result of running it. With `executor="ray"`
    the files are fetched on the cluster's nodes, which read their token from their own environment (`token` is this
    process's, for the listing)."""
    raycluster.check_executor(executor, EXECUTORS, ray_address)
    require_usable_hf_environment()
    run = dict(workers=workers, verify=verify, progress=progress, executor=executor, ray_address=ray_address)
    if source == "hf" and hf_offline():
        plan = offline_plan(repo_id, revision=revision, local_dir=local_dir)
        return plan if dry_run else run_download(plan, **run)
    plan = plan_download(
        repo_id, revision=revision, local_dir=local_dir, include=include, exclude=exclude, source=source,
        endpoint=endpoint, token=token,
    )
    check_disk(plan)
    if dry_run:
        return plan
    return run_download(plan, **run)
