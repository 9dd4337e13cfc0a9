"""One file over HTTP into a persistent partial file, resumed by byte range across retries and across runs.

huggingface_hub (>= 1.18) deletes its partial file when a transfer fails; this keeps ours (`*.part`) and asks for
`Range: bytes=<have>-` next time. Bytes are hashed as they arrive (the existing prefix is hashed once from disk), so
a finished transfer costs no second read. Requests go through huggingface_hub's session (proxies, headers,
retry on 429/5xx); nothing here logs headers.
"""
from __future__ import annotations

import errno
import hashlib
import os
import re
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from dshub.errors import HubError, OutputError, ServedWrongSize, UsageError
from dshub.hub.hashing import CHUNK, git_blob_hasher

RETRY_STATUS = (408, 429, 500, 502, 503, 504)
CONTENT_RANGE_RE = re.compile(r"bytes (\d+)-(\d+)/(\d+|\*)")


def transport_errors() -> tuple[type[BaseException], ...]:
    """Exceptions that mean "the connection failed", from the HTTP module huggingface_hub itself uses."""
    try:
        from huggingface_hub.utils import httpx  # httpx on 1.x, httpx2 on 2.x (exported since 1.31)
    except ImportError:  # pragma: no cover - older huggingface_hub
        import httpx  # type: ignore[no-redef]
    return (ConnectionError, TimeoutError, httpx.TransportError)


def read_timeout() -> float:
    """HF_HUB_DOWNLOAD_TIMEOUT (seconds without data before a transfer counts as stalled), read now."""
    from huggingface_hub import constants as hfc

    return env_seconds("HF_HUB_DOWNLOAD_TIMEOUT", float(hfc.HF_HUB_DOWNLOAD_TIMEOUT))


def env_seconds(name: str, default: float) -> float:
    """A timeout from the environment: a positive number of seconds; anything else is a usage error."""
    value = _env_number(name, default, float)
    if not value > 0 or value != value or value == float("inf"):
        raise UsageError(f"{name}={os.environ.get(name)!r}: expected a positive number of seconds")
    return value


@dataclass(frozen=True)
class RetryPolicy:
    """How hard to try: attempts without progress, and the first wait (doubling, capped at 8 s)."""

    attempts: int = 5
    wait_s: float = 1.0

    @classmethod
    def from_env(cls) -> "RetryPolicy":
        """DSHUB_HTTP_RETRIES and DSHUB_HTTP_RETRY_WAIT (seconds), read now; a value that is not a number is a usage error."""
        return cls(_env_number("DSHUB_HTTP_RETRIES", cls.attempts, int), _env_number("DSHUB_HTTP_RETRY_WAIT", cls.wait_s, float))


def _env_number(name: str, default: float, kind: type) -> Any:
    raw = os.environ.get(name)
    if not raw:
        return default
    try:
        value = kind(raw)
    except ValueError:
        value = None
    if value is None or value < 0:
        raise UsageError(f"{name}={raw!r}: expected a non-negative {kind.__name__}")
    return value


@dataclass
class Digests:
    """Running digests of one file: sha256 always, git blob sha1 when asked."""

    sha256: "hashlib._Hash"
    git_sha1: "hashlib._Hash | None"

    @classmethod
    def start(cls, size: int, want_git_sha1: bool) -> "Digests":
        return cls(hashlib.sha256(), git_blob_hasher(size) if want_git_sha1 else None)

    def update(self, data: bytes | memoryview) -> None:
        self.sha256.update(data)
        if self.git_sha1 is not None:
            self.git_sha1.update(data)

    def hexdigests(self) -> tuple[str, str | None]:
        return self.sha256.hexdigest(), self.git_sha1.hexdigest() if self.git_sha1 else None


def _hash_prefix(part: Path, digests: Digests) -> int:
    """Feed the bytes already in `part` to the digests; returns how many."""
    n = 0
    with open(part, "rb") as f:
        while chunk := f.read(CHUNK):
            digests.update(chunk)
            n += len(chunk)
    return n


def fetch_to_part(
    url: str,
    part: Path,
    size: int,
    headers: dict[str, str],
    *,
    want_git_sha1: bool = False,
    on_bytes: Callable[[int], None] | None = None,
    retry: RetryPolicy = RetryPolicy(),
    label: str = "",
) -> tuple[str, str | None]:
    """Complete `part` to `size` bytes from `url`, resuming from what it holds. Returns (sha256, git sha1 | None).

    `on_bytes(n)` is told about bytes received (negative when a server ignored Range and the file restarts).
    Raises HubError after `retry.attempts` failures in a row without progress; the partial file stays for the next run.
    """
    from huggingface_hub.utils import hf_raise_for_status, http_stream_backoff

    label = label or part.name
    part.parent.mkdir(parents=True, exist_ok=True)
    if part.exists() and part.stat().st_size > size:
        part.unlink()
    part.touch()
    digests = Digests.start(size, want_git_sha1)
    have = _hash_prefix(part, digests)
    failures = 0
    while have < size:
        req = dict(headers)
        if have:
            req["Range"] = f"bytes={have}-"
        before = have
        try:
            with http_stream_backoff(
                "GET", url, headers=req, max_retries=retry.attempts, base_wait_time=retry.wait_s,
                retry_on_status_codes=RETRY_STATUS,
                retry_on_exceptions=(),  # connection failures are retried below, resuming from the bytes we have
                timeout=read_timeout(),  # a stalled transfer times out and resumes instead of hanging at 99%
            ) as resp:
                hf_raise_for_status(resp)
                restart = _check_response(resp, have, size, label)
                if restart:
                    if on_bytes:
                        on_bytes(-have)
                    with open(part, "wb"):
                        pass
                    digests, have = Digests.start(size, want_git_sha1), 0
                with open(part, "ab") as f:
                    try:
                        for chunk in resp.iter_bytes():  # as it arrives: a cut loses nothing received
                            if have + len(chunk) > size:
                                raise ServedWrongSize(f"server sent more than the {size} bytes the hub lists", path=label)
                            f.write(chunk)
                            digests.update(chunk)
                            have += len(chunk)
                            if on_bytes:
                                on_bytes(len(chunk))
                    finally:
                        f.flush()
                        os.fsync(f.fileno())
        except transport_errors() as e:
            failures = 0 if have > before else failures + 1
            if failures > retry.attempts:
                raise HubError(
                    f"transfer failed at byte {have} of {size} ({e.__class__.__name__}); "
                    "run again to resume from there", path=label,
                ) from None
            time.sleep(min(retry.wait_s * 2 ** max(failures - 1, 0), 8.0))
            continue
        except OSError as e:
            if e.errno == errno.ENOSPC:
                raise OutputError(
                    f"disk full after {have} of {size} bytes; the partial file is kept, free space and run again",
                    path=str(part),
                ) from None
            raise
        if have < size:  # the body ended early without a transport error
            failures = 0 if have > before else failures + 1
            if failures > retry.attempts:
                raise HubError(f"server keeps closing the transfer at byte {have} of {size}; run again to resume", path=label)
    return digests.hexdigests()


def _check_response(resp, have: int, size: int, label: str) -> bool:
    """Validate status and length headers; True when the body starts at byte 0 although we asked to resume."""
    length = resp.headers.get("Content-Length")
    if resp.status_code == 206:
        m = CONTENT_RANGE_RE.match(resp.headers.get("Content-Range", ""))
        if not m or int(m.group(1)) != have or (m.group(3) != "*" and int(m.group(3)) != size):
            raise ServedWrongSize(
                f"server answered range {resp.headers.get('Content-Range')!r} to a request from byte {have} "
                f"of {size}", path=label,
            )
        return False
    if length is not None and int(length) != size and "Content-Encoding" not in resp.headers:
        raise ServedWrongSize(
            f"server sends {int(length)} bytes, the hub lists {size} (an HTML error page or LFS pointer?)",
            path=label,
        )
    return have > 0
