"""IQ and ternary mixtures against llama.cpp itself: every `--quant IQ*` / `TQ*` file equals, tensor by tensor (type
and bytes), what `llama_model_quantize` writes from an F32 GGUF of the same dequantized weights, with the same
importance matrix (made for the model). The model has 8 layers, so llama.cpp's n_layer/8 rules fire (the IQ1/IQ2
ftypes' counted ffn_down bump, IQ3_XS's middle layers, IQ3_M's and IQ4's first layers), 2 routed experts (DeepSeek's
rules, not the 8-expert special case), dense layers before the MoE ones, and rows of 64-192 that take the IQ4_NL
fallback. IQ4_NL/IQ4_XS also run without an imatrix (their first layers then get Q5_K). Needs llama-cpp-python.
"""
from __future__ import annotations

import ctypes
import dataclasses
from pathlib import Path

import gguf
import numpy as np
import pytest

from dshub.checkpoint.synth import PRESETS, write_synthetic
from dshub.converters import build_options, run_conversion
from dshub.converters.gguf.imatrix import load_imatrix, synthetic_entries, write_imatrix
from dshub.quant.gguf.types import FILE_TYPES
from tests.support.llama_oracle import quantize_params
from tests.support.tools import require

llama_cpp = require("llama_cpp")

pytestmark = pytest.mark.slow

IQ_MIXES = ("IQ1_S", "IQ1_M", "IQ2_XXS", "IQ2_XS", "IQ2_S", "IQ2_M", "IQ3_XXS", "IQ3_XS", "IQ3_S", "IQ3_M", "IQ4_XS",
            "IQ4_NL", "TQ1_0", "TQ2_0")
DIMS = {"num_hidden_layers": 8, "first_k_dense_replace": 6, "n_routed_experts": 2, "num_experts_per_tok": 1, "n_group": 1,
        "topk_group": 1, "num_attention_heads": 2, "intermediate_size": 256, "num_nextn_predict_layers": 0}


def _convert(src: Path, out: Path, **params) -> Path:
    doc = run_conversion(src, build_options("gguf", out=out, **params), progress=False).to_dict()
    return out / doc["files"][0]["name"]


@pytest.fixture(scope="module")
def model(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, Path]:
    """(FP8 checkpoint, F32 GGUF of its exact dequantized weights, an imatrix for every quantized tensor)."""
    root = tmp_path_factory.mktemp("iq8")
    with pytest.MonkeyPatch.context() as mp:
        mp.setitem(PRESETS, "iq-test", dataclasses.replace(PRESETS["tiny"], dims={**PRESETS["tiny"].dims, **DIMS}))
        write_synthetic(root / "fp8", "iq-test", seed=1)
    f32 = _convert(root / "fp8", root / "f32", quant="F32")
    tensors = [(t.name, tuple(int(d) for d in reversed(t.shape))) for t in gguf.GGUFReader(f32).tensors
               if len(t.shape) >= 2 and not t.name.endswith("ffn_gate_inp.weight")]
    return root / "fp8", f32, write_imatrix(root / "imatrix.gguf", synthetic_entries(tensors, seed=3))


def llama_quantize(f32: Path, out: Path, ftype: int, imatrix: Path | None) -> Path:
    p = quantize_params(ftype, 1, load_imatrix(str(imatrix)) if imatrix is not None else None)
    assert llama_cpp.llama_model_quantize(str(f32).encode(), str(out).encode(), ctypes.byref(p)) == 0
    return out


def assert_same_tensors(ours: Path, ref: Path, label: str) -> dict[str, str]:
    a = {t.name: t for t in gguf.GGUFReader(ours).tensors}
    b = {t.name: t for t in gguf.GGUFReader(ref).tensors}
    assert sorted(a) == sorted(b), f"{label}: tensor sets differ"
    wrong_type = [(n, a[n].tensor_type.name, b[n].tensor_type.name) for n in b if a[n].tensor_type != b[n].tensor_type]
    assert not wrong_type, f"{label}: types differ from llama-quantize: {wrong_type[:5]}"
    wrong = [n for n in b if not np.array_equal(np.asarray(a[n].data).view(np.uint8).reshape(-1),
                                                np.asarray(b[n].data).view(np.uint8).reshape(-1))]
    assert not wrong, f"{label}: bytes differ from llama-quantize in {len(wrong)} tensors, e.g. {wrong[:3]}"
    return {n: t.tensor_type.name for n, t in a.items()}


@pytest.mark.parametrize("mix", IQ_MIXES)
def test_iq_mixture_matches_llama_quantize(model: tuple[Path, Path, Path], mix: str, tmp_path: Path) -> None:
    src, f32, imx = model
    ours = _convert(src, tmp_path / "ours", quant=mix, imatrix=str(imx))
    types = assert_same_tensors(ours, llama_quantize(f32, tmp_path / "ref.gguf", FILE_TYPES[mix], imx), f"{mix} --imatrix")
    assert mix in {t for t in types.values()} or mix in ("IQ2_S", "IQ2_M", "IQ3_XS", "IQ3_M")  # ftypes whose main type differs
    if mix in ("IQ1_S", "IQ2_XXS"):  # the first n_layer/8 = 1 ffn_down in name order: the dense blk.0.ffn_down
        assert types["blk.0.ffn_down.weight"] == "Q2_K" and types["blk.1.ffn_down.weight"] == mix


@pytest.mark.parametrize("mix", ["IQ4_NL", "IQ4_XS"])
def test_iq4_without_imatrix_matches_llama_quantize(model: tuple[Path, Path, Path], mix: str, tmp_path: Path) -> None:
    src, f32, _ = model
    ours = _convert(src, tmp_path / "ours", quant=mix)
    types = assert_same_tensors(ours, llama_quantize(f32, tmp_path / "ref.gguf", FILE_TYPES[mix], None), mix)
    assert types["blk.0.ffn_down.weight"] == "Q5_K" and types["blk.7.ffn_down_exps.weight"] == mix
