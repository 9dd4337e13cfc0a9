"""ArchSpec: tensor inventory and parameter counts read from config.json."""
from __future__ import annotations

import math

import pytest

from dshub.arch import spec_for
from dshub.arch.spec import Role
from dshub.errors import ConfigError, UnsupportedArchitecture

# DeepSeek-V3's published config.json dimensions (hub: deepseek-ai/DeepSeek-V3).
V3 = dict(architectures=["DeepseekV3ForCausalLM"], hidden_size=7168, num_hidden_layers=61, num_attention_heads=128,
          vocab_size=129280, intermediate_size=18432, moe_intermediate_size=2048, q_lora_rank=1536, kv_lora_rank=512,
          qk_nope_head_dim=128, qk_rope_head_dim=64, v_head_dim=128, n_routed_experts=256, n_shared_experts=1,
          first_k_dense_replace=3, num_experts_per_tok=8, num_nextn_predict_layers=1, topk_method="noaux_tc", moe_layer_freq=1)


def test_v3_parameter_counts_match_the_published_figures():
    p = spec_for(V3).params()
    assert round(p["total"] / 1e9, 2) == 671.03  # 671B main model
    assert 36.5e9 < p["active"] < 38e9  # "37B activated"
    assert 13e9 < p["mtp"] < 14e9  # the 14B MTP module (685B on the hub = 671B + 14B)


def test_v3_inventory_has_mtp_extras_router_bias_and_scales_shapes():
    spec = spec_for(V3)
    names = spec.by_name
    assert names["model.layers.61.eh_proj.weight"].shape == (7168, 14336)
    for extra in ("enorm", "hnorm", "shared_head.norm", "shared_head.head", "embed_tokens"):
        assert f"model.layers.61.{extra}.weight" in names
    kv_a = names["model.layers.0.self_attn.kv_a_proj_with_mqa.weight"]
    assert kv_a.shape == (576, 7168) and kv_a.fp8
    assert (math.ceil(576 / 128), math.ceil(7168 / 128)) == (5, 56)
    assert names["model.layers.3.mlp.gate.e_score_correction_bias"].role is Role.ROUTER_BIAS
    assert not names["model.layers.3.mlp.gate.weight"].fp8
    assert not names["lm_head.weight"].fp8 and not names["model.embed_tokens.weight"].fp8
    assert "model.layers.2.mlp.experts.0.gate_proj.weight" not in names  # dense layers 0..2
    assert sum(1 for t in spec if t.role is Role.EXPERT and t.layer == 3) == 256 * 3


def test_v2_without_q_lora_uses_q_proj():
    cfg = dict(V3, architectures=["DeepseekV2ForCausalLM"], q_lora_rank=None, num_nextn_predict_layers=0, topk_method="greedy")
    names = spec_for(cfg).by_name
    assert names["model.layers.0.self_attn.q_proj.weight"].shape == (128 * 192, 7168)
    assert "model.layers.0.self_attn.q_a_proj.weight" not in names
    assert not any("e_score_correction_bias" in n for n in names)


def test_missing_config_field_and_unknown_architecture_are_clear_errors():
    with pytest.raises(ConfigError, match="'kv_lora_rank'"):
        spec_for({k: v for k, v in V3.items() if k != "kv_lora_rank"})
    with pytest.raises(UnsupportedArchitecture, match="DeepseekV3ForCausalLM"):
        spec_for(dict(V3, architectures=["MistralForCausalLM"]))
