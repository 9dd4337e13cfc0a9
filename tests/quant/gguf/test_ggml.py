"""The ggml codec backend (ggml_quantize_chunk through ctypes) against the torch references, byte for byte, and its
failure modes: bad input raised as ValueError (never ggml's abort), a missing library a clear reason, never a crash."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from dshub.quant.gguf import ggml
from dshub.quant.backends import BackendNameError, resolve_backend
from dshub.quant.gguf.types import GGML_TYPES
from dshub.quant.registry import BackendUnavailable, get_codec
from tests.support.llama_oracle import ggml_quantize
from tests.support.tools import require

require("llama_cpp")


def _rows(cols: int) -> torch.Tensor:
    """Random rows of several scales with outliers, plus corner cases (zeros, constants, ties, one-hot, tiny values)."""
    g = torch.Generator().manual_seed(5)
    x = torch.randn(12, cols, generator=g) * (torch.rand(12, 1, generator=g) * 0.1 + 1e-3)
    heavy = torch.randn(6, cols, generator=g) * torch.exp(torch.randn(6, cols, generator=g)) * 0.01
    special = torch.stack([torch.zeros(cols), torch.full((cols,), 0.5), torch.arange(cols, dtype=torch.float32) % 16 - 8,
                           torch.randn(cols, generator=g) * 1e-30, torch.randn(cols, generator=g).abs(),
                           torch.where(torch.arange(cols) % 2 == 0, 1.0, -1.0)])
    special[-1, 7] = 30.0
    return torch.cat([x, heavy, special]).to(torch.bfloat16).to(torch.float32)


@pytest.mark.parametrize("type_name", ggml.SHARED_TYPES)
@pytest.mark.parametrize("with_imatrix", [False, True])
def test_ggml_equals_torch(type_name: str, with_imatrix: bool) -> None:
    x = _rows(512)
    imatrix = None
    if with_imatrix:
        imatrix = torch.rand(512, generator=torch.Generator().manual_seed(1)) ** 4 * 10
        imatrix[::37] = 0.0
    torch_codec, ggml_codec = get_codec(f"gguf_{type_name}"), get_codec(f"gguf_{type_name}", "cpu", "ggml")
    assert ggml_codec.__module__ == "dshub.quant.gguf.ggml" and torch_codec.__module__ != ggml_codec.__module__
    kw = {} if imatrix is None else {"imatrix": imatrix}
    a, b = torch_codec(x, **kw), ggml_codec(x, **kw)
    assert a.dtype == b.dtype == torch.uint8 and a.shape == b.shape == (x.shape[0], GGML_TYPES[type_name].row_bytes(512))
    bad = (a != b).any(dim=1).nonzero().flatten().tolist()
    assert not bad, f"{type_name}: rows {bad} differ between the torch reference and ggml"


@pytest.mark.parametrize("type_name", ggml.GGML_ONLY_TYPES)
def test_ggml_only_types(type_name: str) -> None:
    """Every IQ/TQ type: ggml's bytes (the oracle's direct call), its row size, and a reconstruction that tracks x."""
    from gguf import GGMLQuantizationType
    from gguf.quants import dequantize

    t = GGML_TYPES[type_name]
    g = torch.Generator().manual_seed(2)
    x = torch.randn(4, 512, generator=g) * 0.02
    imatrix = torch.rand(512, generator=g) + 0.1
    got = get_codec(f"gguf_{type_name}", "cpu", "ggml")(x, imatrix=imatrix)
    assert got.shape == (4, t.row_bytes(512))
    np.testing.assert_array_equal(got.numpy(), ggml_quantize(type_name, x.numpy(), imatrix.numpy()))
    if type_name.startswith("IQ"):
        back = dequantize(got.numpy(), GGMLQuantizationType[type_name])
        rel = float(np.sqrt(((back - x.numpy()) ** 2).mean() / (x.numpy() ** 2).mean()))
        assert rel < 0.9, f"{type_name}: relative RMS error {rel:.2f}"


def test_bad_input_is_an_error_not_an_abort() -> None:
    codec = get_codec("gguf_IQ2_XXS", "cpu", "ggml")
    with pytest.raises(ValueError, match="IQ2_XXS: ggml's quantizer needs an importance matrix"):
        codec(torch.randn(2, 256))  # ggml itself would GGML_ASSERT (abort the process)
    with pytest.raises(ValueError, match="row length 200 is not a multiple of the block size 256"):
        get_codec("gguf_Q4_K", "cpu", "ggml")(torch.randn(2, 200))
    x = torch.randn(2, 256)
    x[1, 9] = float("inf")
    with pytest.raises(ValueError, match="non-finite value inf at row 1, column 9"):
        get_codec("gguf_Q6_K", "cpu", "ggml")(x)
    with pytest.raises(ValueError, match="importance matrix has 3 values"):
        codec(torch.randn(2, 256), imatrix=torch.ones(3))


def test_resolution_and_a_missing_library(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    assert resolve_backend("torch") == "torch"
    assert resolve_backend("ggml") == "ggml" and resolve_backend("auto") == "native+ggml"
    with pytest.raises(BackendNameError, match="--codec-backend 'gpu': choose one of auto, torch, ggml, native"):
        resolve_backend("gpu")
    monkeypatch.setattr(ggml._library, "state", {})
    monkeypatch.setattr(ggml, "library_path", lambda: tmp_path / "libggml-base.so")
    notes: list[str] = []
    assert resolve_backend("auto", note=notes.append) == "native"
    assert notes == [f"--codec-backend auto: ggml is not available ({tmp_path / 'libggml-base.so'} does not exist "
                     "(llama-cpp-python installed without its libraries?)); quantizing with native"]
    with pytest.raises(BackendUnavailable, match="--codec-backend ggml: .* does not exist .*; use --codec-backend torch"):
        resolve_backend("ggml")
    with pytest.raises(ggml.GGMLUnavailable, match="does not exist"):
        get_codec("gguf_IQ4_NL", "cpu", "ggml")(torch.randn(1, 32))
    (tmp_path / "libggml-base.so").write_bytes(b"not a library")
    monkeypatch.setattr(ggml._library, "state", {})
    with pytest.raises(ggml.GGMLUnavailable, match="cannot be loaded"):
        ggml.load()


def test_library_found_without_importing_llama_cpp() -> None:
    import subprocess
    import sys

    code = ("import sys; from dshub.quant.gguf import ggml; ggml.load(); "
            "assert 'llama_cpp' not in sys.modules, 'llama_cpp was imported'; print(ggml.load().path)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert out.endswith("llama_cpp/lib/libggml-base.so")
