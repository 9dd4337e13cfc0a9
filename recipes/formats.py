"""Weight formats the planner sizes, and their per-parameter estimates.

The estimates below serve only what dshub does not write itself (fp8 as released, fp4-fp8, GGUF types without a
dshub scheme such as Q2_K_XL) and models a converter refuses: for bf16, int4 and every `gguf:TYPE` dshub writes,
the planner takes the converters' own plans (`recipes.sizes`), so `plan`, `info` and `convert --dry-run` agree.

- fp8: DeepSeek block FP8 (e4m3, one F32 scale per 128x128 block) on every linear except router and lm_head;
  embeddings, norms, router and head stay BF16 (the released checkpoints' layout; serving.md §5: ≈673 GB).
- bf16: everything BF16 (serving.md §5: ≈1.37 TB).
- int4: W4A16 group 128 on the routed experts with a BF16 scale per group, everything else BF16: what
  `dshub convert --to int4` writes (compressed-tensors pack-quantized). ≈372 GB for 671B; serving.md §5's
  ≈366 GB also packs the shared experts and dense MLPs, as Kimi-K2-Thinking's release does.
- fp4-fp8: NVFP4 experts (4-bit + one FP8 scale per 16), the rest as fp8 (V4 / nvidia *-NVFP4 releases).
- gguf:TYPE: llama.cpp file types as average bits per weight over the whole model, measured on DeepSeek-V3/R1:
  the ftype mixes in ../shared/reference/gguf-deepseek.md ("My computed mixes") and Unsloth's dynamic R1 sizes
  (serving.md §3), or the ggml block size for uniform types (Q8_0 = 34 bytes per 32 weights).
"""
from __future__ import annotations

from dataclasses import dataclass

from dshub.errors import UsageError
from dshub.quant.gguf.types import FILE_TYPES, GGML_TYPES

FP8_SCALE = 4 / (128 * 128)  # one F32 scale per 128x128 block
GROUP128_BF16 = 2 / 128  # one BF16 scale per 128 weights
NVFP4 = 0.5 + 1 / 16  # 4-bit values + one FP8 scale per 16

# Average bits per weight of llama.cpp file types on DeepSeek-V3/R1 (671B main-model weights).
GGUF_BPW: dict[str, float] = {
    "F16": 16.0, "BF16": 16.0, "Q8_0": 8.5, "Q6_K": 6.5625,
    "Q5_K_M": 5.67,  # 443 GiB / 671B, gguf-deepseek.md
    "Q4_K_M": 4.82,  # 377 GiB, gguf-deepseek.md
    "Q4_0": 4.5,
    "Q3_K_M": 3.80,  # 297 GiB, gguf-deepseek.md
    "Q2_K": 2.91,  # 227 GiB, gguf-deepseek.md
    "Q2_K_XL": 2.53,  # Unsloth 212 GB (serving.md §3)
    "IQ2_XXS": 2.18,  # Unsloth 183 GB
    "IQ1_M": 1.88,  # Unsloth 158 GB
    "IQ1_S": 1.56,  # Unsloth 131 GB
}

# llama.cpp file types without a DeepSeek measurement: the nominal bits of their main ggml type
# (quant/gguf/types.py block sizes), e.g. Q3_K_S -> Q3_K = 110 bytes per 256 weights.
FTYPE_MAIN_TYPE: dict[str, str] = {
    "Q3_K_S": "Q3_K", "Q3_K_L": "Q3_K", "Q4_K_S": "Q4_K", "Q5_K_S": "Q5_K", "Q2_K_S": "Q2_K", "IQ3_XS": "IQ3_XXS",
    "IQ3_M": "IQ3_S", "IQ2_M": "IQ2_S", "MXFP4_MOE": "MXFP4", "F32": "F32", "F16": "F16", "BF16": "BF16",
}


def gguf_bpw(ftype: str) -> float | None:
    """Average bits per weight of a llama.cpp file type: measured on DeepSeek where we have it, else nominal."""
    if ftype in GGUF_BPW:
        return GGUF_BPW[ftype]
    main = FTYPE_MAIN_TYPE.get(ftype, ftype)
    t = GGML_TYPES.get(main)
    return t.type_size * 8 / t.block if t and ftype in FILE_TYPES else None


_COMPONENTS = ("attn", "expert", "shared", "dense", "embed", "head", "other", "mtp")


@dataclass(frozen=True)
class WeightFormat:
    """A weight format: its name, bytes per parameter by component, and the engines' view of it."""

    name: str
    bytes_per_param: dict[str, float]
    block: int | None  # TP slices of quantized weights must be multiples of this
    gguf_type: str | None = None
    blocked: frozenset[str] = frozenset({"attn", "expert", "shared", "dense"})  # components the block applies to

    @property
    def is_gguf(self) -> bool:
        return self.gguf_type is not None

    def bytes(self, params: dict[str, int]) -> dict[str, int]:
        return {c: int(n * self.bytes_per_param.get(c, 2.0)) for c, n in params.items()}


def _per(linear: float) -> dict[str, float]:
    """`linear` bytes per parameter for every linear layer; embeddings, head, norms and router stay BF16."""
    return {"attn": linear, "expert": linear, "shared": linear, "dense": linear, "mtp": linear,
            "embed": 2.0, "head": 2.0, "other": 2.0}


FORMATS: dict[str, WeightFormat] = {
    "fp8": WeightFormat("fp8", _per(1 + FP8_SCALE), 128),
    "bf16": WeightFormat("bf16", _per(2.0), None),
    "int4": WeightFormat("int4", {**_per(2.0), "expert": 0.5 + GROUP128_BF16}, 128, blocked=frozenset({"expert"})),
    "fp4-fp8": WeightFormat("fp4-fp8", {**_per(1 + FP8_SCALE), "expert": NVFP4}, 128),
}


def weight_format(name: str) -> WeightFormat:
    """`fp8`, `bf16`, `int4`, `fp4-fp8` or `gguf:TYPE` (e.g. gguf:Q4_K_M)."""
    key = name.strip()
    if key.lower().startswith("gguf"):
        _, _, t = key.partition(":")
        t = (t or "Q4_K_M").upper()
        bpw = gguf_bpw(t)
        if bpw is None:
            known = sorted(set(GGUF_BPW) | set(FILE_TYPES))
            raise UsageError(f"--weights {name!r}: unknown GGUF type; known: {', '.join(known)}")
        b = bpw / 8
        return WeightFormat(f"gguf:{t}", {c: b for c in _COMPONENTS}, None, gguf_type=t)
    if key.lower() not in FORMATS:
        raise UsageError(f"--weights {name!r}: unknown format; known: {', '.join(FORMATS)}, gguf:TYPE")
    return FORMATS[key.lower()]
