"""DeepSeek-V4 in the planner: catalog entries from the family's released dims, bytes as shipped from the release
layout (MXFP4 experts), the KV cache per attention kind, and a local tiny-v4 checkpoint."""
from __future__ import annotations

import pytest

from dshub.arch import deepseek_v4 as v4
from dshub.recipes.models import resolve_model
from dshub.recipes.planner import GB, Request, kv_bytes_per_token, plan, require

# serving.md §1.6: V4-Flash ~160-167 GB as released, V4-Pro ~865-893 GB
@pytest.mark.parametrize("name, low, high", [("deepseek-v4-flash", 158e9, 167e9), ("deepseek-v4-pro", 860e9, 893e9)])
def test_shipped_bytes_are_the_release_layout(name: str, low: float, high: float):
    m = resolve_model(name)
    assert m.modelled and m.shipped == "fp4-fp8" and m.architecture == "DeepseekV4ForCausalLM"
    assert low <= sum(m.stored_bytes.values()) <= high
    assert m.stored_bytes["expert"] > 0.9 * sum(m.stored_bytes.values())


def test_flash_base_ships_fp8_experts_at_about_twice_the_expert_bytes():
    flash, base = resolve_model("deepseek-v4-flash"), resolve_model("deepseek-v4-flash-base")
    assert base.shipped == "fp8" and base.params == flash.params
    assert 1.8 < base.stored_bytes["expert"] / flash.stored_bytes["expert"] < 2.0  # 1 B + scales vs 0.53 B per weight


@pytest.mark.parametrize("name", ["deepseek-v4-flash", "deepseek-v4-pro"])
def test_kv_bytes_follow_the_attention_kinds(name: str):
    m = resolve_model(name)
    dims = v4.FLASH_DIMS if name.endswith("flash") else v4.PRO_DIMS
    per_layer = v4.kv_elems_per_token_layer(dict(dims))
    assert m.kv_elems_per_layer == per_layer
    # fp8: one byte per element, over the main layers and the MTP layer
    assert kv_bytes_per_token(m, "vllm", "fp8", mtp=True) == per_layer * (dims["num_hidden_layers"] + 1)
    # a 1M-token sequence: compressed entries and indexer keys (by kind), plus the bounded sliding windows
    ctx = 1 << 20
    exact = sum(v4.kv_elems_by_kind(dict(dims), ctx).values())
    assert exact == pytest.approx(per_layer * dims["num_hidden_layers"] * ctx + v4.kv_window_elems(dict(dims)), rel=0.02)


@pytest.mark.parametrize("name, card, nodes", [("deepseek-v4-flash", "h200", 1), ("deepseek-v4-flash", "b200", 1),
                                               ("deepseek-v4-pro", "h200", 1), ("deepseek-v4-pro", "b200", 1)])
def test_plans_on_the_usual_gpus_model_the_kv(name: str, card: str, nodes: int):
    p = require(plan(Request(name, gpu=card, nodes=nodes)))
    ev = p.chosen
    assert p.kv_bytes_per_token > 0 and ev.tokens_per_group > 0 and ev.max_context == 1_048_576
    assert not any("not modelled" in n for n in p.notes)
    stored = p.model.stored_bytes  # spread over the GPUs; norms, router and hyper-connections ("other") replicated
    assert ev.weights_per_gpu * ev.layout.gpus <= sum(stored.values()) + ev.layout.gpus * stored["other"] + GB


def test_local_tiny_v4_uses_its_real_bytes(tiny_v4):
    m = resolve_model(str(tiny_v4))
    assert m.shipped == "fp4-fp8" and m.family == "v4" and m.layers == 4 and m.kv_elems_per_layer > 0
    p = plan(Request(str(tiny_v4), gpu="h100", gpus_per_node=1, mtp=False))
    assert p.chosen is not None and p.chosen.weights_per_gpu < 0.01 * GB


@pytest.mark.parametrize("weights, card, gpn", [("gguf:MXFP4_MOE", "h200", 8), ("gguf:Q4_K_M", "rtx4090", 2)])
def test_llama_cpp_recipe_for_the_v4_gguf_passes_llama_server(weights: str, card: str, gpn: int):
    from dshub.recipes import RecipeOptions, make_recipe
    from dshub.recipes.render.jsondoc import recipe_doc
    from dshub.recipes.validate import check_llama_server
    from tests.support.engine_argv import engine_args
    from tests.support.tools import require_validator_venv

    launch, _ = make_recipe(Request("deepseek-v4-flash", engine="llamacpp", weights=weights, gpu=card, gpus_per_node=gpn),
                            RecipeOptions(), "json")
    args = engine_args("llamacpp", recipe_doc(launch)["nodes"][0]["argv"])
    assert check_llama_server(require_validator_venv(), args) is None, args
    if card == "rtx4090":  # 2 x 24 GB cannot hold the experts: the first layers' go to system RAM
        assert "--n-cpu-moe" in args
