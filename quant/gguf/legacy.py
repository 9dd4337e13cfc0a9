"""F32/F16/BF16 and the legacy block quantizers (Q4_0, Q4_1, Q5_0, Q5_1, Q8_0), torch on CPU.

Each codec maps float32 `[rows, cols]` to uint8 `[rows, cols // block * type_size]`, the bytes llama.cpp's
`quantize_row_*_ref` write (gguf-py's numpy quantizers are the oracle in tests). All arithmetic is float32 and
element-wise, so results do not depend on vectorization. Non-finite input is refused.
"""
from __future__ import annotations

from typing import Callable

import torch

from dshub.quant.gguf.checks import check_finite, check_rows
from dshub.quant.gguf.types import GGML_TYPES

CHUNK_ELEMENTS = 1 << 20  # elements quantized per step: bounds the float32 temporaries (~4 MiB each)


def _chunked(name: str, block_fn: Callable[[torch.Tensor], torch.Tensor]) -> Callable[[torch.Tensor], torch.Tensor]:
    """Wrap a per-block function (float32 [n, block] -> uint8 [n, type_size]) into a row codec."""
    t = GGML_TYPES[name]

    def codec(x: torch.Tensor) -> torch.Tensor:
        check_rows(x, name, t.block)
        rows, cols = x.shape
        out = torch.empty((rows, cols // t.block * t.type_size), dtype=torch.uint8)
        step = max(1, CHUNK_ELEMENTS // max(1, cols))
        for r0 in range(0, rows, step):
            r1 = min(rows, r0 + step)
            check_finite(x[r0:r1], name, r0)
            blocks = x[r0:r1].contiguous().view(-1, t.block)
            out[r0:r1] = block_fn(blocks).view(r1 - r0, -1)
        return out

    codec.__name__ = f"quantize_{name.lower()}"
    codec.__doc__ = f"float32 [rows, cols] -> {name} bytes [rows, cols/{t.block}*{t.type_size}] (llama.cpp reference)."
    return codec


def _f16_bytes(v: torch.Tensor) -> torch.Tensor:
    """float32 [n, 1] -> fp16 (round to nearest even) as uint8 [n, 2]."""
    return v.to(torch.float16).view(torch.uint8)


def _inverse(d: torch.Tensor) -> torch.Tensor:
    """1/d, and 0 where d == 0 (llama.cpp's `id = d ? 1.0f/d : 0.0f`)."""
    return torch.where(d == 0, torch.zeros_like(d), 1.0 / torch.where(d == 0, torch.ones_like(d), d))


def _round_half_away_(v: torch.Tensor) -> torch.Tensor:
    """C `roundf`, in place: nearest integer, halves away from zero (exact, no +0.5 rounding error)."""
    t = torch.trunc(v)
    return v.sub_(t).mul_(2.0).trunc_().add_(t)


def _signed_absmax(b: torch.Tensor) -> torch.Tensor:
    """Per block, the value with the largest magnitude (the first one on ties), keeping its sign."""
    return torch.gather(b, 1, b.abs().argmax(dim=1, keepdim=True))


def _nibbles(q: torch.Tensor) -> torch.Tensor:
    """uint8 [n, 32] -> [n, 16]: element j in the low nibble, element j+16 in the high nibble."""
    return (q[:, :16] & 0x0F) | (q[:, 16:] << 4)


def _high_bits(q: torch.Tensor) -> torch.Tensor:
    """Bit 4 of each of 32 values packed into a little-endian uint32 (bit j = value j): uint8 [n, 4]."""
    bits = ((q >> 4) & 1).to(torch.int64).view(-1, 4, 8)
    weights = torch.tensor([1 << i for i in range(8)], dtype=torch.int64)
    return (bits * weights).sum(dim=2).to(torch.uint8)


def _q8_0(b: torch.Tensor) -> torch.Tensor:
    d = b.abs().amax(dim=1, keepdim=True) / 127
    q = _round_half_away_(b * _inverse(d)).to(torch.int8).view(torch.uint8)
    return torch.cat([_f16_bytes(d), q], dim=1)


def _q4_0(b: torch.Tensor) -> torch.Tensor:
    d = _signed_absmax(b) / -8
    q = (b * _inverse(d)).add_(8.5).trunc_().clamp_(0, 15).to(torch.uint8)
    return torch.cat([_f16_bytes(d), _nibbles(q)], dim=1)


def _q5_0(b: torch.Tensor) -> torch.Tensor:
    d = _signed_absmax(b) / -16
    q = (b * _inverse(d)).add_(16.5).trunc_().clamp_(0, 31).to(torch.uint8)
    return torch.cat([_f16_bytes(d), _high_bits(q), _nibbles(q)], dim=1)


def _min_max(b: torch.Tensor, levels: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    lo = b.amin(dim=1, keepdim=True)
    d = (b.amax(dim=1, keepdim=True) - lo) / levels
    return lo, d, (b - lo).mul_(_inverse(d)).add_(0.5).trunc_().clamp_(0, levels).to(torch.uint8)


def _q4_1(b: torch.Tensor) -> torch.Tensor:
    lo, d, q = _min_max(b, 15)
    return torch.cat([_f16_bytes(d), _f16_bytes(lo), _nibbles(q)], dim=1)


def _q5_1(b: torch.Tensor) -> torch.Tensor:
    lo, d, q = _min_max(b, 31)
    return torch.cat([_f16_bytes(d), _f16_bytes(lo), _high_bits(q), _nibbles(q)], dim=1)


def _cast(dtype: torch.dtype) -> Callable[[torch.Tensor], torch.Tensor]:
    def fn(b: torch.Tensor) -> torch.Tensor:
        return b.to(dtype).view(torch.uint8)  # round to nearest even, as ggml's fp32->fp16/bf16

    return fn


BLOCK_QUANTIZERS: dict[str, Callable[[torch.Tensor], torch.Tensor]] = {
    "F32": _cast(torch.float32),
    "F16": _cast(torch.float16),
    "BF16": _cast(torch.bfloat16),
    "Q4_0": _q4_0,
    "Q4_1": _q4_1,
    "Q5_0": _q5_0,
    "Q5_1": _q5_1,
    "Q8_0": _q8_0,
}

QUANTIZERS: dict[str, Callable[[torch.Tensor], torch.Tensor]] = {}
for _name, _fn in BLOCK_QUANTIZERS.items():
    QUANTIZERS[_name] = _chunked(_name, _fn)  # registered as codecs by legacy_imatrix (with the imatrix paths)
