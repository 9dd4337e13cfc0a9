"""The GGUF tensor layout: HF tensor -> GGUF name, numpy shape and source, as llama.cpp's loader expects it.

The names are the model family's (`GGUFMapping` in dshub.arch, e.g. `deepseek2` for DeepSeek-V3): whole-tensor
renames, tensors cut in parts (MLA's kv_b_proj -> attn_k_b transposed + attn_v_b), routed experts stacked into 3-D
`*_exps` tensors (expert index slowest). MTP (next-n) layers are left out unless asked for: then each becomes a full
`blk.N` block plus its `blk.N.nextn.*` extras (llama.cpp with next-n support; older builds reject them). Converters
and `dshub verify` share it.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from dshub.arch import family_for
from dshub.arch.family import GGUFMapping
from dshub.errors import UnsupportedArchitecture, UsageError

# Tensors llama.cpp keeps in F32 whatever the output type (its converter forces them; llama-quantize skips them).
# `indexer.proj` (V3.2's indexer weights_proj): conversion/base.py forces MODEL_TENSOR.INDEXER_PROJ to F32.
F32_SUFFIXES = ("_norm.weight", "ffn_gate_inp.weight", "indexer.proj.weight")

@dataclass(frozen=True)
class Source:
    """Where a GGUF tensor's values come from: `kind` is tensor | k_b | v_b | experts; `names` are HF tensors."""

    kind: str  # tensor | k_b | v_b | experts | rope_permute | rope_freqs (computed from config.json, no names)
    names: tuple[str, ...]
    split: tuple[int, int, int] = (0, 0, 0)  # k_b / v_b: (heads, qk_nope_head_dim, v_head_dim)


def forced_f32(name: str, shape: tuple[int, ...]) -> bool:
    return len(shape) <= 1 or name.endswith(F32_SUFFIXES) or not name.endswith(".weight")


def gguf_mapping(config: dict[str, Any]) -> GGUFMapping:
    """The family's GGUF mapping for a config.json (UsageError naming why for a family GGUF does not support)."""
    return family_for(config).gguf_mapping()


def map_tensors(config: dict[str, Any], mtp: bool = False) -> list[tuple[str, tuple[int, ...], Source]]:
    """(GGUF name, numpy shape, source) for every tensor of the main model (and the MTP layers with `mtp`)."""
    family = family_for(config)
    g = family.gguf_mapping()
    if mtp and g.mtp_refusal:
        raise UsageError(f"--mtp: {family.name}: {g.mtp_refusal}")
    spec = family.inventory(config)
    skipped = g.skipped(config)
    layer_re = re.compile(g.layer_pattern)
    expert_re = re.compile(g.experts.pattern) if g.experts else None
    n_experts = int(config.get(g.experts.count_key) or 0) if g.experts else 0
    out: list[tuple[str, tuple[int, ...], Source]] = []
    stacked: set[tuple[int, str]] = set()
    for t in spec:
        if (t.mtp and not mtp) or t.name in skipped:
            continue
        if t.name in g.global_names:
            out.append((g.global_names[t.name], t.shape, Source("tensor", (t.name,))))
            continue
        m = layer_re.match(t.name)
        if not m:
            raise UnsupportedArchitecture(f"no GGUF name for tensor {t.name}", path="config.json", tensor=t.name, show_tensor="")
        layer, rest = int(m[1]), m[2]
        prefix, blk = t.name[: len(t.name) - len(rest)], f"blk.{layer}."
        if rest in g.splits:
            out += [(blk + part.name, part.shape, Source(part.kind, (t.name,), part.split)) for part in g.splits[rest](config)]
        elif g.experts and expert_re and (em := expert_re.match(rest)):
            proj = em[2]
            if (layer, proj) not in stacked:
                stacked.add((layer, proj))
                names = tuple(prefix + g.experts.source.format(expert=e, proj=proj) for e in range(n_experts))
                gguf_proj = g.experts.proj_names.get(proj, proj)
                out.append((blk + g.experts.name.format(proj=gguf_proj), (n_experts, *t.shape), Source("experts", names)))
        elif rest in g.layer_names:
            out.append((blk + g.layer_names[rest], t.shape, Source("tensor", (t.name,))))
        elif t.mtp and rest in g.mtp_names:
            out.append((blk + g.mtp_names[rest], t.shape, Source("tensor", (t.name,))))
        else:
            raise UnsupportedArchitecture(f"no GGUF name for tensor {t.name}", path="config.json", tensor=t.name, show_tensor="")
    out += [(part.name, part.shape, Source(part.kind, (), part.split)) for part in g.generated(config)]
    return out
