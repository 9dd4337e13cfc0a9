"""Per-model flags, sampling and environment from the sources (issue 17, item 4): llama.cpp sampling per catalog
entry (nothing where the model card states nothing), V3.2's published vLLM kernel flag, no environment variable
beyond the releases its source covers, experimental engine switches only with --experimental."""
from __future__ import annotations

import json

import pytest

from dshub.recipes import RecipeOptions, Request, make_recipe
from dshub.recipes.env import ENV_RULES
from dshub.recipes.models import CATALOG


def node(req: Request, **opts) -> dict:
    _, files = make_recipe(req, RecipeOptions(**opts), "json")
    return json.loads(files["recipe.json"])["nodes"][0]


def flag(argv: list[str], name: str) -> str | None:
    return argv[argv.index(name) + 1] if name in argv else None


@pytest.mark.parametrize("model,temp,top_p", [
    ("deepseek-r1", "0.6", "0.95"), ("deepseek-v3-0324", "0.3", None), ("kimi-k2", "0.6", None),
    ("kimi-k2-thinking", "1", None), ("deepseek-v3.2", "1", "0.95"), ("deepseek-v3", None, None),
    ("deepseek-v3.1", None, None),
])
def test_llamacpp_sampling_is_the_model_cards(model, temp, top_p):
    argv = node(Request(model, engine="llamacpp", weights="gguf:Q4_K_M", gpu="h200"))["argv"]
    assert flag(argv, "--temp") == temp and flag(argv, "--top-p") == top_p


def test_every_stated_sampling_names_its_source():
    for e in CATALOG:
        if e.sampling:
            assert "model card" in e.sampling.source and e.sampling.temperature is not None, e.name


def test_one_bit_quants_keep_unsloths_min_p():
    argv = node(Request("deepseek-r1", engine="llamacpp", weights="gguf:IQ1_S", gpu="h200"))["argv"]
    assert flag(argv, "--min-p") == "0.05" and flag(argv, "--temp") == "0.6"


def test_a_local_gguf_gets_no_sampling_flags(tiny_gguf):
    argv = node(Request(str(tiny_gguf), engine="llamacpp", gpu="l40s", gpus_per_node=1))["argv"]
    assert "--temp" not in argv and "--top-p" not in argv  # its GGUF metadata carries the defaults


def test_v32_on_vllm_has_the_published_kernel_flag():
    assert "--kernel-config.enable_flashinfer_autotune=False" in node(Request("deepseek-v3.2", gpu="h200"))["argv"]
    assert "--kernel-config.enable_flashinfer_autotune=False" not in node(Request("deepseek-r1", gpu="h200"))["argv"]


@pytest.mark.parametrize("model,has", [("deepseek-r1", True), ("deepseek-v3", True), ("deepseek-v3.1", False),
                                       ("deepseek-v3.2", False), ("kimi-k2", False)])
def test_fp8_moe_env_only_for_the_releases_its_recipe_covers(model, has):
    n = node(Request(model, gpu="h200", nodes=2 if model == "kimi-k2" else 1))
    assert ("VLLM_USE_FLASHINFER_MOE_FP8" in n["env"]) is has


def test_every_env_rule_has_a_source():
    assert all(rule.source for rule in ENV_RULES)


def test_experimental_switches_are_opt_in():
    req = Request("deepseek-r1", engine="sglang", gpu="h200", mtp=True)
    assert "SGLANG_ENABLE_SPEC_V2" not in node(req)["env"]
    assert node(req, experimental=True)["env"]["SGLANG_ENABLE_SPEC_V2"] == "1"


def test_cli_experimental_flag(cli):
    r = cli("recipe", "deepseek-r1", "--engine", "sglang", "--format", "json", "--experimental")
    assert r.exit_code == 0 and "SGLANG_ENABLE_SPEC_V2" in r.stdout
    r = cli("recipe", "deepseek-r1", "--engine", "sglang", "--format", "json")
    assert r.exit_code == 0 and "SGLANG_ENABLE_SPEC_V2" not in r.stdout
