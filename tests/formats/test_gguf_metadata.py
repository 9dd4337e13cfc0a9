"""deepseek2 metadata and tensor mapping from a DeepSeek-V3 config.json (the real 671B dimensions, no weights needed)."""
from __future__ import annotations

import math

import pytest

from dshub.formats.gguf_metadata import arch_kvs, gating_func, general_kvs
from dshub.converters.gguf.schemes import SchemeContext, resolve
from dshub.converters.sizing import target_options
from dshub.converters.gguf.tensors import plan_tensors
from dshub.formats.gguf_layout import forced_f32, map_tensors
from dshub.errors import ConfigError, UsageError
from tests.support.configs import V3


def kv(config: dict) -> dict:
    return {k.key: k.value for k in arch_kvs(config)}


def test_v3_keys() -> None:
    k = kv(V3)
    assert k["deepseek2.attention.head_count_kv"] == 1
    assert (k["deepseek2.attention.key_length"], k["deepseek2.attention.value_length"]) == (576, 512)
    assert (k["deepseek2.attention.key_length_mla"], k["deepseek2.attention.value_length_mla"]) == (192, 128)
    assert k["deepseek2.block_count"] == 61 and k["deepseek2.leading_dense_block_count"] == 3
    assert k["deepseek2.expert_count"] == 256 and k["deepseek2.expert_used_count"] == 8
    assert (k["deepseek2.expert_group_count"], k["deepseek2.expert_group_used_count"]) == (8, 4)
    assert k["deepseek2.expert_gating_func"] == 2 and k["deepseek2.expert_weights_norm"] is True
    assert k["deepseek2.expert_weights_scale"] == 2.5 and k["deepseek2.attention.q_lora_rank"] == 1536
    assert k["deepseek2.rope.scaling.type"] == "yarn" and k["deepseek2.rope.scaling.factor"] == 40.0
    assert k["deepseek2.rope.scaling.original_context_length"] == 4096
    assert k["deepseek2.rope.scaling.yarn_log_multiplier"] == pytest.approx(0.1)  # 0.1 * mscale_all_dim (llama.cpp divides by 0.1)
    assert k["deepseek2.context_length"] == 163840 and k["deepseek2.rope.dimension_count"] == 64
    gen = {x.key: x.value for x in general_kvs("DeepSeek-V3", "Q4_K_M")}
    assert gen["general.file_type"] == 15 and gen["general.architecture"] == "deepseek2"


def test_gating_without_scoring_func() -> None:
    """transformers 5 no longer writes scoring_func; V3-family models gate with sigmoid, V2 with softmax."""
    cfg = {k: v for k, v in V3.items() if k != "scoring_func"}
    assert gating_func(cfg) == 2
    assert gating_func({**cfg, "architectures": ["DeepseekV2ForCausalLM"]}) == 1
    with pytest.raises(ConfigError, match="scoring_func 'tanh'"):
        gating_func({**cfg, "scoring_func": "tanh"})


def test_optional_keys_omitted() -> None:
    k = kv({**V3, "q_lora_rank": None, "rope_scaling": None})
    assert "deepseek2.attention.q_lora_rank" not in k
    assert not any("rope.scaling" in key for key in k)
    with pytest.raises(ConfigError, match="kv_lora_rank is required"):
        arch_kvs({k2: v for k2, v in V3.items() if k2 != "kv_lora_rank"})


def test_v3_tensor_map_matches_llama_cpp() -> None:
    mapped = map_tensors(V3)
    names = {n: s for n, s, _ in mapped}
    assert len(mapped) == 3 * 13 + 58 * 18 + 3 == 1086
    assert names["blk.0.attn_k_b.weight"] == (128, 512, 128)  # ne = [128 nope, 512 kv_lora, 128 heads]
    assert names["blk.0.attn_v_b.weight"] == (128, 128, 512)  # ne = [512 kv_lora, 128 v_head, 128 heads]
    assert names["blk.3.ffn_gate_exps.weight"] == (256, 2048, 7168)
    assert names["blk.3.ffn_down_exps.weight"] == (256, 7168, 2048)
    assert names["blk.3.exp_probs_b.bias"] == (256,) and names["blk.3.ffn_gate_inp.weight"] == (256, 7168)
    assert names["blk.60.ffn_up_shexp.weight"] == (2048, 7168) and "blk.61.attn_norm.weight" not in names
    assert not any("attn_kv_b" in n for n in names)
    assert sum(math.prod(s) for s in names.values()) == pytest.approx(671.03e9, rel=1e-4)
    forced = {n for n, s in names.items() if forced_f32(n, s)}
    assert "blk.3.ffn_gate_inp.weight" in forced and "blk.3.exp_probs_b.bias" in forced and "token_embd.weight" not in forced


def test_v3_q8_0_plan_size_and_v2_lite_map() -> None:
    mapped = map_tensors(V3)
    ctx = SchemeContext(V3, tuple((n, s) for n, s, _ in mapped if not forced_f32(n, s)))
    _, fn = resolve(target_options("gguf", quant="Q8_0"), ctx)
    planned = plan_tensors(mapped, fn)
    total = sum(p.info.nbytes for p in planned)
    assert 710e9 < total < 716e9  # ~713 GB: why a 671B Q8_0 needs --split-max-size
    lite = {**V3, "q_lora_rank": None, "num_hidden_layers": 27, "first_k_dense_replace": 1, "n_routed_experts": 64,
            "num_attention_heads": 16, "hidden_size": 2048, "num_nextn_predict_layers": 0, "architectures": ["DeepseekV2ForCausalLM"]}
    names = {n for n, _, _ in map_tensors(lite)}
    assert "blk.0.attn_q.weight" in names and "blk.0.attn_q_a.weight" not in names


def test_unknown_quant_lists_known() -> None:
    with pytest.raises(UsageError, match="known: F32, F16, BF16, Q8_0"):
        resolve(target_options("gguf", quant="Q3_XL"), SchemeContext(V3, ()))


def test_llama_cpp_caveats() -> None:
    from dshub.formats.gguf_metadata import llama_cpp_caveats

    assert llama_cpp_caveats(V3) == []
    assert llama_cpp_caveats({**V3, "q_lora_rank": None, "num_hidden_layers": 27}) == []
    (why,) = llama_cpp_caveats({**V3, "q_lora_rank": None, "num_hidden_layers": 2})
    assert "will fail to load" in why


def test_size_label_as_llama_cpp_names_it() -> None:
    from dshub.formats.gguf_metadata import rounded_count, size_label

    assert [rounded_count(n) for n in (2_400_000, 20_000_000_000, 671_026_000_000, 999, 1_500_000_000_000)] == [
        "2.4M", "20B", "671B", "1.0K", "1.5T"]
    assert size_label([(n, s) for n, s, _ in map_tensors(V3)]) == "256x20B"
