"""INT4 group quantization and the three packings as Triton kernels; same signatures and bits as quant.int4.

Quantization: one program per (row tile, group). Divisions are IEEE (`div_ieee`), rounding to even uses
the 1.5*2^23 trick (exact for |v| < 2^22; larger values clamp anyway), FMA contraction is off, and the
stored scale is rounded in integers (bf16) or by the fp16 cast (round to nearest even on GPU and in
the interpreter), so every level equals the torch reference's.
Packing: one generic kernel gathers 8 nibbles per int32 word through an affine index map, which
covers compressed-tensors (rows and zero points), GPTQ (transposed) and AWQ (interleaved).
"""
from __future__ import annotations

import torch
import triton
import triton.language as tl

from dshub.quant import int4 as ref
from dshub.quant.int4 import AWQ_ORDER, PACK_FACTOR, Int4Scheme, Int4Tensor, check_groupable
from dshub.quant.triton.common import div_ieee, f32_to_bf16_bits, load_f32, source_view

TILE_ELEMS = 4096
NUM_WARPS = 8
PACK_TILE = (32, 32)  # output words per program
# AWQ: nibble p holds element AWQ_ORDER[p] of its 8, so element j goes to nibble AWQ_ORDER.index(j)
assert tuple(AWQ_ORDER.index(j) for j in range(8)) == tuple((j % 2) * 4 + j // 2 for j in range(8))


@triton.jit
def _rne(v):
    """Round to nearest, ties to even, for |v| < 2^22: add and subtract 1.5 * 2^23 (`quant.int4.RNE_MAGIC`)."""
    return (v + 12582912.0) - 12582912.0


@triton.jit
def _stored(raw, SCALE_BF16: tl.constexpr, TINY: tl.constexpr):
    """fp32 value of the stored scale: RNE to bf16/fp16, zero -> TINY (inf kept: the host raises)."""
    if SCALE_BF16:
        s = (f32_to_bf16_bits(raw) << 16).to(tl.uint32).to(tl.float32, bitcast=True)
    else:
        s = raw.to(tl.float16).to(tl.float32)
    return tl.where(s > 0, s, TINY)


@triton.jit
def _int4_quant_kernel(
    x_ptr, si_ptr, lut_ptr, q_ptr, s_ptr, z_ptr, rows, cols, si_stride, ngroups,
    G: tl.constexpr, TR: tl.constexpr, SRC: tl.constexpr, FROM_FP8: tl.constexpr, BR: tl.constexpr, BC: tl.constexpr,
    SYM: tl.constexpr, SCALE_BF16: tl.constexpr, TINY: tl.constexpr,
):
    r = tl.program_id(0) * TR + tl.arange(0, TR)
    g = tl.program_id(1)
    c = g * G + tl.arange(0, G)
    rmask = r < rows
    mask = rmask[:, None]
    offs = r[:, None].to(tl.int64) * cols + c[None, :]
    x = load_f32(x_ptr + offs, mask, SRC, lut_ptr)
    if FROM_FP8:
        x = x * tl.load(si_ptr + (r[:, None] // BR) * si_stride + (c[None, :] // BC), mask=mask, other=1.0)
    if SYM:
        amax = tl.max(tl.abs(x), axis=1)
        s = _stored(div_ieee(amax, tl.zeros_like(amax) + 7.5), SCALE_BF16, TINY)
        q = tl.clamp(_rne(div_ieee(x, s[:, None])), -8.0, 7.0)
    else:
        lo = tl.minimum(tl.min(x, axis=1), 0.0)
        hi = tl.maximum(tl.max(x, axis=1), 0.0)
        s = _stored(div_ieee(hi - lo, tl.zeros_like(hi) + 15.0), SCALE_BF16, TINY)
        zu = tl.clamp(_rne(div_ieee(-lo, s)), 0.0, 15.0)
        q = tl.clamp(_rne(div_ieee(x, s[:, None])) + (zu - 8.0)[:, None], -8.0, 7.0)
        tl.store(z_ptr + r.to(tl.int64) * ngroups + g, (zu - 8.0).to(tl.int8), mask=rmask)
    tl.store(q_ptr + offs, q.to(tl.int8), mask=mask)
    s_offs = s_ptr + r.to(tl.int64) * ngroups + g
    if SCALE_BF16:
        tl.store(s_offs, f32_to_bf16_bits(s).to(tl.int16), mask=rmask)
    else:
        tl.store(s_offs, s.to(tl.float16), mask=rmask)


def _quantize(x: torch.Tensor, scale_inv: torch.Tensor | None, scheme: Int4Scheme, block: tuple[int, int]) -> Int4Tensor:
    check_groupable(tuple(x.shape), scheme.group_size)
    if scheme.scale_dtype not in (torch.bfloat16, torch.float16):
        raise ref.Int4Error(f"INT4 kernels store bf16 or fp16 scales, not {scheme.scale_dtype}")
    rows, cols = x.shape
    g = scheme.group_size
    dev = x.device
    q = torch.empty((rows, cols), dtype=torch.int8, device=dev)
    scale = torch.empty((rows, cols // g), dtype=scheme.scale_dtype, device=dev)
    zero = None if scheme.symmetric else torch.empty((rows, cols // g), dtype=torch.int8, device=dev)
    if q.numel():
        from_fp8 = scale_inv is not None
        xs, src, table = source_view(x)
        si = scale_inv.to(torch.float32).contiguous() if from_fp8 else xs
        tr = max(1, TILE_ELEMS // g)
        grid = (triton.cdiv(rows, tr), cols // g)
        _int4_quant_kernel[grid](
            xs, si, table, q, scale.view(torch.int16) if scheme.scale_dtype == torch.bfloat16 else scale,
            q if zero is None else zero, rows, cols, si.shape[1] if from_fp8 else 0, cols // g,
            G=g, TR=tr, SRC=src, FROM_FP8=from_fp8, BR=block[0], BC=block[1], SYM=scheme.symmetric,
            SCALE_BF16=scheme.scale_dtype == torch.bfloat16, TINY=torch.finfo(scheme.scale_dtype).tiny,
            enable_fp_fusion=False, num_warps=NUM_WARPS,
        )
        if not bool(torch.isfinite(scale).all()):
            _raise_reference_overflow(x, scale_inv, scheme, block, scale)
    return Int4Tensor(q, scale, zero, g)


def _raise_reference_overflow(x, scale_inv, scheme, block, scale) -> None:
    """Re-run the torch reference on the chunk holding the first overflowing group, for its exact error."""
    bad_row = int((~torch.isfinite(scale)).any(dim=1).nonzero()[0])
    if scale_inv is None:
        r0 = bad_row // ref.ROW_CHUNK * ref.ROW_CHUNK
        ref.quantize_int4(x[r0 : r0 + ref.ROW_CHUNK].cpu(), scheme)
    else:
        step = ref.fp8_row_step(block[0])
        r0 = bad_row // step * step
        ref.quantize_int4_fp8(x[r0 : r0 + step].cpu(), scale_inv[r0 // block[0] :].cpu(), scheme, block)
    raise ref.ScaleOverflowError("INT4 group scale overflows its stored dtype")  # unreachable if the reference agrees


def quantize_int4(w: torch.Tensor, scheme: Int4Scheme) -> Int4Tensor:
    """Group-quantize a float `[out, in]` weight (values taken exactly, upcast to fp32)."""
    return _quantize(w, None, scheme, (1, 1))


def quantize_int4_fp8(weight: torch.Tensor, scale_inv: torch.Tensor, scheme: Int4Scheme, block: tuple[int, int] = (128, 128)) -> Int4Tensor:
    """Fused block-FP8 dequant -> group quantize (fp32(w) * fp32(scale_inv), never materialized)."""
    return _quantize(weight, scale_inv, scheme, block)


# ------------------------------------------------------------------ packing
@triton.jit
def _pack_kernel(
    src_ptr, out_ptr, src_rows, src_cols, out_rows, out_cols, ra, rb, rj, ca, cb, cj, OFFSET: tl.constexpr,
    AWQ: tl.constexpr, TA: tl.constexpr, TB: tl.constexpr,
):
    """out[a, b] = sum_j u(a, b, j) << 4*pos(j), u = src[a*ra+b*rb+j*rj, a*ca+b*cb+j*cj] + OFFSET (0 outside src)."""
    a = (tl.program_id(0) * TA + tl.arange(0, TA))[:, None]
    b = (tl.program_id(1) * TB + tl.arange(0, TB))[None, :]
    omask = (a < out_rows) & (b < out_cols)
    word = tl.zeros((TA, TB), dtype=tl.uint32)
    for j in tl.static_range(8):
        row = a * ra + b * rb + j * rj
        col = a * ca + b * cb + j * cj
        m = omask & (row < src_rows) & (col < src_cols)
        v = tl.load(src_ptr + row.to(tl.int64) * src_cols + col, mask=m, other=-OFFSET).to(tl.int32) + OFFSET
        if AWQ:
            shift = ((j % 2) * 4 + j // 2) * 4
        else:
            shift = j * 4
        word = word | (v.to(tl.uint32) << shift)
    tl.store(out_ptr + a.to(tl.int64) * out_cols + b, word.to(tl.int32, bitcast=True), mask=omask)


def _pack(src: torch.Tensor, out_shape: tuple[int, int], rows_map: tuple[int, int, int], cols_map: tuple[int, int, int], *, awq: bool = False) -> torch.Tensor:
    """int32 words of `out_shape` from int8 levels `src` (+8) through the affine index map."""
    out = torch.empty(out_shape, dtype=torch.int32, device=src.device)
    if out.numel():
        s = src.contiguous()
        grid = (triton.cdiv(out_shape[0], PACK_TILE[0]), triton.cdiv(out_shape[1], PACK_TILE[1]))
        _pack_kernel[grid](s, out, s.shape[0], s.shape[1], out_shape[0], out_shape[1], *rows_map, *cols_map,
                           OFFSET=8, AWQ=awq, TA=PACK_TILE[0], TB=PACK_TILE[1])
    return out


def _words(n: int) -> int:
    return -(-n // PACK_FACTOR)


ALONG_ROWS = ((1, 0, 0), (0, 8, 1))  # out[a, b] packs src[a, 8b + j]
DOWN_COLUMNS = ((8, 0, 1), (0, 1, 0))  # out[a, b] packs src[8a + j, b]
TRANSPOSED = ((0, 1, 0), (8, 0, 1))  # out[a, b] packs src[b, 8a + j]
ACROSS_ROWS = ((0, 8, 1), (1, 0, 0))  # out[a, b] packs src[8b + j, a]


def pack_compressed_tensors(t: Int4Tensor) -> dict[str, torch.Tensor]:
    """compressed-tensors `pack-quantized` tensors (suffixes after the module prefix)."""
    rows, cols = t.shape
    out = {
        "weight_packed": _pack(t.q, (rows, _words(cols)), *ALONG_ROWS),
        "weight_scale": t.scale.contiguous(),
        "weight_shape": torch.tensor(t.shape, dtype=torch.int64, device=t.q.device),
    }
    if t.zero is not None:
        out["weight_zero_point"] = _pack(t.zero, (_words(rows), t.zero.shape[1]), *DOWN_COLUMNS)
    return out


def pack_gptq(t: Int4Tensor) -> dict[str, torch.Tensor]:
    """GPTQ v1 tensors (`desc_act: false`, symmetric): qweight [in/8, out], qzeros [in/g, out/8], scales, g_idx."""
    rows, cols = t.shape
    ref.check_gptq(t)
    dev = t.q.device
    return {
        "qweight": _pack(t.q, (cols // PACK_FACTOR, rows), *TRANSPOSED),
        "qzeros": torch.full((t.scale.shape[1], rows // PACK_FACTOR), 0x77777777, dtype=torch.int32, device=dev),  # zu - 1 = 7
        "scales": t.scale.T.contiguous(),
        "g_idx": torch.arange(cols, dtype=torch.int32, device=dev) // t.group_size,
    }


def pack_awq(t: Int4Tensor) -> dict[str, torch.Tensor]:
    """AWQ GEMM tensors: qweight [in, out/8] (interleaved), qzeros [in/g, out/8], scales fp16 [in/g, out]."""
    rows, cols = t.shape
    ref.check_awq(t)
    ng = t.scale.shape[1]
    if t.zero is None:
        zeros = torch.full((ng, rows // PACK_FACTOR), -0x77777778, dtype=torch.int32, device=t.q.device)  # 0x88888888
    else:
        zeros = _pack(t.zero, (ng, rows // PACK_FACTOR), *ACROSS_ROWS, awq=True)
    return {
        "qweight": _pack(t.q, (cols, rows // PACK_FACTOR), *ACROSS_ROWS, awq=True),
        "qzeros": zeros,
        "scales": t.scale.T.contiguous(),
    }
