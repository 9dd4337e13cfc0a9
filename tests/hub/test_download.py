"""`dshub.hub.download` against a real HTTP server on 127.0.0.1 serving a synthetic checkpoint."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from safetensors import safe_open

from dshub.hub.manifest import load_manifest
from dshub.errors import DiskSpaceError, GatedRepo, RepoNotFound, RevisionNotFound, UsageError
from dshub.hub.download import DownloadPlan, FileState, download
from dshub.hub.layout import hf_cache_dir
from dshub.hub.hash_check import verify_hashes
from tests.support.fakehub import REPO, TEST_TOKEN, sha256  # noqa: F401

SHARD = "model-00003-of-00009.safetensors"


def _same_files(root: Path, files: dict[str, bytes]) -> None:
    for name, data in files.items():
        assert (root / name).read_bytes() == data, name


def test_full_download_verifies_and_second_run_transfers_nothing(hub, repo_files, tmp_path):
    commit = hub.add_repo(REPO, repo_files)
    out = tmp_path / "ckpt"
    res = download(REPO, local_dir=out, progress=False)
    assert res.ok, res.failures
    assert sorted(res.fetched) == sorted(repo_files)
    assert res.bytes_transferred == sum(map(len, repo_files.values()))
    _same_files(out, repo_files)
    assert res.checks == []  # structural verify ran on the result and found nothing (a skip would leave a note)
    with safe_open(out / SHARD, "pt") as f:
        assert len(list(f.keys())) > 0
    m = load_manifest(out)
    assert m.commit == commit and m.files[SHARD].sha256 == sha256(repo_files[SHARD])
    assert not (out / ".dshub" / "partial").exists() or not any((out / ".dshub" / "partial").rglob("*.part"))

    hub.clear_log()
    again = download(REPO, local_dir=out, progress=False)
    assert again.ok and again.fetched == [] and again.bytes_transferred == 0
    assert sorted(again.verified) == sorted(repo_files)
    assert hub.gets() == []  # no file was requested, only the revision and the tree


def test_structurally_broken_checkpoint_fails_the_download(hub, repo_files, tmp_path):
    broken = dict(repo_files)
    broken[SHARD] = repo_files[SHARD][:-8]  # the hub itself holds a truncated shard; its digest matches the listing
    hub.add_repo(REPO, broken)
    res = download(REPO, local_dir=tmp_path, progress=False)
    assert not res.failures and not res.ok
    assert any(c["severity"] == "error" and c["file"] == SHARD for c in res.checks)


def test_cache_mode_is_huggingface_hub_compatible(hub, repo_files):
    from huggingface_hub import snapshot_download

    from huggingface_hub import scan_cache_dir

    files = dict(repo_files, **{"LICENSE": b"MIT", "docs/LICENSE": b"MIT"})  # two paths, one blob
    hub.add_repo(REPO, files)
    res = download(REPO, progress=False)  # no --local-dir: the HF cache under the test's HF_HOME
    assert res.ok, res.failures
    assert res.plan.root.parent.parent.name == "models--" + REPO.replace("/", "--")
    assert len(hub.gets("LICENSE")) + len(hub.gets("docs/LICENSE")) == 1
    hub.clear_log()
    # huggingface_hub read HF_HOME at import, so name the cache the test isolated
    path = snapshot_download(REPO, endpoint=hub.endpoint, cache_dir=hf_cache_dir())
    assert Path(path) == res.plan.root
    assert hub.gets() == []
    _same_files(Path(path), files)
    scan = scan_cache_dir(hf_cache_dir())
    (repo,) = scan.repos
    (rev,) = repo.revisions
    assert sorted(f.file_name for f in rev.files) == sorted(p.rsplit("/", 1)[-1] for p in files)  # no dshub state
    assert scan.warnings == []
    assert verify_hashes(path).ok  # the manifest is found for a snapshot path
    assert download(REPO, progress=False).fetched == []


def test_local_dir_is_current_for_huggingface_hub(hub, repo_files, tmp_path):
    from huggingface_hub import snapshot_download

    hub.add_repo(REPO, repo_files)
    assert download(REPO, local_dir=tmp_path / "d", progress=False).ok
    hub.clear_log()
    snapshot_download(REPO, endpoint=hub.endpoint, local_dir=tmp_path / "d")
    assert hub.gets() == []


def test_include_exclude(hub, repo_files, tmp_path):
    hub.add_repo(REPO, repo_files)
    res = download(REPO, local_dir=tmp_path, include=["*.json"], exclude=["tokenizer*"], progress=False)
    assert res.ok
    want = sorted(n for n in repo_files if n.endswith(".json") and not n.startswith("tokenizer"))
    assert sorted(res.fetched) == want
    assert sorted(p.name for p in tmp_path.iterdir() if p.is_file()) == want
    assert res.checks == [] or all(c["severity"] != "error" for c in res.checks)
    with pytest.raises(UsageError, match="no file matches"):
        download(REPO, local_dir=tmp_path, include=["*.gguf"], progress=False)


def test_revision_pinning(hub, repo_files, tmp_path):
    old = hub.add_repo(REPO, {"config.json": b'{"v": 1}', "README.md": b"old"})
    new = hub.add_repo(REPO, repo_files)
    hub.repos[REPO].refs["v1"] = old
    assert new != old
    res = download(REPO, revision=old, local_dir=tmp_path / "a", progress=False)
    assert res.ok and res.plan.manifest.commit == old
    assert (tmp_path / "a" / "config.json").read_bytes() == b'{"v": 1}'
    res = download(REPO, revision="v1", local_dir=tmp_path / "b", progress=False)
    assert res.plan.manifest.commit == old and res.plan.manifest.revision == "v1"
    assert all(e.path.split("/resolve/")[1].startswith(old) for e in hub.gets())  # files fetched by commit, not name
    with pytest.raises(RevisionNotFound, match="revision 'nope' not found"):
        download(REPO, revision="nope", local_dir=tmp_path / "c", progress=False)


def test_repository_not_found(hub, tmp_path):
    with pytest.raises(RepoNotFound, match="deepseek-ai/nothing: repository not found"):
        download("deepseek-ai/nothing", local_dir=tmp_path, progress=False)


def test_gated_repo_needs_token_and_never_shows_it(hub, repo_files, tmp_path, monkeypatch):
    hub.add_repo(REPO, repo_files, gated=True)
    with pytest.raises(GatedRepo, match="gated repository or token refused") as ei:
        download(REPO, local_dir=tmp_path, progress=False)
    monkeypatch.setenv("HF_TOKEN", "hf_wrongtoken_xxxxxxxxxxxxxxxx")
    with pytest.raises(GatedRepo) as ei:
        download(REPO, local_dir=tmp_path, progress=False)
    assert "hf_wrongtoken" not in str(ei.value)
    monkeypatch.setenv("HF_TOKEN", TEST_TOKEN)
    res = download(REPO, local_dir=tmp_path, progress=False)
    assert res.ok and all(e.authorized for e in hub.gets())
    for p in tmp_path.rglob("*"):
        if p.is_file() and p.stat().st_size < 1 << 20:
            assert TEST_TOKEN.encode() not in p.read_bytes(), p


def test_5xx_is_retried(hub, repo_files, tmp_path):
    hub.add_repo(REPO, repo_files)
    hub.faults.status[SHARD] = (503, 2)
    res = download(REPO, local_dir=tmp_path, progress=False)
    assert res.ok, res.failures
    assert [e.status for e in hub.gets(SHARD)] == [503, 503, 200]


def test_persistent_5xx_fails_that_file_only(hub, repo_files, tmp_path):
    hub.add_repo(REPO, repo_files)
    hub.faults.status[SHARD] = (500, -1)
    res = download(REPO, local_dir=tmp_path, progress=False)
    assert not res.ok
    assert [f.path for f in res.failures] == [SHARD]
    assert "HTTP 500" in res.failures[0].message
    assert sorted(res.fetched) == sorted(set(repo_files) - {SHARD})
    hub.faults.status.clear()
    hub.clear_log()
    res = download(REPO, local_dir=tmp_path, progress=False)
    assert res.ok and res.fetched == [SHARD]


def test_disk_space_refusal(hub, repo_files, tmp_path, monkeypatch):
    hub.add_repo(REPO, repo_files)
    real = shutil.disk_usage

    def tiny_disk(path):
        u = real(path)
        return type(u)(u.total, u.total - 1000, 1000)

    monkeypatch.setattr(shutil, "disk_usage", tiny_disk)
    with pytest.raises(DiskSpaceError, match="still to download, 0.00 GB free"):
        download(REPO, local_dir=tmp_path / "d", progress=False)
    assert not any(p.name.endswith(".safetensors") for p in (tmp_path / "d").rglob("*"))
    assert hub.gets() == []


def test_dry_run_plans_without_writing(hub, repo_files, tmp_path):
    hub.add_repo(REPO, repo_files)
    out = tmp_path / "d"
    plan = download(REPO, local_dir=out, dry_run=True, progress=False)
    assert isinstance(plan, DownloadPlan)
    d = plan.to_dict()
    assert d["totals"]["files"] == len(repo_files)
    assert d["totals"]["to_fetch_bytes"] == sum(map(len, repo_files.values()))
    assert {f["state"] for f in d["files"]} == {"missing"}
    assert not out.exists() and hub.gets() == []
    json.dumps(d)


def test_wrong_bytes_once_are_refetched(hub, repo_files, tmp_path):
    hub.add_repo(REPO, repo_files)
    bad = bytearray(repo_files[SHARD])
    bad[-1] ^= 0x01
    hub.faults.wrong_bytes[SHARD] = (bytes(bad), 1)
    res = download(REPO, local_dir=tmp_path, progress=False)
    assert res.ok, res.failures
    assert SHARD in res.refetched_bad
    assert (tmp_path / SHARD).read_bytes() == repo_files[SHARD]


def test_wrong_bytes_always_are_reported_and_not_installed(hub, repo_files, tmp_path):
    hub.add_repo(REPO, repo_files)
    bad = bytearray(repo_files[SHARD])
    bad[100] ^= 0x10
    hub.faults.wrong_bytes[SHARD] = (bytes(bad), -1)
    res = download(REPO, local_dir=tmp_path, progress=False)
    assert not res.ok
    (fail,) = res.failures
    assert fail.path == SHARD and fail.expected == sha256(repo_files[SHARD]) and fail.actual == sha256(bytes(bad))
    assert f"sha256 {fail.actual} does not match the hub's {fail.expected}" in fail.message
    assert not (tmp_path / SHARD).exists()
    assert not any(tmp_path.rglob("*.part"))


@pytest.mark.parametrize("body,hint", [
    (b"version https://git-lfs.github.com/spec/v1\noid sha256:abc\nsize 1020632\n", "LFS pointer"),
    (b"<!DOCTYPE html><html><body>Too many requests</body></html>", "HTML error page"),
])
def test_html_or_pointer_body_is_refused(hub, repo_files, tmp_path, body, hint):
    hub.add_repo(REPO, repo_files)
    hub.faults.wrong_bytes[SHARD] = (body, -1)
    res = download(REPO, local_dir=tmp_path, progress=False)
    (fail,) = res.failures
    assert fail.path == SHARD and f"server sends {len(body)} bytes, the hub lists {len(repo_files[SHARD])}" in fail.message
    assert hint.split()[0] in fail.message
    assert not (tmp_path / SHARD).exists()


def test_connection_cut_mid_file_resumes_within_the_run(hub, repo_files, tmp_path):
    hub.add_repo(REPO, repo_files)
    size = len(repo_files[SHARD])
    hub.faults.cut_after[SHARD] = (size // 3, 1)
    res = download(REPO, local_dir=tmp_path, progress=False)
    assert res.ok, res.failures
    gets = hub.gets(SHARD)
    assert [e.range for e in gets] == [None, f"bytes={size // 3}-"]
    assert hub.bytes_sent(SHARD) == size  # not one byte twice
    assert (tmp_path / SHARD).read_bytes() == repo_files[SHARD]


@pytest.mark.parametrize("layout", ["local-dir", "hf-cache"])
def test_interrupted_run_is_completed_by_the_next(hub, repo_files, tmp_path, layout):
    hub.add_repo(REPO, repo_files)
    local_dir = tmp_path if layout == "local-dir" else None
    size = len(repo_files[SHARD])
    cut = size // 2 + 12345
    hub.faults.cut_after[SHARD] = (cut, -1)  # the server keeps dropping at the same byte: the run gives up
    first = download(REPO, local_dir=local_dir, progress=False)
    assert [f.path for f in first.failures] == [SHARD]
    assert "run again to resume" in first.failures[0].message
    assert not (first.plan.root / SHARD).exists()
    assert all(p.exists() for p in first.plan.root.rglob("*") if p.is_symlink())  # no dangling links for HF to trip on
    plan = download(REPO, local_dir=local_dir, dry_run=True, progress=False)
    assert plan.layout.kind == layout
    (p,) = [p for p in plan.files if p.file.path == SHARD]
    assert p.state == FileState.PARTIAL and p.have == cut

    hub.faults.cut_after.clear()
    hub.clear_log()
    second = download(REPO, local_dir=local_dir, progress=False)
    assert second.ok and second.fetched == [SHARD]
    assert [e.range for e in hub.gets()] == [f"bytes={cut}-"]
    assert second.bytes_transferred == size - cut
    _same_files(second.plan.root, repo_files)


def test_stalled_transfer_times_out_and_resumes(hub, repo_files, tmp_path, monkeypatch):
    hub.add_repo(REPO, repo_files)
    size = len(repo_files[SHARD])
    monkeypatch.setenv("HF_HUB_DOWNLOAD_TIMEOUT", "0.5")
    hub.faults.stall_after[SHARD] = (size - 1000, 3.0, 1)  # silent at 99.9 %
    res = download(REPO, local_dir=tmp_path, progress=False)
    assert res.ok, res.failures
    assert [e.range for e in hub.gets(SHARD)][-1] == f"bytes={size - 1000}-"
    assert (tmp_path / SHARD).read_bytes() == repo_files[SHARD]


def test_file_missing_on_the_hub(hub, repo_files, tmp_path):
    hub.add_repo(REPO, repo_files)
    hub.faults.status[SHARD] = (404, -1)  # listed in the tree, but resolve answers EntryNotFound
    res = download(REPO, local_dir=tmp_path, progress=False)
    (fail,) = res.failures
    assert fail.path == SHARD and f"{SHARD} is missing on the hub (HTTP 404)" in fail.message


def test_server_ignoring_range_restarts_cleanly(hub, repo_files, tmp_path):
    hub.add_repo(REPO, repo_files)
    size = len(repo_files[SHARD])
    hub.faults.cut_after[SHARD] = (size // 4, 1)
    hub.faults.ignore_range = True
    res = download(REPO, local_dir=tmp_path, progress=False)
    assert res.ok, res.failures
    assert (tmp_path / SHARD).read_bytes() == repo_files[SHARD]


def test_local_damage_is_found_and_repaired(hub, repo_files, tmp_path):
    hub.add_repo(REPO, repo_files)
    assert download(REPO, local_dir=tmp_path, progress=False).ok
    (tmp_path / "model-00001-of-00009.safetensors").unlink()  # a shard that never arrived
    shard2 = tmp_path / "model-00002-of-00009.safetensors"
    shard2.write_bytes(repo_files[shard2.name][:1000])  # truncated
    shard4 = tmp_path / "model-00004-of-00009.safetensors"
    data = bytearray(shard4.read_bytes())
    data[-7] ^= 0x40  # same size, different bytes
    shard4.write_bytes(bytes(data))
    hub.clear_log()
    plan = download(REPO, local_dir=tmp_path, dry_run=True, progress=False)
    states = {p.file.path: p.state for p in plan.files}
    assert states["model-00001-of-00009.safetensors"] == FileState.MISSING
    assert states[shard2.name] == FileState.PARTIAL
    assert states[shard4.name] == FileState.PRESENT  # mtime changed: its remembered digest no longer applies
    res = download(REPO, local_dir=tmp_path, progress=False)
    assert res.ok and res.refetched_bad == [shard4.name]
    assert sorted(res.fetched) == sorted(["model-00001-of-00009.safetensors", shard2.name, shard4.name])
    assert next(e for e in hub.gets(shard2.name)).range == "bytes=1000-"  # the short file was resumed
    _same_files(tmp_path, repo_files)



def test_no_verify_trusts_files_whose_size_matches(hub, repo_files, tmp_path):
    hub.add_repo(REPO, repo_files)
    assert download(REPO, local_dir=tmp_path, progress=False).ok
    shard4 = tmp_path / "model-00004-of-00009.safetensors"
    data = bytearray(shard4.read_bytes())
    data[-7] ^= 0x40  # same size, different bytes, new mtime
    shard4.write_bytes(bytes(data))
    hub.clear_log()
    res = download(REPO, local_dir=tmp_path, verify=False, progress=False)
    assert res.ok and res.fetched == [] and res.refetched_bad == [] and res.checks == []
    assert shard4.name in res.verified and hub.gets() == []
    assert shard4.read_bytes() == bytes(data)  # trusted, as --no-verify says; a verifying run repairs it
    res = download(REPO, local_dir=tmp_path, progress=False)
    assert res.ok and res.refetched_bad == [shard4.name]
    _same_files(tmp_path, repo_files)

def test_listing_that_escapes_the_directory_is_refused(hub, tmp_path):
    from dshub.errors import CheckpointError

    hub.add_repo(REPO, {"config.json": b"{}", "../outside.json": b"{}"})
    with pytest.raises(CheckpointError, match="escapes"):
        download(REPO, local_dir=tmp_path / "d", progress=False)
    assert not (tmp_path / "outside.json").exists()


def test_a_second_concurrent_download_is_refused(hub, repo_files, tmp_path):
    import fcntl

    from dshub.errors import OutputError

    hub.add_repo(REPO, repo_files)
    lock = tmp_path / ".dshub" / "lock"
    lock.parent.mkdir(parents=True)
    with open(lock, "w") as held:  # what a running `dshub download` holds
        held.write("4242")
        held.flush()
        fcntl.flock(held, fcntl.LOCK_EX | fcntl.LOCK_NB)
        with pytest.raises(OutputError, match=r"another dshub download \(pid 4242\) is writing here"):
            download(REPO, local_dir=tmp_path, progress=False)
    assert hub.gets() == []
    assert download(REPO, local_dir=tmp_path, progress=False).ok  # released: the next run proceeds


def test_cache_revisions_share_blobs(hub, repo_files):
    old = hub.add_repo(REPO, repo_files)
    new_files = dict(repo_files, **{"config.json": repo_files["config.json"] + b"\n"})
    new = hub.add_repo(REPO, new_files)
    assert download(REPO, revision=old, progress=False).ok
    hub.clear_log()
    res = download(REPO, revision="main", progress=False)
    assert res.ok and res.plan.manifest.commit == new
    assert [e.file for e in hub.gets()] == ["config.json"]  # every other blob is reused, not fetched again
    _same_files(res.plan.root, new_files)
    assert (hf_cache_dir() / ("models--" + REPO.replace("/", "--")) / "refs" / "main").read_text() == new
