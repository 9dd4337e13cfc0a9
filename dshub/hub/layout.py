"""Where downloaded files land: a plain `--local-dir`, or huggingface_hub's own cache (blobs + snapshot symlinks).

Both keep dshub's state (download manifest, hash cache, partial files) out of the way of loaders.
"""
from __future__ import annotations

import os
import time
from pathlib import Path

from dshub.checkpoint.reader import safe_relative
from dshub.hub.manifest import STATE_DIR, RemoteFile
from dshub.fsutil import fsync_dir

PART_SUFFIX = ".part"


class LocalDirLayout:
    """Files at `root/<path>`; partial transfers under `root/.dshub/partial/`."""

    kind = "local-dir"

    def __init__(self, root: Path):
        self.root = root

    def final(self, f: RemoteFile) -> Path:
        """Where a loader finds the file."""
        return safe_relative(self.root, f.path, what=f"{self.root}")

    def data(self, f: RemoteFile) -> Path:
        """Where its bytes live (the same file here)."""
        return self.final(f)

    def part(self, f: RemoteFile) -> Path:
        return safe_relative(self.root / STATE_DIR / "partial", f.path + PART_SUFFIX, what=f"{self.root}")

    def prepare(self, files: list[RemoteFile]) -> None:
        self.root.mkdir(parents=True, exist_ok=True)

    def install(self, f: RemoteFile, part: Path, commit: str) -> None:
        """Move a complete, verified partial file into place (atomic rename), and tell HF tools it is current."""
        dst = self.final(f)
        dst.parent.mkdir(parents=True, exist_ok=True)
        os.replace(part, dst)
        fsync_dir(dst.parent)
        self._hf_metadata(f, commit)

    def finish(self, revision: str, commit: str, files: list[RemoteFile], complete: bool) -> None:
        pass

    def _hf_metadata(self, f: RemoteFile, commit: str) -> None:
        """huggingface_hub's local-dir bookkeeping (`commit\\netag\\ntimestamp`), so `hf download` sees the file as current."""
        meta = safe_relative(self.root / ".cache" / "huggingface" / "download", f.path + ".metadata", what=f"{self.root}")
        meta.parent.mkdir(parents=True, exist_ok=True)
        gitignore = self.root / ".cache" / "huggingface" / ".gitignore"
        if not gitignore.exists():
            gitignore.write_text("*")
        meta.write_text(f"{commit}\n{f.etag or ''}\n{time.time()}\n")


class HfCacheLayout:
    """huggingface_hub's cache: `models--owner--name/{blobs/<etag>, snapshots/<commit>/<path> -> blob, refs/<rev>}`."""

    kind = "hf-cache"

    def __init__(self, cache_dir: Path, repo_id: str, commit: str):
        self.repo_dir = cache_repo_dir(cache_dir, repo_id)
        self.root = self.repo_dir / "snapshots" / commit

    def final(self, f: RemoteFile) -> Path:
        return safe_relative(self.root, f.path, what=f"{self.root}")

    def data(self, f: RemoteFile) -> Path:
        return self.repo_dir / "blobs" / self._etag(f)

    def part(self, f: RemoteFile) -> Path:
        return self.repo_dir / "blobs" / (self._etag(f) + ".dshub" + PART_SUFFIX)

    def prepare(self, files: list[RemoteFile]) -> None:
        """Create the blob store and link the files whose blobs are already here (e.g. from another revision)."""
        (self.repo_dir / "blobs").mkdir(parents=True, exist_ok=True)
        for f in files:
            if self.data(f).is_file():
                self._link(f)

    def install(self, f: RemoteFile, part: Path, commit: str) -> None:
        os.replace(part, self.data(f))
        fsync_dir(part.parent)
        self._link(f)

    def finish(self, revision: str, commit: str, files: list[RemoteFile], complete: bool) -> None:
        """Link files that share a blob fetched under another path; when the snapshot is complete, point
        refs/<revision> at the commit, as huggingface_hub does for branch and tag names."""
        self.prepare(files)
        if complete and revision != commit:
            ref = self.repo_dir / "refs" / revision
            ref.parent.mkdir(parents=True, exist_ok=True)
            ref.write_text(commit)

    def _link(self, f: RemoteFile) -> None:
        """snapshots/<commit>/<path> -> ../../blobs/<etag> (relative), created only once the blob is complete."""
        link = self.final(f)
        if link.is_symlink() or link.exists():
            return
        link.parent.mkdir(parents=True, exist_ok=True)
        os.symlink(os.path.relpath(self.data(f), link.parent), link)

    @staticmethod
    def _etag(f: RemoteFile) -> str:
        if not f.etag:
            raise ValueError(f"{f.path}: the hub lists no digest for this file, so it has no cache blob name")
        return f.etag


def cache_repo_dir(cache_dir: Path, repo_id: str) -> Path:
    """A model repository's folder in huggingface_hub's cache: `models--owner--name`."""
    return cache_dir / ("models--" + repo_id.replace("/", "--"))


def hf_cache_dir() -> Path:
    """HF_HUB_CACHE, else HF_HOME/hub, else huggingface_hub's default; read now, not at import."""
    from huggingface_hub import constants as hfc

    if env := os.environ.get("HF_HUB_CACHE"):
        return Path(env).expanduser()
    if env := os.environ.get("HF_HOME"):
        return Path(env).expanduser() / "hub"
    return Path(hfc.HF_HUB_CACHE)


def cached_commit(repo_id: str, revision: str) -> str | None:
    """The commit the HF cache's refs/<revision> points at, for offline use."""
    ref = cache_repo_dir(hf_cache_dir(), repo_id) / "refs" / revision
    try:
        return ref.read_text().strip() or None
    except OSError:
        return None


Layout = LocalDirLayout | HfCacheLayout
