"""The DeepSeek-V3 family: DeepSeek-V2/V3/R1/V3.1 and Kimi-K2 (MLA attention, DeepSeekMoE, optional MTP layers).

One module holds every fact dshub knows about the family (see dshub.arch.family): tensor inventory, llama.cpp
`deepseek2` GGUF mapping, INT4 scopes, planner facts and the engine facts of each release.
"""
from __future__ import annotations

from typing import Any, Mapping

from dshub.arch.family import (
    Family, GGUFDerived, GGUFExperts, GGUFField, GGUFMapping, GGUFPart, Int4Scopes, PlannerFacts, Release,
    ServingFacts, TokenizerInfo, frozen, register,
)
from dshub.arch.spec import ArchSpec, Role, TensorSpec, require
from dshub.errors import ConfigError

ARCHITECTURES = ("DeepseekV3ForCausalLM", "DeepseekV2ForCausalLM", "KimiK2ForCausalLM")


def _not_converted(config: dict[str, Any]) -> tuple[str, ...]:
    qc = config.get("quantization_config") or {}
    return tuple(qc.get("modules_to_not_convert") or ())


# Routing when config.json omits it (transformers 5 saves neither `topk_method` nor `scoring_func`). Sources:
# transformers' DeepseekV2Config defaults (topk_method "greedy", softmax scores); DeepSeek-V3's config.json and
# modeling (noaux_tc: sigmoid scores plus e_score_correction_bias), which V3.1, V3.2, Kimi-K2 and Moonlight keep.
ROUTING_BY_ARCH: Mapping[str, Mapping[str, str]] = frozen({
    "DeepseekV2ForCausalLM": frozen({"topk_method": "greedy", "scoring_func": "softmax"}),
})
ROUTING_DEFAULT: Mapping[str, str] = frozen({"topk_method": "noaux_tc", "scoring_func": "sigmoid"})


def routing(config: dict[str, Any], field: str) -> str:
    """`topk_method` or `scoring_func` of a config: its own value, else its architecture's default."""
    arch = (config.get("architectures") or [""])[0]
    return config.get(field) or ROUTING_BY_ARCH.get(arch, ROUTING_DEFAULT)[field]


# One tensor every layer adds after its attention: (name after `self_attn.`, shape, role, linear, fp8).
AttnExtra = tuple[str, tuple[int, ...], Role, bool, bool]


def deepseek_v3_spec(config: dict[str, Any], attn_extras: tuple[AttnExtra, ...] = ()) -> ArchSpec:
    """Every tensor of a DeepSeek-V3-shaped checkpoint, in canonical order (`attn_extras`: per-layer additions)."""
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
    has_bias = routing(config, "topk_method") == "noaux_tc"
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
        for suffix, shape, role, linear, fp8 in attn_extras:
            add(a + suffix, shape, role, i, linear=linear, fp8=fp8, mtp=mtp)
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


# ------------------------------------------------------------------ GGUF: llama.cpp's `deepseek2` architecture
# Tensor names as llama.cpp's loader expects them (gguf-py tensor_mapping / convert_hf_to_gguf.py DeepseekV2Model).
GLOBAL_NAMES: Mapping[str, str] = frozen({
    "model.embed_tokens.weight": "token_embd.weight",
    "model.norm.weight": "output_norm.weight",
    "lm_head.weight": "output.weight",
})
# After `model.layers.{i}.` -> after `blk.{i}.`
LAYER_NAMES: Mapping[str, str] = frozen({
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
})
# MTP-only tensors of layer N (after `model.layers.{N}.`) -> after `blk.{N}.`
MTP_NAMES: Mapping[str, str] = frozen({
    "enorm.weight": "nextn.enorm.weight",
    "hnorm.weight": "nextn.hnorm.weight",
    "eh_proj.weight": "nextn.eh_proj.weight",
    "embed_tokens.weight": "nextn.embed_tokens.weight",
    "shared_head.norm.weight": "nextn.shared_head_norm.weight",
    "shared_head.head.weight": "nextn.shared_head_head.weight",
})
KV_B = "self_attn.kv_b_proj.weight"


def kv_b_parts(config: dict[str, Any]) -> tuple[GGUFPart, ...]:
    """MLA's kv_b_proj as llama.cpp runs it: attn_k_b (per head, transposed) and attn_v_b."""
    heads = int(config["num_attention_heads"])
    nope, v_head, kv_lora = int(config["qk_nope_head_dim"]), int(config["v_head_dim"]), int(config["kv_lora_rank"])
    split = (heads, nope, v_head)
    return (GGUFPart("attn_k_b.weight", (heads, kv_lora, nope), "k_b", split),
            GGUFPart("attn_v_b.weight", (heads, v_head, kv_lora), "v_b", split))


# Copied fields, in the order llama.cpp's converter writes them. q_lora_rank is null for V2-Lite: then omitted.
FIELDS: tuple[GGUFField, ...] = (
    GGUFField("vocab_size", "vocab_size", "UINT32"),
    GGUFField("context_length", "max_position_embeddings", "UINT32"),
    GGUFField("embedding_length", "hidden_size", "UINT32"),
    GGUFField("feed_forward_length", "intermediate_size", "UINT32"),
    GGUFField("block_count", "num_hidden_layers", "UINT32"),
    GGUFField("attention.head_count", "num_attention_heads", "UINT32"),
    GGUFField("attention.layer_norm_rms_epsilon", "rms_norm_eps", "FLOAT32"),
    GGUFField("rope.freq_base", "rope_theta", "FLOAT32"),
    GGUFField("leading_dense_block_count", "first_k_dense_replace", "UINT32"),
    GGUFField("attention.q_lora_rank", "q_lora_rank", "UINT32", required=False),
    GGUFField("attention.kv_lora_rank", "kv_lora_rank", "UINT32"),
    GGUFField("expert_feed_forward_length", "moe_intermediate_size", "UINT32"),
    GGUFField("expert_count", "n_routed_experts", "UINT32"),
    GGUFField("expert_shared_count", "n_shared_experts", "UINT32"),
    GGUFField("expert_used_count", "num_experts_per_tok", "UINT32"),
    GGUFField("expert_weights_scale", "routed_scaling_factor", "FLOAT32"),
    GGUFField("expert_weights_norm", "norm_topk_prob", "BOOL", required=False),
    GGUFField("expert_group_count", "n_group", "UINT32", required=False),
    GGUFField("expert_group_used_count", "topk_group", "UINT32", required=False),
    GGUFField("rope.dimension_count", "qk_rope_head_dim", "UINT32"),
)

# Derived MLA keys: the `*_mla` lengths are what make llama.cpp run MLA; the plain ones describe the MQA view.
DERIVED: tuple[GGUFDerived, ...] = (
    GGUFDerived("attention.head_count_kv", "UINT32", lambda c: 1),
    GGUFDerived("attention.key_length", "UINT32", lambda c: c["kv_lora_rank"] + c["qk_rope_head_dim"]),
    GGUFDerived("attention.value_length", "UINT32", lambda c: c["kv_lora_rank"]),
    GGUFDerived("attention.key_length_mla", "UINT32", lambda c: c["qk_nope_head_dim"] + c["qk_rope_head_dim"]),
    GGUFDerived("attention.value_length_mla", "UINT32", lambda c: c["v_head_dim"]),
)
# Gating when config.json has no `scoring_func` (transformers 5 stopped writing it): V3-family models always use sigmoid.
DEFAULT_GATING: Mapping[str, str] = frozen({a: r["scoring_func"] for a, r in ROUTING_BY_ARCH.items()})
# llama.cpp divides yarn_log_multiplier by 0.1 when loading deepseek2 (PR #17945), so the file holds 0.1 * mscale_all_dim.
YARN_LOG_MUL_FACTOR = 0.1
GGUF_ARCH = "deepseek2"


def config_from_gguf(kv: Mapping[str, Any], tensor_names: set[str] | None = None, *, arch: str = GGUF_ARCH,
                     fields: tuple[GGUFField, ...] = FIELDS, architecture: str = "DeepseekV3ForCausalLM") -> dict[str, Any]:
    """The config.json fields an `arch` GGUF's metadata implies (enough for the architecture's tensor table)."""
    def key(suffix: str) -> str:
        return f"{arch}.{suffix}"

    cfg: dict[str, Any] = {"architectures": [architecture], "num_nextn_predict_layers": 0, "moe_layer_freq": 1}
    for f in fields:
        if key(f.suffix) in kv:
            cfg[f.config_key] = kv[key(f.suffix)]
        elif f.required and f.config_key not in ("vocab_size",):
            raise ConfigError(f"GGUF metadata lacks {key(f.suffix)}", path="gguf", show_path="")
    for need in ("attention.key_length_mla", "attention.value_length_mla"):
        if key(need) not in kv:
            raise ConfigError(f"GGUF metadata lacks {key(need)} (a pre-MLA {arch} file)", path="gguf", show_path="")
    cfg["num_nextn_predict_layers"] = int(kv.get(key("nextn_predict_layers"), 0))
    cfg["num_hidden_layers"] -= cfg["num_nextn_predict_layers"]
    cfg["qk_nope_head_dim"] = kv[key("attention.key_length_mla")] - cfg["qk_rope_head_dim"]
    cfg["v_head_dim"] = kv[key("attention.value_length_mla")]
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


GGUF = GGUFMapping(
    arch=GGUF_ARCH,
    global_names=GLOBAL_NAMES,
    layer_pattern=r"^model\.layers\.(\d+)\.(.+)$",
    layer_names=LAYER_NAMES,
    mtp_names=MTP_NAMES,
    splits=frozen({KV_B: kv_b_parts}),
    experts=GGUFExperts(r"^mlp\.experts\.(\d+)\.(gate|up|down)_proj\.weight$", "ffn_{proj}_exps.weight",
                        "mlp.experts.{expert}.{proj}_proj.weight", "n_routed_experts"),
    fields=FIELDS,
    derived=DERIVED,
    block_count_key="num_hidden_layers",
    mtp_count_key="num_nextn_predict_layers",
    default_gating=DEFAULT_GATING,
    default_gating_other=ROUTING_DEFAULT["scoring_func"],
    yarn_log_multiplier_factor=YARN_LOG_MUL_FACTOR,
    config_from_metadata=config_from_gguf,
    caveats=llama_cpp_caveats,
)


# ------------------------------------------------------------------ planner (../shared/reference/serving.md §5)
def mla_kv_elems(config: dict[str, Any]) -> int:
    """MLA caches the compressed latent and the shared rope key: kv_lora_rank + qk_rope_head_dim per token and layer."""
    return int(config["kv_lora_rank"]) + int(config["qk_rope_head_dim"])


def tp_split_dims(config: dict[str, Any]) -> dict[str, tuple[int, ...]]:
    """Widths a TP rank slices: attention per head group, dense MLP, shared expert, routed expert intermediates."""
    heads = config["num_attention_heads"]
    qk = config["qk_nope_head_dim"] + config["qk_rope_head_dim"]
    dims = {
        "attn": (heads * qk, heads * (config["qk_nope_head_dim"] + config["v_head_dim"]), heads * config["v_head_dim"]),
        "dense": (config["intermediate_size"],),
    }
    if config.get("n_routed_experts"):
        dims["expert"] = (config["moe_intermediate_size"],)
        if config.get("n_shared_experts"):
            dims["shared"] = (config["moe_intermediate_size"] * config["n_shared_experts"],)
    return dims


PLANNER = PlannerFacts(kv_elems_per_token_layer=mla_kv_elems, tp_split_dims=tp_split_dims)


# ------------------------------------------------------------------ releases and their engine facts
# Sources (../shared/reference/serving.md): vLLM §1.3-1.6 ([R] vllm-project/recipes @8959cf6, vLLM docs and issues
# named inline); SGLang §2 (sglang docs, [SC] sgl-cookbook @7b5bd9c); llama.cpp §3 (chat template from the GGUF,
# --jinja; no parser flags). Parser names were checked against vLLM 0.33.0's parser registries and SGLang 0.5.23's
# `--reasoning-parser`/`--tool-call-parser` choices (tests/recipes/test_validators.py).
VLLM_TEMPLATE = "/vllm-workspace/examples/tool_chat_template_{}.jinja"
SGLANG_TEMPLATE = "/sgl-workspace/sglang/examples/chat_template/tool_chat_template_{}.jinja"
V3_MIN_VLLM = ("0.12.0", "vllm recipes: min_vllm_version 0.12.0 (DeepSeek-R1.yaml)")


def _engines(vllm: ServingFacts, sglang: ServingFacts, llamacpp: ServingFacts = ServingFacts()) -> Mapping[str, ServingFacts]:
    return frozen({"vllm": vllm, "sglang": sglang, "llamacpp": llamacpp})


def _arch(config: dict[str, Any]) -> str:
    return (config.get("architectures") or [""])[0]


def is_v2(config: dict[str, Any], tok: TokenizerInfo) -> bool:
    """DeepSeek-V2 / V2-Lite / V2.5 / Coder-V2: their config.json names DeepseekV2ForCausalLM."""
    return _arch(config) == "DeepseekV2ForCausalLM"


def is_kimi_thinking(config: dict[str, Any], tok: TokenizerInfo) -> bool:
    """Kimi-K2-Thinking: model_type kimi_k2 and a tokenizer with `<think>` (moonshotai/Kimi-K2-Thinking
    tokenizer_config.json names `<think>`/`</think>` among its added tokens and its chat template opens a think block;
    Kimi-K2-Instruct's has neither)."""
    return config.get("model_type") == "kimi_k2" and ("<think>" in tok.specials or "<think>" in tok.template)


def is_kimi(config: dict[str, Any], tok: TokenizerInfo) -> bool:
    """Kimi-K2-Instruct (-0905, -Base): model_type kimi_k2 (moonshotai/Kimi-K2-Instruct config.json), not Thinking."""
    return config.get("model_type") == "kimi_k2" and not is_kimi_thinking(config, tok)


def is_moonlight(config: dict[str, Any], tok: TokenizerInfo) -> bool:
    """Moonlight-16B-A3B: a DeepseekV3ForCausalLM with model_type deepseek_v3 but Kimi's tiktoken vocabulary
    (moonshotai/Moonlight-16B-A3B-Instruct: tiktoken.model + tokenization_moonshot.py, no tokenizer.json)."""
    return config.get("model_type") == "deepseek_v3" and tok.kind == "tiktoken"


# vLLM: serving.md §1.3 "Reasoning parser", "Tools" (PR#18874 for the R1 tool template); SGLang: §2 "Parsers".
# V2 and Moonlight predate reasoning (no <think>) and have no tool-call parser in vLLM or SGLang: they run with the
# chat template their checkpoint ships (no parser flags). Local checkpoints are recognized by `detect`, from
# config.json and the tokenizer; the directory name only decides among releases with the same files (V3 / R1 / V3.1).
RELEASES: tuple[Release, ...] = (
    Release("v3", _engines(
        ServingFacts("deepseek_v3", "deepseek_v3", VLLM_TEMPLATE.format("deepseekv3"), None, *V3_MIN_VLLM),
        ServingFacts("deepseek-v3", "deepseekv3", SGLANG_TEMPLATE.format("deepseekv3"))),
        model_types=("deepseek_v3", "deepseek_v2")),
    Release("kimi_k2", _engines(
        ServingFacts(None, "kimi_k2", None, None, *V3_MIN_VLLM),
        ServingFacts(None, "kimi_k2")),
        name_pattern=r"(?i)kimi", model_types=("kimi_k2",), detect=is_kimi),
    Release("v31", _engines(
        ServingFacts("deepseek_v3", "deepseek_v31", VLLM_TEMPLATE.format("deepseekv31"), None, *V3_MIN_VLLM),
        ServingFacts("deepseek-v3", "deepseekv31", SGLANG_TEMPLATE.format("deepseekv31"))),
        name_pattern=r"(?i)v3\.?1"),
    Release("r1", _engines(
        ServingFacts("deepseek_r1", "deepseek_v3", VLLM_TEMPLATE.format("deepseekr1"), None, *V3_MIN_VLLM),
        ServingFacts("deepseek-r1", "deepseekv3", SGLANG_TEMPLATE.format("deepseekr1"))),
        name_pattern=r"(?i)\br1\b|-r1"),
    Release("kimi_k2_thinking", _engines(
        ServingFacts("kimi_k2", "kimi_k2", None, None, *V3_MIN_VLLM),
        ServingFacts("kimi_k2", "kimi_k2")), detect=is_kimi_thinking),
    Release("v2", _engines(ServingFacts(), ServingFacts()), detect=is_v2),
    Release("moonlight", _engines(ServingFacts(), ServingFacts()), detect=is_moonlight),
)

# A small config.json of the family (the synthetic "tiny" dims): the contract tests exercise every fact on it.
EXAMPLE: Mapping[str, Any] = frozen(dict(
    architectures=["DeepseekV3ForCausalLM"], model_type="deepseek_v3", hidden_size=256, num_hidden_layers=3,
    first_k_dense_replace=1, num_attention_heads=4, q_lora_rank=192, kv_lora_rank=128, qk_nope_head_dim=64,
    qk_rope_head_dim=32, v_head_dim=64, intermediate_size=512, moe_intermediate_size=256, n_routed_experts=8,
    num_experts_per_tok=2, n_group=2, topk_group=1, n_shared_experts=1, num_nextn_predict_layers=1,
    max_position_embeddings=4096, vocab_size=1024, rms_norm_eps=1e-6, rope_theta=10000, routed_scaling_factor=2.5,
    norm_topk_prob=True, scoring_func="sigmoid", topk_method="noaux_tc", moe_layer_freq=1,
))

# onnxruntime-genai's decoder graph is GQA + a dense MLP; MLA attention and routed experts have no such graph here.
ONNX_REFUSAL = ("ONNX output is for the dense decoders (the R1 distills); MLA attention and routed experts have no "
                "onnxruntime-genai graph in dshub; convert with --to gguf or --to int4")

FAMILY = register(Family(
    name="deepseek_v3",
    architectures=ARCHITECTURES,
    inventory=deepseek_v3_spec,
    example=EXAMPLE,
    planner=PLANNER,
    releases=RELEASES,
    gguf=GGUF,
    int4=Int4Scopes(),
    refusals=frozen({"onnx": ONNX_REFUSAL}),
))
