"""Generated recipes against the engines' and tools' own checkers (offline, CPU): vLLM 0.33.0's `vllm serve`
parser and registries, SGLang 0.5.23's ServerArgs, llama-server b10434, Docker Compose v2.40.3 `config -q`,
kubernetes-validate --strict (LeaderWorkerSet pod templates as Pods). Needs the venv that
.ci/recipe-validators.sh builds (`bash .ci/install.sh` runs it); each test fails, saying so, when it is absent."""
from __future__ import annotations

import itertools
import json
import os
from pathlib import Path

import pytest
import yaml

from dshub.errors import UsageError
from dshub.recipes import Network, RecipeOptions, Request, make_recipe, plan
from dshub.recipes.api import render_recipe
from tests.support.engine_argv import HEAD, engine_args
from dshub.recipes.render.jsondoc import recipe_doc
from dshub.recipes.validate import check_compose, check_k8s, check_llama_server, check_sglang, check_vllm, resolve_compose
from tests.support.tools import require_validator_venv

MODELS = ("deepseek-v3", "deepseek-r1", "deepseek-v3.1", "deepseek-v3.2", "kimi-k2", "deepseek-v4-flash", "deepseek-v4-pro",
          "deepseek-v4-flash-base",
          "deepseek-r1-0528-nvfp4")
GPUS = ("h100", "h200", "h20", "b200", "mi300x")
NODES = (1, 2, 3, 4)
GOALS = ("latency", "throughput")


@pytest.fixture(scope="module")
def venv() -> Path:
    return require_validator_venv()


def matrix(engine: str) -> tuple[list[dict], list[tuple], list[tuple]]:
    """Every (model, gpu, nodes, goal, mtp) recipe's node argvs; plus which combos planned and which were refused."""
    items, planned, refused = [], [], []
    for model, card, nodes, goal, mtp in itertools.product(MODELS, GPUS, NODES, GOALS, (True, False)):
        if mtp and model == "kimi-k2":
            continue  # no MTP layer (its refusal is tested in test_recipes_planner)
        req = Request(model, engine=engine, gpu=card, nodes=nodes, goal=goal, mtp=mtp)
        p = plan(req, suggest=False)
        if p.chosen is None:
            refused.append((model, card, nodes, goal, mtp))
            continue
        for rdma in (False, True) if nodes > 1 else (False,):  # TCP by default; DeepEP and RDMA with --rdma
            try:
                launch, _ = render_recipe(p, RecipeOptions(network=Network(rdma=rdma, roce=rdma)), "json")
            except UsageError:  # e.g. V4 on AMD: unsupported by the engine
                refused.append((model, card, nodes, goal, mtp))
                break
            if not rdma:
                planned.append((model, card, nodes, goal, mtp))
            for node in recipe_doc(launch)["nodes"]:
                items.append({"id": f"{model}/{card}/{nodes}n/{goal}/mtp={mtp}/rdma={rdma}/rank{node['rank']}",
                              "argv": engine_args(engine, node["argv"])})
    return items, planned, refused


def _failures(results: list[dict]) -> list[str]:
    return [f"{r['id']}: {r['error']}" for r in results if not r["ok"]]


@pytest.mark.slow  # imports vLLM (~10 s) and parses ~400 commands
def test_vllm_accepts_every_generated_command(venv):
    items, planned, refused = matrix("vllm")
    assert len(planned) > 150 and len(items) > 300
    assert ("deepseek-r1", "h100", 1, "latency", True) in refused  # 8x H100 cannot hold FP8 V3/R1
    # the same argv twice gives the validator nothing new; keep the first
    unique = list({json.dumps(i["argv"]): i for i in items}.values())
    results = check_vllm(venv, unique + BAD_VLLM)
    by_id = {r["id"]: r for r in results}
    assert not _failures([r for r in results if not r["id"].startswith("bad:")])
    for bad in BAD_VLLM:  # the checker is live: it rejects what vLLM rejects
        assert not by_id[bad["id"]]["ok"], bad


BAD_VLLM = [
    {"id": "bad:enable-reasoning", "argv": ["m", "--enable-reasoning", "--reasoning-parser", "deepseek_r1"]},
    {"id": "bad:sglang-parser-name", "argv": ["m", "--reasoning-parser", "deepseek-r1"]},
    {"id": "bad:tp-word", "argv": ["m", "-tp", "eight"]},
    {"id": "bad:kv-dtype", "argv": ["m", "--kv-cache-dtype", "fp9"]},
    {"id": "bad:spec-method", "argv": ["m", "--speculative-config", '{"method":"nope","num_speculative_tokens":1}']},
    {"id": "bad:tool-choice-alone", "argv": ["m", "--enable-auto-tool-choice"]},
]


@pytest.mark.slow  # imports SGLang and parses ~150 commands
def test_sglang_accepts_every_generated_command(venv):
    items, planned, refused = matrix("sglang")
    assert len(planned) > 100
    unique = list({json.dumps(i["argv"]): i for i in items}.values())
    assert any("--moe-a2a-backend" in i["argv"] for i in unique) and any("rdma=False/rank1" in i["id"] for i in unique)
    bad = [{"id": "bad:vllm-parser-name", "argv": ["--model-path", "m", "--reasoning-parser", "deepseek_r1"]},
           {"id": "bad:spec-algo", "argv": ["--model-path", "m", "--speculative-algorithm", "BOGUS"]},
           {"id": "bad:no-model", "argv": ["--tp-size", "8"]}]
    results = check_sglang(venv, unique + bad)
    assert not _failures([r for r in results if not r["id"].startswith("bad:")])
    assert all(not r["ok"] for r in results if r["id"].startswith("bad:"))


@pytest.mark.parametrize("weights,card,gpn,context,kv", [
    ("gguf:Q4_K_M", "h200", 8, None, None),
    ("gguf:Q2_K", "rtx4090", 2, 16384, "q8_0"),
    ("gguf:IQ1_S", "rtx5090", 1, 8192, "q4_0"),
    ("gguf:Q8_0", "mi300x", 8, 65536, None),
])
def test_llama_server_accepts_generated_args(venv, weights, card, gpn, context, kv):
    launch, _ = make_recipe(Request("deepseek-r1", engine="llamacpp", weights=weights, gpu=card, gpus_per_node=gpn,
                                    context=context, kv_dtype=kv), RecipeOptions(), "json")
    node = recipe_doc(launch)["nodes"][0]
    args = engine_args("llamacpp", node["argv"])
    assert check_llama_server(venv, args) is None, args
    assert not {"-mla", "-fmoe", "-rtr", "-amb"} & set(args)  # ik_llama.cpp-only flags


def test_llama_server_accepts_the_recipe_for_a_local_gguf(venv, tiny_gguf):
    launch, _ = make_recipe(Request(str(tiny_gguf), engine="llamacpp", gpu="l40s", gpus_per_node=1), RecipeOptions(), "json")
    host = recipe_doc(launch)["nodes"][0]["host_argv"]
    assert flag_value(host, "-m") == str(tiny_gguf)
    assert check_llama_server(venv, host[1:]) is None, host


def flag_value(argv: list[str], name: str) -> str:
    return argv[argv.index(name) + 1]


def test_llama_server_rejects_ik_llama_flags(venv):
    assert check_llama_server(venv, ["-m", "x.gguf", "-mla", "2"]) is not None
    assert check_llama_server(venv, ["-m", "x.gguf", "-ctk", "q9_0"]) is not None


RENDER_CASES = [
    dict(model="deepseek-r1", engine="vllm", gpu="h200"),
    dict(model="deepseek-v3", engine="vllm", gpu="h100", nodes=2, goal="throughput"),
    dict(model="deepseek-v3.2", engine="sglang", gpu="mi300x"),
    dict(model="kimi-k2", engine="sglang", gpu="h20", nodes=2, goal="throughput"),
    dict(model="deepseek-r1", engine="llamacpp", weights="gguf:Q2_K", gpu="rtx4090", gpus_per_node=2, context=16384),
]


@pytest.mark.parametrize("case", RENDER_CASES, ids=lambda c: f"{c['model']}-{c['engine']}-{c['gpu']}")
def test_compose_files_pass_compose_config(venv, tmp_path, case):
    rdma = case.get("nodes", 1) > 1
    _, files = make_recipe(Request(**case), RecipeOptions(network=Network(rdma=rdma, roce=rdma)), "compose")
    assert len(files) == case.get("nodes", 1)
    for name, text in files.items():
        path = tmp_path / name
        path.write_text(text)
        assert check_compose(venv, path, {"HEAD_IP": HEAD, "NET_IFACE": "ens9", "HOME": str(tmp_path)}) is None, name
        svc = next(iter(yaml.safe_load(text)["services"].values()))
        assert svc["environment"].get("HF_TOKEN", "${HF_TOKEN:-}") == "${HF_TOKEN:-}"  # never a literal token


def test_compose_resolves_to_the_json_argv(venv, tmp_path):
    """After Compose's own interpolation, each node's entrypoint is exactly the JSON recipe's argv."""
    req = Request("deepseek-v3", engine="vllm", gpu="h100", nodes=2, goal="throughput")
    _, files = make_recipe(req, RecipeOptions(), "compose")
    _, js = make_recipe(req, RecipeOptions(), "json")
    nodes = json.loads(js["recipe.json"])["nodes"]
    for (name, text), node in zip(sorted(files.items()), nodes):
        path = tmp_path / name
        path.write_text(text)
        model = resolve_compose(venv, path, {"HEAD_IP": HEAD, "NET_IFACE": "ens9", "HOME": str(tmp_path), "HF_TOKEN": ""})
        svc = model["services"]["vllm"]
        assert svc["entrypoint"] == [a.replace("${HEAD_IP}", HEAD) for a in node["argv"]]
        assert svc["environment"]["NCCL_SOCKET_IFNAME"] == "ens9" and svc["ipc"] == "host"
        assert svc["volumes"][0]["source"] == os.environ["HF_HOME"]  # the HF cache as huggingface_hub finds it


def test_compose_checker_is_live(venv, tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("services:\n  s:\n    image: x\n    shm-size: 1g\n")
    assert check_compose(venv, bad, {}) is not None
    missing = tmp_path / "missing.yaml"
    missing.write_text("services:\n  s:\n    image: x\n    command: [a, '${HEAD_IP:?set it}']\n")
    assert check_compose(venv, missing, {"HEAD_IP": ""}) is not None


@pytest.mark.parametrize("case", RENDER_CASES, ids=lambda c: f"{c['model']}-{c['engine']}-{c['gpu']}")
def test_k8s_manifests_pass_kubernetes_validate(venv, tmp_path, case):
    multi = case.get("nodes", 1) > 1
    _, files = make_recipe(Request(**case), RecipeOptions(network=Network(rdma=multi)), "k8s")
    path = tmp_path / "k8s.yaml"
    path.write_text(files["k8s.yaml"])
    results = check_k8s(venv, [path])
    kinds = [r["kind"] for r in results]
    job = ["Job"] if case["engine"] != "llamacpp" else []  # a hub model is downloaded into the PVC; a GGUF is the user's
    assert kinds == ["PersistentVolumeClaim", *job, *(["LeaderWorkerSet", "Service"] if multi else ["Deployment", "Service"])]
    assert all(r["ok"] for r in results), results


def test_k8s_checker_is_live(venv, tmp_path):
    _, files = make_recipe(Request("deepseek-v3", gpu="h100", nodes=2), RecipeOptions(), "k8s")
    docs = list(yaml.safe_load_all(files["k8s.yaml"]))
    docs[-2]["spec"]["leaderWorkerTemplate"]["workerTemplate"]["spec"]["containers"][0]["imagePullPolcy"] = "x"
    docs[-1]["spec"]["ports"][0]["protocl"] = "TCP"
    docs[1]["spec"]["template"]["spec"]["containers"][0]["resources"]["requets"] = {}  # the download Job
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump_all(docs))
    results = check_k8s(venv, [path])
    assert [r["ok"] for r in results] == [True, False, False, False]
