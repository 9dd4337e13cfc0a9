"""A config.json as transformers 5 saves it (no `topk_method`, no `scoring_func`) is read with the family's routing
default: V3 and its successors route with sigmoid scores and `e_score_correction_bias` (noaux_tc), V2 with softmax.
Such a checkpoint verifies, converts to every target, and its GGUF gates with sigmoid in llama.cpp."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import gguf
import numpy as np
import pytest

from dshub.arch import spec_for
from dshub.arch.deepseek_v3 import routing
from dshub.checks import verify
from dshub.converters import build_options, run_conversion
from tests.support.llama_runtime import IDS, llama_logits

ROUTING_FIELDS = ("topk_method", "scoring_func")


def strip(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst)
    cfg = json.loads((dst / "config.json").read_text())
    for k in ROUTING_FIELDS:
        cfg.pop(k)
    (dst / "config.json").write_text(json.dumps(cfg))
    return dst


@pytest.mark.parametrize("arch, topk, scoring, bias", [
    ("DeepseekV3ForCausalLM", "noaux_tc", "sigmoid", True),
    ("DeepseekV32ForCausalLM", "noaux_tc", "sigmoid", True),
    ("KimiK2ForCausalLM", "noaux_tc", "sigmoid", True),
    ("DeepseekV2ForCausalLM", "greedy", "softmax", False),  # transformers' DeepseekV2Config defaults
])
def test_family_routing_default(arch: str, topk: str, scoring: str, bias: bool) -> None:
    from dshub.arch import FAMILIES

    cfg = {k: v for k, v in FAMILIES.get(arch).example.items() if k not in ROUTING_FIELDS} | {"architectures": [arch]}
    assert (routing(cfg, "topk_method"), routing(cfg, "scoring_func")) == (topk, scoring)
    assert any(t.name.endswith("e_score_correction_bias") for t in spec_for(cfg)) is bias
    assert routing({**cfg, "topk_method": "group_limited_greedy"}, "topk_method") == "group_limited_greedy"  # stated wins


@pytest.mark.slow
def test_transformers5_config_verifies_and_converts_to_every_target(tiny_ckpt: Path, tiny_bf16: Path, tmp_path: Path) -> None:
    src = strip(tiny_ckpt, tmp_path / "fp8")
    report = verify(src)
    assert report.ok, report.to_dict()  # the checkpoint's own e_score_correction_bias tensors are expected
    bf16 = tmp_path / "bf16"
    run_conversion(src, build_options("bf16", out=bf16), progress=False)
    assert all((bf16 / n).read_bytes() == (tiny_bf16 / n).read_bytes() for n in
               json.loads((tiny_bf16 / "model.safetensors.index.json").read_text())["weight_map"].values())
    doc = run_conversion(src, build_options("int4", out=tmp_path / "int4"), progress=False).to_dict()
    assert doc["quantized_weights"] == 3 * 8 * 3 and verify(tmp_path / "int4").ok
    ggufs = {}
    for name, d in (("stripped", bf16), ("original", tiny_bf16)):
        out = tmp_path / f"gguf-{name}"
        doc = run_conversion(d, build_options("gguf", out=out, quant="F16", name="tiny"), progress=False).to_dict()
        ggufs[name] = out / doc["files"][0]["name"]
    r = gguf.GGUFReader(ggufs["stripped"])
    assert r.fields["deepseek2.expert_gating_func"].contents() == 2  # sigmoid
    assert any(t.name == "blk.1.exp_probs_b.bias" for t in r.tensors)
    assert verify(ggufs["stripped"]).ok
    # llama.cpp runs it exactly as the file made from the original config (whose logits match transformers')
    np.testing.assert_array_equal(llama_logits(ggufs["stripped"], IDS), llama_logits(ggufs["original"], IDS))
