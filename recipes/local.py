"""ModelInfo for a local checkpoint: its real config.json, and its real bytes per component from shard headers."""
from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

from dshub.checkpoint.reader import Checkpoint, load_config
from dshub.errors import ConfigError

from dshub.recipes.model_info import ModelInfo, info_from_config, module_of, release_of

# quantization_config.quant_method -> shipped weight format
SHIPPED_BY_QUANT_METHOD: dict[str, str] = {"fp8": "fp8", "compressed-tensors": "int4", "gptq": "int4", "awq": "int4"}


def _shipped(config: dict[str, Any], encoding: str | None) -> str:
    qc = config.get("quantization_config") or {}
    if qc.get("quant_method") == "fp8" and qc.get("expert_dtype", config.get("expert_dtype")) == "fp4":
        return "fp4-fp8"  # DeepSeek-V4: MXFP4 routed experts, block FP8 elsewhere
    if qc.get("quant_method") in SHIPPED_BY_QUANT_METHOD:
        return SHIPPED_BY_QUANT_METHOD[qc["quant_method"]]
    return {"fp8-block": "fp8"}.get(encoding or "", encoding or "bf16")


def local_info(path: Path) -> ModelInfo:
    """A checkpoint directory (config + real shard bytes) or a bare config.json (config only)."""
    if path.is_file():
        if path.name != "config.json":
            raise ConfigError("MODEL must be a checkpoint directory or its config.json", path=str(path))
        config = load_config(path.parent)
        name = path.parent.name or "model"
        return info_from_config(config, name=name, hub_id=None, family=release_of(config, name, path.parent),
                                shipped=_shipped(config, None), source="local", path=str(path.parent))
    if not (path / "model.safetensors.index.json").exists() and not (path / "model.safetensors").exists():
        config = load_config(path)
        return info_from_config(config, name=path.name, hub_id=None, family=release_of(config, path.name, path),
                                shipped=_shipped(config, None), source="local", path=str(path))
    ckpt = Checkpoint.open(path)
    component_of: dict[str, str] = {}
    info = info_from_config(ckpt.config, name=path.name, hub_id=None, family=release_of(ckpt.config, path.name, path),
                            shipped=_shipped(ckpt.config, ckpt.encoding.name), source="local", path=str(path),
                            component_of_out=component_of)
    return replace(info, stored_bytes=stored_components(ckpt, component_of))


def stored_components(ckpt: Checkpoint, component_of: dict[str, str]) -> dict[str, int]:
    """The bytes a checkpoint stores, per planner component (scales and packed forms count with their module)."""
    stored: dict[str, int] = {}
    for tensor in ckpt.weight_map:
        comp = component_of.get(tensor) or component_of.get(module_of(tensor), "other")
        stored[comp] = stored.get(comp, 0) + ckpt.entry(tensor).nbytes
    return dict(sorted(stored.items()))
