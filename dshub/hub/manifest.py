"""The download manifest: which repo, revision and commit a directory holds, and each file's size and digests.

Written next to the files (`.dshub/download.json`) before any byte is transferred, so `dshub verify --hashes`
works offline and a rerun knows what "complete" means. It never holds a token or a timestamp.
"""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from dshub.errors import CheckpointError
from dshub.fsutil import write_json_atomic
from dshub.hub.redact import redact_url

STATE_DIR = ".dshub"
DOWNLOAD_MANIFEST = "download.json"
HASH_CACHE = "hashes.json"
FORMAT_VERSION = 1
KIND = "dshub-download"


@dataclass(frozen=True)
class RemoteFile:
    """One file as the hub lists it. `sha256` is set for LFS/xet files, `blob_id` (git sha1) for all on HF."""

    path: str
    size: int
    sha256: str | None = None
    blob_id: str | None = None

    @property
    def etag(self) -> str | None:
        """The name HF's cache gives the blob: sha256 for LFS files, git sha1 otherwise."""
        return self.sha256 or self.blob_id

    def to_dict(self) -> dict[str, Any]:
        return {k: v for k, v in asdict(self).items() if k != "path"}


@dataclass
class DownloadManifest:
    """What a download directory is supposed to contain."""

    source: str
    repo_id: str
    revision: str
    commit: str
    endpoint: str
    files: dict[str, RemoteFile]
    include: list[str] = field(default_factory=list)
    exclude: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {
            "format_version": FORMAT_VERSION,
            "kind": KIND,
            "source": self.source,
            "repo_id": self.repo_id,
            "revision": self.revision,
            "commit": self.commit,
            "endpoint": redact_url(self.endpoint),
            "include": list(self.include),
            "exclude": list(self.exclude),
            "files": {p: f.to_dict() for p, f in sorted(self.files.items())},
        }

    @classmethod
    def from_dict(cls, doc: dict[str, Any], where: str) -> "DownloadManifest":
        if doc.get("kind") != KIND or doc.get("format_version") != FORMAT_VERSION:
            raise CheckpointError(f"not a dshub download manifest (format_version {doc.get('format_version')!r})", path=where)
        try:
            files = {
                p: RemoteFile(p, int(e["size"]), e.get("sha256"), e.get("blob_id")) for p, e in doc["files"].items()
            }
            return cls(
                source=doc["source"], repo_id=doc["repo_id"], revision=doc["revision"], commit=doc["commit"],
                endpoint=doc.get("endpoint", ""), files=files,
                include=list(doc.get("include") or []), exclude=list(doc.get("exclude") or []),
            )
        except (KeyError, TypeError, ValueError, AttributeError) as e:
            raise CheckpointError(f"malformed download manifest ({e.__class__.__name__}: {e})", path=where) from None


def state_dir(root: Path) -> Path:
    """Where dshub keeps a directory's state: `root/.dshub`, or for an HF cache snapshot
    `models--o--n/.dshub/<commit>` (so huggingface_hub's cache scans see only the repository's own files)."""
    if root.parent.name == "snapshots" and root.parent.parent.name.startswith(("models--", "datasets--")):
        return root.parent.parent / STATE_DIR / root.name
    return root / STATE_DIR


def manifest_path(root: Path) -> Path:
    return state_dir(root) / DOWNLOAD_MANIFEST


def hash_cache_path(root: Path) -> Path:
    return state_dir(root) / HASH_CACHE


def save_manifest(root: Path, manifest: DownloadManifest) -> Path:
    path = manifest_path(root)
    path.parent.mkdir(parents=True, exist_ok=True)
    write_json_atomic(path, manifest.to_dict())
    return path


def load_manifest(root: Path) -> DownloadManifest | None:
    """The directory's download manifest, or None when it has none."""
    path = manifest_path(root)
    try:
        raw = path.read_text()
    except FileNotFoundError:
        return None
    try:
        doc = json.loads(raw)
    except ValueError as e:
        raise CheckpointError(f"download manifest is not valid JSON ({e})", path=str(path)) from None
    if not isinstance(doc, dict):
        raise CheckpointError("download manifest is not a JSON object", path=str(path))
    return DownloadManifest.from_dict(doc, str(path))
