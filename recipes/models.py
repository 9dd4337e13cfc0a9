"""The model catalog (works offline) and resolution of MODEL: a catalog name, a hub id, or a local checkpoint.

Each catalog entry carries the architecture fields of the model's real config.json, so parameter counts come
from `dshub.arch.spec_for` exactly as for a local checkpoint. Sources, per entry:
- DeepSeek-V3/R1/V3.1/V3.2: the `config.json` of each deepseek-ai repository; the dims are the ones listed in
  ../shared/reference/serving.md §5 (61 layers, hidden 7168, 128 heads, kv_lora 512, rope 64, 256+1 experts).
- Kimi-K2: moonshotai/Kimi-K2-Instruct `config.json` (DeepseekV3ForCausalLM with 64 heads, 384 experts,
  first_k_dense_replace 1, vocab 163840, no MTP layer); Kimi-K2-Thinking ships compressed-tensors INT4
  (serving.md §1.5).
- DeepSeek-V4: only what serving.md §1.6 states (parameter totals, checkpoint sizes, TP cap); its attention is not
  MLA-compatible with the formulas here, so its KV cache is not modelled.
"""
from __future__ import annotations

from dataclasses import dataclass, field, replace
from functools import lru_cache
from pathlib import Path
from typing import Any

from dshub.arch import spec_for
from dshub.arch.spec import ArchSpec, Role
from dshub.errors import UnsupportedArchitecture, UsageError

FP8_QC = {"activation_scheme": "dynamic", "fmt": "e4m3", "quant_method": "fp8", "weight_block_size": [128, 128]}

# DeepSeek-V3 architecture fields (deepseek-ai/DeepSeek-V3 config.json); R1, V3.1 and V3.2 share them.
_V3_DIMS: dict[str, Any] = dict(
    architectures=["DeepseekV3ForCausalLM"], model_type="deepseek_v3", hidden_size=7168, intermediate_size=18432,
    moe_intermediate_size=2048, num_hidden_layers=61, num_attention_heads=128, num_key_value_heads=128,
    n_shared_experts=1, n_routed_experts=256, num_experts_per_tok=8, first_k_dense_replace=3, moe_layer_freq=1,
    q_lora_rank=1536, kv_lora_rank=512, qk_nope_head_dim=128, qk_rope_head_dim=64, v_head_dim=128,
    vocab_size=129280, max_position_embeddings=163840, num_nextn_predict_layers=1, topk_method="noaux_tc",
    n_group=8, topk_group=4, quantization_config=FP8_QC,
)
# DeepSeek-V3.2 adds the lightning indexer (deepseek-ai/DeepSeek-V3.2 config.json).
_V32_DIMS = {**_V3_DIMS, "architectures": ["DeepseekV32ForCausalLM"], "model_type": "deepseek_v32",
             "index_n_heads": 64, "index_head_dim": 128, "index_topk": 2048}
# moonshotai/Kimi-K2-Instruct config.json.
_KIMI_DIMS = {**_V3_DIMS, "model_type": "kimi_k2", "num_attention_heads": 64, "num_key_value_heads": 64,
              "n_routed_experts": 384, "first_k_dense_replace": 1, "vocab_size": 163840,
              "max_position_embeddings": 131072, "num_nextn_predict_layers": 0, "n_group": 1, "topk_group": 1}


@dataclass(frozen=True)
class CatalogEntry:
    """A released model: where it lives and how it ships."""

    name: str
    hub_id: str
    family: str  # key into the engine fact tables: v3, r1, v31, v32, kimi_k2, kimi_k2_thinking, v4
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


CATALOG: tuple[CatalogEntry, ...] = (
    CatalogEntry("deepseek-v3", "deepseek-ai/DeepSeek-V3", "v3", "fp8", _V3_DIMS),
    CatalogEntry("deepseek-v3-0324", "deepseek-ai/DeepSeek-V3-0324", "v3", "fp8", _V3_DIMS),
    CatalogEntry("deepseek-r1", "deepseek-ai/DeepSeek-R1", "r1", "fp8", _V3_DIMS),
    CatalogEntry("deepseek-r1-0528", "deepseek-ai/DeepSeek-R1-0528", "r1", "fp8", _V3_DIMS),
    CatalogEntry("deepseek-v3.1", "deepseek-ai/DeepSeek-V3.1", "v31", "fp8", _V3_DIMS, aliases=("deepseek-v31",)),
    CatalogEntry("deepseek-v3.1-terminus", "deepseek-ai/DeepSeek-V3.1-Terminus", "v31", "fp8", _V3_DIMS),
    CatalogEntry("deepseek-v3.2", "deepseek-ai/DeepSeek-V3.2", "v32", "fp8", _V32_DIMS, aliases=("deepseek-v32",)),
    CatalogEntry("deepseek-v3.2-exp", "deepseek-ai/DeepSeek-V3.2-Exp", "v32", "fp8", _V32_DIMS),
    # NVIDIA's NVFP4 releases for Blackwell (serving.md §1.1, §1.5): FP4 experts, 4x B200 with TP4 or DP4+EP.
    CatalogEntry("deepseek-r1-0528-nvfp4", "nvidia/DeepSeek-R1-0528-NVFP4-v2", "r1", "fp4-fp8", _V3_DIMS,
                 default_kv_dtype="fp8"),  # "-0528-NVFP4-v2 + --kv-cache-dtype fp8"
    CatalogEntry("deepseek-v3.1-nvfp4", "nvidia/DeepSeek-V3.1-NVFP4", "v31", "fp4-fp8", _V3_DIMS),
    CatalogEntry("deepseek-v3.2-nvfp4", "nvidia/DeepSeek-V3.2-NVFP4", "v32", "fp4-fp8", _V32_DIMS),
    CatalogEntry("kimi-k2", "moonshotai/Kimi-K2-Instruct", "kimi_k2", "fp8", _KIMI_DIMS),
    CatalogEntry("kimi-k2-0905", "moonshotai/Kimi-K2-Instruct-0905", "kimi_k2", "fp8",
                 {**_KIMI_DIMS, "max_position_embeddings": 262144}),
    CatalogEntry("kimi-k2-thinking", "moonshotai/Kimi-K2-Thinking", "kimi_k2_thinking", "int4",
                 {**_KIMI_DIMS, "max_position_embeddings": 262144}),
    # serving.md §1.6: V4-Flash 284B total / 13B active, ~160-167 GB, 1M context.
    CatalogEntry("deepseek-v4-flash", "deepseek-ai/DeepSeek-V4-Flash", "v4", "fp4-fp8", None,
                 stated_params=284_000_000_000, stated_active=13_000_000_000, stated_bytes=167_000_000_000,
                 stated_max_context=1_048_576, default_kv_dtype="fp8"),  # V4 base args: --kv-cache-dtype fp8
    # serving.md §1.6: V4-Pro 1.6T / 49B, ~865-893 GB; TP16 breaks the FP8 128-blocks (vllm#42384, recipes PR#567).
    CatalogEntry("deepseek-v4-pro", "deepseek-ai/DeepSeek-V4-Pro", "v4", "fp4-fp8", None,
                 stated_params=1_600_000_000_000, stated_active=49_000_000_000, stated_bytes=893_000_000_000,
                 stated_max_context=1_048_576, max_tp=8, default_kv_dtype="fp8",
                 max_tp_source="MoE 3072/16 = 192 is not a multiple of 128 (vllm#42384, #45784; recipes PR#567)"),
)

_BY_KEY: dict[str, CatalogEntry] = {}
for _e in CATALOG:
    for _k in (_e.name, _e.hub_id, *_e.aliases):
        _BY_KEY[_k.lower()] = _e

@dataclass(frozen=True)
class ModelInfo:
    """Everything the planner needs about one model, from the catalog or from a local checkpoint."""

    name: str
    hub_id: str | None
    family: str
    shipped: str
    source: str  # "catalog" | "local"
    path: str | None = None
    config: dict[str, Any] | None = None
    # parameters by component (main model): attn, expert, shared, dense, embed, head, other; and mtp (extra layers)
    params: dict[str, int] = field(default_factory=dict)
    # real on-disk bytes by component for a local checkpoint (same keys), else empty
    stored_bytes: dict[str, int] = field(default_factory=dict)
    layers: int = 0
    moe_layers: int = 0
    mtp_layers: int = 0
    heads: int = 0
    kv_lora_rank: int = 0
    qk_rope_head_dim: int = 0
    n_experts: int = 0
    max_context: int = 0
    # widths that tensor parallelism slices, by component (for the FP8 128-block guard)
    tp_split_dims: dict[str, tuple[int, ...]] = field(default_factory=dict)
    max_tp: int | None = None
    max_tp_source: str = ""
    stated_bytes: int | None = None
    stated_active: int | None = None
    default_kv_dtype: str | None = None

    @property
    def total_params(self) -> int:
        return sum(v for k, v in self.params.items() if k != "mtp")

    @property
    def modelled(self) -> bool:
        """True when the architecture (and so the KV cache) is modelled, not just stated."""
        return self.config is not None

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name, "hub_id": self.hub_id, "family": self.family, "shipped": self.shipped,
            "source": self.source, "path": self.path, "params": dict(self.params), "total_params": self.total_params,
            "layers": self.layers, "moe_layers": self.moe_layers, "mtp_layers": self.mtp_layers, "heads": self.heads,
            "kv_lora_rank": self.kv_lora_rank, "qk_rope_head_dim": self.qk_rope_head_dim,
            "n_experts": self.n_experts, "max_context": self.max_context, "modelled": self.modelled,
        }


# ArchSpec role -> planner component. Norms, router and its bias are small and always replicated ("other").
_COMPONENT: dict[Role, str] = {
    Role.ATTN: "attn", Role.EXPERT: "expert", Role.SHARED_EXPERT: "shared", Role.DENSE_MLP: "dense",
    Role.EMBED: "embed", Role.HEAD: "head", Role.NORM: "other", Role.ROUTER: "other", Role.ROUTER_BIAS: "other",
    Role.MTP: "mtp", Role.INDEXER: "attn",
}
COMPONENTS: tuple[str, ...] = ("attn", "expert", "shared", "dense", "embed", "head", "other")


def module_of(tensor: str) -> str:
    """`model.layers.3.mlp.experts.7.up_proj.weight_packed` -> `model.layers.3.mlp.experts.7.up_proj`."""
    return tensor.rsplit(".", 1)[0]


def _breakdown(spec: ArchSpec) -> tuple[dict[str, int], dict[str, str]]:
    params = {c: 0 for c in (*COMPONENTS, "mtp")}
    component_of: dict[str, str] = {}
    for t in spec:
        comp = "mtp" if t.mtp else _COMPONENT[t.role]
        params[comp] += t.numel
        component_of[t.name] = comp
        component_of[module_of(t.name)] = comp  # its scales / packed forms share the module name
    return params, component_of


def _tp_split_dims(config: dict[str, Any]) -> dict[str, tuple[int, ...]]:
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


def info_from_config(config: dict[str, Any], *, name: str, hub_id: str | None, family: str, shipped: str,
                     source: str, path: str | None = None, component_of_out: dict[str, str] | None = None) -> ModelInfo:
    """ModelInfo for a config.json (catalog or local)."""
    spec = spec_for(config)
    params, component_of = _breakdown(spec)
    if component_of_out is not None:
        component_of_out.update(component_of)
    moe_layers = len({t.layer for t in spec if t.role is Role.EXPERT and not t.mtp})
    return ModelInfo(
        name=name, hub_id=hub_id, family=family, shipped=shipped, source=source, path=path, config=config,
        params=params, layers=spec.num_layers, moe_layers=moe_layers,
        mtp_layers=spec.num_mtp_layers, heads=int(config["num_attention_heads"]),
        kv_lora_rank=int(config["kv_lora_rank"]), qk_rope_head_dim=int(config["qk_rope_head_dim"]),
        n_experts=spec.num_experts, max_context=int(config.get("max_position_embeddings") or 0),
        tp_split_dims=_tp_split_dims(config),
    )


@lru_cache(maxsize=None)
def _catalog_info(name: str) -> ModelInfo:
    e = next(x for x in CATALOG if x.name == name)
    if e.config is None:
        return ModelInfo(name=e.name, hub_id=e.hub_id, family=e.family, shipped=e.shipped, source="catalog",
                         params={"total": e.stated_params or 0}, max_context=e.stated_max_context or 0,
                         max_tp=e.max_tp, max_tp_source=e.max_tp_source, stated_bytes=e.stated_bytes,
                         stated_active=e.stated_active, default_kv_dtype=e.default_kv_dtype)
    info = info_from_config(e.config, name=e.name, hub_id=e.hub_id, family=e.family, shipped=e.shipped, source="catalog")
    return replace(info, default_kv_dtype=e.default_kv_dtype)


def catalog_entry(model: str) -> CatalogEntry | None:
    return _BY_KEY.get(model.strip().lower())


def resolve_model(model: str) -> ModelInfo:
    """MODEL as a local checkpoint directory (or its config.json), a catalog name, or a hub id the catalog knows."""
    p = Path(model).expanduser()
    if p.exists():
        # local checkpoints read real headers; kept apart from the offline catalog
        if p.suffix == ".gguf" or (p.is_dir() and any(p.glob("*.gguf")) and not (p / "config.json").exists()):
            from dshub.recipes.local_gguf import gguf_info

            return gguf_info(p)
        from dshub.recipes.local import local_info

        return local_info(p)
    entry = catalog_entry(model)
    if entry is None:
        known = ", ".join(e.name for e in CATALOG)
        raise UsageError(f"MODEL {model!r}: not a local checkpoint and not in the catalog; known: {known}")
    return _catalog_info(entry.name)
