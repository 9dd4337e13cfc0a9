"""GGML tensor types and llama.cpp file types: facts as tables (codes match ggml.h / gguf-py constants)."""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class GGMLType:
    """One ggml tensor type: `block` elements are stored in `type_size` bytes."""

    name: str
    code: int
    block: int
    type_size: int

    def row_bytes(self, n: int) -> int:
        """Bytes of one row of `n` elements; `n` must be a multiple of the block size."""
        if n % self.block:
            raise ValueError(f"{self.name}: row length {n} is not a multiple of the block size {self.block}")
        return n // self.block * self.type_size

    def nbytes(self, shape: tuple[int, ...]) -> int:
        """Bytes of a tensor with numpy shape `shape` (blocks run along the last axis)."""
        rows = 1
        for d in shape[:-1]:
            rows *= d
        return rows * self.row_bytes(shape[-1] if shape else 1)


_TABLE: tuple[tuple[str, int, int, int], ...] = (
    ("F32", 0, 1, 4), ("F16", 1, 1, 2), ("Q4_0", 2, 32, 18), ("Q4_1", 3, 32, 20), ("Q5_0", 6, 32, 22),
    ("Q5_1", 7, 32, 24), ("Q8_0", 8, 32, 34), ("Q8_1", 9, 32, 40), ("Q2_K", 10, 256, 84), ("Q3_K", 11, 256, 110),
    ("Q4_K", 12, 256, 144), ("Q5_K", 13, 256, 176), ("Q6_K", 14, 256, 210), ("Q8_K", 15, 256, 292),
    ("IQ2_XXS", 16, 256, 66), ("IQ2_XS", 17, 256, 74), ("IQ3_XXS", 18, 256, 98), ("IQ1_S", 19, 256, 50),
    ("IQ4_NL", 20, 32, 18), ("IQ3_S", 21, 256, 110), ("IQ2_S", 22, 256, 82), ("IQ4_XS", 23, 256, 136),
    ("I8", 24, 1, 1), ("I16", 25, 1, 2), ("I32", 26, 1, 4), ("I64", 27, 1, 8), ("F64", 28, 1, 8),
    ("IQ1_M", 29, 256, 56), ("BF16", 30, 1, 2), ("TQ1_0", 34, 256, 54), ("TQ2_0", 35, 256, 66),
    ("MXFP4", 39, 32, 17),
)

GGML_TYPES: dict[str, GGMLType] = {n: GGMLType(n, c, b, s) for n, c, b, s in _TABLE}
GGML_TYPES_BY_CODE: dict[int, GGMLType] = {t.code: t for t in GGML_TYPES.values()}

# llama.cpp `enum llama_ftype` (general.file_type), keyed by the name users pass to --quant.
FILE_TYPES: dict[str, int] = {
    "F32": 0, "F16": 1, "Q4_0": 2, "Q4_1": 3, "Q8_0": 7, "Q5_0": 8, "Q5_1": 9, "Q2_K": 10, "Q3_K_S": 11,
    "Q3_K_M": 12, "Q3_K_L": 13, "Q4_K_S": 14, "Q4_K_M": 15, "Q5_K_S": 16, "Q5_K_M": 17, "Q6_K": 18,
    "IQ2_XXS": 19, "IQ2_XS": 20, "Q2_K_S": 21, "IQ3_XS": 22, "IQ3_XXS": 23, "IQ1_S": 24, "IQ4_NL": 25,
    "IQ3_S": 26, "IQ3_M": 27, "IQ2_S": 28, "IQ2_M": 29, "IQ4_XS": 30, "IQ1_M": 31, "BF16": 32,
    "TQ1_0": 36, "TQ2_0": 37, "MXFP4_MOE": 38,
}

QUANTIZATION_VERSION = 2  # general.quantization_version written by current llama.cpp


def ggml_type(name: str) -> GGMLType:
    """Look a type up by name (case-insensitive); unknown names list the known ones."""
    t = GGML_TYPES.get(name.upper())
    if t is None:
        raise KeyError(f"unknown ggml type {name!r}; known: {', '.join(GGML_TYPES)}")
    return t


# llama.cpp's substitute when a row length is not a multiple of a type's block (llama-quant.cpp); a type missing
# here, or a substitute that still does not fit, falls back to F16 (as both llama-quantize and convert_hf_to_gguf do).
ROW_FALLBACK: dict[str, str] = {
    "Q2_K": "Q4_0", "Q3_K": "Q4_0", "IQ4_XS": "IQ4_NL", "Q4_K": "Q5_0", "Q5_K": "Q5_1", "Q6_K": "Q8_0",
    "IQ2_XXS": "IQ4_NL", "IQ2_XS": "IQ4_NL", "IQ2_S": "IQ4_NL", "IQ3_XXS": "IQ4_NL", "IQ3_S": "IQ4_NL",
    "IQ1_S": "IQ4_NL", "IQ1_M": "IQ4_NL", "TQ1_0": "Q4_0", "TQ2_0": "Q4_0",
}
LAST_RESORT = "F16"


def fit_type(name: str, row_len: int) -> tuple[str, str | None]:
    """The type to use for rows of `row_len` elements when `name` is asked for, and why it changed (None if kept)."""
    t = ggml_type(name)
    if row_len % t.block == 0:
        return t.name, None
    sub = ROW_FALLBACK.get(t.name)
    if sub is not None and row_len % GGML_TYPES[sub].block == 0:
        return sub, f"row length {row_len} is not a multiple of {t.name}'s block {t.block}: {sub} instead"
    return LAST_RESORT, f"row length {row_len} is not a multiple of {t.name}'s block {t.block}: {LAST_RESORT} instead"
