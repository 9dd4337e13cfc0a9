"""The conversion manifest: what was produced from what, and which output files are finished (for resume)."""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from dshub.constants import MANIFEST_NAME, VERSION
from dshub.errors import OutputError, UsageError
from dshub.fsutil import write_json_atomic
from dshub.hub.hashing import sha256_file

START_OVER = "use an empty --out directory (or delete it) to start over"


@dataclass
class Manifest:
    """`dshub-manifest.json` in an output directory. `key` identifies input + options; files maps name -> {sha256, size}."""

    path: Path
    key: dict[str, Any]
    files: dict[str, dict[str, Any]] = field(default_factory=dict)
    complete: bool = False

    @classmethod
    def load_or_new(cls, out_dir: Path, key: dict[str, Any]) -> "Manifest":
        """Resume the manifest in `out_dir` if it was made with the same key; refuse if it was made with another
        (naming the input shard that changed, or the options)."""
        path = out_dir / MANIFEST_NAME
        if not path.exists():
            return cls(path, key)
        try:
            doc = json.loads(path.read_text())
        except ValueError:  # not UTF-8 or not JSON
            doc = None
        if not _well_formed(doc):
            raise OutputError(f"not a dshub manifest (unreadable or damaged); {START_OVER}", path=str(path))
        if doc["key"] != key:
            raise UsageError(f"{path}: {changed(doc['key'], key)}; {START_OVER}")
        return cls(path, key, doc["files"], bool(doc.get("complete")))

    def is_done(self, out_dir: Path, name: str) -> bool:
        """True when `name` is recorded as finished and the file on disk still has its size and sha256."""
        rec = self.files.get(name)
        p = out_dir / name
        if not rec or not p.is_file() or p.stat().st_size != rec["size"]:
            return False
        return sha256_file(p) == rec["sha256"]

    def record(self, name: str, sha256: str, size: int) -> None:
        self.files[name] = {"sha256": sha256, "size": size}
        self.save()

    def save(self) -> None:
        write_json_atomic(self.path, {"tool": "dshub", "version": VERSION, "key": self.key,
                                      "files": dict(sorted(self.files.items())), "complete": self.complete})


def _well_formed(doc: Any) -> bool:
    """A manifest dshub wrote: a key object and files mapping names to {sha256: str, size: int}."""
    if not (isinstance(doc, dict) and isinstance(doc.get("key"), dict) and isinstance(doc.get("files"), dict)):
        return False
    return all(isinstance(r, dict) and isinstance(r.get("sha256"), str) and type(r.get("size")) is int
               for r in doc["files"].values())


def changed(old: dict[str, Any], new: dict[str, Any]) -> str:
    """Why a resume is refused: the first input shard whose identity changed, else the input or the options."""
    old_src, new_src = old.get("source"), new.get("source")
    if isinstance(old_src, dict) and isinstance(new_src, dict) and old_src.get("path") == new_src.get("path"):
        old_shards = old_src.get("shards") if isinstance(old_src.get("shards"), dict) else {}
        for shard, ident in new_src.get("shards", {}).items():
            if old_shards.get(shard) != ident:
                return f"input shard {shard} changed since this output was made from it (size, header or content)"
        if old_shards.keys() != new_src.get("shards", {}).keys():
            return "the input's shards changed since this output was made from them"
    if old_src != new_src:
        return "the output directory holds a conversion made from another input"
    return "the output directory holds a conversion made with other options"
