"""GGUF K-quant block quantizers (Q6_K, Q4_K) as Triton kernels; same bytes as quant.gguf.kquants.

ggml's searches are sequences of float32 operations with sequential sums. Here each program holds
TB super-blocks as a [TB, groups] tile and walks the elements of every group in order (`static_range`),
so every sum, product and division happens in ggml's order, lane by lane. FMA contraction is off,
divisions are IEEE (`div_rn`), and `nearest_int` is ggml's own bit trick, so results match bit for bit.
A first kernel searches scales and writes each element's level to a scratch buffer plus the scale
bytes; a second packs the levels into ggml's byte layout. The importance-matrix (`_impl`) paths run
on the torch reference.
"""
from __future__ import annotations

from typing import Callable

import numpy as np
import torch
import triton
import triton.language as tl

from ..gguf import kquants as ref

QK_K = 256
GROUP_MAX_EPS = float(np.float32(1e-15))
SB_PER_PROGRAM = 8


def _f32(v: float) -> float:
    return float(np.float32(v))


# make_qx_quants candidates: -(nmax + 0.1*step) in float32, step = -9..9 without 0
QX_STEPS = np.array([-(np.float32(32) + np.float32(0.1) * np.float32(s)) for s in range(-9, 10) if s], dtype=np.float32)
# make_qkx2_quants candidates for Q4_K: rmin + rdelta*step + nmax in float32, step = 0..20
QKX2_STEPS = np.array([np.float32(-1.0) + np.float32(0.1) * np.float32(s) + np.float32(15) for s in range(21)], dtype=np.float32)


@triton.jit
def _nearest_int(f):
    """ggml nearest_int: bits(f + 1.5*2^23) & 0x7fffff - 0x400000 (round half to even in range)."""
    v = f + 12582912.0
    return ((v.to(tl.int32, bitcast=True) & 0x7FFFFF) - 0x400000).to(tl.float32)


@triton.jit
def _first_absmax_cols(v, NC: tl.constexpr):
    """Per row of [TB, NC], the signed value of largest magnitude (first on ties); 0.0 when all are 0."""
    a = tl.abs(v)
    m = tl.max(a, axis=1)
    col = tl.arange(0, NC)[None, :]
    first = tl.min(tl.where(a == m[:, None], col, NC), axis=1)
    val = tl.max(tl.where(col == first[:, None], v, float("-inf")), axis=1)
    return tl.where(m > 0, val, 0.0)


@triton.jit
def _store_f16(ptr, d, mask):
    bits = d.to(tl.float16).to(tl.int16, bitcast=True).to(tl.int32)
    tl.store(ptr, (bits & 0xFF).to(tl.uint8), mask=mask)
    tl.store(ptr + 1, ((bits >> 8) & 0xFF).to(tl.uint8), mask=mask)


@triton.jit
def _nonfinite(x):
    return ((tl.abs(x) > 3.4028234663852886e38) | (x != x)).to(tl.int32)


@triton.jit
def _flag(flag_ptr, bad):
    tl.store(flag_ptr + tl.program_id(0), tl.max(tl.max(bad, axis=1), axis=0))


# ------------------------------------------------------------------ Q6_K
@triton.jit
def _q6k_search_kernel(x_ptr, lv_ptr, out_ptr, steps_ptr, flag_ptr, nsb, TB: tl.constexpr, EPS: tl.constexpr):
    """Levels (0..63) into lv[sb*256 + e]; int8 scales and fp16 d into the 210-byte blocks."""
    sb = tl.program_id(0) * TB + tl.arange(0, TB)
    g = tl.arange(0, 16)
    smask = sb < nsb
    m2 = smask[:, None]
    base = sb[:, None].to(tl.int64) * 256 + g[None, :] * 16  # element 0 of each group of 16
    # make_qx_quants(16, 32, x, L, rmse_type=1, qw=NULL): group max, then 19 candidate scales
    amax = tl.zeros((TB, 16), dtype=tl.float32)
    mx = tl.zeros((TB, 16), dtype=tl.float32)
    bad = tl.zeros((TB, 16), dtype=tl.int32)
    for i in tl.static_range(16):
        x = tl.load(x_ptr + base + i, mask=m2, other=0.0)
        bigger = tl.abs(x) > amax
        mx = tl.where(bigger, x, mx)
        amax = tl.where(bigger, tl.abs(x), amax)
        bad = bad | _nonfinite(x)
    _flag(flag_ptr, bad)
    zero_grp = tl.abs(mx) < EPS
    mxs = tl.where(zero_grp, 1.0, mx)
    keep = tl.math.div_rn(tl.full((TB, 16), -32.0, tl.float32), mxs)
    sumlx = tl.zeros((TB, 16), dtype=tl.float32)
    suml2 = tl.zeros((TB, 16), dtype=tl.float32)
    for i in tl.static_range(16):
        x = tl.load(x_ptr + base + i, mask=m2, other=0.0)
        w = x * x
        l = tl.clamp(_nearest_int(x * keep), -32.0, 31.0)
        sumlx = sumlx + (w * x) * l
        suml2 = suml2 + (w * l) * l
    scale = tl.where(suml2 != 0, tl.math.div_rn(sumlx, tl.where(suml2 != 0, suml2, 1.0)), 0.0)
    best = scale * sumlx
    for k in tl.static_range(18):
        isc = tl.math.div_rn(tl.zeros((TB, 16), dtype=tl.float32) + tl.load(steps_ptr + k), mxs)
        slx = tl.zeros((TB, 16), dtype=tl.float32)
        sl2 = tl.zeros((TB, 16), dtype=tl.float32)
        for i in tl.static_range(16):
            x = tl.load(x_ptr + base + i, mask=m2, other=0.0)
            w = x * x
            l = tl.clamp(_nearest_int(x * isc), -32.0, 31.0)
            slx = slx + (w * x) * l
            sl2 = sl2 + (w * l) * l
        take = (sl2 > 0) & (slx * slx > best * sl2)
        keep = tl.where(take, isc, keep)
        scale = tl.where(take, tl.math.div_rn(slx, tl.where(sl2 > 0, sl2, 1.0)), scale)
        best = tl.where(take, scale * slx, best)
    scale = tl.where(zero_grp, 0.0, scale)
    # super-block scale: int8 per group against the block's largest group scale
    max_scale = _first_absmax_cols(scale, 16)
    live = tl.abs(max_scale) >= EPS
    ms = tl.where(live, max_scale, 1.0)
    iscale = tl.math.div_rn(tl.full((TB,), -128.0, tl.float32), ms)
    d = tl.where(live, tl.math.div_rn(tl.full((TB,), 1.0, tl.float32), iscale), 0.0)
    sc = tl.minimum(_nearest_int(iscale[:, None] * scale), 127.0)
    sc = tl.where(live[:, None], sc, 0.0)
    blk = sb.to(tl.int64) * 210
    tl.store(out_ptr + blk[:, None] + 192 + g[None, :], (sc.to(tl.int32) & 0xFF).to(tl.uint8), mask=m2)
    _store_f16(out_ptr + blk + 208, d, smask)
    dsub = d.to(tl.float16).to(tl.float32)[:, None] * sc
    dlive = dsub != 0
    dd = tl.where(dlive, dsub, 1.0)
    for i in tl.static_range(16):
        x = tl.load(x_ptr + base + i, mask=m2, other=0.0)
        l0 = tl.clamp(_nearest_int(x * keep), -32.0, 31.0)
        l0 = tl.where(zero_grp, -32.0, l0)  # make_qx leaves an all-zero group at L = 0 (level -32)
        l = tl.where(dlive, tl.clamp(_nearest_int(tl.math.div_rn(x, dd)), -32.0, 31.0), l0) + 32.0
        l = tl.where(live[:, None], l, 0.0)
        tl.store(lv_ptr + base + i, l.to(tl.uint8), mask=m2)


@triton.jit
def _q6k_pack_kernel(lv_ptr, out_ptr, nsb, TB: tl.constexpr):
    """ql[h*64 + l] = L[h,l%32 in quarter l//32] | L[+64] << 4 (low nibbles); qh[h*32 + l] = 2-bit highs of 4 quarters."""
    sb = tl.program_id(0) * TB + tl.arange(0, TB)
    m = (sb < nsb)[:, None]
    src = sb[:, None].to(tl.int64) * 256
    dst = sb[:, None].to(tl.int64) * 210
    j64 = tl.arange(0, 64)[None, :]
    j32 = tl.arange(0, 32)[None, :]
    for h in tl.static_range(2):
        e = h * 128 + (j64 // 32) * 32 + j64 % 32
        lo = tl.load(lv_ptr + src + e, mask=m, other=0).to(tl.int32)
        hi = tl.load(lv_ptr + src + e + 64, mask=m, other=0).to(tl.int32)
        tl.store(out_ptr + dst + h * 64 + j64, ((lo & 0xF) | ((hi & 0xF) << 4)).to(tl.uint8), mask=m)
        qh = tl.zeros((TB, 32), dtype=tl.int32)
        for k in tl.static_range(4):
            v = tl.load(lv_ptr + src + h * 128 + k * 32 + j32, mask=m, other=0).to(tl.int32)
            qh = qh | ((v >> 4) << (2 * k))
        tl.store(out_ptr + dst + 128 + h * 32 + j32, qh.to(tl.uint8), mask=m)


def _launch_q6_k(x: torch.Tensor, out: torch.Tensor, flags: torch.Tensor, nsb: int) -> None:
    lv = torch.empty(nsb * QK_K, dtype=torch.uint8, device=x.device)
    steps = torch.from_numpy(QX_STEPS).to(x.device)
    grid = (triton.cdiv(nsb, SB_PER_PROGRAM),)
    _q6k_search_kernel[grid](x, lv, out, steps, flags, nsb, TB=SB_PER_PROGRAM, EPS=GROUP_MAX_EPS, enable_fp_fusion=False)
    _q6k_pack_kernel[grid](lv, out, nsb, TB=SB_PER_PROGRAM)


LAUNCHERS: dict[str, Callable[[torch.Tensor, torch.Tensor, torch.Tensor, int], None]] = {"Q6_K": _launch_q6_k}


def _codec(name: str) -> Callable[..., torch.Tensor]:
    size = ref.TYPE_SIZES[name]
    launch = LAUNCHERS[name]
    reference = ref.QUANTIZERS[name]

    def codec(x: torch.Tensor, imatrix: torch.Tensor | None = None) -> torch.Tensor:
        if imatrix is not None or x.dim() != 2 or x.dtype != torch.float32 or x.shape[1] % QK_K:
            # the importance-matrix paths, and the reference's own errors, run on the CPU
            return reference(x.cpu(), None if imatrix is None else imatrix.cpu()).to(x.device)
        rows, cols = x.shape
        nsb = rows * cols // QK_K
        out = torch.empty((rows, cols // QK_K * size), dtype=torch.uint8, device=x.device)
        if nsb:
            flags = torch.zeros(triton.cdiv(nsb, SB_PER_PROGRAM), dtype=torch.int32, device=x.device)
            launch(x.contiguous(), out, flags, nsb)
            if bool(flags.any()):
                reference(x.cpu())  # raises "non-finite value ... at row r, column c"
        return out

    codec.__name__ = f"quantize_{name.lower()}"
    codec.__doc__ = f"float32 [rows, cols] -> {name} bytes [rows, cols/256*{size}] (Triton; imatrix: torch reference)."
    return codec


quantize_q6_k = _codec("Q6_K")
