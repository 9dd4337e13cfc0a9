"""The run report (`WORKDIR/dshub-run.json`): per step what it read (digests), with which options, what it wrote
(every output file's size and sha256) and how long it took. A rerun compares against it to skip unchanged steps."""
from __future__ import annotations

import json
import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from dshub.constants import MANIFEST_NAME, VERSION
from dshub.fsutil import write_json_atomic
from dshub.hub.hashing import HashCache, hash_many, sha256_file
from dshub.pipeline.steps import digest

REPORT_NAME = "dshub-run.json"
STATE_DIR = ".dshub-run"  # in the workdir: the source's hash cache
DONE = ("ran", "skipped")  # statuses whose outputs a rerun may keep


def output_files(root: Path) -> list[str]:
    """The files a step's output consists of: every regular file under `root`, leaving out bookkeeping (names
    starting with a dot: locks, state, temp files; the converters' manifest, which records a run, not its output)."""
    if not root.is_dir():
        return []
    names = []
    for p in sorted(root.rglob("*")):
        rel = p.relative_to(root)
        if p.is_file() and not any(part.startswith(".") for part in rel.parts) and rel.as_posix() != MANIFEST_NAME:
            names.append(rel.as_posix())
    return names


def _hash_all(root: Path, names: list[str]) -> dict[str, dict[str, Any]]:
    def one(rel: str) -> tuple[str, dict[str, Any]]:
        p = root / rel
        return rel, {"size": p.stat().st_size, "sha256": sha256_file(p)}

    with ThreadPoolExecutor(max(1, min(8, os.cpu_count() or 1))) as pool:
        return dict(pool.map(one, names))


def record_outputs(root: Path) -> dict[str, Any]:
    """Every output file of a step with its size and sha256, and one digest over them (the next step's input)."""
    files = _hash_all(root, output_files(root))
    return {"dir": str(root), "files": files, "digest": digest(files)}


def changed_output(outputs: dict[str, Any]) -> str | None:
    """Why a recorded output no longer verifies (a file missing, added, resized or with other bytes), or None."""
    root = Path(outputs["dir"])
    recorded: dict[str, dict[str, Any]] = outputs["files"]
    now = output_files(root)
    for rel in sorted(set(recorded) - set(now)):
        return f"output {rel} is missing"
    for rel in sorted(set(now) - set(recorded)):
        return f"output {rel} was not written by the recorded run"
    for rel, rec in sorted(recorded.items()):
        if (root / rel).stat().st_size != rec["size"]:
            return f"output {rel} has another size than recorded"
    hashed = _hash_all(root, sorted(recorded))
    for rel, rec in sorted(recorded.items()):
        if hashed[rel]["sha256"] != rec["sha256"]:
            return f"output {rel} does not match its recorded sha256"
    return None


def source_digest(root: Path, workdir: Path) -> str:
    """A local source's identity: every file's sha256 (cached by size and mtime in the workdir, as downloads do)."""
    cache = HashCache(root, workdir / STATE_DIR / "source-hashes.json")
    names = output_files(root)
    digests = hash_many(names, cache)
    cache.save()
    return digest({rel: str(d) for rel, d in sorted(digests.items())})


@dataclass
class RunReport:
    """The report of one run; `steps` in the order they ran."""

    path: Path
    pipeline: str
    pipeline_sha256: str | None = None
    source: Any = None  # as written in the file (a token only as its ${VAR} reference)
    steps: dict[str, dict[str, Any]] = field(default_factory=dict)
    ok: bool = False
    dry_run: bool = False
    plan: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def previous(cls, workdir: Path) -> dict[str, dict[str, Any]]:
        """The steps of the last run's report in `workdir` (none when absent or unreadable: everything runs)."""
        try:
            doc = json.loads((workdir / REPORT_NAME).read_text())
        except (OSError, ValueError):
            return {}
        steps = doc.get("steps") if isinstance(doc, dict) else None
        return {k: v for k, v in steps.items() if isinstance(v, dict)} if isinstance(steps, dict) else {}

    @property
    def ran(self) -> list[str]:
        return [n for n, s in self.steps.items() if s["status"] == "ran"]

    def to_dict(self) -> dict[str, Any]:
        doc: dict[str, Any] = {"tool": "dshub", "version": VERSION, "pipeline": self.pipeline,
                               "pipeline_sha256": self.pipeline_sha256, "source": self.source, "ok": self.ok,
                               "dry_run": self.dry_run, "order": list(self.steps), "steps": self.steps}
        if self.dry_run:
            doc["plan"] = self.plan
        else:
            doc["report"] = str(self.path)
            doc["ran"] = self.ran
        return doc

    def save(self) -> None:
        write_json_atomic(self.path, self.to_dict())
