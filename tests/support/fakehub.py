"""A small Hugging Face Hub on 127.0.0.1 (stdlib http.server in a thread) that huggingface_hub talks to via HF_ENDPOINT.

Serves the endpoints huggingface_hub uses for downloads: revision info, recursive tree, paths-info, and HEAD/GET
resolve with X-Repo-Commit, ETag / X-Linked-Etag, X-Linked-Size and byte ranges; maps errors with X-Error-Code
like the real hub. Faults are injected per file: cut connections, 5xx answers, wrong bytes, ignored ranges, a
bandwidth cap. Every request is logged so tests can assert what was transferred.
"""
from __future__ import annotations

import hashlib
import json
import re
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, unquote, urlsplit

from tests.support.loopback import start_server

LFS_SUFFIXES = (".safetensors", ".bin", ".gguf")


def git_sha1(data: bytes) -> str:
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@dataclass
class FakeRepo:
    """A repository: commits (sha -> files), refs (branch/tag -> sha), access rules."""

    commits: dict[str, dict[str, bytes]] = field(default_factory=dict)
    refs: dict[str, str] = field(default_factory=dict)
    gated: bool = False  # 403 GatedRepo unless the request carries a valid token

    def add_commit(self, files: dict[str, bytes], *, ref: str = "main") -> str:
        sha = hashlib.sha1(json.dumps({k: sha256(v) for k, v in sorted(files.items())}).encode() + ref.encode()).hexdigest()
        self.commits[sha] = dict(files)
        self.refs[ref] = sha
        return sha

    def resolve(self, rev: str) -> str | None:
        if rev in self.commits:
            return rev
        return self.refs.get(rev)


@dataclass
class Faults:
    """Per-path misbehaviour. Counters decrement on each GET of that path; a count of -1 means always."""

    cut_after: dict[str, tuple[int, int]] = field(default_factory=dict)  # path -> (bytes sent before cutting, times)
    status: dict[str, tuple[int, int]] = field(default_factory=dict)  # path -> (HTTP status, times)
    wrong_bytes: dict[str, tuple[bytes, int]] = field(default_factory=dict)  # path -> (body served instead, times)
    stall_after: dict[str, tuple[int, float, int]] = field(default_factory=dict)  # path -> (byte, seconds silent, times)
    ignore_range: bool = False
    rate_bytes_per_s: int | None = None  # bandwidth cap for GET bodies


@dataclass
class LogEntry:
    method: str
    path: str  # URL path
    file: str | None  # repo file for resolve requests
    range: str | None
    status: int
    sent: int  # body bytes written
    authorized: bool
    token: str | None = None  # the bearer token the request carried (tests assert who sent which)


class FakeHub:
    """Start with `with FakeHub() as hub:`; `hub.endpoint` goes into HF_ENDPOINT."""

    def __init__(self, tokens: tuple[str, ...] = ()):
        self.repos: dict[str, FakeRepo] = {}
        self.faults = Faults()
        self.tokens = set(tokens)
        self.log: list[LogEntry] = []
        self._lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None

    # ---------------------------------------------------------------- lifecycle
    def __enter__(self) -> "FakeHub":
        hub = self

        class Handler(_Handler):
            fake = hub

        self._server = start_server(Handler, "fakehub")
        return self

    def __exit__(self, *exc: object) -> None:
        assert self._server is not None
        self._server.shutdown()
        self._server.server_close()

    @property
    def endpoint(self) -> str:
        assert self._server is not None
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    # ---------------------------------------------------------------- helpers for tests
    def add_repo(self, repo_id: str, files: dict[str, bytes], *, gated: bool = False, ref: str = "main") -> str:
        repo = self.repos.setdefault(repo_id, FakeRepo(gated=gated))
        return repo.add_commit(files, ref=ref)

    def gets(self, file: str | None = None) -> list[LogEntry]:
        with self._lock:
            return [e for e in self.log if e.method == "GET" and e.file is not None and (file is None or e.file == file)]

    def bytes_sent(self, file: str | None = None) -> int:
        return sum(e.sent for e in self.gets(file))

    def clear_log(self) -> None:
        with self._lock:
            self.log.clear()

    def take(self, table: dict, path: str):
        """Consume one use of a fault for `path`; returns its value or None."""
        with self._lock:
            entry = table.get(path)
            if entry is None:
                return None
            *value, times = entry
            if times == 0:
                return None
            if times > 0:
                table[path] = (*value, times - 1)
            return value[0] if len(value) == 1 else tuple(value)


def tree_entry(path: str, data: bytes) -> dict:
    entry = {"type": "file", "oid": git_sha1(data), "size": len(data), "path": path}
    if path.endswith(LFS_SUFFIXES):
        entry["lfs"] = {"oid": sha256(data), "size": len(data), "pointerSize": 134}
    return entry


class _Handler(BaseHTTPRequestHandler):
    fake: FakeHub
    protocol_version = "HTTP/1.1"

    def log_message(self, fmt: str, *args: object) -> None:  # keep test output clean
        pass

    # ---------------------------------------------------------------- plumbing
    def _record(self, status: int, sent: int = 0, file: str | None = None) -> None:
        with self.fake._lock:
            self.fake.log.append(LogEntry(self.command, urlsplit(self.path).path, file, self.headers.get("Range"), status,
                                          sent, self._authorized(), self._bearer()))

    def _bearer(self) -> str | None:
        auth = self.headers.get("Authorization", "")
        return auth[7:] if auth.startswith("Bearer ") else None

    def _authorized(self) -> bool:
        return self._bearer() in self.fake.tokens

    def _send_json(self, doc: object, status: int = 200, file: str | None = None) -> None:
        body = json.dumps(doc).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)
        self._record(status, len(body), file)

    def _error(self, status: int, code: str, message: str, commit: str | None = None, file: str | None = None) -> None:
        body = json.dumps({"error": message}).encode()
        self.send_response(status)
        self.send_header("X-Error-Code", code)
        self.send_header("X-Error-Message", message)
        if commit:
            self.send_header("X-Repo-Commit", commit)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)
        self._record(status, 0, file)

    def _repo(self, repo_id: str, file: str | None = None) -> FakeRepo | None:
        repo = self.fake.repos.get(repo_id)
        if repo is None:
            self._error(404, "RepoNotFound", f"Repository Not Found for url: {self.path}", file=file)
            return None
        if repo.gated and not self._authorized():
            self._error(403, "GatedRepo", f"Access to model {repo_id} is restricted and you are not in the authorized list.", file=file)
            return None
        return repo

    def _commit(self, repo: FakeRepo, rev: str, file: str | None = None) -> str | None:
        sha = repo.resolve(rev)
        if sha is None:
            self._error(404, "RevisionNotFound", f"Invalid rev id: {rev}", file=file)
        return sha

    def _snapshot(self, repo_id: str, rev: str, file: str | None = None) -> tuple[FakeRepo, str, dict[str, bytes]] | None:
        """(repo, commit, files) for a readable repo and revision; otherwise the error is already sent."""
        repo = self._repo(repo_id, file)
        sha = self._commit(repo, rev, file) if repo is not None else None
        return None if sha is None else (repo, sha, repo.commits[sha])

    # ---------------------------------------------------------------- routes
    ROUTES = [
        ("GET", re.compile(r"^/api/models/([^/]+/[^/]+)/revision/([^/]+)$"), "_model_info"),
        ("GET", re.compile(r"^/api/models/([^/]+/[^/]+)$"), "_model_info"),
        ("GET", re.compile(r"^/api/models/([^/]+/[^/]+)/tree/([^/]+)(?:/(.*))?$"), "_tree"),
        ("POST", re.compile(r"^/api/models/([^/]+/[^/]+)/paths-info/([^/]+)$"), "_paths_info"),
        ("GET", re.compile(r"^/([^/]+/[^/]+)/resolve/([^/]+)/(.+)$"), "_resolve"),
        ("HEAD", re.compile(r"^/([^/]+/[^/]+)/resolve/([^/]+)/(.+)$"), "_resolve"),
        # ModelScope's REST API (what its SDK and `--source modelscope` use)
        ("GET", re.compile(r"^/api/v1/models/([^/]+/[^/]+)/repo/files$"), "_ms_files"),
        ("GET", re.compile(r"^/api/v1/models/([^/]+/[^/]+)/repo$"), "_ms_file"),
        ("HEAD", re.compile(r"^/api/v1/models/([^/]+/[^/]+)/repo$"), "_ms_file"),
    ]

    def _dispatch(self) -> None:
        path = urlsplit(self.path).path
        for method, rx, name in self.ROUTES:
            m = rx.match(path) if method == self.command else None
            if m:
                args = [unquote(g) if g is not None else None for g in m.groups()]
                try:
                    getattr(self, name)(*args)
                except (BrokenPipeError, ConnectionResetError):
                    pass
                return
        self._error(404, "NotFound", f"no route for {self.command} {path}")

    do_GET = do_HEAD = do_POST = _dispatch

    def _model_info(self, repo_id: str, rev: str = "main") -> None:
        if (snap := self._snapshot(repo_id, rev)) is None:
            return
        repo, sha, files = snap
        self._send_json({
            "id": repo_id, "modelId": repo_id, "sha": sha, "private": False, "gated": repo.gated,
            "siblings": [{"rfilename": p} for p in sorted(files)],
        })

    def _tree(self, repo_id: str, rev: str, sub: str | None) -> None:
        if (snap := self._snapshot(repo_id, rev)) is None:
            return
        files = snap[2]
        prefix = (sub.rstrip("/") + "/") if sub else ""
        self._send_json([tree_entry(p, d) for p, d in sorted(files.items()) if p.startswith(prefix)])

    def _paths_info(self, repo_id: str, rev: str) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        form = parse_qs(self.rfile.read(length).decode())
        if (snap := self._snapshot(repo_id, rev)) is None:
            return
        files = snap[2]
        self._send_json([tree_entry(p, files[p]) for p in form.get("paths", []) if p in files])

    def _query(self) -> dict[str, str]:
        return {k: v[0] for k, v in parse_qs(urlsplit(self.path).query).items()}

    def _ms_files(self, repo_id: str) -> None:
        if (snap := self._snapshot(repo_id, self._query().get("Revision", "master"))) is None:
            return
        _, sha, repo_files = snap
        files = [
            {"Name": p.rsplit("/", 1)[-1], "Path": p, "Size": len(d), "Sha256": sha256(d), "Type": "blob", "Revision": sha}
            for p, d in sorted(repo_files.items())
        ]
        self._send_json({"Code": 200, "Success": True, "Message": "", "Data": {"Files": files}})

    def _ms_file(self, repo_id: str) -> None:
        q = self._query()
        self._resolve(repo_id, q.get("Revision", "master"), q.get("FilePath", ""))

    def _resolve(self, repo_id: str, rev: str, file: str) -> None:
        if (snap := self._snapshot(repo_id, rev, file)) is None:
            return
        _, sha, files = snap
        if file not in files:
            self._error(404, "EntryNotFound", f"{file} does not exist at {rev}", commit=sha, file=file)
            return
        data = files[file]
        entry = tree_entry(file, data)
        etag = entry["lfs"]["oid"] if "lfs" in entry else entry["oid"]
        if self.command == "GET":
            if (status := self.fake.take(self.fake.faults.status, file)) is not None:
                code = "EntryNotFound" if status == 404 else "ServerError"
                self._error(status, code, "injected failure", commit=sha, file=file)
                return
            if (wrong := self.fake.take(self.fake.faults.wrong_bytes, file)) is not None:
                data = wrong
        start = 0
        rng = self.headers.get("Range")
        m = re.match(r"bytes=(\d+)-(\d*)$", rng or "")
        partial = bool(m) and not self.fake.faults.ignore_range and self.command == "GET"
        if partial:
            start = int(m.group(1))
            if start >= len(data):
                self.send_response(416)
                self.send_header("Content-Range", f"bytes */{len(data)}")
                self.send_header("Content-Length", "0")
                self.end_headers()
                self._record(416, 0, file)
                return
        body = data[start:]
        status = 206 if partial else 200
        self.send_response(status)
        self.send_header("X-Repo-Commit", sha)
        self.send_header("ETag", f'"{etag}"')
        if "lfs" in entry:
            self.send_header("X-Linked-Etag", f'"{etag}"')
            self.send_header("X-Linked-Size", str(len(data)))
        self.send_header("Accept-Ranges", "bytes")
        self.send_header("Content-Length", str(len(body)))
        if partial:
            self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
        self.end_headers()
        if self.command == "HEAD":
            self._record(status, 0, file)
            return
        cut = self.fake.take(self.fake.faults.cut_after, file)
        limit = len(body) if cut is None else max(0, min(len(body), cut - start if cut > start else 0))
        stall = self.fake.take(self.fake.faults.stall_after, file)
        if stall is not None:  # send up to the byte, go silent, then try to finish (the client has given up by then)
            at, seconds = max(0, stall[0] - start), stall[1]
            sent = self._stream(body[:at])
            self.wfile.flush()
            time.sleep(seconds)
            sent += self._stream(body[at:limit])
            self._record(status, sent, file)
            return
        sent = self._stream(body[:limit])
        self._record(status, sent, file)
        if cut is not None:
            self.close_connection = True
            self.wfile.flush()
            self.connection.shutdown(2)

    def _stream(self, body: bytes) -> int:
        step = 64 << 10
        rate = self.fake.faults.rate_bytes_per_s
        sent = 0
        for i in range(0, len(body), step):
            chunk = body[i:i + step]
            self.wfile.write(chunk)
            sent += len(chunk)
            if rate:
                self.wfile.flush()
                time.sleep(len(chunk) / rate)
        return sent


# ---------------------------------------------------------------------------------------------- pytest fixtures
# tests/conftest.py re-exports these, so every test module can ask for them.
import pytest  # noqa: E402

TEST_TOKEN = "hf_dshubTestToken0123456789abcdef"
REPO = "deepseek-ai/DeepSeek-V3-tiny"


@pytest.fixture
def hub(monkeypatch: pytest.MonkeyPatch):
    """A running fake hub; HF_ENDPOINT points at it, retries wait 10 ms, no token and not offline."""
    with FakeHub(tokens=(TEST_TOKEN,)) as fake:
        monkeypatch.setenv("HF_ENDPOINT", fake.endpoint)
        monkeypatch.setenv("HF_HUB_DISABLE_XET", "1")
        monkeypatch.setenv("DSHUB_HTTP_RETRY_WAIT", "0.01")
        monkeypatch.setenv("DSHUB_HTTP_RETRIES", "3")
        for var in ("HF_TOKEN", "HUGGING_FACE_HUB_TOKEN", "HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"):
            monkeypatch.delenv(var, raising=False)
        yield fake


@pytest.fixture(scope="session")
def repo_files(tiny_ckpt) -> dict[str, bytes]:
    """The tiny synthetic checkpoint (dshub synth) as the files of a hub repository."""
    return {p.name: p.read_bytes() for p in sorted(tiny_ckpt.iterdir()) if p.is_file()}
