"""MatMulNBits packing: layout facts on hand-made values, round trip, odd block counts' zero points."""
from __future__ import annotations

import pytest
import torch

from dshub.quant.int4 import Int4Error, Int4Scheme, Int4Tensor, quantize_int4
from dshub.quant.int4_nbits import nbits_layout, pack_matmul_nbits, unpack_matmul_nbits


def test_nibble_order_and_offset_on_known_values():
    q = torch.tensor([[-8, 7, 0, 1] * 4], dtype=torch.int8)  # one row, K = 16, one block
    t = Int4Tensor(q, torch.ones(1, 1), None, 16)
    b = pack_matmul_nbits(t)["B"]
    assert b.shape == (1, 1, 8) and b.dtype == torch.uint8
    assert b[0, 0, :2].tolist() == [0x00 | (15 << 4), 8 | (9 << 4)]  # element 2j low nibble, 2j+1 high; u = q + 8


@pytest.mark.parametrize("k, block, sym", [(96, 32, False), (128, 64, True), (256, 128, False)])
def test_round_trip_and_layout(k, block, sym):
    w = torch.randn(40, k, generator=torch.Generator().manual_seed(k))
    t = quantize_int4(w, Int4Scheme(block, sym, torch.float32))
    packed = pack_matmul_nbits(t)
    layout = nbits_layout(40, k, block, sym, torch.float32)
    assert [(n, packed[n].dtype, tuple(packed[n].shape)) for n, _, _ in layout] == layout
    back = unpack_matmul_nbits(packed, k, block)
    assert torch.equal(back.q, t.q) and torch.equal(back.scale, t.scale)
    assert (back.zero is None) == sym and (sym or torch.equal(back.zero, t.zero))


def test_block_must_divide_k():
    with pytest.raises(Int4Error, match="block size 64"):
        nbits_layout(8, 96, 64, True, torch.float32)
