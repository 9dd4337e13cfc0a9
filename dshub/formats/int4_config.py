"""INT4 (W4A16) `quantization_config`, written and read in one place: the config each format's engines read
(compressed-tensors `pack-quantized`, GPTQ v1, AWQ GEMM), the packed tensors each quantized linear must have, and the
problems `dshub verify` reports (shapes vs `weight_shape`, non-finite scales, modules neither packed nor left out)."""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Callable, Iterator

import torch

from dshub.quant.int4 import FORMATS, Int4Error, Int4Scheme, packed_layout, scheme_for

from dshub.arch.spec import ArchSpec, TensorSpec
from dshub.checkpoint.reader import Checkpoint
from dshub.checkpoint.header import TensorEntry
from dshub.checkpoint.writer import TORCH_TO_ST

Problem = tuple[str, str | None, str | None, str]  # severity, file, tensor, message
SCALE_SUFFIXES = ("weight_scale", "scales")
SHAPE_SUFFIX = "weight_shape"


@dataclass(frozen=True)
class Int4Config:
    """What an INT4 checkpoint's config.json says: format, group size, symmetry, and how it names left-out modules."""

    format: str
    group_size: int
    symmetric: bool
    left_out: tuple[str, ...]  # as written: exact names, "re:" patterns (ct), substrings (AWQ), "-:" regexes (GPTQ)

    @property
    def scheme(self) -> Int4Scheme:
        return scheme_for(self.format, self.group_size, self.symmetric)

    def is_left_out(self, module: str) -> bool:
        return LEFT_OUT_MATCH[self.format](self.left_out, module)


def _ct(qc: dict[str, Any]) -> Int4Config | None:
    if qc.get("format") != "pack-quantized":
        return None
    for group in (qc.get("config_groups") or {}).values():
        w = group.get("weights") or {}
        if w.get("num_bits") == 4 and w.get("type") == "int" and w.get("strategy") == "group":
            return Int4Config("compressed-tensors", int(w["group_size"]), bool(w.get("symmetric", True)), tuple(qc.get("ignore") or ()))
    return None


def _gptq(qc: dict[str, Any]) -> Int4Config | None:
    if qc.get("bits") != 4:
        return None
    skip = tuple(k for k in (qc.get("dynamic") or {}) if k.startswith("-:"))
    return Int4Config("gptq", int(qc["group_size"]), bool(qc.get("sym", True)), skip)


def _awq(qc: dict[str, Any]) -> Int4Config | None:
    if qc.get("bits") != 4:
        return None
    return Int4Config("awq", int(qc["group_size"]), not qc.get("zero_point", True), tuple(qc.get("modules_to_not_convert") or ()))


CONFIG_READERS: dict[str, Callable[[dict[str, Any]], Int4Config | None]] = {"compressed-tensors": _ct, "gptq": _gptq, "awq": _awq}

# How each engine matches a module against the left-out list (compressed-tensors: exact or `re:` + re.match;
# GPTQ `dynamic`: `-:` + re.match; AWQ: substring).
LEFT_OUT_MATCH: dict[str, Callable[[tuple[str, ...], str], bool]] = {
    "compressed-tensors": lambda pats, m: any(m == p or (p.startswith("re:") and re.match(p[3:], m)) for p in pats),
    "gptq": lambda pats, m: any(re.match(p[2:], m) for p in pats),
    "awq": lambda pats, m: any(p in m for p in pats),
}


# ------------------------------------------------------------------ written
CT_VERSION = "0.20.0"  # the compressed-tensors release whose pack-quantized layout this writer follows


def collapse_left_out(left_out: list[str], linear: list[str]) -> list[str]:
    """Left-out modules as the engines' substring / prefix-regex skip lists need them: a module is replaced by
    `ancestor.` when every linear module under that ancestor is left out, so the names an engine gives its fused
    layers (`self_attn.fused_qkv_a_proj`, `mlp.gate_up_proj`, `shared_experts.gate_up_proj`) are covered too."""
    total: dict[str, int] = {}
    kept: dict[str, int] = {}
    out_set = set(left_out)
    for m in linear:
        parts = m.split(".")
        for i in range(1, len(parts)):
            a = ".".join(parts[:i])
            total[a] = total.get(a, 0) + 1
            kept[a] = kept.get(a, 0) + (m in out_set)
    result = set()
    for m in left_out:
        parts = m.split(".")
        ancestors = (".".join(parts[:i]) for i in range(1, len(parts)))
        whole = next((a for a in ancestors if total.get(a) == kept.get(a)), None)
        result.add(f"{whole}." if whole else m)
    return sorted(result)


def skip_regex(entries: list[str]) -> str:
    """One anchored regex matching module names by the collapsed entries (`x.` = prefix, else the exact name)."""
    alts = [re.escape(e) if e.endswith(".") else re.escape(e) + "$" for e in entries]
    return "^(?:" + "|".join(alts) + ")"


def ct_config(group_size: int, symmetric: bool, left_out: list[str], linear: list[str]) -> dict[str, Any]:
    weights = {"num_bits": 4, "type": "int", "symmetric": symmetric, "group_size": group_size,
               "strategy": "group", "dynamic": False, "actorder": None, "observer": "minmax"}
    return {"quant_method": "compressed-tensors", "format": "pack-quantized", "quantization_status": "compressed",
            "version": CT_VERSION,
            "config_groups": {"group_0": {"targets": ["Linear"], "weights": weights, "input_activations": None,
                                          "output_activations": None, "format": "pack-quantized"}},
            "ignore": sorted(left_out), "kv_cache_scheme": None, "global_compression_ratio": None,
            "sparsity_config": {}, "transform_config": {}}


def gptq_config(group_size: int, symmetric: bool, left_out: list[str], linear: list[str]) -> dict[str, Any]:
    # GPTQModel / vLLM `dynamic`: a "-:" key is a regex (re.match) of modules that stay unquantized.
    skip = collapse_left_out(left_out, linear)
    return {"quant_method": "gptq", "bits": 4, "group_size": group_size, "desc_act": False, "sym": True,
            "static_groups": False, "true_sequential": True, "lm_head": False, "checkpoint_format": "gptq",
            "dynamic": {f"-:{skip_regex(skip)}": {}} if skip else {}}


def awq_config(group_size: int, symmetric: bool, left_out: list[str], linear: list[str]) -> dict[str, Any]:
    # AutoAWQ / vLLM / SGLang skip a module when any entry is a substring of its name.
    return {"quant_method": "awq", "bits": 4, "group_size": group_size, "zero_point": True, "version": "gemm",
            "modules_to_not_convert": collapse_left_out(left_out, linear)}


QUANT_CONFIGS: dict[str, Callable[[int, bool, list[str], list[str]], dict[str, Any]]] = {
    "compressed-tensors": ct_config, "gptq": gptq_config, "awq": awq_config,
}


def quantization_config(fmt: str, group_size: int, symmetric: bool, left_out: list[str], linear: list[str]) -> dict[str, Any]:
    """The `quantization_config` for an INT4 output: `left_out` linear modules stay BF16 (`linear` lists them all)."""
    return QUANT_CONFIGS[fmt](group_size, symmetric, left_out, linear)


# ------------------------------------------------------------------ read back
def int4_config(config: dict[str, Any]) -> Int4Config | None:
    """The INT4 layout config.json declares, or None when the checkpoint is not INT4 weight-only."""
    qc = config.get("quantization_config") or {}
    reader = CONFIG_READERS.get(qc.get("quant_method", ""))
    return reader(qc) if reader else None


def module_of(weight: str) -> str:
    return weight[: -len(".weight")]


def first_suffix(cfg: Int4Config) -> str:
    """The tensor whose presence marks a module as packed (weight_packed / qweight)."""
    return FORMATS[cfg.format].layout(8, cfg.group_size, Int4Scheme(cfg.group_size, cfg.symmetric))[0][0]


def packed_modules(cfg: Int4Config, spec: ArchSpec, stored: set[str] | dict[str, Any]) -> dict[str, TensorSpec]:
    """Linear weights stored packed (module prefix -> spec)."""
    mark = first_suffix(cfg)
    return {module_of(t.name): t for t in spec if t.linear and t.name.endswith(".weight") and f"{module_of(t.name)}.{mark}" in stored}


def expected_names(cfg: Int4Config, t: TensorSpec) -> set[str]:
    """Names of the packed tensors standing in for linear weight `t` (empty if its shape cannot be packed)."""
    try:
        layout = packed_layout(cfg.format, t.shape, cfg.scheme)
    except Int4Error:
        return set()
    return {f"{module_of(t.name)}.{suffix}" for suffix, _, _ in layout}


def int4_problems(ckpt: Checkpoint, spec: ArchSpec, stored: dict[str, tuple[str, TensorEntry]]) -> Iterator[Problem]:
    """Everything wrong with the INT4 tensors of `ckpt` (nothing when it is not an INT4 checkpoint)."""
    cfg = int4_config(ckpt.config)
    if cfg is None:
        return
    try:
        scheme = cfg.scheme
    except Int4Error as e:
        yield ("error", "config.json", None, f"quantization_config: {e}")
        return
    packed = packed_modules(cfg, spec, stored)
    for mod, t in packed.items():
        try:
            layout = packed_layout(cfg.format, t.shape, scheme)
        except Int4Error as e:
            yield ("error", stored[f"{mod}.{first_suffix(cfg)}"][0], t.name, f"cannot be {cfg.format} INT4: {e}")
            continue
        for suffix, dtype, shape in layout:
            name = f"{mod}.{suffix}"
            if name not in stored:
                yield ("error", ckpt.weight_map.get(name), name, f"missing ({cfg.format} needs {TORCH_TO_ST[dtype]}{list(shape)} for {t.name} {list(t.shape)})")
                continue
            shard, e = stored[name]
            if e.dtype != TORCH_TO_ST[dtype] or tuple(e.shape) != shape:
                yield ("error", shard, name, f"{e.dtype}{list(e.shape)}, {TORCH_TO_ST[dtype]}{list(shape)} expected for {t.name} {list(t.shape)} in groups of {cfg.group_size}")
            elif suffix == SHAPE_SUFFIX and tuple(ckpt.read(name).tolist()) != t.shape:
                yield ("error", shard, name, f"holds {ckpt.read(name).tolist()}, the architecture needs {list(t.shape)}")
            elif suffix in SCALE_SUFFIXES:
                v = ckpt.read(name).to(torch.float32)
                bad = int((~torch.isfinite(v) | (v <= 0)).sum())
                if bad:
                    yield ("error", shard, name, f"{bad} of {v.numel()} scales are not finite and positive")
        if cfg.is_left_out(mod):
            yield ("error", "config.json", t.name, f"packed as INT4 but quantization_config lists {mod} as left out")
    for t in spec:
        mod = module_of(t.name) if t.name.endswith(".weight") else None
        if t.linear and mod and mod not in packed and t.name in stored and not cfg.is_left_out(mod):
            yield ("warning", stored[t.name][0], t.name, f"kept unquantized but not listed as left out in quantization_config: "
                                                        f"an engine applying the {cfg.format} scheme would look for packed tensors")


def int4_summary(ckpt: Checkpoint, spec: ArchSpec) -> dict[str, Any] | None:
    """What `dshub info` says about an INT4 checkpoint: format, bits, groups, which roles are packed, bytes."""
    cfg = int4_config(ckpt.config)
    if cfg is None:
        return None
    stored = {n: e for h in ckpt.headers() for n, e in h.tensors.items()}
    packed = packed_modules(cfg, spec, stored)
    names = set().union(*(expected_names(cfg, t) for t in packed.values())) if packed else set()
    roles = sorted({t.role.value for t in packed.values()})
    linear = [t for t in spec if t.linear and t.name.endswith(".weight")]
    return {"format": cfg.format, "bits": 4, "group_size": cfg.group_size, "symmetric": cfg.symmetric,
            "quantized_roles": roles, "quantized_modules": len(packed), "unquantized_linear": len(linear) - len(packed),
            "int4_bytes": sum(stored[n].nbytes for n in names if n in stored)}
