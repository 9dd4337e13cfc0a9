"""A real Ray cluster on 127.0.0.1 for the `--executor ray` tests: a head and more node processes (`ray start
--block`, one CPU each, small object stores), each in its own process group so teardown stops exactly these.

A node may be started in a private mount namespace with a tmpfs over a directory (`hide=`): a node that does not
mount the "shared" filesystem, as a misconfigured cluster has. The nodes' own environment holds `NODE_HF_TOKEN` as
HF_TOKEN (and no HF_ENDPOINT): a download task that authenticates with it read its own node's environment.

`cluster` is one session-scoped cluster (head + one node) that every Ray test shares."""
from __future__ import annotations

import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import pytest

OBJECT_STORE = str(80 * 1000 * 1000)  # Ray's minimum is 75 MB
NODE_MEMORY = str(3 << 30)  # the logical memory each node offers to tasks


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def ray_cli() -> str:
    exe = Path(sys.executable).parent / "ray"
    found = str(exe) if exe.exists() else shutil.which("ray")
    if not found:
        raise RuntimeError("the `ray` command is not installed (pip install 'dshub[ray]'; .ci/install.sh does)")
    return found


AUTH_TOKEN = secrets.token_hex(32)  # Ray 2.5x+ clusters require a token; every process of the tests' cluster shares it


NODE_HF_TOKEN = "hf_dshubNodeToken0123456789abcdef"  # every node's HF_TOKEN; never the drivers'


def ray_env() -> dict[str, str]:
    """The environment of the drivers the tests start (token auth, no telemetry). Ray names a node on 127.0.0.1 by
    the host's interface address; nothing listens beyond this host."""
    env = dict(os.environ, RAY_USAGE_STATS_ENABLED="0", RAY_AUTH_MODE="token", RAY_AUTH_TOKEN=AUTH_TOKEN)
    env.pop("RAY_ADDRESS", None)
    return env


def node_env() -> dict[str, str]:
    """A node process's environment: the drivers', with the node's own HF token and no hub endpoint."""
    env = {k: v for k, v in ray_env().items() if k not in ("HF_ENDPOINT", "HUGGING_FACE_HUB_TOKEN")}
    return dict(env, HF_TOKEN=NODE_HF_TOKEN)


@dataclass
class RayCluster:
    address: str
    temp_dir: Path
    nodes: list[subprocess.Popen] = field(default_factory=list)

    def add_node(self, *, hide: Path | None = None) -> subprocess.Popen:
        """One more node process joining the head; with `hide`, that directory is an empty tmpfs on this node."""
        cmd = [ray_cli(), "start", "--block", f"--address={self.address}", "--node-ip-address=127.0.0.1",
               "--num-cpus=1", f"--memory={NODE_MEMORY}", f"--object-store-memory={OBJECT_STORE}", "--disable-usage-stats"]
        if hide is not None:
            script = f"mount -t tmpfs dshub-hidden {hide} && exec " + " ".join(cmd)
            cmd = ["unshare", "-m", "--propagation", "private", "sh", "-c", script]
        before = self.alive_nodes()
        proc = subprocess.Popen(cmd, env=node_env(), start_new_session=True, stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL)
        self.nodes.append(proc)
        self.wait_for_nodes(before + 1, proc)
        return proc

    def alive_nodes(self) -> int:
        out = subprocess.run([sys.executable, "-c", _COUNT_NODES, self.address], env=ray_env(), capture_output=True,
                             text=True, timeout=120)
        return int(out.stdout.strip() or 0) if out.returncode == 0 else 0

    def wait_for_nodes(self, n: int, proc: subprocess.Popen, timeout: float = 120) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise RuntimeError(f"ray node exited with {proc.returncode}")
            if self.alive_nodes() >= n:
                return
            time.sleep(1)
        raise RuntimeError(f"the Ray cluster did not reach {n} nodes in {timeout} s")

    def stop_node(self, proc: subprocess.Popen) -> None:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)  # `ray start --block` stops its node's processes on SIGTERM
            try:
                proc.wait(60)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(10)
        self.nodes.remove(proc)

    def stop(self) -> None:
        for proc in reversed(list(self.nodes)):
            self.stop_node(proc)
        shutil.rmtree(self.temp_dir, ignore_errors=True)


def task_pids(task_name: str) -> list[int]:
    """The processes running a Ray task named `task_name` now (a worker's title is `ray::NAME` while it runs one)."""
    ps = subprocess.run(["ps", "-eo", "pid=,args="], capture_output=True, text=True).stdout
    title = f"ray::{task_name}"
    return [int(line.split(None, 1)[0]) for line in ps.splitlines() if line.split(None, 1)[-1].startswith(title)]


def kill_a_task_mid_file(driver: subprocess.Popen, task_name: str, busy: Callable[[], bool],
                         timeout: float = 240) -> int | None:
    """SIGKILL one worker running `task_name` as soon as `busy()` says a file is being written; its pid, or None
    when the driver finished (or `timeout` passed) first."""
    deadline = time.monotonic() + timeout
    while driver.poll() is None and time.monotonic() < deadline:
        if busy() and (pids := task_pids(task_name)):
            os.kill(pids[0], signal.SIGKILL)
            return pids[0]
        time.sleep(0.01)
    return None


# `python -c BLOCK_RAY ARGS...`: the dshub CLI in a process where `import ray` fails, as where Ray is not installed
BLOCK_RAY = """
import sys
class NoRay:
    def find_spec(self, name, path=None, target=None):
        if name == "ray" or name.startswith("ray."):
            raise ModuleNotFoundError("No module named 'ray'")
sys.meta_path.insert(0, NoRay())
from dshub.cli import main
sys.argv = ["dshub", *sys.argv[1:]]
main()
"""


_COUNT_NODES = """
import sys, ray
ray.init(address=sys.argv[1], log_to_driver=False, configure_logging=False)
print(sum(1 for n in ray.nodes() if n["Alive"]))
"""


def start_cluster(nodes: int = 2) -> RayCluster:
    """A head plus `nodes - 1` more nodes on 127.0.0.1, one CPU each."""
    port = free_port()
    temp_dir = Path(tempfile.mkdtemp(prefix="dshub-ray-", dir="/tmp"))  # short: Ray's unix sockets live under it
    cluster = RayCluster(f"127.0.0.1:{port}", temp_dir)
    head = [ray_cli(), "start", "--block", "--head", "--node-ip-address=127.0.0.1", f"--port={port}",
            "--num-cpus=1", f"--memory={NODE_MEMORY}", f"--object-store-memory={OBJECT_STORE}",
            "--include-dashboard=false", "--disable-usage-stats", f"--temp-dir={temp_dir}"]
    proc = subprocess.Popen(head, env=node_env(), start_new_session=True, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    cluster.nodes.append(proc)
    try:
        cluster.wait_for_nodes(1, proc)
        for _ in range(nodes - 1):
            cluster.add_node()
    except BaseException:
        cluster.stop()
        raise
    return cluster


@pytest.fixture(scope="session")
def cluster():
    """One Ray cluster for every test that needs one (tests/conftest.py re-exports it)."""
    c = start_cluster(2)
    yield c
    c.stop()
