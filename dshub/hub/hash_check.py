"""`verify --hashes`: every file's size and digest against the download manifest, or against the hub's metadata.

Hashing streams each file and runs one file per core. By default every file is hashed afresh (a verification
that trusts a cache would miss a bit flip that kept the mtime); `use_cache=True` accepts remembered digests.
"""
from __future__ import annotations

import sys
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from tqdm.auto import tqdm

from dshub.checkpoint.json_limits import loads_bounded
from dshub.constants import MANIFEST_NAME
from dshub.hub.manifest import RemoteFile, hash_cache_path, load_manifest
from dshub.errors import CheckpointError, HubUnreachable, UsageError
from dshub.hub.hashing import HashCache, git_blob_sha1, hash_many
from dshub.hub.plan import check_listing, check_snapshot_name, select
from dshub.hub.layout import LocalDirLayout
from dshub.hub.sources import hf_offline, make_source, require_usable_hf_environment


@dataclass(frozen=True)
class HashFinding:
    """One file that is not what the reference says."""

    path: str
    problem: str  # "missing" | "size" | "sha256" | "git-sha1" | "unreadable"
    expected: str
    actual: str
    message: str


@dataclass
class HashReport:
    root: str
    reference: str  # "manifest <repo>@<commit>" or "hub <repo>@<commit>"
    checked: int = 0
    bytes_hashed: int = 0
    findings: list[HashFinding] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.findings

    def to_dict(self) -> dict[str, Any]:
        return {
            "ok": self.ok, "root": self.root, "reference": self.reference, "checked": self.checked,
            "bytes_hashed": self.bytes_hashed, "findings": [asdict(f) for f in self.findings],
        }


def parse_repo_rev(spec: str) -> tuple[str, str | None]:
    """`owner/name[@revision]` -> (repo, revision)."""
    repo, _, rev = spec.partition("@")
    if repo.count("/") != 1 or not all(repo.split("/")):
        raise UsageError(f"--against-hub {spec!r}: expected OWNER/NAME or OWNER/NAME@REVISION")
    return repo, rev or None


def reference_files(root: Path, against_hub: str | None, source: str = "hf") -> tuple[str, list[RemoteFile]]:
    """The expected files: from the hub when `against_hub` is given, else from the directory's manifest."""
    if against_hub is not None:
        require_usable_hf_environment()
    manifest = load_manifest(root)
    if against_hub is None:
        if manifest is None and (root / MANIFEST_NAME).is_file():
            return output_reference(root)
        if manifest is None:
            raise CheckpointError(
                f"no download manifest (.dshub/download.json) nor conversion manifest ({MANIFEST_NAME}) to check "
                "hashes against; use --against-hub REPO[@REV] or download with `dshub download`", path=str(root),
            )
        return f"manifest {manifest.repo_id}@{manifest.commit}", check_listing(manifest.repo_id, list(manifest.files.values()))
    repo, rev = parse_repo_rev(against_hub)
    if source == "hf" and hf_offline():
        raise HubUnreachable(f"--against-hub {against_hub}: HF_HUB_OFFLINE is set; use --hashes to check against the manifest")
    src = make_source(source)
    commit = check_snapshot_name(src.name, repo, src.resolve(repo, rev))
    files = check_listing(repo, src.list_files(repo, commit))
    if manifest is not None and manifest.repo_id == repo:  # a partial download was asked for: check that part
        files = select(files, manifest.include, manifest.exclude)
    return f"hub {repo}@{commit}", files


def output_reference(root: Path) -> tuple[str, list[RemoteFile]]:
    """The files a dshub conversion recorded as finished in its manifest (`dshub-manifest.json`: name -> sha256,
    size), checked as a listing is (relative paths inside the directory, sizes, digests)."""
    path = root / MANIFEST_NAME
    try:
        doc = loads_bounded(path.read_bytes())
    except (OSError, ValueError) as e:
        raise CheckpointError(f"unreadable conversion manifest: {e}", path=str(path)) from None
    files = doc.get("files") if isinstance(doc, dict) else None
    if not isinstance(files, dict) or not all(isinstance(r, dict) for r in files.values()):
        raise CheckpointError("not a dshub conversion manifest (no files mapping)", path=str(path))
    listing = [RemoteFile(name, r.get("size"), r.get("sha256")) for name, r in sorted(files.items())]
    state = "complete" if doc.get("complete") else "incomplete run"
    return f"conversion manifest {MANIFEST_NAME} ({len(listing)} files, {state})", check_listing("dshub output", listing)


def verify_hashes(
    root: str | Path,
    *,
    against_hub: str | None = None,
    source: str = "hf",
    workers: int | None = None,
    use_cache: bool = False,
    progress: bool = True,
) -> HashReport:
    """Hash every expected file under `root` and compare size and digest. Never raises for a bad file: reports it."""
    root = Path(root)
    if not root.is_dir():
        raise CheckpointError("not a directory", path=str(root))
    reference, files = reference_files(root, against_hub, source)
    layout = LocalDirLayout(root)
    report = HashReport(str(root), reference, checked=len(files))
    to_hash: dict[str, RemoteFile] = {}
    for f in files:
        path = layout.final(f)
        if not path.is_file():
            report.findings.append(HashFinding(f.path, "missing", f"{f.size} bytes", "absent", f"{f.path}: missing"))
            continue
        size = path.stat().st_size
        if size != f.size:
            report.findings.append(HashFinding(
                f.path, "size", str(f.size), str(size), f"{f.path}: {f.size} bytes expected, {size} found",
            ))
            continue
        to_hash[f.path] = f
    cache = HashCache(root, hash_cache_path(root))
    total = sum(f.size for f in to_hash.values())
    bar = tqdm(total=total, desc="sha256", unit="B", unit_scale=True, unit_divisor=1024, file=sys.stderr,
               disable=None if progress else True, leave=False)
    try:
        digests = hash_many(to_hash, cache, workers=workers, refresh=not use_cache, progress=bar.update)
    finally:
        bar.close()
        cache.save()
    report.bytes_hashed = total
    for rel, digest in sorted(digests.items()):
        f = to_hash[rel]
        if isinstance(digest, OSError):
            report.findings.append(HashFinding(rel, "unreadable", "", str(digest.strerror), f"{rel}: cannot read ({digest.strerror})"))
        elif f.sha256 and digest != f.sha256:
            report.findings.append(HashFinding(rel, "sha256", f.sha256, digest, f"{rel}: sha256 {digest}, expected {f.sha256}"))
        elif not f.sha256 and f.blob_id and (actual := git_blob_sha1(layout.final(f))) != f.blob_id:
            report.findings.append(HashFinding(rel, "git-sha1", f.blob_id, actual, f"{rel}: git blob sha1 {actual}, expected {f.blob_id}"))
    report.findings.sort(key=lambda x: x.path)
    return report
