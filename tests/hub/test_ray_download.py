"""`dshub download --executor ray` on the shared local Ray cluster, from the loopback fake hub: the local download's
bytes and manifest, the files fetched by the nodes with their own token (the driver's never leaves it), a killed
worker's task retried by Ray and resuming its partial file, a file the
hub serves corrupted refused by name with nothing left looking complete, a rerun resuming and skipping verified
files, a pipeline's download step on the cluster, a node that does not mount the directory refused before any
transfer, and no Ray installed a usage error (exit 2, one JSON document)."""
from __future__ import annotations

import json
import pickle
import subprocess
import sys
from pathlib import Path

import pytest

from dshub.errors import UsageError
from dshub.hub.download import _Runner, plan_download, run_download
from dshub.hub.manifest import STATE_DIR
from dshub.hub.ray_fetch import TASK_NAME, tasks_for
from dshub.hub.sources import HfSource
from dshub.hub.transfer import RetryPolicy
from dshub.raycluster import MARKER_PREFIX
from tests.support.fakehub import REPO, TEST_TOKEN
from tests.support.ray_cluster import BLOCK_RAY, NODE_HF_TOKEN, RayCluster, kill_a_task_mid_file, ray_env

SHARD = "model-00005-of-00009.safetensors"


def download_cmd(local_dir: Path, cluster: RayCluster, *extra: str) -> list[str]:
    return [sys.executable, "-m", "dshub.cli", "download", REPO, "--local-dir", str(local_dir), "--executor", "ray",
            "--ray-address", cluster.address, *extra]


def run(cmd: list[str]) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, env=ray_env(), capture_output=True, text=True, timeout=300)


def tree(root: Path) -> dict[str, bytes]:
    """The downloaded files by path; dshub's state and huggingface_hub's bookkeeping (timestamps) left out."""
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*"))
            if p.is_file() and p.relative_to(root).parts[0] not in (STATE_DIR, ".cache")}


def manifest(root: Path) -> bytes:
    return (root / STATE_DIR / "download.json").read_bytes()


@pytest.fixture
def gated(hub, repo_files, monkeypatch):
    """The tiny checkpoint as a gated repository; this process (the driver) holds TEST_TOKEN, the nodes their own."""
    hub.add_repo(REPO, repo_files, gated=True)
    hub.tokens.add(NODE_HF_TOKEN)
    monkeypatch.setenv("HF_TOKEN", TEST_TOKEN)
    return hub


@pytest.mark.slow
def test_a_ray_download_is_the_local_download_fetched_by_the_nodes(cli, cluster, gated, repo_files, tmp_path):
    r = cli("download", REPO, "--local-dir", tmp_path / "local", "--json")
    assert r.exit_code == 0, r.output
    gated.clear_log()

    r = run(download_cmd(tmp_path / "ray", cluster, "--json"))
    assert r.returncode == 0, r.stderr
    doc = json.loads(r.stdout)
    assert doc["ok"] and sorted(doc["fetched"]) == sorted(repo_files) and doc["failures"] == []
    assert doc["bytes_transferred"] == sum(len(b) for b in repo_files.values())
    assert tree(tmp_path / "ray") == tree(tmp_path / "local") == repo_files
    assert manifest(tmp_path / "ray") == manifest(tmp_path / "local")  # one manifest, the driver's, the same
    assert not list((tmp_path / "ray").rglob(f"{MARKER_PREFIX}*"))  # the shared-filesystem marker is removed

    files, listing = gated.gets(), [e for e in gated.log if e.file is None]
    assert {e.file for e in files} == set(repo_files)
    assert {e.token for e in files} == {NODE_HF_TOKEN}  # every file fetched on a node, with that node's own token
    assert listing and {e.token for e in listing} == {TEST_TOKEN}  # the driver's token served the listing only
    assert TEST_TOKEN not in r.stdout + r.stderr and NODE_HF_TOKEN not in r.stdout + r.stderr


@pytest.mark.slow
def test_a_ray_download_into_the_hf_cache_links_the_snapshot(cluster, gated, repo_files, tmp_path):
    r = run([sys.executable, "-m", "dshub.cli", "download", REPO, "--executor", "ray", "--ray-address",
             cluster.address, "--json"])  # no --local-dir: HF_HOME (this test's, every node sees it) holds the cache
    assert r.returncode == 0, r.stderr
    snapshot = Path(json.loads(r.stdout)["plan"]["local_dir"])
    assert {p.name: p.read_bytes() for p in snapshot.iterdir()} == repo_files
    assert all((snapshot / n).is_symlink() for n in repo_files)  # snapshots/<commit>/<file> -> ../../blobs/<digest>
    repo_dir = snapshot.parent.parent
    assert (repo_dir / "refs" / "main").read_text() == snapshot.name


@pytest.mark.slow
def test_a_corrupted_file_fails_by_name_and_a_rerun_fetches_only_it(cli, cluster, gated, repo_files, tmp_path):
    bad = bytes(b ^ 0xFF for b in repo_files[SHARD])  # the listed size, other bytes: only the digest can tell
    gated.faults.wrong_bytes[SHARD] = (bad, -1)
    out = tmp_path / "ray"
    r = run(download_cmd(out, cluster))
    assert r.returncode == 1
    errors = [line for line in r.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and SHARD in errors[0] and "does not match the hub's" in errors[0], r.stderr
    assert "INCOMPLETE" in r.stdout
    assert not (out / SHARD).exists() and not list(out.rglob(f"{SHARD}*.part"))  # nothing half-written in place
    assert set(tree(out)) == set(repo_files) - {SHARD}

    del gated.faults.wrong_bytes[SHARD]
    gated.clear_log()
    r = run(download_cmd(out, cluster, "--json"))
    assert r.returncode == 0, r.stderr
    doc = json.loads(r.stdout)
    assert doc["fetched"] == [SHARD] and sorted(doc["verified"]) == sorted(set(repo_files) - {SHARD})
    assert {e.file for e in gated.gets()} == {SHARD}
    assert tree(out) == repo_files

    gated.clear_log()
    r = run(download_cmd(out, cluster, "--json"))  # complete: the rerun fetches nothing and hashes nothing again
    doc = json.loads(r.stdout)
    assert r.returncode == 0 and doc["fetched"] == [] and doc["bytes_transferred"] == 0
    assert sorted(doc["verified"]) == sorted(repo_files) and gated.gets() == []


@pytest.mark.slow
def test_a_killed_worker_is_retried_and_resumes_its_file(cluster, gated, repo_files, tmp_path):
    gated.faults.rate_bytes_per_s = 1 << 20  # about a second a shard: time to catch a task mid-file
    out = tmp_path / "ray"
    driver = subprocess.Popen(download_cmd(out, cluster, "--json"), env=ray_env(), stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True)

    def busy() -> bool:  # a file has a quarter MiB in its partial file: its task is mid-transfer
        parts = (out / STATE_DIR / "partial").glob("*.part")
        return any(p.stat().st_size >= 256 << 10 for p in parts if p.exists())

    killed = kill_a_task_mid_file(driver, TASK_NAME, busy)
    stdout, stderr = driver.communicate(timeout=300)
    assert killed is not None, "no task was caught mid-file"
    assert driver.returncode == 0, stderr
    assert "A worker died or was killed while executing a task" in stderr  # Ray saw it and ran the task again
    assert json.loads(stdout)["ok"] and tree(out) == repo_files
    resumed = [e for e in gated.gets() if e.range and not e.range.startswith("bytes=0-")]
    assert resumed, "the retried task started its file over instead of resuming its partial bytes"


@pytest.mark.slow
def test_a_pipelines_download_step_runs_on_the_cluster(cluster, gated, repo_files, tmp_path):
    path = tmp_path / "p.yaml"
    path.write_text(f"source:\n  repo: {REPO}\n  token: ${{HF_TOKEN}}\nsteps:\n  - name: fetch\n    download: {{}}\n")
    r = run([sys.executable, "-m", "dshub.cli", "run", str(path), "--executor", "ray", "--ray-address",
             cluster.address, "--json"])
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["ran"] == ["fetch"]
    assert tree(tmp_path / "dshub-work" / "fetch") == repo_files
    assert {e.token for e in gated.gets()} == {NODE_HF_TOKEN}


@pytest.mark.slow
def test_a_node_that_does_not_mount_the_directory_is_refused_before_any_transfer(cluster, gated, tmp_path):
    node = cluster.add_node(hide=tmp_path)  # this node sees an empty tmpfs where the driver's tmp_path is
    try:
        r = run(download_cmd(tmp_path / "ray", cluster))
    finally:
        cluster.stop_node(node)
    assert r.returncode == 1
    line = r.stderr.strip().splitlines()[-1]
    assert "does not see" in line and MARKER_PREFIX in line and "--local-dir" in line, r.stderr
    assert gated.gets() == []  # checked first: no file was requested


def test_the_drivers_token_is_in_no_task(gated, monkeypatch, tmp_path):
    monkeypatch.delenv("HF_TOKEN")
    plan = plan_download(REPO, local_dir=tmp_path / "d", token=TEST_TOKEN)  # the gated listing needs it: it is sent
    assert TEST_TOKEN in json.dumps(plan.source.headers())  # the driver's source holds it
    runner = _Runner(plan, workers=1, progress=False, verify=True, retry=RetryPolicy())
    tasks = tasks_for(runner, plan.files)
    assert [t.plan.file.path for t in tasks] == [p.file.path for p in plan.files]
    assert TEST_TOKEN.encode() not in pickle.dumps(tasks)  # what Ray would send to the workers


def test_an_endpoint_with_credentials_is_refused_before_connecting(gated, tmp_path):
    plan = plan_download(REPO, local_dir=tmp_path / "d")
    plan.source = HfSource(endpoint=gated.endpoint.replace("http://", "http://mirror-user:s3cret@"))
    with pytest.raises(UsageError) as e:
        run_download(plan, executor="ray", ray_address="127.0.0.1:1", progress=False)  # no cluster there: not reached
    assert "carries credentials" in str(e.value) and "s3cret" not in str(e.value)
    assert not list((tmp_path / "d").glob("*.safetensors"))


def test_without_ray_the_download_executor_is_a_usage_error(tmp_path):
    r = subprocess.run([sys.executable, "-c", BLOCK_RAY, "download", REPO, "--local-dir", str(tmp_path / "d"),
                        "--executor", "ray", "--json"], capture_output=True, text=True, timeout=120)
    assert r.returncode == 2
    doc = json.loads(r.stdout)
    assert doc["ok"] is False and doc["command"] == "download"
    assert doc["error"]["message"] == "--executor ray needs Ray, which is not installed; install it with: pip install 'dshub[ray]'"
    assert not (tmp_path / "d").exists()
