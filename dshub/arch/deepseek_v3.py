"""DeepSeek-V2/V3/R1/V3.1 and Kimi-K2 (MLA attention, DeepSeekMoE, optional MTP layers)."""
from __future__ import annotations

from typing import Any

from dshub.arch import register
from dshub.arch.spec import ArchSpec, Role, TensorSpec, require


def _not_converted(config: dict[str, Any]) -> tuple[str, ...]:
    qc = config.get("quantization_config") or {}
    return tuple(qc.get("modules_to_not_convert") or ())


@register("DeepseekV3ForCausalLM", "DeepseekV2ForCausalLM", "KimiK2ForCausalLM")
def deepseek_v3_spec(config: dict[str, Any]) -> ArchSpec:
    hidden, n_layers, heads, vocab, inter = require(
        config, "hidden_size", "num_hidden_layers", "num_attention_heads", "vocab_size", "intermediate_size"
    )
    kv_lora, qk_nope, qk_rope, v_head = require(config, "kv_lora_rank", "qk_nope_head_dim", "qk_rope_head_dim", "v_head_dim")
    q_lora = config.get("q_lora_rank")
    n_routed = config.get("n_routed_experts") or 0
    if n_routed:
        moe_inter, first_dense, top_k = require(config, "moe_intermediate_size", "first_k_dense_replace", "num_experts_per_tok")
    else:
        moe_inter, first_dense, top_k = 0, n_layers, 0
    n_shared = config.get("n_shared_experts") or 0
    freq = config.get("moe_layer_freq") or 1
    n_mtp = config.get("num_nextn_predict_layers") or 0
    has_bias = config.get("topk_method") == "noaux_tc"
    skip = _not_converted(config)
    qk_head = qk_nope + qk_rope

    out: list[TensorSpec] = []

    def add(name: str, shape: tuple[int, ...], role: Role, layer: int | None = None, *, linear: bool = False,
            fp8: bool | None = None, expert: int | None = None, mtp: bool = False) -> None:
        is_fp8 = linear if fp8 is None else fp8
        if is_fp8 and any(s and s in name for s in skip):
            is_fp8 = False
        out.append(TensorSpec(name, tuple(int(d) for d in shape), role, layer, expert, linear, is_fp8, mtp))

    add("model.embed_tokens.weight", (vocab, hidden), Role.EMBED)
    for i in range(n_layers + n_mtp):
        p = f"model.layers.{i}."
        mtp = i >= n_layers
        if mtp:
            add(p + "enorm.weight", (hidden,), Role.MTP, i, mtp=True)
            add(p + "hnorm.weight", (hidden,), Role.MTP, i, mtp=True)
            add(p + "eh_proj.weight", (hidden, 2 * hidden), Role.MTP, i, linear=True, mtp=True)
            add(p + "embed_tokens.weight", (vocab, hidden), Role.MTP, i, mtp=True)
            add(p + "shared_head.norm.weight", (hidden,), Role.MTP, i, mtp=True)
            add(p + "shared_head.head.weight", (vocab, hidden), Role.MTP, i, linear=True, fp8=False, mtp=True)
        add(p + "input_layernorm.weight", (hidden,), Role.NORM, i, mtp=mtp)
        a = p + "self_attn."
        if q_lora:
            add(a + "q_a_proj.weight", (q_lora, hidden), Role.ATTN, i, linear=True, mtp=mtp)
            add(a + "q_a_layernorm.weight", (q_lora,), Role.NORM, i, mtp=mtp)
            add(a + "q_b_proj.weight", (heads * qk_head, q_lora), Role.ATTN, i, linear=True, mtp=mtp)
        else:
            add(a + "q_proj.weight", (heads * qk_head, hidden), Role.ATTN, i, linear=True, mtp=mtp)
        add(a + "kv_a_proj_with_mqa.weight", (kv_lora + qk_rope, hidden), Role.ATTN, i, linear=True, mtp=mtp)
        add(a + "kv_a_layernorm.weight", (kv_lora,), Role.NORM, i, mtp=mtp)
        add(a + "kv_b_proj.weight", (heads * (qk_nope + v_head), kv_lora), Role.ATTN, i, linear=True, mtp=mtp)
        add(a + "o_proj.weight", (hidden, heads * v_head), Role.ATTN, i, linear=True, mtp=mtp)
        add(p + "post_attention_layernorm.weight", (hidden,), Role.NORM, i, mtp=mtp)
        m = p + "mlp."
        if n_routed and i >= first_dense and i % freq == 0:
            for e in range(n_routed):
                ep = f"{m}experts.{e}."
                add(ep + "gate_proj.weight", (moe_inter, hidden), Role.EXPERT, i, linear=True, expert=e, mtp=mtp)
                add(ep + "up_proj.weight", (moe_inter, hidden), Role.EXPERT, i, linear=True, expert=e, mtp=mtp)
                add(ep + "down_proj.weight", (hidden, moe_inter), Role.EXPERT, i, linear=True, expert=e, mtp=mtp)
            add(m + "gate.weight", (n_routed, hidden), Role.ROUTER, i, linear=True, fp8=False, mtp=mtp)
            if has_bias:
                add(m + "gate.e_score_correction_bias", (n_routed,), Role.ROUTER_BIAS, i, mtp=mtp)
            if n_shared:
                sh = moe_inter * n_shared
                add(m + "shared_experts.gate_proj.weight", (sh, hidden), Role.SHARED_EXPERT, i, linear=True, mtp=mtp)
                add(m + "shared_experts.up_proj.weight", (sh, hidden), Role.SHARED_EXPERT, i, linear=True, mtp=mtp)
                add(m + "shared_experts.down_proj.weight", (hidden, sh), Role.SHARED_EXPERT, i, linear=True, mtp=mtp)
        else:
            add(m + "gate_proj.weight", (inter, hidden), Role.DENSE_MLP, i, linear=True, mtp=mtp)
            add(m + "up_proj.weight", (inter, hidden), Role.DENSE_MLP, i, linear=True, mtp=mtp)
            add(m + "down_proj.weight", (hidden, inter), Role.DENSE_MLP, i, linear=True, mtp=mtp)
    add("model.norm.weight", (hidden,), Role.NORM)
    add("lm_head.weight", (vocab, hidden), Role.HEAD, linear=True, fp8=False)

    return ArchSpec(
        architecture=(config.get("architectures") or ["DeepseekV3ForCausalLM"])[0],
        config=config,
        tensors=out,
        num_layers=n_layers,
        num_mtp_layers=n_mtp,
        experts_per_token=top_k,
        num_experts=n_routed,
    )
