"""INT4 group quantization and packings, checked against independent readers written here from the
published layouts (hub-int4.md B5/B6) and against compressed-tensors' own decompressor."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from dshub.quant import get_codec
from dshub.quant.fp8 import dequant_fp8_block_f32
from dshub.quant.int4 import (
    FORMATS,
    Int4Error,
    Int4Scheme,
    ScaleOverflowError,
    dequantize_int4,
    pack_awq,
    pack_compressed_tensors,
    pack_gptq,
    quantize_int4,
    quantize_int4_fp8,
    scheme_for,
    unpack_compressed_tensors,
)
from tests.support.int4_readers import read_awq, read_ct, read_gptq

GROUPS = (32, 64, 128)


def weights(out: int = 48, inp: int = 256, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    w = torch.randn(out, inp, generator=g) * 0.02
    w[0, :32] = 0.0  # an all-zero group
    w[1, :] = w[1, :].abs()  # all-positive rows: zero point at its edge when asymmetric
    w[2, 5] = 0.9  # an outlier
    return w


def documented_levels(w: torch.Tensor, g: int, symmetric: bool, dtype: torch.dtype):
    """The module docstring's formulas, in numpy fp32 (np.rint is round-half-even)."""
    x = w.numpy().astype(np.float32).reshape(w.shape[0], -1, g)
    if symmetric:
        raw = np.abs(x).max(-1) / np.float32(7.5)
    else:
        lo, hi = np.minimum(x.min(-1), 0), np.maximum(x.max(-1), 0)
        raw = (hi - lo) / np.float32(15)
    s = torch.from_numpy(raw).to(dtype).float().numpy()
    s = np.where(s > 0, s, np.float32(torch.finfo(dtype).tiny))
    if symmetric:
        return np.clip(np.rint(x / s[..., None]), -8, 7).reshape(w.shape), s, None
    zu = np.clip(np.rint(-lo / s), 0, 15)
    q = np.clip(np.rint(x / s[..., None]) + (zu - 8)[..., None], -8, 7)
    return q.reshape(w.shape), s, zu - 8


# ---------------------------------------------------------------- quantization
@pytest.mark.parametrize("g", GROUPS)
@pytest.mark.parametrize("sym", [True, False])
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_levels_follow_documented_formula(g, sym, dtype):
    w = weights()
    t = quantize_int4(w, Int4Scheme(g, sym, dtype))
    q, s, z = documented_levels(w, g, sym, dtype)
    assert t.q.dtype == torch.int8 and t.scale.dtype == dtype
    assert np.array_equal(t.q.numpy(), q)
    assert np.array_equal(t.scale.float().numpy(), s)
    assert (t.zero is None) == sym
    if not sym:
        assert np.array_equal(t.zero.numpy(), z)


@pytest.mark.parametrize("sym", [True, False])
def test_dequantization_error_is_bounded(sym):
    w = weights(seed=3)
    t = quantize_int4(w, Int4Scheme(64, sym, torch.bfloat16))
    err = (dequantize_int4(t, torch.float32) - w).abs().reshape(w.shape[0], -1, 64)
    s = t.scale.float().unsqueeze(-1)
    # half a step, plus the clip of a scale rounded down to bf16 (<= 2^-8 relative over 7.5..15 steps)
    assert bool((err <= s * (0.5 + 15 * 2.0**-8) + 1e-12).all())
    assert float(err.max()) > 0  # a real quantizer loses something


def test_zero_group_has_finite_scale_and_exact_zeros():
    w = torch.zeros(8, 64)
    for sym in (True, False):
        t = quantize_int4(w, Int4Scheme(32, sym, torch.float16))
        assert bool(torch.isfinite(t.scale).all()) and bool((t.scale > 0).all())
        assert bool((dequantize_int4(t) == 0).all())


def test_fp16_scale_overflow_raises():
    w = torch.full((8, 32), 6.0e5)
    with pytest.raises(ScaleOverflowError, match="overflows float16"):
        quantize_int4(w, Int4Scheme(32, True, torch.float16))
    t = quantize_int4(w, Int4Scheme(32, True, torch.bfloat16))  # bf16 holds it
    assert bool(torch.isfinite(t.scale).all())


def test_group_must_divide_input_dim():
    with pytest.raises(Int4Error, match="not a multiple of group size 128"):
        quantize_int4(torch.zeros(8, 192), Int4Scheme(128))
    with pytest.raises(Int4Error, match="2-D"):
        quantize_int4(torch.zeros(2, 8, 128), Int4Scheme(128))


def test_scheme_for_formats():
    assert scheme_for("compressed-tensors", 32, False).scale_dtype == torch.bfloat16
    assert scheme_for("gptq").scale_dtype == torch.float16
    with pytest.raises(Int4Error, match="symmetric only"):
        scheme_for("gptq", 128, False)
    with pytest.raises(Int4Error, match="unknown INT4 format"):
        scheme_for("exl2")
    with pytest.raises(Int4Error, match="multiple of 8"):
        scheme_for("awq", 12)


def test_fused_fp8_path_equals_dequant_then_quantize():
    g = torch.Generator().manual_seed(1)
    rows, cols = 200, 384  # rows not a multiple of the 128 block: cropped edge
    w8 = (torch.randn(rows, cols, generator=g) * 40).to(torch.float8_e4m3fn)
    s = torch.rand(2, 3, generator=g) * 1e-3 + 1e-4
    for sym in (True, False):
        scheme = Int4Scheme(64, sym, torch.bfloat16)
        fused = quantize_int4_fp8(w8, s, scheme)
        ref = quantize_int4(dequant_fp8_block_f32(w8, s), scheme)
        assert torch.equal(fused.q, ref.q) and torch.equal(fused.scale, ref.scale)
        assert (fused.zero is None) or torch.equal(fused.zero, ref.zero)


def test_codecs_are_registered():
    for name in ("int4_quantize", "int4_quantize_fp8", "int4_dequantize", "int4_pack_compressed_tensors", "int4_pack_gptq", "int4_pack_awq"):
        assert callable(get_codec(name, "cpu"))


# ---------------------------------------------------------------- packings
def test_compressed_tensors_probe_word():
    """hub-int4.md B5: levels [-8,-7,-1,0,1,2,3,7] pack to 0xfba98710."""
    q = torch.tensor([[-8, -7, -1, 0, 1, 2, 3, 7] * 4], dtype=torch.int8)
    t = quantize_int4(torch.zeros(1, 32), Int4Scheme(32))
    t.q = q
    word = pack_compressed_tensors(t)["weight_packed"][0, 0].item() & 0xFFFFFFFF
    assert word == 0xFBA98710


@pytest.mark.parametrize("g", GROUPS)
@pytest.mark.parametrize("sym", [True, False])
def test_compressed_tensors_layout(g, sym):
    w = weights(out=44)  # out not a multiple of 8: zero points get padded
    t = quantize_int4(w, Int4Scheme(g, sym))
    p = pack_compressed_tensors(t)
    assert p["weight_packed"].dtype == torch.int32 and tuple(p["weight_packed"].shape) == (44, 256 // 8)
    assert p["weight_shape"].dtype == torch.int64 and p["weight_shape"].tolist() == [44, 256]
    assert tuple(p["weight_scale"].shape) == (44, 256 // g)
    q, z = read_ct(p)
    assert np.array_equal(q, t.q.numpy())
    if sym:
        assert "weight_zero_point" not in p
    else:
        assert tuple(p["weight_zero_point"].shape) == (6, 256 // g)
        assert np.array_equal(z, t.zero.numpy())
    back = unpack_compressed_tensors(p, g)
    assert torch.equal(back.q, t.q) and (sym or torch.equal(back.zero, t.zero))


@pytest.mark.parametrize("g", GROUPS)
@pytest.mark.parametrize("sym", [True, False])
def test_compressed_tensors_decompressor_matches_our_dequantization(g, sym):
    from compressed_tensors.compressors import PackedQuantizationCompressor
    from compressed_tensors.quantization import QuantizationArgs, QuantizationScheme

    w = weights(out=40, inp=512, seed=g)
    t = quantize_int4(w, Int4Scheme(g, sym))
    scheme = QuantizationScheme(
        targets=["Linear"],
        weights=QuantizationArgs(num_bits=4, type="int", symmetric=sym, group_size=g, strategy="group"),
    )
    out = PackedQuantizationCompressor.decompress(pack_compressed_tensors(t), scheme)
    ours = dequantize_int4(t)
    assert out["weight"].dtype == ours.dtype == torch.bfloat16
    assert torch.equal(out["weight"], ours)


@pytest.mark.parametrize("g", GROUPS)
def test_gptq_and_awq_hold_the_same_levels_as_compressed_tensors(g):
    w = weights(out=48, inp=256, seed=7)
    scheme = Int4Scheme(g, True, torch.float16)
    t = quantize_int4(w, scheme)
    q_ct, _ = read_ct(pack_compressed_tensors(t))
    ct_scale = pack_compressed_tensors(t)["weight_scale"]

    gp = pack_gptq(t)
    assert tuple(gp["qweight"].shape) == (256 // 8, 48) and tuple(gp["qzeros"].shape) == (256 // g, 48 // 8)
    assert gp["scales"].dtype == torch.float16 and tuple(gp["scales"].shape) == (256 // g, 48)
    assert bool((gp["qzeros"] == 0x77777777).all())  # v1: zero 8 stored as 7
    q, z = read_gptq(gp, g)
    assert np.array_equal(q.T - 8, q_ct) and bool((z == 8).all())
    assert torch.equal(gp["scales"].T, ct_scale)

    aw = pack_awq(t)
    assert tuple(aw["qweight"].shape) == (256, 48 // 8) and tuple(aw["qzeros"].shape) == (256 // g, 48 // 8)
    q, z = read_awq(aw)
    assert np.array_equal(q.T - 8, q_ct) and bool((z == 8).all())
    assert torch.equal(aw["scales"].T, ct_scale)

    # dequantized through each format's published formula: identical values
    ref = dequantize_int4(t, torch.float32).numpy()
    kk = np.arange(256) // g
    gw = gp["scales"].float().numpy()[kk, :] * (read_gptq(gp, g)[0] - read_gptq(gp, g)[1][kk, :])
    aq, az = read_awq(aw)
    awv = aw["scales"].float().numpy()[kk, :] * (aq - az[kk, :])
    assert np.array_equal(gw.T, ref) and np.array_equal(awv.T, ref)


@pytest.mark.parametrize("g", GROUPS)
def test_awq_asymmetric_zero_points(g):
    w = weights(out=32, inp=256, seed=11)
    t = quantize_int4(w, Int4Scheme(g, False, torch.float16))
    q_ct, z_ct = read_ct(pack_compressed_tensors(t))
    q, z = read_awq(pack_awq(t))
    assert np.array_equal(q.T - 8, q_ct) and np.array_equal(z.T - 8, z_ct)  # ct zp = awq z - 8


def test_format_shape_errors():
    t = quantize_int4(weights(out=44), Int4Scheme(32, True, torch.float16))
    with pytest.raises(Int4Error, match="output dim"):
        pack_awq(t)
    with pytest.raises(Int4Error, match="float16"):
        pack_gptq(quantize_int4(weights(), Int4Scheme(32, True, torch.bfloat16)))
    with pytest.raises(Int4Error, match="symmetric only"):
        pack_gptq(quantize_int4(weights(), Int4Scheme(32, False, torch.float16)))
    assert set(FORMATS) == {"compressed-tensors", "gptq", "awq"}


# gptq is symmetric only: that refusal is tested in test_format_shape_errors.
@pytest.mark.parametrize("fmt,sym", [(f, s) for f in sorted(FORMATS) for s in (True, False) if s or f != "gptq"])
def test_packed_layout_predicts_packer_output(fmt, sym):
    from dshub.quant.int4 import packed_layout

    scheme = scheme_for(fmt, 64, sym)
    t = quantize_int4(weights(out=40, inp=256), scheme)
    packed = FORMATS[fmt].pack(t)
    layout = packed_layout(fmt, (40, 256), scheme)
    assert [n for n, _, _ in layout] == list(packed)
    assert all(packed[n].dtype == d and tuple(packed[n].shape) == s for n, d, s in layout)


def test_nan_weight_is_refused():
    w = weights()
    w[3, 7] = float("nan")
    with pytest.raises(ScaleOverflowError, match="NaN"):
        quantize_int4(w, Int4Scheme(32))


def test_input_is_not_modified():
    w = weights()
    before = w.clone()
    quantize_int4(w, Int4Scheme(64, False))
    assert torch.equal(w, before)
