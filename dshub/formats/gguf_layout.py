"""The `deepseek2` GGUF tensor layout: HF tensor -> GGUF name, numpy shape and source, as llama.cpp's loader expects it.

kv_b_proj becomes attn_k_b (transposed) and attn_v_b; routed experts are stacked into 3-D `*_exps` tensors (expert
index slowest). MTP (next-n) layers are left out unless asked for: then each becomes a full `blk.N` block plus its
`blk.N.nextn.*` extras (llama.cpp with next-n support; older builds reject them). Converters and `dshub verify` share it.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from dshub.arch import spec_for
from dshub.errors import UnsupportedArchitecture

GLOBAL_NAMES: dict[str, str] = {
    "model.embed_tokens.weight": "token_embd.weight",
    "model.norm.weight": "output_norm.weight",
    "lm_head.weight": "output.weight",
}
# After `model.layers.{i}.` -> after `blk.{i}.`
LAYER_NAMES: dict[str, str] = {
    "input_layernorm.weight": "attn_norm.weight",
    "self_attn.q_proj.weight": "attn_q.weight",
    "self_attn.q_a_proj.weight": "attn_q_a.weight",
    "self_attn.q_a_layernorm.weight": "attn_q_a_norm.weight",
    "self_attn.q_b_proj.weight": "attn_q_b.weight",
    "self_attn.kv_a_proj_with_mqa.weight": "attn_kv_a_mqa.weight",
    "self_attn.kv_a_layernorm.weight": "attn_kv_a_norm.weight",
    "self_attn.o_proj.weight": "attn_output.weight",
    "post_attention_layernorm.weight": "ffn_norm.weight",
    "mlp.gate_proj.weight": "ffn_gate.weight",
    "mlp.up_proj.weight": "ffn_up.weight",
    "mlp.down_proj.weight": "ffn_down.weight",
    "mlp.gate.weight": "ffn_gate_inp.weight",
    "mlp.gate.e_score_correction_bias": "exp_probs_b.bias",
    "mlp.shared_experts.gate_proj.weight": "ffn_gate_shexp.weight",
    "mlp.shared_experts.up_proj.weight": "ffn_up_shexp.weight",
    "mlp.shared_experts.down_proj.weight": "ffn_down_shexp.weight",
}
# MTP-only tensors of layer N (after `model.layers.{N}.`) -> after `blk.{N}.`
MTP_NAMES: dict[str, str] = {
    "enorm.weight": "nextn.enorm.weight",
    "hnorm.weight": "nextn.hnorm.weight",
    "eh_proj.weight": "nextn.eh_proj.weight",
    "embed_tokens.weight": "nextn.embed_tokens.weight",
    "shared_head.norm.weight": "nextn.shared_head_norm.weight",
    "shared_head.head.weight": "nextn.shared_head_head.weight",
}
KV_B = "self_attn.kv_b_proj.weight"
EXPERT_RE = re.compile(r"^mlp\.experts\.(\d+)\.(gate|up|down)_proj\.weight$")
LAYER_RE = re.compile(r"^model\.layers\.(\d+)\.(.+)$")
# Tensors llama.cpp keeps in F32 whatever the output type (its converter forces them; llama-quantize skips them).
F32_SUFFIXES = ("_norm.weight", "ffn_gate_inp.weight")

@dataclass(frozen=True)
class Source:
    """Where a GGUF tensor's values come from: `kind` is tensor | k_b | v_b | experts; `names` are HF tensors."""

    kind: str
    names: tuple[str, ...]
    split: tuple[int, int, int] = (0, 0, 0)  # k_b / v_b: (heads, qk_nope_head_dim, v_head_dim)


def forced_f32(name: str, shape: tuple[int, ...]) -> bool:
    return len(shape) <= 1 or name.endswith(F32_SUFFIXES) or not name.endswith(".weight")


def map_tensors(config: dict[str, Any], mtp: bool = False) -> list[tuple[str, tuple[int, ...], Source]]:
    """(GGUF name, numpy shape, source) for every tensor of the main model (and the MTP layers with `mtp`)."""
    spec = spec_for(config)
    heads = int(config["num_attention_heads"])
    nope, v_head, kv_lora = int(config["qk_nope_head_dim"]), int(config["v_head_dim"]), int(config["kv_lora_rank"])
    n_experts = int(config.get("n_routed_experts") or 0)
    out: list[tuple[str, tuple[int, ...], Source]] = []
    stacked: set[tuple[int, str]] = set()
    for t in spec:
        if t.mtp and not mtp:
            continue
        if t.name in GLOBAL_NAMES:
            out.append((GLOBAL_NAMES[t.name], t.shape, Source("tensor", (t.name,))))
            continue
        m = LAYER_RE.match(t.name)
        if not m:
            raise UnsupportedArchitecture(f"config.json: no GGUF name for tensor {t.name}", path="config.json", tensor=t.name)
        layer, rest = int(m[1]), m[2]
        blk = f"blk.{layer}."
        if rest == KV_B:
            split = (heads, nope, v_head)
            out.append((blk + "attn_k_b.weight", (heads, kv_lora, nope), Source("k_b", (t.name,), split)))
            out.append((blk + "attn_v_b.weight", (heads, v_head, kv_lora), Source("v_b", (t.name,), split)))
        elif em := EXPERT_RE.match(rest):
            proj = em[2]
            if (layer, proj) not in stacked:
                stacked.add((layer, proj))
                names = tuple(f"model.layers.{layer}.mlp.experts.{e}.{proj}_proj.weight" for e in range(n_experts))
                out.append((f"{blk}ffn_{proj}_exps.weight", (n_experts, *t.shape), Source("experts", names)))
        elif rest in LAYER_NAMES:
            out.append((blk + LAYER_NAMES[rest], t.shape, Source("tensor", (t.name,))))
        elif t.mtp and rest in MTP_NAMES:
            out.append((blk + MTP_NAMES[rest], t.shape, Source("tensor", (t.name,))))
        else:
            raise UnsupportedArchitecture(f"config.json: no GGUF name for tensor {t.name}", path="config.json", tensor=t.name)
    return out
