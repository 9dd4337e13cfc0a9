"""onnxruntime's `MatMulNBits` (com.microsoft, bits=4) packing of a group-quantized weight, and its inverse.

The levels and scales are `quant.int4`'s (symmetric `absmax / 7.5` or asymmetric with a zero point, groups along the
input dim, scales rounded to the stored dtype first); a MatMulNBits block is one such group. Layout (onnxruntime
docs/ContribOperators.md, MatMulNBits; `MlasQuantizeBlockwise`):

* `B` uint8 `[N, n_blocks, block_size / 2]`: row n is output row n of the `[N, K]` weight; byte j of a block holds
  element `2j` in its low nibble and `2j + 1` in its high nibble; values are unsigned `u = q + 8`.
* `scales` `[N * n_blocks]` in the model's float type (fp32 or fp16), row-major.
* `zero_points` (asymmetric only) uint8 `[N * ceil(n_blocks / 2)]`: per row, block `2j` in the low nibble of byte
  j, block `2j + 1` in the high one; unsigned `zu = z + 8`. Without it the runtime uses 8, which is symmetric.

Dequantization `(u - zu) * scale` equals `dequantize_int4` exactly: `u - zu = q - z` and the product is exact.
"""
from __future__ import annotations

import torch

from dshub.quant.int4 import Int4Error, Int4Tensor
from dshub.quant.registry import register_codec

OFFSET = 8  # unsigned = signed + 8 (and the runtime's default zero point)


def _pairs_low_first(u: torch.Tensor) -> torch.Tensor:
    """uint8 nibbles [..., 2m] -> bytes [..., m]: element 2j low, 2j + 1 high."""
    return (u[..., 0::2] | (u[..., 1::2] << 4)).contiguous()


def _unpair(b: torch.Tensor) -> torch.Tensor:
    return torch.stack([b & 0xF, b >> 4], dim=-1).reshape(*b.shape[:-1], b.shape[-1] * 2)


def nbits_layout(n: int, k: int, block_size: int, symmetric: bool, scale_dtype: torch.dtype) -> list[tuple[str, torch.dtype, tuple[int, ...]]]:
    """(input name, dtype, shape) of each MatMulNBits initializer, from shapes alone."""
    if k % block_size:
        raise Int4Error(f"input dim {k} is not a multiple of block size {block_size}")
    nb = k // block_size
    out = [("B", torch.uint8, (n, nb, block_size // 2)), ("scales", scale_dtype, (n * nb,))]
    if not symmetric:
        out.append(("zero_points", torch.uint8, (n * ((nb + 1) // 2),)))
    return out


@register_codec("int4_pack_matmul_nbits", "cpu")
def pack_matmul_nbits(t: Int4Tensor) -> dict[str, torch.Tensor]:
    """`Int4Tensor` [N, K] -> {"B", "scales"[, "zero_points"]} as MatMulNBits reads them."""
    n, k = t.shape
    nb = k // t.group_size
    u = (t.q + OFFSET).view(torch.uint8).reshape(n, nb, t.group_size)  # [-8, 7] + 8 fits int8: one byte-sized temporary
    out = {"B": _pairs_low_first(u), "scales": t.scale.reshape(-1).contiguous()}
    if t.zero is not None:
        zu = (t.zero + OFFSET).view(torch.uint8)
        if nb % 2:
            zu = torch.cat([zu, torch.full((n, 1), OFFSET, dtype=torch.uint8)], dim=1)
        out["zero_points"] = _pairs_low_first(zu).reshape(-1)
    return out


@register_codec("int4_unpack_matmul_nbits", "cpu")
def unpack_matmul_nbits(tensors: dict[str, torch.Tensor], k: int, block_size: int) -> Int4Tensor:
    """The inverse of `pack_matmul_nbits` (reads back what a file holds)."""
    b = tensors["B"]
    n, nb = b.shape[0], b.shape[1]
    q = (_unpair(b).to(torch.int16) - OFFSET).to(torch.int8).reshape(n, nb * block_size)[:, :k]
    zero = None
    if "zero_points" in tensors:
        z = _unpair(tensors["zero_points"].reshape(n, -1))[:, :nb]
        zero = (z.to(torch.int16) - OFFSET).to(torch.int8).contiguous()
    return Int4Tensor(q.contiguous(), tensors["scales"].reshape(n, nb), zero, block_size)
