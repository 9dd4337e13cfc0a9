"""Secrets never leave: URLs lose their credentials and token query values, text loses anything equal to a token.

`redact_url` / `scrub` are applied to every message dshub builds from a URL or a server's answer; `RedactingFilter`
does the same to the records of the libraries dshub calls (huggingface_hub's retry warnings name the URL).
"""
from __future__ import annotations

import logging
import os
import re
from typing import Iterable
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

MASK = "***"
# query parameters that carry a credential (compared lower-case)
SECRET_PARAMS = frozenset({
    "token", "access_token", "api_key", "apikey", "key", "password", "secret", "auth", "authorization", "sig",
    "signature", "x-amz-signature", "x-amz-credential", "x-amz-security-token", "hf_token",
})
URL_RE = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*://[^\s'\"<>]+")
BEARER_RE = re.compile(r"(?i)\b(bearer|token)\s+[A-Za-z0-9._~+/=-]{8,}")
HF_TOKEN_RE = re.compile(r"\bhf_[A-Za-z0-9]{8,}")
LOGGERS = ("huggingface_hub", "httpx", "httpx2", "httpcore", "urllib3", "modelscope", "modelscope_hub")


def redact_url(url: str) -> str:
    """`url` without user:password@ and with the values of credential query parameters masked."""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        return MASK
    host = parts.hostname or ""
    if port:
        host += f":{port}"
    netloc = host if (parts.username is not None or parts.password is not None) else parts.netloc
    query = parts.query
    if query:
        pairs = parse_qsl(query, keep_blank_values=True)
        if any(k.lower() in SECRET_PARAMS for k, _ in pairs):
            query = urlencode([(k, MASK if k.lower() in SECRET_PARAMS else v) for k, v in pairs], safe="*")
    return urlunsplit((parts.scheme, netloc, parts.path, query, parts.fragment))


def known_tokens() -> list[str]:
    """The tokens this process may send: HF_TOKEN (and its old name), huggingface_hub's token file, ModelScope's."""
    found = [os.environ.get(v) for v in ("HF_TOKEN", "HUGGING_FACE_HUB_TOKEN", "MODELSCOPE_API_TOKEN")]
    try:
        from huggingface_hub import get_token

        found.append(get_token())
    except Exception:  # noqa: BLE001 - redaction must never be the thing that fails
        pass
    return [t for t in found if t]


def scrub(text: str, secrets: Iterable[str | None] = ()) -> str:
    """`text` with every URL redacted and every known token (and `secrets`) masked."""
    text = URL_RE.sub(lambda m: redact_url(m.group(0)), text)
    for secret in sorted({s for s in (*known_tokens(), *secrets) if s and len(s) >= 4}, key=len, reverse=True):
        text = text.replace(secret, MASK)
    text = BEARER_RE.sub(lambda m: f"{m.group(1)} {MASK}", text)
    return HF_TOKEN_RE.sub(MASK, text)


class RedactingFilter(logging.Filter):
    """Rewrites a record's message through `scrub` before any handler sees it."""

    def __init__(self, secrets: Iterable[str | None] = ()):
        super().__init__("dshub-redact")
        self.secrets = [s for s in secrets if s]

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # noqa: BLE001 - a record that cannot format is left to logging's own handling
            return True
        record.msg, record.args = scrub(message, self.secrets), None
        return True


_installed: dict[str, RedactingFilter] = {}


def install_log_redaction(secrets: Iterable[str | None] = ()) -> None:
    """Put a `RedactingFilter` on every logger (and the handlers) of the libraries in LOGGERS; idempotent."""
    secrets = [s for s in secrets if s]
    manager = logging.Logger.manager
    names = [n for n in list(manager.loggerDict) if n.split(".")[0] in LOGGERS] + list(LOGGERS)
    for name in dict.fromkeys(names):
        logger = logging.getLogger(name)
        flt = _installed.get(name)
        if flt is None:
            flt = _installed[name] = RedactingFilter(secrets)
            logger.addFilter(flt)
        else:
            flt.secrets = list(dict.fromkeys([*flt.secrets, *secrets]))
        for handler in logger.handlers:
            if flt not in handler.filters:
                handler.addFilter(flt)
