"""llama.cpp (llama-cpp-python) loads and runs our GGUFs; logits agree with transformers' DeepseekV3ForCausalLM.

Bounds are relative to the reference's largest |logit| over the sequence, per type, and were measured on these synthetic
models (whose logits move ~7x the relative weight noise, see the numbers below):
- F16 GGUF vs transformers float32 on the same BF16 weights: llama.cpp converts activations to fp16 for F16 matmuls;
  measured max 0.23 % (YaRN model 0.33 %). Bound 1 %.
- Q8_0 GGUF vs transformers on the GGUF's own dequantized weights: llama.cpp also quantizes activations to Q8_0
  blocks before each Q8_0 matmul (~0.4 % per element); measured 2-7 %. Bound 12 %.
Positions whose MoE routing is a near tie in the reference (top-k or group margin below TAU in sigmoid-score units)
are excluded from the bound: there, any numeric difference may pick another expert (TAU 0.005 for F16; 0.03 for Q8_0,
whose activation rounding was seen to flip a choice with a 0.019 margin). At most 40 % may be excluded.
Top-1 must agree wherever the reference's top-2 logit margin exceeds the bound.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from dshub.converters import build_options, run_conversion
from tests.support.llama_runtime import IDS, check_logits as check, hf_logits, hf_model, llama_logits, load_gguf_weights

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def ggufs(tiny_bf16: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    out = {}
    for q in ("F16", "Q8_0"):
        d = tmp_path_factory.mktemp(f"llama-{q}")
        doc = run_conversion(tiny_bf16, build_options("gguf", out=d, **{"quant": q}), progress=False).to_dict()
        out[q] = d / doc["files"][0]["name"]
    return out


def test_f16_logits_match_transformers(ggufs: dict[str, Path], tiny_bf16: Path) -> None:
    ref, margins = hf_logits(hf_model(tiny_bf16), IDS)
    stats = check(llama_logits(ggufs["F16"], IDS), ref, margins, "F16", "F16")
    assert stats["clear"] >= len(IDS) // 2


def test_q8_0_logits_match_transformers_on_its_weights(ggufs: dict[str, Path], tiny_bf16: Path) -> None:
    config = json.loads((tiny_bf16 / "config.json").read_text())
    model = hf_model(tiny_bf16)
    load_gguf_weights(model, ggufs["Q8_0"], config)
    ref, margins = hf_logits(model, IDS)
    check(llama_logits(ggufs["Q8_0"], IDS), ref, margins, "Q8_0", "Q8_0")


def test_split_set_loads_from_first_file(tiny_bf16: Path, ggufs: dict[str, Path], tmp_path: Path) -> None:
    doc = run_conversion(tiny_bf16, build_options("gguf", out=tmp_path, **{"quant": "F16", "split_max_tensors": 16}),
                         progress=False).to_dict()
    files = [tmp_path / f["name"] for f in doc["files"]]
    assert len(files) == 4 and files[0].name.endswith("-00001-of-00004.gguf")
    whole = llama_logits(ggufs["F16"], IDS[:12])
    np.testing.assert_array_equal(llama_logits(files[0], IDS[:12]), whole)


def test_yarn_rope_scaling_matches_transformers(tmp_path: Path) -> None:
    """YaRN keys, including llama.cpp's 0.1 * mscale_all_dim log-multiplier convention, reproduce transformers."""
    from dshub.checkpoint.synth import write_synthetic

    write_synthetic(tmp_path / "fp8", "tiny-yarn")
    run_conversion(tmp_path / "fp8", build_options("bf16", out=tmp_path / "bf16"), progress=False)
    doc = run_conversion(tmp_path / "bf16", build_options("gguf", out=tmp_path / "g", **{"quant": "F16"}), progress=False).to_dict()
    ids = [0] + list(range(40, 160))
    ref, margins = hf_logits(hf_model(tmp_path / "bf16"), ids)
    check(llama_logits(tmp_path / "g" / doc["files"][0]["name"], ids), ref, margins, "F16", "F16 yarn")


def test_mtp_gguf_loads_and_trunk_logits_unchanged(tiny_bf16: Path, ggufs: dict[str, Path], tmp_path: Path) -> None:
    """llama.cpp builds with next-n support load the MTP block and leave the main model's logits as they were."""
    doc = run_conversion(tiny_bf16, build_options("gguf", out=tmp_path, **{"quant": "F16", "mtp": True}), progress=False).to_dict()
    got = llama_logits(tmp_path / doc["files"][0]["name"], IDS[:12])
    np.testing.assert_array_equal(got, llama_logits(ggufs["F16"], IDS[:12]))
