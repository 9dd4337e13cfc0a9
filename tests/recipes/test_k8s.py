"""Kubernetes that runs (issue 17, item 5): requests and limits from the plan, GPU placement, the RWX model-cache
PVC and the Job that fills it with `dshub download`, HF_HUB_OFFLINE=1 in the server, no YAML anchors, the exact
`kubectl create secret` command; the recipe matrix (engine x nodes x --rdma) accepted by kubernetes-validate --strict
and Docker Compose."""
from __future__ import annotations

import itertools
import subprocess
from pathlib import Path

import pytest
import yaml

from dshub.recipes import Network, RecipeOptions, Request, make_recipe
from dshub.recipes.render.k8s import k8s_docs
from dshub.recipes.api import render_recipe
from dshub.recipes.planner import plan
from dshub.recipes.validate import check_compose, check_k8s
from tests.support.tools import require_validator_venv

GiB = 2**30


def docs(req: Request, **net) -> dict[str, dict]:
    _, files = make_recipe(req, RecipeOptions(network=Network(**net)), "k8s")
    return {d["kind"]: d for d in yaml.safe_load_all(files["k8s.yaml"])}


def server_pod(d: dict[str, dict]) -> dict:
    if "Deployment" in d:
        return d["Deployment"]["spec"]["template"]["spec"]
    return d["LeaderWorkerSet"]["spec"]["leaderWorkerTemplate"]["workerTemplate"]["spec"]


def memory_gib(q: str) -> int:
    assert q.endswith("Gi")
    return int(q[:-2])


def test_requests_and_limits_come_from_the_plan():
    pod = server_pod(docs(Request("deepseek-r1", gpu="h200")))
    res = pod["containers"][0]["resources"]
    assert set(res["requests"]) == {"cpu", "memory", "ephemeral-storage", "nvidia.com/gpu"}
    assert res["requests"]["nvidia.com/gpu"] == res["limits"]["nvidia.com/gpu"] == 8
    assert res["requests"]["memory"] == res["limits"]["memory"] and memory_gib(res["limits"]["memory"]) >= 32 + 8
    assert "cpu" not in res["limits"]  # never throttle the engine's CPU threads
    # llama.cpp with routed experts in system RAM: the pod's memory covers them
    req = Request("deepseek-r1", engine="llamacpp", weights="gguf:Q2_K", gpu="rtx4090", gpus_per_node=2, context=16384)
    experts = plan(req).chosen.experts_on_cpu_bytes
    assert experts > 100 * GiB
    res = server_pod(docs(req))["containers"][0]["resources"]
    assert memory_gib(res["requests"]["memory"]) * GiB >= experts + 32 * GiB


def test_gpu_placement():
    pod = server_pod(docs(Request("deepseek-r1", gpu="h200")))
    assert pod["nodeSelector"] == {"nvidia.com/gpu.product": "NVIDIA-H200"}
    assert {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"} in pod["tolerations"]
    pod = server_pod(docs(Request("deepseek-v3", gpu="h100", nodes=2)))
    assert pod["nodeSelector"] == {"nvidia.com/gpu.product": "NVIDIA-H100-80GB-HBM3"}
    amd = server_pod(docs(Request("deepseek-r1", gpu="mi300x")))
    assert "nodeSelector" not in amd and amd["tolerations"][0]["key"] == "amd.com/gpu"


def test_rwx_cache_is_filled_by_a_download_job_the_server_waits_for():
    d = docs(Request("deepseek-r1", gpu="h200"))
    claim = d["PersistentVolumeClaim"]
    assert claim["spec"]["accessModes"] == ["ReadWriteMany"]
    assert memory_gib(claim["spec"]["resources"]["requests"]["storage"]) * GiB > 680e9  # R1 with its MTP layer
    job = d["Job"]["spec"]["template"]["spec"]
    c = job["containers"][0]
    assert c["args"][1] == "deepseek-ai/DeepSeek-R1" and "dshub download" in c["command"][2]
    assert {"name": "HF_HOME", "value": "/root/.cache/huggingface"} in c["env"]
    assert job["volumes"][0]["persistentVolumeClaim"]["claimName"] == claim["metadata"]["name"]
    pod = server_pod(d)
    env = {e["name"]: e.get("value") for e in pod["containers"][0]["env"]}
    assert env["HF_HUB_OFFLINE"] == "1"
    wait = pod["initContainers"][0]
    assert wait["args"][0] == f"/root/.cache/huggingface/{c['args'][2]}"  # the mark the Job writes when done
    assert all(v["persistentVolumeClaim"]["claimName"] == claim["metadata"]["name"]
               for v in pod["volumes"] if "persistentVolumeClaim" in v)


def test_local_weights_get_the_pvc_but_no_download(tiny_gguf):
    d = docs(Request(str(tiny_gguf), engine="llamacpp", gpu="l40s", gpus_per_node=1))
    assert "Job" not in d and "initContainers" not in server_pod(d) and "PersistentVolumeClaim" in d


def run(script: str, args: list[str], bindir: Path, env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run(["/bin/sh", "-c", script, *args], env={"PATH": f"{bindir}:/usr/bin:/bin", **env},
                          capture_output=True, text=True, timeout=30)


def test_the_job_and_wait_scripts_run(tmp_path):
    """The Job's shell with recording `pip` and `dshub`: it installs this version, downloads the hub id into
    HF_HOME, and writes the mark the server's init container waits for."""
    d = docs(Request("deepseek-r1", gpu="h200"))
    c = d["Job"]["spec"]["template"]["spec"]["containers"][0]
    bindir = tmp_path / "bin"
    bindir.mkdir()
    for tool in ("pip", "dshub"):
        (bindir / tool).write_text(f'#!/bin/sh\necho "{tool} $*" >> "$LOG"\n')
        (bindir / tool).chmod(0o755)
    home = tmp_path / "hf"
    home.mkdir()
    r = run(c["command"][2], c["args"], bindir, {"HF_HOME": str(home), "LOG": str(tmp_path / "log")})
    assert r.returncode == 0, r.stderr
    log = (tmp_path / "log").read_text().splitlines()
    assert log[0].startswith("pip install") and '0.1.0' in log[0] and log[1] == "dshub download deepseek-ai/DeepSeek-R1"
    assert (home / c["args"][2]).exists()
    wait = server_pod(d)["initContainers"][0]
    r = run(wait["command"][2], [str(home / c["args"][2])], bindir, {})
    assert r.returncode == 0


def test_no_yaml_anchors():
    launch, files = render_recipe(plan(Request("deepseek-v3", gpu="h100", nodes=2)), RecipeOptions(), "k8s")
    assert "&id" in yaml.safe_dump_all(k8s_docs(launch))  # the same documents dumped plainly would carry anchors
    assert "&id" not in files["k8s.yaml"] and "*id" not in files["k8s.yaml"]


def test_notes_name_the_secret_command_and_the_rwx_class():
    _, files = make_recipe(Request("deepseek-r1", gpu="h200"), RecipeOptions(), "k8s")
    head = [ln for ln in files["k8s.yaml"].splitlines() if ln.startswith("#")]
    assert '# Needs: Secret `hf-token` for gated repos: kubectl create secret generic hf-token --from-literal=token="$HF_TOKEN"' in head
    assert any("ReadWriteMany" in ln and "storageClassName" in ln for ln in head)


MATRIX = [(e, n, r) for e, n, r in itertools.product(("vllm", "sglang", "llamacpp"), (1, 2), (False, True))
          if not (e == "llamacpp" and n > 1)]


def matrix_request(engine: str, nodes: int) -> Request:
    if engine == "llamacpp":
        return Request("deepseek-r1", engine="llamacpp", weights="gguf:Q4_K_M", gpu="h200")
    return Request("deepseek-v3", engine=engine, gpu="h100" if nodes > 1 else "h200", nodes=nodes, goal="throughput")


def test_matrix_passes_kubernetes_validate_strict_and_compose(tmp_path):
    venv = require_validator_venv()
    paths = []
    for engine, nodes, rdma in MATRIX:
        opts = RecipeOptions(network=Network(rdma=rdma, roce=rdma))
        _, k8s = make_recipe(matrix_request(engine, nodes), opts, "k8s")
        path = tmp_path / f"{engine}-{nodes}-{rdma}.yaml"
        path.write_text(k8s["k8s.yaml"])
        paths.append(path)
        _, compose = make_recipe(matrix_request(engine, nodes), opts, "compose")
        for name, text in compose.items():
            cpath = tmp_path / f"{engine}-{nodes}-{rdma}-{name}"
            cpath.write_text(text)
            env = {"HEAD_IP": "10.0.0.1", "NET_IFACE": "ens5", "HOME": str(tmp_path)}
            assert check_compose(venv, cpath, env) is None, cpath.name
    results = check_k8s(venv, paths)
    assert len({r["file"] for r in results}) == len(MATRIX)
    assert all(r["ok"] for r in results), [r for r in results if not r["ok"]]
    assert {"PersistentVolumeClaim", "Job", "Deployment", "LeaderWorkerSet", "Service"} <= {r["kind"] for r in results}


@pytest.mark.parametrize("engine", ["vllm", "sglang"])
def test_rdma_pods_get_the_devices_and_host_network(engine):
    pod = server_pod(docs(matrix_request(engine, 2), rdma=True))
    c = pod["containers"][0]
    assert pod["hostNetwork"] is True and c["securityContext"]["capabilities"]["add"] == ["IPC_LOCK"]
    assert any(v.get("hostPath", {}).get("path") == "/dev/infiniband" for v in pod["volumes"])
    plain = server_pod(docs(matrix_request(engine, 2)))
    assert "hostNetwork" not in plain and "securityContext" not in plain["containers"][0]
