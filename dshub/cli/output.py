"""Where command output goes: results on stdout (`out_console`, `print_json`), messages on stderr (`err_console`).

`--json` promises exactly one JSON document on stdout, on success and on failure. Every document carries the same
envelope (`schema_version`, `dshub_version`, `command`, `ok`); a failure carries `error` with `code`, `message`,
`path` and `tensor` (JSON Schemas: dshub/schemas/). `RUN` remembers, for the one command being run, whether `--json`
was given, whether a document went out already, and what a failure's document should carry besides the error (a
refused plan), so the error table knows whether a failure still owes one and what it holds.
"""
from __future__ import annotations

import json
import re
import sys
from dataclasses import dataclass, field
from typing import Any

from rich.console import Console

from dshub.constants import VERSION

err_console = Console(stderr=True, highlight=False)
out_console = Console(highlight=False)

SCHEMA_VERSION = 1  # bumped when a document loses or renames a key (adding keys keeps it)
JSON_FLAG = "--json"


@dataclass
class Run:
    """The state of one CLI invocation, reset by the app before each command."""

    json: bool = False
    documents: int = 0
    command: str | None = None
    on_failure: dict[str, Any] = field(default_factory=dict)


RUN = Run()


def start_run(args: list[str] | None = None) -> None:
    """Reset for a new invocation. `args` (the raw words after `dshub`) tell whether `--json` was asked for before
    any option is parsed, so a usage error (an unknown option, a bad value) still gets its JSON document."""
    words = list(args or [])
    words = words[:words.index("--")] if "--" in words else words
    RUN.json, RUN.documents, RUN.on_failure = JSON_FLAG in words, 0, {}
    RUN.command = next((w for w in words if not w.startswith("-")), None)


def json_requested(value: bool) -> bool:
    """Callback of `--json` (eager, so it has run before any other option can fail)."""
    RUN.json = RUN.json or bool(value)
    return value


def on_failure(doc: dict[str, Any]) -> None:
    """What the failure document should carry besides the error, should the command fail after this point."""
    RUN.on_failure = dict(doc)


def envelope(ok: bool) -> dict[str, Any]:
    return {"schema_version": SCHEMA_VERSION, "dshub_version": VERSION, "command": RUN.command, "ok": ok}


def error_code(kind: type) -> str:
    """A stable machine-readable name for an error class: `ShardTruncated` -> `shard_truncated`."""
    return re.sub(r"(?<=[a-z0-9])(?=[A-Z])", "_", kind.__name__).lower()


def failure(message: str, *, code: str = "check_failed", path: object = None, tensor: object = None,
            exit_code: int = 1, **extra: Any) -> dict[str, Any]:
    """The `error` object of a failure document."""
    return {"code": code, "message": message, "path": None if path is None else str(path),
            "tensor": None if tensor is None else str(tensor), "exit_code": exit_code, **extra}


def print_json(doc: dict[str, Any], error: dict[str, Any] | None = None) -> None:
    """One JSON document on stdout: the envelope, the command's result, and `error` when it failed."""
    body = {**envelope(error is None and doc.get("ok", True) is not False), **doc}
    if error is not None:
        body.update(ok=False, error=error)
    sys.stdout.write(json.dumps(body, indent=2, sort_keys=True, default=str) + "\n")
    sys.stdout.flush()
    RUN.documents += 1
