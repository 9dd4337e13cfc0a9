"""ModelInfo: everything the planner needs about one model, built from its family's facts (dshub.arch).

Catalog entries (models.py), local checkpoints (local.py) and local GGUFs (local_gguf.py) all end here. `family` is
the release key (v3, r1, v31, v32, kimi_k2, ...) the engine facts are looked up by; `architecture` the HF name.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping

from dshub.arch import family_for
from dshub.arch.family import Family, find_release
from dshub.arch.spec import ArchSpec, Role

COMPONENTS: tuple[str, ...] = ("attn", "expert", "shared", "dense", "embed", "head", "other")


@dataclass(frozen=True)
class ModelInfo:
    """Everything the planner needs about one model, from the catalog or from a local checkpoint."""

    name: str
    hub_id: str | None
    family: str  # release key: what the engine fact tables are keyed by
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
    architecture: str | None = None  # HF architecture of the family; None when not modelled
    kv_elems_per_layer: int = 0  # KV-cache elements per token per layer (the family's formula)
    # (engine, kv dtype) -> KV bytes per token per layer where the engine stores the cache its own way
    kv_bytes_per_layer: Mapping[tuple[str, str], int] = field(default_factory=dict)

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


def module_of(tensor: str) -> str:
    """`model.layers.3.mlp.experts.7.up_proj.weight_packed` -> `model.layers.3.mlp.experts.7.up_proj`."""
    return tensor.rsplit(".", 1)[0]


def breakdown(spec: ArchSpec, components: Mapping[Role, str]) -> tuple[dict[str, int], dict[str, str]]:
    """Parameters per planner component (MTP layers apart), and the component of every tensor and module name."""
    params = {c: 0 for c in (*COMPONENTS, "mtp")}
    component_of: dict[str, str] = {}
    for t in spec:
        comp = "mtp" if t.mtp else components[t.role]
        params[comp] += t.numel
        component_of[t.name] = comp
        component_of[module_of(t.name)] = comp  # its scales / packed forms share the module name
    return params, component_of


def release_of(config: dict[str, Any], name: str) -> str:
    """The release key of a local checkpoint: by its directory name, else its model_type, else the family's first."""
    return find_release(name, config.get("model_type"), family_for(config)).key


def info_from_config(config: dict[str, Any], *, name: str, hub_id: str | None, family: str, shipped: str,
                     source: str, path: str | None = None, component_of_out: dict[str, str] | None = None) -> ModelInfo:
    """ModelInfo for a config.json (catalog or local)."""
    fam: Family = family_for(config)
    spec = fam.inventory(config)
    params, component_of = breakdown(spec, fam.planner.components)
    if component_of_out is not None:
        component_of_out.update(component_of)
    moe_layers = len({t.layer for t in spec if t.role is Role.EXPERT and not t.mtp})
    return ModelInfo(
        name=name, hub_id=hub_id, family=family, shipped=shipped, source=source, path=path, config=config,
        params=params, layers=spec.num_layers, moe_layers=moe_layers,
        mtp_layers=spec.num_mtp_layers, heads=int(config["num_attention_heads"]),
        kv_lora_rank=int(config.get("kv_lora_rank") or 0), qk_rope_head_dim=int(config["qk_rope_head_dim"]),
        n_experts=spec.num_experts, max_context=int(config.get("max_position_embeddings") or 0),
        tp_split_dims=fam.planner.tp_split_dims(config), architecture=spec.architecture,
        kv_elems_per_layer=fam.planner.kv_elems_per_token_layer(config), kv_bytes_per_layer=fam.planner.kv_bytes_per_layer,
    )
