"""Where command output goes: results on stdout (`out_console`, `print_json`), messages on stderr (`err_console`).

`--json` promises exactly one JSON document on stdout, on success and on failure. `RUN` remembers, for the one command
being run, whether `--json` was given and whether a document went out already, so the error table knows whether a
failure still owes one.
"""
from __future__ import annotations

import json
import sys
from dataclasses import dataclass
from typing import Any

from rich.console import Console

err_console = Console(stderr=True, highlight=False)
out_console = Console(highlight=False)


@dataclass
class Run:
    """The state of one CLI invocation, reset by the app before each command."""

    json: bool = False
    documents: int = 0


RUN = Run()


def start_run() -> None:
    RUN.json, RUN.documents = False, 0


def json_requested(value: bool) -> bool:
    """Callback of `--json` (eager, so it has run before any other option can fail)."""
    RUN.json = bool(value)
    return value


def print_json(doc: Any) -> None:
    """One JSON document on stdout."""
    sys.stdout.write(json.dumps(doc, indent=2, sort_keys=True, default=str) + "\n")
    sys.stdout.flush()
    RUN.documents += 1
