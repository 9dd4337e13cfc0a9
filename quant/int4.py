"""INT4 weight-only group quantization (W4A16) and the three on-disk packings engines read.

Quantization (torch reference, CPU, deterministic):

* Groups are `group_size` consecutive elements along the input (last) dimension of a `[out, in]`
  weight, computed from exact fp32 values (e.g. FP8 * scale_inv in fp32, never rounded to BF16 first).
* Symmetric: ``scale = S(absmax / 7.5)``, levels ``q = clamp(rne(x / scale), -8, 7)``, no zero point
  (GPTQ's and compressed-tensors' convention: 16 levels, ``-absmax`` maps to -7.5 -> -8,
  ``+absmax`` to 7.5 -> 8 -> clipped to 7).
* Asymmetric: ``lo = min(min(x), 0)``, ``hi = max(max(x), 0)``, ``scale = S((hi - lo) / 15)``,
  unsigned zero point ``zu = clamp(rne(-lo / scale), 0, 15)``, ``q = clamp(rne(x / scale) + zu - 8, -8, 7)``,
  signed zero point ``z = zu - 8``.
* ``S`` rounds the fp32 quotient to the stored scale dtype (BF16 for compressed-tensors, FP16 for
  GPTQ/AWQ) with round-to-nearest-even; levels are computed against that *stored* scale (upcast to
  fp32), so dequantization ``(q - z) * scale`` reproduces exactly what the file implies.
  ``rne`` is round half to even (``torch.round``). All divisions are IEEE fp32.
* A scale that rounds to 0 (an all-zero group, or a group so small its scale underflows) is replaced by
  the smallest normal number of the scale dtype; its levels are then 0 or tiny, and stay exact.
* A scale that overflows the stored dtype (FP16 max is 65504, i.e. a group absmax above ~491k) raises
  `ScaleOverflowError`: clipping it would silently corrupt the weights. Real DeepSeek weights are far
  below this; the FP16 overflow known on DeepSeek layer 60 is in *activations* of fp16 kernels, which
  the weight scales cannot fix (keep those layers out with an ignore pattern, or run in bf16).

Dequantization: ``dtype((q - z) * scale)`` computed in fp32, rounded once to the scale dtype, which
is bit-identical to compressed-tensors' own dequantizer (``(q - z)`` is exact in BF16/FP16 and the
product of a 5-bit integer and a BF16/FP16 scale is exact in fp32).

Packings (unsigned nibble ``u = q + 8``, least significant nibble first):

* compressed-tensors ``pack-quantized``: ``weight_packed`` int32 ``[out, ceil(in/8)]``, nibble j of word c
  is column ``8c + j``; ``weight_zero_point`` (asym) packed the same way along dim 0:
  int32 ``[ceil(out/8), in/g]``; ``weight_scale`` ``[out, in/g]``; ``weight_shape`` int64 ``[out, in]``.
* GPTQ (v1, ``desc_act: false``): ``qweight`` int32 ``[in/8, out]`` packed along the input dim,
  ``qzeros`` int32 ``[in/g, out/8]`` storing ``zu - 1`` (v1 off-by-one), ``scales`` fp16 ``[in/g, out]``,
  ``g_idx`` int32 ``[in]`` = k // g. Symmetric only (``zu = 8`` -> stored 7, ``0x77777777``): v1 cannot
  store ``zu = 0`` and vLLM's Marlin GPTQ kernels require ``sym``.
* AWQ GEMM: ``qweight`` int32 ``[in, out/8]`` packed along the output dim with nibble p holding
  column ``8c + AWQ_ORDER[p]``; ``qzeros`` int32 ``[in/g, out/8]`` same interleave, no offset;
  ``scales`` fp16 ``[in/g, out]``. Symmetric input is written with ``zu = 8``.
"""
from __future__ import annotations

import sys
from dataclasses import dataclass
from typing import Callable

import torch

from dshub.quant.fp8 import expand_scale, fp8_to_f32
from dshub.quant.registry import CODECS, register_codec

BITS = 4
PACK_FACTOR = 32 // BITS  # nibbles per int32 word
QMIN, QMAX = -8, 7  # signed levels
UMAX = 15  # unsigned levels 0..15
SYM_DIVISOR = 7.5  # absmax / 7.5: 16 levels spanning [-absmax, absmax] (GPTQ / compressed-tensors)
ASYM_DIVISOR = 15.0
AWQ_ORDER = (0, 2, 4, 6, 1, 3, 5, 7)  # nibble p of an AWQ word holds column 8c + AWQ_ORDER[p]
ROW_CHUNK = 256  # rows quantized per step: bounds the fp32 temporaries
GROUP_SIZES = (32, 64, 128)  # the sizes the engines' Marlin / WNA16 kernels support
RNE_MAGIC = torch.tensor(1.5 * 2**23)  # fl(v + RNE_MAGIC) = RNE_MAGIC + rne(v) for |v| < 2**22

NIBBLE_SHIFTS = torch.arange(PACK_FACTOR, dtype=torch.int64) * BITS


class Int4Error(ValueError):
    """A weight cannot be quantized or packed as asked (shape, range or format)."""


class ScaleOverflowError(Int4Error):
    """A group's scale is not finite in the stored scale dtype."""


@dataclass(frozen=True)
class Int4Scheme:
    """How to quantize: group size along the input dim, symmetric or not, stored scale dtype."""

    group_size: int = 128
    symmetric: bool = True
    scale_dtype: torch.dtype = torch.bfloat16


@dataclass
class Int4Tensor:
    """A group-quantized `[out, in]` weight: signed levels, stored scales, signed zero points (asym)."""

    q: torch.Tensor  # int8 [out, in], values in [-8, 7]
    scale: torch.Tensor  # scale_dtype [out, in // group]
    zero: torch.Tensor | None  # int8 [out, in // group], values in [-8, 7]; None when symmetric
    group_size: int

    @property
    def shape(self) -> tuple[int, int]:
        return tuple(self.q.shape)  # type: ignore[return-value]

    @property
    def symmetric(self) -> bool:
        return self.zero is None


# ------------------------------------------------------------------ quantization
def check_groupable(shape: tuple[int, ...], group_size: int) -> None:
    """Raise `Int4Error` unless `shape` is a 2-D weight whose input dim splits into whole groups."""
    if len(shape) != 2:
        raise Int4Error(f"INT4 group quantization needs a 2-D [out, in] weight, got shape {list(shape)}")
    if group_size <= 0 or shape[1] % group_size:
        raise Int4Error(f"input dim {shape[1]} is not a multiple of group size {group_size}")


def rne_to_dtype_f32(x: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """`x` (fp32) rounded to `dtype` with round-to-nearest-even, returned as fp32 again."""
    return x.to(dtype).to(torch.float32)


def stored_scale(raw: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """fp32 raw scales -> the fp32 value of the stored scale (RNE to `dtype`, underflow -> tiny, overflow -> error)."""
    s = rne_to_dtype_f32(raw, dtype)
    if not bool(torch.isfinite(s).all()):
        bad = raw[~torch.isfinite(s)]
        if bool(torch.isnan(bad).any()):
            raise ScaleOverflowError("the weight holds NaN values; it cannot be quantized")
        raise ScaleOverflowError(
            f"group scale {float(bad.max()):.6g} overflows {str(dtype).removeprefix('torch.')} "
            f"(max {torch.finfo(dtype).max:.6g}); the weight values are out of range for this format"
        )
    return torch.where(s > 0, s, torch.full_like(s, torch.finfo(dtype).tiny))


def quantize_rows_(x: torch.Tensor, scheme: Int4Scheme, out: Int4Tensor) -> None:
    """Group-quantize contiguous fp32 rows `x` [r, in] into `out` (row slices of the result); `x` is scratch.

    `rne(x / s)` is computed as the bits of `fl(x / s + 1.5 * 2**23)`: below 2**22 in magnitude, adding the magic
    number rounds to the nearest integer, ties to even, exactly like `torch.round`, and leaves that integer in the
    low bits of the fp32 word (whose low byte is the two's-complement int8). One fused pass instead of two."""
    rows, cols = x.shape
    gs = scheme.group_size
    g = x.view(rows, cols // gs, gs)
    lo, hi = torch.aminmax(g, dim=-1)
    if scheme.symmetric:
        s = stored_scale(torch.maximum(-lo, hi) / SYM_DIVISOR, scheme.scale_dtype)
    else:
        lo.clamp_(max=0.0)
        hi.clamp_(min=0.0)
        s = stored_scale((hi - lo) / ASYM_DIVISOR, scheme.scale_dtype)
    torch.addcdiv(RNE_MAGIC, g, s.unsqueeze(-1), out=g)  # fl(magic + x / s): one rounding of x / s, then exact
    q = out.q
    q.copy_(x.view(torch.int32))  # int32 -> int8 keeps the low byte = rne(x / s); |levels| < 40 (scale >= raw / 1.5)
    if out.zero is not None:
        torch.round(-lo / s, out=lo).clamp_(0, UMAX).sub_(8)  # signed zero point
        out.zero.copy_(lo)
        q.view(rows, cols // gs, gs).add_(out.zero.unsqueeze(-1))
    q.clamp_(QMIN, QMAX)
    out.scale.copy_(s)


def empty_int4(rows: int, cols: int, scheme: Int4Scheme, device: torch.device | str = "cpu") -> Int4Tensor:
    ng = cols // scheme.group_size
    zero = None if scheme.symmetric else torch.empty((rows, ng), dtype=torch.int8, device=device)
    return Int4Tensor(torch.empty((rows, cols), dtype=torch.int8, device=device),
                      torch.empty((rows, ng), dtype=scheme.scale_dtype, device=device), zero, scheme.group_size)


def row_slice(t: Int4Tensor, r0: int, r1: int) -> Int4Tensor:
    return Int4Tensor(t.q[r0:r1], t.scale[r0:r1], None if t.zero is None else t.zero[r0:r1], t.group_size)


@register_codec("int4_quantize", "cpu")
def quantize_int4(w: torch.Tensor, scheme: Int4Scheme) -> Int4Tensor:
    """Group-quantize a float `[out, in]` weight (values taken exactly, upcast to fp32), a few rows at a time."""
    check_groupable(tuple(w.shape), scheme.group_size)
    rows, cols = w.shape
    out = empty_int4(rows, cols, scheme, w.device)
    buf = torch.empty((min(rows, ROW_CHUNK), cols), dtype=torch.float32, device=w.device)
    for r0 in range(0, rows, ROW_CHUNK):
        r1 = min(rows, r0 + ROW_CHUNK)
        x = buf[: r1 - r0]
        x.copy_(w[r0:r1])
        quantize_rows_(x, scheme, row_slice(out, r0, r1))
    return out


def fp8_row_step(block_rows: int) -> int:
    """Rows `quantize_int4_fp8` quantizes per step: whole FP8 scale blocks, about `ROW_CHUNK` rows."""
    return max(block_rows, ROW_CHUNK // block_rows * block_rows)


@register_codec("int4_quantize_fp8", "cpu")
def quantize_int4_fp8(
    weight: torch.Tensor, scale_inv: torch.Tensor, scheme: Int4Scheme, block: tuple[int, int] = (128, 128)
) -> Int4Tensor:
    """Fused block-FP8 dequant -> group quantize: fp32(w) * fp32(scale_inv) per block, never materialising
    more than `ROW_CHUNK` fp32 rows. Same result as `quantize_int4(dequant_fp8_block_f32(w, s))`."""
    check_groupable(tuple(weight.shape), scheme.group_size)
    br, bc = block
    rows, cols = weight.shape
    s = scale_inv.to(torch.float32)
    step = fp8_row_step(br)
    out = empty_int4(rows, cols, scheme)
    buf = torch.empty((min(rows, step), cols), dtype=torch.float32)
    for r0 in range(0, rows, step):
        r1 = min(rows, r0 + step)
        x = buf[: r1 - r0]
        fp8_to_f32(weight[r0:r1], x)
        for b0 in range(r0, r1, br):  # one scale row per block row
            x[b0 - r0 : min(r1, b0 + br) - r0].mul_(expand_scale(s[b0 // br], bc, cols))
        quantize_rows_(x, scheme, row_slice(out, r0, r1))
    return out


@register_codec("int4_dequantize", "cpu")
def dequantize_int4(t: Int4Tensor, dtype: torch.dtype | None = None) -> torch.Tensor:
    """`(q - z) * scale` per group in fp32, rounded once to `dtype` (default: the scale dtype)."""
    rows, cols = t.shape
    g = t.group_size
    q = t.q.to(torch.float32).reshape(rows, cols // g, g)
    if t.zero is not None:
        q = q - t.zero.to(torch.float32).unsqueeze(-1)
    out = q * t.scale.to(torch.float32).unsqueeze(-1)
    return out.reshape(rows, cols).to(dtype or t.scale.dtype)


# ------------------------------------------------------------------ nibble packing
def to_int32(words: torch.Tensor) -> torch.Tensor:
    """uint32 values held in int64 -> the same 32 bits as int32 (two's complement)."""
    return torch.where(words >= 2**31, words - 2**32, words).to(torch.int32)


def pack_nibbles_last(u: torch.Tensor, order: tuple[int, ...] | None = None) -> torch.Tensor:
    """Pack unsigned nibbles (int values 0..15) along the last dim, 8 per int32, least significant first;
    zero-pad to a multiple of 8. With `order`, nibble p of each word holds element `order[p]` of its 8."""
    rows, cols = u.shape
    pad = (-cols) % PACK_FACTOR
    v = u.to(torch.uint8)
    v = (torch.nn.functional.pad(v, (0, pad)) if pad else v).reshape(rows, -1, PACK_FACTOR)
    if order is not None:
        v = v[..., list(order)]
    if sys.byteorder == "little":  # pairs as little-endian int16 a | b << 8 -> byte a | b << 4; 4 bytes per word
        h = v.contiguous().view(torch.int16)
        return (h | (h >> 4)).to(torch.uint8).view(torch.int32).reshape(rows, -1)
    return to_int32((v.to(torch.int64) << NIBBLE_SHIFTS.to(v.device)).sum(dim=-1))


def unpack_nibbles_last(words: torch.Tensor, cols: int, order: tuple[int, ...] | None = None) -> torch.Tensor:
    """Inverse of `pack_nibbles_last`: int32 words [r, w] -> unsigned nibbles int8 [r, cols]."""
    v = (words.to(torch.int64).unsqueeze(-1) >> NIBBLE_SHIFTS.to(words.device)) & 0xF
    if order is not None:
        v = v[..., [order.index(j) for j in range(PACK_FACTOR)]]
    return v.reshape(words.shape[0], -1)[:, :cols].to(torch.int8)


def unsigned(q: torch.Tensor) -> torch.Tensor:
    """Signed levels int8 [-8, 7] -> unsigned nibbles uint8 [0, 15] (q + 8)."""
    return q.view(torch.uint8) + 8  # two's complement + 8 wraps modulo 256 to exactly q + 8


def require_multiple(what: str, n: int, k: int, fmt: str) -> None:
    if n % k:
        raise Int4Error(f"{fmt} needs the {what} ({n}) to be a multiple of {k}")


def require_fp16_scales(t: Int4Tensor, fmt: str) -> None:
    """GPTQ/AWQ store FP16 scales: quantize with `scale_dtype=torch.float16` so levels match them."""
    if t.scale.dtype != torch.float16:
        raise Int4Error(f"{fmt} stores float16 scales; quantize with scale_dtype=float16 (got {t.scale.dtype})")


def require_gptq_dims(rows: int, cols: int) -> None:
    require_multiple("input dim", cols, PACK_FACTOR, "gptq")
    require_multiple("output dim", rows, PACK_FACTOR, "gptq")


def check_gptq(t: Int4Tensor) -> None:
    """Raise `Int4Error` unless GPTQ v1 can hold `t` (FP16 scales, symmetric, both dims multiples of 8)."""
    require_fp16_scales(t, "gptq")
    if t.zero is not None:
        raise Int4Error("gptq output is symmetric only (v1 zeros cannot hold 0; Marlin GPTQ kernels need sym)")
    require_gptq_dims(*t.shape)


def check_awq(t: Int4Tensor) -> None:
    """Raise `Int4Error` unless AWQ GEMM can hold `t` (FP16 scales, output dim a multiple of 8)."""
    require_fp16_scales(t, "awq")
    require_multiple("output dim", t.shape[0], PACK_FACTOR, "awq")


# ------------------------------------------------------------------ formats
@register_codec("int4_pack_compressed_tensors", "cpu")
def pack_compressed_tensors(t: Int4Tensor) -> dict[str, torch.Tensor]:
    """compressed-tensors `pack-quantized` tensors (suffixes after the module prefix)."""
    out = {
        "weight_packed": pack_nibbles_last(unsigned(t.q)),
        "weight_scale": t.scale.contiguous(),
        "weight_shape": torch.tensor(t.shape, dtype=torch.int64),
    }
    if t.zero is not None:
        out["weight_zero_point"] = pack_nibbles_last(unsigned(t.zero).T).T.contiguous()
    return out


@register_codec("int4_pack_gptq", "cpu")
def pack_gptq(t: Int4Tensor) -> dict[str, torch.Tensor]:
    """GPTQ v1 tensors (`desc_act: false`, symmetric): qweight [in/8, out], qzeros [in/g, out/8], scales, g_idx."""
    rows, cols = t.shape
    check_gptq(t)
    ngroups = t.scale.shape[1]
    stored_zeros = torch.full((ngroups, rows), 8 - 1, dtype=torch.int64, device=t.q.device)  # v1 stores zu - 1
    return {
        # packing along the input dim is the compressed-tensors word layout, transposed
        "qweight": pack_nibbles_last(unsigned(t.q)).T.contiguous(),
        "qzeros": pack_nibbles_last(stored_zeros),
        "scales": t.scale.T.contiguous(),
        "g_idx": torch.arange(cols, dtype=torch.int32, device=t.q.device) // t.group_size,
    }


@register_codec("int4_pack_awq", "cpu")
def pack_awq(t: Int4Tensor) -> dict[str, torch.Tensor]:
    """AWQ GEMM tensors: qweight [in, out/8] (interleaved), qzeros [in/g, out/8], scales fp16 [in/g, out]."""
    check_awq(t)
    zu = torch.full(t.scale.shape, 8, dtype=torch.int64, device=t.q.device) if t.zero is None else t.zero.to(torch.int64) + 8
    return {
        "qweight": pack_nibbles_last(unsigned(t.q).T, AWQ_ORDER),
        "qzeros": pack_nibbles_last(zu.T.contiguous(), AWQ_ORDER),
        "scales": t.scale.T.contiguous(),
    }


@register_codec("int4_unpack_compressed_tensors", "cpu")
def unpack_compressed_tensors(tensors: dict[str, torch.Tensor], group_size: int) -> Int4Tensor:
    """Read back our (or anyone's) `pack-quantized` tensors into levels, scales and zero points."""
    rows, cols = (int(v) for v in tensors["weight_shape"].tolist())
    q = unpack_nibbles_last(tensors["weight_packed"], cols).to(torch.int16) - 8
    zero = None
    if "weight_zero_point" in tensors:
        zero = (unpack_nibbles_last(tensors["weight_zero_point"].T.contiguous(), rows).T.to(torch.int16) - 8).to(torch.int8)
    return Int4Tensor(q.to(torch.int8), tensors["weight_scale"], None if zero is None else zero.contiguous(), group_size)


def ct_layout(rows: int, cols: int, scheme: Int4Scheme) -> list[tuple[str, torch.dtype, tuple[int, ...]]]:
    ng = cols // scheme.group_size
    out = [("weight_packed", torch.int32, (rows, -(-cols // PACK_FACTOR))), ("weight_scale", scheme.scale_dtype, (rows, ng)),
           ("weight_shape", torch.int64, (2,))]
    return out + ([] if scheme.symmetric else [("weight_zero_point", torch.int32, (-(-rows // PACK_FACTOR), ng))])


def gptq_layout(rows: int, cols: int, scheme: Int4Scheme) -> list[tuple[str, torch.dtype, tuple[int, ...]]]:
    require_gptq_dims(rows, cols)
    ng = cols // scheme.group_size
    return [("qweight", torch.int32, (cols // PACK_FACTOR, rows)), ("qzeros", torch.int32, (ng, rows // PACK_FACTOR)),
            ("scales", torch.float16, (ng, rows)), ("g_idx", torch.int32, (cols,))]


def awq_layout(rows: int, cols: int, scheme: Int4Scheme) -> list[tuple[str, torch.dtype, tuple[int, ...]]]:
    require_multiple("output dim", rows, PACK_FACTOR, "awq")
    ng = cols // scheme.group_size
    return [("qweight", torch.int32, (cols, rows // PACK_FACTOR)), ("qzeros", torch.int32, (ng, rows // PACK_FACTOR)),
            ("scales", torch.float16, (ng, rows))]


Layout = Callable[[int, int, Int4Scheme], list[tuple[str, torch.dtype, tuple[int, ...]]]]


@dataclass(frozen=True)
class Int4Format:
    """An on-disk INT4 format: its packing codec, tensor layout, scale dtype, and whether it holds zero points."""

    name: str
    codec: str  # registered packing codec (torch reference on "cpu", Triton on "cuda")
    layout: Layout
    scale_dtype: torch.dtype
    asymmetric: bool

    @property
    def pack(self) -> Callable[[Int4Tensor], dict[str, torch.Tensor]]:
        return CODECS.get((self.codec, "cpu"))


FORMATS: dict[str, Int4Format] = {
    f.name: f
    for f in (
        Int4Format("compressed-tensors", "int4_pack_compressed_tensors", ct_layout, torch.bfloat16, True),
        Int4Format("gptq", "int4_pack_gptq", gptq_layout, torch.float16, False),
        Int4Format("awq", "int4_pack_awq", awq_layout, torch.float16, True),
    )
}


def get_format(fmt: str) -> Int4Format:
    try:
        return FORMATS[fmt]
    except KeyError:
        raise Int4Error(f"unknown INT4 format {fmt!r}; known: {', '.join(FORMATS)}") from None


def packed_layout(fmt: str, shape: tuple[int, ...], scheme: Int4Scheme) -> list[tuple[str, torch.dtype, tuple[int, ...]]]:
    """(suffix, dtype, shape) of every tensor `fmt` writes for an `[out, in]` weight, in file order, from shapes
    alone; raises `Int4Error` for shapes the format cannot hold. Equal to what the format's packer returns."""
    check_groupable(shape, scheme.group_size)
    return get_format(fmt).layout(shape[0], shape[1], scheme)


def scheme_for(fmt: str, group_size: int = 128, symmetric: bool = True) -> Int4Scheme:
    """The quantization scheme that writes `fmt` exactly (its scale dtype); rejects what it cannot store."""
    f = get_format(fmt)
    if not symmetric and not f.asymmetric:
        raise Int4Error(f"{fmt} output is symmetric only; use --format compressed-tensors or awq for --asymmetric")
    if group_size <= 0 or group_size % PACK_FACTOR:
        raise Int4Error(f"group size {group_size} must be a positive multiple of {PACK_FACTOR}")
    return Int4Scheme(group_size=group_size, symmetric=symmetric, scale_dtype=f.scale_dtype)
