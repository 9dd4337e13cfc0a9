"""Consumer hardware (issue 17, item 6): `--host-ram` plans llama.cpp's offloaded experts against the box's RAM
(beyond it: mmapped from disk, with a speed warning), a q8_0 K cache when VRAM is tight, and the `--n-cpu-moe`
count explained in the recipe header."""
from __future__ import annotations

import json

import pytest

from dshub.errors import UsageError
from dshub.recipes import RecipeOptions, Request, make_recipe, plan
from dshub.recipes.validate import check_llama_server
from tests.support.tools import require_validator_venv

BOX = dict(model="deepseek-r1", engine="llamacpp", weights="gguf:Q2_K", gpu="rtx4090", gpus_per_node=1)


def test_experts_beyond_host_ram_warn_about_speed():
    small = plan(Request(**BOX, host_ram="128GiB"))
    assert small.chosen is not None and small.chosen.experts_on_cpu_bytes > 128 * 2**30
    assert len(small.warnings) == 1 and "mmaps the rest from disk" in small.warnings[0]
    big = plan(Request(**BOX, host_ram="256GiB"))
    assert big.warnings == [] and any(n.startswith("host RAM:") and "fit" in n for n in big.notes)
    assert plan(Request(**BOX)).warnings == []  # RAM not given: nothing to compare with
    assert plan(Request(**BOX, host_ram="128GiB")).to_dict()["host_ram_bytes"] == 128 * 2**30


def test_bad_host_ram_is_a_usage_error():
    with pytest.raises(UsageError, match="--host-ram 'much'"):
        plan(Request(**BOX, host_ram="much"))


def test_q8_k_cache_when_vram_is_tight():
    p = plan(Request(**BOX))
    f16 = plan(Request(**BOX, kv_dtype="bf16"))
    assert p.kv_dtype == "q8_0" and any("-ctk q8_0" in n for n in p.notes)
    assert p.chosen.experts_on_cpu_layers < f16.chosen.experts_on_cpu_layers
    roomy = plan(Request("deepseek-r1", engine="llamacpp", weights="gguf:Q2_K", gpu="h200"))
    assert roomy.kv_dtype == "bf16" and roomy.chosen.experts_on_cpu_layers == 0  # no offload: f16 stays


def test_header_explains_the_n_cpu_moe_count():
    launch, files = make_recipe(Request(**BOX, host_ram="256GiB"), RecipeOptions(), "sh")
    argv = json.loads(make_recipe(Request(**BOX), RecipeOptions(), "json")[1]["recipe.json"])["nodes"][0]["argv"]
    n = int(argv[argv.index("--n-cpu-moe") + 1])
    layers = launch.plan.chosen.experts_on_cpu_layers
    assert n == layers + 3  # R1's first 3 layers are dense and count
    assert f"# note: --n-cpu-moe {n}: the routed experts of layers 0-{n - 1} stay in system RAM" in files["serve.sh"]
    assert f"{layers} MoE layers' experts" in files["serve.sh"]


def test_llama_server_accepts_the_consumer_recipe():
    venv = require_validator_venv()
    argv = json.loads(make_recipe(Request(**BOX, host_ram="128GiB"), RecipeOptions(), "json")[1]["recipe.json"])
    args = argv["nodes"][0]["argv"][1:]
    assert args[args.index("-ctk") + 1] == "q8_0"
    assert check_llama_server(venv, args) is None, args


def test_cli_host_ram_warning_on_stderr(cli):
    r = cli("plan", *[f"--{k.replace('_', '-')}={v}" for k, v in BOX.items() if k != "model"], BOX["model"],
            "--host-ram", "128GiB")
    assert r.exit_code == 0 and "warning:" in r.stderr and "mmaps the rest from disk" in r.stderr
