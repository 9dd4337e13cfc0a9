"""The DeepSeek-V3.2 family (DeepseekV32ForCausalLM): DeepSeek-V3's layout plus the lightning indexer in every layer.

Indexer tensors (deepseek-ai/DeepSeek-V3.2 inference/model.py `Indexer`), under `model.layers.N.self_attn.indexer.`:
`wq_b` [index_n_heads * index_head_dim, q_lora_rank] and `wk` [index_head_dim, hidden] in block FP8, `k_norm`
weight and bias [index_head_dim], `weights_proj` [index_n_heads, hidden] kept high precision.
Planned and verified here; GGUF and INT4 output are refused until the V3.2 end-to-end issue maps them.
"""
from __future__ import annotations

from dataclasses import replace
from typing import Any

from dshub.arch import deepseek_v3 as v3
from dshub.arch.family import Family, Release, ServingFacts, frozen, register
from dshub.arch.spec import ArchSpec, Role, require


def indexer_tensors(config: dict[str, Any]) -> tuple[v3.AttnExtra, ...]:
    """The lightning indexer of one layer: (name after `self_attn.`, shape, role, linear, fp8)."""
    hidden, heads, dim = require(config, "hidden_size", "index_n_heads", "index_head_dim")
    q_lora = config.get("q_lora_rank") or hidden
    return (
        ("indexer.wq_b.weight", (heads * dim, q_lora), Role.INDEXER, True, True),
        ("indexer.wk.weight", (dim, hidden), Role.INDEXER, True, True),
        ("indexer.k_norm.weight", (dim,), Role.INDEXER, False, False),
        ("indexer.k_norm.bias", (dim,), Role.INDEXER, False, False),
        ("indexer.weights_proj.weight", (heads, hidden), Role.INDEXER, True, False),
    )


def deepseek_v32_spec(config: dict[str, Any]) -> ArchSpec:
    return v3.deepseek_v3_spec(config, attn_extras=indexer_tensors(config))


# vLLM stores V3.2's sparse-attention cache as fp8_ds_mla: 656 bytes per token per layer (serving.md §5).
PLANNER = replace(v3.PLANNER, kv_bytes_per_layer=frozen({("vllm", "fp8"): 656}),
                  kv_bytes_source="vLLM fp8_ds_mla (serving.md §5)")

# Engine facts: vllm recipes V3.2 guide; sglang deepseek_v32.md; llama.cpp PR#23346 (serving.md §1, §2, §3).
RELEASES = (
    Release("v32", frozen({
        "vllm": ServingFacts(
            "deepseek_v3", "deepseek_v32", None, "deepseek_v32", "0.18.0", "vllm recipes: V3.2 min_vllm_version 0.18.0",
            notes=("V3.2 on Hopper needs DeepGEMM v2.1.1.post3 in the image (vllm recipes V3.2 guide).",),
            prefer_layouts=("dep",),
            prefer_reason="TP8 pads FlashMLA-Sparse's 16 heads per rank to 64; the V3.2 guide uses -dp 8 --enable-expert-parallel"),
        "sglang": ServingFacts("deepseek-v3", "deepseekv32", prefer_layouts=("dp-attention",),
                               prefer_reason="sglang deepseek_v32.md serves V3.2 with --tp 8 --dp 8 --enable-dp-attention"),
        "llamacpp": ServingFacts(notes=("DeepSeek-V3.2 GGUFs need a llama.cpp build with PR#23346 (2026-05).",)),
    }), name_pattern=r"(?i)v3\.?2", model_types=("deepseek_v32",)),
)

_LATER = "the lightning indexer tensors (self_attn.indexer.*) are not mapped yet; convert with --to bf16"
FAMILY = register(Family(
    name="deepseek_v32",
    architectures=("DeepseekV32ForCausalLM",),
    inventory=deepseek_v32_spec,
    example=frozen({**v3.EXAMPLE, "architectures": ["DeepseekV32ForCausalLM"], "model_type": "deepseek_v32",
                    "index_n_heads": 4, "index_head_dim": 64, "index_topk": 32}),
    planner=PLANNER,
    releases=RELEASES,
    refusals=frozen({"gguf": _LATER, "int4": _LATER, "onnx": v3.ONNX_REFUSAL}),
))
