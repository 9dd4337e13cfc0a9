"""Streaming digests, the size+mtime hash cache, the download manifest, and source selection."""
from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys

import pytest

from dshub.hub.manifest import DownloadManifest, RemoteFile, load_manifest, redact_url, save_manifest
from dshub.errors import CheckpointError, SourceUnavailable, UsageError
from dshub.hub.hashing import CHUNK, HashCache, Stamp, git_blob_sha1, hash_many, sha256_file
from dshub.hub.download import select
from dshub.hub.sources import make_source, scrub
from tests.support.tools import require_executable


@pytest.fixture
def files(tmp_path):
    sizes = {"empty": 0, "small": 1000, "chunky": CHUNK + 17, "sub/nested.bin": 3 * CHUNK}
    out = {}
    for name, size in sizes.items():
        p = tmp_path / name
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(os.urandom(size))
        out[name] = p
    return out


def test_sha256_matches_hashlib_across_chunk_boundaries(files):
    for p in files.values():
        assert sha256_file(p) == hashlib.sha256(p.read_bytes()).hexdigest()


def test_git_blob_sha1_matches_git(files):
    git = require_executable("git")
    for p in files.values():
        want = subprocess.run([git, "hash-object", str(p)], capture_output=True, text=True, check=True).stdout.strip()
        assert git_blob_sha1(p) == want


def test_hash_cache_keyed_by_size_and_mtime(tmp_path, files):
    cache_path = tmp_path / "state" / "hashes.json"
    cache = HashCache(tmp_path, cache_path)
    digest = cache.sha256("small")
    cache.save()
    again = HashCache(tmp_path, cache_path)  # persisted across runs
    assert again.get("small") == digest
    p = files["small"]
    st = p.stat()
    p.write_bytes(b"x" * 1000)  # same size, new mtime
    assert again.get("small") is None
    os.utime(p, ns=(st.st_atime_ns, st.st_mtime_ns))  # same size and mtime: the cache cannot tell
    assert again.get("small") == digest
    assert again.sha256("small", refresh=True) == hashlib.sha256(b"x" * 1000).hexdigest()
    p.write_bytes(b"short")
    assert again.get("small") is None


def test_hash_cache_survives_garbage(tmp_path, files):
    (tmp_path / "hashes.json").write_text("{not json")
    cache = HashCache(tmp_path, tmp_path / "hashes.json")
    assert cache.get("small") is None and cache.sha256("small") == sha256_file(files["small"])


def test_hash_many_parallel_reports_unreadable(tmp_path, files):
    cache = HashCache(tmp_path, tmp_path / "h.json")
    progress = []
    out = hash_many([*files, "nope"], cache, workers=3, progress=progress.append)
    for name, p in files.items():
        assert out[name] == hashlib.sha256(p.read_bytes()).hexdigest()
    assert isinstance(out["nope"], OSError)
    assert sum(progress) == sum(p.stat().st_size for p in files.values())
    assert Stamp.of(files["small"]).size == 1000


def test_manifest_round_trip_and_redaction(tmp_path):
    m = DownloadManifest("hf", "o/n", "main", "a" * 40, "https://user:secret@mirror.example/x",
                         {"a.safetensors": RemoteFile("a.safetensors", 10, "b" * 64, "c" * 40)}, ["*.safetensors"], [])
    save_manifest(tmp_path, m)
    text = (tmp_path / ".dshub" / "download.json").read_text()
    assert "secret" not in text and "user" not in text
    back = load_manifest(tmp_path)
    assert back.files == m.files and back.commit == m.commit and back.endpoint == "https://mirror.example/x"
    assert json.loads(text)["kind"] == "dshub-download"
    (tmp_path / ".dshub" / "download.json").write_text('{"kind": "something-else"}')
    with pytest.raises(CheckpointError, match="not a dshub download manifest"):
        load_manifest(tmp_path)
    assert load_manifest(tmp_path / "none") is None
    assert redact_url("https://h.example:8443/p") == "https://h.example:8443/p"


def test_select_patterns():
    fs = [RemoteFile(p, 1) for p in ("config.json", "model-1.safetensors", "sub/x.safetensors", "README.md")]
    assert [f.path for f in select(fs, ["*.safetensors"])] == ["model-1.safetensors", "sub/x.safetensors"]
    assert [f.path for f in select(fs, [], ["*.md", "sub/*"])] == ["config.json", "model-1.safetensors"]


def test_source_selection(monkeypatch):
    assert make_source("hf", endpoint="http://127.0.0.1:1").name == "hf"
    with pytest.raises(UsageError, match="known: hf, modelscope"):
        make_source("gitee")
    for mod in ("modelscope", "modelscope.hub", "modelscope.hub.api", "modelscope_hub"):
        monkeypatch.setitem(sys.modules, mod, None)  # as if the optional SDK were not installed
    with pytest.raises(SourceUnavailable, match=r"pip install 'dshub\[modelscope\]'"):
        make_source("modelscope")


def test_scrub_removes_token_and_url_credentials(monkeypatch):
    monkeypatch.setenv("HF_TOKEN", "hf_supersecret123")
    assert scrub("failed with hf_supersecret123 at https://u:p@host/x") == "failed with *** at https://host/x"
