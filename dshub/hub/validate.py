"""Hub metadata is hostile until checked: commit ids, digests, sizes and file paths, before any of them becomes a path.

One table per kind of value (`PATH_RULES`), checked in the same way for every source and both layouts; `inside`
is the last word before a file is opened, written, linked or removed: the resolved path must stay under its root.
`printable` is how a hub-supplied value is named in a message: control characters escaped, never raw.
"""
from __future__ import annotations

import os
import re
import unicodedata
from pathlib import Path, PurePosixPath
from typing import Callable, Iterable

from dshub.errors import HubMetadataRefused

COMMIT_RE = re.compile(r"^[0-9a-f]{40}$")
SHA256_RE = re.compile(r"^[0-9a-f]{64}$")
GIT_SHA1_RE = COMMIT_RE
REF_PART_RE = re.compile(r"^[A-Za-z0-9._+@-]+$")  # one component of a branch or tag name kept under refs/
RESERVED_DIRS = (".dshub", ".git")  # dshub's own state and git's: never a hub file's folder, at any depth
RESERVED_PREFIXES = (".cache/huggingface/",)  # huggingface_hub's local-dir bookkeeping
MAX_PATH_BYTES = 4096
MAX_PART_BYTES = 255
MAX_SIZE = 1 << 50  # 1 PiB: larger than any checkpoint file, smaller than anything that overflows arithmetic


def printable(value: object) -> str:
    """`value` as text safe for a terminal: control and line-separator characters as `\\xNN` / `\\uNNNN` escapes."""
    text = value if isinstance(value, str) else repr(value)
    return "".join(_escape_char(c) for c in text)


def _escape_char(c: str) -> str:
    if unicodedata.category(c) not in ("Cc", "Zl", "Zp") and c not in "\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069":
        return c
    return f"\\x{ord(c):02x}" if ord(c) < 0x100 else f"\\u{ord(c):04x}"


def _bad_char(c: str) -> bool:
    return _escape_char(c) != c


# (test, what is wrong): the first rule a path fails names the refusal
PATH_RULES: tuple[tuple[Callable[[str, tuple[str, ...]], bool], str], ...] = (
    (lambda p, parts: not p, "is empty"),
    (lambda p, parts: "\0" in p, "holds a NUL byte"),
    (lambda p, parts: any(_bad_char(c) for c in p), "holds a control character"),
    (lambda p, parts: "\\" in p, "holds a backslash"),
    (lambda p, parts: p.startswith("/"), "is absolute"),
    (lambda p, parts: ".." in parts, "escapes the target directory (`..`)"),
    (lambda p, parts: any(x in ("", ".") for x in parts), "has an empty or `.` component"),
    (lambda p, parts: len(p.encode("utf-8", "surrogatepass")) > MAX_PATH_BYTES
        or any(len(x.encode("utf-8", "surrogatepass")) > MAX_PART_BYTES for x in parts), "is too long"),
    (lambda p, parts: any(x.lower() in RESERVED_DIRS for x in parts), "is under a reserved folder (.dshub/, .git/)"),
    (lambda p, parts: any(p.lower().startswith(r) for r in RESERVED_PREFIXES), "is under .cache/huggingface/"),
)


def path_problem(path: object) -> str | None:
    """What is wrong with a hub file path, or None when it is a plain relative path dshub may write."""
    if not isinstance(path, str):
        return "is not a string"
    parts = tuple(path.split("/"))
    return next((why for test, why in PATH_RULES if test(path, parts)), None)


def check_path(repo_id: str, path: object, *, what: str = "file path") -> str:
    """`path` when it is safe to use under a download root; else HubMetadataRefused naming the repo and the value."""
    if (why := path_problem(path)) is not None:
        raise _refused(repo_id, what, path, why)
    return path  # type: ignore[return-value]


def check_commit(repo_id: str, commit: object) -> str:
    """A commit id from the hub: exactly 40 lowercase hex digits (it becomes a snapshot folder's name)."""
    if not isinstance(commit, str) or not COMMIT_RE.match(commit):
        raise _refused(repo_id, "commit id", commit, "is not 40 hex digits")
    return commit


def check_ref(repo_id: str, revision: str) -> str:
    """A branch or tag name kept as a file under refs/: components of letters, digits and `._+@-` only."""
    parts = revision.split("/")
    if not all(REF_PART_RE.match(p) and p not in (".", "..") for p in parts):
        raise _refused(repo_id, "revision", revision, "cannot be stored as a ref name")
    return revision


# (field, pattern, what a good value is); None is allowed: not every file has every digest
DIGEST_RULES: tuple[tuple[str, re.Pattern[str], str], ...] = (
    ("sha256", SHA256_RE, "64 hex digits (sha256)"),
    ("blob_id", GIT_SHA1_RE, "40 hex digits (git sha1)"),
)


def check_file(repo_id: str, path: object, size: object, digests: dict[str, object]) -> None:
    """One listing entry: a safe path, a size that is a non-negative integer, digests of the right form."""
    check_path(repo_id, path)
    if isinstance(size, bool) or not isinstance(size, int) or not 0 <= size <= MAX_SIZE:
        raise _refused(repo_id, f"size of {printable(path)}", size, "is not a byte count")
    for name, rx, good in DIGEST_RULES:
        value = digests.get(name)
        if value is not None and not (isinstance(value, str) and rx.match(value)):
            raise _refused(repo_id, f"{name} of {printable(path)}", value, f"is not {good}")


def check_unique(repo_id: str, paths: Iterable[str]) -> None:
    """No path listed twice, none both a file and a folder (`a` and `a/b`), compared case-insensitively."""
    seen: set[str] = set()
    folders: set[str] = set()
    for p in paths:
        key = p.lower()
        if key in seen:
            raise _refused(repo_id, "file path", p, "is listed twice")
        seen.add(key)
        parts = key.split("/")
        folders.update("/".join(parts[:i]) for i in range(1, len(parts)))
    if clash := seen & folders:
        raise _refused(repo_id, "file path", sorted(clash)[0], "is listed as a file and as a folder")


def inside(root: Path, path: Path, *, follow: bool = True) -> Path:
    """`path`, once its resolved location (of the path itself, or with `follow=False` of its folder) is under `root`.

    Raises HubMetadataRefused otherwise: a symlink or `..` that leads out of the target is never followed.
    """
    base = os.path.realpath(root)
    where = os.path.realpath(path if follow else path.parent)
    if where != base and not where.startswith(base.rstrip(os.sep) + os.sep):
        raise HubMetadataRefused(f"{printable(str(path))} resolves outside {printable(str(root))}; refused",
                                 path=str(root), show_path="")
    return path


def under(root: Path, rel: str, *, follow: bool = True, bound: Path | None = None) -> Path:
    """`root/rel` for a checked relative path, resolved and kept inside `bound` (default `root`)."""
    check_path(str(root), rel)
    return inside(bound or root, root / PurePosixPath(rel), follow=follow)


def _refused(repo_id: str, what: str, value: object, why: str) -> HubMetadataRefused:
    shown = repr(value) if isinstance(value, str) else printable(value)
    return HubMetadataRefused(f"{printable(repo_id)}: hub {what} {printable(shown)} {why}; refused, nothing written",
                              show_path="")
