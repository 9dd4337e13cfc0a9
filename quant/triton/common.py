"""Helpers shared by the Triton kernels: exact float32 -> bf16 rounding and launch-side checks.

The bf16 cast is done with integer arithmetic (round to nearest, ties to even) so that the result
does not depend on how a backend lowers `.to(tl.bfloat16)`: the Triton interpreter truncates, the
GPU rounds. Integer rounding gives torch's CPU bits on both.
"""
from __future__ import annotations

import torch
import triton
import triton.language as tl

CANONICAL_BF16_NAN = 0x7FC0


@triton.jit
def f32_to_bf16_bits(x):
    """bf16 bit patterns (int32 in 0..0xFFFF) of float32 `x`, round-to-nearest-even; NaN -> quiet NaN."""
    bits = x.to(tl.uint32, bitcast=True)
    lsb = (bits >> 16) & 1
    rounded = (bits + 0x7FFF + lsb) >> 16
    is_nan = (bits & 0x7FFFFFFF) > 0x7F800000
    rounded = tl.where(is_nan, (bits >> 16) | 0x40, rounded)
    return rounded.to(tl.int32)


@triton.jit
def store_bf16(ptr, x, mask):
    """Store float32 `x` as bf16 into an int16 view of a bf16 tensor."""
    tl.store(ptr, f32_to_bf16_bits(x).to(tl.int16), mask=mask)


def bf16_out_view(out: torch.Tensor) -> torch.Tensor:
    """The int16 alias that bf16-producing kernels write through."""
    return out.view(torch.int16)


def pow2_divisor(n: int, cap: int) -> int:
    """Largest power of two that divides `n`, at most `cap` (tile sizes that never straddle a block)."""
    p = 1
    while p * 2 <= cap and n % (p * 2) == 0:
        p *= 2
    return p
