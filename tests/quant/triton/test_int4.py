"""Triton INT4 group quantization and packing equal quant.int4's torch reference bit for bit
(interpreter on CPU tensors without a GPU; on the GPU when there is one)."""
from __future__ import annotations

import pytest
import torch

from dshub.quant import int4 as ref
from dshub.quant.int4 import Int4Scheme
from dshub.quant.triton import kernel
from dshub.quant.triton.parity import bit_mismatch, kernel_device

DEV = kernel_device()
pytestmark = pytest.mark.usefixtures("triton_kernels")  # fails, with the reason, where the kernels cannot run
SCHEMES = [Int4Scheme(g, sym, sd) for g, sym, sd in [(128, True, torch.bfloat16), (32, False, torch.bfloat16), (64, True, torch.float16), (32, False, torch.float16)]]


def ids(s: Int4Scheme) -> str:
    return f"g{s.group_size}-{'sym' if s.symmetric else 'asym'}-{str(s.scale_dtype)[6:]}"


def assert_same(got: ref.Int4Tensor, want: ref.Int4Tensor) -> None:
    for field in ("q", "scale", "zero"):
        g, w = getattr(got, field), getattr(want, field)
        assert (g is None) == (w is None), field
        if w is not None:
            assert bit_mismatch(g, w) is None, f"{field}: {bit_mismatch(g, w)}"


def edge_weight(rows: int, cols: int, seed: int) -> torch.Tensor:
    """Random rows at many magnitudes, plus an all-zero row, a row of exact rounding ties and a subnormal row."""
    gen = torch.Generator().manual_seed(seed)
    w = torch.randn(rows, cols, generator=gen) * torch.logspace(-3, 3, rows).unsqueeze(1)
    w[0] = 0.0
    w[1] = torch.arange(cols, dtype=torch.float32) % 16 - 7.5  # absmax 7.5 -> scale 1: x/s = k + 0.5 ties
    w[2] = torch.randn(cols, generator=gen) * 1e-38
    return w


@pytest.mark.parametrize("scheme", SCHEMES, ids=ids)
@pytest.mark.parametrize("rows,cols", [(37, 128), (3, 256)])
def test_quantize_matches_reference(scheme, rows, cols):
    w = edge_weight(rows, cols, rows + cols)
    for dtype in (torch.float32, torch.bfloat16):
        x = w.to(dtype)
        assert_same(kernel("int4_quantize")(x.to(DEV), scheme), ref.quantize_int4(x, scheme))


@pytest.mark.parametrize("scheme", SCHEMES, ids=ids)
def test_fused_fp8_quantize_matches_reference(scheme):
    gen = torch.Generator().manual_seed(3)
    w = (torch.randn(130, 256, generator=gen) * 100).to(torch.float8_e4m3fn)  # 2x2 blocks, ragged rows
    w[5] = 0
    s = torch.rand(2, 2, generator=gen) * 1e-2 + 1e-8
    got = kernel("int4_quantize_fp8")(w.to(DEV), s.to(DEV), scheme)
    assert_same(got, ref.quantize_int4_fp8(w, s, scheme))


@pytest.mark.filterwarnings("ignore::RuntimeWarning:triton.runtime.interpreter")
def test_scale_overflow_raises_the_reference_error():
    w = torch.full((4, 32), 1.0e6)  # absmax/7.5 > fp16 max
    scheme = Int4Scheme(32, True, torch.float16)
    with pytest.raises(ref.ScaleOverflowError) as theirs:
        ref.quantize_int4(w, scheme)
    with pytest.raises(ref.ScaleOverflowError) as ours:
        kernel("int4_quantize")(w.to(DEV), scheme)
    assert str(ours.value) == str(theirs.value)


@pytest.mark.filterwarnings("ignore::RuntimeWarning:triton.runtime.interpreter")
def test_fp8_scale_overflow_raises_the_reference_error():
    """The fused FP8 path re-runs the reference on the row step holding the bad group (not the first step)."""
    w = (torch.randn(300, 256, generator=torch.Generator().manual_seed(3)) * 50).to(torch.float8_e4m3fn)
    s = torch.full((3, 2), 1e-3)
    s[2, 1] = 1e4  # rows 256..299, columns 128..255: group scales above fp16 max
    scheme = Int4Scheme(32, True, torch.float16)
    with pytest.raises(ref.ScaleOverflowError) as theirs:
        ref.quantize_int4_fp8(w, s, scheme)
    with pytest.raises(ref.ScaleOverflowError) as ours:
        kernel("int4_quantize_fp8")(w.to(DEV), s.to(DEV), scheme)
    assert str(ours.value) == str(theirs.value)


@pytest.mark.parametrize("scheme", SCHEMES, ids=ids)
@pytest.mark.parametrize("rows", [24, 37])
def test_packings_match_reference(scheme, rows):
    t = ref.quantize_int4(edge_weight(rows, 128, rows), scheme)
    on_dev = ref.Int4Tensor(t.q.to(DEV), t.scale.to(DEV), None if t.zero is None else t.zero.to(DEV), t.group_size)
    for name, fmt in ref.FORMATS.items():
        try:
            want = fmt.pack(t)
        except ref.Int4Error as e:  # shapes or schemes the format cannot hold: the kernel refuses alike
            with pytest.raises(ref.Int4Error, match=str(e)[:20]):
                kernel(f"int4_pack_{name.replace('-', '_')}")(on_dev)
            continue
        got = kernel(f"int4_pack_{name.replace('-', '_')}")(on_dev)
        assert list(got) == list(want), name
        for key in want:
            assert bit_mismatch(got[key], want[key]) is None, f"{name}.{key}: {bit_mismatch(got[key], want[key])}"
