"""K-quants Q2_K..Q6_K, bit-identical to llama.cpp's `quantize_row_q*_K_ref` (and, given an importance
matrix, to the `quantize_row_q*_K_impl` paths llama-quantize takes with `--imatrix`).

Each codec maps float32 `[rows, cols]` (cols a multiple of 256) to uint8 `[rows, cols // 256 * type_size]`,
exactly ggml's block bytes. An optional `imatrix` (float32 `[cols]`, llama.cpp's per-column mean of squared
activations) selects the `_impl` path. Work is vectorized across all sub-blocks of a chunk of rows; every
float32 operation happens in ggml's order (see kq_common).
"""
from __future__ import annotations

from typing import Callable

import torch

from dshub.quant.gguf.checks import check_finite, check_imatrix, check_rows
from dshub.quant.gguf.types import GGML_TYPES
from dshub.quant.registry import register_codec
from dshub.quant.gguf.kq_common import (
    F32, first_absmax, fp16_round, full_div, make_q3, make_qkx2, make_qp, make_qx, nearest_int, pos_max, seqsum,
    sqrt_f32,
)

QK_K = 256
CHUNK_ELEMENTS = 1 << 21  # elements per step: bounds the float32 temporaries of the candidate searches
TYPE_SIZES = {name: GGML_TYPES[name].type_size for name in ("Q2_K", "Q3_K", "Q4_K", "Q5_K", "Q6_K")}  # from the type table


# ---------------------------------------------------------------------------------------------- helpers

def _check(x: torch.Tensor, name: str, imatrix: torch.Tensor | None) -> None:
    check_rows(x, name, QK_K, "super-block size")
    check_finite(x, name)
    check_imatrix(imatrix, name, x.shape[1])


def _f16_bits(v: torch.Tensor) -> torch.Tensor:
    """float32 [NB] -> its fp16 (round to nearest even) as uint8 [NB, 2], little-endian."""
    return v.to(torch.float16).view(torch.uint8).view(-1, 2)


def _elem_major(xb: torch.Tensor, n: int) -> torch.Tensor:
    """Super-blocks [NB, 256] -> sub-block groups [n, NB*256/n]: row i holds element i of every group."""
    return xb.reshape(-1, n).t().contiguous()


def _blocks(t: torch.Tensor, nb: int) -> torch.Tensor:
    """Element-major [n, S] back to super-block order [NB, 256]."""
    return t.t().reshape(nb, QK_K)


def _sigma2(xb: torch.Tensor, factor: float) -> torch.Tensor:
    """`factor * Σx² / 256` per super-block, Σ summed sequentially (the `_impl` paths' σ²)."""
    xt = xb.t().contiguous()
    s = seqsum(xt * xt, zero_init=True)
    return (s * factor) / QK_K if factor != 1.0 else s / QK_K


def _requant(xs: torch.Tensor, d: torch.Tensor, dm: torch.Tensor | None, L: torch.Tensor, lo: int, hi: int) -> torch.Tensor:
    """ggml's final pass: l = clamp(nearest_int((x + dm)/d)) per group where d != 0; other groups keep L."""
    live = d != 0
    dd = torch.where(live, d, torch.ones_like(d))
    v = xs + dm if dm is not None else xs
    l = nearest_int(v / dd).clamp_(lo, hi)
    return torch.where(live, l, L)


def _pack_k4_scales(ls: torch.Tensor, lm: torch.Tensor) -> torch.Tensor:
    """8 six-bit scales and mins (int32 [NB, 8], as stored in uint8) -> the 12 scale bytes of Q4_K/Q5_K."""
    s = torch.zeros((ls.shape[0], 12), dtype=torch.int32)
    s[:, 0:4] = ls[:, 0:4]
    s[:, 4:8] = lm[:, 0:4]
    s[:, 8:12] = ((ls[:, 4:8] & 0xF) | ((lm[:, 4:8] & 0xF) << 4)) & 0xFF
    s[:, 0:4] = (s[:, 0:4] | ((ls[:, 4:8] >> 4) << 6)) & 0xFF
    s[:, 4:8] = (s[:, 4:8] | ((lm[:, 4:8] >> 4) << 6)) & 0xFF
    return s


def _unpack_k4_scales(s: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """ggml get_scale_min_k4 for j = 0..7: (scales, mins) int32 [NB, 8]."""
    sc = torch.cat([s[:, 0:4] & 63, (s[:, 8:12] & 0xF) | ((s[:, 0:4] >> 6) << 4)], dim=1)
    mn = torch.cat([s[:, 4:8] & 63, (s[:, 8:12] >> 4) | ((s[:, 4:8] >> 6) << 4)], dim=1)
    return sc, mn


def _pack_2bit(Lb: torch.Tensor) -> torch.Tensor:
    """2-bit values [NB, 256] -> qs [NB, 64]: per 128-chunk, byte l = L[l] | L[l+32]<<2 | L[l+64]<<4 | L[l+96]<<6."""
    q = Lb.view(-1, 2, 4, 32)
    out = q[:, :, 0] | (q[:, :, 1] << 2) | (q[:, :, 2] << 4) | (q[:, :, 3] << 6)
    return out.reshape(-1, 64)


def _q4k_scales_ref(scales: torch.Tensor, mins: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Q4_K/Q5_K ref: 6-bit scales/mins against the block maxima; returns (ls, lm, d, dmin) before packing."""
    max_scale = pos_max(scales, 1)
    max_min = pos_max(mins, 1)
    inv_scale = torch.where(max_scale > 0, full_div(63.0, max_scale), torch.zeros_like(max_scale))
    inv_min = torch.where(max_min > 0, full_div(63.0, max_min), torch.zeros_like(max_min))
    ls = nearest_int(inv_scale[:, None] * scales).to(torch.int32) & 0xFF
    lm = nearest_int(inv_min[:, None] * mins).to(torch.int32) & 0xFF
    return ls.clamp_(max=63), lm.clamp_(max=63), max_scale / 63.0, max_min / 63.0


def _run_chunked(name: str, fn: Callable[..., torch.Tensor]) -> Callable[..., torch.Tensor]:
    """Wrap a super-block function (x [NB, 256], qw [NB, 256] | None) -> uint8 [NB, type_size] into a row codec."""
    size = TYPE_SIZES[name]

    def codec(x: torch.Tensor, imatrix: torch.Tensor | None = None) -> torch.Tensor:
        _check(x, name, imatrix)
        rows, cols = x.shape
        nsb = cols // QK_K
        out = torch.empty((rows, nsb * size), dtype=torch.uint8)
        step = max(1, CHUNK_ELEMENTS // cols)
        qw_row = imatrix.to(F32).contiguous().view(nsb, QK_K) if imatrix is not None else None
        for r0 in range(0, rows, step):
            r1 = min(rows, r0 + step)
            xb = x[r0:r1].contiguous().view(-1, QK_K)
            qw = qw_row.repeat(r1 - r0, 1) if qw_row is not None else None
            out[r0:r1] = fn(xb, qw).view(r1 - r0, -1)
        return out

    codec.__name__ = f"quantize_{name.lower()}"
    codec.__doc__ = f"float32 [rows, cols] -> {name} bytes [rows, cols/256*{size}] (llama.cpp reference; imatrix: _impl path)."
    return codec


# ---------------------------------------------------------------------------------------------- Q4_K / Q5_K

def _qk_affine(xb: torch.Tensor, qw: torch.Tensor | None, nmax: int, ref_search: tuple[float, float, int],
               clamp_impl: bool) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Shared Q4_K/Q5_K quantization: returns (scale bytes int32 [NB, 12], d bits, dmin bits, L int32 [NB, 256])."""
    nb = xb.shape[0]
    xs = _elem_major(xb, 32)  # [32, NB*8]
    if qw is None:
        av_x = sqrt_f32(seqsum(xs * xs, zero_init=True) / 32.0)
        w = xs.abs().add_(av_x)
        rmin, rdelta, nstep = ref_search
        scales, mins, L = make_qkx2(xs, w, nmax, rmin, rdelta, nstep, False)
        ls, lm, d, dmin = _q4k_scales_ref(scales.view(nb, 8), mins.view(nb, 8))
    else:
        sigma2 = _sigma2(xb, 2.0)  # [NB]
        s2 = sigma2.repeat_interleave(8)
        w = _elem_major(qw, 32) * sqrt_f32(xs * xs + s2)
        sw = seqsum(w, zero_init=True)
        scales, mins, L = make_qkx2(xs, w, nmax, -0.9, 0.05, 36, False)
        swt = sw.view(nb, 8).t().contiguous()
        d, Ls = make_qp(scales.view(nb, 8).t().contiguous(), 63, swt)
        dmin, Lm = make_qp(mins.view(nb, 8).t().contiguous(), 63, swt)
        ls, lm = Ls.t().to(torch.int32), Lm.t().to(torch.int32)
        if clamp_impl:
            ls, lm = ls.clamp(max=63), lm.clamp(max=63)
    packed = _pack_k4_scales(ls, lm)
    sc, mn = _unpack_k4_scales(packed)
    d16, dmin16 = fp16_round(d), fp16_round(dmin)
    dsub = (d16[:, None] * sc.to(F32)).reshape(-1)
    msub = (dmin16[:, None] * mn.to(F32)).reshape(-1)
    L = _requant(xs, dsub, msub, L, 0, nmax)
    return packed, _f16_bits(d), _f16_bits(dmin), _blocks(L, nb).to(torch.int32)


def _q4_k(xb: torch.Tensor, qw: torch.Tensor | None) -> torch.Tensor:
    packed, d, dmin, Lb = _qk_affine(xb, qw, 15, (-1.0, 0.1, 20), clamp_impl=False)
    q = Lb.view(-1, 4, 2, 32)
    qs = (q[:, :, 0] | (q[:, :, 1] << 4)).reshape(-1, 128)
    return torch.cat([d, dmin, packed.to(torch.uint8), qs.to(torch.uint8)], dim=1)


def _q5_k(xb: torch.Tensor, qw: torch.Tensor | None) -> torch.Tensor:
    packed, d, dmin, Lb = _qk_affine(xb, qw, 31, (-0.5, 0.1, 15), clamp_impl=True)
    q = Lb.view(-1, 4, 2, 32)
    qs = ((q[:, :, 0] & 0xF) | ((q[:, :, 1] & 0xF) << 4)).reshape(-1, 128)
    hi = (q >> 4) & 1  # [NB, 4 chunks, 2 halves, 32]
    shift = (2 * torch.arange(4, dtype=torch.int32)[:, None] + torch.arange(2, dtype=torch.int32)[None, :])
    qh = (hi << shift[None, :, :, None]).sum(dim=(1, 2))
    return torch.cat([d, dmin, packed.to(torch.uint8), qh.to(torch.uint8), qs.to(torch.uint8)], dim=1)


# ---------------------------------------------------------------------------------------------- Q2_K

def _q2_k(xb: torch.Tensor, qw: torch.Tensor | None) -> torch.Tensor:
    nb = xb.shape[0]
    xs = _elem_major(xb, 16)  # [16, NB*16]
    if qw is None:
        scales, mins, L = make_qkx2(xs, xs.abs(), 3, -0.5, 0.1, 15, True)
        scales, mins = scales.view(nb, 16), mins.view(nb, 16)
        max_scale, max_min = pos_max(scales, 1), pos_max(mins, 1)
        has_s, has_m = max_scale > 0, max_min > 0
        isc = torch.where(has_s, full_div(15.0, max_scale), torch.zeros_like(max_scale))
        imn = torch.where(has_m, full_div(15.0, max_min), torch.zeros_like(max_min))
        ls = nearest_int(isc[:, None] * scales).to(torch.int32)
        lm = nearest_int(imn[:, None] * mins).to(torch.int32)
        ls = torch.where(has_s[:, None], ls & 0xFF, torch.zeros_like(ls))
        lm = torch.where(has_m[:, None], (lm << 4) & 0xFF, torch.zeros_like(lm))
        d = torch.where(has_s, max_scale / 15.0, torch.zeros_like(max_scale))
        dmin = torch.where(has_m, max_min / 15.0, torch.zeros_like(max_min))
        sbytes = ls | lm
    else:
        sigma2 = _sigma2(xb, 1.0)
        w = _elem_major(qw, 16) * sqrt_f32(xs * xs + sigma2.repeat_interleave(16))
        sw = seqsum(w, zero_init=True)
        scales, mins, L = make_qkx2(xs, w, 3, -0.9, 0.05, 36, False)
        swt = sw.view(nb, 16).t().contiguous()
        d, Ls = make_qp(scales.view(nb, 16).t().contiguous(), 15, swt)
        dmin, Lm = make_qp(mins.view(nb, 16).t().contiguous(), 15, swt)
        sbytes = (Ls.t().to(torch.int32) | (Lm.t().to(torch.int32) << 4)) & 0xFF
    d16, dmin16 = fp16_round(d), fp16_round(dmin)
    dsub = (d16[:, None] * (sbytes & 0xF).to(F32)).reshape(-1)
    msub = (dmin16[:, None] * (sbytes >> 4).to(F32)).reshape(-1)
    L = _requant(xs, dsub, msub, L, 0, 3)
    qs = _pack_2bit(_blocks(L, nb).to(torch.int32))
    return torch.cat([sbytes.to(torch.uint8), qs.to(torch.uint8), _f16_bits(d), _f16_bits(dmin)], dim=1)


# ---------------------------------------------------------------------------------------------- Q3_K

def _q3_k(xb: torch.Tensor, qw: torch.Tensor | None) -> torch.Tensor:
    nb = xb.shape[0]
    xs = _elem_major(xb, 16)
    if qw is None:
        scales, L = make_q3(xs, 4)
        scales = scales.view(nb, 16)
        max_scale = first_absmax(scales.t())
        has = max_scale != 0
        iscale = full_div(-32.0, torch.where(has, max_scale, torch.ones_like(max_scale)))
        l = nearest_int(iscale[:, None] * scales).to(torch.int32)
        l = ((l + 128) & 0xFF) - 128  # stored in an int8_t
        l = l.clamp_(-32, 31) + 32
        l = torch.where(has[:, None], l, torch.zeros_like(l))
        d = torch.where(has, full_div(1.0, iscale), torch.zeros_like(iscale))
    else:
        sigma2 = _sigma2(xb, 2.0)
        w = _elem_major(qw, 16) * sqrt_f32(xs * xs + sigma2.repeat_interleave(16))
        sw = seqsum(w, zero_init=True)
        scales, L = make_qx(xs, 4, w)
        d, Ls = make_qx(scales.view(nb, 16).t().contiguous(), 32, sw.view(nb, 16).t().contiguous())
        l = Ls.t().to(torch.int32)
    sbytes = torch.zeros((nb, 12), dtype=torch.int32)
    sbytes[:, 0:8] = (l[:, 0:8] & 0xF) | ((l[:, 8:16] & 0xF) << 4)
    hi = (l >> 4).view(nb, 4, 4)  # [NB, group g = j/4, k = j%4]
    sbytes[:, 8:12] = (hi << (2 * torch.arange(4, dtype=torch.int32))[None, :, None]).sum(dim=1)
    d16 = fp16_round(d)
    dsub = (d16[:, None] * (l - 32).to(F32)).reshape(-1)
    L = _requant(xs, dsub, None, L - 4, -4, 3) + 4
    Lb = _blocks(L, nb).to(torch.int32)
    high = (Lb > 3).to(torch.int32).view(nb, 8, 32)
    hmask = (high << torch.arange(8, dtype=torch.int32)[None, :, None]).sum(dim=1)
    qs = _pack_2bit(Lb & 3)
    return torch.cat([hmask.to(torch.uint8), qs.to(torch.uint8), sbytes.to(torch.uint8), _f16_bits(d)], dim=1)


# ---------------------------------------------------------------------------------------------- Q6_K

def _q6_k(xb: torch.Tensor, qw: torch.Tensor | None) -> torch.Tensor:
    nb = xb.shape[0]
    xs = _elem_major(xb, 16)
    scales, L = make_qx(xs, 32, _elem_major(qw, 16) if qw is not None else None)
    scales = scales.view(nb, 16)
    max_scale = first_absmax(scales.t())
    live = max_scale.abs() >= 1e-15  # GROUP_MAX_EPS as float32 compares the same way
    ms = torch.where(live, max_scale, torch.ones_like(max_scale))
    iscale = full_div(-128.0, ms)
    d = torch.where(live, full_div(1.0, iscale), torch.zeros_like(iscale))
    sc = nearest_int(iscale[:, None] * scales).to(torch.int32).clamp_(max=127)
    sc = torch.where(live[:, None], sc, torch.zeros_like(sc))
    d16 = fp16_round(d)
    dsub = (d16[:, None] * sc.to(F32)).reshape(-1)
    L = _requant(xs, dsub, None, L - 32, -32, 31) + 32
    Lb = _blocks(L, nb).to(torch.int32)
    Lb = torch.where(live[:, None], Lb, torch.zeros_like(Lb))
    q = Lb.view(nb, 2, 4, 32)
    lo = q & 0xF
    ql = torch.cat([lo[:, :, 0] | (lo[:, :, 2] << 4), lo[:, :, 1] | (lo[:, :, 3] << 4)], dim=2).reshape(nb, 128)
    hi = q >> 4
    qh = (hi[:, :, 0] | (hi[:, :, 1] << 2) | (hi[:, :, 2] << 4) | (hi[:, :, 3] << 6)).reshape(nb, 64)
    return torch.cat([ql.to(torch.uint8), qh.to(torch.uint8), (sc & 0xFF).to(torch.uint8), _f16_bits(d)], dim=1)


QUANTIZERS: dict[str, Callable[..., torch.Tensor]] = {}
for _name, _fn in (("Q2_K", _q2_k), ("Q3_K", _q3_k), ("Q4_K", _q4_k), ("Q5_K", _q5_k), ("Q6_K", _q6_k)):
    QUANTIZERS[_name] = register_codec(f"gguf_{_name}", "cpu")(_run_chunked(_name, _fn))
