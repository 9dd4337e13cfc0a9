"""Block-FP8 (e4m3 + per-block `weight_scale_inv`) dequantization, torch reference.

Result = bf16(fp32(w) * fp32(scale_inv)) per 128x128 block, edges cropped, rounded to nearest even. The e4m3 -> fp32
step goes through a lookup table over byte pairs (exact: the table is built from torch's own conversion), which is
faster on CPU than an elementwise cast; the multiply and the rounding are torch's.
"""
from __future__ import annotations

from functools import lru_cache
from typing import Iterator

import numpy as np
import torch

from dshub.quant.registry import register_codec


def expand_scale(scale: torch.Tensor, block: int, n: int) -> torch.Tensor:
    """Repeat each scale `block` times along its last axis and crop to `n`."""
    return scale.repeat_interleave(block, dim=-1)[..., :n]


@lru_cache(maxsize=None)
def byte_lut(dtype: torch.dtype) -> np.ndarray:
    """fp32 value of every byte pattern of an 8-bit float dtype."""
    return torch.arange(256, dtype=torch.uint8).view(dtype).to(torch.float32).numpy()


@lru_cache(maxsize=None)
def _pair_lut(dtype: torch.dtype) -> np.ndarray:
    """Two fp32 values (little-endian byte order) for every 16-bit pattern, packed as uint64."""
    lut = byte_lut(dtype)
    idx = np.arange(65536)
    return np.stack([lut[idx & 0xFF], lut[idx >> 8]], axis=1).copy().view(np.uint64).reshape(-1)


def fp8_to_f32(w: torch.Tensor, out: torch.Tensor | None = None) -> torch.Tensor:
    """Exact fp32 values of a contiguous 8-bit float tensor (CPU)."""
    w = w.contiguous()
    raw = w.view(torch.uint8).numpy().reshape(-1)
    if out is None:
        out = torch.empty(w.shape, dtype=torch.float32)
    dst = out.numpy().reshape(-1)
    if raw.size % 2 == 0:
        np.take(_pair_lut(w.dtype), raw.view(np.uint16), out=dst.view(np.uint64))
    else:
        np.take(byte_lut(w.dtype), raw, out=dst)
    return out


@register_codec("fp8_block_dequant_f32", "cpu")
def dequant_fp8_block_f32(weight: torch.Tensor, scale_inv: torch.Tensor, block: tuple[int, int] = (128, 128)) -> torch.Tensor:
    """Exact fp32 values: fp32(w) * fp32(scale_inv) per block (edges cropped)."""
    return _dequant(weight, scale_inv, block, torch.float32)


@register_codec("fp8_block_dequant_bf16", "cpu")
def dequant_fp8_block_bf16(weight: torch.Tensor, scale_inv: torch.Tensor, block: tuple[int, int] = (128, 128)) -> torch.Tensor:
    """bf16(fp32(w) * fp32(scale_inv)), round-to-nearest-even, one row block at a time."""
    return _dequant(weight, scale_inv, block, torch.bfloat16)


@register_codec("fp8_block_dequant_bf16_rows", "cpu")
def dequant_fp8_block_bf16_rows(weight: torch.Tensor, scale_inv: torch.Tensor, block: tuple[int, int] = (128, 128)) -> Iterator[torch.Tensor]:
    """The same values as `dequant_fp8_block_bf16`, yielded one row block at a time (never the whole tensor)."""
    for _r0, _r1, t in _f32_row_blocks(weight, scale_inv, block):
        yield t.to(torch.bfloat16)


def _f32_row_blocks(weight: torch.Tensor, scale_inv: torch.Tensor, block: tuple[int, int],
                    out: torch.Tensor | None = None) -> Iterator[tuple[int, int, torch.Tensor]]:
    """(first row, end row, exact fp32 values) per row block. Without `out` the fp32 buffer is reused, so consume
    each block at once; with an fp32 `out` the blocks are written straight into its rows."""
    rows, cols = weight.shape
    br, bc = block
    s = scale_inv.to(torch.float32)
    tmp = out if out is not None else torch.empty((min(br, rows), cols), dtype=torch.float32)
    for i, r0 in enumerate(range(0, rows, br)):
        r1 = min(rows, r0 + br)
        t = tmp[r0:r1] if out is not None else tmp[: r1 - r0]
        fp8_to_f32(weight[r0:r1], t)
        t.mul_(expand_scale(s[i], bc, cols))
        yield r0, r1, t


def _dequant(weight: torch.Tensor, scale_inv: torch.Tensor, block: tuple[int, int], out_dtype: torch.dtype) -> torch.Tensor:
    out = torch.empty(tuple(weight.shape), dtype=out_dtype)
    if out_dtype == torch.float32:
        for _ in _f32_row_blocks(weight, scale_inv, block, out):
            pass
        return out
    for r0, r1, t in _f32_row_blocks(weight, scale_inv, block):
        out[r0:r1] = t  # a bf16 destination rounds to nearest even
    return out
