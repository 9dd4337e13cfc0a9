"""Block-FP8 (e4m3 + per-block `weight_scale_inv`) dequantization, torch reference."""
from __future__ import annotations

import torch

from .registry import register_codec

ROW_CHUNK_BLOCKS = 8  # row blocks dequantized per step: bounds the fp32 temporary


def expand_scale(scale: torch.Tensor, block: int, n: int) -> torch.Tensor:
    """Repeat each scale `block` times along its last axis and crop to `n`."""
    return scale.repeat_interleave(block, dim=-1)[..., :n]


@register_codec("fp8_block_dequant_f32", "cpu")
def dequant_fp8_block_f32(weight: torch.Tensor, scale_inv: torch.Tensor, block: tuple[int, int] = (128, 128)) -> torch.Tensor:
    """Exact fp32 values: fp32(w) * fp32(scale_inv) per block (edges cropped)."""
    return _dequant(weight, scale_inv, block, torch.float32)


@register_codec("fp8_block_dequant_bf16", "cpu")
def dequant_fp8_block_bf16(weight: torch.Tensor, scale_inv: torch.Tensor, block: tuple[int, int] = (128, 128)) -> torch.Tensor:
    """bf16(fp32(w) * fp32(scale_inv)), round-to-nearest-even, computed a few row blocks at a time."""
    return _dequant(weight, scale_inv, block, torch.bfloat16)


def _dequant(weight: torch.Tensor, scale_inv: torch.Tensor, block: tuple[int, int], out_dtype: torch.dtype) -> torch.Tensor:
    rows, cols = weight.shape
    br, bc = block
    s = scale_inv.to(torch.float32)
    out = torch.empty((rows, cols), dtype=out_dtype)
    step = br * ROW_CHUNK_BLOCKS
    for r0 in range(0, rows, step):
        r1 = min(rows, r0 + step)
        srow = s[r0 // br : (r1 + br - 1) // br]  # [nrb, ncb]
        sfull = expand_scale(srow, bc, cols).repeat_interleave(br, dim=0)[: r1 - r0]
        torch.mul(weight[r0:r1].to(torch.float32), sfull, out=sfull)
        out[r0:r1] = sfull  # cast rounds to nearest even
    return out
