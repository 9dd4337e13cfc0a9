"""MXFP4 dequantization (OCP microscaling: e2m1 elements, one e8m0 scale per 32), torch reference.

This is the DeepSeek-V4 routed-expert format: two e2m1 codes per byte (low nibble = even element),
stored as int8/uint8 `[..., K/2]`, with `float8_e8m0fnu` (or raw uint8) scales `[..., ceil(K/32)]`.
A value is e2m1(code) * 2^(scale - 127); scale byte 0xFF is NaN. Every product is exact in fp32.
"""
from __future__ import annotations

import math

import torch

from dshub.quant.registry import register_codec

MX_BLOCK = 32
ROW_CHUNK = 256  # rows decoded per step: bounds the temporaries
# e2m1 code -> value: bit 3 sign, bits 2..1 exponent (bias 1), bit 0 mantissa; exponent 0 is subnormal.
E2M1_VALUES: tuple[float, ...] = (0.0, 0.5, 1.0, 1.5, 2.0, 3.0, 4.0, 6.0, -0.0, -0.5, -1.0, -1.5, -2.0, -3.0, -4.0, -6.0)
E8M0_NAN = 0xFF
E8M0_ZERO_BITS = 0x00400000  # 2^-127 as a float32 subnormal
F32_QNAN_BITS = 0x7FC00000


def e8m0_to_f32(scale: torch.Tensor) -> torch.Tensor:
    """float32 values of e8m0 scale bytes (float8_e8m0fnu or uint8): 2^(b-127), NaN for 0xFF."""
    b = scale.view(torch.uint8).to(torch.int32)
    bits = torch.where(b == 0, E8M0_ZERO_BITS, b << 23)
    bits = torch.where(b == E8M0_NAN, F32_QNAN_BITS, bits)
    return bits.view(torch.float32)


def check_shapes(packed: torch.Tensor, scale: torch.Tensor, block: int) -> tuple[int, int, int]:
    """(rows, K, scale blocks per row) after validating that `scale` covers `packed`."""
    if packed.element_size() != 1 or scale.element_size() != 1:
        raise ValueError(f"mxfp4 expects byte tensors, got {packed.dtype} codes and {scale.dtype} scales")
    if packed.dim() < 1 or packed.shape[:-1] != scale.shape[:-1]:
        raise ValueError(f"mxfp4 codes {tuple(packed.shape)} and scales {tuple(scale.shape)} disagree on leading dims")
    k = 2 * packed.shape[-1]
    nblk = (k + block - 1) // block
    if scale.shape[-1] != nblk:
        raise ValueError(f"mxfp4 scales {tuple(scale.shape)}: want {nblk} per row for {k} elements in blocks of {block}")
    return math.prod(packed.shape[:-1]), k, nblk


@register_codec("mxfp4_dequant_f32", "cpu")
def dequant_mxfp4_f32(packed: torch.Tensor, scale: torch.Tensor, block: int = MX_BLOCK) -> torch.Tensor:
    """Exact fp32 values of MXFP4 codes `[..., K/2]` with e8m0 scales `[..., ceil(K/block)]` -> `[..., K]`."""
    return _dequant(packed, scale, block, torch.float32)


@register_codec("mxfp4_dequant_bf16", "cpu")
def dequant_mxfp4_bf16(packed: torch.Tensor, scale: torch.Tensor, block: int = MX_BLOCK) -> torch.Tensor:
    """bf16 of the exact fp32 values, round-to-nearest-even."""
    return _dequant(packed, scale, block, torch.bfloat16)


def _dequant(packed: torch.Tensor, scale: torch.Tensor, block: int, out_dtype: torch.dtype) -> torch.Tensor:
    rows, k, nblk = check_shapes(packed, scale, block)
    out = torch.empty((rows, k), dtype=out_dtype, device=packed.device)
    codes_all = packed.reshape(rows, k // 2).view(torch.uint8)
    s_all = scale.reshape(rows, nblk)
    lut = torch.tensor(E2M1_VALUES, dtype=torch.float32, device=packed.device)
    for r0 in range(0, rows, ROW_CHUNK):
        r1 = min(rows, r0 + ROW_CHUNK)
        b = codes_all[r0:r1]
        codes = torch.stack((b & 0xF, b >> 4), dim=-1).reshape(r1 - r0, k)
        s = e8m0_to_f32(s_all[r0:r1]).repeat_interleave(block, dim=-1)[:, :k]
        out[r0:r1] = lut[codes.long()] * s
    return out.reshape(*packed.shape[:-1], k)


def repack_gguf(packed: torch.Tensor, scale: torch.Tensor, block: int = MX_BLOCK) -> torch.Tensor:
    """MXFP4 codes `[rows, K/2]` + e8m0 scales `[rows, K/32]` as ggml `block_mxfp4` bytes `[rows, K/32*17]`: per
    group the scale byte, then 16 bytes whose low nibble is element j and high nibble element j+16. Only bits move:
    the e2m1 codes index the same table in ggml (kvalues_mxfp4 doubled, scale halved), so values are unchanged."""
    rows, k, nblk = check_shapes(packed, scale, block)
    if block != MX_BLOCK or k % MX_BLOCK:
        raise ValueError(f"GGUF MXFP4 needs rows of whole {MX_BLOCK}-groups, got {k} elements")
    b = packed.reshape(rows, nblk, MX_BLOCK // 2).view(torch.uint8)
    codes = torch.stack((b & 0xF, b >> 4), dim=-1).reshape(rows, nblk, MX_BLOCK)
    qs = codes[..., :16] | (codes[..., 16:] << 4)
    s = scale.reshape(rows, nblk, 1).view(torch.uint8)
    return torch.cat((s, qs), dim=-1).reshape(rows, nblk * 17).contiguous()
