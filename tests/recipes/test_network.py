"""Multi-node networking safe by default (issue 17, item 2): TCP layouts and a warning on stderr unless `--rdma`;
DeepEP only with `--rdma`; the NCCL/Gloo interface from `--net-iface` or found on the node when the script starts
(`ip route get $HEAD_IP`), never assumed to be eth0."""
from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
import yaml

from dshub.recipes import Network, RecipeOptions, Request, make_recipe
from dshub.recipes.validate import check_compose
from tests.support.tools import require_validator_venv

HEAD = "10.1.2.3"
SGLANG_EP = Request("kimi-k2", engine="sglang", gpu="h20", nodes=2, goal="throughput")  # EP == TP across nodes
VLLM_DEP = Request("deepseek-v3", engine="vllm", gpu="h100", nodes=2, goal="throughput")


def nodes(req: Request, **net) -> list[dict]:
    _, files = make_recipe(req, RecipeOptions(network=Network(**net)), "json")
    return json.loads(files["recipe.json"])["nodes"]


def test_sglang_deepep_only_with_rdma():
    plain = nodes(SGLANG_EP)
    assert all("--moe-a2a-backend" not in n["argv"] for n in plain)
    assert all("--ep-size" in n["argv"] for n in plain)  # the layout itself is unchanged
    rdma = nodes(SGLANG_EP, rdma=True, roce=True)
    assert all(n["argv"][n["argv"].index("--moe-a2a-backend") + 1] == "deepep" for n in rdma)
    assert all(n["env"]["NVSHMEM_IB_GID_INDEX"] == "3" and n["env"]["NCCL_IB_GID_INDEX"] == "3" for n in rdma)
    assert all("NVSHMEM_IB_GID_INDEX" not in n["env"] for n in nodes(SGLANG_EP, roce=True))


def test_vllm_deepep_advice_only_with_rdma():
    _, plain = make_recipe(VLLM_DEP, RecipeOptions(), "json")
    _, rdma = make_recipe(VLLM_DEP, RecipeOptions(network=Network(rdma=True)), "json")
    assert "deepep" not in plain["recipe.json"] and "deepep_low_latency" in rdma["recipe.json"]


def test_tcp_warning_on_stderr_for_multi_node_without_rdma(cli):
    r = cli("recipe", "deepseek-v3", "--gpu", "h100", "--nodes", "2")
    assert r.exit_code == 0 and "warning: cross-node traffic goes over TCP" in r.stderr
    assert "TCP" not in r.stdout.split("exec docker")[-1]  # the scripts carry it as a comment only
    assert "# warning: cross-node traffic goes over TCP" in r.stdout
    r = cli("recipe", "deepseek-v3", "--gpu", "h100", "--nodes", "2", "--rdma")
    assert r.exit_code == 0 and "TCP" not in r.stderr
    r = cli("recipe", "deepseek-r1", "--gpu", "h200")
    assert r.exit_code == 0 and "TCP" not in r.stderr
    r = cli("recipe", "deepseek-v3", "--gpu", "h100", "--nodes", "2", "--json")
    assert "TCP" in r.stderr and json.loads(r.stdout)["recipe"]["warnings"]


def script_env(tmp_path: Path, req: Request, ip_stub: str | None, env: dict[str, str] | None = None,
               **net) -> subprocess.CompletedProcess:
    """Run node 1's script with a recording `docker` and (optionally) a stub `ip`; no system `ip` on PATH."""
    bindir = tmp_path / "bin"
    bindir.mkdir(exist_ok=True)
    (bindir / "docker").write_text('#!/bin/bash\nprintf "%s\\n" "$@" > "$RECORD"\n')
    if ip_stub is not None:
        (bindir / "ip").write_text("#!/bin/bash\n" + ip_stub)
    for tool in ("bash", "sed", "awk"):  # the script's own tools, and nothing else of the system
        target = subprocess.run(["bash", "-c", f"command -v {tool}"], capture_output=True, text=True).stdout.strip()
        (bindir / tool).unlink(missing_ok=True)
        (bindir / tool).symlink_to(target)
    for f in bindir.iterdir():
        if not f.is_symlink():
            f.chmod(0o755)
    _, scripts = make_recipe(req, RecipeOptions(network=Network(**net)), "sh")
    script = tmp_path / "node.sh"
    script.write_text(scripts["node1-worker.sh"])
    full = {"PATH": str(bindir), "HEAD_IP": HEAD, "HOME": str(tmp_path), "RECORD": str(tmp_path / "argv"), **(env or {})}
    return subprocess.run([str(bindir / "bash"), str(script)], env=full, capture_output=True, text=True, timeout=30)


def recorded_env(tmp_path: Path) -> dict[str, str]:
    argv = (tmp_path / "argv").read_text().splitlines()
    pairs = [argv[i + 1] for i, a in enumerate(argv) if a == "-e" and "=" in argv[i + 1]]
    return dict(p.split("=", 1) for p in pairs)


ROUTE = f'[ "$1 $2 $3" = "-o route get" ] && [ "$4" = {HEAD} ] && echo "{HEAD} via 10.1.0.1 dev ens5 src 10.1.2.9 uid 0"\n'
HEAD_ROUTE = (f'[ "$2" = route ] && echo "local {HEAD} dev lo table local src {HEAD} uid 0"\n'
              f'[ "$2" = addr ] && [ "$5" = {HEAD} ] && echo "3: bond0    inet {HEAD}/16 brd 10.1.255.255 scope global bond0"\n')


def test_sh_finds_the_interface_that_reaches_the_head(tmp_path):
    r = script_env(tmp_path, VLLM_DEP, ROUTE)
    assert r.returncode == 0, r.stderr
    env = recorded_env(tmp_path)
    assert env["NCCL_SOCKET_IFNAME"] == "ens5" and env["GLOO_SOCKET_IFNAME"] == "ens5"


def test_on_the_head_the_interface_holding_its_address(tmp_path):
    r = script_env(tmp_path, VLLM_DEP, HEAD_ROUTE)
    assert r.returncode == 0, r.stderr
    assert recorded_env(tmp_path)["NCCL_SOCKET_IFNAME"] == "bond0"


def test_net_iface_from_the_environment_wins(tmp_path):
    assert script_env(tmp_path, VLLM_DEP, ROUTE, {"NET_IFACE": "ib0"}).returncode == 0
    assert recorded_env(tmp_path)["NCCL_SOCKET_IFNAME"] == "ib0"


def test_without_ip_or_net_iface_the_script_stops_naming_it(tmp_path):
    r = script_env(tmp_path, VLLM_DEP, None)
    assert r.returncode != 0 and "NET_IFACE" in r.stderr and not (tmp_path / "argv").exists()


def test_net_iface_option_is_written_and_nothing_detected(tmp_path):
    r = script_env(tmp_path, VLLM_DEP, None, iface="enp1s0f0")
    assert r.returncode == 0, r.stderr
    assert recorded_env(tmp_path)["NCCL_SOCKET_IFNAME"] == "enp1s0f0"
    _, scripts = make_recipe(VLLM_DEP, RecipeOptions(network=Network(iface="enp1s0f0")), "sh")
    assert "ip -o route" not in scripts["node1-worker.sh"]


def test_compose_requires_net_iface_unless_given(tmp_path):
    venv = require_validator_venv()
    _, files = make_recipe(VLLM_DEP, RecipeOptions(), "compose")
    path = tmp_path / "c.yaml"
    path.write_text(files["compose-node1-worker.yaml"])
    err = check_compose(venv, path, {"HEAD_IP": HEAD, "HOME": str(tmp_path)})
    assert err is not None and "NET_IFACE" in err
    assert check_compose(venv, path, {"HEAD_IP": HEAD, "NET_IFACE": "ens5", "HOME": str(tmp_path)}) is None
    _, fixed = make_recipe(VLLM_DEP, RecipeOptions(network=Network(iface="ens5")), "compose")
    svc = yaml.safe_load(fixed["compose-node1-worker.yaml"])["services"]["vllm"]
    assert svc["environment"]["NCCL_SOCKET_IFNAME"] == "ens5"


@pytest.mark.parametrize("iface", [None, "ens5"])
def test_k8s_leaves_the_interface_to_nccl_unless_given(iface):
    _, files = make_recipe(VLLM_DEP, RecipeOptions(network=Network(iface=iface)), "k8s")
    lws = list(yaml.safe_load_all(files["k8s.yaml"]))[-2]
    env = {e["name"]: e.get("value") for e in lws["spec"]["leaderWorkerTemplate"]["workerTemplate"]["spec"]["containers"][0]["env"]}
    assert env.get("NCCL_SOCKET_IFNAME") == iface and env.get("GLOO_SOCKET_IFNAME") == iface
