"""The DeepSeek-V4 family (DeepseekV4ForCausalLM): V4-Flash, V4-Flash-Base, V4-Pro.

Tensors keep the original DeepSeek names the release ships (`embed.weight`, `layers.N.attn.wq_a.weight`, ...,
`mtp.K.*`); transformers renames them on load (conversion_mapping.py "deepseek_v4"), llama.cpp's converter reads
them as they are. Sources of every fact below, cross-checked against each other:
- [T] transformers 5.24 models/deepseek_v4 (modeling: module shapes and dtypes; configuration: the legacy
  `compress_ratios` / `num_hash_layers` / `qk_rope_head_dim` fields and their meaning); its conversion mapping
  (original name -> transformers name);
- [L] llama.cpp conversion/deepseek.py `DeepseekV4Model` (the original names, MTP renames `mtp.K.*`, MXFP4 experts
  repacked, FP8 weights with `.scale` dequantized then written as Q8_0, `tid2eid` as I32, `gate.bias` unused in hash
  layers) and conversion/base.py `repack_mxfp4_blocks` (codes [rows, cols/2], one E8M0 byte per 32);
- [V] vLLM model_executor/models/deepseek_v4.py (`expert_dtype` fp4 | fp8; FP4 releases store FP8 linear scales as
  e8m0, FP8-expert releases (Flash-Base) as float32; MTP under `mtp.`; hc_head_* float32).

Encodings per tensor: block-FP8 e4m3 linears with a `<x>.scale` per 128x128 block (e8m0 or F32); routed experts
MXFP4 (`expert_dtype: fp4`) with a `<x>.scale` e8m0 per 32 inputs, or block FP8 (`fp8`); norms, router, embeddings,
head BF16; hyper-connection, sink and compressor position-bias tensors F32; `ffn.gate.tid2eid` an integer table
[vocab, top_k] of expert ids. GGUF: llama.cpp's `deepseek4` names, metadata and per-source types [L]; its MTP layer
goes to a separate file there, so `--mtp` is refused.
"""
from __future__ import annotations

import math
from typing import Any, Mapping

from dshub.arch.family import (
    Family, GGUFDerived, GGUFExperts, GGUFField, GGUFMapping, PlannerFacts, Release, ServingFacts, frozen, register,
)
from dshub.arch.spec import INT_TABLE_DTYPES, ArchSpec, Role, TensorSpec, require
from dshub.errors import ConfigError

ARCHITECTURE = "DeepseekV4ForCausalLM"
F32_ONLY = frozenset({"F32"})
# compress_ratios entries ([T] configuration _COMPRESS_RATIO_TO_LAYER_TYPE): 0 sliding window only, 4 compressed
# sparse attention (overlapping compressor + lightning indexer), 128 heavily compressed attention.
ATTENTION_KINDS: Mapping[int, str] = frozen({0: "sliding", 4: "csa", 128: "hca"})
SCALE_SUFFIX = ".scale"


def scale_of(weight: str) -> str:
    """V4's scale tensor name: `x.weight` -> `x.scale` ([L] dequant_model, [V] scale_regex)."""
    return weight[: -len(".weight")] + SCALE_SUFFIX


def compress_ratios(config: dict[str, Any]) -> list[int]:
    """One ratio per main layer then per MTP layer (V4-Flash ships 43 + 1 entries); missing MTP entries are 0."""
    n_layers, = require(config, "num_hidden_layers")
    n_mtp = int(config.get("num_nextn_predict_layers") or 0)
    ratios = config.get("compress_ratios")
    if not isinstance(ratios, list) or len(ratios) < n_layers:
        raise ConfigError(f"compress_ratios must list one ratio per layer ({n_layers})", path="config.json")
    out = [int(r) for r in ratios] + [0] * max(0, n_layers + n_mtp - len(ratios))
    bad = sorted({r for r in out if r not in ATTENTION_KINDS})
    if bad:
        raise ConfigError(f"compress_ratios holds {bad}; known ratios: {sorted(ATTENTION_KINDS)}", path="config.json")
    return out[: n_layers + n_mtp]


def expert_encoding(config: dict[str, Any]) -> str:
    """How the routed experts are stored: "mxfp4", "fp8" (block FP8) or "float" (a dequantized checkpoint)."""
    qc = config.get("quantization_config") or {}
    if not qc:
        return "float"
    dtype = qc.get("expert_dtype", config.get("expert_dtype", "fp4"))
    if dtype not in ("fp4", "fp8"):
        raise ConfigError(f"expert_dtype {dtype!r}: expected fp4 or fp8", path="config.json")
    return "mxfp4" if dtype == "fp4" else "fp8"


def deepseek_v4_spec(config: dict[str, Any]) -> ArchSpec:
    """Every tensor of a DeepSeek-V4 checkpoint under its original name, in canonical order."""
    hidden, n_layers, heads, vocab, head_dim, q_lora = require(
        config, "hidden_size", "num_hidden_layers", "num_attention_heads", "vocab_size", "head_dim", "q_lora_rank")
    o_groups, o_lora, n_routed, top_k, moe_inter, hc = require(
        config, "o_groups", "o_lora_rank", "n_routed_experts", "num_experts_per_tok", "moe_intermediate_size", "hc_mult")
    idx_heads, idx_dim = require(config, "index_n_heads", "index_head_dim")
    n_shared = int(config.get("n_shared_experts") or 0)
    n_hash = int(config.get("num_hash_layers") or 0)
    n_mtp = int(config.get("num_nextn_predict_layers") or 0)
    ratios = compress_ratios(config)
    experts_as = expert_encoding(config)
    if heads * head_dim % o_groups:
        raise ConfigError(f"num_attention_heads * head_dim ({heads * head_dim}) is not a multiple of o_groups ({o_groups})",
                          path="config.json")
    mix = (2 + hc) * hc  # pre, post and comb weights of one hyper-connection ([T] DeepseekV4HyperConnection)

    out: list[TensorSpec] = []

    def add(name: str, shape: tuple[int, ...], role: Role, layer: int | None = None, *, fp8: bool = False,
            mxfp4: bool = False, expert: int | None = None, mtp: bool = False, dtypes: frozenset[str] | None = None,
            max_value: int | None = None) -> None:
        linear = fp8 or mxfp4 or (len(shape) == 2 and role is Role.ROUTER)
        out.append(TensorSpec(name, tuple(int(d) for d in shape), role, layer, expert, linear, fp8, mtp,
                              scale=scale_of(name) if fp8 or mxfp4 else None, mxfp4=mxfp4, dtypes=dtypes,
                              max_value=max_value))

    def hyper(prefix: str, layer: int | None, mtp: bool, n_out: int, n_scale: int) -> None:
        add(prefix + "fn", (n_out, hc * hidden), Role.NORM, layer, mtp=mtp, dtypes=F32_ONLY)
        add(prefix + "base", (n_out,), Role.NORM, layer, mtp=mtp, dtypes=F32_ONLY)
        add(prefix + "scale", (n_scale,), Role.NORM, layer, mtp=mtp, dtypes=F32_ONLY)

    def block(p: str, i: int, mtp: bool) -> None:
        add(p + "attn_norm.weight", (hidden,), Role.NORM, i, mtp=mtp)
        add(p + "ffn_norm.weight", (hidden,), Role.NORM, i, mtp=mtp)
        hyper(p + "hc_attn_", i, mtp, mix, 3)
        hyper(p + "hc_ffn_", i, mtp, mix, 3)
        a = p + "attn."
        add(a + "wq_a.weight", (q_lora, hidden), Role.ATTN, i, fp8=True, mtp=mtp)
        add(a + "q_norm.weight", (q_lora,), Role.NORM, i, mtp=mtp)
        add(a + "wq_b.weight", (heads * head_dim, q_lora), Role.ATTN, i, fp8=True, mtp=mtp)
        add(a + "wkv.weight", (head_dim, hidden), Role.ATTN, i, fp8=True, mtp=mtp)
        add(a + "kv_norm.weight", (head_dim,), Role.NORM, i, mtp=mtp)
        add(a + "wo_a.weight", (o_groups * o_lora, heads * head_dim // o_groups), Role.ATTN, i, fp8=True, mtp=mtp)
        add(a + "wo_b.weight", (hidden, o_groups * o_lora), Role.ATTN, i, fp8=True, mtp=mtp)
        add(a + "attn_sink", (heads,), Role.ATTN, i, mtp=mtp, dtypes=F32_ONLY)
        ratio = ratios[i]
        if ratio:
            width = (2 if ratio == 4 else 1) * head_dim  # the CSA compressor overlaps two windows ([T] CSACompressor)
            compressor(a + "compressor.", i, mtp, ratio, width, head_dim, Role.ATTN)
        if ratio == 4:
            x = a + "indexer."
            add(x + "wq_b.weight", (idx_heads * idx_dim, q_lora), Role.INDEXER, i, fp8=True, mtp=mtp)
            add(x + "weights_proj.weight", (idx_heads, hidden), Role.INDEXER, i, mtp=mtp)
            compressor(x + "compressor.", i, mtp, ratio, 2 * idx_dim, idx_dim, Role.INDEXER)
        f = p + "ffn."
        add(f + "gate.weight", (n_routed, hidden), Role.ROUTER, i, mtp=mtp)
        add(f + "gate.bias", (n_routed,), Role.ROUTER_BIAS, i, mtp=mtp)  # present in hash layers too, unused there [L]
        if i < n_hash and not mtp:
            add(f + "gate.tid2eid", (vocab, top_k), Role.ROUTER, i, dtypes=INT_TABLE_DTYPES, max_value=n_routed)
        for e in range(n_routed):
            ep = f"{f}experts.{e}."
            for proj, shape in (("w1", (moe_inter, hidden)), ("w2", (hidden, moe_inter)), ("w3", (moe_inter, hidden))):
                add(f"{ep}{proj}.weight", shape, Role.EXPERT, i, fp8=experts_as != "mxfp4", mxfp4=experts_as == "mxfp4",
                    expert=e, mtp=mtp)
        if n_shared:
            sh = moe_inter * n_shared
            add(f + "shared_experts.w1.weight", (sh, hidden), Role.SHARED_EXPERT, i, fp8=True, mtp=mtp)
            add(f + "shared_experts.w2.weight", (hidden, sh), Role.SHARED_EXPERT, i, fp8=True, mtp=mtp)
            add(f + "shared_experts.w3.weight", (sh, hidden), Role.SHARED_EXPERT, i, fp8=True, mtp=mtp)

    def compressor(c: str, i: int, mtp: bool, ratio: int, width: int, norm: int, role: Role) -> None:
        add(c + "wkv.weight", (width, hidden), role, i, fp8=True, mtp=mtp)
        add(c + "wgate.weight", (width, hidden), role, i, fp8=True, mtp=mtp)
        add(c + "ape", (ratio, width), role, i, mtp=mtp, dtypes=F32_ONLY)
        add(c + "norm.weight", (norm,), Role.NORM, i, mtp=mtp)

    add("embed.weight", (vocab, hidden), Role.EMBED)
    for i in range(n_layers):
        block(f"layers.{i}.", i, False)
    add("norm.weight", (hidden,), Role.NORM)
    add("head.weight", (vocab, hidden), Role.HEAD, dtypes=None)
    hyper("hc_head_", None, False, hc, 1)
    for k in range(n_mtp):
        p, i = f"mtp.{k}.", n_layers + k
        add(p + "e_proj.weight", (hidden, hidden), Role.MTP, i, fp8=True, mtp=True)
        add(p + "h_proj.weight", (hidden, hidden), Role.MTP, i, fp8=True, mtp=True)
        add(p + "enorm.weight", (hidden,), Role.MTP, i, mtp=True)
        add(p + "hnorm.weight", (hidden,), Role.MTP, i, mtp=True)
        add(p + "norm.weight", (hidden,), Role.MTP, i, mtp=True)
        hyper(p + "hc_head_", i, True, hc, 1)
        block(p, i, True)

    spec = ArchSpec(architecture=ARCHITECTURE, config=config, tensors=out, num_layers=n_layers, num_mtp_layers=n_mtp,
                    experts_per_token=top_k, num_experts=n_routed)
    spec.scale_dtypes = frozenset({"F8_E8M0", "F32"})  # [V]: e8m0 beside MXFP4 experts, F32 in Flash-Base
    spec.release_scale_dtype = "F8_E8M0" if experts_as == "mxfp4" else "F32"
    return spec


# ------------------------------------------------------------------ planner: KV cache per attention kind
# Every V4 layer keeps a sliding window of `sliding_window` tokens of its single shared K=V head (head_dim); a CSA
# layer adds one compressed entry per 4 tokens (head_dim) and the indexer's compressed keys (index_head_dim) per 4
# tokens; an HCA layer one compressed entry per 128 tokens ([T] DeepseekV4HCACache / DeepseekV4CSACache; the V4
# paper §2.3). The partial windows a compressor holds before emitting (ratio x its width) are bounded and small.
def kv_elems_by_kind(config: dict[str, Any], tokens: int) -> dict[str, int]:
    """KV-cache elements of one sequence of `tokens` tokens, per attention kind, summed over the main layers."""
    head_dim, window, idx_dim = (int(config[k]) for k in ("head_dim", "sliding_window", "index_head_dim"))
    out = {kind: 0 for kind in ATTENTION_KINDS.values()}
    for ratio in compress_ratios(config)[: int(config["num_hidden_layers"])]:
        kind = ATTENTION_KINDS[ratio]
        elems = min(tokens, window) * head_dim
        if ratio:
            entries = tokens // ratio
            elems += entries * head_dim + (entries * idx_dim if ratio == 4 else 0)
        out[kind] += elems
    return out


def kv_elems_per_token_layer(config: dict[str, Any]) -> int:
    """Elements per token per layer that grow with the context (compressed entries and indexer keys), averaged over
    the main layers and rounded up; the sliding windows are a fixed amount per sequence (`kv_window_elems`)."""
    n = int(config["num_hidden_layers"])
    head_dim, idx_dim = int(config["head_dim"]), int(config["index_head_dim"])
    per_token = sum((head_dim + (idx_dim if r == 4 else 0)) / r for r in compress_ratios(config)[:n] if r)
    return max(1, math.ceil(per_token / n))


def kv_window_elems(config: dict[str, Any]) -> int:
    """Sliding-window elements one sequence holds whatever its length: window x head_dim in every main layer."""
    return int(config["num_hidden_layers"]) * int(config["sliding_window"]) * int(config["head_dim"])


def tp_split_dims(config: dict[str, Any]) -> dict[str, tuple[int, ...]]:
    """Widths a TP rank slices: query heads and grouped output, routed and shared expert intermediates."""
    heads, head_dim = int(config["num_attention_heads"]), int(config["head_dim"])
    moe = int(config["moe_intermediate_size"])
    return {"attn": (heads * head_dim, int(config["o_groups"]) * int(config["o_lora_rank"])),
            "expert": (moe,), "shared": (moe * int(config.get("n_shared_experts") or 1),)}


PLANNER = PlannerFacts(kv_elems_per_token_layer=kv_elems_per_token_layer, tp_split_dims=tp_split_dims)


# ------------------------------------------------------------------ GGUF: llama.cpp's `deepseek4` architecture
# [L] DeepseekV4Model._map_dsv4_tensor_name and gguf-py constants.py (MODEL_TENSOR names for DEEPSEEK4).
GGUF_ARCH = "deepseek4"
GLOBAL_NAMES: Mapping[str, str] = frozen({
    "embed.weight": "token_embd.weight", "norm.weight": "output_norm.weight", "head.weight": "output.weight",
    "hc_head_fn": "output_hc_fn.weight", "hc_head_base": "output_hc_base.weight", "hc_head_scale": "output_hc_scale.weight",
})
LAYER_NAMES: Mapping[str, str] = frozen({
    **{f"hc_{b}_{p}": f"hc_{b}_{p}.weight" for b in ("attn", "ffn") for p in ("fn", "base", "scale")},
    "attn.attn_sink": "attn_sinks.weight",
    "attn.wq_a.weight": "attn_q_a.weight", "attn.wq_b.weight": "attn_q_b.weight", "attn.q_norm.weight": "attn_q_a_norm.weight",
    "attn.wkv.weight": "attn_kv.weight", "attn.kv_norm.weight": "attn_kv_a_norm.weight",
    "attn.wo_a.weight": "attn_output_a.weight", "attn.wo_b.weight": "attn_output_b.weight",
    "attn.compressor.ape": "attn_compressor_ape.weight", "attn.compressor.wkv.weight": "attn_compressor_kv.weight",
    "attn.compressor.wgate.weight": "attn_compressor_gate.weight", "attn.compressor.norm.weight": "attn_compressor_norm.weight",
    "attn.indexer.wq_b.weight": "indexer.attn_q_b.weight", "attn.indexer.weights_proj.weight": "indexer.proj.weight",
    "attn.indexer.compressor.ape": "indexer_compressor_ape.weight",
    "attn.indexer.compressor.wkv.weight": "indexer_compressor_kv.weight",
    "attn.indexer.compressor.wgate.weight": "indexer_compressor_gate.weight",
    "attn.indexer.compressor.norm.weight": "indexer_compressor_norm.weight",
    "attn_norm.weight": "attn_norm.weight", "ffn_norm.weight": "ffn_norm.weight",
    "ffn.gate.weight": "ffn_gate_inp.weight", "ffn.gate.bias": "exp_probs_b.bias", "ffn.gate.tid2eid": "ffn_gate_tid2eid.weight",
    "ffn.shared_experts.w1.weight": "ffn_gate_shexp.weight", "ffn.shared_experts.w2.weight": "ffn_down_shexp.weight",
    "ffn.shared_experts.w3.weight": "ffn_up_shexp.weight",
})
# [L] set_gguf_parameters, in its order (the generic keys first, as TextModel writes them).
GGUF_FIELDS: tuple[GGUFField, ...] = (
    GGUFField("block_count", "num_hidden_layers", "UINT32"),
    GGUFField("context_length", "max_position_embeddings", "UINT32"),
    GGUFField("embedding_length", "hidden_size", "UINT32"),
    GGUFField("attention.head_count", "num_attention_heads", "UINT32"),
    GGUFField("attention.head_count_kv", "num_key_value_heads", "UINT32"),
    GGUFField("rope.freq_base", "rope_theta", "FLOAT32"),
    GGUFField("attention.layer_norm_rms_epsilon", "rms_norm_eps", "FLOAT32"),
    GGUFField("expert_count", "n_routed_experts", "UINT32"),
    GGUFField("expert_used_count", "num_experts_per_tok", "UINT32"),
    GGUFField("attention.key_length", "head_dim", "UINT32"),
    GGUFField("attention.value_length", "head_dim", "UINT32"),
    GGUFField("rope.dimension_count", "qk_rope_head_dim", "UINT32"),
    GGUFField("attention.q_lora_rank", "q_lora_rank", "UINT32"),
    GGUFField("attention.sliding_window", "sliding_window", "UINT32"),
    GGUFField("expert_feed_forward_length", "moe_intermediate_size", "UINT32"),
    GGUFField("expert_shared_count", "n_shared_experts", "UINT32"),
    GGUFField("expert_weights_scale", "routed_scaling_factor", "FLOAT32"),
    GGUFField("expert_weights_norm", "norm_topk_prob", "BOOL"),
    GGUFField("attention.indexer.head_count", "index_n_heads", "UINT32"),
    GGUFField("attention.indexer.key_length", "index_head_dim", "UINT32"),
    GGUFField("attention.indexer.top_k", "index_topk", "UINT32"),
    GGUFField("attention.output_group_count", "o_groups", "UINT32"),
    GGUFField("attention.output_lora_rank", "o_lora_rank", "UINT32"),
    GGUFField("attention.compress_rope_freq_base", "compress_rope_theta", "FLOAT32"),
    GGUFField("hyper_connection.count", "hc_mult", "UINT32"),
    GGUFField("hyper_connection.sinkhorn_iterations", "hc_sinkhorn_iters", "UINT32"),
    GGUFField("hyper_connection.epsilon", "hc_eps", "FLOAT32"),
    GGUFField("hash_layer_count", "num_hash_layers", "UINT32"),
)
GGUF_DERIVED: tuple[GGUFDerived, ...] = (
    # one SwiGLU clamp per block, for routed and shared experts alike ([L] add_swiglu_clamp_exp / _shexp)
    GGUFDerived("swiglu_clamp_exp", "ARRAY", lambda c: [c["swiglu_limit"]] * int(c["num_hidden_layers"]), "FLOAT32"),
    GGUFDerived("swiglu_clamp_shexp", "ARRAY", lambda c: [c["swiglu_limit"]] * int(c["num_hidden_layers"]), "FLOAT32"),
    GGUFDerived("attention.compress_ratios", "ARRAY", lambda c: list(c["compress_ratios"]), "INT32"),  # MTP entry too
    GGUFDerived("embedding_length_out", "UINT32", lambda c: int(c["hidden_size"]) * int(c["hc_mult"])),
)
# The types llama.cpp's converter gives V4 tensors whatever --outtype ([L] tensor_force_quant, generate_extra_tensors):
# hash tables I32, F32 sources and 1-D tensors F32; under MXFP4_MOE (what it writes) MXFP4 experts stay MXFP4
# (repacked), FP8 weights become Q8_0 and BF16 matrices stay BF16.
NATIVE_SCHEME = "MXFP4_MOE"
NATIVE_TYPES: Mapping[str, str] = frozen({"I8": "MXFP4", "U8": "MXFP4", "F8_E4M3": "Q8_0", "BF16": "BF16"})


def gguf_source_types(name: str, shape: tuple[int, ...], dtype: str, scheme: str) -> str | None:
    if dtype in INT_TABLE_DTYPES:
        return "I32"
    if dtype == "F32" or len(shape) <= 1:
        return "F32"
    return NATIVE_TYPES.get(dtype) if scheme == NATIVE_SCHEME else None


def hash_layer_biases(config: dict[str, Any]) -> frozenset[str]:
    """The router bias of each hash-routed layer: unused (tid2eid picks the experts); llama.cpp drops it [L]."""
    return frozenset(f"layers.{i}.ffn.gate.bias" for i in range(int(config.get("num_hash_layers") or 0)))


def _no_config_from_gguf(kv: Mapping[str, Any], tensor_names: set[str] | None = None) -> dict[str, Any]:
    raise ConfigError("reading a deepseek4 GGUF's metadata back into config.json is not supported", path="gguf", show_path="")


GGUF = GGUFMapping(
    arch=GGUF_ARCH,
    global_names=GLOBAL_NAMES,
    layer_pattern=r"^layers\.(\d+)\.(.+)$",
    layer_names=LAYER_NAMES,
    mtp_names=frozen({}),
    splits=frozen({}),
    experts=GGUFExperts(r"^ffn\.experts\.(\d+)\.(w[123])\.weight$", "ffn_{proj}_exps.weight",
                        "ffn.experts.{expert}.{proj}.weight", "n_routed_experts",
                        proj_names=frozen({"w1": "gate", "w2": "down", "w3": "up"})),
    fields=GGUF_FIELDS,
    derived=GGUF_DERIVED,
    block_count_key="num_hidden_layers",
    mtp_count_key="num_nextn_predict_layers",
    default_gating=frozen({}),
    default_gating_other="sqrtsoftplus",
    yarn_log_multiplier_factor=0.1,
    config_from_metadata=_no_config_from_gguf,
    caveats=lambda config: [],
    skipped=hash_layer_biases,
    source_types=gguf_source_types,
    mtp_refusal="llama.cpp's converter writes DeepSeek-V4's MTP layer only into a separate MTP-only file; "
                "convert without --mtp",
)


# ------------------------------------------------------------------ releases and their engine facts
# serving.md §1.6 (vllm recipes V4 guide: vLLM >= 0.20, --block-size 256, MTP 2 tokens, no MI300X; sglang docs
# deepseek-v4 parsers; llama.cpp#22319).
RELEASES: tuple[Release, ...] = (
    Release("v4", frozen({
        "vllm": ServingFacts(
            "deepseek_v4", "deepseek_v4", None, "deepseek_v4", "0.20.0", "vllm recipes: V4 needs vLLM >= 0.20",
            mtp_tokens=2, extra_args=("--block-size", "256"), unsupported_vendors=frozenset({"amd"})),
        "sglang": ServingFacts("deepseek-v4", "deepseekv4", unsupported_vendors=frozenset({"amd"})),
        "llamacpp": ServingFacts(notes=("DeepSeek-V4 GGUF support is tracked in llama.cpp#22319.",)),
    }), name_pattern=r"(?i)v4", model_types=("deepseek_v4",)),
)

# A small config.json of the family (the synthetic tiny-v4 dims): every attention kind, a hash layer, an MTP layer.
EXAMPLE: Mapping[str, Any] = frozen(dict(
    architectures=[ARCHITECTURE], model_type="deepseek_v4", hidden_size=256, num_hidden_layers=4,
    num_attention_heads=4, num_key_value_heads=1, head_dim=128, qk_rope_head_dim=32, q_lora_rank=128, o_groups=2,
    o_lora_rank=64, n_routed_experts=8, num_experts_per_tok=2, moe_intermediate_size=128, n_shared_experts=1,
    num_hash_layers=1, index_n_heads=4, index_head_dim=64, index_topk=4, sliding_window=8, hc_mult=4,
    hc_sinkhorn_iters=20, hc_eps=1e-6, compress_ratios=[0, 4, 128, 4, 0], num_nextn_predict_layers=1,
    vocab_size=1024, max_position_embeddings=4096, rms_norm_eps=1e-6, rope_theta=10000, compress_rope_theta=160000,
    routed_scaling_factor=1.5, scoring_func="sqrtsoftplus", norm_topk_prob=True, swiglu_limit=10.0,
    expert_dtype="fp4", quantization_config={"activation_scheme": "dynamic", "fmt": "e4m3", "quant_method": "fp8",
                                             "scale_fmt": "ue8m0", "weight_block_size": [128, 128]},
))

_INT4_REASON = ("no serving engine loads INT4 DeepSeek-V4 experts: vLLM's DeepseekV4FP8Config accepts expert_dtype "
                "fp4 (MXFP4) or fp8 only (vllm model_executor/models/deepseek_v4.py); use --to bf16, or --to gguf "
                "for llama.cpp on GPUs without FP4")

FAMILY = register(Family(
    name="deepseek_v4",
    architectures=(ARCHITECTURE,),
    inventory=deepseek_v4_spec,
    example=EXAMPLE,
    planner=PLANNER,
    releases=RELEASES,
    gguf=GGUF,
    refusals=frozen({"int4": _INT4_REASON}),
))

# Released configurations: the architecture fields of deepseek-ai/DeepSeek-V4-Flash(-Base) and -Pro config.json as
# quoted in public engine tests (Flash-Base in rtp-llm's V4 config test; Pro: hidden 7168, 61 layers, 128 heads,
# q_lora_rank 1536, o_groups 16, index_topk 1024, 384 experts of 3072, compress_ratios 128,128,4,128,...), and [T]'s
# docstrings for the grouped output of both. The catalog and the parameter-count tests read these.
FLASH_DIMS: Mapping[str, Any] = frozen(dict(
    EXAMPLE, hidden_size=4096, num_hidden_layers=43, num_attention_heads=64, head_dim=512, qk_rope_head_dim=64,
    q_lora_rank=1024, o_groups=8, o_lora_rank=1024, n_routed_experts=256, num_experts_per_tok=6,
    moe_intermediate_size=2048, n_shared_experts=1, num_hash_layers=3, index_n_heads=64, index_head_dim=128,
    index_topk=512, sliding_window=128, hc_mult=4, vocab_size=129280, max_position_embeddings=1048576,
    compress_ratios=[0, 0] + [4, 128] * 20 + [4, 0],
    rope_scaling={"beta_fast": 32, "beta_slow": 1, "factor": 16, "original_max_position_embeddings": 65536,
                  "type": "yarn"},
))
PRO_DIMS: Mapping[str, Any] = frozen(dict(
    FLASH_DIMS, hidden_size=7168, num_hidden_layers=61, num_attention_heads=128, q_lora_rank=1536, o_groups=16,
    n_routed_experts=384, moe_intermediate_size=3072, index_topk=1024, routed_scaling_factor=2.5,
    compress_ratios=[128, 128] + [4, 128] * 29 + [4, 0],
))
# V4-Flash-Base: V4-Flash's dims with block-FP8 experts and F32 scales ([V] DeepseekV4FP8Config).
FLASH_BASE_DIMS: Mapping[str, Any] = frozen(dict(
    FLASH_DIMS, expert_dtype="fp8", quantization_config={"activation_scheme": "dynamic", "fmt": "e4m3",
                                                         "quant_method": "fp8", "weight_block_size": [128, 128]}))
