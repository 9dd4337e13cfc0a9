"""DeepSeek-V3.2 -> llama.cpp's `deepseek32` GGUF, proven in llama.cpp itself (llama-cpp-python's vendored build).

The tiny-v32 model's indexer keeps 8 keys per query while the prompts are longer, so llama.cpp's lightning indexer
and sparse MLA really select. Positions where transformers' indexer scores a near tie at the top-k boundary (relative
gap below INDEX_TAU) are excluded like near-tie routing positions (tests/support/llama_runtime.py): there any numeric
difference may select another key.
- F16, 43 tokens (35 selecting positions): measured max 0.25 % of the logit scale over the kept positions; a position
  with a 0.0002 gap was 4.9 % off. Bound 1 %.
- Q8_0 / Q4_K_M on their own dequantized weights: llama.cpp quantizes activations (~0.4 % per element), so key scores
  move by ~1 % and a flipped key at one position changes every later position through the next layers' attention.
  The prompt is therefore IDS[:12] (positions 8-11 select 8 of 9-12 keys) and a position is kept only while every
  earlier gap is >= 1.5 % too. Measured: Q8_0 max 4.5 %, Q4_K_M 22 % (at BOS, as on V3); bounds 12 % and 30 %.
"""
from __future__ import annotations

import ctypes
import json
from pathlib import Path

import gguf
import numpy as np
import pytest

from dshub.checks import verify
from dshub.converters import build_options, run_conversion
from dshub.converters.gguf.schemes import SCHEMES
from dshub.quant.gguf.types import FILE_TYPES
from tests.support.llama_runtime import (
    IDS, check_logits, hf_logits, hf_model, indexer_gaps, llama_logits, load_gguf_weights,
)
from tests.support.tools import require
from dshub.converters.gguf.convert import NATIVE_ONLY
from dshub.errors import UsageError

pytestmark = pytest.mark.slow

INDEXER = ("indexer.attn_q_b.weight", "indexer.attn_k.weight", "indexer.proj.weight", "indexer.k_norm.weight",
           "indexer.k_norm.bias")


def convert(src: Path, out: Path, **params) -> Path:
    doc = run_conversion(src, build_options("gguf", out=out, **params), progress=False).to_dict()
    return out / doc["files"][0]["name"]


@pytest.fixture(scope="module")
def ggufs(tiny_v32_bf16: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    return {q: convert(tiny_v32_bf16, tmp_path_factory.mktemp(f"v32-{q}"), quant=q) for q in ("F16", "Q8_0", "Q4_K_M")}


def test_metadata_and_tensors_are_llama_cpps_deepseek32(ggufs: dict[str, Path], tiny_v32: Path) -> None:
    cfg = json.loads((tiny_v32 / "config.json").read_text())
    r = gguf.GGUFReader(ggufs["F16"])
    kv = {f.name: f.contents() for f in r.fields.values()}
    assert kv["general.architecture"] == "deepseek32"
    assert (kv["deepseek32.attention.indexer.head_count"], kv["deepseek32.attention.indexer.key_length"],
            kv["deepseek32.attention.indexer.top_k"]) == (cfg["index_n_heads"], cfg["index_head_dim"], cfg["index_topk"])
    assert kv["deepseek32.expert_gating_func"] == 2 and kv["deepseek32.attention.key_length_mla"] == 96
    tensors = {t.name: t for t in r.tensors}
    for layer in range(cfg["num_hidden_layers"]):
        assert all(f"blk.{layer}.{n}" in tensors for n in INDEXER)
    assert not any(n.startswith(f"blk.{cfg['num_hidden_layers']}.") for n in tensors)  # MTP only with --mtp
    q_b, proj = tensors["blk.1.indexer.attn_q_b.weight"], tensors["blk.1.indexer.proj.weight"]
    assert [int(d) for d in q_b.shape] == [cfg["q_lora_rank"], cfg["index_n_heads"] * cfg["index_head_dim"]]  # ne
    assert proj.tensor_type.name == "F32"  # as llama.cpp's converter forces INDEXER_PROJ
    for q, path in ggufs.items():
        report = verify(path, deep=True)
        assert report.ok and not [f for f in report.findings if f.severity != "info"], (q, report.to_dict())


def test_f16_logits_match_transformers(ggufs: dict[str, Path], tiny_v32_bf16: Path) -> None:
    model = hf_model(tiny_v32_bf16)
    ref, margins = hf_logits(model, IDS)
    gaps = indexer_gaps(model, IDS)
    assert np.isfinite(gaps).sum() == len(IDS) - 8  # every position after the 8th selects
    stats = check_logits(llama_logits(ggufs["F16"], IDS), ref, margins, "F16", "V3.2 F16", gaps)
    assert stats["clear"] >= len(IDS) // 2


@pytest.mark.parametrize("quant", ["Q8_0", "Q4_K_M"])
def test_quantized_logits_match_transformers_on_their_weights(ggufs: dict[str, Path], tiny_v32_bf16: Path, quant: str) -> None:
    """Transformers on the GGUF's own dequantized weights: what is left is llama.cpp's activation quantization (Q8_0
    blocks, Q8_K for K-quants); see the module docstring for the prompt and the bounds."""
    config = json.loads((tiny_v32_bf16 / "config.json").read_text())
    model = hf_model(tiny_v32_bf16)
    load_gguf_weights(model, ggufs[quant], config)
    ids = IDS[:12]
    ref, margins = hf_logits(model, ids)
    gaps = np.minimum.accumulate(indexer_gaps(model, ids))  # a flip spreads to every later position
    check_logits(llama_logits(ggufs[quant], ids), ref, margins, quant, f"V3.2 {quant}", gaps)


def test_q4_k_m_equals_llama_quantize_except_the_f32_indexer_proj(ggufs: dict[str, Path], tiny_v32_bf16: Path,
                                                                  tmp_path: Path) -> None:
    """llama-quantize's mixture on the same F32 weights gives every tensor the same type and bytes (the indexer's
    attn_k falls in the attn_k category, attn_q_b's 192-wide rows take the Q5_0 fallback), except blk.N.indexer.proj:
    llama.cpp's converter writes it F32 and llama-quantize then quantizes it; we keep the converter's F32."""
    llama_cpp = require("llama_cpp")
    f32 = convert(tiny_v32_bf16, tmp_path / "f32", quant="F32")
    ref = tmp_path / "ref.gguf"
    p = llama_cpp.llama_model_quantize_default_params()
    p.ftype, p.nthread = FILE_TYPES["Q4_K_M"], 2
    assert llama_cpp.llama_model_quantize(str(f32).encode(), str(ref).encode(), ctypes.byref(p)) == 0
    ours = {t.name: t for t in gguf.GGUFReader(ggufs["Q4_K_M"]).tensors}
    theirs = {t.name: t for t in gguf.GGUFReader(ref).tensors}
    assert sorted(ours) == sorted(theirs)
    proj = {n for n in ours if n.endswith("indexer.proj.weight")}
    assert {ours[n].tensor_type.name for n in proj} == {"F32"} and {theirs[n].tensor_type.name for n in proj} == {"Q4_K"}
    assert ours["blk.1.indexer.attn_q_b.weight"].tensor_type.name == "Q5_0"
    for n in sorted(set(ours) - proj):
        assert ours[n].tensor_type == theirs[n].tensor_type, n
        assert np.array_equal(np.asarray(ours[n].data).view(np.uint8), np.asarray(theirs[n].data).view(np.uint8)), n


def test_every_scheme_plans_the_indexer(tiny_v32_bf16: Path, tmp_path: Path) -> None:
    """Every --quant scheme writes all five indexer tensors per layer with a type whose block fits their rows."""
    from dshub.quant.gguf.types import GGML_TYPES

    for q in SCHEMES.names():
        opts = build_options("gguf", out=tmp_path / q, quant=q, dry_run=True)
        if q == NATIVE_ONLY:  # keeps stored MXFP4 experts (DeepSeek-V4): V3.2 has none to keep, so it is refused
            with pytest.raises(UsageError, match="MXFP4"):
                run_conversion(tiny_v32_bf16, opts, progress=False)
            continue
        doc = run_conversion(tiny_v32_bf16, opts, progress=False).to_dict()
        table = {t["name"]: t for t in doc["tensor_table"]}
        for layer in range(3):
            for n in INDEXER:
                t = table[f"blk.{layer}.{n}"]
                assert t["shape"][-1] % GGML_TYPES[t["type"]].block == 0, (q, t)


def test_mtp_gguf_loads_and_trunk_logits_unchanged(tiny_v32_bf16: Path, ggufs: dict[str, Path], tmp_path: Path) -> None:
    path = convert(tiny_v32_bf16, tmp_path, quant="F16", mtp=True)
    kv = {f.name: f.contents() for f in gguf.GGUFReader(path).fields.values()}
    names = {t.name for t in gguf.GGUFReader(path).tensors}
    assert kv["deepseek32.block_count"] == 4 and kv["deepseek32.nextn_predict_layers"] == 1
    assert {"blk.3.nextn.eh_proj.weight", "blk.3.indexer.attn_k.weight"} <= names
    np.testing.assert_array_equal(llama_logits(path, IDS[:12]), llama_logits(ggufs["F16"], IDS[:12]))


def test_plan_reads_a_deepseek32_gguf_with_its_indexer_cache(ggufs: dict[str, Path], tiny_v32: Path) -> None:
    """A local V3.2 GGUF is planned from its metadata: llama.cpp's cache per token and layer is the MLA latent plus
    rope key and the indexer key (llama-kv-cache-dsa.cpp), in the K cache type (F16: 2 bytes)."""
    from dshub.recipes.models import resolve_model
    from dshub.recipes.planner import kv_bytes_per_token

    cfg = json.loads((tiny_v32 / "config.json").read_text())
    m = resolve_model(str(ggufs["Q8_0"]))
    assert (m.architecture, m.family) == ("DeepseekV32ForCausalLM", "v32")
    per_layer = cfg["kv_lora_rank"] + cfg["qk_rope_head_dim"] + cfg["index_head_dim"]
    assert kv_bytes_per_token(m, "llamacpp", "bf16", mtp=False) == per_layer * 2 * cfg["num_hidden_layers"]
