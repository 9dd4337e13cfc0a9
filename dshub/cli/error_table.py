"""The CLI's one exception table: each failure a command lets escape becomes one message on stderr and an exit code.

Commands never catch: they call library functions and let the errors rise to the app's group (`dshub.cli.app`),
which passes them to `handle`. Rows are tried in order, so a subclass comes before its base (a test holds this).
`DSHUB_DEBUG=1` adds the traceback. With `--json`, a failure that has not printed its document yet prints one: the envelope (dshub.cli.output) and
`"ok": false, "error": {"code", "message", "path", "tensor", "exit_code", "type"[, "detail"]}` (path and tensor null
where the error has none).
Exit codes: 0 ok, 1 the check or job failed, 2 usage error, 130 interrupted.
"""
from __future__ import annotations

import difflib
import re
import traceback
from dataclasses import dataclass
from typing import Any, Callable

import typer
from rich.markup import escape

from dshub import constants
from dshub.cli.output import RUN, err_console, error_code, failure, print_json
from dshub.errors import DshubError, UsageError
from dshub.hub.validate import printable
from dshub.quant.registry import UnknownName

try:  # typer >= 0.26 carries its own copy of click: an exception of the click package itself is not typer's to handle
    from click import ClickException as _ClickPackageError
except ImportError:  # pragma: no cover - click is not installed (typer >= 0.26 does not need it)
    _ClickPackageError = None

# typer's usage errors (typer.BadParameter and the parser's own): click's ClickException before typer 0.26, typer's copy since
TyperClickError: type[Exception] = next(c for c in typer.BadParameter.__mro__ if c.__name__ == "ClickException")


def _os_message(e: BaseException) -> str:
    assert isinstance(e, OSError)
    return f"{e.filename or ''}: {e.strerror or e}".lstrip(": ")


_QUOTED = re.compile(r"'([^']+)'")
_KNOWN = re.compile(r"(?:\bknown:|\bchoose one of)\s+(?P<names>[^;()]+?)(?:[;(]|\.\s|\.$|$)")


def closest(value: str, known: list[str]) -> str | None:
    """The known name a mistyped `value` most likely meant (case-insensitive), or None."""
    by_lower = {k.lower(): k for k in known}
    match = difflib.get_close_matches(value.lower(), list(by_lower), n=1, cutoff=0.6)
    return by_lower[match[0]] if match else None


def with_suggestion(e: BaseException) -> str:
    """The message of an unknown-name error, with "did you mean ...?" for a near miss: the value is the message's
    first quoted word, the names those it lists after "known:" or "choose one of"."""
    message = str(e)
    value, known = getattr(e, "name", None), getattr(e, "known", None)
    if not (isinstance(value, str) and known):
        quoted, listed = _QUOTED.search(message), _KNOWN.search(message)
        if not (quoted and listed):
            return message
        value, known = quoted[1], [n.strip() for n in listed["names"].split(",") if n.strip()]
    guess = closest(value, list(known))
    return f"{message}; did you mean {guess!r}?" if guess and guess != value else message


def _click_message(e: BaseException) -> str:
    return e.format_message()  # type: ignore[attr-defined]


@dataclass(frozen=True)
class Rule:
    """Exceptions of `kind` exit with `code` (a number, or read from the exception) after `message(e)` on stderr.
    `code=None` marks typer's own control flow: re-raised, typer prints it and exits (2 for usage errors, as always)."""

    kind: type[BaseException]
    code: int | Callable[[Any], int] | None
    message: Callable[[BaseException], str] = str


ERRORS: tuple[Rule, ...] = (
    Rule(typer.Exit, None),  # a command chose its exit code (verify, download: after printing their report)
    Rule(typer.Abort, None),
    Rule(TyperClickError, None, _click_message),  # usage errors typer raised or formats itself: exit 2
    *((Rule(_ClickPackageError, lambda e: e.exit_code, _click_message),) if _ClickPackageError not in (None, TyperClickError) else ()),
    Rule(UsageError, 2, with_suggestion),  # an unknown name among the known ones: "did you mean" for a near miss
    Rule(DshubError, lambda e: e.exit_code),  # every dshub error class says its code: UsageError and PolicyError 2, the rest 1
    Rule(UnknownName, 2, with_suggestion),  # a registry name (codec, family, engine, ...) that does not exist: the message lists the known ones
    Rule(FileNotFoundError, 1, _os_message),
    Rule(PermissionError, 1, _os_message),
    Rule(IsADirectoryError, 1, _os_message),
    Rule(KeyboardInterrupt, 130, lambda e: "interrupted"),
)


def rule_for(e: BaseException) -> Rule | None:
    """The first row that `e` is an instance of; None for exceptions that are bugs (they keep their traceback)."""
    return next((r for r in ERRORS if isinstance(e, r.kind)), None)


def exit_code(e: BaseException) -> int | None:
    """The exit code the CLI gives `e`; None where typer decides (its own exceptions) or for a bug."""
    rule = rule_for(e)
    if rule is None or rule.code is None:
        return None
    return rule.code if isinstance(rule.code, int) else rule.code(e)


def error_document(e: BaseException, code: int, message: str) -> dict[str, Any]:
    """The `error` object `--json` prints for a failure: a stable code, the message and the data the error carries."""
    detail = e.detail if isinstance(e, DshubError) else None
    return failure(message, code=error_code(type(e)), path=getattr(e, "path", None) or getattr(e, "filename", None),
                   tensor=getattr(e, "tensor", None), exit_code=code, type=type(e).__name__,
                   **({"detail": str(detail)} if detail is not None else {}))


def print_failure(e: BaseException, code: int, message: str) -> None:
    """The one document a `--json` run still owes: what the command left for a failure, and the error."""
    if RUN.json and not RUN.documents:
        print_json(RUN.on_failure, error=error_document(e, code, message))


def handle(e: BaseException) -> int | None:
    """Report `e` (one line on stderr; the JSON document `--json` still owes) and return its exit code.
    None: not the table's to report (typer's own exceptions, bugs): the caller re-raises it."""
    rule = rule_for(e)
    if rule is None:
        return None
    if rule.code is None:
        if isinstance(e, TyperClickError):
            print_failure(e, e.exit_code, rule.message(e))  # type: ignore[attr-defined]
        return None
    code = exit_code(e)
    assert code is not None
    message = rule.message(e)
    if constants.DSHUB_DEBUG:
        traceback.print_exception(e)
    err_console.print(f"[bold red]error:[/] {escape(printable(message))}", soft_wrap=True)  # messages may hold [brackets], control characters
    print_failure(e, code, message)
    return code
