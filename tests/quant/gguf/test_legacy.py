"""GGUF legacy quantizers: bit-exact against gguf-py's numpy implementations (llama.cpp's reference), and round trips."""
from __future__ import annotations

import zlib

import gguf
import numpy as np
import pytest
import torch
from gguf import GGMLQuantizationType as QT
from gguf.constants import GGML_QUANT_SIZES

from dshub.quant.gguf.types import GGML_TYPES, fit_type, ggml_type
from dshub.quant.registry import get_codec
import dshub.quant.gguf  # noqa: F401

TYPES = ["F32", "F16", "BF16", "Q4_0", "Q4_1", "Q5_0", "Q5_1", "Q8_0"]


def _rows(kind: str, rows: int = 64, cols: int = 256) -> np.ndarray:
    g = np.random.default_rng(zlib.crc32(kind.encode()))
    x = g.standard_normal((rows, cols)).astype(np.float32)
    if kind == "scaled":
        x *= np.exp(g.uniform(-20, 20, (rows, 1))).astype(np.float32)
    elif kind == "zeros":
        x[:] = 0
        x[1, 5] = 1e-3
    elif kind == "ties":  # equal magnitudes of both signs: the first one wins in llama.cpp
        x = np.sign(x) * np.float32(0.75)
        x[:, ::7] = 0
    elif kind == "halves":  # values landing exactly on .5 after scaling (rounding-mode traps)
        x = (g.integers(-254, 255, (rows, cols)).astype(np.float32) / 2)
        x[:, ::32] = 127
    elif kind == "huge_tiny":
        x[::2] *= np.float32(6e4)
        x[1::2] *= np.float32(1e-30)
        x[3, :] = np.float32(1e-45)  # denormals
    elif kind == "constant":
        x[:] = np.float32(-3.25)
    return x


KINDS = ["normal", "scaled", "zeros", "ties", "halves", "huge_tiny", "constant"]


def _gguf_py(name: str, x: np.ndarray) -> np.ndarray:
    return gguf.quants.quantize(x, QT[name]).view(np.uint8).reshape(x.shape[0], -1)


def _ggml(name: str, x: np.ndarray) -> np.ndarray:
    from tests.support.llama_oracle import ggml_quantize  # fails without llama-cpp-python

    return ggml_quantize(name, x)


ORACLES = {"gguf-py": _gguf_py, "compiled-ggml": _ggml}


@pytest.mark.parametrize("oracle", ORACLES)
@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("name", TYPES)
def test_bit_exact(name: str, kind: str, oracle: str) -> None:
    """Our bytes equal gguf-py's numpy quantizers and llama.cpp's own compiled `ggml_quantize_chunk`."""
    x = _rows(kind)
    if name == "F16" and kind in ("huge_tiny", "scaled"):
        x = np.clip(x, -6e4, 6e4)
    ours = get_codec(f"gguf_{name}")(torch.from_numpy(x)).numpy()
    ref = ORACLES[oracle](name, x)
    assert ours.shape == ref.shape
    mismatch = np.argwhere(ours != ref)
    assert mismatch.size == 0, f"{name}/{kind}: first mismatch at {mismatch[0].tolist()}"


@pytest.mark.parametrize("name", TYPES)
def test_round_trip_error_bound(name: str) -> None:
    x = _rows("normal", 32, 512)
    q = get_codec(f"gguf_{name}")(torch.from_numpy(x)).numpy()
    back = gguf.quants.dequantize(q, QT[name]).reshape(x.shape)
    t = GGML_TYPES[name]
    # error vs the block absmax: half a step (a full step at the clamped end of Q4_0/Q5_0; min-max types span 2*amax)
    bound = {"F32": 0, "F16": 1e-3, "BF16": 8e-3, "Q8_0": 1 / 127, "Q4_0": 1 / 8, "Q4_1": 1 / 14, "Q5_0": 1 / 16, "Q5_1": 1 / 30}[name]
    bound += 2**-9 if t.block > 1 else 0  # the block scale is stored as fp16
    blk = max(t.block, 32)
    amax = np.abs(x).reshape(-1, blk).max(axis=1, keepdims=True)
    err = np.abs(back - x).reshape(-1, blk)
    assert (err <= amax * bound + 1e-7).all()
    if name in ("F32",):
        assert np.array_equal(back, x)


def test_nan_and_inf_rejected() -> None:
    x = torch.zeros(2, 64)
    x[1, 33] = float("nan")
    with pytest.raises(ValueError, match="row 1, column 33"):
        get_codec("gguf_Q8_0")(x)
    x[1, 33] = float("inf")
    with pytest.raises(ValueError, match="non-finite"):
        get_codec("gguf_Q4_0")(x)


def test_rejects_bad_row_length_and_dtype() -> None:
    with pytest.raises(ValueError, match="multiple of the block size 32"):
        get_codec("gguf_Q8_0")(torch.zeros(2, 48))
    with pytest.raises(ValueError, match="float32"):
        get_codec("gguf_Q8_0")(torch.zeros(2, 64, dtype=torch.bfloat16))


def test_chunking_does_not_change_bytes(monkeypatch: pytest.MonkeyPatch) -> None:
    from dshub.quant.gguf import legacy

    x = torch.from_numpy(_rows("scaled", 40, 128))
    whole = get_codec("gguf_Q5_0")(x)
    monkeypatch.setattr(legacy, "CHUNK_ELEMENTS", 300)
    assert torch.equal(get_codec("gguf_Q5_0")(x), whole)


def test_type_table_matches_gguf_py() -> None:
    for t in GGML_TYPES.values():
        assert QT[t.name].value == t.code
        assert GGML_QUANT_SIZES[QT[t.name]] == (t.block, t.type_size)
    assert ggml_type("q8_0").nbytes((3, 64)) == 3 * 2 * 34
    with pytest.raises(KeyError, match="known: F32"):
        ggml_type("Q9_9")


@pytest.mark.parametrize(
    "asked,row,expected",
    [("Q8_0", 4096, "Q8_0"), ("Q8_0", 48, "F16"), ("Q4_K", 128, "Q5_0"), ("Q6_K", 128, "Q8_0"), ("Q2_K", 128, "Q4_0"),
     ("Q5_K", 128, "Q5_1"), ("Q4_K", 100, "F16"), ("BF16", 7, "BF16")],
)
def test_row_fallback(asked: str, row: int, expected: str) -> None:
    got, why = fit_type(asked, row)
    assert got == expected
    assert (why is None) == (asked == expected)

