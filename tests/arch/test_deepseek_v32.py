"""DeepSeek-V3.2 (DeepseekV32ForCausalLM): V3's inventory plus the lightning indexer; plan and verify read the same one."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from dshub.arch import spec_for
from dshub.arch.spec import Role
from dshub.checkpoint.synth import quantize_fp8_block, write_synthetic
from dshub.checkpoint.writer import write_tensors
from dshub.checks import verify
from dshub.recipes.models import CATALOG, resolve_model
from dshub.recipes.planner import Request, kv_bytes_per_token, plan

V32 = next(e.config for e in CATALOG if e.name == "deepseek-v3.2")
V3 = next(e.config for e in CATALOG if e.name == "deepseek-v3")
INDEXER = {  # name after `self_attn.indexer.` -> (shape on V3.2's dims, fp8)
    "wq_b.weight": ((64 * 128, 1536), True),
    "wk.weight": ((128, 7168), True),
    "k_norm.weight": ((128,), False),
    "k_norm.bias": ((128,), False),
    "weights_proj.weight": ((64, 7168), False),
}


def test_inventory_is_v3_plus_the_indexer_of_every_layer() -> None:
    v3, v32 = spec_for(V3).by_name, spec_for(V32).by_name
    extra = {n: t for n, t in v32.items() if n not in v3}
    assert set(v3) <= set(v32)
    assert len(extra) == len(INDEXER) * 62  # 61 layers + the MTP layer
    for layer in (0, 3, 60, 61):
        for suffix, (shape, fp8) in INDEXER.items():
            t = v32[f"model.layers.{layer}.self_attn.indexer.{suffix}"]
            assert (t.shape, t.fp8, t.role, t.mtp) == (shape, fp8, Role.INDEXER, layer == 61)


def test_plan_numbers_count_the_indexer_weights_and_its_key_cache() -> None:
    m = resolve_model("deepseek-v3.2")
    assert m.family == "v32" and m.architecture == "DeepseekV32ForCausalLM"
    assert m.params == {"attn": 12264946944, "dense": 1189085184, "embed": 926679040, "expert": 653908770816,
                        "head": 926679040, "mtp": 13477385728, "other": 107451904, "shared": 2554331136}
    assert m.params["attn"] - resolve_model("deepseek-v3").params["attn"] == 61 * 13_959_424  # the indexer's share
    # Indexer key cache beside MLA's: vLLM DeepseekV32IndexerCache / SGLang NSA pool hold 128 FP8 bytes + one fp32
    # scale per token and layer (132 B); llama.cpp keeps a 128-element key in the K cache type.
    index_key = 128 + 4
    assert kv_bytes_per_token(m, "vllm", "fp8", mtp=False) == (656 + index_key) * 61  # fp8_ds_mla + the indexer key
    assert kv_bytes_per_token(m, "vllm", "bf16", mtp=True) == (576 * 2 + index_key) * 62
    assert kv_bytes_per_token(m, "sglang", "bf16", mtp=False) == (576 * 2 + index_key) * 61
    assert kv_bytes_per_token(m, "llamacpp", "bf16", mtp=False) == (576 + 128) * 2 * 61
    assert kv_bytes_per_token(resolve_model("deepseek-v3"), "vllm", "bf16", mtp=False) == 576 * 2 * 61  # V3: none
    v = plan(Request("deepseek-v3.2", engine="vllm", gpu="h200")).to_dict()
    assert (v["weights_total_gb"], v["kv_bytes_per_token"]) == (687.5, (576 * 2 + index_key) * 62)
    assert (v["chosen"]["layout"]["label"], v["chosen"]["weights_per_gpu_gb"], v["chosen"]["max_context"]) == ("DP8+EP8", 103.38, 163840)
    s = plan(Request("deepseek-v3.2", engine="sglang", gpu="h200")).to_dict()
    assert (s["chosen"]["layout"]["kind"], s["chosen"]["weights_per_gpu_gb"]) == ("dp-attention", 96.86)


def test_verify_and_plan_read_the_same_inventory(tiny_v32: Path, tiny_ckpt: Path) -> None:
    report = verify(tiny_v32)
    assert report.ok, report.to_dict()
    m = resolve_model(str(tiny_v32))
    assert m.family == "v32"
    indexer = [t for t in spec_for(m.config) if t.role is Role.INDEXER and not t.mtp]
    v3_like = resolve_model(str(tiny_ckpt))  # the same dims without the indexer
    assert m.params["attn"] == v3_like.params["attn"] + sum(t.numel for t in indexer)
    # the indexer's real bytes are counted as attention: FP8 wq_b/wk + their F32 scales, BF16 norm and weights_proj
    stored = sum(t.numel * (1 if t.fp8 else 2) + (4 * -(-t.shape[0] // 128) * -(-t.shape[1] // 128) if t.fp8 else 0)
                 for t in indexer)
    assert m.stored_bytes["attn"] - v3_like.stored_bytes["attn"] == stored


@pytest.mark.parametrize("name", ["model.layers.1.self_attn.indexer.wk.weight",
                                  "model.layers.3.self_attn.indexer.wq_b.weight_scale_inv",
                                  "model.layers.0.self_attn.indexer.k_norm.bias"])
def test_verify_names_a_missing_indexer_tensor(tiny_v32: Path, tmp_path: Path, name: str) -> None:
    broken = tmp_path / "broken"
    shutil.copytree(tiny_v32, broken)
    index = json.loads((broken / "model.safetensors.index.json").read_text())
    shard = index["weight_map"].pop(name)
    tensors = {n: t for n, t in load_file(broken / shard).items() if n != name}
    write_tensors(broken / shard, sorted(tensors.items()), {"format": "pt"})
    (broken / "model.safetensors.index.json").write_text(json.dumps(index))
    report = verify(broken)
    assert not report.ok and name in json.dumps(report.to_dict())


def test_wrong_indexer_scale_shape_is_named(tiny_v32: Path, tmp_path: Path) -> None:
    broken = tmp_path / "broken"
    shutil.copytree(tiny_v32, broken)
    index = json.loads((broken / "model.safetensors.index.json").read_text())
    name = "model.layers.2.self_attn.indexer.wq_b.weight_scale_inv"
    shard = index["weight_map"][name]
    tensors = dict(load_file(broken / shard))
    tensors[name] = tensors[name][:, :1].contiguous()  # [8, 2] -> [8, 1]
    write_tensors(broken / shard, sorted(tensors.items()), {"format": "pt"})
    report = verify(broken)
    bad = [f for f in report.to_dict()["findings"] if f["severity"] == "error"]
    assert not report.ok and any(name in json.dumps(f) for f in bad), bad


def test_cli_synth_verify_info(cli, tmp_path: Path) -> None:
    r = cli("synth", tmp_path / "m", "--preset", "tiny-v32", "--json")
    assert r.exit_code == 0, r.output
    cfg = json.loads((tmp_path / "m" / "config.json").read_text())
    assert (cfg["architectures"], cfg["index_n_heads"], cfg["index_head_dim"], cfg["index_topk"]) == (["DeepseekV32ForCausalLM"], 16, 64, 8)
    r = cli("verify", tmp_path / "m", "--json")
    assert r.exit_code == 0 and json.loads(r.stdout)["ok"], r.output
    r = cli("info", tmp_path / "m", "--json")
    assert r.exit_code == 0, r.output
    info = json.loads(r.stdout)
    assert info["architecture"] == "DeepseekV32ForCausalLM" and info["params"]["total"] == spec_for(cfg).params()["total"]
    assert {"bf16", "gguf Q4_K_M", "int4 w4a16 g128 (experts)"} <= set(info["output_sizes"])


@pytest.mark.parametrize("target", ["gguf", "int4"])
def test_gguf_and_int4_dry_runs_plan_the_indexer(cli, tiny_v32: Path, tmp_path: Path, target: str) -> None:
    args = ["convert", tiny_v32, "--to", target, "--out", tmp_path / "out", "--dry-run", "--json"]
    r = cli(*args, *(["--quant", "Q4_K_M"] if target == "gguf" else []))
    assert r.exit_code == 0, r.output
    doc = json.loads(r.stdout)
    if target == "gguf":
        table = {t["name"]: t for t in doc["tensor_table"]}
        assert doc["architecture"] == "deepseek32"
        assert {f"blk.1.indexer.{n}" for n in ("attn_q_b.weight", "attn_k.weight", "proj.weight", "k_norm.weight",
                                                  "k_norm.bias")} <= set(table)
        assert table["blk.1.indexer.proj.weight"]["type"] == "F32"  # llama.cpp's converter forces INDEXER_PROJ to F32
    else:
        assert doc["quantized_weights"] == 3 * 8 * 3  # experts of MoE layers 1, 2 and MTP layer 3; no indexer tensor
        assert sum("indexer" in n for n in doc["left_out_linear"]) == 3 * 4  # wq_b, wk, weights_proj x 4 layers
