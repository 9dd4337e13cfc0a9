"""Triton GGUF block quantizers write the same bytes as quant.gguf's torch references (interpreter on
CPU tensors without a GPU; on the GPU when there is one). The fp16 scale fields are compared exactly too:
the kernels' fp16 cast rounds to nearest even in the interpreter and on the GPU."""
from __future__ import annotations

import pytest
import torch

from dshub.quant.gguf import legacy
from dshub.quant.triton import kernel
from dshub.quant.triton.parity import bit_mismatch, kernel_device

DEV = kernel_device()
LEGACY = ("Q8_0", "Q4_0", "Q5_0")
pytestmark = [
    pytest.mark.usefixtures("triton_kernels"),  # fails, with the reason, where the kernels cannot run
    pytest.mark.filterwarnings("ignore::RuntimeWarning:triton.runtime.interpreter"),  # inf/NaN edge cases, on purpose
]


def edge_rows(rows: int, cols: int, seed: int) -> torch.Tensor:
    """Rows at magnitudes 1e-30..1e30 (fp16 scales underflow and overflow), plus zeros, signed zeros,
    magnitude ties of opposite sign (the first one wins) and exact half-way products."""
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(rows, cols, generator=gen) * torch.logspace(-30, 30, rows).unsqueeze(1)
    x[0] = 0.0
    x[1] = -0.0
    x[2] = torch.tensor([1.0, -1.0] * (cols // 2))
    x[3] = torch.tensor([-2.0, 2.0] * (cols // 2))
    x[4] = (torch.arange(cols, dtype=torch.float32) % 32 - 16) * 0.5
    x[5] = torch.arange(cols, dtype=torch.float32) % 32 * 127 / 31  # Q8_0: x*id near .5
    return x


@pytest.mark.parametrize("qtype", LEGACY)
@pytest.mark.parametrize("rows,cols", [(40, 96), (7, 32), (1, 4096)])
def test_legacy_blocks_match_reference(qtype, rows, cols):
    x = edge_rows(max(rows, 6), cols, rows * cols)[:rows] if rows >= 6 else torch.randn(rows, cols)
    got = kernel(f"gguf_{qtype}")(x.to(DEV))
    want = legacy.QUANTIZERS[qtype](x)
    assert bit_mismatch(got, want) is None, bit_mismatch(got, want)


@pytest.mark.parametrize("qtype", LEGACY)
def test_legacy_refuses_what_the_reference_refuses(qtype):
    x = torch.randn(3, 64)
    x[2, 33] = float("inf")
    with pytest.raises(ValueError, match=r"non-finite value inf at row 2, column 33"):
        kernel(f"gguf_{qtype}")(x.to(DEV))
    with pytest.raises(ValueError, match="not a multiple of the block size"):
        kernel(f"gguf_{qtype}")(torch.zeros(2, 40, device=DEV))
    with pytest.raises(ValueError, match="expected a 2-D float32"):
        kernel(f"gguf_{qtype}")(torch.zeros(2, 32, dtype=torch.bfloat16, device=DEV))


# ------------------------------------------------------------------ K-quants (per-block searches on the device)
def kquant_codecs() -> list[str]:
    from dshub.quant.triton import KERNELS

    return [q for q in ("Q4_K", "Q6_K") if f"gguf_{q}" in KERNELS]


def kquant_rows() -> torch.Tensor:
    """Super-blocks at magnitudes 1e-12..1e12, an all-zero one, zero and signed-zero groups, ties, one huge group."""
    gen = torch.Generator().manual_seed(11)
    x = torch.randn(7, 512, generator=gen) * torch.logspace(-12, 12, 7).unsqueeze(1)
    x[0, :256] = 0.0
    x[1, :16] = 0.0
    x[1, 16:32] = -0.0
    x[1, 32:64] = torch.tensor([3.0, -3.0] * 16)
    x[2, 256:288] *= 1e6  # one group dominates its super-block: the others' scales round to 0
    return x


@pytest.mark.parametrize("qtype", kquant_codecs())
def test_kquant_blocks_match_reference(qtype):
    from dshub.quant.gguf import kquants

    x = kquant_rows()
    got = kernel(f"gguf_{qtype}")(x.to(DEV))
    want = kquants.QUANTIZERS[qtype](x)
    assert bit_mismatch(got, want) is None, bit_mismatch(got, want)


@pytest.mark.parametrize("qtype", kquant_codecs())
def test_kquant_refuses_non_finite_and_takes_imatrix(qtype):
    from dshub.quant.gguf import kquants

    x = torch.randn(2, 256)
    imatrix = torch.rand(256) + 0.1
    got = kernel(f"gguf_{qtype}")(x.to(DEV), imatrix.to(DEV))  # the _impl path runs on the torch reference
    assert bit_mismatch(got, kquants.QUANTIZERS[qtype](x, imatrix)) is None
    x[1, 200] = float("nan")
    with pytest.raises(ValueError, match=r"non-finite value nan at row 1, column 200"):
        kernel(f"gguf_{qtype}")(x.to(DEV))
