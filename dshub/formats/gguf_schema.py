"""The GGUF spec as data: metadata value types, and the value type each known key must have.

The key table follows what llama.cpp writes (gguf-py's `GGUFWriter.add_*` and `llama-gguf-split`) and what its loader
accepts: `llama_model_loader::get_key` refuses a key whose type differs from the C++ field's (a u32 field needs
UINT32), `get_key_or_arr` also takes an INT32/UINT32 array, and `gguf_init` needs `general.alignment` as a UINT32
power of two. Keys named here are checked before any value is used; unknown keys are passed through unchecked.
Architecture keys are written as suffixes of `<general.architecture>.`.
"""
from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum
from typing import Any, Callable, Mapping

LLAMA_MAX_LAYERS = 512  # llama-hparams.h: the loader's per-layer arrays have this many slots
LLAMA_MAX_EXPERTS = 512  # llama-hparams.cpp ("Qwen3 Next"); the loader asserts n_expert <= it. Also bounds the
# per-expert tensor inventory verify builds from the metadata.


class VT(IntEnum):
    """GGUF metadata value types."""

    UINT8 = 0
    INT8 = 1
    UINT16 = 2
    INT16 = 3
    UINT32 = 4
    INT32 = 5
    FLOAT32 = 6
    BOOL = 7
    STRING = 8
    ARRAY = 9
    UINT64 = 10
    INT64 = 11
    FLOAT64 = 12


SCALAR_FORMAT: dict[VT, str] = {
    VT.UINT8: "B", VT.INT8: "b", VT.UINT16: "H", VT.INT16: "h", VT.UINT32: "I", VT.INT32: "i",
    VT.FLOAT32: "f", VT.BOOL: "?", VT.UINT64: "Q", VT.INT64: "q", VT.FLOAT64: "d",
}


@dataclass(frozen=True)
class KeySpec:
    """The value types a key may have; `elements`: the element types when it is an ARRAY; `rule`: a value check."""

    types: frozenset[VT]
    elements: frozenset[VT] = frozenset()
    rule: tuple[Callable[[Any], bool], str] | None = None


def _power_of_two(v: int) -> bool:
    return v > 0 and v & (v - 1) == 0


STRING = KeySpec(frozenset({VT.STRING}))
U32 = KeySpec(frozenset({VT.UINT32}))
F32 = KeySpec(frozenset({VT.FLOAT32}))
BOOL = KeySpec(frozenset({VT.BOOL}))
U32_OR_ARRAY = KeySpec(frozenset({VT.UINT32, VT.ARRAY}), frozenset({VT.UINT32, VT.INT32}))  # get_key_or_arr
STRINGS = KeySpec(frozenset({VT.ARRAY}), frozenset({VT.STRING}))

# Whole keys.
KEYS: Mapping[str, KeySpec] = {
    "general.architecture": STRING,
    "general.type": STRING,
    "general.name": STRING,
    "general.basename": STRING,
    "general.size_label": STRING,
    "general.file_type": U32,
    "general.quantization_version": U32,
    "general.alignment": KeySpec(frozenset({VT.UINT32}), rule=(_power_of_two, "a power of two > 0")),
    "general.sampling.top_k": KeySpec(frozenset({VT.INT32})),
    "general.sampling.top_p": F32,
    "general.sampling.temp": F32,
    "split.no": KeySpec(frozenset({VT.UINT16})),
    "split.count": KeySpec(frozenset({VT.UINT16}), rule=(lambda v: v >= 1, ">= 1")),
    "split.tensors.count": KeySpec(frozenset({VT.INT32}), rule=(lambda v: v >= 0, ">= 0")),
    "tokenizer.ggml.model": STRING,
    "tokenizer.ggml.pre": STRING,
    "tokenizer.ggml.tokens": STRINGS,
    "tokenizer.ggml.merges": STRINGS,
    "tokenizer.ggml.token_type": KeySpec(frozenset({VT.ARRAY}), frozenset({VT.INT32, VT.UINT32})),
    "tokenizer.ggml.scores": KeySpec(frozenset({VT.ARRAY}), frozenset({VT.FLOAT32})),
    "tokenizer.ggml.bos_token_id": U32,
    "tokenizer.ggml.eos_token_id": U32,
    "tokenizer.ggml.unknown_token_id": U32,
    "tokenizer.ggml.padding_token_id": U32,
    "tokenizer.ggml.seperator_token_id": U32,  # sic: llama.cpp's spelling
    "tokenizer.ggml.mask_token_id": U32,
    "tokenizer.ggml.eot_token_id": U32,
    "tokenizer.ggml.eom_token_id": U32,
    "tokenizer.ggml.add_bos_token": BOOL,
    "tokenizer.ggml.add_eos_token": BOOL,
    "tokenizer.ggml.add_sep_token": BOOL,
    "tokenizer.ggml.add_space_prefix": BOOL,
    "tokenizer.chat_template": STRING,
}

# Keys after `<arch>.`.
ARCH_KEYS: Mapping[str, KeySpec] = {
    "vocab_size": U32,
    "context_length": U32,
    "embedding_length": U32,
    "feed_forward_length": U32_OR_ARRAY,
    "block_count": KeySpec(frozenset({VT.UINT32}), rule=(lambda v: 1 <= v <= LLAMA_MAX_LAYERS, f"1..{LLAMA_MAX_LAYERS}")),
    "leading_dense_block_count": U32,
    "expert_feed_forward_length": U32,
    "expert_shared_feed_forward_length": U32,
    "expert_count": KeySpec(frozenset({VT.UINT32}), rule=(lambda v: v <= LLAMA_MAX_EXPERTS, f"<= {LLAMA_MAX_EXPERTS}")),
    "expert_used_count": U32,
    "expert_shared_count": U32,
    "expert_group_count": U32,
    "expert_group_used_count": U32,
    "expert_weights_scale": F32,
    "expert_weights_norm": BOOL,
    "expert_gating_func": U32,
    "nextn_predict_layers": U32,
    "attention.head_count": U32_OR_ARRAY,
    "attention.head_count_kv": U32_OR_ARRAY,
    "attention.key_length": U32,
    "attention.value_length": U32,
    "attention.key_length_mla": U32,
    "attention.value_length_mla": U32,
    "attention.q_lora_rank": U32,
    "attention.kv_lora_rank": U32,
    "attention.layer_norm_epsilon": F32,
    "attention.layer_norm_rms_epsilon": F32,
    "rope.dimension_count": U32,
    "rope.freq_base": F32,
    "rope.scaling.type": STRING,
    "rope.scaling.factor": F32,
    "rope.scaling.original_context_length": U32,
    "rope.scaling.finetuned": BOOL,
    "rope.scaling.yarn_log_multiplier": F32,
    "rope.scaling.yarn_beta_fast": F32,
    "rope.scaling.yarn_beta_slow": F32,
}


def _names(types: frozenset[VT]) -> str:
    return " or ".join(sorted(t.name for t in types))


def key_spec(key: str, arch: str | None) -> KeySpec | None:
    """The spec of `key`, or None for a key the table does not know."""
    if key in KEYS:
        return KEYS[key]
    if arch and key.startswith(f"{arch}."):
        return ARCH_KEYS.get(key[len(arch) + 1:])
    return None


def key_problem(key: str, vtype: VT, sub: VT | None, value: Any, arch: str | None) -> str | None:
    """Why `key`'s stored type or value breaks the spec (None when it does not, or the key is unknown)."""
    spec = key_spec(key, arch)
    if spec is None:
        return None
    if vtype not in spec.types:
        return f"metadata {key} is {vtype.name}, the spec says {_names(spec.types)}"
    if vtype is VT.ARRAY and sub not in spec.elements:
        return f"metadata {key} is an ARRAY of {sub.name if sub is not None else '?'}, the spec says ARRAY of {_names(spec.elements)}"
    if spec.rule is not None and vtype is not VT.ARRAY and not spec.rule[0](value):
        return f"metadata {key} is {value!r}, the spec says {spec.rule[1]}"
    return None


def metadata_problems(kv: Mapping[str, Any], kv_types: Mapping[str, VT], kv_subtypes: Mapping[str, VT]) -> list[str]:
    """Every known key whose type or value breaks the spec, in file order."""
    arch = kv.get("general.architecture") if kv_types.get("general.architecture") is VT.STRING else None
    found = (key_problem(k, kv_types[k], kv_subtypes.get(k), kv[k], arch) for k in kv)
    return [p for p in found if p]
