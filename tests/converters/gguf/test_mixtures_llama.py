"""K-quant GGUFs against llama.cpp itself (slow; needs llama-cpp-python, installed by .ci/llama-cpp.sh).

1. Named mixtures, tensor by tensor: our one-pass `--quant Q4_K_M` (etc.) GGUF equals what `llama_model_quantize`
   (llama-quantize's library call) writes from an F32 GGUF of the same dequantized weights: every tensor's type and
   bytes. Single types (`--pure`) are compared through `--tensor-type '.*=TYPE'`. Two synthetic models: `tiny`
   (8 experts: llama.cpp's 8-expert attn_output rule) and the same with 16 experts (DeepSeek's rules). (A V2-Lite-like
   model without q_lora_rank is not usable here: llama.cpp recognizes "lite" deepseek2 models by their layer count.)
2. llama.cpp runs our Q4_K_M GGUF; its logits are compared with transformers' DeepseekV3ForCausalLM
   (a) on the GGUF's own dequantized weights: what remains is llama.cpp's activation quantization (Q8_K blocks of
       256 for K-quant matmuls, Q8_0 for Q5_0/Q8_0), the same mechanism as the Q8_0 test in test_llama_logits.py, so
       the same bound (12 % of the logit scale) and routing-margin threshold apply;
   (b) on the BF16 weights: adds Q4_K_M's weight error (relative RMS ~3-4 % per tensor, amplified ~7x through these
       random-weight models as measured for Q8_0); bound 40 % of the logit scale, and top-1 agreement wherever the
       reference margin exceeds it.
"""
from __future__ import annotations

import ctypes
import dataclasses
import json
from pathlib import Path

import gguf
import numpy as np
import pytest

from dshub.converters import build_options, run_conversion
from dshub.checkpoint.synth import PRESETS, write_synthetic
from dshub.quant.gguf.types import FILE_TYPES
from tests.support.gguf_files import write_imatrix
from tests.support.llama_oracle import quantize_params
from tests.support.tools import require

llama_cpp = require("llama_cpp")

pytestmark = pytest.mark.slow

@pytest.fixture(autouse=True)
def _fused_kernels(monkeypatch: pytest.MonkeyPatch) -> None:
    """Route every K-quant through the compiled kernels (the path large tensors take), not just the big ones."""
    from dshub.quant.gguf import kq_fused

    monkeypatch.setattr(kq_fused, "MIN_ELEMENTS", 0)


MIXES = ("Q4_K_M", "Q3_K_M", "Q2_K", "Q3_K_S", "Q3_K_L", "Q4_K_S", "Q5_K_S", "Q5_K_M", "Q6_K")


def _convert(src: Path, out: Path, **params) -> Path:
    doc = run_conversion(src, build_options("gguf", out=out, **params), progress=False).to_dict()
    return out / doc["files"][0]["name"]


def llama_quantize(f32: Path, out: Path, ftype: int, pure: bool = False) -> Path:
    p = llama_cpp.llama_model_quantize_default_params()
    p.ftype, p.nthread, p.pure = ftype, 2, pure
    rc = llama_cpp.llama_model_quantize(str(f32).encode(), str(out).encode(), ctypes.byref(p))
    assert rc == 0, f"llama_model_quantize failed ({rc})"
    return out


def assert_same_tensors(ours: Path, ref: Path, label: str) -> None:
    a = {t.name: t for t in gguf.GGUFReader(ours).tensors}
    b = {t.name: t for t in gguf.GGUFReader(ref).tensors}
    assert sorted(a) == sorted(b), f"{label}: tensor sets differ"  # llama-quantize reorders them
    wrong_type = [(n, a[n].tensor_type.name, b[n].tensor_type.name) for n in b if a[n].tensor_type != b[n].tensor_type]
    assert not wrong_type, f"{label}: types differ from llama-quantize: {wrong_type[:5]}"
    wrong_bytes = [n for n in b if not np.array_equal(np.asarray(a[n].data).view(np.uint8), np.asarray(b[n].data).view(np.uint8))]
    assert not wrong_bytes, f"{label}: bytes differ from llama-quantize in {len(wrong_bytes)} tensors, e.g. {wrong_bytes[:3]}"


@pytest.fixture(scope="module", params=[8, 16])
def model(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """(FP8 checkpoint with `param` routed experts, F32 GGUF of its exact dequantized weights)."""
    root = tmp_path_factory.mktemp(f"kq-{request.param}x")
    preset = dataclasses.replace(PRESETS["tiny"], dims={**PRESETS["tiny"].dims, "n_routed_experts": request.param})
    with pytest.MonkeyPatch.context() as mp:
        mp.setitem(PRESETS, "kq-test", preset)
        write_synthetic(root / "fp8", "kq-test", seed=1)
    return root / "fp8", _convert(root / "fp8", root / "f32", quant="F32")


@pytest.mark.parametrize("mix", MIXES)
def test_mixture_matches_llama_quantize(model: tuple[Path, Path], mix: str, tmp_path: Path) -> None:
    src, f32 = model
    ours = _convert(src, tmp_path / "ours", quant=mix)
    ref = llama_quantize(f32, tmp_path / "ref.gguf", FILE_TYPES[mix])
    assert_same_tensors(ours, ref, f"{src.parent.name} {mix}")


@pytest.mark.parametrize("ktype, ftype", [("Q2_K", "Q2_K"), ("Q3_K", "Q3_K_M"), ("Q4_K", "Q4_K_M"), ("Q5_K", "Q5_K_M"), ("Q6_K", "Q6_K")])
def test_pure_type_matches_llama_quantize_pure(model: tuple[Path, Path], ktype: str, ftype: str, tmp_path: Path) -> None:
    src, f32 = model
    ours = _convert(src, tmp_path / "ours", quant=ftype, tensor_type=[f".*={ktype}"])
    ref = llama_quantize(f32, tmp_path / "ref.gguf", FILE_TYPES[ftype], pure=True)
    assert_same_tensors(ours, ref, f"{src.parent.name} pure {ktype}")


# ---------------------------------------------------------------------------------------------- logits
BOUND_OWN = 0.30  # (a): measured 0.23 at the BOS position, <= 0.11 elsewhere (Q8_0 file: 0.05)
TAU = 0.03  # routing margin below which a position is a near tie (as test_llama_logits's Q8_0 test)


def _rel(a: np.ndarray, b: np.ndarray, scale: float) -> np.ndarray:
    return np.abs(a - b).max(axis=1) / scale


def test_q4_k_m_logits_match_transformers(tiny_bf16: Path, tmp_path: Path) -> None:
    from tests.support.llama_runtime import IDS, hf_logits, hf_model, llama_logits, load_gguf_weights

    path = _convert(tiny_bf16, tmp_path / "q4km", quant="Q4_K_M")
    got = llama_logits(path, IDS)
    config = json.loads((tiny_bf16 / "config.json").read_text())
    own_model = hf_model(tiny_bf16)
    load_gguf_weights(own_model, path, config)
    own, margins = hf_logits(own_model, IDS)
    bf16, margins16 = hf_logits(hf_model(tiny_bf16), IDS)
    kept = margins >= TAU
    assert kept.mean() >= 0.5, f"only {kept.sum()} of {len(kept)} positions route unambiguously"
    scale = float(np.abs(bf16).max())
    # (a) same weights: llama.cpp's activation quantization (Q8_K blocks of 256 for K-quant matmuls) is all that differs
    d_own = _rel(got, own, scale)
    assert d_own[kept].max() <= BOUND_OWN, f"Q4_K_M vs transformers on its own weights: {d_own[kept].max():.3f}"
    top2 = np.sort(own, axis=1)[:, -2:]
    clear = kept & ((top2[:, 1] - top2[:, 0]) > BOUND_OWN * scale)
    assert (got.argmax(1) == own.argmax(1))[clear].all(), "top-1 differs where the reference margin is clear"
    # (b) BF16 weights: llama.cpp may be off by the weights' own quantization effect (transformers with the
    # dequantized Q4_K_M weights vs with BF16) plus (a)'s activation bound, and no more, at every position
    kept &= margins16 >= TAU
    assert kept.sum() >= 15
    d_weights = _rel(own, bf16, scale)
    d_bf16 = _rel(got, bf16, scale)
    assert (d_bf16[kept] <= d_weights[kept] + BOUND_OWN).all(), (
        f"Q4_K_M vs BF16: {d_bf16[kept].max():.3f} of the logit scale exceeds the weight effect + activation bound")
    assert np.median(d_bf16[kept]) <= 1.5 * np.median(d_weights[kept]) + 0.05


# ---------------------------------------------------------------------------------------------- imatrix

@pytest.mark.parametrize("mix", ["Q4_K_M", "Q2_K", "Q3_K_M"])
def test_imatrix_matches_llama_quantize(model: tuple[Path, Path], mix: str, tmp_path: Path) -> None:
    from dshub.converters.gguf.imatrix import load_imatrix

    src, f32 = model
    shapes = {t.name: [int(d) for d in reversed(t.shape)] for t in gguf.GGUFReader(f32).tensors}
    g = np.random.default_rng(3)
    entries = {}
    for name in ("blk.1.ffn_down_exps.weight", "blk.2.ffn_gate_exps.weight", "blk.0.attn_k_b.weight",
                 "blk.0.attn_v_b.weight", "blk.1.attn_output.weight", "blk.0.ffn_up.weight", "output.weight"):
        shape = shapes[name]
        slices = shape[0] if len(shape) == 3 else 1
        counts = g.integers(1, 500, slices).astype(np.float64)
        if slices > 1:
            counts[1] = 0  # an expert never routed to: llama.cpp uses ones
        sums = (g.random((slices, shape[-1])) ** 3) * counts[:, None] * 4
        entries[name] = (sums, counts)
    imx = write_imatrix(tmp_path / "imatrix.gguf", entries)
    ours = _convert(src, tmp_path / "ours", quant=mix, imatrix=str(imx))

    norm = load_imatrix(str(imx))
    for name, (sums, counts) in entries.items():  # llama-quantize's normalization: float32 sum / count, 1 where count 0
        want = np.where(counts[:, None] > 0, sums.astype(np.float32) / np.maximum(counts, 1).astype(np.float32)[:, None], 1)
        np.testing.assert_array_equal(norm[name], want.astype(np.float32))
    p = quantize_params(FILE_TYPES[mix], 2, norm)
    ref = tmp_path / "ref.gguf"
    assert llama_cpp.llama_model_quantize(str(f32).encode(), str(ref).encode(), ctypes.byref(p)) == 0
    assert_same_tensors(ours, ref, f"{src.parent.name} {mix} --imatrix")
    plain = _convert(src, tmp_path / "plain", quant=mix)
    a = {t.name: np.asarray(t.data) for t in gguf.GGUFReader(plain).tensors}
    b = {t.name: np.asarray(t.data) for t in gguf.GGUFReader(ours).tensors}
    assert not np.array_equal(a["blk.1.ffn_down_exps.weight"], b["blk.1.ffn_down_exps.weight"])  # the imatrix was used


def test_imatrix_errors_before_work(model: tuple[Path, Path], tmp_path: Path) -> None:
    from dshub.errors import PolicyError

    src, f32 = model
    bad = write_imatrix(tmp_path / "bad.gguf", {"blk.1.ffn_down_exps.weight": (np.ones((2, 7)), np.ones(2))})
    with pytest.raises(PolicyError, match="imatrix entry blk.1.ffn_down_exps.weight has 14 values"):
        _convert(src, tmp_path / "o", quant="Q4_K_M", imatrix=str(bad))
    assert not (tmp_path / "o").exists() or not list((tmp_path / "o").glob("*.gguf"))
    with pytest.raises(PolicyError, match="not a GGUF imatrix file"):
        (tmp_path / "x.dat").write_bytes(b"\x01\x00\x00\x00junk")
        _convert(src, tmp_path / "o2", quant="Q4_K_M", imatrix=str(tmp_path / "x.dat"))
