"""ModelInfo for a local GGUF (a file, the first file of a split set, or a directory holding one set):
dimensions from its metadata, real bytes and parameter counts per component from its tensor table."""
from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from dshub.arch.family import find_release, gguf_architectures, gguf_family
from dshub.checks.gguf import family_type_problems
from dshub.errors import ConfigError, GGUFError
from dshub.formats.gguf_file import GGUFHeader, read_gguf_header, resolve_split_set
from dshub.quant.gguf.types import FILE_TYPES

from dshub.recipes.model_info import ModelInfo, side_kv

FTYPE_NAMES = {code: name for name, code in FILE_TYPES.items()}

# llama.cpp tensor name -> planner component; first match wins (norms and router before the MLP patterns).
COMPONENT_PATTERNS: tuple[tuple[str, str], ...] = (
    (r"_norm\.|^output_norm\.|\.exp_probs_b\.|\.ffn_gate_inp\.", "other"),
    (r"_exps\.", "expert"),
    (r"_shexp\.", "shared"),
    (r"^token_embd\.", "embed"),
    (r"^output\.", "head"),
    (r"\.attn_", "attn"),
    (r"\.ffn_(gate|up|down)\.", "dense"),
)


def component(name: str) -> str:
    return next((c for pattern, c in COMPONENT_PATTERNS if re.search(pattern, name)), "other")


def _meta(h: GGUFHeader, arch: str, key: str, default: Any = None) -> Any:
    full = f"{arch}.{key}"
    if full not in h.kv and default is None:
        raise ConfigError(f"GGUF metadata {full!r} is missing", path=str(h.path), show_path=h.path.name)
    return h.kv.get(full, default)


def gguf_info(path: Path) -> ModelInfo:
    files = resolve_split_set(path)
    first = files[0]
    missing = [f for f in files if not f.exists()]
    if missing:
        raise ConfigError(f"split file missing (the set has {len(files)} files)", path=str(missing[0]))
    headers = [read_gguf_header(f) for f in files]
    h = headers[0]
    arch = str(h.kv.get("general.architecture", ""))
    fam = gguf_family(arch)
    if fam is None or fam.gguf is None:
        raise ConfigError(f"GGUF architecture {arch!r} is not one the planner sizes "
                          f"({', '.join(gguf_architectures())})",
                          path=str(first), show_path=first.name)
    g = fam.gguf
    problems = family_type_problems(h, g)
    if problems:
        raise GGUFError("; ".join(problems), path=str(first), show_path=first.name)
    params: dict[str, int] = {}
    stored: dict[str, int] = {}
    for hdr in headers:
        for t in hdr.tensors:
            comp = component(t.name)
            n = 1
            for d in t.shape:
                n *= d
            params[comp] = params.get(comp, 0) + n
            stored[comp] = stored.get(comp, 0) + t.nbytes
    layers = int(_meta(h, arch, "block_count"))
    dense = int(_meta(h, arch, "leading_dense_block_count", 0))
    ftype = FTYPE_NAMES.get(int(h.kv.get("general.file_type", -1)), "F16")
    name = str(h.kv.get("general.name") or first.stem)
    release = find_release(f"{name} {first.name}", None, fam).key
    # the config fields the family's GGUF mapping copies into metadata, read back (for the family's KV formula)
    dims = {f.config_key: h.kv[g.key(f.suffix)] for f in g.fields if g.key(f.suffix) in h.kv}
    if g.experts is None:  # a dense family: its config (KV heads, head dim) as its mapping reads it back
        dims = g.config_from_metadata(h.kv, {t.name for hdr in headers for t in hdr.tensors})
    config = {"first_k_dense_replace": dense, "num_hidden_layers": layers, "gguf": True}
    return ModelInfo(
        name=re.sub(r"-\d{5}-of-\d{5}$", "", first.stem), hub_id=None, family=release, shipped=f"gguf:{ftype}",
        source="local", path=str(first), config=config, params=params, stored_bytes=stored, layers=layers,
        moe_layers=layers - dense if g.experts else 0, mtp_layers=0, heads=int(_meta(h, arch, "attention.head_count")),
        kv_lora_rank=int(_meta(h, arch, "attention.kv_lora_rank", 0)),
        qk_rope_head_dim=int(_meta(h, arch, "rope.dimension_count")),
        n_experts=int(_meta(h, arch, "expert_count", 0)), max_context=int(_meta(h, arch, "context_length")),
        architecture=fam.architectures[0], kv_elems_per_layer=fam.planner.kv_elems_per_token_layer(dims),
        kv_bytes_per_layer=fam.planner.kv_bytes_per_layer, side_kv_bytes=side_kv(fam, dims),
    )
