"""`dshub download` and `dshub verify --hashes / --against-hub` through the CLI: exit codes, --json, messages."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from dshub.hub.hashing import sha256_file
from tests.support.fakehub import REPO, TEST_TOKEN, sha256  # noqa: F401
from tests.support.tools import REPO_ROOT

SHARD = "model-00005-of-00009.safetensors"
ROOT = REPO_ROOT


def _json(result) -> dict:
    assert result.stdout.count("\n{") == 0 or result.stdout.lstrip().startswith("{")
    return json.loads(result.stdout)


def test_download_json_and_rerun(cli, hub, repo_files, tmp_path):
    commit = hub.add_repo(REPO, repo_files)
    r = cli("download", REPO, "--local-dir", tmp_path, "--json")
    assert r.exit_code == 0, r.output
    doc = _json(r)
    assert doc["ok"] and doc["plan"]["commit"] == commit and len(doc["fetched"]) == len(repo_files)
    r = cli("download", REPO, "--local-dir", tmp_path, "--json")
    doc = _json(r)
    assert r.exit_code == 0 and doc["fetched"] == [] and doc["bytes_transferred"] == 0


def test_dry_run_json(cli, hub, repo_files, tmp_path):
    hub.add_repo(REPO, repo_files)
    r = cli("download", REPO, "--local-dir", tmp_path / "x", "--dry-run", "--json", "--include", "*.safetensors")
    assert r.exit_code == 0, r.output
    doc = _json(r)
    assert doc["dry_run"] is True
    assert {f["path"] for f in doc["plan"]["files"]} == {n for n in repo_files if n.endswith(".safetensors")}
    assert not (tmp_path / "x").exists()


def test_human_plan_output(cli, hub, repo_files, tmp_path):
    hub.add_repo(REPO, repo_files)
    r = cli("download", REPO, "--local-dir", tmp_path)
    assert r.exit_code == 0, r.output
    assert f"{len(repo_files)} files" in r.stdout and "complete and verified" in r.stdout


@pytest.mark.parametrize("args,code,message", [
    (["deepseek-ai/missing"], 1, "deepseek-ai/missing: repository not found"),
    ([REPO, "--revision", "v9"], 1, "revision 'v9' not found"),
    ([REPO, "--source", "gitee"], 2, "unknown --source 'gitee'; known: hf, modelscope"),
    ([REPO, "--include", "*.gguf"], 2, "no file matches"),
])
def test_errors_are_one_line_with_exit_code(cli, hub, repo_files, tmp_path, args, code, message):
    hub.add_repo(REPO, repo_files)
    r = cli("download", *args, "--local-dir", tmp_path)
    assert r.exit_code == code, r.output
    assert message in r.output
    assert "Traceback" not in r.output
    assert len([ln for ln in r.output.splitlines() if ln.startswith("error:")]) == 1


def test_modelscope_without_sdk_says_how_to_install(cli, hub, tmp_path, monkeypatch):
    for mod in ("modelscope", "modelscope.hub", "modelscope.hub.api", "modelscope_hub"):
        monkeypatch.setitem(sys.modules, mod, None)  # as if the optional SDK were not installed
    r = cli("download", "deepseek-ai/DeepSeek-V3", "--source", "modelscope", "--local-dir", tmp_path)
    assert r.exit_code == 1
    assert "pip install 'dshub[modelscope]'" in r.output


def test_modelscope_source_downloads_with_the_sdk(cli, hub, repo_files, tmp_path, monkeypatch):
    import modelscope_hub  # noqa: F401  (the ModelScope SDK, dshub[modelscope], in the [test] extra)
    commit = hub.add_repo(REPO, repo_files, ref="master")
    monkeypatch.setenv("MODELSCOPE_ENDPOINT", hub.endpoint)
    monkeypatch.setenv("MODELSCOPE_CACHE", str(tmp_path / "ms-cache"))
    hub.faults.cut_after[SHARD] = (1000, 1)
    r = cli("download", REPO, "--source", "modelscope", "--local-dir", tmp_path / "d", "--json")
    assert r.exit_code == 0, r.output
    doc = _json(r)
    assert doc["plan"]["source"] == "modelscope" and doc["plan"]["revision"] == "master"
    assert doc["plan"]["files"][0]["sha256"]  # digests came from ModelScope's listing
    for name, data in repo_files.items():
        assert (tmp_path / "d" / name).read_bytes() == data
    assert [e.range for e in hub.gets(SHARD)] == [None, "bytes=1000-"]
    assert all(e.path == f"/api/v1/models/{REPO}/repo" for e in hub.gets())
    r = cli("download", "deepseek-ai/none", "--source", "modelscope", "--local-dir", tmp_path / "e")
    assert r.exit_code == 1 and "deepseek-ai/none" in r.output and "Traceback" not in r.output
    del commit


def test_gated_with_token_never_prints_it(cli, hub, repo_files, tmp_path, monkeypatch):
    hub.add_repo(REPO, repo_files, gated=True)
    monkeypatch.setenv("HF_TOKEN", "hf_notTheRightOne_0000000000000")
    r = cli("download", REPO, "--local-dir", tmp_path, "--json")
    assert r.exit_code == 1 and "gated repository or token refused" in r.output
    assert "hf_notTheRightOne" not in r.output
    monkeypatch.setenv("HF_TOKEN", TEST_TOKEN)
    r = cli("download", REPO, "--local-dir", tmp_path, "--json")
    assert r.exit_code == 0, r.output
    assert TEST_TOKEN not in r.output
    assert TEST_TOKEN not in (tmp_path / ".dshub" / "download.json").read_text()


def test_hash_mismatch_exit_1_names_file_expected_actual(cli, hub, repo_files, tmp_path):
    hub.add_repo(REPO, repo_files)
    bad = bytearray(repo_files[SHARD])
    bad[50] ^= 1
    hub.faults.wrong_bytes[SHARD] = (bytes(bad), -1)
    r = cli("download", REPO, "--local-dir", tmp_path)
    assert r.exit_code == 1
    line = next(ln for ln in r.output.splitlines() if SHARD in ln and "error" in ln)
    assert sha256(repo_files[SHARD]) in line and sha256(bytes(bad)) in line


# ------------------------------------------------------------------------------------------- verify --hashes
def test_verify_hashes_catches_a_bit_flip_in_a_shard_that_still_parses(cli, hub, repo_files, tmp_path):
    hub.add_repo(REPO, repo_files)
    assert cli("download", REPO, "--local-dir", tmp_path).exit_code == 0
    r = cli("verify", tmp_path, "--hashes", "--json")
    assert r.exit_code == 0, r.output
    assert _json(r)["hashes"]["ok"] and _json(r)["hashes"]["checked"] == len(repo_files)

    shard = tmp_path / SHARD
    st = shard.stat()
    data = bytearray(shard.read_bytes())
    data[-100] ^= 0x04  # inside the last tensor's data: headers, offsets and sizes stay valid
    shard.write_bytes(bytes(data))
    os.utime(shard, ns=(st.st_atime_ns, st.st_mtime_ns))  # even with the old mtime (a silent disk error)
    r = cli("verify", tmp_path, "--json")
    assert r.exit_code == 0, "structural checks alone cannot see it"
    r = cli("verify", tmp_path, "--hashes", "--json")
    assert r.exit_code == 1
    doc = _json(r)
    assert doc["findings"] == [] and doc["ok"] is False  # structure fine; the run fails on the hash
    assert doc["error"]["code"] == "hash_mismatch" and doc["error"]["path"] == SHARD
    (finding,) = doc["hashes"]["findings"]
    assert finding["path"] == SHARD and finding["problem"] == "sha256"
    assert finding["expected"] == sha256(repo_files[SHARD]) and finding["actual"] == sha256_file(shard)
    r = cli("verify", tmp_path, "--hashes")
    assert r.exit_code == 1 and SHARD in r.stdout and "1 bad" in r.stdout


def test_verify_against_hub(cli, hub, repo_files, tmp_path):
    commit = hub.add_repo(REPO, repo_files)
    for name, data in repo_files.items():  # files that came some other way: no dshub manifest
        (tmp_path / name).write_bytes(data)
    r = cli("verify", tmp_path, "--hashes")
    assert r.exit_code == 1 and "no download manifest" in r.output
    r = cli("verify", tmp_path, "--against-hub", f"{REPO}@{commit}", "--json")
    assert r.exit_code == 0, r.output
    assert _json(r)["hashes"]["reference"] == f"hub {REPO}@{commit}"
    (tmp_path / "tokenizer.json").write_bytes(b"{}")
    (tmp_path / "model-00001-of-00009.safetensors").unlink()
    r = cli("verify", tmp_path, "--against-hub", REPO, "--json")
    doc = _json(r)
    assert r.exit_code == 1
    problems = {f["path"]: f["problem"] for f in doc["hashes"]["findings"]}
    assert problems == {"model-00001-of-00009.safetensors": "missing", "tokenizer.json": "size"}



@pytest.mark.parametrize("manifest,message", [
    ("{not json", "download manifest is not valid JSON"),
    ("[]", "download manifest is not a JSON object"),
    ('{"kind": "dshub-download", "format_version": 1, "files": {}}', "malformed download manifest"),
])
def test_verify_hashes_with_a_damaged_manifest_names_it(cli, tmp_path, manifest, message):
    (tmp_path / ".dshub").mkdir()
    (tmp_path / ".dshub" / "download.json").write_text(manifest)
    r = cli("verify", tmp_path, "--hashes")
    assert r.exit_code == 1 and "Traceback" not in r.output
    assert f"download.json: {message}" in r.output


@pytest.mark.parametrize("spec", ["no-slash", "a/b/c", "/name@main"])
def test_against_hub_spec_must_be_owner_name(cli, tmp_path, spec):
    r = cli("verify", tmp_path, "--against-hub", spec)
    assert r.exit_code == 2 and "expected OWNER/NAME or OWNER/NAME@REVISION" in r.output

def test_offline_rerun_verifies_from_the_manifest(cli, hub, repo_files, tmp_path, monkeypatch):
    hub.add_repo(REPO, repo_files)
    assert cli("download", REPO, "--local-dir", tmp_path).exit_code == 0
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    hub.clear_log()
    r = cli("download", REPO, "--local-dir", tmp_path, "--json")
    assert r.exit_code == 0, r.output
    assert _json(r)["offline"] is True and hub.log == []
    (tmp_path / SHARD).unlink()
    r = cli("download", REPO, "--local-dir", tmp_path)
    assert r.exit_code == 1 and "HF_HUB_OFFLINE is set" in r.output and hub.log == []
    r = cli("download", REPO, "--local-dir", tmp_path / "elsewhere")
    assert r.exit_code == 1 and "no dshub download manifest" in r.output
    r = cli("verify", tmp_path, "--against-hub", REPO)
    assert r.exit_code == 1 and "HF_HUB_OFFLINE is set" in r.output and hub.log == []



@pytest.mark.parametrize("var,value", [("DSHUB_HTTP_RETRIES", "many"), ("DSHUB_HTTP_RETRY_WAIT", "-2")])
def test_bad_retry_setting_is_a_usage_error(cli, hub, repo_files, tmp_path, monkeypatch, var, value):
    hub.add_repo(REPO, repo_files)
    monkeypatch.setenv(var, value)
    r = cli("download", REPO, "--local-dir", tmp_path / "ckpt")
    assert r.exit_code == 2 and f"{var}={value!r}" in r.output and "Traceback" not in r.output
    assert hub.gets() == [] and not (tmp_path / "ckpt").exists()  # refused before anything was written

def test_network_down(cli, hub, repo_files, tmp_path, monkeypatch):
    monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:9")  # discard port: connection refused
    r = cli("download", REPO, "--local-dir", tmp_path)
    assert r.exit_code == 1 and "hub unreachable" in r.output and "Traceback" not in r.output


# ------------------------------------------------------------------------------------------- a killed process
@pytest.mark.slow  # two CLI processes (interpreter + torch import each) and a throttled transfer
def test_killed_download_resumes_by_byte_range(hub, repo_files, tmp_path):
    """Kill `dshub download` mid-file (SIGKILL, no cleanup), rerun: only the missing bytes move, files identical."""
    big = {"config.json": repo_files["config.json"], "model.safetensors": bytes(range(256)) * 16384}  # 4 MiB
    hub.add_repo(REPO, big)
    hub.faults.rate_bytes_per_s = 2 << 20
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    cmd = [sys.executable, "-m", "dshub.cli", "download", REPO, "--local-dir", str(tmp_path), "--no-verify"]
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    part = tmp_path / ".dshub" / "partial" / "model.safetensors.part"
    deadline = time.monotonic() + 60
    while not (part.exists() and part.stat().st_size > (1 << 20)):
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < deadline, "transfer never started"
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    have = part.stat().st_size
    assert 0 < have < len(big["model.safetensors"]) and not (tmp_path / "model.safetensors").exists()

    hub.faults.rate_bytes_per_s = None
    hub.clear_log()
    done = subprocess.run(cmd + ["--json"], env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    (get,) = hub.gets("model.safetensors")
    start = int(get.range.removeprefix("bytes=").rstrip("-"))
    assert start == have and get.sent == len(big["model.safetensors"]) - have
    assert (tmp_path / "model.safetensors").read_bytes() == big["model.safetensors"]
    assert json.loads(done.stdout)["ok"] is True


@pytest.mark.parametrize("name, hub_id", [("deepseek-v4-flash", "deepseek-ai/DeepSeek-V4-Flash"),
                                          ("deepseek-v4-pro", "deepseek-ai/DeepSeek-V4-Pro"),
                                          ("deepseek-r1-distill-qwen-7b", "deepseek-ai/DeepSeek-R1-Distill-Qwen-7B")])
def test_download_takes_a_catalog_name(cli, hub, repo_files, tmp_path, name, hub_id):
    """A catalog name is its release's repository: `dshub download deepseek-v4-flash` fetches deepseek-ai/DeepSeek-V4-Flash."""
    hub.add_repo(hub_id, repo_files)
    r = cli("download", name, "--local-dir", tmp_path / "x", "--dry-run", "--json")
    assert r.exit_code == 0, r.output
    doc = _json(r)
    assert doc["plan"]["repo_id"] == hub_id and {f["path"] for f in doc["plan"]["files"]} == set(repo_files)
