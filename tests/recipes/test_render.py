"""Renderers and CLI: sh/compose/k8s/json carry the plan, the right per-node argv and env, no inline secrets."""
from __future__ import annotations

import json
import re
import subprocess

import pytest
import yaml

from dshub.recipes import Network, RecipeOptions, Request, make_recipe
from dshub.recipes.engine_facts import version_key
from dshub.recipes.render.common import shell_join


def doc(**kw):
    _, files = make_recipe(Request(**kw), RecipeOptions(), "json")
    return json.loads(files["recipe.json"])


def flag(argv, name):
    return argv[argv.index(name) + 1]


def test_json_single_node_vllm_r1():
    d = doc(model="deepseek-r1", engine="vllm", gpu="h200")
    assert d["image"] == "vllm/vllm-openai:v0.33.0" and len(d["nodes"]) == 1
    argv = d["nodes"][0]["argv"]
    assert argv[:3] == ["vllm", "serve", "deepseek-ai/DeepSeek-R1"]
    assert flag(argv, "--reasoning-parser") == "deepseek_r1" and "--enable-reasoning" not in argv
    assert flag(argv, "--tool-call-parser") == "deepseek_v3" and "--trust-remote-code" in argv
    assert json.loads(flag(argv, "--speculative-config")) == {"method": "mtp", "num_speculative_tokens": 3}
    assert flag(argv, "--max-model-len") == str(d["plan"]["chosen"]["max_context"])
    assert d["nodes"][0]["env"]["VLLM_USE_FLASHINFER_MOE_FP8"] == "1"
    assert d["nodes"][0]["ports"] == [8000]
    assert any(s.startswith("weights 86.0 GB per GPU") for s in d["summary"])  # 84.3 + the MTP layer/8


def test_json_multi_node_dep_ranks_and_headless_workers():
    three = doc(model="deepseek-v3", engine="vllm", gpu="h100", nodes=3, goal="throughput")
    # DP24+EP24 cannot split 256 experts, TEP24 cannot split 128 heads: TP8 x PP3 it is
    assert [c["layout"]["kind"] for c in three["plan"]["candidates"] if c["ok"]][0] == "tp-pp"
    d = doc(model="deepseek-v3", engine="vllm", gpu="h100", nodes=4, goal="throughput")
    head, *workers = d["nodes"]
    assert d["plan"]["chosen"]["layout"]["kind"] == "dep"
    assert flag(head["argv"], "--data-parallel-size") == "32" and "--headless" not in head["argv"]
    assert [flag(w["argv"], "--data-parallel-start-rank") for w in workers] == ["8", "16", "24"]
    assert all("--headless" in w["argv"] and not w["ports"] for w in workers)
    assert all(n["env"]["NCCL_SOCKET_IFNAME"].startswith("${NET_IFACE:?") for n in d["nodes"])  # found at start
    assert "NET_IFACE" in d["placeholders"] and d["warnings"] and "TCP" in d["warnings"][0]
    assert flag(head["argv"], "--data-parallel-address") == "${HEAD_IP}" and "HEAD_IP" in d["placeholders"]


def test_sglang_names_differ_from_vllm_and_dp_attention_follows_the_version():
    d = doc(model="deepseek-r1", engine="sglang", gpu="h200", goal="throughput")
    argv = d["nodes"][0]["argv"]
    assert flag(argv, "--reasoning-parser") == "deepseek-r1" and flag(argv, "--tool-call-parser") == "deepseekv3"
    assert flag(argv, "--attn-dp-size") == "8" and "--enable-dp-attention" not in argv
    old = doc(model="deepseek-r1", engine="sglang", gpu="h200", goal="throughput", engine_version="0.5.6")
    assert "--enable-dp-attention" in old["nodes"][0]["argv"] and old["image"] == "lmsysorg/sglang:v0.5.6"
    assert version_key("0.5.23") > version_key("0.5.6")


def test_min_engine_version_is_enforced():
    from dshub.errors import UsageError
    with pytest.raises(UsageError, match="0.18.0"):
        make_recipe(Request("deepseek-v3.2", engine="vllm", gpu="h200", engine_version="0.15.1"), RecipeOptions(), "json")


def test_amd_gets_rocm_image_and_env():
    d = doc(model="deepseek-v3", engine="vllm", gpu="mi300x")
    assert d["image"] == "vllm/vllm-openai-rocm:latest" and any("not pinned" in n for n in d["notes"])
    assert doc(model="deepseek-v3", engine="sglang", gpu="mi355x")["image"] == "lmsysorg/sglang:v0.5.23-rocm720-mi35x"
    assert doc(model="deepseek-v3", engine="sglang", gpu="mi300x")["image"] == "lmsysorg/sglang:v0.5.23-rocm700-mi30x"
    assert d["nodes"][0]["env"]["VLLM_ROCM_USE_AITER"] == "1"


def test_llamacpp_args_and_offload():
    d = doc(model="deepseek-r1", engine="llamacpp", weights="gguf:Q2_K", gpu="rtx4090", gpus_per_node=2, context=16384)
    argv = d["nodes"][0]["argv"]
    assert argv[0] == "/app/llama-server" and d["nodes"][0]["host_argv"][0] == "llama-server"
    n = int(flag(argv, "--n-cpu-moe"))
    assert n == 3 + d["plan"]["chosen"]["experts_on_cpu_layers"]  # 3 dense layers come first
    assert flag(argv, "-c") == "16384" and "--jinja" in argv and flag(argv, "--temp") == "0.6"
    assert flag(argv, "--parallel") == "1"
    many = doc(model="deepseek-r1", engine="llamacpp", weights="gguf:Q2_K", gpu="h200", context=16384, goal="throughput")
    assert flag(many["nodes"][0]["argv"], "--parallel") == "4" and flag(many["nodes"][0]["argv"], "-c") == "65536"
    assert many["plan"]["chosen"]["concurrency_at_context"] == 4
    assert d["image"] == "ghcr.io/ggml-org/llama.cpp:server-cuda-b10434"


def test_sh_scripts_are_valid_bash_and_embed_the_plan(tmp_path):
    launch, files = make_recipe(Request("deepseek-v3", gpu="h100", nodes=2), RecipeOptions(), "sh")
    assert sorted(files) == ["node0-head.sh", "node1-worker.sh"]
    for name, text in files.items():
        assert text.startswith("#!/usr/bin/env bash\n# Generated by `dshub recipe`")
        assert "# layout TP16+EP16" in text and "GB per GPU" in text
        path = tmp_path / name
        path.write_text(text)
        assert subprocess.run(["bash", "-n", str(path)]).returncode == 0
        assert "-e HF_TOKEN \\" in text  # passed through, never a value
    # without HEAD_IP the script stops before docker runs
    r = subprocess.run(["bash", str(tmp_path / "node1-worker.sh")], capture_output=True, text=True, env={"PATH": "/usr/bin:/bin"})
    assert r.returncode != 0 and "set HEAD_IP" in r.stderr


def test_shell_join_keeps_runtime_expressions_live():
    out = subprocess.run(["bash", "-c", "LWS_WORKER_INDEX=2; HEAD_IP=h; printf '%s\\n' "
                          + shell_join(["a b", "${HEAD_IP}:5", "$((LWS_WORKER_INDEX * 8))", '{"k":1}'])],
                         capture_output=True, text=True)
    assert out.stdout.splitlines() == ["a b", "h:5", "16", '{"k":1}']


def test_compose_single_and_multi_node():
    _, files = make_recipe(Request("deepseek-r1", gpu="h200"), RecipeOptions(), "compose")
    svc = yaml.safe_load(files["compose.yaml"])["services"]["vllm"]
    assert svc["ipc"] == "host" and svc["ports"] == ["8000:8000"] and "healthcheck" in svc
    assert svc["deploy"]["resources"]["reservations"]["devices"][0]["capabilities"] == ["gpu"]
    assert svc["environment"]["HF_TOKEN"] == "${HF_TOKEN:-}"
    _, files = make_recipe(Request("deepseek-r1", gpu="h100", nodes=2, engine="sglang"), RecipeOptions(), "compose")
    assert sorted(files) == ["compose-node0-head.yaml", "compose-node1-worker.yaml"]
    worker = yaml.safe_load(files["compose-node1-worker.yaml"])["services"]["sglang"]
    assert worker["network_mode"] == "host" and "healthcheck" not in worker
    assert flag(worker["entrypoint"], "--node-rank") == "1"


def test_k8s_lws_workers_compute_their_rank_in_the_pod():
    _, files = make_recipe(Request("deepseek-v3", gpu="h100", nodes=2, goal="throughput"),
                           RecipeOptions(network=Network(rdma=True, roce=True)), "k8s")
    lws, svc = list(yaml.safe_load_all(files["k8s.yaml"]))[-2:]
    t = lws["spec"]["leaderWorkerTemplate"]
    assert lws["kind"] == "LeaderWorkerSet" and t["size"] == 2 and t["restartPolicy"] == "RecreateGroupOnPodRestart"
    worker = t["workerTemplate"]["spec"]["containers"][0]
    script = worker["command"][2]
    assert "--data-parallel-start-rank \"$$((LWS_WORKER_INDEX * 8))\"" in script
    assert '"${LWS_LEADER_ADDRESS}"' in script
    env = {e["name"]: e for e in worker["env"]}
    assert env["HF_TOKEN"]["valueFrom"]["secretKeyRef"]["name"] == "hf-token"
    assert env["NCCL_IB_GID_INDEX"]["value"] == "3"
    assert worker["securityContext"]["capabilities"]["add"] == ["IPC_LOCK"]
    leader = t["leaderTemplate"]["spec"]["containers"][0]
    probe = leader["startupProbe"]
    assert probe["periodSeconds"] * probe["failureThreshold"] >= 3600
    assert {"name": "dshm", "emptyDir": {"medium": "Memory", "sizeLimit": "32Gi"}} in t["leaderTemplate"]["spec"]["volumes"]
    assert svc["spec"]["selector"]["role"] == "leader"


def test_k8s_single_node_is_a_deployment():
    _, files = make_recipe(Request("deepseek-r1", gpu="h200"), RecipeOptions(), "k8s")
    dep, svc = list(yaml.safe_load_all(files["k8s.yaml"]))[-2:]
    c = dep["spec"]["template"]["spec"]["containers"][0]
    assert dep["kind"] == "Deployment" and c["resources"]["limits"]["nvidia.com/gpu"] == 8
    assert c["command"][:3] == ["vllm", "serve", "deepseek-ai/DeepSeek-R1"]
    assert "hf_" not in re.sub(r"hf_(token|hub_offline|home)", "", files["k8s.yaml"].lower())  # no literal token


# ------------------------------------------------------------------------------------------------ CLI
def test_cli_plan_json_and_refusal(cli):
    r = cli("plan", "deepseek-v3", "--gpu", "h200", "--no-mtp", "--json")
    assert r.exit_code == 0, r.output
    d = json.loads(r.stdout)
    assert d["chosen"]["layout"]["label"] == "TP8+EP8" and round(d["chosen"]["weights_per_gpu_gb"]) == 84
    r = cli("plan", "deepseek-r1", "--gpu", "h100", "--json")
    assert r.exit_code == 1
    d = json.loads(r.stdout)
    assert d["chosen"] is None and d["alternatives"]
    r = cli("plan", "deepseek-r1", "--engine", "vllm", "--weights", "gguf:Q4_K_M")
    assert r.exit_code == 2 and "llamacpp" in r.output and "Traceback" not in r.output


def test_cli_recipe_writes_files(cli, tmp_path):
    out = tmp_path / "out"
    r = cli("recipe", "deepseek-r1", "--engine", "sglang", "--gpu", "h100", "--nodes", "2", "--format", "compose",
            "--out", out, "--json")
    assert r.exit_code == 0, r.output
    d = json.loads(r.stdout)
    assert sorted(p.rsplit("/", 1)[1] for p in d["files"]) == ["compose-node0-head.yaml", "compose-node1-worker.yaml"]
    assert not list(out.glob("*.dshub-tmp"))
    r = cli("recipe", "deepseek-r1", "--gpu", "h200", "--format", "sh", "--out", out)
    assert r.exit_code == 0 and (out / "serve.sh").stat().st_mode & 0o111
    r = cli("recipe", "deepseek-r1", "--gpu", "h100")
    assert r.exit_code == 1 and "--nodes 2" in r.output
    r = cli("recipe", "deepseek-r1", "--gpu", "h100", "--json")
    assert r.exit_code == 1 and json.loads(r.stdout)["plan"]["chosen"] is None


def test_cli_recipe_rewritten_in_place_drops_the_earlier_recipes_files(cli, tmp_path):
    out = tmp_path / "out"
    assert cli("recipe", "deepseek-r1", "--engine", "sglang", "--gpu", "h100", "--nodes", "2", "--format", "compose",
               "--out", out).exit_code == 0
    (out / "notes.txt").write_text("mine")  # not a recipe file: kept
    assert cli("recipe", "deepseek-r1", "--gpu", "h200", "--format", "sh", "--out", out).exit_code == 0
    assert sorted(p.name for p in out.iterdir() if not p.name.startswith(".")) == ["notes.txt", "serve.sh"]


def test_cli_recipe_for_a_local_checkpoint(cli, tiny_ckpt):
    r = cli("recipe", tiny_ckpt, "--gpu", "l40s", "--gpus-per-node", "1", "--format", "json", "--no-mtp")
    assert r.exit_code == 0, r.output
    d = json.loads(r.stdout)
    assert d["nodes"][0]["host_argv"][2] == str(tiny_ckpt)
    assert d["nodes"][0]["argv"][2] == f"/models/{tiny_ckpt.name}"
    assert d["mounts"][0]["host"] == str(tiny_ckpt)


def test_cli_bad_inputs_are_one_line_errors(cli, tmp_path, tiny_ckpt):
    empty = tmp_path / "empty"
    empty.mkdir()
    r = cli("plan", empty)
    assert r.exit_code == 1 and "config.json" in r.output and "Traceback" not in r.output
    bad = tmp_path / "broken.gguf"
    bad.write_bytes(b"GGUF" + b"\0" * 10)
    r = cli("recipe", bad, "--engine", "llamacpp")
    assert r.exit_code == 1 and "broken.gguf" in r.output and "Traceback" not in r.output
    r = cli("recipe", "deepseek-r1", "--format", "helm")
    assert r.exit_code == 2 and "--format" in r.output
    blocker = tmp_path / "file"
    blocker.write_text("x")
    r = cli("recipe", "deepseek-r1", "--out", blocker)
    assert r.exit_code == 1 and "not a directory" in r.output


@pytest.mark.parametrize("kw", [
    dict(model="deepseek-r1", engine="vllm", gpu="h100", nodes=2),
    dict(model="deepseek-v3", engine="sglang", gpu="h200", nodes=2, goal="throughput"),
    dict(model="deepseek-r1", engine="llamacpp", weights="gguf:Q2_K", gpu="rtx4090", gpus_per_node=2, context=16384),
], ids=["vllm", "sglang", "llamacpp"])
def test_sh_scripts_hand_docker_exactly_the_json_argv(tmp_path, kw):
    """Run each script against a `docker` that records its argv: quoting must deliver the JSON recipe's argv."""
    bindir = tmp_path / "bin"
    bindir.mkdir()
    (bindir / "docker").write_text('#!/bin/bash\nprintf "%s\\0" "$@" > "$RECORD"\n')
    (bindir / "docker").chmod(0o755)
    _, scripts = make_recipe(Request(**kw), RecipeOptions(), "sh")
    _, js = make_recipe(Request(**kw), RecipeOptions(), "json")
    nodes = json.loads(js["recipe.json"])["nodes"]
    for (name, text), node in zip(sorted(scripts.items()), nodes):
        path = tmp_path / name
        path.write_text(text)
        record = tmp_path / (name + ".argv")
        env = {"PATH": f"{bindir}:/usr/bin:/bin", "HEAD_IP": "10.1.2.3", "HOME": str(tmp_path), "RECORD": str(record)}
        assert subprocess.run(["bash", str(path)], env=env).returncode == 0
        got = record.read_bytes().split(b"\0")[:-1]
        got = [g.decode() for g in got]
        image = got.index(json.loads(js["recipe.json"])["image"])
        assert got[got.index("--entrypoint") + 1] == node["argv"][0]
        want = [a.replace("${HEAD_IP}", "10.1.2.3") for a in node["argv"][1:]]
        assert got[image + 1:] == want
        assert f"{tmp_path}/.cache/huggingface:/root/.cache/huggingface" in got or kw["engine"] == "llamacpp"


@pytest.mark.parametrize("kw", [
    dict(model="deepseek-v3", engine="vllm", gpu="h100", nodes=4, goal="throughput"),
    dict(model="deepseek-r1", engine="vllm", gpu="h100", nodes=2),
    dict(model="kimi-k2", engine="sglang", gpu="h200", nodes=2, goal="throughput"),
], ids=["vllm-dep", "vllm-tep", "sglang"])
def test_lws_pod_scripts_expand_to_each_nodes_json_argv(tmp_path, kw):
    """The LWS worker runs `sh -c` with its rank from the pod label: for every rank it must become that node's argv."""
    _, files = make_recipe(Request(**kw), RecipeOptions(), "k8s")
    _, js = make_recipe(Request(**kw), RecipeOptions(), "json")
    nodes = json.loads(js["recipe.json"])["nodes"]
    lws = list(yaml.safe_load_all(files["k8s.yaml"]))[-2]
    tpl = lws["spec"]["leaderWorkerTemplate"]
    bindir = tmp_path / "bin"
    bindir.mkdir()
    exe = bindir / nodes[0]["argv"][0]
    exe.write_text('#!/bin/bash\nprintf "%s\\0" "$0" "$@" > "$RECORD"\n')
    exe.chmod(0o755)
    for node in nodes:
        pod = tpl["leaderTemplate" if node["rank"] == 0 else "workerTemplate"]["spec"]["containers"][0]
        script = pod["command"][2].replace("$$", "$")  # what Kubernetes hands the shell
        record = tmp_path / f"rank{node['rank']}"
        env = {"PATH": f"{bindir}:/usr/bin:/bin", "RECORD": str(record), "LWS_LEADER_ADDRESS": "leader.svc",
               "LWS_WORKER_INDEX": str(node["rank"])}
        assert subprocess.run(["/bin/sh", "-c", script], env=env).returncode == 0
        got = [g.decode() for g in record.read_bytes().split(b"\0")[:-1]]
        assert got[1:] == [a.replace("${HEAD_IP}", "leader.svc") for a in node["argv"][1:]]
