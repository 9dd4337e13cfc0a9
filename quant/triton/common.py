"""Helpers shared by the Triton kernels: exact float32 -> bf16 rounding and launch-side checks.

The bf16 cast is done with integer arithmetic (round to nearest, ties to even) so that the result
does not depend on how a backend lowers `.to(tl.bfloat16)`: the Triton interpreter truncates, the
GPU rounds. Integer rounding gives torch's CPU bits on both.
"""
from __future__ import annotations

from typing import Callable

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


# how `load_f32` reads its source (constexpr globals: kernels may read them)
SRC_FLOAT, SRC_BF16_BITS, SRC_FP8_BITS = tl.constexpr(0), tl.constexpr(1), tl.constexpr(2)
FP8_DTYPES = (torch.float8_e4m3fn, torch.float8_e5m2)


@triton.jit
def load_f32(ptr, mask, SRC: tl.constexpr, lut_ptr):
    """float32 values from float (SRC_FLOAT), bf16 bits in int16 (SRC_BF16_BITS, exact even for subnormals,
    which the interpreter's bf16 path mangles) or 8-bit float bytes (SRC_FP8_BITS) looked up in the 256-entry
    table `fp8_table` (exact, NaN kept, and no fp8 hardware needed: sm80 GPUs and the interpreter alike)."""
    if SRC == 1:
        bits = tl.load(ptr, mask=mask, other=0).to(tl.int32) & 0xFFFF
        x = (bits << 16).to(tl.uint32).to(tl.float32, bitcast=True)
    elif SRC == 2:
        byte = tl.load(ptr, mask=mask, other=0).to(tl.int32)
        x = tl.load(lut_ptr + byte)
    else:
        x = tl.load(ptr, mask=mask, other=0.0).to(tl.float32)
    return x


_FP8_TABLES: dict[tuple[torch.dtype, torch.device], torch.Tensor] = {}


def fp8_table(dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    """float32 value of every byte of the 8-bit float `dtype` (torch's own conversion), on `device`."""
    if dtype not in FP8_DTYPES:
        raise ValueError(f"expected an 8-bit float dtype ({', '.join(map(str, FP8_DTYPES))}), got {dtype}")
    key = (dtype, device)
    if key not in _FP8_TABLES:
        _FP8_TABLES[key] = torch.arange(256, dtype=torch.uint8).view(dtype).to(torch.float32).to(device)
    return _FP8_TABLES[key]


def source_view(x: torch.Tensor) -> tuple[torch.Tensor, int, torch.Tensor]:
    """A contiguous view of `x` for `load_f32`, the SRC code to read it with, and the byte table (or `x` itself)."""
    x = x.contiguous()
    if x.dtype == torch.bfloat16:
        return x.view(torch.int16), SRC_BF16_BITS.value, x
    if x.dtype in FP8_DTYPES:
        return x.view(torch.uint8), SRC_FP8_BITS.value, fp8_table(x.dtype, x.device)
    if not x.dtype.is_floating_point:
        raise ValueError(f"expected a float tensor, got {x.dtype}")
    return x, SRC_FLOAT.value, x


@triton.jit
def div_ieee(a, b):
    """a / b rounded as IEEE requires, for fp32 tensors of broadcastable shapes. Triton's `/` may lower to an
    approximate division on GPUs; `div_rn` is exact but does not broadcast (or take Python scalars)."""
    a, b = tl.broadcast(a, b)
    return tl.math.div_rn(a, b)


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


def run_block_quantizer(
    x: torch.Tensor, block: int, type_size: int, per_program: int,
    launch: Callable[[torch.Tensor, torch.Tensor, torch.Tensor, int], None], reference: Callable[[torch.Tensor], torch.Tensor],
) -> torch.Tensor:
    """Quantize float32 `x` [rows, cols] into ggml blocks: `launch(x, out, flags, nblocks)` writes the bytes and sets
    a flag per program that saw a non-finite value; then the torch `reference` is run to raise its exact error."""
    rows, cols = x.shape
    out = torch.empty((rows, cols // block * type_size), dtype=torch.uint8, device=x.device)
    nblocks = rows * cols // block
    if nblocks:
        flags = torch.zeros(triton.cdiv(nblocks, per_program), dtype=torch.int32, device=x.device)
        launch(x.contiguous(), out, flags, nblocks)
        if bool(flags.any()):
            reference(x.cpu())  # raises "non-finite value ... at row r, column c"
    return out
