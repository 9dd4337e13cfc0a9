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


@dataclass
class Manifest:
    """`dshub-manifest.json` in an output directory. `key` identifies input + options; files maps name -> {sha256, size}."""

    path: Path
    key: dict[str, Any]
    files: dict[str, dict[str, Any]] = field(default_factory=dict)
    complete: bool = False

    @classmethod
    def load_or_new(cls, out_dir: Path, key: dict[str, Any]) -> "Manifest":
        """Resume the manifest in `out_dir` if it was made with the same key; refuse if it was made with another."""
        path = out_dir / MANIFEST_NAME
        if not path.exists():
            return cls(path, key)
        try:
            doc = json.loads(path.read_text())
        except (UnicodeDecodeError, json.JSONDecodeError):
            doc = None
        if not isinstance(doc, dict):
            raise OutputError("not a dshub manifest (unreadable JSON); use an empty --out directory", path=str(path))
        if doc.get("key") != key:
            raise UsageError(
                f"{path}: the output directory holds a conversion made with other inputs or options; "
                "use an empty --out directory (or delete it) to start over"
            )
        return cls(path, key, doc.get("files", {}), bool(doc.get("complete")))

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
