"""The DeepSeek-V4 family: original names, encodings per tensor, parameter counts against the published sizes, KV
cache per attention kind."""
from __future__ import annotations

import pytest

from dshub.arch import FAMILIES, spec_for
from dshub.arch import deepseek_v4 as v4
from dshub.arch.spec import Role
from dshub.errors import ConfigError, UsageError


def test_registered_under_its_architecture_with_original_names():
    fam = FAMILIES.get("DeepseekV4ForCausalLM")
    assert fam is v4.FAMILY
    spec = spec_for(dict(v4.EXAMPLE))
    names = spec.by_name
    for n in ("embed.weight", "head.weight", "norm.weight", "hc_head_fn", "layers.0.attn.wq_a.weight",
              "layers.0.attn.attn_sink", "layers.0.ffn.gate.tid2eid", "layers.1.attn.compressor.wkv.weight",
              "layers.1.attn.indexer.compressor.ape", "layers.2.attn.compressor.ape", "layers.3.ffn.experts.7.w2.weight",
              "mtp.0.e_proj.weight", "mtp.0.hc_head_base", "mtp.0.attn.wo_b.weight", "mtp.0.ffn.experts.0.w1.weight"):
        assert n in names, n
    # attention kinds from compress_ratios [0, 4, 128, 4 | MTP 0]: only CSA layers have an indexer
    assert "layers.0.attn.compressor.wkv.weight" not in names and "layers.2.attn.indexer.wq_b.weight" not in names
    assert names["layers.1.attn.compressor.wkv.weight"].shape == (256, 256)  # CSA: two overlapping windows
    assert names["layers.2.attn.compressor.wkv.weight"].shape == (128, 256)  # HCA: one
    assert names["layers.1.attn.wo_a.weight"].shape == (2 * 64, 4 * 128 // 2)  # o_groups * o_lora_rank, group width
    assert "layers.1.ffn.gate.tid2eid" not in names  # one hash layer
    assert all(t.mtp for t in spec if t.name.startswith("mtp.")) and spec.num_mtp_layers == 1


@pytest.mark.parametrize("expert_dtype, quantized, mx", [("fp4", True, True), ("fp8", True, False), ("fp4", False, False)])
def test_encoding_of_each_tensor(expert_dtype: str, quantized: bool, mx: bool):
    cfg = {**v4.EXAMPLE, "expert_dtype": expert_dtype}
    if not quantized:
        cfg.pop("quantization_config")
    spec = spec_for(cfg)
    e = spec.by_name["layers.1.ffn.experts.0.w1.weight"]
    assert e.mxfp4 is mx and e.fp8 is (not mx) and e.scale_name == "layers.1.ffn.experts.0.w1.scale"
    if mx:
        assert e.stored_shape == (128, 128) and e.mxfp4_scale_shape() == (128, 8)  # [out, in/2], one per 32
    assert spec.by_name["layers.1.attn.wq_b.weight"].fp8  # every other linear is block FP8
    assert spec.release_scale_dtype == ("F8_E8M0" if mx else "F32")
    t = spec.by_name["layers.0.ffn.gate.tid2eid"]
    assert t.max_value == 8 and t.dtypes == frozenset({"I32", "I64"}) and t.role is Role.ROUTER
    assert spec.by_name["hc_head_fn"].dtypes == frozenset({"F32"}) and not spec.by_name["head.weight"].fp8


# Published sizes (DeepSeek-V4 model cards): V4-Flash 284B total / 13B activated, V4-Pro 1.6T / 49B. "Activated"
# counts the output head and not the input embedding (the convention of DeepSeek-V3's README_WEIGHTS.md: 36.7B
# "including 0.9B for the output Head"). The published figures are rounded to 3 and 2 significant digits.
@pytest.mark.parametrize("dims, total, active, tol_total, tol_active", [
    (v4.FLASH_DIMS, 284e9, 13e9, 0.01, 0.025),  # 284.3B (0.1%); 13.27B (2.1%: "13B" is rounded)
    (v4.PRO_DIMS, 1.6e12, 49e9, 0.02, 0.01),    # 1.573T (1.7%: "1.6T" is rounded); 48.85B (0.3%)
])
def test_parameter_counts_match_the_published_sizes(dims, total, active, tol_total, tol_active):
    spec = spec_for(dict(dims))
    p = spec.params()
    embed = dims["vocab_size"] * dims["hidden_size"]
    assert abs(p["total"] / total - 1) < tol_total
    assert abs((p["active"] - embed) / active - 1) < tol_active
    assert p["mtp"] > 0 and p["routed_experts"] > 0.95 * p["total"]


def test_kv_cache_per_attention_kind():
    cfg = dict(v4.FLASH_DIMS)
    ctx = 1 << 20
    kinds = v4.kv_elems_by_kind(cfg, ctx)
    # 2 sliding-only layers, 21 CSA, 20 HCA; head_dim 512, window 128, index keys 128
    assert kinds["sliding"] == 2 * 128 * 512
    assert kinds["csa"] == 21 * (128 * 512 + (ctx // 4) * (512 + 128))
    assert kinds["hca"] == 20 * (128 * 512 + (ctx // 128) * 512)
    assert v4.kv_window_elems(cfg) == 43 * 128 * 512
    grow = v4.kv_elems_per_token_layer(cfg)
    assert grow == -(-(21 * 640 / 4 + 20 * 512 / 128) // 43)  # ceil of the per-layer average
    short = v4.kv_elems_by_kind(cfg, 100)  # shorter than the window: every layer holds the 100 tokens only
    assert short["sliding"] == 2 * 100 * 512 and short["hca"] == 20 * 100 * 512


def test_bad_configs_and_refused_targets():
    with pytest.raises(ConfigError, match="compress_ratios"):
        spec_for({**v4.EXAMPLE, "compress_ratios": [0, 4]})
    with pytest.raises(ConfigError, match=r"\[3\]"):
        spec_for({**v4.EXAMPLE, "compress_ratios": [0, 3, 4, 4]})
    with pytest.raises(ConfigError, match="expert_dtype"):
        spec_for({**v4.EXAMPLE, "expert_dtype": "int4"})
    with pytest.raises(UsageError, match="DeepseekV4FP8Config"):
        v4.FAMILY.int4_scopes()
