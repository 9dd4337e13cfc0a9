"""Where checkpoints come from: the Hugging Face Hub (or an HF_ENDPOINT mirror) and ModelScope.

A source resolves a revision to a commit, lists files with sizes and digests, and gives each file's URL and the
request headers. Transfers themselves are done by `hub_transfer` over huggingface_hub's HTTP session.
Hub exceptions become dshub errors through one table (`HF_ERRORS`), subclass before base.
"""
from __future__ import annotations

import contextlib
import os
import re
from typing import Any, Callable, Iterator, Protocol
from urllib.parse import quote

from dshub.hub.manifest import RemoteFile, redact_url
from dshub.hub.transfer import transport_errors
from dshub.errors import (
    GatedRepo, HubError, HubUnreachable, RemoteFileMissing, RepoNotFound, RevisionNotFound, SourceUnavailable, UsageError,
)

COMMIT_RE = re.compile(r"^[0-9a-f]{40}$")
MODELSCOPE_ENDPOINT = "https://www.modelscope.cn"


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
def hf_endpoint() -> str:
    """HF_ENDPOINT as set now (tests and users may set it after huggingface_hub was imported)."""
    from huggingface_hub import constants as hfc

    return (os.environ.get("HF_ENDPOINT") or hfc.ENDPOINT).rstrip("/")


def hf_offline() -> bool:
    from huggingface_hub import constants as hfc

    env = os.environ.get("HF_HUB_OFFLINE") or os.environ.get("TRANSFORMERS_OFFLINE")
    return hfc.HF_HUB_OFFLINE if env is None else env.upper() in ("1", "ON", "YES", "TRUE")


def current_token() -> str | None:
    """The token huggingface_hub would send (HF_TOKEN, then the token file). Only used for redaction here."""
    try:
        from huggingface_hub import get_token

        return os.environ.get("HF_TOKEN") or get_token()
    except Exception:  # noqa: BLE001 - redaction must never be the thing that fails
        return os.environ.get("HF_TOKEN")


def scrub(text: str) -> str:
    """Remove the current token (and URL credentials) from a message."""
    token = current_token()
    if token and token in text:
        text = text.replace(token, "***")
    return re.sub(r"(https?://)[^/@\s]+@", r"\1", text)


# ----------------------------------------------------------------------------------------------- error mapping
def _status(e: BaseException) -> str:
    resp = getattr(e, "response", None)
    code = getattr(resp, "status_code", None)
    return f"HTTP {code}" if code else e.__class__.__name__


def _hf_error_table() -> list[tuple[type[BaseException], Callable[[BaseException, dict[str, Any]], HubError]]]:
    """huggingface_hub exception -> dshub error, subclass before base. Messages never include the token."""
    from huggingface_hub import errors as hfe

    return [
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
        (hfe.HfHubHTTPError, lambda e, c: HubError(
            f"{c['repo']}: hub request failed ({_status(e)}){' for ' + c['path'] if c['path'] else ''}; "
            "run again later (already verified files are kept)")),
        (transport_errors(), lambda e, c: HubUnreachable(
            f"{c['endpoint']}: hub unreachable ({e.__class__.__name__}). Check the network or HF_ENDPOINT; "
            "run again to resume")),
    ]


@contextlib.contextmanager
def hf_errors(repo_id: str, revision: str | None, endpoint: str, path: str | None = None) -> Iterator[None]:
    """Translate huggingface_hub / transport exceptions raised inside the block into dshub errors."""
    try:
        yield
    except HubError:
        raise
    except Exception as e:  # noqa: BLE001 - filtered by the table below
        ctx = {"repo": repo_id, "revision": revision or "main", "endpoint": redact_url(endpoint), "path": path}
        for exc_type, make in _hf_error_table():
            if isinstance(e, exc_type):
                err = make(e, ctx)
                raise type(err)(scrub(err.detail), path=err.path, show_path=err.show_path) from None
        raise


# ----------------------------------------------------------------------------------------------- Hugging Face
class HfSource:
    """The Hugging Face Hub or any HF_ENDPOINT mirror, through huggingface_hub."""

    name = "hf"
    default_revision = "main"

    def __init__(self, endpoint: str | None = None, token: str | None = None):
        from huggingface_hub import HfApi

        self.endpoint = (endpoint or hf_endpoint()).rstrip("/")
        self._token = token  # None: huggingface_hub finds HF_TOKEN / the token file itself
        self.api = HfApi(endpoint=self.endpoint, token=token)

    def errors(self, repo_id: str, revision: str | None, path: str | None = None) -> contextlib.AbstractContextManager:
        return hf_errors(repo_id, revision, self.endpoint, path)

    def resolve(self, repo_id: str, revision: str | None) -> str:
        with self.errors(repo_id, revision):
            info = self.api.model_info(repo_id, revision=revision or "main")
        if not info.sha:
            raise HubError(f"{repo_id}@{revision or 'main'}: the hub did not return a commit for this revision")
        return info.sha

    def list_files(self, repo_id: str, commit: str) -> list[RemoteFile]:
        from huggingface_hub.hf_api import RepoFile

        with self.errors(repo_id, commit):
            entries = list(self.api.list_repo_tree(repo_id, revision=commit, recursive=True))
        files = []
        for e in entries:
            if isinstance(e, RepoFile):
                lfs = e.lfs
                sha = (lfs.sha256 if hasattr(lfs, "sha256") else lfs.get("sha256")) if lfs else None
                files.append(RemoteFile(e.path, int(e.size), sha, e.blob_id))
        return sorted(files, key=lambda f: f.path)

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
        self._listing: dict[tuple[str, str], list[dict[str, Any]]] = {}
        self._alias: dict[str, str] = {}  # commit id -> the branch/tag it was resolved from

    @contextlib.contextmanager
    def errors(self, repo_id: str, revision: str | None, path: str | None = None) -> Iterator[None]:
        try:
            with hf_errors(repo_id, revision, self.endpoint, path):  # transfers go through huggingface_hub's HTTP layer
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
