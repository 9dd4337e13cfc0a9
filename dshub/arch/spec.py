"""ArchSpec / TensorSpec: the one table verify, converters and the planner read."""
from __future__ import annotations

from functools import cached_property

import math
from dataclasses import dataclass, field
from enum import Enum
from typing import Any, Iterator

from dshub.errors import ConfigError


class Role(str, Enum):
    ATTN = "attn"
    DENSE_MLP = "dense_mlp"
    EXPERT = "expert"
    SHARED_EXPERT = "shared_expert"
    ROUTER = "router"
    ROUTER_BIAS = "router_bias"
    NORM = "norm"
    EMBED = "embed"
    HEAD = "head"
    MTP = "mtp"  # MTP-only extras: enorm, hnorm, eh_proj, shared_head.*, embed_tokens
    INDEXER = "indexer"  # sparse-attention indexer (DeepSeek-V3.2's lightning indexer)


# Stored dtypes a tensor may have (safetensors tags): the data the "dtypes" verify check reads.
FLOAT_DTYPES: frozenset[str] = frozenset({"BF16", "F16", "F32"})
FP8_WEIGHT_DTYPES: frozenset[str] = frozenset({"F8_E4M3"})  # a block-FP8 linear weight (fmt e4m3)
FP8_SCALE_DTYPES: frozenset[str] = frozenset({"F32"})  # its weight_scale_inv, unless the family says otherwise
DTYPES_BY_ROLE: dict[Role, frozenset[str]] = {role: FLOAT_DTYPES for role in Role}  # norms, routers, embeddings: float
# MXFP4 (OCP microscaling) weights: two e2m1 codes per byte `[out, in/2]`, one e8m0 scale per 32 inputs `[out, in/32]`.
MXFP4_CODE_DTYPES: frozenset[str] = frozenset({"I8", "U8"})
MXFP4_SCALE_DTYPES: frozenset[str] = frozenset({"F8_E8M0", "U8"})
MXFP4_GROUP = 32
INT_TABLE_DTYPES: frozenset[str] = frozenset({"I32", "I64"})


def fp8_scale_name(weight: str) -> str:
    """The block-FP8 scale tensor of a weight: `x.weight` -> `x.weight_scale_inv` (the one place this name is made)."""
    return weight[: -len(".weight")] + ".weight_scale_inv" if weight.endswith(".weight") else weight + "_scale_inv"


@dataclass(frozen=True)
class TensorSpec:
    """One expected tensor. `linear` weights are [out, in]; `fp8` ones carry a `_scale_inv` in block-FP8 checkpoints.

    `scale` names the scale tensor where a family does not use `_scale_inv` (DeepSeek-V4: `<x>.scale`); `mxfp4`
    weights are stored as MXFP4 codes (`shape` stays the logical [out, in]); `dtypes` replaces the role's floats
    (integer tables), whose values must lie in [0, `max_value`).
    """

    name: str
    shape: tuple[int, ...]
    role: Role
    layer: int | None = None
    expert: int | None = None
    linear: bool = False
    fp8: bool = False
    mtp: bool = False  # belongs to an MTP (next-n) layer
    scale: str | None = None
    mxfp4: bool = False
    dtypes: frozenset[str] | None = None
    max_value: int | None = None

    @property
    def numel(self) -> int:
        return math.prod(self.shape)

    @property
    def scale_name(self) -> str:
        return self.scale or fp8_scale_name(self.name)

    @property
    def quantized(self) -> bool:
        """Stored with a scale tensor beside it (block FP8 or MXFP4)."""
        return self.fp8 or self.mxfp4

    @property
    def stored_shape(self) -> tuple[int, ...]:
        """The shape on disk: MXFP4 packs two codes per byte along the input dimension."""
        return (*self.shape[:-1], self.shape[-1] // 2) if self.mxfp4 else self.shape

    def mxfp4_scale_shape(self) -> tuple[int, ...]:
        return (*self.shape[:-1], math.ceil(self.shape[-1] / MXFP4_GROUP))

    def allowed_dtypes(self, fp8_checkpoint: bool) -> frozenset[str]:
        """The stored dtypes this tensor may have: its role's floats, plus FP8 for an FP8 linear of an FP8 checkpoint
        (MXFP4 codes for an MXFP4 one; a table's own integer dtypes)."""
        if self.dtypes is not None:
            return self.dtypes
        fp8 = FP8_WEIGHT_DTYPES if fp8_checkpoint and self.fp8 else frozenset()
        mx = MXFP4_CODE_DTYPES if self.mxfp4 else frozenset()
        return DTYPES_BY_ROLE[self.role] | fp8 | mx


@dataclass
class ArchSpec:
    """Expected tensors (in canonical order) and the model's key dimensions."""

    architecture: str
    config: dict[str, Any]
    tensors: list[TensorSpec] = field(default_factory=list)
    num_layers: int = 0
    num_mtp_layers: int = 0
    experts_per_token: int = 0
    num_experts: int = 0
    scale_dtypes: frozenset[str] = FP8_SCALE_DTYPES  # the family's allowed weight_scale_inv dtypes
    release_scale_dtype: str = "F32"  # the dtype the release stores FP8 block scales in (DeepSeek-V4: F8_E8M0)

    def __iter__(self) -> Iterator[TensorSpec]:
        return iter(self.tensors)

    @cached_property
    def by_name(self) -> dict[str, TensorSpec]:
        """Each tensor by name, built once (converters look every stored tensor up in it)."""
        return {t.name: t for t in self.tensors}

    def params(self) -> dict[str, int]:
        """Parameter counts: total (main model), active per token, mtp (extra), routed experts."""
        main = [t for t in self.tensors if not t.mtp]
        total = sum(t.numel for t in main)
        routed = sum(t.numel for t in main if t.role is Role.EXPERT)
        moe_layers = len({t.layer for t in main if t.role is Role.EXPERT})
        per_expert_layer = routed / max(1, moe_layers * self.num_experts) if self.num_experts else 0
        active = total - routed + int(per_expert_layer * self.experts_per_token * moe_layers)
        mtp = sum(t.numel for t in self.tensors if t.mtp)
        return {"total": total, "active": active, "mtp": mtp, "routed_experts": routed}


def require(config: dict[str, Any], *keys: str) -> list[Any]:
    """Fetch required config fields, or raise ConfigError naming the first missing one."""
    out = []
    for k in keys:
        if config.get(k) is None:
            raise ConfigError(f"required field {k!r} is missing", path="config.json")
        out.append(config[k])
    return out
