"""dshub download against a hostile hub (tests/hub/hostilehub.py on 127.0.0.1), in HF-cache and --local-dir mode.

Every case snapshots the whole tmp tree before and after: a refusal changes nothing anywhere; a download changes
nothing outside its target. Refusals are one-line dshub errors naming the repo and the (escaped) bad value.
"""
from __future__ import annotations

import hashlib
import logging
import os
import stat
import subprocess
import sys
import threading
import time
from pathlib import Path

import huggingface_hub.constants  # noqa: F401 - parsed once, before the fixture sets sub-second timeouts it reads as int
import pytest

from dshub.errors import (
    FileForbidden, HubError, HubMetadataRefused, HubUnreachable, ListingTooLong, TokenRejected, UsageError,
)
from dshub.hub.download import download
from dshub.hub.hash_check import verify_hashes
from dshub.hub.redact import install_log_redaction, redact_url
from dshub.hub.validate import printable
from dshub.hub.layout import hf_cache_dir
from dshub.hub.manifest import RemoteFile, load_manifest, save_manifest
from tests.hub.hostilehub import COMMIT, HostileHub, entry

REPO = "evil-org/model"
FILES = {"config.json": b"{}", "weights.bin": b"w" * 4096}
SECRET = "hf_hostileSecret0123456789abcdef"
MODES = ("hf-cache", "local-dir")


@pytest.fixture
def evil(monkeypatch: pytest.MonkeyPatch):
    """A running hostile hub; HF_ENDPOINT points at it; fast retries, short timeouts, no token."""
    with HostileHub() as hub:
        hub.script.files = dict(FILES)
        monkeypatch.setenv("HF_ENDPOINT", hub.endpoint)
        monkeypatch.setenv("HF_HUB_DISABLE_XET", "1")
        monkeypatch.setenv("DSHUB_HTTP_RETRY_WAIT", "0.01")
        monkeypatch.setenv("DSHUB_HTTP_RETRIES", "2")
        monkeypatch.setenv("HF_HUB_ETAG_TIMEOUT", "0.3")
        monkeypatch.setenv("HF_HUB_DOWNLOAD_TIMEOUT", "0.3")
        for var in ("HF_TOKEN", "HUGGING_FACE_HUB_TOKEN", "HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"):
            monkeypatch.delenv(var, raising=False)
        yield hub


def tree_state(root: Path) -> dict[str, tuple]:
    """Every entry under `root` (symlinks not followed): kind, and size + mtime + sha256 or link target."""
    out: dict[str, tuple] = {}
    for dirpath, dirs, files in os.walk(root):
        for name in dirs + files:
            p = Path(dirpath, name)
            st = os.lstat(p)
            rel = str(p.relative_to(root))
            if stat.S_ISLNK(st.st_mode):
                out[rel] = ("link", os.readlink(p))
            elif stat.S_ISDIR(st.st_mode):
                out[rel] = ("dir",)
            else:
                out[rel] = ("file", st.st_size, st.st_mtime_ns, hashlib.sha256(p.read_bytes()).hexdigest())
    return out


def outside(state: dict[str, tuple], target: Path, root: Path) -> dict[str, tuple]:
    """The part of a tree state that is not the target folder, under it, or a folder on the way to it."""
    t = str(target.relative_to(root))
    on_the_way = {str(p.relative_to(root)) for p in target.parents if p != root and root in p.parents}
    return {k: v for k, v in state.items()
            if k != t and not k.startswith(t + os.sep) and not (k in on_the_way and v == ("dir",))}


@pytest.fixture
def victims(tmp_path: Path) -> list[Path]:
    """Files a hostile listing aims at: beside the target folder and beside the HF cache."""
    made = []
    for d in (tmp_path / "victim_dir", tmp_path / "hf-home" / "victim_dir"):
        d.mkdir(parents=True)
        (d / "victim.bin").write_bytes(FILES["weights.bin"])  # same bytes: a digest check alone would accept it
        made.append(d / "victim.bin")
    return made


def target_of(mode: str, tmp_path: Path) -> tuple[Path | None, Path]:
    """(--local-dir or None, the folder a download may change)."""
    if mode == "local-dir":
        return tmp_path / "target", tmp_path / "target"
    return None, hf_cache_dir() / ("models--" + REPO.replace("/", "--"))


def refused(tmp_path: Path, mode: str, exc: type[Exception], *match: str) -> Exception:
    """Run a download that must be refused; nothing anywhere under tmp_path may change."""
    local_dir, _ = target_of(mode, tmp_path)
    before = tree_state(tmp_path)
    with pytest.raises(exc) as ei:
        download(REPO, local_dir=local_dir, progress=False)
    assert tree_state(tmp_path) == before
    text = str(ei.value)
    assert "\n" not in text and "\x1b" not in text and "\x00" not in text
    for m in match:
        assert m in text, text
    return ei.value


# ------------------------------------------------------------------------------------ identifiers used as paths
HOSTILE_PATHS = [
    ("../../victim_dir/victim.bin", "escapes the target directory"),
    ("../../../../victim_dir/victim.bin", "escapes the target directory"),
    ("/tmp/abs.bin", "is absolute"),
    ("sub\\..\\..\\x.json", "holds a backslash"),
    ("nul\x00.json", "holds a NUL byte"),
    ("esc\x1b]0;owned\x07.json", "holds a control character"),
    ("line\nbreak.json", "holds a control character"),
    (".dshub/download.json", "reserved folder"),
    (".DSHUB/hashes.json", "reserved folder"),
    (".git/hooks/post-checkout", "reserved folder"),
    ("sub/.git/config", "reserved folder"),
    (".cache/huggingface/download/config.json.metadata", ".cache/huggingface"),
    ("a//b.json", "empty or `.` component"),
    ("./config.json", "empty or `.` component"),
    ("x" * 300 + ".json", "too long"),
]


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("path,why", HOSTILE_PATHS, ids=[repr(p)[:30] for p, _ in HOSTILE_PATHS])
def test_hostile_file_path_is_refused(evil, tmp_path, victims, mode, path, why):
    evil.script.trees[COMMIT] = [entry("config.json", b"{}"), entry(path, FILES["weights.bin"])]
    evil.script.files[path] = FILES["weights.bin"]
    err = refused(tmp_path, mode, HubMetadataRefused, REPO, why, "file path")
    assert repr(path)[1:-1][:40].replace("\\\\", "\\") in str(err).replace("\\\\", "\\") or "\\x" in str(err)
    assert evil.count("file") == 0  # refused before any transfer


HOSTILE_OIDS = [
    ("lfs", "../../../victim_dir/victim.bin", "is not 64 hex digits"),
    ("lfs", "../../../../victim_dir/victim.bin", "is not 64 hex digits"),
    ("lfs", "A" * 64, "is not 64 hex digits"),
    ("lfs", "abc", "is not 64 hex digits"),
    ("lfs", 12345, "is not 64 hex digits"),
    ("oid", "../../victim_dir/victim.bin", "is not 40 hex digits"),
    ("oid", "f" * 39, "is not 40 hex digits"),
]


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("field,value,why", HOSTILE_OIDS, ids=[f"{f}-{v!r}"[:30] for f, v, _ in HOSTILE_OIDS])
def test_hostile_digest_is_refused(evil, tmp_path, victims, mode, field, value, why):
    e = entry("weights.bin", FILES["weights.bin"], lfs=True)
    if field == "lfs":
        e["lfs"]["oid"] = value
    else:
        e["oid"] = value
    evil.script.trees[COMMIT] = [entry("config.json", b"{}"), e]
    refused(tmp_path, mode, HubMetadataRefused, REPO, why, "weights.bin")
    assert [v.read_bytes() for v in victims] == [FILES["weights.bin"]] * 2


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("commit", ["../../../x", "main", "g" * 40, "0" * 41, "", "0" * 39 + "\x1b"])
def test_hostile_commit_is_refused(evil, tmp_path, mode, commit):
    evil.script.commits["main"] = commit
    if commit:
        err = refused(tmp_path, mode, HubMetadataRefused, REPO, "commit id", "is not 40 hex digits")
        assert "\x1b" not in str(err)
    else:
        refused(tmp_path, mode, HubError, "did not return a commit")
    assert evil.count("tree") == 0


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("size", [-1, "4096", 4096.0, True, 1 << 60])
def test_hostile_size_is_refused(evil, tmp_path, mode, size):
    evil.script.trees[COMMIT] = [dict(entry("weights.bin", FILES["weights.bin"]), size=size)]
    refused(tmp_path, mode, HubMetadataRefused, REPO, "size of weights.bin", "is not a byte count")


@pytest.mark.parametrize("mode", MODES)
def test_duplicate_and_file_folder_clash_is_refused(evil, tmp_path, mode):
    evil.script.trees[COMMIT] = [entry("a.json", b"1"), entry("A.json", b"2")]
    refused(tmp_path, mode, HubMetadataRefused, "listed twice")
    evil.script.trees[COMMIT] = [entry("a", b"1"), entry("a/b.json", b"2")]
    refused(tmp_path, mode, HubMetadataRefused, "listed as a file and as a folder")


def test_listing_that_is_not_a_list_is_refused(evil, tmp_path):
    evil.script.trees[COMMIT] = {"path": "x"}  # type: ignore[assignment]
    refused(tmp_path, "local-dir", HubMetadataRefused, "not a list of entries")


def test_symlink_in_local_dir_out_of_it_is_not_followed(evil, tmp_path, victims):
    target = tmp_path / "target"
    target.mkdir()
    (target / "sub").symlink_to(tmp_path / "victim_dir")
    evil.script.trees[COMMIT] = [entry("sub/victim.bin", FILES["weights.bin"])]
    err = refused(tmp_path, "local-dir", HubMetadataRefused, "resolves outside")
    assert "victim.bin" in str(err)


def test_blobs_symlink_out_of_the_cache_is_not_followed(evil, tmp_path, victims):
    repo_dir = target_of("hf-cache", tmp_path)[1]
    repo_dir.mkdir(parents=True)
    (repo_dir / "blobs").symlink_to(tmp_path / "victim_dir")
    refused(tmp_path, "hf-cache", HubMetadataRefused, "resolves outside")


def test_names_with_markup_download_and_print_verbatim(evil, tmp_path, cli):
    name = "w[/]eird [bold]name[/bold].json"
    evil.script.files = {name: b"{}", "config.json": b"{}"}
    before = tree_state(tmp_path)
    r = cli("download", REPO, "--local-dir", tmp_path / "target", "--dry-run")
    assert r.exit_code == 0, r.output
    assert name in r.stdout  # the plan's table: rich did not eat the brackets
    r = cli("download", REPO, "--local-dir", tmp_path / "target")
    assert r.exit_code == 0, r.output
    assert (tmp_path / "target" / name).read_bytes() == b"{}"
    after = tree_state(tmp_path)
    assert outside(after, tmp_path / "target", tmp_path) == outside(before, tmp_path / "target", tmp_path)


@pytest.mark.parametrize("mode", MODES)
def test_control_characters_never_reach_the_terminal(evil, tmp_path, cli, mode):
    evil.script.trees[COMMIT] = [entry("\x1b[2J\x1b]0;pwned\x07[red]x[/].json", b"{}")]
    args = ["--local-dir", str(tmp_path / "target")] if mode == "local-dir" else []
    before = tree_state(tmp_path)
    r = cli("download", REPO, *args)
    assert r.exit_code == 1 and "Traceback" not in r.output
    assert "\x1b" not in r.output and "\x07" not in r.output
    assert "\\x1b[2J" in r.output and "[red]x[/]" in r.output  # escaped, shown, not interpreted
    assert len(r.output.strip().splitlines()) == 1
    assert tree_state(tmp_path) == before


@pytest.mark.parametrize("mode", MODES)
def test_a_good_download_changes_nothing_outside_the_target(evil, tmp_path, victims, mode):
    local_dir, target = target_of(mode, tmp_path)
    before = tree_state(tmp_path)
    res = download(REPO, local_dir=local_dir, progress=False)
    assert res.ok, res.failures
    assert (res.plan.root / "weights.bin").read_bytes() == FILES["weights.bin"]
    assert outside(tree_state(tmp_path), target, tmp_path) == outside(before, target, tmp_path)


def test_hostile_revision_never_leaves_refs(evil, tmp_path):
    evil.script.commits["../../../../victim_dir/ref"] = COMMIT
    before = tree_state(tmp_path)
    with pytest.raises(HubMetadataRefused, match="revision"):
        download(REPO, revision="../../../../victim_dir/ref", progress=False)
    assert outside(tree_state(tmp_path), target_of("hf-cache", tmp_path)[1], tmp_path) == outside(
        before, target_of("hf-cache", tmp_path)[1], tmp_path)
    assert not (tmp_path / "victim_dir" / "ref").exists()


# ------------------------------------------------------------------------------------ timeouts and pagination
@pytest.mark.parametrize("route", ["info", "tree"])
def test_a_hub_that_never_answers_times_out(evil, tmp_path, route):
    evil.script.silent.add(route)
    t0 = time.monotonic()
    refused(tmp_path, "local-dir", HubUnreachable, "hub unreachable", "Timeout")
    assert time.monotonic() - t0 < 5  # 3 tries of 0.3 s, not forever
    assert evil.count(route) == 3  # DSHUB_HTTP_RETRIES=2: the first try and two retries


def test_a_stalled_file_times_out(evil, tmp_path):
    evil.script.silent.add("file")
    t0 = time.monotonic()
    res = download(REPO, local_dir=tmp_path / "target", progress=False)
    assert time.monotonic() - t0 < 8
    assert not res.ok and {f.path for f in res.failures} == set(FILES)
    assert all("transfer failed" in f.message for f in res.failures)


@pytest.mark.parametrize("mode", MODES)
def test_endless_pagination_is_bounded(evil, tmp_path, mode):
    evil.script.endless_pages = True
    refused(tmp_path, mode, ListingTooLong, REPO, "did not end after 200 pages")
    assert evil.count("tree") == 200


def test_next_page_on_another_host_is_refused(evil, tmp_path, monkeypatch):
    monkeypatch.setenv("HF_TOKEN", SECRET)
    evil.script.next_host = "http://127.0.0.2:9"
    err = refused(tmp_path, "local-dir", HubMetadataRefused, "another host")
    assert SECRET not in str(err)


# ------------------------------------------------------------------------------------ secrets
@pytest.mark.parametrize("mode", MODES)
def test_server_echoing_the_token_is_scrubbed(evil, tmp_path, monkeypatch, cli, mode):
    monkeypatch.setenv("HF_TOKEN", SECRET)
    evil.script.echo_auth = True
    args = ["--local-dir", str(tmp_path / "target")] if mode == "local-dir" else []
    r = cli("download", REPO, *args, "--json")
    assert r.exit_code == 1
    assert "Content-Range" not in r.output or "server answered range" in r.output
    assert any(h.auth == f"Bearer {SECRET}" for h in evil.hits)  # the server did get it, and echoed it
    assert SECRET not in r.output and "***" in r.output
    for p in tmp_path.rglob("*"):
        if p.is_file():
            assert SECRET.encode() not in p.read_bytes(), p


def test_url_credentials_never_reach_the_log(evil, tmp_path, monkeypatch, caplog):
    endpoint = evil.endpoint.replace("http://", f"http://user:{SECRET}@")
    monkeypatch.setenv("HF_ENDPOINT", endpoint)
    evil.script.status["weights.bin"] = (503, {})
    caplog.set_level(logging.DEBUG)
    res = download(REPO, local_dir=tmp_path / "target", progress=False)
    assert [f.path for f in res.failures] == ["weights.bin"]
    records = [r.getMessage() for r in caplog.records]
    assert any("503" in m and "http://127.0.0.1:" in m for m in records)  # huggingface_hub's retry warnings
    assert not any(SECRET in m or "user:" in m for m in records)
    assert SECRET not in res.failures[0].message
    manifest = tmp_path / "target" / ".dshub" / "download.json"
    assert SECRET not in manifest.read_text()


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("token,says", [(None, "a token is needed and none was sent"), (SECRET, "the token was rejected")])
def test_401_says_token_missing_or_rejected(evil, tmp_path, monkeypatch, token, says, mode):
    if token:
        monkeypatch.setenv("HF_TOKEN", token)
    evil.script.status["info"] = (401, {"X-Error-Message": "Invalid credentials in Authorization header"})
    err = refused(tmp_path, mode, TokenRejected, REPO, "HTTP 401", says, "not transient")
    assert "run again later" not in str(err) and (token is None or token not in str(err))
    evil.script.status = {"weights.bin": (401, {})}
    res = download(REPO, local_dir=target_of(mode, tmp_path)[0], progress=False)
    (fail,) = res.failures
    assert fail.path == "weights.bin" and says in fail.message and "run again later" not in fail.message


@pytest.mark.parametrize("mode", MODES)
def test_403_names_the_file_and_gating(evil, tmp_path, mode):
    evil.script.status["weights.bin"] = (403, {"X-Error-Message": "restricted"})
    local_dir, target = target_of(mode, tmp_path)
    before = tree_state(tmp_path)
    res = download(REPO, local_dir=local_dir, progress=False)
    (fail,) = res.failures
    assert fail.path == "weights.bin"
    assert "access to weights.bin is forbidden (HTTP 403)" in fail.message and "gated" in fail.message
    assert not (res.plan.root / "weights.bin").exists()
    assert outside(tree_state(tmp_path), target, tmp_path) == outside(before, target, tmp_path)


def test_forbidden_file_is_a_file_forbidden_error(evil, tmp_path):
    evil.script.status["tree"] = (403, {"X-Error-Message": "restricted"})
    refused(tmp_path, "local-dir", FileForbidden, REPO, "forbidden (HTTP 403)", "gated")


# ------------------------------------------------------------------------------------ concurrency
BIG = bytes(range(256)) * 8192  # 2 MiB


def _two_revisions(evil) -> tuple[str, str]:
    old, new = "a" * 40, "b" * 40
    evil.script.commits = {"v1": old, "v2": new}
    evil.script.files_at = {old: {"shared.bin": BIG, "config.json": b'{"v": 1}'},
                            new: {"shared.bin": BIG, "config.json": b'{"v": 2}'}}
    evil.script.rate_bytes_per_s = 4 << 20  # half a second per transfer of the shared blob: the runs overlap
    return old, new


def test_two_concurrent_downloads_share_a_blob_without_interleaving(evil, tmp_path, caplog, monkeypatch):
    _two_revisions(evil)
    monkeypatch.setenv("HF_HUB_DOWNLOAD_TIMEOUT", "5")  # a loaded machine must not turn this into a resume test
    caplog.set_level(logging.WARNING, logger="dshub.hub")
    results: dict[str, object] = {}

    def run(rev: str) -> None:
        try:
            results[rev] = download(REPO, revision=rev, progress=False)
        except Exception as e:  # noqa: BLE001 - reported by the assertion below
            results[rev] = e

    threads = [threading.Thread(target=run, args=(rev,)) for rev in ("v1", "v2")]
    for t in threads:
        t.start()
        time.sleep(0.1)  # the first is transferring when the second starts
    for t in threads:
        t.join(20)
    assert all(getattr(r, "ok", False) for r in results.values()), results
    blobs = target_of("hf-cache", tmp_path)[1] / "blobs"
    blob = blobs / hashlib.sha256(BIG).hexdigest()
    assert blob.read_bytes() == BIG  # one blob of the right size, not two transfers appended
    assert not list(blobs.glob("*.part"))
    assert evil.fresh_gets("shared.bin") == 1, evil.hits  # the second waited and used the first one's blob
    for r in results.values():
        assert (r.plan.root / "shared.bin").read_bytes() == BIG  # type: ignore[attr-defined]
    assert any("waiting for another dshub download" in m for m in caplog.messages)


def test_a_blob_locked_by_another_process_is_waited_for(evil, tmp_path, caplog, monkeypatch):
    _two_revisions(evil)
    monkeypatch.setenv("HF_HUB_DOWNLOAD_TIMEOUT", "5")
    lock = target_of("hf-cache", tmp_path)[1] / ".dshub" / "locks" / (hashlib.sha256(BIG).hexdigest() + ".lock")
    lock.parent.mkdir(parents=True)
    holder = subprocess.Popen(
        [sys.executable, "-c",
         "import fcntl, os, sys, time; f = open(sys.argv[1], 'a+'); fcntl.flock(f, fcntl.LOCK_EX); "
         "f.write(str(os.getpid())); f.flush(); print('held', flush=True); time.sleep(1.0)", str(lock)],
        stdout=subprocess.PIPE, text=True,
    )
    try:
        assert holder.stdout.readline().strip() == "held"
        caplog.set_level(logging.WARNING, logger="dshub.hub")
        t0 = time.monotonic()
        res = download(REPO, revision="v1", progress=False)
        assert time.monotonic() - t0 >= 0.5  # it waited for the holder
    finally:
        holder.wait(10)
    assert res.ok, res.failures
    assert any(f"pid {holder.pid}" in m for m in caplog.messages)
    assert (res.plan.root / "shared.bin").read_bytes() == BIG


# ------------------------------------------------------------------------------------ the helpers themselves
@pytest.mark.parametrize("url,want", [
    ("http://user:pw@h.example:8080/p?x=1", "http://h.example:8080/p?x=1"),
    ("https://h.example/p?token=abc&x=1", "https://h.example/p?token=***&x=1"),
    ("https://h.example/p?X-Amz-Signature=abc&X-Amz-Credential=k", "https://h.example/p?X-Amz-Signature=***&X-Amz-Credential=***"),
    ("https://h.example/p", "https://h.example/p"),
])
def test_redact_url(url, want):
    assert redact_url(url) == want


def test_library_log_records_are_redacted(caplog, monkeypatch):
    monkeypatch.setenv("HF_TOKEN", SECRET)
    install_log_redaction()
    caplog.set_level(logging.WARNING)
    logging.getLogger("huggingface_hub.utils._http").warning(
        "thrown while requesting GET %s with Bearer %s", "http://u:pw@h/x?access_token=zz", SECRET)
    (msg,) = [r.getMessage() for r in caplog.records if r.name == "huggingface_hub.utils._http"]
    assert msg == "thrown while requesting GET http://h/x?access_token=*** with Bearer ***"


@pytest.mark.parametrize("value,shown", [
    ("a\x1b[31m", r"a\x1b[31m"), ("nul\x00", r"nul\x00"), ("bell\x07", r"bell\x07"), ("rtl\u202e", r"rtl\u202e"),
    ("ok [b]", "ok [b]"), ("ünï", "ünï"),
])
def test_printable_escapes_control_characters_only(value, shown):
    assert printable(value) == shown


@pytest.mark.parametrize("mode", MODES)
def test_a_tampered_manifest_is_checked_offline_too(evil, tmp_path, victims, monkeypatch, mode):
    local_dir, target = target_of(mode, tmp_path)
    assert download(REPO, local_dir=local_dir, progress=False).ok
    root = local_dir or target / "snapshots" / COMMIT
    manifest = load_manifest(root)
    manifest.files["../../../victim_dir/victim.bin"] = RemoteFile("../../../victim_dir/victim.bin", 4096, "0" * 64)
    save_manifest(root, manifest)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    refused(tmp_path, mode, HubMetadataRefused, "escapes the target directory")


@pytest.mark.parametrize("var", ["HF_HUB_ETAG_TIMEOUT", "HF_HUB_DOWNLOAD_TIMEOUT"])
@pytest.mark.parametrize("value", ["soon", "0", "-1", "nan"])
def test_bad_timeout_setting_is_a_usage_error(evil, tmp_path, monkeypatch, var, value):
    monkeypatch.setenv(var, value)
    before = tree_state(tmp_path)
    with pytest.raises(UsageError, match=f"{var}="):
        download(REPO, local_dir=tmp_path / "target", progress=False)
    assert tree_state(tmp_path) == before


@pytest.mark.parametrize("mode", MODES)
def test_verify_against_a_hostile_hub_is_refused(evil, tmp_path, victims, mode):
    local_dir, _ = target_of(mode, tmp_path)
    root = download(REPO, local_dir=local_dir, progress=False).plan.root
    evil.script.trees[COMMIT] = [entry("../../../victim_dir/victim.bin", FILES["weights.bin"])]
    before = tree_state(tmp_path)
    with pytest.raises(HubMetadataRefused, match="escapes the target directory"):
        verify_hashes(root, against_hub=REPO, progress=False)
    assert tree_state(tmp_path) == before


@pytest.mark.parametrize("name, value", [("HF_HUB_ETAG_TIMEOUT", "abc"), ("HF_HUB_DOWNLOAD_TIMEOUT", "0.5")])
def test_hf_timeouts_huggingface_hub_cannot_parse_are_a_usage_error(tmp_path, name: str, value: str) -> None:
    """In a fresh process (huggingface_hub not yet imported, as for a user): one line, exit 2, no traceback."""
    import os
    import subprocess
    import sys

    env = {**os.environ, name: value, "HF_HOME": str(tmp_path / "hf")}
    r = subprocess.run([sys.executable, "-m", "dshub.cli", "download", "org/model", "--local-dir", str(tmp_path / "d"),
                        "--dry-run"], env=env, capture_output=True, text=True, timeout=120)
    assert r.returncode == 2, r.stderr
    assert "Traceback" not in r.stderr and name in r.stderr and len(r.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "d").exists()
