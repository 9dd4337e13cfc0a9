"""config.json -> `deepseek2` GGUF metadata, as current llama.cpp's loader reads it (facts: shared/reference/gguf-deepseek.md)."""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Callable

from dshub.errors import ConfigError
from dshub.formats.gguf_file import KV, VT
from dshub.quant.gguf.types import FILE_TYPES, QUANTIZATION_VERSION

ARCH = "deepseek2"


@dataclass(frozen=True)
class Field:
    """One `deepseek2.<suffix>` key copied from a config.json field."""

    suffix: str
    config_key: str
    vtype: VT
    required: bool = True


# Copied fields, in the order llama.cpp's converter writes them. q_lora_rank is null for V2-Lite: then omitted.
FIELDS: tuple[Field, ...] = (
    Field("vocab_size", "vocab_size", VT.UINT32),
    Field("context_length", "max_position_embeddings", VT.UINT32),
    Field("embedding_length", "hidden_size", VT.UINT32),
    Field("feed_forward_length", "intermediate_size", VT.UINT32),
    Field("block_count", "num_hidden_layers", VT.UINT32),
    Field("attention.head_count", "num_attention_heads", VT.UINT32),
    Field("attention.layer_norm_rms_epsilon", "rms_norm_eps", VT.FLOAT32),
    Field("rope.freq_base", "rope_theta", VT.FLOAT32),
    Field("leading_dense_block_count", "first_k_dense_replace", VT.UINT32),
    Field("attention.q_lora_rank", "q_lora_rank", VT.UINT32, required=False),
    Field("attention.kv_lora_rank", "kv_lora_rank", VT.UINT32),
    Field("expert_feed_forward_length", "moe_intermediate_size", VT.UINT32),
    Field("expert_count", "n_routed_experts", VT.UINT32),
    Field("expert_shared_count", "n_shared_experts", VT.UINT32),
    Field("expert_used_count", "num_experts_per_tok", VT.UINT32),
    Field("expert_weights_scale", "routed_scaling_factor", VT.FLOAT32),
    Field("expert_weights_norm", "norm_topk_prob", VT.BOOL, required=False),
    Field("expert_group_count", "n_group", VT.UINT32, required=False),
    Field("expert_group_used_count", "topk_group", VT.UINT32, required=False),
    Field("rope.dimension_count", "qk_rope_head_dim", VT.UINT32),
)

# Derived MLA keys: the `*_mla` lengths are what make llama.cpp run MLA; the plain ones describe the MQA view.
DERIVED: tuple[tuple[str, VT, Callable[[dict[str, Any]], Any]], ...] = (
    ("attention.head_count_kv", VT.UINT32, lambda c: 1),
    ("attention.key_length", VT.UINT32, lambda c: c["kv_lora_rank"] + c["qk_rope_head_dim"]),
    ("attention.value_length", VT.UINT32, lambda c: c["kv_lora_rank"]),
    ("attention.key_length_mla", VT.UINT32, lambda c: c["qk_nope_head_dim"] + c["qk_rope_head_dim"]),
    ("attention.value_length_mla", VT.UINT32, lambda c: c["v_head_dim"]),
)

GATING_FUNCS: dict[str, int] = {"softmax": 1, "sigmoid": 2}  # llama_expert_gating_func_type
# Gating when config.json has no `scoring_func` (transformers 5 stopped writing it): V3-family models always use sigmoid.
DEFAULT_GATING: dict[str, str] = {"DeepseekV2ForCausalLM": "softmax"}
DEFAULT_GATING_OTHER = "sigmoid"

# rope_scaling fields -> `deepseek2.rope.scaling.*`
YARN_FIELDS: tuple[tuple[str, str, VT], ...] = (
    ("factor", "factor", VT.FLOAT32),
    ("original_context_length", "original_max_position_embeddings", VT.UINT32),
    ("yarn_beta_fast", "beta_fast", VT.FLOAT32),
    ("yarn_beta_slow", "beta_slow", VT.FLOAT32),
)
# llama.cpp divides yarn_log_multiplier by 0.1 when loading deepseek2 (PR #17945), so the file holds 0.1 * mscale_all_dim.
YARN_LOG_MUL_FACTOR = 0.1


def gating_func(config: dict[str, Any]) -> int:
    """The expert gating function code: config's scoring_func, else the architecture's default."""
    arch = (config.get("architectures") or [""])[0]
    name = config.get("scoring_func") or DEFAULT_GATING.get(arch, DEFAULT_GATING_OTHER)
    if name not in GATING_FUNCS:
        raise ConfigError(f"config.json: scoring_func {name!r} is not supported; known: {', '.join(GATING_FUNCS)}", path="config.json")
    return GATING_FUNCS[name]


def _key(suffix: str) -> str:
    return f"{ARCH}.{suffix}"


def _cast(vtype: VT, v: Any) -> Any:
    return float(v) if vtype is VT.FLOAT32 else bool(v) if vtype is VT.BOOL else int(v)


def arch_kvs(config: dict[str, Any], mtp: bool = False) -> list[KV]:
    """The `deepseek2.*` keys for a DeepSeek-V2/V3-family config.json (with `mtp`, counting the next-n layers too)."""
    out: list[KV] = []
    n_mtp = int(config.get("num_nextn_predict_layers") or 0) if mtp else 0
    for f in FIELDS:
        v = config.get(f.config_key)
        if f.config_key == "num_hidden_layers" and v is not None:
            v = int(v) + n_mtp
        if v is None:
            if f.required:
                raise ConfigError(f"config.json: {f.config_key} is required for GGUF key {_key(f.suffix)}", path="config.json")
            continue
        out.append(KV(_key(f.suffix), f.vtype, _cast(f.vtype, v)))
    for suffix, vtype, fn in DERIVED:
        try:
            out.append(KV(_key(suffix), vtype, _cast(vtype, fn(config))))
        except KeyError as e:
            raise ConfigError(f"config.json: {e.args[0]} is required for GGUF key {_key(suffix)}", path="config.json") from None
    out.append(KV(_key("expert_gating_func"), VT.UINT32, gating_func(config)))
    if n_mtp:
        out.append(KV(_key("nextn_predict_layers"), VT.UINT32, n_mtp))
    out.extend(rope_scaling_kvs(config))
    return out


def rope_scaling_kvs(config: dict[str, Any]) -> list[KV]:
    rs = config.get("rope_scaling") or {}
    kind = rs.get("type") or rs.get("rope_type")
    if not rs or kind in (None, "default"):
        return []
    if kind != "yarn":
        raise ConfigError(f"config.json: rope_scaling type {kind!r} is not supported for deepseek2 (only yarn)", path="config.json")
    out = [KV(_key("rope.scaling.type"), VT.STRING, "yarn")]
    for suffix, field, vtype in YARN_FIELDS:
        if rs.get(field) is not None:
            out.append(KV(_key(f"rope.scaling.{suffix}"), vtype, _cast(vtype, rs[field])))
    if rs.get("mscale_all_dim"):
        out.append(KV(_key("rope.scaling.yarn_log_multiplier"), VT.FLOAT32, YARN_LOG_MUL_FACTOR * float(rs["mscale_all_dim"])))
    return out


# generation_config.json -> default sampling settings llama.cpp reads
SAMPLING_FIELDS: tuple[tuple[str, str, VT], ...] = (
    ("top_k", "general.sampling.top_k", VT.INT32),
    ("top_p", "general.sampling.top_p", VT.FLOAT32),
    ("temperature", "general.sampling.temp", VT.FLOAT32),
)


# (threshold, multiplier, suffix) for parameter counts, as llama.cpp's naming convention rounds them
COUNT_SCALES: tuple[tuple[float, float, str], ...] = ((1e12, 1e-12, "T"), (1e9, 1e-9, "B"), (1e6, 1e-6, "M"), (float("-inf"), 1e-3, "K"))


def rounded_count(n: int, min_digits: int = 2) -> str:
    """A parameter count as llama.cpp names it: 2.4M, 20B, 671B (at least `min_digits` significant digits)."""
    scale, suffix = next((m, sfx) for limit, m, sfx in COUNT_SCALES if n > limit)
    v = n * scale
    return f"{v:.{max(min_digits - len(str(round(v)).lstrip('0')), 0)}f}{suffix}"


def size_label(tensors: list[tuple[str, tuple[int, ...]]]) -> str:
    """general.size_label: `<experts>x<params per expert path>` for MoE models (e.g. 256x20B), else the total."""
    experts = [s for n, s in tensors if "_exps." in n and len(s) == 3]
    total = sum(math.prod(s) for _, s in tensors)
    if not experts:
        return rounded_count(total)
    per_expert = sum(math.prod(s) // s[0] for s in experts)
    shared = total - sum(math.prod(s) for s in experts)
    return f"{sum(s[0] for s in experts) // len(experts)}x{rounded_count(shared + per_expert)}"


def general_kvs(name: str, file_type: str | int, generation_config: dict[str, Any] | None = None,
                size: str | None = None) -> list[KV]:
    """general.* keys (general.architecture first, as llama.cpp writes it), with size label and sampling defaults."""
    ftype = FILE_TYPES[file_type] if isinstance(file_type, str) else file_type
    out = [
        KV("general.architecture", VT.STRING, ARCH),
        KV("general.type", VT.STRING, "model"),
        KV("general.name", VT.STRING, name),
        *([KV("general.size_label", VT.STRING, size)] if size else []),
        KV("general.file_type", VT.UINT32, ftype),
        KV("general.quantization_version", VT.UINT32, QUANTIZATION_VERSION),
    ]
    gen = generation_config or {}
    out += [KV(key, vt, _cast(vt, gen[f])) for f, key, vt in SAMPLING_FIELDS if isinstance(gen.get(f), (int, float))]
    return out


def config_from_gguf(kv: dict[str, Any], tensor_names: set[str] | None = None) -> dict[str, Any]:
    """The config.json fields a `deepseek2` GGUF's metadata implies (enough for the architecture's tensor table)."""
    cfg: dict[str, Any] = {"architectures": ["DeepseekV3ForCausalLM"], "num_nextn_predict_layers": 0, "moe_layer_freq": 1}
    for f in FIELDS:
        if _key(f.suffix) in kv:
            cfg[f.config_key] = kv[_key(f.suffix)]
        elif f.required and f.config_key not in ("vocab_size",):
            raise ConfigError(f"GGUF metadata lacks {_key(f.suffix)}", path="gguf")
    for need in ("attention.key_length_mla", "attention.value_length_mla"):
        if _key(need) not in kv:
            raise ConfigError(f"GGUF metadata lacks {_key(need)} (a pre-MLA deepseek2 file)", path="gguf")
    cfg["num_nextn_predict_layers"] = int(kv.get(_key("nextn_predict_layers"), 0))
    cfg["num_hidden_layers"] -= cfg["num_nextn_predict_layers"]
    cfg["qk_nope_head_dim"] = kv[_key("attention.key_length_mla")] - cfg["qk_rope_head_dim"]
    cfg["v_head_dim"] = kv[_key("attention.value_length_mla")]
    cfg.setdefault("vocab_size", len(kv.get("tokenizer.ggml.tokens") or []))
    cfg.setdefault("q_lora_rank", None)
    if tensor_names is None or any(n.endswith("exp_probs_b.bias") for n in tensor_names):
        cfg["topk_method"] = "noaux_tc"
    return cfg


# llama.cpp's deepseek2 loader treats a model as "lite" (no q_lora_rank: q_proj instead of q_a/q_b) by its layer count.
LITE_LAYER_COUNTS = (26, 27)


def llama_cpp_caveats(config: dict[str, Any]) -> list[str]:
    """Why current llama.cpp may refuse or mis-run a GGUF made from this config (empty when none known)."""
    out = []
    n = config.get("num_hidden_layers")
    if config.get("q_lora_rank") is None and n not in LITE_LAYER_COUNTS:
        out.append(f"q_lora_rank is null but num_hidden_layers is {n}: llama.cpp recognizes q_lora_rank-free models "
                   f"(V2-Lite) only by {' or '.join(map(str, LITE_LAYER_COUNTS))} layers and will fail to load this file")
    return out
