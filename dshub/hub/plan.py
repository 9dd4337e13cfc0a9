"""Planning a download: resolve the revision, list and select files, classify what is on disk, check free space.

Nothing here transfers a byte; `--dry-run` prints what `plan_download` returns. Whatever the source (or a manifest
left on disk) says is checked here before a layout turns it into paths: `check_listing`.
"""
from __future__ import annotations

import fnmatch
import os
from dataclasses import dataclass
from enum import Enum
from pathlib import Path
from typing import Any, Iterable

from dshub.hub.manifest import DownloadManifest, RemoteFile, hash_cache_path, load_manifest, redact_url
from dshub.errors import DiskSpaceError, HubUnreachable, UsageError
from dshub.fsutil import check_free_space, free_space
from dshub.hub.hashing import HashCache
from dshub.hub.layout import HfCacheLayout, Layout, LocalDirLayout, cached_commit, hf_cache_dir
from dshub.hub.sources import Source, is_commit, make_source
from dshub.hub.validate import REF_PART_RE, check_commit, check_file, check_unique


class FileState(str, Enum):
    """A listed file's local state before the run."""

    VERIFIED = "verified"  # size matches and the remembered digest matches
    PRESENT = "present"  # size matches, not hashed yet
    PARTIAL = "partial"  # a partial transfer (or a short file) to resume
    MISSING = "missing"
    BAD = "bad"  # wrong size or a remembered digest that does not match


@dataclass
class FilePlan:
    file: RemoteFile
    state: FileState
    have: int = 0  # bytes a resume starts from

    @property
    def remaining(self) -> int:
        return 0 if self.state in (FileState.VERIFIED, FileState.PRESENT) else self.file.size - self.have


@dataclass
class DownloadPlan:
    """Everything decided before the first byte moves."""

    source: Source | None  # None offline (HF_HUB_OFFLINE): nothing can be fetched
    manifest: DownloadManifest
    layout: Layout
    files: list[FilePlan]
    free_bytes: int | None = None

    @property
    def root(self) -> Path:
        return self.layout.root

    def bytes_in(self, *states: FileState) -> int:
        return sum(p.file.size for p in self.files if p.state in states)

    @property
    def to_fetch_bytes(self) -> int:
        return sum(p.remaining for p in self.files)

    def to_dict(self) -> dict[str, Any]:
        m = self.manifest
        return {
            "source": m.source, "repo_id": m.repo_id, "revision": m.revision, "commit": m.commit,
            "endpoint": redact_url(m.endpoint), "layout": self.layout.kind, "local_dir": str(self.root),
            "files": [
                {"path": p.file.path, "size": p.file.size, "state": p.state.value, "have": p.have,
                 "sha256": p.file.sha256}
                for p in self.files
            ],
            "totals": {
                "files": len(self.files),
                "bytes": sum(p.file.size for p in self.files),
                "verified_bytes": self.bytes_in(FileState.VERIFIED),
                "present_unverified_bytes": self.bytes_in(FileState.PRESENT),
                "resumable_bytes": sum(p.have for p in self.files),
                "to_fetch_bytes": self.to_fetch_bytes,
                "free_bytes": self.free_bytes,
            },
        }


def select(files: Iterable[RemoteFile], include: Iterable[str] = (), exclude: Iterable[str] = ()) -> list[RemoteFile]:
    """Files whose path matches any include pattern (all when none) and no exclude pattern (fnmatch, like `hf`)."""
    inc, exc = list(include), list(exclude)
    return [
        f for f in files
        if (not inc or any(fnmatch.fnmatchcase(f.path, p) for p in inc)) and not any(fnmatch.fnmatchcase(f.path, p) for p in exc)
    ]


def make_layout(repo_id: str, commit: str, local_dir: str | os.PathLike | None) -> Layout:
    return LocalDirLayout(Path(local_dir)) if local_dir is not None else HfCacheLayout(hf_cache_dir(), repo_id, commit)


def classify(layout: Layout, f: RemoteFile, cache: HashCache) -> FilePlan:
    """Decide what a rerun must do for one file, from sizes and remembered digests only (no hashing here)."""
    data, part = layout.data(f), layout.part(f)
    size = data.stat().st_size if data.is_file() else None
    part_size = part.stat().st_size if part.is_file() else 0
    if size == f.size:
        known = cache.get(f.path)
        if known is None or f.sha256 is None:
            return FilePlan(f, FileState.PRESENT)
        return FilePlan(f, FileState.VERIFIED if known == f.sha256 else FileState.BAD)
    if size is not None and size < f.size and part_size == 0:
        return FilePlan(f, FileState.PARTIAL, have=size)  # a short file: resume from it, the digest decides
    if 0 < part_size <= f.size:
        return FilePlan(f, FileState.PARTIAL, have=part_size)
    return FilePlan(f, FileState.MISSING if size is None else FileState.BAD)


def plan_download(
    repo_id: str,
    *,
    revision: str | None = None,
    local_dir: str | os.PathLike | None = None,
    include: Iterable[str] = (),
    exclude: Iterable[str] = (),
    source: str = "hf",
    endpoint: str | None = None,
    token: str | None = None,
) -> DownloadPlan:
    """Resolve, list, filter and classify. Online only; see `offline_plan` for HF_HUB_OFFLINE."""
    include, exclude = list(include), list(exclude)
    src = make_source(source, endpoint=endpoint, token=token)
    commit = check_snapshot_name(src.name, repo_id, src.resolve(repo_id, revision))
    listed = check_listing(repo_id, src.list_files(repo_id, commit))
    chosen = select(listed, include, exclude)
    if not chosen:
        raise UsageError(
            f"{repo_id}@{revision or 'main'}: no file matches --include {include or ['*']} / --exclude {exclude}; "
            f"the repository has {len(listed)} files"
        )
    manifest = DownloadManifest(
        source=src.name, repo_id=repo_id, revision=revision or src.default_revision,
        commit=commit, endpoint=src.endpoint, files={f.path: f for f in chosen}, include=include, exclude=exclude,
    )
    return _classified(src, manifest, make_layout(repo_id, commit, local_dir))


def check_snapshot_name(source: str, repo_id: str, commit: str) -> str:
    """The commit a snapshot folder is named after: 40 hex digits; ModelScope may name a revision instead (one safe
    path component) when its listing carries no commit id."""
    if source != "hf" and isinstance(commit, str) and REF_PART_RE.match(commit) and commit not in (".", ".."):
        return commit
    return check_commit(repo_id, commit)


def check_listing(repo_id: str, files: list[RemoteFile]) -> list[RemoteFile]:
    """Every listed file checked (path, size, digests) and no path listed twice; the list itself when all hold."""
    for f in files:
        check_file(repo_id, f.path, f.size, {"sha256": f.sha256, "blob_id": f.blob_id})
    check_unique(repo_id, [f.path for f in files])
    return files


def _classified(src: Source | None, manifest: DownloadManifest, layout: Layout) -> DownloadPlan:
    cache = HashCache(layout.root, hash_cache_path(layout.root))
    files = [classify(layout, f, cache) for f in manifest.files.values()]
    return DownloadPlan(src, manifest, layout, files)


def reclassify(plan: DownloadPlan) -> None:
    """Refresh each file's state from the disk (cheap: stat calls and remembered digests)."""
    plan.files = _classified(plan.source, plan.manifest, plan.layout).files


def offline_plan(repo_id: str, *, revision: str | None, local_dir: str | os.PathLike | None) -> DownloadPlan:
    """The plan from a previous run's manifest, for HF_HUB_OFFLINE: nothing can be fetched, everything is checked."""
    if local_dir is not None:
        root = Path(local_dir)
    else:
        commit = revision if is_commit(revision) else cached_commit(repo_id, revision or "main")
        if commit is None:
            raise HubUnreachable(f"{repo_id}: HF_HUB_OFFLINE is set and the HF cache has no {revision or 'main'!r} snapshot")
        check_commit(repo_id, commit)  # refs/<revision> on disk names the snapshot folder
        root = HfCacheLayout(hf_cache_dir(), repo_id, commit).root
    manifest = load_manifest(root)
    if manifest is None or manifest.repo_id != repo_id:
        raise HubUnreachable(f"{root}: HF_HUB_OFFLINE is set and this directory has no dshub download manifest for {repo_id}")
    check_snapshot_name(manifest.source, repo_id, manifest.commit)
    check_listing(repo_id, list(manifest.files.values()))
    layout = make_layout(repo_id, manifest.commit, local_dir)
    return _classified(None, manifest, layout)


def check_disk(plan: DownloadPlan) -> None:
    """Refuse before transferring when the target file system cannot hold what is left to fetch."""
    needed = plan.to_fetch_bytes
    plan.free_bytes = free_space(plan.root)
    try:
        check_free_space(plan.root, needed)
    except DiskSpaceError as e:
        raise DiskSpaceError(
            f"{needed / 1e9:.2f} GB still to download, {e.free / 1e9:.2f} GB free. "
            "Free space or choose another --local-dir",
            path=str(plan.root), needed=needed, free=e.free,
        ) from None
