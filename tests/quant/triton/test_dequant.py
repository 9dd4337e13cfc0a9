"""Triton FP8-block and MXFP4 dequant kernels equal their torch references bit for bit.

Without a GPU the kernels run in Triton's interpreter on CPU tensors (TRITON_INTERPRET=1, set
before any kernel module is imported). With a GPU the same tests run on it.
"""
from __future__ import annotations

import os

import pytest
import torch

from dshub.quant import mxfp4 as mx_ref
from dshub.quant.registry import get_codec
from dshub.quant.triton import kernel
from dshub.quant.triton.parity import bit_mismatch, kernel_device
from tests.support.tools import REPO_ROOT

DEV = kernel_device()
pytestmark = [
    pytest.mark.usefixtures("triton_kernels"),  # fails, with the reason, where the kernels cannot run
    pytest.mark.filterwarnings("ignore::RuntimeWarning:triton.runtime.interpreter"),  # inf/NaN edge cases, on purpose
]
FP8_CODECS = ("fp8_block_dequant_f32", "fp8_block_dequant_bf16")
MX_CODECS = ("mxfp4_dequant_f32", "mxfp4_dequant_bf16")


def run_both(codec: str, *args, **kwargs) -> tuple[torch.Tensor, torch.Tensor]:
    got = kernel(codec)(*(a.to(DEV) if isinstance(a, torch.Tensor) else a for a in args), **kwargs)
    want = get_codec(codec, "cpu")(*args, **kwargs)
    return got, want


def random_fp8(rows: int, cols: int, gen: torch.Generator) -> torch.Tensor:
    """Every finite e4m3 bit pattern is reachable (bytes drawn uniformly, NaNs 0x7f/0xff replaced by 0)."""
    b = torch.randint(0, 256, (rows, cols), dtype=torch.uint8, generator=gen)
    b[(b & 0x7F) == 0x7F] = 0
    return b.view(torch.float8_e4m3fn)


# ------------------------------------------------------------------ FP8 block dequant
@pytest.mark.parametrize("codec", FP8_CODECS)
@pytest.mark.parametrize(
    "rows,cols,block",
    [(1, 1, (128, 128)), (128, 128, (128, 128)), (129, 255, (128, 128)), (300, 131, (128, 128)), (70, 45, (32, 32)), (40, 200, (16, 64))],
)
def test_fp8_random_and_edge_shapes(codec, rows, cols, block):
    gen = torch.Generator().manual_seed(rows * 1000 + cols)
    w = random_fp8(rows, cols, gen)
    s = torch.rand(-(-rows // block[0]), -(-cols // block[1]), generator=gen) * 1e-2 + 1e-6
    got, want = run_both(codec, w, s, block)
    assert bit_mismatch(got, want) is None, bit_mismatch(got, want)


@pytest.mark.parametrize("codec", FP8_CODECS)
def test_fp8_zeros_huge_tiny_and_nan(codec):
    w = random_fp8(130, 140, torch.Generator().manual_seed(1))
    w[:3] = torch.tensor(0.0).to(torch.float8_e4m3fn)  # zeros
    w.view(torch.uint8)[5, :4] = torch.tensor([0x7F, 0xFF, 0x7E, 0xFE], dtype=torch.uint8)  # NaN, -NaN, +-448
    s = torch.tensor([[3.0e38, 1.0e-40], [1.0, 2.5]])  # overflow to inf, fp32 subnormal scale
    got, want = run_both(codec, w, s)
    assert bit_mismatch(got, want) is None, bit_mismatch(got, want)
    assert torch.isinf(want[:128, :128].float()).any() and torch.isnan(want[5, 0])


def test_fp8_bf16_rounds_ties_to_even():
    """fp32 products exactly halfway between two bf16 values go to the even one (the interpreter's
    own bf16 cast truncates; the kernel rounds in integers, so it must match here too)."""
    w = torch.tensor([[1.0, 1.0, -1.0]]).to(torch.float8_e4m3fn)
    s = torch.tensor([[1.0 + 2.0**-8, 1.0 + 3 * 2.0**-8, 1.0 + 3 * 2.0**-8]])  # exact bf16 ties, one scale each
    got, want = run_both("fp8_block_dequant_bf16", w, s, (1, 1))
    assert bit_mismatch(got, want) is None, bit_mismatch(got, want)
    assert want[0].tolist() == [1.0, 1.0 + 2.0**-6, -(1.0 + 2.0**-6)]  # truncation would give 1+2^-7


@pytest.mark.parametrize("codec", FP8_CODECS)
def test_fp8_e5m2_weights(codec):
    """F8_E5M2 checkpoints decode through their own byte table (every pattern, inf and NaN included)."""
    w = torch.arange(256, dtype=torch.uint8).repeat(3, 1).view(torch.float8_e5m2)
    s = torch.tensor([[0.5, 3.0]])
    got, want = run_both(codec, w, s)
    assert bit_mismatch(got, want) is None, bit_mismatch(got, want)


def test_fp8_rejects_mismatched_scale():
    with pytest.raises(ValueError, match="scale_inv shape"):
        kernel("fp8_block_dequant_bf16")(torch.zeros(130, 10, dtype=torch.float8_e4m3fn), torch.ones(1, 1))


# ------------------------------------------------------------------ MXFP4 dequant
def test_mxfp4_reference_decodes_known_values():
    """Low nibble first, e2m1 table, scale 2^(b-127): byte 0x21 at scale 128 is [0.5*2, 1.0*2]."""
    q = torch.tensor([[0x21, 0xF8, 0x7A] + [0] * 13], dtype=torch.uint8)
    s = torch.tensor([[128]], dtype=torch.uint8)
    out = mx_ref.dequant_mxfp4_f32(q, s)
    assert out[0, :6].tolist() == [1.0, 2.0, -0.0, -12.0, -2.0, 12.0]
    assert str(out[0, 2].item()) == "-0.0"


def test_mxfp4_scale_decoding_matches_torch_e8m0():
    assert hasattr(torch, "float8_e8m0fnu"), "this torch has no float8_e8m0fnu (.ci/install.sh installs torch 2.13.0, which has)"
    b = torch.arange(256, dtype=torch.uint8)
    got = mx_ref.e8m0_to_f32(b)
    want = b.view(torch.float8_e8m0fnu).float()
    assert bit_mismatch(got, want) is None


def test_mxfp4_reference_matches_gguf_py_blocks():
    """gguf-py's MXFP4 (llama.cpp's block layout: e8m0 byte, then nibbles j | j+16 << 4) decodes the
    same values from the same codes and scales."""
    from gguf import quants
    gen = torch.Generator().manual_seed(7)
    q = torch.randint(0, 256, (6, 32), dtype=torch.uint8, generator=gen)  # 6 rows x 64 elements
    s = torch.randint(0, 255, (6, 2), dtype=torch.uint8, generator=gen)  # 0xFF is NaN here, not in ggml
    codes = torch.stack((q & 0xF, q >> 4), -1).reshape(12, 32)  # element order, one row per block
    blocks = torch.cat((s.reshape(12, 1), codes[:, :16] | (codes[:, 16:] << 4)), 1).numpy()
    theirs = torch.from_numpy(quants.MXFP4.dequantize_blocks(blocks)).reshape(6, 64)
    assert torch.equal(mx_ref.dequant_mxfp4_f32(q, s), theirs)  # by value: ggml's int8 table has no -0


@pytest.mark.parametrize("codec", MX_CODECS)
@pytest.mark.parametrize("shape,nblk", [((1, 16), 1), ((3, 40, 48), 3), ((33, 20), 2), ((2, 300), 19)])
def test_mxfp4_kernel_random_and_edge_shapes(codec, shape, nblk):
    gen = torch.Generator().manual_seed(sum(shape))
    q = torch.randint(0, 256, shape, dtype=torch.uint8, generator=gen)
    s = torch.randint(110, 140, (*shape[:-1], nblk), dtype=torch.uint8, generator=gen)
    got, want = run_both(codec, q, s)
    assert got.shape == (*shape[:-1], 2 * shape[-1])
    assert bit_mismatch(got, want) is None, bit_mismatch(got, want)


@pytest.mark.parametrize("codec", MX_CODECS)
def test_mxfp4_kernel_every_code_and_extreme_scales(codec):
    """All 256 bytes under scales 0 (2^-127, subnormal products), 1, 127, 254 (overflow to inf), 255 (NaN)."""
    scales = torch.tensor([0, 1, 127, 254, 255, 140, 60, 200], dtype=torch.uint8)
    q = torch.arange(256, dtype=torch.uint8).reshape(8, 32).clone()  # one 64-element row per scale
    s = scales.reshape(8, 1).repeat(1, 2)
    q_i8 = q.view(torch.int8)  # DeepSeek-V4 stores the codes as I8
    s_e8 = s.view(torch.float8_e8m0fnu) if hasattr(torch, "float8_e8m0fnu") else s
    got, want = run_both(codec, q_i8, s_e8)
    assert bit_mismatch(got, want) is None, bit_mismatch(got, want)
    assert torch.isnan(want[4]).all() and torch.isinf(want[3].float()).any()


def test_mxfp4_rejects_scale_shape():
    with pytest.raises(ValueError, match="want 2 per row"):
        kernel("mxfp4_dequant_bf16")(torch.zeros(4, 32, dtype=torch.uint8), torch.zeros(4, 3, dtype=torch.uint8))


# ------------------------------------------------------------------ registry
def test_registry_serves_kernels_for_cuda_and_references_for_cpu():
    for codec in FP8_CODECS + MX_CODECS:
        assert get_codec(codec, "cuda").__name__ == f"triton_{codec}"
        assert get_codec(codec, "cpu").__module__ in ("dshub.quant.fp8", "dshub.quant.mxfp4")


def test_quant_imports_and_falls_back_without_triton(tmp_path):
    """With triton unimportable, `import dshub.quant` works, registers no kernel, and 'cuda' gets the reference."""
    import subprocess
    import sys

    code = (
        "import sys; sys.modules['triton'] = None\n"
        "import importlib.util as u; u.find_spec = (lambda f: (lambda n, *a: None if n == 'triton' else f(n, *a)))(u.find_spec)\n"
        "import dshub.quant, torch\n"
        "from dshub.quant.registry import get_codec, CODECS\n"
        "assert not any(d == 'cuda' for _, d in CODECS), CODECS\n"
        "f = get_codec('fp8_block_dequant_bf16', 'cuda')\n"
        "assert f is get_codec('fp8_block_dequant_bf16', 'cpu')\n"
        "w = torch.ones(3, 3).to(torch.float8_e4m3fn)\n"
        "print(f(w, torch.full((1, 1), 2.0)).float().sum().item())\n"
    )
    root = str(REPO_ROOT)
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=root, env={**os.environ, "PYTHONPATH": root})
    assert res.returncode == 0, res.stderr
    assert res.stdout.strip() == "18.0"
