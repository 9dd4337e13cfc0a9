"""The dense families (Qwen2, Llama: the R1 distills): inventory, parameter counts, planner and GGUF facts."""
from __future__ import annotations

import pytest
import torch
from transformers import LlamaConfig
from transformers.modeling_rope_utils import ROPE_INIT_FUNCTIONS

from dshub.arch import FAMILIES, spec_for
from dshub.arch.dense import head_dim, llama3_rope_factors
from dshub.arch.spec import Role
from dshub.errors import ConfigError
from dshub.formats.gguf_layout import map_tensors
from dshub.formats.gguf_metadata import arch_kvs
from dshub.recipes.models import DISTILL_DIMS, resolve_model

QWEN = dict(FAMILIES.get("Qwen2ForCausalLM").example)
LLAMA = dict(FAMILIES.get("LlamaForCausalLM").example)

# Parameter counts the hub shows for each distill (safetensors metadata of deepseek-ai/DeepSeek-R1-Distill-*).
PUBLISHED_PARAMS = {"qwen-1.5b": 1.78e9, "qwen-7b": 7.62e9, "qwen-14b": 14.8e9, "qwen-32b": 32.8e9,
                    "llama-8b": 8.03e9, "llama-70b": 70.6e9}


def test_qwen2_has_qkv_biases_and_llama_none():
    q = spec_for(QWEN).by_name
    assert {n for n in q if n.endswith(".bias")} == {f"model.layers.{i}.self_attn.{x}_proj.bias" for i in (0, 1) for x in "qkv"}
    assert q["model.layers.0.self_attn.k_proj.bias"].shape == (2 * 32,)  # KV heads x head_dim
    assert not any(n.endswith(".bias") for n in spec_for(LLAMA).by_name)
    with_bias = spec_for(dict(LLAMA, attention_bias=True)).by_name
    assert "model.layers.1.self_attn.o_proj.bias" in with_bias


def test_gqa_shapes_and_tied_embeddings():
    s = spec_for(QWEN).by_name
    assert s["model.layers.0.self_attn.q_proj.weight"].shape == (128, 128)
    assert s["model.layers.0.self_attn.v_proj.weight"].shape == (64, 128)
    assert s["lm_head.weight"].role is Role.HEAD
    tied = spec_for(dict(QWEN, tie_word_embeddings=True))
    assert "lm_head.weight" not in tied.by_name
    assert tied.params()["total"] == spec_for(QWEN).params()["total"] - 512 * 128
    with pytest.raises(ConfigError, match="not a multiple of num_key_value_heads"):
        spec_for(dict(QWEN, num_key_value_heads=3))


@pytest.mark.parametrize("key", list(DISTILL_DIMS))
def test_catalog_distills_match_their_published_parameter_counts(key):
    info = resolve_model(f"deepseek-r1-distill-{key}")
    assert abs(info.total_params - PUBLISHED_PARAMS[key]) / PUBLISHED_PARAMS[key] < 0.005
    assert info.n_experts == 0 and info.params["expert"] == 0
    cfg = DISTILL_DIMS[key]
    # GQA: K and V per KV head, per layer, BF16
    assert info.kv_elems_per_layer == 2 * cfg["num_key_value_heads"] * head_dim(cfg)


def test_kv_bytes_per_token_of_the_distills():
    # Llama-8B: 32 layers x 2 x 8 KV heads x 128 x 2 bytes = 128 KiB per token; Qwen-7B: 28 x 2 x 4 x 128 x 2
    assert resolve_model("deepseek-r1-distill-llama-8b").kv_elems_per_layer * 32 * 2 == 131072
    assert resolve_model("deepseek-r1-distill-qwen-7b").kv_elems_per_layer * 28 * 2 == 57344


def test_llama3_rope_factors_equal_transformers():
    c = LlamaConfig(**{k: v for k, v in LLAMA.items() if k != "architectures"})
    inv, _ = ROPE_INIT_FUNCTIONS["llama3"](c, "cpu")
    hd = head_dim(LLAMA)
    plain = 1.0 / (LLAMA["rope_theta"] ** (torch.arange(0, hd, 2, dtype=torch.float32) / hd))
    assert torch.allclose(plain / inv, torch.tensor(llama3_rope_factors(LLAMA)), rtol=1e-5)
    assert len(set(llama3_rope_factors(LLAMA))) > 2  # the blend band is exercised


def test_gguf_mapping_of_the_dense_families():
    q = {n: src for n, _, src in map_tensors(QWEN)}
    assert q["blk.0.attn_q.bias"].names == ("model.layers.0.self_attn.q_proj.bias",)
    assert q["blk.0.attn_q.weight"].kind == "tensor"  # qwen2 runs NeoX rotary: no permutation
    assert "rope_freqs.weight" not in q
    ll = {n: (shape, src) for n, shape, src in map_tensors(LLAMA)}
    assert ll["blk.1.attn_k.weight"][1].kind == "rope_permute" and ll["blk.1.attn_k.weight"][1].split[:2] == (2, 32)
    assert ll["rope_freqs.weight"] == ((16,), ll["rope_freqs.weight"][1]) and not ll["rope_freqs.weight"][1].names
    keys = {kv.key: kv.value for kv in arch_kvs(LLAMA)}
    assert keys["llama.attention.head_count_kv"] == 2 and keys["llama.rope.dimension_count"] == 32
    assert not any("expert" in k or "rope.scaling" in k for k in keys)  # llama3 scaling travels as rope_freqs
    tied = {n for n, _, _ in map_tensors(dict(QWEN, tie_word_embeddings=True))}
    assert "output.weight" not in tied  # llama.cpp then uses token_embd as the output


def test_distill_releases_use_the_r1_reasoning_parser():
    for arch in ("Qwen2ForCausalLM", "LlamaForCausalLM"):
        r = FAMILIES.get(arch).releases[0]
        assert r.engines["vllm"].reasoning_parser == "deepseek_r1"
        assert r.engines["sglang"].reasoning_parser == "deepseek-r1"
        assert r.engines["vllm"].tool_parser is None
