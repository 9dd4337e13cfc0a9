"""config.json as a validated model: field types, positive dimensions and sane upper bounds, checked before any
command sizes anything from it. The fields are the ones dshub reads; others pass through unchecked."""
from __future__ import annotations

from typing import Annotated, Any, Optional

from pydantic import (
    BaseModel, ConfigDict, Field, StrictBool, StrictInt, StrictStr, ValidationError, field_validator, model_validator,
)

from dshub.errors import ConfigError

MAX_LAYERS = 1024
MAX_EXPERTS = 4096
MAX_HIDDEN = 65536
MAX_VOCAB = 10_000_000
MAX_WIDTH = 1 << 20  # FFN widths and per-head dimensions
MAX_POSITIONS = 1 << 24
MAX_EXPERT_INSTANCES = 1 << 18  # layers x routed experts: each is three tensors to list (V3: 61 x 256; Kimi-K2: 61 x 384)

Dim = Annotated[StrictInt, Field(gt=0, le=MAX_WIDTH)]
Count = Annotated[StrictInt, Field(ge=0, le=MAX_WIDTH)]


class QuantizationConfig(BaseModel):
    """The parts of `quantization_config` dshub reads (block-FP8 and INT4 keep their other fields)."""

    model_config = ConfigDict(extra="allow")

    quant_method: Optional[StrictStr] = None
    fmt: Optional[StrictStr] = None
    weight_block_size: Optional[tuple[Annotated[StrictInt, Field(gt=0, le=MAX_HIDDEN)], Annotated[StrictInt, Field(gt=0, le=MAX_HIDDEN)]]] = None
    modules_to_not_convert: Optional[list[StrictStr]] = None


class ModelConfig(BaseModel):
    """config.json's dimensions as the families read them. Missing fields are the family's to require."""

    model_config = ConfigDict(extra="allow")

    architectures: Optional[list[StrictStr]] = None
    model_type: Optional[StrictStr] = None
    hidden_size: Optional[Annotated[StrictInt, Field(gt=0, le=MAX_HIDDEN)]] = None
    num_hidden_layers: Optional[Annotated[StrictInt, Field(gt=0, le=MAX_LAYERS)]] = None
    num_attention_heads: Optional[Annotated[StrictInt, Field(gt=0, le=MAX_HIDDEN)]] = None
    num_key_value_heads: Optional[Annotated[StrictInt, Field(gt=0, le=MAX_HIDDEN)]] = None
    vocab_size: Optional[Annotated[StrictInt, Field(gt=0, le=MAX_VOCAB)]] = None
    intermediate_size: Optional[Dim] = None
    moe_intermediate_size: Optional[Dim] = None
    kv_lora_rank: Optional[Dim] = None
    q_lora_rank: Optional[Dim] = None
    qk_nope_head_dim: Optional[Dim] = None
    qk_rope_head_dim: Optional[Dim] = None
    v_head_dim: Optional[Dim] = None
    index_n_heads: Optional[Dim] = None
    index_head_dim: Optional[Dim] = None
    index_topk: Optional[Dim] = None
    n_routed_experts: Optional[Annotated[StrictInt, Field(ge=0, le=MAX_EXPERTS)]] = None
    n_shared_experts: Optional[Annotated[StrictInt, Field(ge=0, le=MAX_EXPERTS)]] = None
    num_experts_per_tok: Optional[Annotated[StrictInt, Field(gt=0, le=MAX_EXPERTS)]] = None
    n_group: Optional[Annotated[StrictInt, Field(gt=0, le=MAX_EXPERTS)]] = None
    topk_group: Optional[Annotated[StrictInt, Field(gt=0, le=MAX_EXPERTS)]] = None
    first_k_dense_replace: Optional[Annotated[StrictInt, Field(ge=0, le=MAX_LAYERS)]] = None
    moe_layer_freq: Optional[Annotated[StrictInt, Field(gt=0, le=MAX_LAYERS)]] = None
    num_nextn_predict_layers: Optional[Annotated[StrictInt, Field(ge=0, le=MAX_LAYERS)]] = None
    max_position_embeddings: Optional[Annotated[StrictInt, Field(gt=0, le=MAX_POSITIONS)]] = None
    topk_method: Optional[StrictStr] = None
    tie_word_embeddings: Optional[StrictBool] = None
    quantization_config: Optional[QuantizationConfig] = None

    @field_validator("architectures")
    @classmethod
    def _some_architecture(cls, v: list[str] | None) -> list[str] | None:
        if v is not None and not v:
            raise ValueError("must name at least one architecture")
        return v

    @model_validator(mode="after")
    def _bounded_inventory(self) -> "ModelConfig":
        layers = (self.num_hidden_layers or 0) + (self.num_nextn_predict_layers or 0)
        if layers * (self.n_routed_experts or 0) > MAX_EXPERT_INSTANCES:
            raise ValueError(f"n_routed_experts x layers is {layers * (self.n_routed_experts or 0)}, more than the "
                             f"{MAX_EXPERT_INSTANCES} expert instances dshub lists")
        return self


def validate_config(doc: Any, *, path: str, show_path: str = "config.json") -> dict[str, Any]:
    """`doc` checked against ModelConfig and returned unchanged; a ConfigError naming file and field otherwise."""
    if not isinstance(doc, dict):
        raise ConfigError("not a JSON object", path=path, show_path=show_path)
    try:
        ModelConfig.model_validate(doc)
    except ValidationError as e:
        first = e.errors()[0]
        msg = first["msg"].removeprefix("Value error, ")
        if not first["loc"]:  # a check across fields: its message names them
            raise ConfigError(msg, path=path, show_path=show_path) from None
        field = ".".join(str(p) for p in first["loc"])
        got = repr(first.get("input"))
        got = got if len(got) <= 40 else got[:37] + "..."
        raise ConfigError(f"field {field}: {msg} (got {got})", path=path, show_path=show_path) from None
    return doc
