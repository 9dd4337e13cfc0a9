"""The model catalog (works offline) and resolution of MODEL: a catalog name, a hub id, or a local checkpoint.

Each catalog entry carries the architecture fields of the model's real config.json, so parameter counts come
from the model's family module (dshub.arch) exactly as for a local checkpoint. Sources, per entry:
- DeepSeek-V3/R1/V3.1/V3.2: the `config.json` of each deepseek-ai repository; the dims are the ones listed in
  ../shared/reference/serving.md §5 (61 layers, hidden 7168, 128 heads, kv_lora 512, rope 64, 256+1 experts).
- Kimi-K2: moonshotai/Kimi-K2-Instruct `config.json` (DeepseekV3ForCausalLM with 64 heads, 384 experts,
  first_k_dense_replace 1, vocab 163840, no MTP layer); Kimi-K2-Thinking ships compressed-tensors INT4
  (serving.md §1.5).
- DeepSeek-R1-Distill-Qwen-1.5B/7B/14B/32B (Qwen2ForCausalLM) and -Llama-8B/70B (LlamaForCausalLM): the
  `config.json` of each deepseek-ai/DeepSeek-R1-Distill-* repository (BF16 safetensors; the model cards recommend
  temperature 0.6, top-p 0.95, which their generation_config.json carries).
- DeepSeek-V4-Flash, -Flash-Base and -Pro: the architecture fields of their config.json, kept in their family module
  (dshub.arch.deepseek_v4 FLASH_DIMS, FLASH_BASE_DIMS, PRO_DIMS, with sources); parameter counts and the KV cache per
  attention kind come from there; the TP cap and KV dtype from serving.md §1.6.
"""
from __future__ import annotations

from dataclasses import dataclass, replace
from functools import lru_cache
from pathlib import Path
from typing import Any

from dshub.arch.deepseek_v4 import FLASH_BASE_DIMS as V4_FLASH_BASE, FLASH_DIMS as V4_FLASH, PRO_DIMS as V4_PRO
from dshub.errors import UsageError

from dshub.checkpoint.shapes import shape_checkpoint
from dshub.recipes.local import local_info, stored_components
from dshub.formats.gguf_file import is_gguf_path
from dshub.recipes.local_gguf import gguf_info
from dshub.recipes.model_info import COMPONENTS, ModelInfo, info_from_config, module_of  # noqa: F401  (re-exported)

FP8_QC = {"activation_scheme": "dynamic", "fmt": "e4m3", "quant_method": "fp8", "weight_block_size": [128, 128]}

# DeepSeek-V3 architecture fields (deepseek-ai/DeepSeek-V3 config.json); R1, V3.1 and V3.2 share them.
_V3_DIMS: dict[str, Any] = dict(
    architectures=["DeepseekV3ForCausalLM"], model_type="deepseek_v3", hidden_size=7168, intermediate_size=18432,
    moe_intermediate_size=2048, num_hidden_layers=61, num_attention_heads=128, num_key_value_heads=128,
    n_shared_experts=1, n_routed_experts=256, num_experts_per_tok=8, first_k_dense_replace=3, moe_layer_freq=1,
    q_lora_rank=1536, kv_lora_rank=512, qk_nope_head_dim=128, qk_rope_head_dim=64, v_head_dim=128,
    vocab_size=129280, max_position_embeddings=163840, num_nextn_predict_layers=1, topk_method="noaux_tc",
    n_group=8, topk_group=4, quantization_config=FP8_QC,
    # the rest of the released config.json: what GGUF metadata and the shape-only plans read
    hidden_act="silu", rms_norm_eps=1e-6, rope_theta=10000, scoring_func="sigmoid", routed_scaling_factor=2.5,
    norm_topk_prob=True, tie_word_embeddings=False, bos_token_id=0, eos_token_id=1,
    rope_scaling={"type": "yarn", "factor": 40, "original_max_position_embeddings": 4096, "beta_fast": 32,
                  "beta_slow": 1, "mscale": 1.0, "mscale_all_dim": 1.0},
)
# DeepSeek-V3.2 adds the lightning indexer (deepseek-ai/DeepSeek-V3.2 config.json).
_V32_DIMS = {**_V3_DIMS, "architectures": ["DeepseekV32ForCausalLM"], "model_type": "deepseek_v32",
             "index_n_heads": 64, "index_head_dim": 128, "index_topk": 2048}
# moonshotai/Kimi-K2-Instruct config.json.
_KIMI_DIMS = {**_V3_DIMS, "model_type": "kimi_k2", "num_attention_heads": 64, "num_key_value_heads": 64,
              "n_routed_experts": 384, "first_k_dense_replace": 1, "vocab_size": 163840,
              "max_position_embeddings": 131072, "num_nextn_predict_layers": 0, "n_group": 1, "topk_group": 1}


# moonshotai/Kimi-K2-Thinking config.json: compressed-tensors W4A16 in groups of 32 on the routed experts (attention,
# shared experts, dense MLPs and lm_head left out).
KIMI_K2_THINKING_QC: dict[str, Any] = {
    "quant_method": "compressed-tensors", "format": "pack-quantized", "quantization_status": "compressed",
    "kv_cache_scheme": None,
    "config_groups": {"group_0": {"targets": ["Linear"], "input_activations": None, "output_activations": None,
                                  "weights": {"num_bits": 4, "type": "int", "symmetric": True, "strategy": "group",
                                              "group_size": 32, "dynamic": False, "actorder": None, "observer": "minmax"}}},
    "ignore": ["lm_head", "re:.*self_attn.*", "re:.*shared_experts.*", "re:.*mlp\\.(gate|up|gate_up|down)_proj.*"],
}


@dataclass(frozen=True)
class Sampling:
    """The sampling a model's authors recommend for local serving, with where they say so. None: not stated."""

    source: str
    temperature: float | None = None
    top_p: float | None = None
    min_p: float | None = None


# Model cards' "usage recommendations" (read 2026): each line quotes what its authors recommend.
R1_SAMPLING = Sampling("deepseek-ai/DeepSeek-R1 model card: temperature 0.5-0.7, 0.6 recommended; top-p 0.95", 0.6, 0.95)
V3_0324_SAMPLING = Sampling("deepseek-ai/DeepSeek-V3-0324 model card: temperature 0.3 (the API maps T_api 1.0 to 0.3)", 0.3)
V32_SAMPLING = Sampling("deepseek-ai/DeepSeek-V3.2 model card: for local deployment temperature = 1.0, top_p = 0.95 "
                        "(quoted by sgl-cookbook DeepSeek-V3_2)", 1.0, 0.95)
R1_DISTILL_SAMPLING = Sampling("deepseek-ai/DeepSeek-R1-Distill-Qwen-7B model card (all six distills): temperature "
                               "0.5-0.7, 0.6 recommended; top-p 0.95", 0.6, 0.95)
KIMI_SAMPLING = Sampling("moonshotai/Kimi-K2-Instruct model card: recommended temperature = 0.6", 0.6)
KIMI_THINKING_SAMPLING = Sampling("moonshotai/Kimi-K2-Thinking model card: recommended temperature = 1.0", 1.0)


# The R1 distills (deepseek-ai/DeepSeek-R1-Distill-* config.json): fields common to a base model's distills, then
# each size's dimensions.
_QWEN2_BASE: dict[str, Any] = dict(
    architectures=["Qwen2ForCausalLM"], model_type="qwen2", hidden_act="silu", max_position_embeddings=131072,
    sliding_window=4096, use_sliding_window=False, tie_word_embeddings=False, bos_token_id=151643,
    eos_token_id=151643, torch_dtype="bfloat16")
_LLAMA_BASE: dict[str, Any] = dict(
    architectures=["LlamaForCausalLM"], model_type="llama", hidden_act="silu", max_position_embeddings=131072,
    rms_norm_eps=1e-5, rope_theta=500000.0, attention_bias=False, mlp_bias=False, tie_word_embeddings=False,
    vocab_size=128256, bos_token_id=128000, eos_token_id=128001, torch_dtype="bfloat16",
    rope_scaling={"factor": 8.0, "high_freq_factor": 4.0, "low_freq_factor": 1.0,
                  "original_max_position_embeddings": 8192, "rope_type": "llama3"})


def _qwen2(hidden: int, inter: int, layers: int, heads: int, kv: int, vocab: int, theta: float, eps: float) -> dict[str, Any]:
    return {**_QWEN2_BASE, "hidden_size": hidden, "intermediate_size": inter, "num_hidden_layers": layers,
            "num_attention_heads": heads, "num_key_value_heads": kv, "vocab_size": vocab, "rope_theta": theta,
            "rms_norm_eps": eps, "max_window_layers": layers}


def _llama(hidden: int, inter: int, layers: int, heads: int) -> dict[str, Any]:
    return {**_LLAMA_BASE, "hidden_size": hidden, "intermediate_size": inter, "num_hidden_layers": layers,
            "num_attention_heads": heads, "num_key_value_heads": 8}


DISTILL_DIMS: dict[str, dict[str, Any]] = {
    "qwen-1.5b": _qwen2(1536, 8960, 28, 12, 2, 151936, 10000.0, 1e-6),
    "qwen-7b": _qwen2(3584, 18944, 28, 28, 4, 152064, 10000.0, 1e-6),
    "qwen-14b": _qwen2(5120, 13824, 48, 40, 8, 152064, 1000000.0, 1e-5),
    "qwen-32b": _qwen2(5120, 27648, 64, 40, 8, 152064, 1000000.0, 1e-5),
    "llama-8b": _llama(4096, 14336, 32, 32),
    "llama-70b": _llama(8192, 28672, 80, 64),
}
_DISTILL_NAMES = {"qwen-1.5b": "Qwen-1.5B", "qwen-7b": "Qwen-7B", "qwen-14b": "Qwen-14B", "qwen-32b": "Qwen-32B",
                  "llama-8b": "Llama-8B", "llama-70b": "Llama-70B"}


@dataclass(frozen=True)
class CatalogEntry:
    """A released model: where it lives and how it ships."""

    name: str
    hub_id: str
    family: str  # release key (a family module's Release, or a stated-only one: v4) the engine facts are keyed by
    shipped: str  # weight format as released: fp8 | int4 | fp4-fp8
    config: dict[str, Any] | None = None  # architecture fields; None when not modelled (V4)
    aliases: tuple[str, ...] = ()
    # Stated facts for models without a modelled config (V4), from serving.md §1.6.
    stated_params: int | None = None
    stated_active: int | None = None
    stated_bytes: int | None = None
    stated_max_context: int | None = None
    max_tp: int | None = None  # a TP cap a source states outright
    max_tp_source: str = ""
    default_kv_dtype: str | None = None  # a KV cache dtype the model's recipe sets (vLLM/SGLang)
    sampling: Sampling | None = None  # recommended sampling (llama-server flags); None where the card states none
    # the release stores exactly its family's release layout (dshub.checkpoint.shapes): its bytes as shipped are
    # that layout's, tensor by tensor, not a per-parameter estimate (DeepSeek-V4's MXFP4 experts)
    sized_by_layout: bool = False


CATALOG: tuple[CatalogEntry, ...] = (
    CatalogEntry("deepseek-v3", "deepseek-ai/DeepSeek-V3", "v3", "fp8", _V3_DIMS),
    CatalogEntry("deepseek-v3-0324", "deepseek-ai/DeepSeek-V3-0324", "v3", "fp8", _V3_DIMS, sampling=V3_0324_SAMPLING),
    CatalogEntry("deepseek-r1", "deepseek-ai/DeepSeek-R1", "r1", "fp8", _V3_DIMS, sampling=R1_SAMPLING),
    CatalogEntry("deepseek-r1-0528", "deepseek-ai/DeepSeek-R1-0528", "r1", "fp8", _V3_DIMS, sampling=R1_SAMPLING),
    CatalogEntry("deepseek-v3.1", "deepseek-ai/DeepSeek-V3.1", "v31", "fp8", _V3_DIMS, aliases=("deepseek-v31",)),
    CatalogEntry("deepseek-v3.1-terminus", "deepseek-ai/DeepSeek-V3.1-Terminus", "v31", "fp8", _V3_DIMS),
    CatalogEntry("deepseek-v3.2", "deepseek-ai/DeepSeek-V3.2", "v32", "fp8", _V32_DIMS, aliases=("deepseek-v32",),
                 sampling=V32_SAMPLING),
    CatalogEntry("deepseek-v3.2-exp", "deepseek-ai/DeepSeek-V3.2-Exp", "v32", "fp8", _V32_DIMS),
    # NVIDIA's NVFP4 releases for Blackwell (serving.md §1.1, §1.5): FP4 experts, 4x B200 with TP4 or DP4+EP.
    CatalogEntry("deepseek-r1-0528-nvfp4", "nvidia/DeepSeek-R1-0528-NVFP4-v2", "r1", "fp4-fp8", _V3_DIMS,
                 default_kv_dtype="fp8", sampling=R1_SAMPLING),  # "-0528-NVFP4-v2 + --kv-cache-dtype fp8"
    CatalogEntry("deepseek-v3.1-nvfp4", "nvidia/DeepSeek-V3.1-NVFP4", "v31", "fp4-fp8", _V3_DIMS),
    CatalogEntry("deepseek-v3.2-nvfp4", "nvidia/DeepSeek-V3.2-NVFP4", "v32", "fp4-fp8", _V32_DIMS, sampling=V32_SAMPLING),
    CatalogEntry("kimi-k2", "moonshotai/Kimi-K2-Instruct", "kimi_k2", "fp8", _KIMI_DIMS, sampling=KIMI_SAMPLING),
    CatalogEntry("kimi-k2-0905", "moonshotai/Kimi-K2-Instruct-0905", "kimi_k2", "fp8",
                 {**_KIMI_DIMS, "max_position_embeddings": 262144}, sampling=KIMI_SAMPLING),
    CatalogEntry("kimi-k2-thinking", "moonshotai/Kimi-K2-Thinking", "kimi_k2_thinking", "int4",
                 {**_KIMI_DIMS, "max_position_embeddings": 262144, "quantization_config": KIMI_K2_THINKING_QC},
                 sampling=KIMI_THINKING_SAMPLING),
    *(CatalogEntry(f"deepseek-r1-distill-{k}", f"deepseek-ai/DeepSeek-R1-Distill-{_DISTILL_NAMES[k]}",
                   "r1_distill_qwen" if k.startswith("qwen") else "r1_distill_llama", "bf16", dims,
                   sampling=R1_DISTILL_SAMPLING)
      for k, dims in DISTILL_DIMS.items()),
    # serving.md §1.6: V4-Flash 284B total / 13B active, 1M context; V4 base args: --kv-cache-dtype fp8.
    CatalogEntry("deepseek-v4-flash", "deepseek-ai/DeepSeek-V4-Flash", "v4", "fp4-fp8", dict(V4_FLASH), sized_by_layout=True,
                 default_kv_dtype="fp8"),
    # V4-Flash-Base: the same architecture with block-FP8 experts (expert_dtype fp8, F32 scales).
    CatalogEntry("deepseek-v4-flash-base", "deepseek-ai/DeepSeek-V4-Flash-Base", "v4", "fp8", dict(V4_FLASH_BASE), sized_by_layout=True,
                 default_kv_dtype="fp8"),
    # serving.md §1.6: V4-Pro 1.6T / 49B; TP16 breaks the FP8 128-blocks (vllm#42384, recipes PR#567).
    CatalogEntry("deepseek-v4-pro", "deepseek-ai/DeepSeek-V4-Pro", "v4", "fp4-fp8", dict(V4_PRO), sized_by_layout=True,
                 max_tp=8, default_kv_dtype="fp8",
                 max_tp_source="MoE 3072/16 = 192 is not a multiple of 128 (vllm#42384, #45784; recipes PR#567)"),
)

_BY_KEY: dict[str, CatalogEntry] = {}
for _e in CATALOG:
    for _k in (_e.name, _e.hub_id, *_e.aliases):
        _BY_KEY[_k.lower()] = _e


@lru_cache(maxsize=None)
def _catalog_info(name: str) -> ModelInfo:
    e = next(x for x in CATALOG if x.name == name)
    if e.config is None:
        return ModelInfo(name=e.name, hub_id=e.hub_id, family=e.family, shipped=e.shipped, source="catalog",
                         params={"total": e.stated_params or 0}, max_context=e.stated_max_context or 0,
                         max_tp=e.max_tp, max_tp_source=e.max_tp_source, stated_bytes=e.stated_bytes,
                         stated_active=e.stated_active, default_kv_dtype=e.default_kv_dtype)
    component_of: dict[str, str] = {}
    info = info_from_config(e.config, name=e.name, hub_id=e.hub_id, family=e.family, shipped=e.shipped, source="catalog",
                            component_of_out=component_of)
    stored = stored_components(shape_checkpoint(e.config), component_of) if e.sized_by_layout else {}
    return replace(info, default_kv_dtype=e.default_kv_dtype, stored_bytes=stored, max_tp=e.max_tp,
                   max_tp_source=e.max_tp_source)  # a stated TP cap holds for a modelled entry too (V4-Pro)


def sampling_for(name: str) -> Sampling | None:
    """The recommended sampling of a catalog model (by its catalog name); None for others and unstated ones."""
    entry = _BY_KEY.get(name.strip().lower())
    return entry.sampling if entry else None


def catalog_entry(model: str) -> CatalogEntry | None:
    return _BY_KEY.get(model.strip().lower())


def hub_id_for(model: str) -> str:
    """The hub repository of a catalog name (`deepseek-v4-flash` -> deepseek-ai/DeepSeek-V4-Flash); a repository id
    (owner/name) is returned as it is."""
    entry = None if "/" in model else catalog_entry(model)
    return entry.hub_id if entry else model


def resolve_model(model: str) -> ModelInfo:
    """MODEL as a local checkpoint directory (or its config.json), a catalog name, or a hub id the catalog knows."""
    p = Path(model).expanduser()
    if p.exists():  # local checkpoints read real headers; kept apart from the offline catalog
        return gguf_info(p) if is_gguf_path(p) else local_info(p)
    entry = catalog_entry(model)
    if entry is None:
        known = ", ".join(e.name for e in CATALOG)
        raise UsageError(f"MODEL {model!r}: not a local checkpoint and not in the catalog; known: {known}")
    return _catalog_info(entry.name)
