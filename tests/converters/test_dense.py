"""The R1 distills' dense families end to end on synthetic checkpoints: synth, verify, info, GGUF in llama.cpp,
INT4 in compressed-tensors and transformers, plan and recipe on one GPU."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
import transformers

from dshub.api import info
from dshub.checkpoint.reader import Checkpoint
from dshub.checkpoint.synth import write_synthetic
from dshub.checks import verify
from dshub.converters import build_options, run_conversion
from dshub.quant.int4 import dequantize_int4, unpack_compressed_tensors
from dshub.recipes import RecipeOptions, Request, make_recipe
from dshub.recipes.render.jsondoc import recipe_doc
from tests.support.llama_runtime import llama_logits
from dshub.converters.gguf.convert import NATIVE_ONLY
from dshub.errors import UsageError

PRESETS = ("tiny-qwen2", "tiny-llama")
IDS = [0] + list(range(40, 70)) + [300, 301, 302, 5, 9, 100, 200]


@pytest.fixture(scope="module", params=PRESETS)
def dense(request, tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp(request.param) / request.param
    write_synthetic(d, request.param)
    return d


def hf_logits(path: Path, ids: list[int] = IDS) -> np.ndarray:
    m = transformers.AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32).eval()
    with torch.no_grad():
        return m(torch.tensor([ids])).logits[0].numpy()


def test_synth_verifies_and_info_describes_it(dense):
    assert verify(dense, deep=True).ok
    doc = info(dense)
    assert doc["architecture"] in ("Qwen2ForCausalLM", "LlamaForCausalLM") and doc["encoding"]["name"] == "bf16"
    assert doc["attention"]["kv_heads"] == 2 and doc["experts"]["routed"] == 0
    assert set(doc["dtype_census"]) == {"BF16"}
    sizes = doc["output_sizes"]
    assert sizes["bf16"] == doc["bytes"] - 0 or abs(sizes["bf16"] - doc["bytes"]) < 4096
    assert sizes["int4 w4a16 g128 (all-linear)"] < sizes["bf16"] / 2  # every linear but lm_head is INT4
    tok = json.loads((dense / "tokenizer.json").read_text())
    assert tok["pre_tokenizer"]["pretokenizers"][0]["type"] == "Split"


def test_gguf_f16_logits_in_llama_cpp_match_transformers(dense, tmp_path):
    out = tmp_path / "gguf"
    res = run_conversion(dense, build_options("gguf", out=out, quant="F16", workers=1), progress=False).to_dict()
    arch = {"tiny-qwen2": "qwen2", "tiny-llama": "llama"}[dense.name]
    assert res["architecture"] == arch and res["llama_cpp_caveats"] == []
    path = out / res["files"][0]["name"]
    a, b = hf_logits(dense), llama_logits(path, IDS)
    scale = float(np.abs(a).max())
    assert float(np.abs(a - b).max()) < 0.01 * scale  # F16 within 1 % of the logit scale
    assert (a.argmax(-1) == b.argmax(-1)).mean() > 0.95
    if arch == "llama":  # the llama3 rope scaling and the per-head q/k permutation made it into the file
        assert any(t["name"] == "rope_freqs.weight" for t in res["tensor_table"])
    from dshub.recipes import plan

    p = plan(Request(str(path), engine="llamacpp", gpu="rtx4090"))  # the local GGUF, planned from its metadata
    assert p.chosen is not None and p.kv_bytes_per_token == 2 * 2 * 2 * 64 * 2  # layers x K,V x KV heads x head_dim x bf16


@pytest.fixture(scope="module")
def llama(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("llama") / "tiny-llama"
    write_synthetic(d, "tiny-llama")
    return d


def test_gguf_k_quant_mixture_loads_in_llama_cpp(llama, tmp_path):
    """Q4_K_M on the Llama layout (its q/k rows permuted per head, chunk by chunk): llama.cpp loads and runs it."""
    out = tmp_path / "q4km"
    res = run_conversion(llama, build_options("gguf", out=out, quant="Q4_K_M", workers=1), progress=False).to_dict()
    assert {"Q4_K", "Q6_K"} <= set(res["types"])
    b = llama_logits(out / res["files"][0]["name"], IDS)
    assert np.isfinite(b).all() and b.shape == (len(IDS), Checkpoint.open(llama).config["vocab_size"])


def test_int4_dense_default_scope_reads_back_in_compressed_tensors_and_loads_in_transformers(dense, tmp_path):
    from compressed_tensors.entrypoints.convert import CompressedTensorsDequantizer, convert_checkpoint
    from transformers.utils import logging

    logging.set_verbosity_error()
    out, back = tmp_path / "int4", tmp_path / "back"
    res = run_conversion(dense, build_options("int4", out=out, workers=1), progress=False).to_dict()
    assert res["scope"] == "all-linear" and res["left_out_linear"] == ["lm_head"]
    assert res["quantized_weights"] == 2 * 7  # q, k, v, o, gate, up, down in each of 2 layers
    convert_checkpoint(out, back, CompressedTensorsDequantizer(out), max_workers=1, device="cpu")
    ours, theirs, src = Checkpoint.open(out), Checkpoint.open(back), Checkpoint.open(dense)
    for mod in ("model.layers.0.self_attn.k_proj", "model.layers.1.mlp.down_proj"):
        packed = {n[len(mod) + 1:]: ours.read(n) for n in ours.weight_map if n.startswith(mod + ".") and "bias" not in n}
        assert torch.equal(theirs.read(mod + ".weight"), dequantize_int4(unpack_compressed_tensors(packed, 128)))
    if "model.layers.0.self_attn.k_proj.bias" in src.weight_map:  # Qwen2's biases are copied as they are
        assert torch.equal(ours.read("model.layers.0.self_attn.k_proj.bias"), src.read("model.layers.0.self_attn.k_proj.bias"))
    a, b = hf_logits(out), hf_logits(back)  # transformers runs the packed model; ct's dequantized copy as reference
    assert float(np.abs(a - b).max()) < 0.02 * float(np.abs(b).max())


def test_int4_experts_scope_selects_nothing_in_a_dense_model(dense, tmp_path):
    from dshub.errors import UsageError

    with pytest.raises(UsageError, match="--scope experts .* selects no weight"):
        run_conversion(dense, build_options("int4", out=tmp_path / "x", scope="experts"), progress=False)


DISTILLS = ("deepseek-r1-distill-qwen-1.5b", "deepseek-r1-distill-qwen-7b", "deepseek-r1-distill-qwen-14b",
            "deepseek-r1-distill-qwen-32b", "deepseek-r1-distill-llama-8b", "deepseek-r1-distill-llama-70b")


@pytest.mark.parametrize("engine", ["vllm", "sglang"])
def test_recipes_for_the_distills_on_one_gpu_pass_the_engines_parsers(engine):
    from dshub.recipes.engine_facts import ENGINES
    from dshub.recipes.validate import check_sglang, check_vllm
    from tests.support.tools import require_validator_venv

    items = []
    for model in DISTILLS[:5]:  # 70B BF16 needs more than one H200
        launch, _ = make_recipe(Request(model, engine=engine, gpu="h200", gpus_per_node=1), RecipeOptions(), "json")
        argv = recipe_doc(launch)["nodes"][0]["argv"][len(ENGINES[engine].container_argv):]
        assert argv[argv.index("--reasoning-parser") + 1] == {"vllm": "deepseek_r1", "sglang": "deepseek-r1"}[engine]
        assert "--enable-expert-parallel" not in argv and "--ep-size" not in argv
        items.append({"id": model, "argv": argv})
    results = (check_vllm if engine == "vllm" else check_sglang)(require_validator_venv(), items)
    assert [r for r in results if not r["ok"]] == []


def test_plan_refuses_expert_layouts_and_llama_cpp_runs_a_distill_on_a_desktop_gpu():
    from dshub.recipes import plan

    p = plan(Request("deepseek-r1-distill-llama-70b", engine="vllm", gpu="h100"))
    assert p.chosen is not None and p.chosen.layout.kind == "tp" and p.chosen.layout.tp == 8
    assert any("dense" in r for e in p.evaluations if not e.ok for r in e.reasons)
    q = plan(Request("deepseek-r1-distill-qwen-7b", engine="llamacpp", weights="gguf:Q4_K_M", gpu="rtx4090"))
    assert q.chosen is not None and q.chosen.experts_on_cpu_layers == 0
    assert q.kv_bytes_per_token == 57344  # 28 layers x 2 x 4 KV heads x 128 x 2 bytes


def test_every_gguf_scheme_plans_for_the_dense_families(dense, tmp_path):
    from dshub.converters import make_plan
    from dshub.converters.gguf.schemes import SCHEMES

    for quant in SCHEMES:
        opts = build_options("gguf", out=tmp_path / quant, quant=quant, dry_run=True)
        if quant == NATIVE_ONLY:  # keeps stored MXFP4 experts (DeepSeek-V4): a BF16 dense model has none to keep
            with pytest.raises(UsageError, match="MXFP4"):
                make_plan(dense, opts)
            continue
        _, _, plan = make_plan(dense, opts)
        assert plan.summary["tensors"] == len(plan.summary["tensor_table"]) and plan.total_bytes > 0, quant
