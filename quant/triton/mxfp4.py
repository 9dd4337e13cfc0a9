"""MXFP4 (e2m1 + e8m0) dequantization kernel: same signature and bits as quant.mxfp4's reference.

Each program decodes a TILE_R x TILE_C tile of the output. e2m1 codes and e8m0 scales are turned
into float32 by building their bit patterns, so the product is exact and backend-independent.
"""
from __future__ import annotations

import torch
import triton
import triton.language as tl

from dshub.quant.mxfp4 import E8M0_NAN, E8M0_ZERO_BITS, F32_QNAN_BITS, MX_BLOCK, check_shapes
from dshub.quant.triton.common import bf16_out_view, store_bf16

TILE_R = 16
TILE_C = 256
NUM_WARPS = 8


@triton.jit
def _e2m1_to_f32(code):
    """float32 of 4-bit e2m1 codes (int32 0..15)."""
    e = (code >> 1) & 3
    m = code & 1
    normal = ((e + 126) << 23) | (m << 22)
    sub = m * 0x3F000000  # 0.5 or +0
    bits = tl.where(e == 0, sub, normal) | ((code >> 3) << 31)
    return bits.to(tl.uint32).to(tl.float32, bitcast=True)


@triton.jit
def _e8m0_to_f32(b, ZERO_BITS: tl.constexpr, NAN_BYTE: tl.constexpr, NAN_BITS: tl.constexpr):
    bits = tl.where(b == 0, ZERO_BITS, b << 23)
    bits = tl.where(b == NAN_BYTE, NAN_BITS, bits)
    return bits.to(tl.uint32).to(tl.float32, bitcast=True)


@triton.jit
def _mxfp4_dequant_kernel(
    q_ptr, s_ptr, out_ptr, rows, k, nblk,
    BLOCK: tl.constexpr, TR: tl.constexpr, TC: tl.constexpr, OUT_BF16: tl.constexpr,
    ZERO_BITS: tl.constexpr, NAN_BYTE: tl.constexpr, NAN_BITS: tl.constexpr,
):
    r = tl.program_id(0) * TR + tl.arange(0, TR)
    c = tl.program_id(1) * TC + tl.arange(0, TC)
    mask = (r[:, None] < rows) & (c[None, :] < k)
    r64 = r[:, None].to(tl.int64)
    byte = tl.load(q_ptr + r64 * (k // 2) + (c[None, :] // 2), mask=mask, other=0).to(tl.int32)
    code = (byte >> ((c[None, :] & 1) * 4)) & 0xF
    sb = tl.load(s_ptr + r64 * nblk + (c[None, :] // BLOCK), mask=mask, other=127).to(tl.int32)
    x = _e2m1_to_f32(code) * _e8m0_to_f32(sb, ZERO_BITS, NAN_BYTE, NAN_BITS)
    offs = r64 * k + c[None, :]
    if OUT_BF16:
        store_bf16(out_ptr + offs, x, mask)
    else:
        tl.store(out_ptr + offs, x, mask=mask)


def _dequant(packed: torch.Tensor, scale: torch.Tensor, block: int, out_dtype: torch.dtype) -> torch.Tensor:
    rows, k, nblk = check_shapes(packed, scale, block)
    out = torch.empty((rows, k), dtype=out_dtype, device=packed.device)
    if out.numel():
        q = packed.contiguous().view(torch.uint8)
        s = scale.contiguous().view(torch.uint8)
        is_bf16 = out_dtype == torch.bfloat16
        grid = (triton.cdiv(rows, TILE_R), triton.cdiv(k, TILE_C))
        _mxfp4_dequant_kernel[grid](
            q, s, bf16_out_view(out) if is_bf16 else out, rows, k, nblk,
            BLOCK=block, TR=TILE_R, TC=TILE_C, OUT_BF16=is_bf16,
            ZERO_BITS=E8M0_ZERO_BITS, NAN_BYTE=E8M0_NAN, NAN_BITS=F32_QNAN_BITS, num_warps=NUM_WARPS,
        )
    return out.reshape(*packed.shape[:-1], k)


def dequant_mxfp4_f32(packed: torch.Tensor, scale: torch.Tensor, block: int = MX_BLOCK) -> torch.Tensor:
    """Exact fp32 values of MXFP4 codes `[..., K/2]` with e8m0 scales `[..., ceil(K/block)]` -> `[..., K]`."""
    return _dequant(packed, scale, block, torch.float32)


def dequant_mxfp4_bf16(packed: torch.Tensor, scale: torch.Tensor, block: int = MX_BLOCK) -> torch.Tensor:
    """bf16 of the exact fp32 values, round-to-nearest-even."""
    return _dequant(packed, scale, block, torch.bfloat16)
