"""Vectorized float32 building blocks of ggml's K-quant search routines.

Layout convention: a group of `n` values (a K-quant sub-block) is a column of an `[n, S]` tensor, so
element `i` of every sub-block is the contiguous row `t[i]`. Every reduction that ggml performs as a
sequential float32 loop is done here as the same sequential loop over rows (each step vectorized
across the S sub-blocks), and every expression keeps C's evaluation order, so results are
bit-identical to ggml-quants.c. Never use torch reductions (pairwise/double accumulation) or
`scalar / tensor` (torch computes it as reciprocal * scalar) in these paths.
"""
from __future__ import annotations

import numpy as np
import torch

from dshub.quant.gguf.kq_fused import fused

F32 = torch.float32
GROUP_MAX_EPS = float(np.float32(1e-15))
_MAGIC = 12582912.0  # 1.5 * 2**23: adding it rounds to an integer, half to even
_SAFE_ROUND = 4194303.0  # nearest_int's documented domain


def f32(v: float) -> float:
    """Round a Python float to the nearest float32 (C's `1.5f`-style constants)."""
    return float(np.float32(v))


def nearest_int(v: torch.Tensor, exact: bool = True) -> torch.Tensor:
    """ggml's nearest_int on float32 `v`, as a float32 tensor of integers.

    Inside |v| <= 4194303 this is round-half-to-even. ggml computes it by bit tricks that return
    defined garbage outside that domain (inf, nan, huge values after overflowing scales);
    `exact=True` reproduces those bits, `exact=False` is the fast path for callers that know
    their values are in range.
    """
    if not exact:
        return torch.round(v)
    r = torch.round(v)
    bad = ~(r.abs() <= _SAFE_ROUND)  # also catches nan
    if bool(bad.any()):
        bits = (v[bad] + _MAGIC).view(torch.int32)
        r[bad] = ((bits & 0x7FFFFF) - 0x400000).to(F32)
    return r


def ranged(v: torch.Tensor) -> bool:
    """True when every finite value of `v` is safely inside nearest_int's domain and none is nan/inf."""
    return bool((v.abs() <= _SAFE_ROUND).all())


def fp16_round(t: torch.Tensor) -> torch.Tensor:
    """GGML_FP16_TO_FP32(GGML_FP32_TO_FP16(t)): round-to-nearest-even through half precision."""
    return t.to(torch.float16).to(F32)


def sqrt_f32(t: torch.Tensor) -> torch.Tensor:
    """Correctly rounded float32 sqrt (C's sqrtf). torch.sqrt may go through MKL's vector math and be 1 ulp off."""
    return torch.from_numpy(np.sqrt(t.contiguous().numpy()))


def seqsum(t: torch.Tensor, zero_init: bool = True) -> torch.Tensor:
    """Sequential float32 sum over dim 0, like a C accumulation loop.

    `zero_init` mirrors `float s = 0; s += t[0]; ...` (which turns an all -0.0 sum into +0.0); without it the
    loop starts from `s = t[0]`.
    """
    acc = t[0].clone()
    if zero_init:
        acc.add_(0.0)
    for i in range(1, t.shape[0]):
        acc.add_(t[i])
    return acc


def first_absmax(t: torch.Tensor) -> torch.Tensor:
    """Per column, the signed value with the largest |value| (first one on ties), 0.0 when all are 0.

    Mirrors `if (fabsf(x) > amax) { amax = fabsf(x); max = x; }` starting from amax = 0: a nan (a scale from an
    overflowing x², |x| > 1.8e19) never wins there, while torch's amax would return it.
    """
    a = t.abs()
    a = torch.where(torch.isnan(a), torch.zeros_like(a), a)
    amax = a.amax(dim=0)
    idx = torch.argmax((a == amax).to(torch.uint8), dim=0)
    val = t.gather(0, idx.unsqueeze(0)).squeeze(0)
    return torch.where(amax > 0, val, torch.zeros_like(val))


def pos_max(t: torch.Tensor, dim: int) -> torch.Tensor:
    """`m = 0; if (v > m) m = v;` over `dim`: the maximum clamped at +0.0 (never -0.0); nan never wins."""
    m = torch.where(torch.isnan(t), torch.zeros_like(t), t).amax(dim=dim)
    return torch.where(m > 0, m, torch.zeros_like(m))


def full_div(num: float, den: torch.Tensor) -> torch.Tensor:
    """float32 `num / den` with a true division (torch's `scalar / tensor` is reciprocal-multiply)."""
    return torch.div(torch.full_like(den, num), den)


def make_qkx2(x: torch.Tensor, w: torch.Tensor, nmax: int, rmin: float, rdelta: float, nstep: int,
              use_mad: bool) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """ggml make_qkx2_quants (and make_qkx3_quants with explicit weights) on `[n, S]` groups.

    Returns (scale [S], the_min [S], L [n, S] as float32 integers in 0..nmax).
    """
    n, S = x.shape
    mn = x.amin(dim=0)
    mx = x.amax(dim=0)
    sum_w = seqsum(w, zero_init=False)
    sum_x = seqsum(w * x, zero_init=False)
    mn = torch.where(mn > 0, torch.zeros_like(mn), mn)
    degenerate = mx == mn
    live = ~degenerate
    one = torch.ones_like(mx)
    xm = torch.empty_like(x)  # x - min for the current min
    la = torch.empty_like(x)  # candidate levels
    diff = torch.empty_like(x)
    prods = torch.empty((n, 3, S), dtype=x.dtype)  # w·l, w·l·l, w·l·x: summed together

    def spread(mn: torch.Tensor) -> tuple[torch.Tensor, bool]:
        # max - min; `fast` when every iscale·(x - min) is surely inside nearest_int's domain
        rng = torch.where(degenerate, one, mx - mn)
        return rng, bool(((rng >= 1e-30) & (rng <= 1e30)).all())

    def levels(isc: torch.Tensor, fast: bool, mn: torch.Tensor) -> None:
        torch.sub(x, mn, out=xm)
        torch.mul(xm, isc, out=la)
        if fast:
            la.round_()
        else:
            la.copy_(nearest_int(la))
        la.clamp_(0, nmax)

    def error(scale: torch.Tensor, mn: torch.Tensor) -> torch.Tensor:
        # Σ w·err with diff = scale·L + min − x, err = |diff| or diff², summed in order
        torch.mul(la, scale, out=diff)
        diff.add_(mn).sub_(x)
        diff.abs_() if use_mad else diff.mul_(diff)
        return seqsum(diff.mul_(w))

    rng, fast = spread(mn)
    iscale = full_div(float(nmax), rng)
    scale = full_div(1.0, iscale)
    levels(iscale, fast, mn)
    best = error(scale, mn)
    # the kept L is recomputed at the end from the iscale and min that produced it (same bits, fewer copies)
    keep_isc, keep_mn = iscale, mn

    kernel = fused("qkx2", x.numel())
    for step in range(nstep + 1):
        # ggml keeps the accepted candidate's min for the following candidates (iscale and x - min use it)
        num = float(np.float32(rmin) + np.float32(rdelta) * np.float32(step) + np.float32(nmax))
        out = kernel(x, w, mn, rng, num, sum_w, sum_x, nmax, use_mad) if kernel is not None and fast else None
        if out is not None:
            isc, D, this_scale, this_min, cur = out
        else:
            isc = full_div(num, rng)
            levels(isc, fast, mn)
            wl = prods[:, 0]
            torch.mul(w, la, out=wl)
            torch.mul(wl, la, out=prods[:, 1])
            torch.mul(wl, x, out=prods[:, 2])
            sum_l, sum_l2, sum_xl = seqsum(prods)
            D = sum_w * sum_l2 - sum_l * sum_l
            this_scale = (sum_w * sum_xl - sum_x * sum_l) / D
            this_min = (sum_l2 * sum_x - sum_l * sum_xl) / D
            pos = this_min > 0
            this_min = torch.where(pos, torch.zeros_like(this_min), this_min)
            this_scale = torch.where(pos, sum_xl / sum_l2, this_scale)
            cur = error(this_scale, this_min)
        take = (D > 0) & (cur < best) & live
        if bool(take.any()):
            best = torch.where(take, cur, best)
            scale = torch.where(take, this_scale, scale)
            keep_isc = torch.where(take, isc, keep_isc)
            keep_mn = torch.where(take, mn, keep_mn)
            mn = torch.where(take, this_min, mn)
            rng, fast = spread(mn)

    levels(keep_isc, False, keep_mn)
    zero = torch.zeros_like(scale)
    scale = torch.where(degenerate, zero, scale)
    L = torch.where(degenerate, torch.zeros_like(la), la)
    return scale, -mn, L


def make_qx(x: torch.Tensor, nmax: int, qw: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """ggml make_qx_quants with rmse_type = 1 on `[n, S]` groups; weights `qw` or x².

    Returns (scale [S], L [n, S] float32 integers in 0..2·nmax−1; all 0 for an all-zero group).
    """
    n, S = x.shape
    mx = first_absmax(x)
    zero_grp = mx.abs() < GROUP_MAX_EPS
    mxs = torch.where(zero_grp, torch.ones_like(mx), mx)
    w = x * x if qw is None else qw
    wx = w * x
    l = torch.empty_like(x)
    prods = torch.empty((n, 2, S), dtype=x.dtype)  # w·x·l and w·l·l, summed together

    kernel = fused("qx", x.numel())

    def quant(num: float) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        out = kernel(x, w, wx, mxs, num, nmax) if kernel is not None else None
        if out is not None:
            return out
        isc = full_div(num, mxs)
        torch.mul(x, isc, out=l)
        l.round_().clamp_(-nmax, nmax - 1)  # |isc·x| <= |num|: inside nearest_int's domain
        torch.mul(wx, l, out=prods[:, 0])
        torch.mul(w, l, out=prods[:, 1]).mul_(l)
        sumlx, suml2 = seqsum(prods)
        return isc, sumlx, suml2

    keep, sumlx, suml2 = quant(float(-nmax))
    scale = torch.where(suml2 != 0, sumlx / suml2, torch.zeros_like(sumlx))
    best = scale * sumlx
    for step in range(-9, 10):
        if step == 0:
            continue
        isc, sumlx, suml2 = quant(float(-(np.float32(nmax) + np.float32(0.1) * np.float32(step))))
        take = (suml2 > 0) & (sumlx * sumlx > best * suml2)
        keep = torch.where(take, isc, keep)
        scale = torch.where(take, sumlx / suml2, scale)
        best = torch.where(take, scale * sumlx, best)
    torch.mul(x, keep, out=l)
    L = l.round_().clamp_(-nmax, nmax - 1).add_(nmax)
    L = torch.where(zero_grp, torch.zeros_like(L), L)
    scale = torch.where(zero_grp, torch.zeros_like(scale), scale)
    return scale, L


def make_q3(x: torch.Tensor, nmax: int) -> tuple[torch.Tensor, torch.Tensor]:
    """ggml make_q3_quants(do_rmse=true) on `[n, S]` groups: returns (scale [S], L [n, S] in 0..2·nmax−1)."""
    mx = first_absmax(x)
    zero_grp = mx.abs() < GROUP_MAX_EPS
    mxs = torch.where(zero_grp, torch.ones_like(mx), mx)
    isc = full_div(float(-nmax), mxs)
    L = nearest_int(isc * x).clamp_(-nmax, nmax - 1)
    w = x * x
    wx = w * x
    sumlx = seqsum(wx * L)
    suml2 = seqsum((w * L).mul_(L))
    sumlx, suml2 = _refine(x, w, wx, L, sumlx, suml2, -nmax, nmax - 1, qp=False)
    scale = torch.where(suml2 > 0, sumlx / suml2, torch.zeros_like(sumlx))
    L = L + nmax
    L = torch.where(zero_grp, torch.zeros_like(L), L)
    scale = torch.where(zero_grp, torch.zeros_like(scale), scale)
    return scale, L


def make_qp(x: torch.Tensor, nmax: int, qw: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """ggml make_qp_quants on `[n, S]` groups of non-negative values with weights `qw`.

    Returns (scale [S], L [n, S] float32 integers in 0..nmax).
    """
    mx = pos_max(x, 0)
    zero_grp = mx < GROUP_MAX_EPS
    mxs = torch.where(zero_grp, torch.ones_like(mx), mx)
    iscale = full_div(float(nmax), mxs)
    L = _wrap_u8(nearest_int(iscale * x))  # stored in a uint8 array, no clamp
    scale = full_div(1.0, iscale)
    d = x - scale * L
    best = seqsum((qw * d).mul_(d))
    for step in range(-4, 5):
        if step == 0:
            continue
        isc = full_div(float(np.float32(0.1) * np.float32(step) + np.float32(nmax)), mxs)
        sc = full_div(1.0, isc)
        l = nearest_int(isc * x).clamp_(max=nmax)
        d = x - sc * l
        mse = seqsum((qw * d).mul_(d))
        take = mse < best
        best = torch.where(take, mse, best)
        iscale = torch.where(take, isc, iscale)
    li = nearest_int(iscale * x).clamp_(max=nmax)
    wx = qw * x
    sumlx = seqsum(wx * li)
    suml2 = seqsum((qw * li).mul_(li))
    L = _wrap_u8(li)
    sumlx, suml2 = _refine(x, qw, wx, L, sumlx, suml2, None, nmax, qp=True)
    scale = torch.where(suml2 > 0, sumlx / suml2, torch.zeros_like(sumlx))
    L = torch.where(zero_grp, torch.zeros_like(L), L)
    scale = torch.where(zero_grp, torch.zeros_like(scale), scale)
    return scale, L


def _refine(x: torch.Tensor, w: torch.Tensor, wx: torch.Tensor, L: torch.Tensor, sumlx: torch.Tensor, suml2: torch.Tensor,
            lo: int | None, hi: int, qp: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """The up-to-5 coordinate-descent passes of make_q3_quants (qp=False) / make_qp_quants (qp=True); L is updated
    in place. A group whose pass changes nothing would repeat it identically (ggml stops it), so later passes only
    visit the groups that changed in the previous one."""
    n = x.shape[0]
    idx: torch.Tensor | None = None  # None: every group
    for _ in range(5):
        if idx is None:
            xs, ws, wxs, Ls, slx_all, sl2_all = x, w, wx, L, sumlx, suml2
        else:
            xs, ws, wxs, Ls = x[:, idx], w[:, idx], wx[:, idx], L[:, idx]
            slx_all, sl2_all = sumlx[idx], suml2[idx]
        changed = torch.zeros(xs.shape[1], dtype=torch.bool)
        for i in range(n):
            wi, xi, wxi, li = ws[i], xs[i], wxs[i], Ls[i]
            slx = slx_all - wxi * li
            sl2 = sl2_all - (wi * li) * li
            ok = (slx > 0) & (sl2 > 0) if qp else slx > 0
            ratio = (xi * sl2) / torch.where(ok, slx, torch.ones_like(slx))
            new_l = nearest_int(ratio).clamp_(lo, hi)
            ok &= new_l != li
            slx2 = slx + wxi * new_l
            sl22 = sl2 + (wi * new_l) * new_l
            better = (slx2 * slx2) * sl2_all > (slx_all * slx_all) * sl22
            ok &= better if qp else (sl22 > 0) & better
            Ls[i] = torch.where(ok, _wrap_u8(new_l) if qp else new_l, li)
            slx_all = torch.where(ok, slx2, slx_all)
            sl2_all = torch.where(ok, sl22, sl2_all)
            changed |= ok
        if idx is None:
            sumlx, suml2 = slx_all, sl2_all
            idx = changed.nonzero().squeeze(1)
        else:
            L[:, idx], sumlx[idx], suml2[idx] = Ls, slx_all, sl2_all
            idx = idx[changed]
        if idx.numel() == 0:
            break
    return sumlx, suml2


def _wrap_u8(t: torch.Tensor) -> torch.Tensor:
    """The value C reads back after storing an int in a uint8_t (negative inputs wrap)."""
    return torch.remainder(t, 256.0)
