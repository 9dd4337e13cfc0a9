"""config.json -> GGUF metadata, as current llama.cpp's loader reads it (facts: shared/reference/gguf-deepseek.md).

The machinery is generic (typed keys, rope scaling, general.*, size labels); each architecture's keys, copied fields,
derived values and gating defaults are its family's `GGUFMapping` (dshub.arch), e.g. `deepseek2` for DeepSeek-V3.
"""
from __future__ import annotations

import math
from typing import Any

from dshub.arch import FAMILIES, family_for
from dshub.arch.family import GGUFMapping, gguf_architectures, gguf_family
from dshub.errors import ConfigError
from dshub.formats.gguf_file import KV, VT
from dshub.quant.gguf.types import FILE_TYPES, QUANTIZATION_VERSION

# llama_expert_gating_func_type (llama.cpp src/llama-hparams.h; 4 is DeepSeek-V4's sqrt(softplus))
GATING_FUNCS: dict[str, int] = {"softmax": 1, "sigmoid": 2, "sqrtsoftplus": 4}

# rope_scaling fields -> `<arch>.rope.scaling.*`
YARN_FIELDS: tuple[tuple[str, str, VT], ...] = (
    ("factor", "factor", VT.FLOAT32),
    ("original_context_length", "original_max_position_embeddings", VT.UINT32),
    ("yarn_beta_fast", "beta_fast", VT.FLOAT32),
    ("yarn_beta_slow", "beta_slow", VT.FLOAT32),
)


def gguf_mapping(config: dict[str, Any]) -> GGUFMapping:
    """The family's GGUF mapping for a config.json (UsageError naming why for a family GGUF does not support)."""
    return family_for(config).gguf_mapping()


def mapping_for_arch(arch: str) -> GGUFMapping:
    """The GGUF mapping of llama.cpp architecture `arch` (the first family registered with it)."""
    fam = gguf_family(arch)
    if fam is None or fam.gguf is None:
        raise ConfigError(f"GGUF architecture {arch!r} is not one dshub maps; known: {', '.join(gguf_architectures())}", path="gguf", show_path="")
    return fam.gguf


# The GGUF architecture dshub writes for the DeepSeek-V3 family; `dshub verify` checks files of it.
ARCH: str = FAMILIES.get("DeepseekV3ForCausalLM").gguf_mapping().arch


def gating_func(config: dict[str, Any]) -> int:
    """The expert gating function code: config's scoring_func, else the architecture's default."""
    g = gguf_mapping(config)
    arch = (config.get("architectures") or [""])[0]
    name = config.get("scoring_func") or g.default_gating.get(arch, g.default_gating_other)
    if name not in GATING_FUNCS:
        raise ConfigError(f"scoring_func {name!r} is not supported; known: {', '.join(GATING_FUNCS)}", path="config.json")
    return GATING_FUNCS[name]


def _cast(vtype: VT, v: Any) -> Any:
    return float(v) if vtype is VT.FLOAT32 else bool(v) if vtype is VT.BOOL else int(v)


def arch_kvs(config: dict[str, Any], mtp: bool = False) -> list[KV]:
    """The `<arch>.*` keys for a config.json (with `mtp`, counting the next-n layers too)."""
    g = gguf_mapping(config)
    out: list[KV] = []
    n_mtp = int(config.get(g.mtp_count_key) or 0) if mtp else 0
    for f in g.fields:
        vtype = VT[f.vtype]
        v = config.get(f.config_key)
        if f.config_key == g.block_count_key and v is not None:
            v = int(v) + n_mtp
        if v is None:
            if f.required:
                raise ConfigError(f"{f.config_key} is required for GGUF key {g.key(f.suffix)}", path="config.json")
            continue
        out.append(KV(g.key(f.suffix), vtype, _cast(vtype, v)))
    for d in g.derived:
        vtype = VT[d.vtype]
        try:
            if vtype is VT.ARRAY:
                sub = VT[d.sub or ""]
                out.append(KV(g.key(d.suffix), vtype, [_cast(sub, x) for x in d.value(config)], sub))
                continue
            out.append(KV(g.key(d.suffix), vtype, _cast(vtype, d.value(config))))
        except KeyError as e:
            raise ConfigError(f"{e.args[0]} is required for GGUF key {g.key(d.suffix)}", path="config.json") from None
    if g.experts is not None:
        out.append(KV(g.key("expert_gating_func"), VT.UINT32, gating_func(config)))
    if n_mtp:
        out.append(KV(g.key("nextn_predict_layers"), VT.UINT32, n_mtp))
    out.extend(rope_scaling_kvs(config))
    return out


def rope_scaling_kvs(config: dict[str, Any]) -> list[KV]:
    g = gguf_mapping(config)
    rs = config.get("rope_scaling") or {}
    kind = rs.get("type") or rs.get("rope_type")
    if not rs or kind in (None, "default"):
        return []
    if kind == "llama3" and g.generated(config):  # carried by the rope_freqs tensor (the family's generated tensor)
        return []
    if kind != "yarn":
        raise ConfigError(f"rope_scaling type {kind!r} is not supported for {g.arch} (only yarn)", path="config.json")
    out = [KV(g.key("rope.scaling.type"), VT.STRING, "yarn")]
    for suffix, field, vtype in YARN_FIELDS:
        if rs.get(field) is not None:
            out.append(KV(g.key(f"rope.scaling.{suffix}"), vtype, _cast(vtype, rs[field])))
    if rs.get("mscale_all_dim"):
        out.append(KV(g.key("rope.scaling.yarn_log_multiplier"), VT.FLOAT32,
                      g.yarn_log_multiplier_factor * float(rs["mscale_all_dim"])))
    return out


# generation_config.json -> default sampling settings llama.cpp reads
SAMPLING_FIELDS: tuple[tuple[str, str, VT], ...] = (
    ("top_k", "general.sampling.top_k", VT.INT32),
    ("top_p", "general.sampling.top_p", VT.FLOAT32),
    ("temperature", "general.sampling.temp", VT.FLOAT32),
)


# (threshold, multiplier, suffix) for parameter counts, as llama.cpp's naming convention rounds them
COUNT_SCALES: tuple[tuple[float, float, str], ...] = ((1e12, 1e-12, "T"), (1e9, 1e-9, "B"), (1e6, 1e-6, "M"), (float("-inf"), 1e-3, "K"))


def rounded_count(n: int, min_digits: int = 2) -> str:
    """A parameter count as llama.cpp names it: 2.4M, 20B, 671B (at least `min_digits` significant digits)."""
    scale, suffix = next((m, sfx) for limit, m, sfx in COUNT_SCALES if n > limit)
    v = n * scale
    return f"{v:.{max(min_digits - len(str(round(v)).lstrip('0')), 0)}f}{suffix}"


def size_label(tensors: list[tuple[str, tuple[int, ...]]]) -> str:
    """general.size_label: `<experts>x<params per expert path>` for MoE models (e.g. 256x20B), else the total."""
    experts = [s for n, s in tensors if "_exps." in n and len(s) == 3]
    total = sum(math.prod(s) for _, s in tensors)
    if not experts:
        return rounded_count(total)
    per_expert = sum(math.prod(s) // s[0] for s in experts)
    shared = total - sum(math.prod(s) for s in experts)
    return f"{sum(s[0] for s in experts) // len(experts)}x{rounded_count(shared + per_expert)}"


def general_kvs(name: str, file_type: str | int, generation_config: dict[str, Any] | None = None,
                size: str | None = None, arch: str = ARCH) -> list[KV]:
    """general.* keys (general.architecture first, as llama.cpp writes it), with size label and sampling defaults."""
    ftype = FILE_TYPES[file_type] if isinstance(file_type, str) else file_type
    out = [
        KV("general.architecture", VT.STRING, arch),
        KV("general.type", VT.STRING, "model"),
        KV("general.name", VT.STRING, name),
        *([KV("general.size_label", VT.STRING, size)] if size else []),
        KV("general.file_type", VT.UINT32, ftype),
        KV("general.quantization_version", VT.UINT32, QUANTIZATION_VERSION),
    ]
    gen = generation_config or {}
    out += [KV(key, vt, _cast(vt, gen[f])) for f, key, vt in SAMPLING_FIELDS if isinstance(gen.get(f), (int, float))]
    return out


def config_from_gguf(kv: dict[str, Any], tensor_names: set[str] | None = None) -> dict[str, Any]:
    """The config.json fields a GGUF's metadata implies (enough for its family's tensor table)."""
    return mapping_for_arch(str(kv.get("general.architecture") or ARCH)).config_from_metadata(kv, tensor_names)


def llama_cpp_caveats(config: dict[str, Any]) -> list[str]:
    """Why current llama.cpp may refuse or mis-run a GGUF made from this config (empty when none known)."""
    return gguf_mapping(config).caveats(config)
