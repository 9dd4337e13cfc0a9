"""Weight bytes per planner component from the converters' own shape-only plans (`dshub.converters.sizing`).

For every format dshub writes itself (bf16, int4, and each `gguf:TYPE` it has a scheme for) the planner prices a
model with exactly the bytes `dshub convert --dry-run` and `dshub info` print: a local checkpoint's real headers, or
a catalog model's release layout from its config.json. Formats dshub does not write (fp8 as released, fp4-fp8,
GGUF types without a scheme) keep the per-parameter tables in `formats.py`. Header and metadata bytes count as "other".
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from dshub.arch import family_for
from dshub.checkpoint.reader import Checkpoint
from dshub.checkpoint.shapes import shape_checkpoint
from dshub.converters.gguf.schemes import SCHEMES
from dshub.converters.sizing import PlannedBytes, planned_bytes, target_options
from dshub.errors import DshubError
from dshub.formats.int4_config import int4_config
from dshub.recipes.formats import WeightFormat
from dshub.recipes.model_info import ModelInfo, breakdown, module_of

_CACHE: dict[tuple[Any, ...], dict[str, int] | None] = {}


def converter_target(fmt: WeightFormat, config: dict[str, Any] | None = None) -> tuple[str, dict[str, Any]] | None:
    """The `dshub convert` target and options that write `fmt`, or None when dshub does not write it. INT4 of a
    checkpoint released in INT4 takes the release's own layout (its quantization_config: format, group size,
    symmetry, and the scope its ignore list leaves), e.g. Kimi-K2-Thinking's groups of 32."""
    if fmt.is_gguf:
        return ("gguf", {"quant": fmt.gguf_type}) if fmt.gguf_type in SCHEMES else None
    if fmt.name == "int4" and config and (shipped := shipped_int4_options(config)):
        return "int4", shipped
    return (fmt.name, {}) if fmt.name in ("bf16", "int4") else None


def shipped_int4_options(config: dict[str, Any]) -> dict[str, Any] | None:
    """`--to int4` options reproducing the INT4 layout config.json declares (None when it declares none)."""
    cfg = int4_config(config)
    if cfg is None:
        return None
    fam = family_for(config)
    scopes = fam.int4_scopes()
    scoped = frozenset().union(*scopes.values())
    packed = {t.role for t in fam.inventory(config) if t.linear and not t.mtp and t.role in scoped
              and not cfg.is_left_out(module_of(t.name))}
    scope = next((name for name, roles in scopes.items() if packed <= roles), "all-linear")
    return {"format": cfg.format, "group_size": cfg.group_size, "symmetric": cfg.symmetric, "scope": scope}


def _release_source(config: dict[str, Any]) -> dict[str, Any]:
    """A config released in INT4, planned from its unquantized layout (what the release was packed from)."""
    return {k: v for k, v in config.items() if k != "quantization_config"} if int4_config(config) else config


def _source(model: ModelInfo) -> Checkpoint:
    """The checkpoint to plan on: the local one with its real headers, else the config's release layout."""
    root = Path(model.path) if model.path else Path(f"({model.source})") / model.name
    if model.source == "local" and model.stored_bytes and root.is_dir():
        return Checkpoint.open(root)
    return shape_checkpoint(_release_source(model.config or {}), root)


def _mtp_options(target: str, with_mtp: bool) -> dict[str, Any]:
    return {"mtp": with_mtp} if target == "gguf" else {"drop_mtp": not with_mtp}


def planned_components(model: ModelInfo, fmt: WeightFormat) -> dict[str, int] | None:
    """Bytes per component ("mtp" = what keeping the MTP layers adds), or None when no converter writes `fmt`
    or the converter refuses this model (the caller then uses the per-parameter estimate)."""
    target = converter_target(fmt, model.config)
    if target is None or not model.modelled:
        return None
    # what the plan depends on: the model's config and (for a local checkpoint) its stored bytes, and the format
    key = (model.source, model.name, model.path, fmt.name, json.dumps(model.config, sort_keys=True, default=str),
           tuple(sorted(model.stored_bytes.items())))
    if key not in _CACHE:
        _CACHE[key] = _components(model, *target)
    return _CACHE[key]


def _components(model: ModelInfo, target: str, values: dict[str, Any]) -> dict[str, int] | None:
    try:
        ckpt = _source(model)
        without = planned_bytes(ckpt, target_options(target, **values, **_mtp_options(target, False)))
    except DshubError:
        return None
    try:
        full = planned_bytes(ckpt, target_options(target, **values, **_mtp_options(target, True))) if model.mtp_layers else without
    except DshubError:  # the target leaves the MTP layers out for this family (DeepSeek-V4 GGUF): nothing to add
        full = without
    config = ckpt.config
    fam = family_for(config)
    _, component_of = breakdown(fam.inventory(config), fam.planner.components)
    parts = _group(without, component_of)
    parts["mtp"] = full.total - without.total
    return parts


def _group(pb: PlannedBytes, component_of: dict[str, str]) -> dict[str, int]:
    parts: dict[str, int] = {}
    for tensor, n in pb.by_tensor.items():
        comp = component_of.get(tensor) or component_of.get(module_of(tensor), "other")
        parts[comp] = parts.get(comp, 0) + n
    parts["other"] = parts.get("other", 0) + pb.overhead
    return parts
