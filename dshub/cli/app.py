"""The typer app, shared CLI options, and the error -> exit-code mapping. Command modules import `app` from here."""
from __future__ import annotations

import json
import sys
import traceback
from typing import Annotated, Any, Callable

import typer
from rich.console import Console
from rich.markup import escape

from dshub import constants
from dshub.errors import DshubError

app = typer.Typer(
    name="dshub",
    help="Fetch, validate, convert and serve DeepSeek-family checkpoints.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
err_console = Console(stderr=True, highlight=False)
out_console = Console(highlight=False)

JsonOpt = Annotated[bool, typer.Option("--json", help="Print one JSON document on stdout.")]
DryRunOpt = Annotated[bool, typer.Option("--dry-run", help="Print the plan and stop before writing anything.")]
WorkersOpt = Annotated[int, typer.Option("--workers", min=1, help="Parallel worker threads.")]
DeviceOpt = Annotated[str, typer.Option("--device", help="auto | cpu | cuda")]

# Exceptions that are not ours but are the user's fault, mapped to (exit code, message prefix). Subclass before base.
FOREIGN_ERRORS: list[tuple[type[BaseException], int]] = [
    (FileNotFoundError, 1),
    (PermissionError, 1),
    (IsADirectoryError, 1),
]


def print_json(doc: Any) -> None:
    """Exactly one JSON document on stdout."""
    sys.stdout.write(json.dumps(doc, indent=2, sort_keys=True, default=str) + "\n")
    sys.stdout.flush()


def fail(message: str, code: int = 1) -> None:
    """One-line error on stderr, then exit with `code`."""
    err_console.print(f"[bold red]error:[/] {escape(message)}", soft_wrap=True)  # messages may hold [brackets]
    raise typer.Exit(code)


def guarded(fn: Callable[[], Any]) -> Any:
    """Run a command body, turning dshub (and a few OS) errors into one-line messages and exit codes."""
    try:
        return fn()
    except typer.Exit:
        raise
    except DshubError as e:
        if constants.DSHUB_DEBUG:
            traceback.print_exc()
        fail(str(e), e.exit_code)
    except KeyboardInterrupt:
        fail("interrupted", 130)
    except tuple(t for t, _ in FOREIGN_ERRORS) as e:  # type: ignore[misc]
        if constants.DSHUB_DEBUG:
            traceback.print_exc()
        code = next(c for t, c in FOREIGN_ERRORS if isinstance(e, t))
        fail(f"{getattr(e, 'filename', '') or ''}: {e.strerror or e}".lstrip(": "), code)
