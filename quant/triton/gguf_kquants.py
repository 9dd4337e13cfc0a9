"""GGUF K-quant block quantizers (Q6_K, Q4_K) as Triton kernels; same bytes as quant.gguf.kquants.

ggml's searches are sequences of float32 operations with sequential sums. Here each program holds
TB super-blocks as a [TB, groups] tile and walks the elements of every group in order (a loop per element),
so every sum, product and division happens in ggml's order, lane by lane. FMA contraction is off,
divisions are IEEE (`div_ieee`), and `nearest_int` is ggml's own bit trick, so results match bit for bit.
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

from dshub.quant.gguf import kquants as ref
from dshub.quant.triton.common import div_ieee, run_block_quantizer

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
def _pos_max(v):
    """`m = 0; if (v > m) m = v;` per row: the maximum, or +0.0 (never -0.0)."""
    m = tl.max(v, axis=1)
    return tl.where(m > 0, m, 0.0)


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
def _qx_sums(x_ptr, base, m2, isc, TB: tl.constexpr):
    """One make_qx_quants candidate: l = clamp(round(isc*x), -32, 31); Σ (x²·x)·l and Σ (x²·l)·l in element order."""
    slx = tl.zeros((TB, 16), dtype=tl.float32)
    sl2 = tl.zeros((TB, 16), dtype=tl.float32)
    for i in range(16):
        x = tl.load(x_ptr + base + i, mask=m2, other=0.0)
        w = x * x
        l = tl.clamp(_nearest_int(x * isc), -32.0, 31.0)
        slx = slx + (w * x) * l
        sl2 = sl2 + (w * l) * l
    return slx, sl2


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
    for i in range(16):
        x = tl.load(x_ptr + base + i, mask=m2, other=0.0)
        bigger = tl.abs(x) > amax
        mx = tl.where(bigger, x, mx)
        amax = tl.where(bigger, tl.abs(x), amax)
        bad = bad | _nonfinite(x)
    _flag(flag_ptr, bad)
    zero_grp = tl.abs(mx) < EPS
    mxs = tl.where(zero_grp, 1.0, mx)
    keep = div_ieee(tl.full((TB, 16), -32.0, tl.float32), mxs)
    sumlx, suml2 = _qx_sums(x_ptr, base, m2, keep, TB)
    scale = tl.where(suml2 != 0, div_ieee(sumlx, tl.where(suml2 != 0, suml2, 1.0)), 0.0)
    best = scale * sumlx
    for k in range(18):
        isc = div_ieee(tl.zeros((TB, 16), dtype=tl.float32) + tl.load(steps_ptr + k), mxs)
        slx, sl2 = _qx_sums(x_ptr, base, m2, isc, TB)
        take = (sl2 > 0) & (slx * slx > best * sl2)
        keep = tl.where(take, isc, keep)
        scale = tl.where(take, div_ieee(slx, tl.where(sl2 > 0, sl2, 1.0)), scale)
        best = tl.where(take, scale * slx, best)
    scale = tl.where(zero_grp, 0.0, scale)
    # super-block scale: int8 per group against the block's largest group scale
    max_scale = _first_absmax_cols(scale, 16)
    live = tl.abs(max_scale) >= EPS
    ms = tl.where(live, max_scale, 1.0)
    iscale = div_ieee(tl.full((TB,), -128.0, tl.float32), ms)
    d = tl.where(live, div_ieee(tl.full((TB,), 1.0, tl.float32), iscale), 0.0)
    sc = tl.minimum(_nearest_int(iscale[:, None] * scale), 127.0)
    sc = tl.where(live[:, None], sc, 0.0)
    blk = sb.to(tl.int64) * 210
    tl.store(out_ptr + blk[:, None] + 192 + g[None, :], (sc.to(tl.int32) & 0xFF).to(tl.uint8), mask=m2)
    _store_f16(out_ptr + blk + 208, d, smask)
    dsub = d.to(tl.float16).to(tl.float32)[:, None] * sc
    dlive = dsub != 0
    dd = tl.where(dlive, dsub, 1.0)
    for i in range(16):
        x = tl.load(x_ptr + base + i, mask=m2, other=0.0)
        l0 = tl.clamp(_nearest_int(x * keep), -32.0, 31.0)
        l0 = tl.where(zero_grp, -32.0, l0)  # make_qx leaves an all-zero group at L = 0 (level -32)
        l = tl.where(dlive, tl.clamp(_nearest_int(div_ieee(x, dd)), -32.0, 31.0), l0) + 32.0
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


# ------------------------------------------------------------------ Q4_K
@triton.jit
def _q4k_levels(x, mn, isc):
    return tl.clamp(_nearest_int((x - mn) * isc), 0.0, 15.0)


@triton.jit
def _q4k_search_kernel(x_ptr, lv_ptr, lsm_ptr, out_ptr, steps_ptr, flag_ptr, nsb, TB: tl.constexpr):
    """make_qkx2_quants(32, 15, rmin=-1, rdelta=0.1, nstep=20) per group of 32, then 6-bit scales and mins.
    Levels go to lv[sb*256 + e]; the 6-bit scales/mins to lsm[sb*16 + (0..7 | 8..15)]; d and dmin into the block."""
    sb = tl.program_id(0) * TB + tl.arange(0, TB)
    g = tl.arange(0, 8)
    smask = sb < nsb
    m2 = smask[:, None]
    base = sb[:, None].to(tl.int64) * 256 + g[None, :] * 32
    # group statistics: Σx² (from 0), min, max, then weights w = |x| + sqrt(Σx²/32); Σw and Σw·x start from element 0
    sumx2 = tl.zeros((TB, 8), dtype=tl.float32)
    mn = tl.full((TB, 8), float("inf"), tl.float32)
    mx = tl.full((TB, 8), float("-inf"), tl.float32)
    bad = tl.zeros((TB, 8), dtype=tl.int32)
    for i in range(32):
        x = tl.load(x_ptr + base + i, mask=m2, other=0.0)
        sumx2 = sumx2 + x * x
        mn = tl.minimum(mn, x)
        mx = tl.maximum(mx, x)
        bad = bad | _nonfinite(x)
    _flag(flag_ptr, bad)
    av_x = tl.math.sqrt_rn(div_ieee(sumx2, tl.full((TB, 8), 32.0, tl.float32)))
    x0 = tl.load(x_ptr + base, mask=m2, other=0.0)
    sum_w = tl.abs(x0) + av_x
    sum_x = sum_w * x0
    for i in range(1, 32):
        x = tl.load(x_ptr + base + i, mask=m2, other=0.0)
        w = tl.abs(x) + av_x
        sum_w = sum_w + w
        sum_x = sum_x + w * x
    mn = tl.where(mn > 0, 0.0, mn)
    degenerate = mx == mn
    rng = tl.where(degenerate, 1.0, mx - mn)
    iscale = div_ieee(tl.full((TB, 8), 15.0, tl.float32), rng)
    scale = div_ieee(tl.full((TB, 8), 1.0, tl.float32), iscale)
    best = tl.zeros((TB, 8), dtype=tl.float32)
    for i in range(32):
        x = tl.load(x_ptr + base + i, mask=m2, other=0.0)
        diff = (_q4k_levels(x, mn, iscale) * scale + mn) - x
        best = best + (diff * diff) * (tl.abs(x) + av_x)
    keep_isc = iscale
    keep_mn = mn
    for k in range(21):
        isc = div_ieee(tl.zeros((TB, 8), dtype=tl.float32) + tl.load(steps_ptr + k), rng)
        sum_l = tl.zeros((TB, 8), dtype=tl.float32)
        sum_l2 = tl.zeros((TB, 8), dtype=tl.float32)
        sum_xl = tl.zeros((TB, 8), dtype=tl.float32)
        for i in range(32):
            x = tl.load(x_ptr + base + i, mask=m2, other=0.0)
            la = _q4k_levels(x, mn, isc)
            wl = (tl.abs(x) + av_x) * la
            sum_l = sum_l + wl
            sum_l2 = sum_l2 + wl * la
            sum_xl = sum_xl + wl * x
        D = sum_w * sum_l2 - sum_l * sum_l
        this_scale = div_ieee(sum_w * sum_xl - sum_x * sum_l, D)
        this_min = div_ieee(sum_l2 * sum_x - sum_l * sum_xl, D)
        pos = this_min > 0
        this_min = tl.where(pos, 0.0, this_min)
        this_scale = tl.where(pos, div_ieee(sum_xl, sum_l2), this_scale)
        cur = tl.zeros((TB, 8), dtype=tl.float32)
        for i in range(32):
            x = tl.load(x_ptr + base + i, mask=m2, other=0.0)
            diff = (_q4k_levels(x, mn, isc) * this_scale + this_min) - x
            cur = cur + (diff * diff) * (tl.abs(x) + av_x)
        take = (D > 0) & (cur < best) & (~degenerate)
        best = tl.where(take, cur, best)
        scale = tl.where(take, this_scale, scale)
        keep_isc = tl.where(take, isc, keep_isc)
        keep_mn = tl.where(take, mn, keep_mn)
        mn = tl.where(take, this_min, mn)
        rng = tl.where(degenerate, 1.0, mx - mn)
    scale = tl.where(degenerate, 0.0, scale)
    the_min = -mn
    # 6-bit scales and mins against the block maxima (max clamped at +0)
    max_scale = _pos_max(scale)
    max_min = _pos_max(the_min)
    inv_scale = tl.where(max_scale > 0, div_ieee(tl.full((TB,), 63.0, tl.float32), tl.where(max_scale > 0, max_scale, 1.0)), 0.0)
    inv_min = tl.where(max_min > 0, div_ieee(tl.full((TB,), 63.0, tl.float32), tl.where(max_min > 0, max_min, 1.0)), 0.0)
    ls = tl.minimum(_nearest_int(inv_scale[:, None] * scale).to(tl.int32) & 0xFF, 63)
    lm = tl.minimum(_nearest_int(inv_min[:, None] * the_min).to(tl.int32) & 0xFF, 63)
    d = div_ieee(max_scale, tl.full((TB,), 63.0, tl.float32))
    dmin = div_ieee(max_min, tl.full((TB,), 63.0, tl.float32))
    blk = sb.to(tl.int64) * 144
    _store_f16(out_ptr + blk, d, smask)
    _store_f16(out_ptr + blk + 2, dmin, smask)
    lsm = sb[:, None].to(tl.int64) * 16 + g[None, :]
    tl.store(lsm_ptr + lsm, ls.to(tl.uint8), mask=m2)
    tl.store(lsm_ptr + lsm + 8, lm.to(tl.uint8), mask=m2)
    # final levels from the kept candidate, then ggml's requantization against the stored scales
    dsub = d.to(tl.float16).to(tl.float32)[:, None] * ls.to(tl.float32)
    msub = dmin.to(tl.float16).to(tl.float32)[:, None] * lm.to(tl.float32)
    dlive = dsub != 0
    dd = tl.where(dlive, dsub, 1.0)
    for i in range(32):
        x = tl.load(x_ptr + base + i, mask=m2, other=0.0)
        l0 = tl.where(degenerate, 0.0, _q4k_levels(x, keep_mn, keep_isc))
        l = tl.where(dlive, tl.clamp(_nearest_int(div_ieee(x + msub, dd)), 0.0, 15.0), l0)
        tl.store(lv_ptr + base + i, l.to(tl.uint8), mask=m2)


@triton.jit
def _q4k_pack_kernel(lv_ptr, lsm_ptr, out_ptr, nsb, TB: tl.constexpr):
    """12 scale bytes (6-bit scales/mins, high bits of 4..7 in the top of 0..7) and qs[c*32 + l] = L[c*64 + l] | L[c*64 + 32 + l] << 4."""
    sb = tl.program_id(0) * TB + tl.arange(0, TB)
    m = (sb < nsb)[:, None]
    dst = sb[:, None].to(tl.int64) * 144
    j4 = tl.arange(0, 4)[None, :]
    lsm = lsm_ptr + sb[:, None].to(tl.int64) * 16
    ls_lo = tl.load(lsm + j4, mask=m, other=0).to(tl.int32)
    ls_hi = tl.load(lsm + 4 + j4, mask=m, other=0).to(tl.int32)
    lm_lo = tl.load(lsm + 8 + j4, mask=m, other=0).to(tl.int32)
    lm_hi = tl.load(lsm + 12 + j4, mask=m, other=0).to(tl.int32)
    tl.store(out_ptr + dst + 4 + j4, ((ls_lo | ((ls_hi >> 4) << 6)) & 0xFF).to(tl.uint8), mask=m)
    tl.store(out_ptr + dst + 8 + j4, ((lm_lo | ((lm_hi >> 4) << 6)) & 0xFF).to(tl.uint8), mask=m)
    tl.store(out_ptr + dst + 12 + j4, (((ls_hi & 0xF) | ((lm_hi & 0xF) << 4)) & 0xFF).to(tl.uint8), mask=m)
    j = tl.arange(0, 128)[None, :]
    e = (j // 32) * 64 + j % 32
    src = sb[:, None].to(tl.int64) * 256
    lo = tl.load(lv_ptr + src + e, mask=m, other=0).to(tl.int32)
    hi = tl.load(lv_ptr + src + e + 32, mask=m, other=0).to(tl.int32)
    tl.store(out_ptr + dst + 16 + j, (lo | (hi << 4)).to(tl.uint8), mask=m)


def _launch_q4_k(x: torch.Tensor, out: torch.Tensor, flags: torch.Tensor, nsb: int) -> None:
    lv = torch.empty(nsb * QK_K, dtype=torch.uint8, device=x.device)
    lsm = torch.empty(nsb * 16, dtype=torch.uint8, device=x.device)
    steps = torch.from_numpy(QKX2_STEPS).to(x.device)
    grid = (triton.cdiv(nsb, SB_PER_PROGRAM),)
    _q4k_search_kernel[grid](x, lv, lsm, out, steps, flags, nsb, TB=SB_PER_PROGRAM, enable_fp_fusion=False, num_warps=2)  # 64 lanes
    _q4k_pack_kernel[grid](lv, lsm, out, nsb, TB=SB_PER_PROGRAM)


LAUNCHERS: dict[str, Callable[[torch.Tensor, torch.Tensor, torch.Tensor, int], None]] = {"Q4_K": _launch_q4_k, "Q6_K": _launch_q6_k}


def _codec(name: str) -> Callable[..., torch.Tensor]:
    size = ref.TYPE_SIZES[name]
    launch = LAUNCHERS[name]
    reference = ref.QUANTIZERS[name]

    def codec(x: torch.Tensor, imatrix: torch.Tensor | None = None) -> torch.Tensor:
        if imatrix is not None or x.dim() != 2 or x.dtype != torch.float32 or x.shape[1] % QK_K:
            # the importance-matrix paths, and the reference's own errors, run on the CPU
            return reference(x.cpu(), None if imatrix is None else imatrix.cpu()).to(x.device)
        return run_block_quantizer(x, QK_K, size, SB_PER_PROGRAM, launch, reference)

    codec.__name__ = f"quantize_{name.lower()}"
    codec.__doc__ = f"float32 [rows, cols] -> {name} bytes [rows, cols/256*{size}] (Triton; imatrix: torch reference)."
    return codec


quantize_q6_k = _codec("Q6_K")
quantize_q4_k = _codec("Q4_K")
