"""`--executor ray` on a real Ray cluster on this host (a head and one more node process, `ray start`): the same
bytes as the local executor, a killed worker's task retried, a killed driver resumed by rerunning, a node that does
not mount the output directory refused, and no Ray installed a usage error."""
from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from dshub.constants import MANIFEST_NAME, TMP_SUFFIX
from dshub.converters.executors import TASK_NAME
from tests.support.ray_cluster import BLOCK_RAY, RayCluster, kill_a_task_mid_file, ray_env

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def local_int4(tiny_ckpt, tmp_path_factory) -> Path:
    from dshub.converters import build_options, run_conversion

    out = tmp_path_factory.mktemp("local") / "int4"
    run_conversion(tiny_ckpt, build_options("int4", out=out, group_size=32, workers=1))
    return out


def convert_cmd(src: Path, out: Path, cluster: RayCluster, *extra: str) -> list[str]:
    return [sys.executable, "-m", "dshub.cli", "convert", str(src), "--to", "int4", "--group-size", "32",
            "--out", str(out), "--executor", "ray", "--ray-address", cluster.address, "--json", *extra]


def run(cmd: list[str], timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, env=ray_env(), capture_output=True, text=True, timeout=timeout)


def same_output(a: Path, b: Path) -> None:
    names = sorted(p.name for p in a.iterdir() if p.name != MANIFEST_NAME)
    assert names == sorted(p.name for p in b.iterdir() if p.name != MANIFEST_NAME)
    for n in names:
        assert (a / n).read_bytes() == (b / n).read_bytes(), n
    assert json.loads((a / MANIFEST_NAME).read_text())["files"] == json.loads((b / MANIFEST_NAME).read_text())["files"]


def test_ray_executor_writes_the_local_executors_bytes(cluster, tiny_ckpt, local_int4, tmp_path):
    r = run(convert_cmd(tiny_ckpt, tmp_path / "ray", cluster))
    assert r.returncode == 0, r.stderr
    doc = json.loads(r.stdout)
    assert len(doc["written"]) == 9 and doc["resumed_skipped"] == []
    same_output(tmp_path / "ray", local_int4)
    assert not list((tmp_path / "ray").glob(".dshub-shared-*"))  # the shared-filesystem marker is removed


def test_a_killed_worker_is_retried_and_the_output_is_identical(cluster, tiny_ckpt, local_int4, tmp_path):
    out = tmp_path / "ray"
    driver = subprocess.Popen(convert_cmd(tiny_ckpt, out, cluster), env=ray_env(), stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True)
    killed = kill_a_task_mid_file(driver, TASK_NAME, lambda: bool(list(out.glob(f"*{TMP_SUFFIX}"))))
    stdout, stderr = driver.communicate(timeout=300)
    assert killed is not None, "no task was caught mid-file"
    assert driver.returncode == 0, stderr
    assert "A worker died or was killed while executing a task" in stderr  # Ray saw it, on stderr (stdout: JSON)
    assert len(json.loads(stdout)["written"]) == 9  # every file, the killed one by its retry
    same_output(out, local_int4)


def test_a_killed_driver_is_resumed_by_rerunning(cluster, tiny_ckpt, local_int4, tmp_path):
    out = tmp_path / "ray"
    driver = subprocess.Popen(convert_cmd(tiny_ckpt, out, cluster), env=ray_env(), stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 240
    recorded = 0
    while driver.poll() is None and time.monotonic() < deadline:
        try:
            recorded = len(json.loads((out / MANIFEST_NAME).read_text())["files"])
        except (OSError, ValueError):
            recorded = 0
        if recorded >= 2:
            driver.kill()
            break
        time.sleep(0.02)
    driver.wait(60)
    assert driver.returncode == -signal.SIGKILL and 2 <= recorded < 9
    r = run(convert_cmd(tiny_ckpt, out, cluster))
    assert r.returncode == 0, r.stderr
    doc = json.loads(r.stdout)
    assert len(doc["resumed_skipped"]) >= 2 and len(doc["written"]) + len(doc["resumed_skipped"]) == 9
    same_output(out, local_int4)


def test_a_pipeline_runs_its_conversions_on_the_cluster(cluster, tiny_ckpt, local_int4, tmp_path):
    path = tmp_path / "p.yaml"
    path.write_text(f"source: {{path: {tiny_ckpt}}}\nsteps:\n  - name: int4\n"
                    "    convert: {input: source, to: int4, group_size: 32}\n")
    cmd = [sys.executable, "-m", "dshub.cli", "run", str(path), "--executor", "ray", "--ray-address", cluster.address,
           "--json"]
    r = run(cmd)
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["ran"] == ["int4"]
    same_output(tmp_path / "dshub-work" / "int4", local_int4)


def test_a_node_that_does_not_mount_the_output_is_refused(cluster, tiny_ckpt, tmp_path):
    node = cluster.add_node(hide=tmp_path)  # this node sees an empty tmpfs where the driver's tmp_path is
    try:
        r = run(convert_cmd(tiny_ckpt, tmp_path / "ray", cluster))
    finally:
        cluster.stop_node(node)
    assert r.returncode == 1
    line = r.stderr.strip().splitlines()[-1]
    assert "does not see" in line and ".dshub-shared-" in line and "filesystem every node mounts" in line, r.stderr
    assert not list((tmp_path / "ray").glob("*.safetensors"))




def test_without_ray_the_executor_is_a_usage_error(tiny_ckpt, tmp_path):
    r = subprocess.run([sys.executable, "-c", BLOCK_RAY, "convert", str(tiny_ckpt), "--to", "bf16", "--out",
                        str(tmp_path / "o"), "--executor", "ray"], capture_output=True, text=True, timeout=120)
    assert r.returncode == 2
    assert r.stderr.strip() == "error: --executor ray needs Ray, which is not installed; install it with: pip install 'dshub[ray]'"
    assert not (tmp_path / "o").exists()
