"""Where downloaded files land: a plain `--local-dir`, or huggingface_hub's own cache (blobs + snapshot symlinks).

Both keep dshub's state (download manifest, hash cache, partial files, blob locks) out of the way of loaders. Every
path handed out is checked first (`validate.under` / `inside`): a hub path, digest or revision never leads outside
the target, through `..` or through a symlink already on disk.
"""
from __future__ import annotations

import os
import re
import time
from pathlib import Path

from dshub.hub.manifest import STATE_DIR, RemoteFile
from dshub.errors import HubMetadataRefused
from dshub.hub.validate import GIT_SHA1_RE, SHA256_RE, check_ref, inside, printable, under
from dshub.fsutil import fsync_dir

PART_SUFFIX = ".part"
LOCK_SUFFIX = ".lock"


class LocalDirLayout:
    """Files at `root/<path>`; partial transfers under `root/.dshub/partial/`."""

    kind = "local-dir"

    def __init__(self, root: Path):
        self.root = root
        self.bound = link_bound(root)

    def final(self, f: RemoteFile) -> Path:
        """Where a loader finds the file (resolved inside the root, symlinks included)."""
        return inside(self.bound, under(self.root, f.path, follow=False))

    def data(self, f: RemoteFile) -> Path:
        """Where its bytes live (the same file here)."""
        return self.final(f)

    def part(self, f: RemoteFile) -> Path:
        under(self.root, f.path, follow=False)
        return inside(self.root, self.root / STATE_DIR / "partial" / (f.path + PART_SUFFIX))

    def lock(self, f: RemoteFile) -> Path:
        """The advisory lock that guards the partial file."""
        return self.part(f).with_name(self.part(f).name + LOCK_SUFFIX)

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
        under(self.root, f.path, follow=False)
        meta = inside(self.root, self.root / ".cache" / "huggingface" / "download" / (f.path + ".metadata"))
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
        """The snapshot link: its folder resolved inside the snapshot (the link itself points into blobs/)."""
        return under(self.root, f.path, follow=False, bound=self.repo_dir)

    def data(self, f: RemoteFile) -> Path:
        """blobs/<digest>, resolved inside the repository folder (a `blobs` symlink out of it is refused)."""
        return inside(self.repo_dir, self.repo_dir / "blobs" / self._etag(f))

    def part(self, f: RemoteFile) -> Path:
        return inside(self.repo_dir, self.repo_dir / "blobs" / (self._etag(f) + ".dshub" + PART_SUFFIX))

    def lock(self, f: RemoteFile) -> Path:
        """One lock per blob, shared by every revision (and every process) that fetches it."""
        return inside(self.repo_dir, self.repo_dir / STATE_DIR / "locks" / (self._etag(f) + LOCK_SUFFIX))

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
            check_ref(self.repo_dir.name, revision)
            ref = inside(self.repo_dir, self.repo_dir / "refs" / revision)
            ref.parent.mkdir(parents=True, exist_ok=True)
            ref.write_text(commit)

    def _link(self, f: RemoteFile) -> None:
        """snapshots/<commit>/<path> -> ../../blobs/<etag> (relative), created only once the blob is complete."""
        link = self.final(f)
        if link.is_symlink() or link.exists():
            return
        inside(self.repo_dir, link.parent)  # a folder on the way that is a symlink out of the repository is refused
        link.parent.mkdir(parents=True, exist_ok=True)
        os.symlink(os.path.relpath(self.data(f), link.parent), link)

    @staticmethod
    def _etag(f: RemoteFile) -> str:
        """The blob's name: a sha256 or git sha1 in hex, never anything else (it is joined to a path)."""
        if not f.etag:
            raise ValueError(f"{f.path}: the hub lists no digest for this file, so it has no cache blob name")
        if not (SHA256_RE.match(f.etag) or GIT_SHA1_RE.match(f.etag)):
            raise HubMetadataRefused(f"{printable(f.path)}: hub digest {printable(repr(f.etag))} is not hex; refused")
        return f.etag


def link_bound(root: Path) -> Path:
    """Where the files of `root` may resolve to: the repository folder for an HF cache snapshot (its links point
    into ../../blobs), else `root` itself."""
    if root.parent.name == "snapshots" and root.parent.parent.name.startswith(("models--", "datasets--")):
        return root.parent.parent
    return root


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
    repo_dir = cache_repo_dir(hf_cache_dir(), repo_id)
    try:
        ref = inside(repo_dir, repo_dir / "refs" / check_ref(repo_id, revision))
        return ref.read_text().strip() or None
    except OSError:
        return None


REPO_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*/[A-Za-z0-9][A-Za-z0-9._-]*")


def cached_snapshot(repo_id: str, revision: str = "main") -> Path | None:
    """The HF cache's snapshot of `repo_id` at `revision` (a branch or tag through refs/, or a commit), if there."""
    repo_dir = cache_repo_dir(hf_cache_dir(), repo_id)
    commit = revision if GIT_SHA1_RE.fullmatch(revision) else cached_commit(repo_id, revision)
    if commit is None:
        return None
    snap = repo_dir / "snapshots" / commit
    return snap if snap.is_dir() else None


def source_name(root: Path) -> str:
    """The model's name for a checkpoint directory: an HF cache snapshot (`models--owner--name/snapshots/<commit>`)
    is named after its repository, never after the commit; any other directory by its own name."""
    root = root.resolve()
    repo = root.parent.parent.name
    if root.parent.name == "snapshots" and repo.startswith("models--") and repo.count("--") >= 2:
        return repo.split("--", 2)[2]
    return root.name


Layout = LocalDirLayout | HfCacheLayout
