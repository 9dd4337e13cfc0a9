"""GGUF Q8_0 / Q4_0 / Q5_0 block quantizers as Triton kernels; same bytes as quant.gguf.legacy.

A program quantizes TB blocks of 32 (the tensor is contiguous, so block b of the flat tensor is
block b of the output). Elements j and j+16 are held in two [TB, 16] halves, the layout of the
nibble bytes. IEEE divisions, no FMA contraction, integer truncation, and the fp16 scale cast
(round to nearest even) match llama.cpp's reference arithmetic. Non-finite inputs set a flag per
program; the wrapper then defers to the reference for its error.
"""
from __future__ import annotations

from typing import Callable

import torch
import triton
import triton.language as tl

from dshub.quant.gguf import legacy as ref
from dshub.quant.gguf.types import GGML_TYPES
from dshub.quant.registry import get_codec
from dshub.quant.triton.common import div_ieee, run_block_quantizer

QK = 32
HALF = 16
BLOCKS_PER_PROGRAM = 64


@triton.jit
def _load_halves(x_ptr, pid, nblocks, TB: tl.constexpr):
    b = pid * TB + tl.arange(0, TB)
    j = tl.arange(0, 16)
    bmask = b < nblocks
    base = b[:, None].to(tl.int64) * 32 + j[None, :]
    lo = tl.load(x_ptr + base, mask=bmask[:, None], other=0.0)
    hi = tl.load(x_ptr + base + 16, mask=bmask[:, None], other=0.0)
    return b, j, bmask, lo, hi


@triton.jit
def _flag_nonfinite(flag_ptr, pid, lo, hi):
    bad = (tl.abs(lo) > 3.4028234663852886e38) | (lo != lo) | (tl.abs(hi) > 3.4028234663852886e38) | (hi != hi)
    tl.store(flag_ptr + pid, tl.max(tl.max(bad.to(tl.int32), axis=1), axis=0))


@triton.jit
def _store_f16(out_ptr, row, d, bmask):
    """fp16 (round to nearest even) of `d` as two little-endian bytes at `row` (block start)."""
    bits = d.to(tl.float16).to(tl.int16, bitcast=True).to(tl.int32)
    tl.store(out_ptr + row, (bits & 0xFF).to(tl.uint8), mask=bmask)
    tl.store(out_ptr + row + 1, ((bits >> 8) & 0xFF).to(tl.uint8), mask=bmask)


@triton.jit
def _inverse(d):
    """1/d, or 0 where d == 0 (llama.cpp's `id = d ? 1.0f/d : 0.0f`)."""
    den = tl.where(d == 0, 1.0, d)
    return tl.where(d == 0, 0.0, div_ieee(tl.zeros_like(den) + 1.0, den))


@triton.jit
def _signed_absmax(lo, hi, j):
    """Per block, the value of largest magnitude, first one on ties, sign kept."""
    m = tl.maximum(tl.max(tl.abs(lo), axis=1), tl.max(tl.abs(hi), axis=1))
    first = tl.minimum(tl.min(tl.where(tl.abs(lo) == m[:, None], j[None, :], 99), axis=1),
                       tl.min(tl.where(tl.abs(hi) == m[:, None], j[None, :] + 16, 99), axis=1))
    neg_inf = float("-inf")
    v_lo = tl.max(tl.where(j[None, :] == first[:, None], lo, neg_inf), axis=1)
    v_hi = tl.max(tl.where(j[None, :] + 16 == first[:, None], hi, neg_inf), axis=1)
    return tl.maximum(v_lo, v_hi)


@triton.jit
def _trunc(v):
    """C float -> int conversion (toward zero), as float32; exact for |v| < 2^31."""
    return v.to(tl.int32).to(tl.float32)


@triton.jit
def _q8_0_kernel(x_ptr, out_ptr, flag_ptr, nblocks, TB: tl.constexpr):
    pid = tl.program_id(0)
    b, j, bmask, lo, hi = _load_halves(x_ptr, pid, nblocks, TB)
    _flag_nonfinite(flag_ptr, pid, lo, hi)
    amax = tl.maximum(tl.max(tl.abs(lo), axis=1), tl.max(tl.abs(hi), axis=1))
    d = div_ieee(amax, tl.zeros_like(amax) + 127.0)
    inv = _inverse(d)[:, None]
    row = b.to(tl.int64) * 34
    _store_f16(out_ptr, row, d, bmask)
    for half in tl.static_range(2):
        v = (lo if half == 0 else hi) * inv
        t = _trunc(v)
        q = (t + _trunc(2.0 * (v - t))).to(tl.int32)  # roundf: halves away from zero
        tl.store(out_ptr + row[:, None] + 2 + half * 16 + j[None, :], (q & 0xFF).to(tl.uint8), mask=bmask[:, None])


@triton.jit
def _offset_kernel(
    x_ptr, out_ptr, flag_ptr, nblocks, TB: tl.constexpr,
    DIV: tl.constexpr, OFFSET: tl.constexpr, QMAX: tl.constexpr, SIZE: tl.constexpr, HIGH_BITS: tl.constexpr,
):
    """Q4_0 (DIV -8, OFFSET 8.5, QMAX 15) and Q5_0 (-16, 16.5, 31, fifth bits in a u32): d = signed absmax / DIV,
    q = min(QMAX, (int)(x/d + OFFSET)); bytes: fp16 d, [qh], then element j | element j+16 << 4."""
    pid = tl.program_id(0)
    b, j, bmask, lo, hi = _load_halves(x_ptr, pid, nblocks, TB)
    _flag_nonfinite(flag_ptr, pid, lo, hi)
    m = _signed_absmax(lo, hi, j)
    d = div_ieee(m, tl.zeros_like(m) + DIV)
    inv = _inverse(d)[:, None]
    q_lo = tl.clamp(_trunc(lo * inv + OFFSET), 0.0, QMAX).to(tl.int32)
    q_hi = tl.clamp(_trunc(hi * inv + OFFSET), 0.0, QMAX).to(tl.int32)
    row = b.to(tl.int64) * SIZE
    _store_f16(out_ptr, row, d, bmask)
    qs = 2
    if HIGH_BITS:
        bit = j[None, :] % 8
        h_lo = ((q_lo >> 4) & 1) << bit
        h_hi = ((q_hi >> 4) & 1) << bit
        first = j[None, :] < 8
        tl.store(out_ptr + row + 2, tl.sum(tl.where(first, h_lo, 0), axis=1).to(tl.uint8), mask=bmask)
        tl.store(out_ptr + row + 3, tl.sum(tl.where(first, 0, h_lo), axis=1).to(tl.uint8), mask=bmask)
        tl.store(out_ptr + row + 4, tl.sum(tl.where(first, h_hi, 0), axis=1).to(tl.uint8), mask=bmask)
        tl.store(out_ptr + row + 5, tl.sum(tl.where(first, 0, h_hi), axis=1).to(tl.uint8), mask=bmask)
        qs = 6
    tl.store(out_ptr + row[:, None] + qs + j[None, :], ((q_lo & 0xF) | ((q_hi & 0xF) << 4)).to(tl.uint8), mask=bmask[:, None])


IMATRIX_PATHS = ("Q4_0", "Q5_0")  # Q8_0 has no importance-weighted path in llama.cpp

# name -> (kernel, its constexpr parameters)
KERNELS: dict[str, tuple[Callable, dict]] = {
    "Q8_0": (_q8_0_kernel, {}),
    "Q4_0": (_offset_kernel, {"DIV": -8.0, "OFFSET": 8.5, "QMAX": 15.0, "SIZE": 18, "HIGH_BITS": False}),
    "Q5_0": (_offset_kernel, {"DIV": -16.0, "OFFSET": 16.5, "QMAX": 31.0, "SIZE": 22, "HIGH_BITS": True}),
}


def _codec(name: str) -> Callable[[torch.Tensor], torch.Tensor]:
    t = GGML_TYPES[name]
    kern, params = KERNELS[name]

    def launch(x: torch.Tensor, out: torch.Tensor, flags: torch.Tensor, nblocks: int) -> None:
        kern[(flags.numel(),)](x, out, flags, nblocks, TB=BLOCKS_PER_PROGRAM, enable_fp_fusion=False, **params)

    def codec(x: torch.Tensor, imatrix: torch.Tensor | None = None) -> torch.Tensor:
        if imatrix is not None and name in IMATRIX_PATHS:
            # llama.cpp's importance-weighted scale search has no kernel here yet: the torch reference computes it
            return get_codec(f"gguf_{name}", "cpu")(x.cpu(), imatrix=imatrix.cpu()).to(x.device)
        if x.dim() != 2 or x.dtype != torch.float32 or x.shape[1] % t.block:
            ref.QUANTIZERS[name](x[:0].cpu() if x.dim() == 2 else x.cpu())  # the reference's error
        return run_block_quantizer(x, t.block, t.type_size, BLOCKS_PER_PROGRAM, launch, ref.QUANTIZERS[name])

    codec.__name__ = f"quantize_{name.lower()}"
    codec.__doc__ = f"float32 [rows, cols] -> {name} bytes [rows, cols/{t.block}*{t.type_size}] (Triton)."
    return codec


quantize_q8_0 = _codec("Q8_0")
quantize_q4_0 = _codec("Q4_0")
quantize_q5_0 = _codec("Q5_0")
