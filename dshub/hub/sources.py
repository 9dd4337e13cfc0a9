"""Where checkpoints come from: the Hugging Face Hub (or an HF_ENDPOINT mirror) and ModelScope.

A source resolves a revision to a commit, lists files with sizes and digests, and gives each file's URL and the
request headers. Transfers themselves are done by `hub_transfer` over huggingface_hub's HTTP session.
Hub exceptions become dshub errors through one table (`_hf_error_table`), subclass before base. Metadata calls
(revision, tree) are made here, each with a timeout (HF_HUB_ETAG_TIMEOUT) and the tree's pagination with a bound;
every value they return is checked by `dshub.hub.validate` before it is used.
"""
from __future__ import annotations

import contextlib
import os
import time
from typing import Any, Callable, Iterator, Protocol
from urllib.parse import quote, urlsplit

from dshub.constants import hf_environment_problem
from dshub.hub.manifest import RemoteFile
from dshub.hub.redact import install_log_redaction, redact_url, scrub
from dshub.hub.transfer import RETRY_STATUS, RetryPolicy, env_seconds, transport_errors
from dshub.hub.validate import COMMIT_RE, check_commit, check_file, printable
from dshub.errors import (
    FileForbidden, GatedRepo, HubError, HubMetadataRefused, HubUnreachable, ListingTooLong, RemoteFileMissing,
    RepoNotFound, RevisionNotFound, SourceUnavailable, TokenRejected, UsageError,
)

MODELSCOPE_ENDPOINT = "https://www.modelscope.cn"
MAX_TREE_PAGES = 200  # the Hub pages its tree by 1000 entries: 200 000 files, far beyond any checkpoint
__all__ = ["scrub", "redact_url"]  # re-exported: callers and tests import them from here


class Source(Protocol):
    """What `hub.download` needs from a hub."""

    name: str
    endpoint: str
    default_revision: str

    def resolve(self, repo_id: str, revision: str | None) -> str: ...
    def list_files(self, repo_id: str, commit: str) -> list[RemoteFile]: ...
    def file_url(self, repo_id: str, commit: str, path: str) -> str: ...
    def headers(self) -> dict[str, str]: ...
    def errors(self, repo_id: str, revision: str | None, path: str | None = None) -> contextlib.AbstractContextManager: ...


# ----------------------------------------------------------------------------------------------- env, read per call

def require_usable_hf_environment() -> None:
    """Refuse, as a usage error, HF variables that would make huggingface_hub fail on import."""
    problem = hf_environment_problem()
    if problem:
        raise UsageError(problem)

def hf_endpoint() -> str:
    """HF_ENDPOINT as set now (tests and users may set it after huggingface_hub was imported)."""
    from huggingface_hub import constants as hfc

    return (os.environ.get("HF_ENDPOINT") or hfc.ENDPOINT).rstrip("/")


def hf_offline() -> bool:
    from huggingface_hub import constants as hfc

    env = os.environ.get("HF_HUB_OFFLINE") or os.environ.get("TRANSFORMERS_OFFLINE")
    return hfc.HF_HUB_OFFLINE if env is None else env.upper() in ("1", "ON", "YES", "TRUE")


def metadata_timeout() -> float:
    """HF_HUB_ETAG_TIMEOUT: seconds a metadata call (revision, tree page) may wait for an answer, read now."""
    from huggingface_hub import constants as hfc

    return env_seconds("HF_HUB_ETAG_TIMEOUT", float(hfc.HF_HUB_ETAG_TIMEOUT))


# ----------------------------------------------------------------------------------------------- error mapping
def _status(e: BaseException) -> str:
    resp = getattr(e, "response", None)
    code = getattr(resp, "status_code", None)
    return f"HTTP {code}" if code else e.__class__.__name__


def _code(e: BaseException) -> int | None:
    return getattr(getattr(e, "response", None), "status_code", None)


def _hf_error_table() -> list[tuple[type[BaseException], int | None, Callable[[BaseException, dict[str, Any]], HubError]]]:
    """(huggingface_hub exception, HTTP status or None for any) -> dshub error, subclass before base.
    Messages never include server text or the token."""
    from huggingface_hub import errors as hfe

    rows: list[tuple[type[BaseException], Callable[[BaseException, dict[str, Any]], HubError]]] = [
        (hfe.GatedRepoError, lambda e, c: GatedRepo(
            f"{c['repo']}: gated repository or token refused ({_status(e)}). Accept the model's terms on its page and "
            "set HF_TOKEN to a token that has access")),
        (hfe.RepositoryNotFoundError, lambda e, c: RepoNotFound(
            f"{c['repo']}: repository not found on {c['endpoint']} ({_status(e)}). Check the name; a private repository "
            "needs HF_TOKEN")),
        (hfe.RevisionNotFoundError, lambda e, c: RevisionNotFound(
            f"{c['repo']}: revision {c['revision']!r} not found ({_status(e)}). Use a branch, tag or 40-hex commit "
            "that exists")),
        (hfe.RemoteEntryNotFoundError, lambda e, c: RemoteFileMissing(
            f"{c['path'] or 'a listed file'} is missing on the hub ({_status(e)})",
            path=c["path"], show_path=f"{c['repo']}@{c['revision']}")),
        (hfe.OfflineModeIsEnabled, lambda e, c: HubUnreachable(
            f"{c['repo']}: HF_HUB_OFFLINE is set and the files are not all present locally. Unset it, or download "
            "where the hub is reachable")),
    ]
    by_status: list[tuple[type[BaseException], int | None, Callable[[BaseException, dict[str, Any]], HubError]]] = [
        (hfe.HfHubHTTPError, 401, lambda e, c: TokenRejected(
            f"{c['repo']}: the hub answered HTTP 401{' for ' + c['path'] if c['path'] else ''}: "
            + ("the token was rejected; check HF_TOKEN" if c["token"] else "a token is needed and none was sent; set HF_TOKEN")
            + " (not transient: running again will not help)")),
        (hfe.HfHubHTTPError, 403, lambda e, c: FileForbidden(
            f"{c['repo']}: access to {c['path'] or 'this repository'} is forbidden (HTTP 403): the repository or file is "
            "gated or restricted; accept its terms on the model page and use a token that has access")),
        (hfe.HfHubHTTPError, None, lambda e, c: HubError(
            f"{c['repo']}: hub request failed ({_status(e)}){' for ' + c['path'] if c['path'] else ''}; "
            "run again later (already verified files are kept)")),
        (transport_errors(), None, lambda e, c: HubUnreachable(
            f"{c['endpoint']}: hub unreachable ({e.__class__.__name__}). Check the network, HF_ENDPOINT or "
            "HF_HUB_ETAG_TIMEOUT / HF_HUB_DOWNLOAD_TIMEOUT; run again to resume")),
    ]
    return [(t, None, make) for t, make in rows] + by_status


@contextlib.contextmanager
def hf_errors(repo_id: str, revision: str | None, endpoint: str, path: str | None = None,
              token: str | None = None) -> Iterator[None]:
    """Translate huggingface_hub / transport exceptions raised inside the block into dshub errors; the text of any
    dshub error passing through is scrubbed of tokens (a server may echo one in a header dshub quotes)."""
    try:
        yield
    except HubError as e:
        e.detail = scrub(e.detail, [token])
        e.args = (e.detail,)
        raise
    except Exception as e:  # noqa: BLE001 - filtered by the table below
        ctx = {"repo": printable(repo_id), "revision": printable(revision or "main"),
               "endpoint": printable(redact_url(endpoint)), "path": printable(path) if path else None,
               "token": bool(token or _token_present())}
        for exc_type, status, make in _hf_error_table():
            if isinstance(e, exc_type) and status in (None, _code(e)):
                err = make(e, ctx)
                raise type(err)(scrub(err.detail, [token]), path=err.path, show_path=err.show_path) from None
        raise


def _token_present() -> bool:
    from huggingface_hub import get_token

    try:
        return bool(get_token())
    except Exception:  # noqa: BLE001 - a broken token file is "no token" here
        return False


# ----------------------------------------------------------------------------------------------- Hugging Face
class HfSource:
    """The Hugging Face Hub or any HF_ENDPOINT mirror, through huggingface_hub."""

    name = "hf"
    default_revision = "main"

    def __init__(self, endpoint: str | None = None, token: str | None = None):
        self.endpoint = (endpoint or hf_endpoint()).rstrip("/")
        self._token = token  # None: huggingface_hub finds HF_TOKEN / the token file itself
        install_log_redaction([token])

    def errors(self, repo_id: str, revision: str | None, path: str | None = None) -> contextlib.AbstractContextManager:
        return hf_errors(repo_id, revision, self.endpoint, path, self._token)

    def resolve(self, repo_id: str, revision: str | None) -> str:
        """The commit a revision names: 40 hex digits, or HubMetadataRefused."""
        check_repo_id(repo_id)
        rev = revision or "main"
        with self.errors(repo_id, revision):
            doc, _ = self._get_json(repo_id, f"/api/models/{repo_id}/revision/{quote(rev, safe='')}")
        sha = doc.get("sha") if isinstance(doc, dict) else None
        if not sha:
            raise HubError(f"{printable(repo_id)}@{printable(rev)}: the hub did not return a commit for this revision")
        return check_commit(repo_id, sha)

    def list_files(self, repo_id: str, commit: str) -> list[RemoteFile]:
        """Every file of the commit, paged with a bound; each entry checked before it becomes a RemoteFile."""
        files: list[RemoteFile] = []
        with self.errors(repo_id, commit):
            url: str | None = f"/api/models/{repo_id}/tree/{quote(commit, safe='')}"
            params: dict[str, Any] | None = {"recursive": "true", "expand": "false"}
            for _ in range(MAX_TREE_PAGES):
                page, url = self._get_json(repo_id, url, params)  # type: ignore[arg-type]
                params = None  # a next link carries its own query
                files.extend(_tree_files(repo_id, page))
                if url is None:
                    return sorted(files, key=lambda f: f.path)
        raise ListingTooLong(
            f"{printable(repo_id)}@{commit}: the hub's file listing did not end after {MAX_TREE_PAGES} pages; "
            "refused (a misbehaving mirror?)")

    def _get_json(self, repo_id: str, url: str, params: dict[str, Any] | None = None) -> tuple[Any, str | None]:
        """One metadata GET with a timeout and the retry policy: (JSON document, next page URL or None)."""
        from huggingface_hub.utils import get_session, hf_raise_for_status

        retry, timeout = RetryPolicy.from_env(), metadata_timeout()
        full = url if url.startswith(("http://", "https://")) else self.endpoint + url
        for attempt in range(retry.attempts + 1):  # bounded: timeouts, refused connections and 5xx are retried
            last = attempt == retry.attempts
            try:
                r = get_session().get(full, params=params, headers=self.headers(), timeout=timeout)
            except transport_errors():
                if last:
                    raise
            else:
                if r.status_code not in RETRY_STATUS or last:
                    break
            time.sleep(min(retry.wait_s * 2 ** attempt, 8.0))
        hf_raise_for_status(r)
        try:
            doc = r.json()
        except ValueError:
            raise HubError(f"{printable(repo_id)}: the hub answered {redact_url(full)} with something that is not JSON") from None
        nxt = r.links.get("next", {}).get("url")
        if nxt is not None and urlsplit(nxt)[:2] != urlsplit(self.endpoint)[:2]:
            raise HubMetadataRefused(
                f"{printable(repo_id)}: the hub's next page {printable(redact_url(nxt))} is on another host; refused "
                "(the token is never sent there)")
        return doc, nxt

    def file_url(self, repo_id: str, commit: str, path: str) -> str:
        from huggingface_hub import hf_hub_url

        return hf_hub_url(repo_id, path, revision=commit, endpoint=self.endpoint)

    def headers(self) -> dict[str, str]:
        from huggingface_hub.utils import build_hf_headers

        return build_hf_headers(token=self._token, library_name="dshub")


# ----------------------------------------------------------------------------------------------- ModelScope
def _ms_list_hub(endpoint: str, token: str | None, repo_id: str, revision: str) -> list[dict[str, Any]]:
    """ModelScope SDK >= 1.3x (`modelscope_hub`): FileInfo objects with sha256."""
    from modelscope_hub import HubApi  # type: ignore[import-not-found]

    api = HubApi(endpoint=endpoint, token=token)
    return [
        {"Path": f.path, "Size": f.size, "Sha256": f.sha256, "Type": f.type}
        for f in api.list_repo_files(repo_id, "model", revision=revision, recursive=True)
    ]


def _ms_list_legacy(endpoint: str, token: str | None, repo_id: str, revision: str) -> list[dict[str, Any]]:
    """Older ModelScope SDKs: `HubApi.get_model_files` dicts (Path, Size, Sha256, Type, Revision)."""
    from modelscope.hub.api import HubApi  # type: ignore[import-not-found]

    return HubApi(endpoint=endpoint).get_model_files(repo_id, revision=revision, recursive=True)


MODELSCOPE_LISTERS: list[tuple[str, Callable[[str, str | None, str, str], list[dict[str, Any]]]]] = [
    ("modelscope_hub", _ms_list_hub),
    ("modelscope.hub.api", _ms_list_legacy),
]

# ModelScope SDK exception class name -> dshub error class (matched by name: the SDK is optional)
MODELSCOPE_ERRORS: dict[str, type[HubError]] = {
    "NotExistError": RepoNotFound,
    "PermissionDeniedError": GatedRepo,
    "AuthenticationError": GatedRepo,
    "NetworkError": HubUnreachable,
    "RequestTimeoutError": HubUnreachable,
}


class ModelScopeSource:
    """ModelScope (modelscope.cn): listing through the optional `modelscope` SDK, files over HTTP with byte ranges."""

    name = "modelscope"
    default_revision = "master"

    def __init__(self, endpoint: str | None = None, token: str | None = None):
        self._lister = next((fn for mod, fn in MODELSCOPE_LISTERS if _importable(mod)), None)
        if self._lister is None:
            raise SourceUnavailable(
                "--source modelscope needs the ModelScope SDK: pip install 'dshub[modelscope]' (or pip install modelscope)"
            )
        self.endpoint = (endpoint or modelscope_endpoint()).rstrip("/")
        self._token = token or os.environ.get("MODELSCOPE_API_TOKEN")
        install_log_redaction([self._token])
        self._listing: dict[tuple[str, str], list[dict[str, Any]]] = {}
        self._alias: dict[str, str] = {}  # commit id -> the branch/tag it was resolved from

    @contextlib.contextmanager
    def errors(self, repo_id: str, revision: str | None, path: str | None = None) -> Iterator[None]:
        try:
            with hf_errors(repo_id, revision, self.endpoint, path, self._token):  # transfers go through huggingface_hub's HTTP layer
                yield
        except HubError:
            raise
        except Exception as e:  # noqa: BLE001 - the SDK raises its own classes
            cls = next((c for k in type(e).__mro__ if (c := MODELSCOPE_ERRORS.get(k.__name__))), HubError)
            raise cls(scrub(f"{repo_id}@{revision or self.default_revision}: ModelScope: {e.__class__.__name__}: {e}")) from None

    def _files(self, repo_id: str, revision: str) -> list[dict[str, Any]]:
        key = (repo_id, revision)
        if key not in self._listing:
            with self.errors(repo_id, revision):
                self._listing[key] = self._lister(self.endpoint, self._token, repo_id, revision)  # type: ignore[misc]
        return self._listing[key]

    def resolve(self, repo_id: str, revision: str | None) -> str:
        """ModelScope names revisions by branch or tag; a listing's per-file commit id is used when it has one."""
        revision = revision or self.default_revision
        commits = {f.get("Revision") for f in self._files(repo_id, revision) if f.get("Type", "blob") == "blob"}
        if len(commits) == 1 and isinstance(commit := commits.pop(), str) and commit:
            self._alias[commit] = revision
            self._listing[(repo_id, commit)] = self._listing[(repo_id, revision)]
            return commit
        return revision

    def list_files(self, repo_id: str, commit: str) -> list[RemoteFile]:
        files = [
            RemoteFile(f["Path"], int(f.get("Size") or 0), f.get("Sha256") or None, None)
            for f in self._files(repo_id, self._alias.get(commit, commit))
            if f.get("Type", "blob") == "blob"
        ]
        return sorted(files, key=lambda f: f.path)

    def file_url(self, repo_id: str, commit: str, path: str) -> str:
        revision = self._alias.get(commit, commit)
        return f"{self.endpoint}/api/v1/models/{repo_id}/repo?Revision={quote(revision, safe='')}&FilePath={quote(path, safe='')}"

    def headers(self) -> dict[str, str]:
        h = {"user-agent": "dshub"}
        if self._token:
            h["authorization"] = f"Bearer {self._token}"
        return h


def modelscope_endpoint() -> str:
    """MODELSCOPE_ENDPOINT, else MODELSCOPE_DOMAIN (older name), else modelscope.cn: the SDK's own precedence."""
    if env := os.environ.get("MODELSCOPE_ENDPOINT"):
        return env
    domain = os.environ.get("MODELSCOPE_DOMAIN", "").strip()
    if domain:
        return domain if domain.startswith(("http://", "https://")) else f"https://{domain}"
    return MODELSCOPE_ENDPOINT


def _importable(module: str) -> bool:
    """Whether `module` can be imported (a missing optional SDK, or one blocked in sys.modules, is not)."""
    import importlib

    try:
        importlib.import_module(module)
        return True
    except ImportError:
        return False


SOURCES: dict[str, Callable[..., Source]] = {"hf": HfSource, "modelscope": ModelScopeSource}


def make_source(name: str, *, endpoint: str | None = None, token: str | None = None) -> Source:
    """The source registered as `name`; an unknown name is a usage error listing the known ones."""
    try:
        factory = SOURCES[name]
    except KeyError:
        raise UsageError(f"unknown --source {name!r}; known: {', '.join(sorted(SOURCES))}") from None
    return factory(endpoint=endpoint, token=token)


def is_commit(revision: str | None) -> bool:
    return bool(revision and COMMIT_RE.match(revision))


def check_repo_id(repo_id: str) -> str:
    """huggingface_hub's rule for repository ids (`owner/name` of letters, digits, `-_.`); else a usage error."""
    from huggingface_hub.utils import HFValidationError, validate_repo_id

    try:
        validate_repo_id(repo_id)
    except HFValidationError:
        raise UsageError(f"{printable(repo_id)!s}: not a valid repository id (owner/name of letters, digits, -_.)") from None
    return repo_id


def _tree_files(repo_id: str, page: Any) -> list[RemoteFile]:
    """The files of one tree page (folders skipped), each entry checked: path, size, git sha1, LFS sha256."""
    if not isinstance(page, list) or not all(isinstance(e, dict) for e in page):
        raise HubMetadataRefused(f"{printable(repo_id)}: the hub's file listing is not a list of entries; refused")
    files = []
    for e in page:
        if e.get("type") != "file":
            continue
        lfs = e.get("lfs")
        sha = lfs.get("oid", lfs.get("sha256")) if isinstance(lfs, dict) else None
        check_file(repo_id, e.get("path"), e.get("size"), {"sha256": sha, "blob_id": e.get("oid")})
        files.append(RemoteFile(e["path"], e["size"], sha, e.get("oid")))
    return files
