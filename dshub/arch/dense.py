"""What the dense decoder families share (Qwen2, Llama: the DeepSeek-R1 distills): inventory, GGUF tables, planner.

A dense decoder layer is RMSNorm -> GQA attention (q/k/v/o projections, optional q/k/v biases) -> RMSNorm -> SwiGLU
MLP (gate/up/down). Names and shapes: transformers' `modeling_qwen2.py` / `modeling_llama.py`; GGUF names and keys:
llama.cpp's `conversion/llama.py`, `conversion/qwen.py` and `conversion/base.py` (TextModel.set_gguf_parameters).
The family modules `qwen2.py` and `llama.py` register one `Family` each from these pieces.
"""
from __future__ import annotations

import math
from typing import Any, Mapping

from dshub.arch.family import (
    DENSE_INT4_SCOPES, DecoderFacts, Family, GGUFDerived, GGUFField, GGUFMapping, GGUFPart, Int4Scopes, PlannerFacts, Release,
    ServingFacts, frozen, register,
)
from dshub.arch.spec import ArchSpec, Role, TensorSpec, require
from dshub.errors import ConfigError

PROJ = ("q", "k", "v", "o")


def head_dim(config: dict[str, Any]) -> int:
    """Per-head width: config's head_dim, else hidden_size / num_attention_heads (transformers' default)."""
    return int(config.get("head_dim") or int(config["hidden_size"]) // int(config["num_attention_heads"]))


def kv_heads(config: dict[str, Any]) -> int:
    return int(config.get("num_key_value_heads") or config["num_attention_heads"])


def tied(config: dict[str, Any]) -> bool:
    """lm_head shares embed_tokens (no lm_head.weight stored)."""
    return bool(config.get("tie_word_embeddings"))


def dense_spec(config: dict[str, Any], biases: tuple[str, ...] = ()) -> ArchSpec:
    """Every tensor of a dense decoder checkpoint in canonical order; `biases`: projections (q/k/v/o) with a bias."""
    hidden, n_layers, heads, vocab, inter = require(
        config, "hidden_size", "num_hidden_layers", "num_attention_heads", "vocab_size", "intermediate_size")
    hd, kvh = head_dim(config), kv_heads(config)
    if heads % kvh:
        raise ConfigError(f"num_attention_heads {heads} is not a multiple of num_key_value_heads {kvh}", path="config.json")
    out_dim = {"q": heads * hd, "k": kvh * hd, "v": kvh * hd, "o": hidden}
    in_dim = {"q": hidden, "k": hidden, "v": hidden, "o": heads * hd}
    out: list[TensorSpec] = []

    def add(name: str, shape: tuple[int, ...], role: Role, layer: int | None = None, linear: bool = False) -> None:
        out.append(TensorSpec(name, tuple(int(d) for d in shape), role, layer, None, linear, False))

    add("model.embed_tokens.weight", (vocab, hidden), Role.EMBED)
    for i in range(n_layers):
        p = f"model.layers.{i}."
        add(p + "input_layernorm.weight", (hidden,), Role.NORM, i)
        for x in PROJ:
            add(f"{p}self_attn.{x}_proj.weight", (out_dim[x], in_dim[x]), Role.ATTN, i, linear=True)
            if x in biases:
                add(f"{p}self_attn.{x}_proj.bias", (out_dim[x],), Role.ATTN, i)
        add(p + "post_attention_layernorm.weight", (hidden,), Role.NORM, i)
        add(p + "mlp.gate_proj.weight", (inter, hidden), Role.DENSE_MLP, i, linear=True)
        add(p + "mlp.up_proj.weight", (inter, hidden), Role.DENSE_MLP, i, linear=True)
        add(p + "mlp.down_proj.weight", (hidden, inter), Role.DENSE_MLP, i, linear=True)
    add("model.norm.weight", (hidden,), Role.NORM)
    if not tied(config):
        add("lm_head.weight", (vocab, hidden), Role.HEAD, linear=True)
    return ArchSpec(architecture=(config.get("architectures") or ["?"])[0], config=config, tensors=out, num_layers=n_layers)


# ------------------------------------------------------------------ planner
def gqa_kv_elems(config: dict[str, Any]) -> int:
    """GQA caches one key and one value per KV head: 2 x num_key_value_heads x head_dim per token and layer."""
    return 2 * kv_heads(config) * head_dim(config)


def tp_split_dims(config: dict[str, Any]) -> dict[str, tuple[int, ...]]:
    """Widths a TP rank slices: query and KV heads, the MLP intermediate."""
    hd = head_dim(config)
    return {"attn": (int(config["num_attention_heads"]) * hd, kv_heads(config) * hd), "dense": (int(config["intermediate_size"]),)}


PLANNER = PlannerFacts(kv_elems_per_token_layer=gqa_kv_elems, tp_split_dims=tp_split_dims)
# Every linear layer but lm_head by default: the distills have no experts (issue 15).
INT4 = Int4Scopes(scopes=DENSE_INT4_SCOPES, default="all-linear")


def rope_inv_freq(config: dict[str, Any]) -> list[float]:
    """Rotary inverse frequencies `theta^(-2i/d)`, divided by llama3's per-frequency factors when the config scales
    rope that way (transformers `_compute_default_rope_parameters` / `_compute_llama3_parameters`)."""
    base, dim = float(config.get("rope_theta", 10000.0)), head_dim(config)
    plain = [1.0 / base ** (i / dim) for i in range(0, dim, 2)]
    kind = rope_kind(config)
    if kind in (None, "default"):
        return plain
    if kind != "llama3":
        raise ConfigError(f"rope_scaling type {kind!r} is not supported (default or llama3)", path="config.json")
    return [f / s for f, s in zip(plain, llama3_rope_factors(config))]


DECODER = DecoderFacts(head_dim=head_dim, kv_heads=kv_heads, rope_inv_freq=rope_inv_freq, tied_embeddings=tied)


# ------------------------------------------------------------------ releases: the R1 distills
# vLLM's reasoning docs list the R1 series (distills included) under `deepseek_r1`; SGLang's reasoning parser docs
# under `deepseek-r1`; the distills have no tool-call format. llama.cpp reads the chat template from the GGUF.
def distill_engines() -> Mapping[str, ServingFacts]:
    return frozen({"vllm": ServingFacts(reasoning_parser="deepseek_r1"),
                   "sglang": ServingFacts(reasoning_parser="deepseek-r1"), "llamacpp": ServingFacts()})


# ------------------------------------------------------------------ GGUF (llama.cpp `llama` / `qwen2`)
GLOBAL_NAMES: Mapping[str, str] = frozen({
    "model.embed_tokens.weight": "token_embd.weight",
    "model.norm.weight": "output_norm.weight",
    "lm_head.weight": "output.weight",
})
LAYER_NAMES: Mapping[str, str] = frozen({
    "input_layernorm.weight": "attn_norm.weight",
    **{f"self_attn.{x}_proj.{kind}": f"attn_{'output' if x == 'o' else x}.{kind}" for x in PROJ for kind in ("weight", "bias")},
    "post_attention_layernorm.weight": "ffn_norm.weight",
    "mlp.gate_proj.weight": "ffn_gate.weight",
    "mlp.up_proj.weight": "ffn_up.weight",
    "mlp.down_proj.weight": "ffn_down.weight",
})
# TextModel.set_gguf_parameters (+ LlamaModel: vocab_size, rope.dimension_count), in its order.
FIELDS: tuple[GGUFField, ...] = (
    GGUFField("vocab_size", "vocab_size", "UINT32"),
    GGUFField("block_count", "num_hidden_layers", "UINT32"),
    GGUFField("context_length", "max_position_embeddings", "UINT32"),
    GGUFField("embedding_length", "hidden_size", "UINT32"),
    GGUFField("feed_forward_length", "intermediate_size", "UINT32"),
    GGUFField("attention.head_count", "num_attention_heads", "UINT32"),
    GGUFField("rope.freq_base", "rope_theta", "FLOAT32", required=False),
    GGUFField("attention.layer_norm_rms_epsilon", "rms_norm_eps", "FLOAT32"),
)
DERIVED: tuple[GGUFDerived, ...] = (
    GGUFDerived("attention.head_count_kv", "UINT32", kv_heads),
    GGUFDerived("rope.dimension_count", "UINT32", head_dim),
)
ROPE_FREQS = "rope_freqs.weight"


def rope_scaling(config: dict[str, Any]) -> dict[str, Any]:
    return config.get("rope_scaling") or {}


def rope_kind(config: dict[str, Any]) -> str | None:
    rs = rope_scaling(config)
    return rs.get("rope_type") or rs.get("type")


def llama3_rope_factors(config: dict[str, Any]) -> list[float]:
    """llama3 rope scaling as per-frequency divisors (llama.cpp's `rope_freqs.weight`; LlamaModel.generate_extra_tensors,
    the same numbers as transformers' `_compute_llama3_parameters`): 1 above the high-frequency band, `factor` below the
    low one, a smooth blend between."""
    rs = rope_scaling(config)
    base, dim = float(config.get("rope_theta", 10000.0)), head_dim(config)
    factor, low, high = float(rs.get("factor", 8.0)), float(rs.get("low_freq_factor", 1.0)), float(rs.get("high_freq_factor", 4.0))
    old = float(rs.get("original_max_position_embeddings", 8192))
    out = []
    for i in range(0, dim, 2):
        wavelen = 2 * math.pi * base ** (i / dim)
        if wavelen < old / high:
            out.append(1.0)
        elif wavelen > old / low:
            out.append(factor)
        else:
            smooth = (old / wavelen - low) / (high - low)
            out.append(1 / ((1 - smooth) / factor + smooth))
    return out


def generated(config: dict[str, Any]) -> tuple[GGUFPart, ...]:
    """llama3 rope scaling travels as a tensor (`rope_freqs.weight`, F32 [head_dim / 2]), not as metadata keys."""
    return (GGUFPart(ROPE_FREQS, (head_dim(config) // 2,), "rope_freqs", (0, 0, 0)),) if rope_kind(config) == "llama3" else ()


def rope_permute_parts(name: str, heads_key: str) -> Any:
    """q/k as llama.cpp's `llama` architecture runs them: rows of each head reordered from HF's half-split rotary
    layout to interleaved pairs (LlamaModel.permute)."""
    def parts(config: dict[str, Any]) -> tuple[GGUFPart, ...]:
        n = kv_heads(config) if heads_key == "kv" else int(config["num_attention_heads"])
        hd = head_dim(config)
        return (GGUFPart(name, (n * hd, int(config["hidden_size"])), "rope_permute", (n, hd, 0)),)
    return parts


def config_from_metadata(arch: str, hf_arch: str, model_type: str) -> Any:
    """A GGUF's metadata -> the config.json fields its tensor table needs."""
    def build(kv: Mapping[str, Any], tensor_names: set[str] | None = None) -> dict[str, Any]:
        cfg: dict[str, Any] = {"architectures": [hf_arch], "model_type": model_type}
        for f in (*FIELDS, GGUFField("num_key_value_heads", "num_key_value_heads", "UINT32")):
            key = f"{arch}.{f.suffix}" if f.suffix != "num_key_value_heads" else f"{arch}.attention.head_count_kv"
            if key in kv:
                cfg[f.config_key] = kv[key]
            elif f.required and f.config_key != "vocab_size":
                raise ConfigError(f"GGUF metadata lacks {key}", path="gguf", show_path="")
        cfg.setdefault("vocab_size", len(kv.get("tokenizer.ggml.tokens") or []))
        cfg["tie_word_embeddings"] = tensor_names is not None and "output.weight" not in tensor_names
        if tensor_names is not None and ROPE_FREQS in tensor_names:  # llama3 scaling travels as that tensor alone
            cfg["rope_scaling"] = {"rope_type": "llama3"}  # its factors are in the tensor, not the metadata
        return cfg
    return build


def gguf_mapping(arch: str, hf_arch: str, model_type: str, permute_qk: bool) -> GGUFMapping:
    """The llama.cpp mapping of a dense family; `permute_qk` for architectures running interleaved rotary pairs."""
    splits = {}
    if permute_qk:
        splits = {"self_attn.q_proj.weight": rope_permute_parts("attn_q.weight", "q"),
                  "self_attn.k_proj.weight": rope_permute_parts("attn_k.weight", "kv")}
    return GGUFMapping(
        arch=arch, global_names=GLOBAL_NAMES, layer_pattern=r"^model\.layers\.(\d+)\.(.+)$", layer_names=LAYER_NAMES,
        mtp_names=frozen({}), splits=frozen(splits), experts=None, fields=FIELDS, derived=DERIVED,
        block_count_key="num_hidden_layers", mtp_count_key="num_nextn_predict_layers", default_gating=frozen({}),
        default_gating_other="softmax", yarn_log_multiplier_factor=1.0,
        config_from_metadata=config_from_metadata(arch, hf_arch, model_type), caveats=lambda config: [],
        generated=generated, generated_values=lambda kind, config: llama3_rope_factors(config),
    )


def register_dense(name: str, hf_arch: str, model_type: str, inventory: Any, example: Mapping[str, Any], release: str,
                   name_pattern: str, permute_qk: bool) -> Family:
    """Register one dense family: its own inventory and example, the shared planner / INT4 / decoder facts, llama.cpp
    architecture `model_type`, and its R1-distill release."""
    return register(Family(
        name=name, architectures=(hf_arch,), inventory=inventory, example=example, planner=PLANNER,
        releases=(Release(release, distill_engines(), name_pattern=name_pattern, model_types=(model_type,)),),
        gguf=gguf_mapping(model_type, hf_arch, model_type, permute_qk=permute_qk), int4=INT4, decoder=DECODER,
    ))
