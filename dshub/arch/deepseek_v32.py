"""The DeepSeek-V3.2 family (DeepseekV32ForCausalLM, V3.2-Exp and V3.2): DeepSeek-V3's layout plus the lightning
indexer in every layer, MTP layers included.

Indexer tensors, under `model.layers.N.self_attn.indexer.` (deepseek-ai/DeepSeek-V3.2-Exp inference/model.py
`Indexer`; transformers `DeepseekV32Indexer`; llama.cpp's `deepseek32` loader, src/models/deepseek32.cpp):
- `wq_b` [index_n_heads * index_head_dim, q_lora_rank] and `wk` [index_head_dim, hidden]: block FP8 with
  `weight_scale_inv` in the release (the reference builds them as its FP8 `Linear`; vLLM's `Indexer` passes them the
  model's fp8 quant_config);
- `weights_proj` [index_n_heads, hidden]: kept in high precision (the reference gives it the default dtype, vLLM builds
  it with `quant_config=None`, transformers keeps it in fp32, llama.cpp's converter forces it to F32);
- `k_norm.weight`, `k_norm.bias` [index_head_dim]: a LayerNorm.
Config fields `index_n_heads`, `index_head_dim`, `index_topk` (V3.2-Exp config.json: 64, 128, 2048).

GGUF: llama.cpp's `deepseek32` architecture (llama-cpp-python 0.3.36's vendored llama.cpp: conversion/deepseek.py
`DeepseekV32Model`, gguf-py tensor_mapping, src/models/deepseek32.cpp): the deepseek2 tensors and keys, plus
`blk.N.indexer.{attn_q_b,attn_k,proj,k_norm}` and `deepseek32.attention.indexer.{head_count,key_length,top_k}`.
INT4: the indexer is never quantized (its keys feed a top-k selection; vLLM and SGLang run it in FP8/BF16).
Planner: besides the MLA cache, vLLM and SGLang cache one FP8 indexer key of index_head_dim bytes plus its fp32 scale
per token and layer (vLLM `DeepseekV32IndexerCache`: head_dim + head_dim // quant_block_size * 4 bytes, block 128).
"""
from __future__ import annotations

from dataclasses import replace
from functools import partial
from typing import Any

from dshub.arch import deepseek_v3 as v3
from dshub.arch.family import (
    NEVER_INT4, Family, GGUFField, Int4Scopes, Release, ServingFacts, frozen, register,
)
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


# ------------------------------------------------------------------ GGUF: llama.cpp's `deepseek32`
GGUF_ARCH = "deepseek32"
INDEXER_NAMES = frozen({
    "self_attn.indexer.wq_b.weight": "indexer.attn_q_b.weight",
    "self_attn.indexer.wk.weight": "indexer.attn_k.weight",
    "self_attn.indexer.weights_proj.weight": "indexer.proj.weight",
    "self_attn.indexer.k_norm.weight": "indexer.k_norm.weight",
    "self_attn.indexer.k_norm.bias": "indexer.k_norm.bias",
})
# DeepseekV32Model.set_gguf_parameters: add_indexer_head_count / key_length / top_k (all required by the loader).
INDEXER_FIELDS: tuple[GGUFField, ...] = (
    GGUFField("attention.indexer.head_count", "index_n_heads", "UINT32"),
    GGUFField("attention.indexer.key_length", "index_head_dim", "UINT32"),
    GGUFField("attention.indexer.top_k", "index_topk", "UINT32"),
)
FIELDS = v3.FIELDS + INDEXER_FIELDS


def llama_cpp_caveats(config: dict[str, Any]) -> list[str]:
    """Why llama.cpp's deepseek32 loader would refuse this config (src/models/deepseek32.cpp)."""
    out = []
    if config.get("q_lora_rank") is None:
        out.append("q_lora_rank is null: llama.cpp's deepseek32 loader requires attention.q_lora_rank and q_a/q_b tensors")
    if int(config.get("index_head_dim") or 0) < int(config.get("qk_rope_head_dim") or 0):
        out.append("index_head_dim is smaller than qk_rope_head_dim: llama.cpp's deepseek32 graph asserts n_rot <= indexer head size")
    return out


GGUF = replace(
    v3.GGUF,
    arch=GGUF_ARCH,
    layer_names=frozen({**v3.LAYER_NAMES, **INDEXER_NAMES}),
    fields=FIELDS,
    config_from_metadata=partial(v3.config_from_gguf, arch=GGUF_ARCH, fields=FIELDS, architecture="DeepseekV32ForCausalLM"),
    caveats=llama_cpp_caveats,
)


# ------------------------------------------------------------------ planner
INDEXER_QUANT_BLOCK = 128  # one fp32 scale per 128 FP8 key elements
INDEXER_CACHE_SOURCE = ("vLLM deepseek_v2.py Indexer: DeepseekV32IndexerCache(head_dim + head_dim // 128 * 4, uint8); "
                        "SGLang NSATokenToKVPool: index_head_dim + index_head_dim // 128 * 4; llama.cpp "
                        "llama-kv-cache-dsa.cpp: an index_head_dim key per token in the K cache type")
FP8_SCALE_ENGINES = ("vllm", "sglang")  # engines that keep the indexer key in FP8 + fp32 scales whatever the KV dtype


def indexer_key_bytes(config: dict[str, Any], engine: str, kv_elem_bytes: float) -> int:
    """Bytes of the indexer's key cache per token and layer (INDEXER_CACHE_SOURCE)."""
    dim = int(config["index_head_dim"])
    if engine in FP8_SCALE_ENGINES:
        return dim + dim // INDEXER_QUANT_BLOCK * 4
    return int(dim * kv_elem_bytes)


# vLLM stores V3.2's sparse-attention cache as fp8_ds_mla: 656 bytes per token per layer (serving.md §5).
PLANNER = replace(v3.PLANNER, kv_bytes_per_layer=frozen({("vllm", "fp8"): 656}),
                  kv_bytes_source="vLLM fp8_ds_mla (serving.md §5)", side_kv_bytes=indexer_key_bytes,
                  side_kv_source=INDEXER_CACHE_SOURCE)

# Engine facts: vllm recipes V3.2 guide; sglang deepseek_v32.md; llama.cpp PR#23346 (serving.md §1, §2, §3).
RELEASES = (
    Release("v32", frozen({
        "vllm": ServingFacts(
            "deepseek_v3", "deepseek_v32", None, "deepseek_v32", "0.18.0", "vllm recipes: V3.2 min_vllm_version 0.18.0",
            notes=("V3.2 on Hopper needs DeepGEMM v2.1.1.post3 in the image (vllm recipes V3.2 guide).",),
            # the V3.2 guide's command turns FlashInfer's kernel autotuning off (serving.md §1.6)
            extra_args=("--kernel-config.enable_flashinfer_autotune=False",),
            prefer_layouts=("dep",),
            prefer_reason="TP8 pads FlashMLA-Sparse's 16 heads per rank to 64; the V3.2 guide uses -dp 8 --enable-expert-parallel"),
        "sglang": ServingFacts("deepseek-v3", "deepseekv32", prefer_layouts=("dp-attention",),
                               prefer_reason="sglang deepseek_v32.md serves V3.2 with --tp 8 --dp 8 --enable-dp-attention"),
        "llamacpp": ServingFacts(notes=("DeepSeek-V3.2 GGUFs need a llama.cpp build with PR#23346 (2026-05).",)),
    }), name_pattern=r"(?i)v3\.?2", model_types=("deepseek_v32",)),
)

FAMILY = register(Family(
    name="deepseek_v32",
    architectures=("DeepseekV32ForCausalLM",),
    inventory=deepseek_v32_spec,
    example=frozen({**v3.EXAMPLE, "architectures": ["DeepseekV32ForCausalLM"], "model_type": "deepseek_v32",
                    "index_n_heads": 4, "index_head_dim": 64, "index_topk": 32}),
    planner=PLANNER,
    releases=RELEASES,
    gguf=GGUF,
    int4=Int4Scopes(never=NEVER_INT4 | {Role.INDEXER}),
    refusals=frozen({"onnx": v3.ONNX_REFUSAL}),
))
