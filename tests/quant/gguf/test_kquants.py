"""K-quants (and the imatrix paths of Q4_0/Q4_1/Q5_0/Q5_1) against llama.cpp's compiled quantizers, byte for byte.

The oracle is `ggml_quantize_chunk` from llama-cpp-python's libggml-base (the call llama-quantize makes per tensor);
these tests skip when llama-cpp-python is not installed. Round trips through gguf-py's dequantizers run regardless.
"""
from __future__ import annotations

import numpy as np
import pytest
import torch
from gguf import GGMLQuantizationType
from gguf.quants import dequantize

from tests.support.llama_oracle import ggml_quantize
from dshub.quant import get_codec
from dshub.quant.gguf.legacy_imatrix import quantize
from dshub.quant.gguf.kquants import QUANTIZERS, TYPE_SIZES

KTYPES = ["Q2_K", "Q3_K", "Q4_K", "Q5_K", "Q6_K"]


def _adversarial(cols: int = 512) -> torch.Tensor:
    """Rows that hit ggml's corner cases: zeros, constants, ties, tiny/huge/subnormal magnitudes, spikes."""
    g = torch.Generator().manual_seed(7)
    rows = [
        torch.zeros(cols),
        torch.full((cols,), 0.5),
        torch.full((cols,), -3.0),
        torch.arange(cols, dtype=torch.float32) % 16 - 8,  # integer grid: exact ties everywhere
        (torch.arange(cols, dtype=torch.float32) % 7) * 0.5 - 1.5,  # half-integer ties
        torch.randn(cols, generator=g) * 1e-30,
        torch.randn(cols, generator=g) * 1e-39,  # subnormal float32
        torch.randn(cols, generator=g) * 1e-7,  # fp16 scales underflow
        torch.randn(cols, generator=g) * 1e5,  # fp16 scales overflow to inf
        torch.randn(cols, generator=g) * 3e4,
        torch.randn(cols, generator=g).abs(),  # all positive: min clamps to 0
        -torch.randn(cols, generator=g).abs(),  # all negative
        torch.where(torch.arange(cols) % 2 == 0, 1.0, -1.0),
    ]
    spike = torch.randn(cols, generator=g) * 0.01
    spike[::97] = 40.0
    rows.append(spike)
    mixed = torch.randn(cols, generator=g)
    mixed[:256] = 0.0  # one all-zero super-block next to a normal one
    rows.append(mixed)
    one_hot = torch.zeros(cols)
    one_hot[5] = -1.0
    rows.append(one_hot)
    return torch.stack(rows).to(torch.float32)


def _random(rows: int, cols: int, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    scale = torch.rand(rows, 1, generator=g) * 0.1 + 0.001
    x = torch.randn(rows, cols, generator=g) * scale
    heavy = torch.randn(rows, cols, generator=g) * torch.exp(torch.randn(rows, cols, generator=g)) * 0.01  # outliers
    return torch.cat([x, heavy], dim=0)


def _real_shaped() -> torch.Tensor:
    """bf16-rounded weights with a DeepSeek row length (7168) and per-128-block scales, like dequantized FP8."""
    g = torch.Generator().manual_seed(3)
    w = torch.randn(8, 7168, generator=g) * 0.02
    s = torch.rand(8, 56, generator=g).repeat_interleave(128, dim=1) + 0.5
    return (w * s).to(torch.bfloat16).to(torch.float32)


def _assert_same(type_name: str, ours: torch.Tensor, ref: np.ndarray, bs: int) -> None:
    got = ours.numpy()
    assert got.shape == ref.shape
    bad = np.flatnonzero((got != ref).reshape(-1, bs).any(axis=1))
    assert bad.size == 0, f"{type_name}: {bad.size} of {got.size // bs} blocks differ, first block {bad[0]}"


@pytest.mark.parametrize("type_name", KTYPES)
@pytest.mark.parametrize("data", ["random", "adversarial", "real"])
def test_kquant_matches_llama_cpp(type_name: str, data: str) -> None:
    x = {"random": lambda: _random(24, 768, 11), "adversarial": _adversarial, "real": _real_shaped}[data]()
    ref = ggml_quantize(type_name, x.numpy())
    _assert_same(type_name, QUANTIZERS[type_name](x), ref, TYPE_SIZES[type_name])


@pytest.mark.parametrize("type_name", KTYPES + ["Q4_0", "Q4_1", "Q5_0", "Q5_1"])
@pytest.mark.parametrize("data", ["random", "adversarial"])
def test_imatrix_path_matches_llama_cpp(type_name: str, data: str) -> None:
    x = _random(12, 512, 5) if data == "random" else _adversarial()
    g = torch.Generator().manual_seed(9)
    imatrix = torch.rand(x.shape[1], generator=g) ** 4 * 10  # skewed, like real activation statistics
    imatrix[::50] = 0.0
    ref = ggml_quantize(type_name, x.numpy(), imatrix.numpy())
    from dshub.quant.gguf.types import GGML_TYPES

    _assert_same(type_name, quantize(type_name, x, imatrix), ref, GGML_TYPES[type_name].type_size)


@pytest.mark.parametrize("type_name", KTYPES)
def test_round_trip_through_gguf_dequantizer(type_name: str) -> None:
    """gguf-py reads our bytes back, and the reconstruction error shrinks with more bits."""
    x = _random(16, 512, 2)
    q = get_codec(f"gguf_{type_name}")(x)
    back = dequantize(q.numpy(), GGMLQuantizationType[type_name])
    assert back.shape == tuple(x.shape)
    rel = float(np.sqrt(((back - x.numpy()) ** 2).mean() / (x.numpy() ** 2).mean()))
    bound = {"Q2_K": 0.45, "Q3_K": 0.25, "Q4_K": 0.12, "Q5_K": 0.06, "Q6_K": 0.03}[type_name]
    assert rel < bound, f"{type_name}: relative RMS error {rel:.3f} >= {bound}"


@pytest.mark.parametrize("type_name", KTYPES)
def test_rejects_bad_input(type_name: str) -> None:
    codec = QUANTIZERS[type_name]
    x = torch.randn(2, 512)
    x[1, 300] = float("nan")
    with pytest.raises(ValueError, match="non-finite value nan at row 1, column 300"):
        codec(x)
    with pytest.raises(ValueError, match="not a multiple of the super-block size 256"):
        codec(torch.randn(2, 128))
    with pytest.raises(ValueError, match="importance matrix has 3 values"):
        codec(torch.randn(2, 256), imatrix=torch.ones(3))


def test_registered_by_type() -> None:
    for t in KTYPES:
        out = get_codec(f"gguf_{t}")(torch.randn(3, 512))
        assert out.dtype == torch.uint8 and tuple(out.shape) == (3, 2 * TYPE_SIZES[t])


@pytest.mark.slow
@pytest.mark.parametrize("type_name", KTYPES + ["Q4_1", "Q5_0"])
def test_fused_kernels_match_llama_cpp(type_name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """The torch.compile'd candidate kernels (used for large inputs) give llama.cpp's bytes, imatrix paths included."""
    from dshub.quant.gguf import kq_fused
    from dshub.quant.gguf.types import GGML_TYPES

    assert not kq_fused._state["disabled"], "fused kernels disabled (DSHUB_KQUANT_COMPILE=0 or no working C++ compiler)"
    monkeypatch.setattr(kq_fused, "MIN_ELEMENTS", 0)
    imatrix = torch.rand(512, generator=torch.Generator().manual_seed(2)) ** 4 * 10
    bs = GGML_TYPES[type_name].type_size
    for x in (_random(24, 512, 4), _adversarial()):  # adversarial rows may take the exact eager fallback
        if type_name in KTYPES:
            _assert_same(type_name, quantize(type_name, x), ggml_quantize(type_name, x.numpy()), bs)
        _assert_same(type_name, quantize(type_name, x, imatrix), ggml_quantize(type_name, x.numpy(), imatrix.numpy()), bs)
        assert not kq_fused._state["disabled"] and kq_fused._ready, "the fused path was not used"
