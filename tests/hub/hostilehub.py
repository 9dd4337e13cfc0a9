"""A misbehaving hub on 127.0.0.1 (stdlib http.server in a thread), separate from the friendly `tests/support/fakehub`.

It answers the three calls a dshub download makes (revision info, the recursive tree, resolve) with whatever a test
scripts: any commit id, raw tree entries (hostile paths, digests, sizes), endless or cross-host pagination, silence,
401/403 answers, the Authorization header echoed back, a slow body. Requests are logged for the tests' assertions.
"""
from __future__ import annotations

import json
import re
import socket
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import unquote, urlsplit

from tests.support.fakehub import git_sha1, sha256
from tests.support.loopback import start_server

COMMIT = "0123456789abcdef0123456789abcdef01234567"


def entry(path: str, data: bytes, *, lfs: bool | None = None) -> dict[str, Any]:
    """A tree entry as the Hub writes it; LFS (with a sha256 oid) for weight-like names unless told."""
    e: dict[str, Any] = {"type": "file", "oid": git_sha1(data), "size": len(data), "path": path}
    if lfs if lfs is not None else path.endswith((".bin", ".safetensors")):
        e["lfs"] = {"oid": sha256(data), "size": len(data), "pointerSize": 134}
    return e


@dataclass
class Script:
    """What the hub says. `files` serve bodies by path; `tree` overrides the listing with raw entries."""

    files: dict[str, bytes] = field(default_factory=dict)
    commits: dict[str, str] = field(default_factory=lambda: {"main": COMMIT})  # revision -> what `sha` says
    trees: dict[str, list[dict[str, Any]]] = field(default_factory=dict)  # commit -> raw entries (else from files)
    files_at: dict[str, dict[str, bytes]] = field(default_factory=dict)  # commit -> files (else `files`)
    silent: set[str] = field(default_factory=set)  # routes that never answer: "info", "tree", "file"
    endless_pages: bool = False
    next_host: str | None = None  # a Link to this origin instead of our own
    status: dict[str, tuple[int, dict[str, str]]] = field(default_factory=dict)  # route or path -> (status, headers)
    echo_auth: bool = False  # a 206 whose Content-Range carries the request's Authorization header
    rate_bytes_per_s: int | None = None


@dataclass
class Hit:
    route: str
    path: str
    auth: str | None
    sent: int
    range: str | None = None


class HostileHub:
    """`with HostileHub() as hub:`; `hub.endpoint` goes into HF_ENDPOINT; `hub.script` says what it answers."""

    def __init__(self) -> None:
        self.script = Script()
        self.hits: list[Hit] = []
        self.lock = threading.Lock()
        self.stop = threading.Event()
        self._server: ThreadingHTTPServer | None = None

    def __enter__(self) -> "HostileHub":
        hub = self

        class Bound(_Handler):
            owner = hub

        self._server = start_server(Bound, "hostilehub")
        return self

    def __exit__(self, *exc: object) -> None:
        assert self._server is not None
        self.stop.set()  # silent handlers return
        self._server.shutdown()
        self._server.server_close()

    @property
    def endpoint(self) -> str:
        assert self._server is not None
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def count(self, route: str) -> int:
        with self.lock:
            return sum(1 for h in self.hits if h.route == route)

    def fresh_gets(self, path: str) -> int:
        """GETs of `path` that started at byte 0 (not a resume)."""
        with self.lock:
            return sum(1 for h in self.hits if h.route == "file" and h.path == path and not h.range)

    def sent(self, path: str) -> int:
        with self.lock:
            return sum(h.sent for h in self.hits if h.route == "file" and h.path == path)


class _Handler(BaseHTTPRequestHandler):
    owner: HostileHub
    protocol_version = "HTTP/1.1"

    def log_message(self, fmt: str, *args: object) -> None:
        pass

    def setup(self) -> None:
        super().setup()
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)  # no 40 ms Nagle stall per answer

    ROUTES = (
        ("info", re.compile(r"^/api/models/[^/]+/[^/]+/revision/([^/]+)$")),
        ("tree", re.compile(r"^/api/models/[^/]+/[^/]+/tree/([^/]+)$")),
        ("file", re.compile(r"^/[^/]+/[^/]+/resolve/([^/]+)/(.+)$")),
    )

    def do_GET(self) -> None:  # noqa: N802 - http.server's name
        url = urlsplit(self.path)
        for route, rx in self.ROUTES:
            if m := rx.match(url.path):
                args = [unquote(g) for g in m.groups()]
                try:
                    self._answer(route, args, url.query)
                except (BrokenPipeError, ConnectionResetError):
                    pass
                return
        self._send(404, b"{}", route="none")

    do_HEAD = do_GET

    def _answer(self, route: str, args: list[str], query: str) -> None:
        s = self.owner.script
        if route in s.silent:
            self._log(route, args[-1], 0)
            self.owner.stop.wait(30)  # never answers while the test runs
            return
        key = args[-1] if route == "file" else route
        if key in s.status:
            code, headers = s.status[key]
            self._send(code, json.dumps({"error": headers.get("X-Error-Message", "refused")}).encode(), route, key, headers)
            return
        getattr(self, "_" + route)(*args, query=query)

    def _info(self, rev: str, query: str) -> None:
        sha = self.owner.script.commits.get(rev, rev)
        self._send(200, json.dumps({"id": "x", "sha": sha, "siblings": []}).encode(), "info", rev)

    def _tree(self, commit: str, query: str) -> None:
        s = self.owner.script
        entries = s.trees.get(commit) or [entry(p, d) for p, d in sorted(s.files_at.get(commit, s.files).items())]
        headers = {}
        if s.endless_pages or s.next_host:
            n = int(query.rsplit("cursor=", 1)[1]) if "cursor=" in query else 0
            origin = s.next_host or self.owner.endpoint
            headers["Link"] = f'<{origin}{urlsplit(self.path).path}?cursor={n + 1}>; rel="next"'
            entries = [dict(e, path=f"p{n}/{e['path']}") for e in entries[:1]]
        self._send(200, json.dumps(entries).encode(), "tree", commit, headers)

    def _file(self, commit: str, path: str, query: str) -> None:
        s = self.owner.script
        data = s.files_at.get(commit, s.files).get(path, b"")
        if s.echo_auth:
            auth = self.headers.get("Authorization", "")
            self._send(206, data, "file", path, {"Content-Range": f"bytes 0-{len(data) - 1}/{auth}"})
            return
        start = 0
        if m := re.match(r"bytes=(\d+)-$", self.headers.get("Range", "")):
            start = int(m.group(1))
        body = data[start:]
        headers = {"ETag": f'"{sha256(data)}"', "Accept-Ranges": "bytes"}
        if start:
            headers["Content-Range"] = f"bytes {start}-{len(data) - 1}/{len(data)}"
        self._send(206 if start else 200, body, "file", path, headers)

    def _send(self, code: int, body: bytes, route: str, path: str = "", headers: dict[str, str] | None = None) -> None:
        self.send_response(code)
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Content-Type", "application/json" if route != "file" else "application/octet-stream")
        self.end_headers()
        hit = self._log(route, path, 0)  # logged before the body: a client that has it all sees the hit
        sent = 0
        if self.command != "HEAD":
            rate = self.owner.script.rate_bytes_per_s
            for i in range(0, len(body), 64 << 10):
                chunk = body[i:i + (64 << 10)]
                sent += len(chunk)
                with self.owner.lock:
                    hit.sent = sent  # counted before the write, so a client never holds bytes the log lacks
                self.wfile.write(chunk)
                if rate:
                    self.wfile.flush()
                    time.sleep(len(chunk) / rate)

    def _log(self, route: str, path: str, sent: int) -> Hit:
        hit = Hit(route, path, self.headers.get("Authorization"), sent, self.headers.get("Range"))
        with self.owner.lock:
            self.owner.hits.append(hit)
        return hit
