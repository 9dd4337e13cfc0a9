"""Per-model facts from the model's own files: a local checkpoint's release is recognized from config.json and its
tokenizer (not its directory name), so its recipe carries that model's parsers; an INT4 release is priced with its
own quantization_config.

Sources of the facts checked here (dshub/arch/deepseek_v3.py cites them too):
- V2 / V2-Lite / Coder-V2: config.json `architectures: ["DeepseekV2ForCausalLM"]`; no reasoning format and no
  tool-call parser in vLLM or SGLang, so no parser flags (the checkpoint's own chat template applies).
- Moonlight-16B-A3B: DeepseekV3ForCausalLM, model_type deepseek_v3, but Kimi's tiktoken vocabulary (tiktoken.model,
  no tokenizer.json); no reasoning or tool-call parser.
- Kimi-K2-Instruct: model_type kimi_k2; tool parser kimi_k2, no reasoning parser (serving.md §1.3 "Kimi: kimi_k2").
- Kimi-K2-Thinking: model_type kimi_k2 with `<think>` in its tokenizer; `--reasoning-parser kimi_k2` and tool parser
  kimi_k2 (serving.md §1.3); it ships compressed-tensors INT4 in groups of 32 (its config.json quantization_config).
"""
from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest

from dshub.arch import FAMILIES
from dshub.arch.family import TokenizerInfo, find_release
from dshub.checkpoint.synth import write_synthetic
from dshub.checkpoint.tokenizer_info import read_tokenizer_info
from dshub.recipes.models import resolve_model
from dshub.recipes.planner import Request, plan

FLAG = re.compile(r"--(reasoning-parser|tool-call-parser) ([\w.-]+)")


def _edit_json(path: Path, **fields) -> None:
    doc = json.loads(path.read_text())
    doc.update(fields)
    path.write_text(json.dumps(doc))


@pytest.fixture(scope="module")
def local(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Synthetic local checkpoints laid out as each model ships, under misleading directory names."""
    root = tmp_path_factory.mktemp("facts")
    write_synthetic(root / "kimi", "tiny-kimi")
    write_synthetic(root / "DeepSeek-R1-v2lite", "tiny-v2")  # a V2-Lite whose name says R1
    out = {"v2lite": root / "DeepSeek-R1-v2lite"}
    out["moonlight"] = root / "Kimi-K2-moonlight"  # the name says Kimi; the files say Moonlight
    shutil.copytree(root / "kimi", out["moonlight"])
    _edit_json(out["moonlight"] / "config.json", model_type="deepseek_v3")
    out["instruct"] = root / "Kimi-K2-Thinking-instruct"  # the name says Thinking; the files say Instruct
    shutil.copytree(root / "kimi", out["instruct"])
    out["thinking"] = root / "my-kimi"
    shutil.copytree(root / "kimi", out["thinking"])
    cfg = json.loads((out["thinking"] / "tokenizer_config.json").read_text())
    n = max(int(k) for k in cfg["added_tokens_decoder"]) + 1
    cfg["added_tokens_decoder"].update({str(n): {"content": "<think>", "special": False},
                                         str(n + 1): {"content": "</think>", "special": False}})
    (out["thinking"] / "tokenizer_config.json").write_text(json.dumps(cfg))
    return out


@pytest.mark.parametrize("model, release, vllm, sglang", [
    ("v2lite", "v2", {}, {}),
    ("moonlight", "moonlight", {}, {}),
    ("instruct", "kimi_k2", {"tool-call-parser": "kimi_k2"}, {"tool-call-parser": "kimi_k2"}),
    ("thinking", "kimi_k2_thinking", {"reasoning-parser": "kimi_k2", "tool-call-parser": "kimi_k2"},
     {"reasoning-parser": "kimi_k2", "tool-call-parser": "kimi_k2"}),
])
def test_local_recipe_carries_the_models_parsers(cli, local: dict[str, Path], model: str, release: str,
                                                 vllm: dict, sglang: dict) -> None:
    assert resolve_model(str(local[model])).family == release
    for engine, want in (("vllm", vllm), ("sglang", sglang)):
        r = cli("recipe", local[model], "--engine", engine, "--gpus-per-node", "1", "--format", "sh")
        assert r.exit_code == 0, r.output
        assert dict(FLAG.findall(r.stdout)) == want, (model, engine)


def test_tokenizer_info_reads_kind_specials_and_template(local: dict[str, Path]) -> None:
    t = read_tokenizer_info(local["thinking"])
    assert t.kind == "tiktoken" and {"[BOS]", "<think>"} <= t.specials and "<|im_middle|>" in t.template
    v2 = read_tokenizer_info(local["v2lite"])
    assert v2.kind == "tokenizer.json" and "<｜begin▁of▁sentence｜>" in v2.specials
    assert read_tokenizer_info(local["v2lite"] / "missing").kind == "none"


def test_detection_needs_the_files_and_a_name_still_decides_between_identical_ones() -> None:
    v3 = FAMILIES.get("DeepseekV3ForCausalLM")
    cfg = {"architectures": ["DeepseekV3ForCausalLM"], "model_type": "deepseek_v3"}
    tok = TokenizerInfo("tokenizer.json", frozenset({"<｜begin▁of▁sentence｜>"}), "")
    # V3 / R1 / V3.1 ship the same config and tokenizer layout: the name decides, as before
    assert find_release("DeepSeek-R1-0528", "deepseek_v3", v3, cfg, tok).key == "r1"
    assert find_release("DeepSeek-V3.1", "deepseek_v3", v3, cfg, tok).key == "v31"
    assert find_release("DeepSeek-R1", "deepseek_v3", v3, {**cfg, "architectures": ["DeepseekV2ForCausalLM"]}, tok).key == "v2"
    assert find_release("x", "deepseek_v3", v3, cfg, TokenizerInfo("tiktoken")).key == "moonlight"


def test_kimi_k2_thinking_int4_is_priced_at_its_shipped_group_size() -> None:
    """Groups of 32 carry 4x the scales of groups of 128: BF16 scale bytes 2/32 instead of 2/128 per routed expert
    weight (Kimi-K2: 60 MoE layers x 384 experts x 3 x 7168 x 2048)."""
    thinking = plan(Request("kimi-k2-thinking", engine="vllm", gpu="h200")).to_dict()
    g128 = plan(Request("kimi-k2", engine="vllm", gpu="h200", weights="int4")).to_dict()
    routed = resolve_model("kimi-k2-thinking").params["expert"]
    assert routed == 60 * 384 * 3 * 7168 * 2048
    assert thinking["weights"] == "int4" and thinking["weights_total_gb"] == 594.2 and g128["weights_total_gb"] == 546.7
    extra = thinking["weights_total_bytes"] - g128["weights_total_bytes"]
    assert 0 <= extra - (routed * 2 // 32 - routed * 2 // 128) < 1 << 20  # plus a little more safetensors header text
