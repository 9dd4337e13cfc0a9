"""Block-FP8 dequantization kernel: same signature and bits as quant.fp8's torch reference.

One program per tile. The tile never straddles a scale block (its sides divide the block sides),
so each program loads one scale. Edges that are not multiples of the block are masked.
"""
from __future__ import annotations

import torch
import triton
import triton.language as tl

from dshub.quant.triton.common import SRC_FP8_BITS, bf16_out_view, fp8_table, load_f32, pow2_divisor, store_bf16

TILE_ROWS_CAP = 32
TILE_COLS_CAP = 128
NUM_WARPS = 8  # 16 elements per thread: enough loads in flight without starving occupancy


@triton.jit
def _fp8_block_dequant_kernel(
    w_ptr, s_ptr, lut_ptr, out_ptr, rows, cols, s_stride,
    BLOCK_R: tl.constexpr, BLOCK_C: tl.constexpr, TILE_R: tl.constexpr, TILE_C: tl.constexpr, OUT_BF16: tl.constexpr,
):
    pid_r = tl.program_id(0)
    pid_c = tl.program_id(1)
    r = pid_r * TILE_R + tl.arange(0, TILE_R)
    c = pid_c * TILE_C + tl.arange(0, TILE_C)
    mask = (r[:, None] < rows) & (c[None, :] < cols)
    offs = r[:, None].to(tl.int64) * cols + c[None, :]
    scale = tl.load(s_ptr + (pid_r * TILE_R // BLOCK_R) * s_stride + (pid_c * TILE_C // BLOCK_C))
    x = load_f32(w_ptr + offs, mask, SRC_FP8_BITS, lut_ptr) * scale.to(tl.float32)
    if OUT_BF16:
        store_bf16(out_ptr + offs, x, mask)
    else:
        tl.store(out_ptr + offs, x, mask=mask)


def _dequant(weight: torch.Tensor, scale_inv: torch.Tensor, block: tuple[int, int], out_dtype: torch.dtype) -> torch.Tensor:
    if weight.dim() != 2:
        raise ValueError(f"fp8 block dequant expects a 2-D weight, got shape {tuple(weight.shape)}")
    rows, cols = weight.shape
    br, bc = block
    want = ((rows + br - 1) // br, (cols + bc - 1) // bc)
    if tuple(scale_inv.shape) != want:
        raise ValueError(f"scale_inv shape {tuple(scale_inv.shape)} does not match weight {rows}x{cols} in {br}x{bc} blocks (want {want})")
    table = fp8_table(weight.dtype, weight.device)
    w = weight.contiguous().view(torch.uint8)
    s = scale_inv.to(torch.float32).contiguous()
    out = torch.empty((rows, cols), dtype=out_dtype, device=weight.device)
    if out.numel() == 0:
        return out
    tr, tc = pow2_divisor(br, TILE_ROWS_CAP), pow2_divisor(bc, TILE_COLS_CAP)
    grid = (triton.cdiv(rows, tr), triton.cdiv(cols, tc))
    is_bf16 = out_dtype == torch.bfloat16
    target = bf16_out_view(out) if is_bf16 else out
    _fp8_block_dequant_kernel[grid](w, s, table, target, rows, cols, s.shape[1], BLOCK_R=br, BLOCK_C=bc, TILE_R=tr, TILE_C=tc, OUT_BF16=is_bf16,
                                    num_warps=NUM_WARPS)
    return out


def dequant_fp8_block_f32(weight: torch.Tensor, scale_inv: torch.Tensor, block: tuple[int, int] = (128, 128)) -> torch.Tensor:
    """Exact fp32 values fp32(w) * fp32(scale_inv) per block, edges cropped."""
    return _dequant(weight, scale_inv, block, torch.float32)


def dequant_fp8_block_bf16(weight: torch.Tensor, scale_inv: torch.Tensor, block: tuple[int, int] = (128, 128)) -> torch.Tensor:
    """bf16(fp32(w) * fp32(scale_inv)), round-to-nearest-even."""
    return _dequant(weight, scale_inv, block, torch.bfloat16)
