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


def test_plan_numbers_are_the_ones_v3_plus_indexer_gave() -> None:
    m = resolve_model("deepseek-v3.2")
    assert m.family == "v32" and m.architecture == "DeepseekV32ForCausalLM"
    assert m.params == {"attn": 12264946944, "dense": 1189085184, "embed": 926679040, "expert": 653908770816,
                        "head": 926679040, "mtp": 13477385728, "other": 107451904, "shared": 2554331136}
    assert m.params["attn"] - resolve_model("deepseek-v3").params["attn"] == 61 * 13_959_424  # the indexer's share
    assert kv_bytes_per_token(m, "vllm", "fp8", mtp=False) == 656 * 61  # fp8_ds_mla
    assert kv_bytes_per_token(m, "vllm", "bf16", mtp=True) == 576 * 62 * 2
    v = plan(Request("deepseek-v3.2", engine="vllm", gpu="h200")).to_dict()
    assert (v["weights_total_gb"], v["kv_bytes_per_token"]) == (687.5, 71424)
    assert (v["chosen"]["layout"]["label"], v["chosen"]["weights_per_gpu_gb"], v["chosen"]["max_context"]) == ("DP8+EP8", 103.38, 163840)
    s = plan(Request("deepseek-v3.2", engine="sglang", gpu="h200")).to_dict()
    assert (s["chosen"]["layout"]["kind"], s["chosen"]["weights_per_gpu_gb"]) == ("dp-attention", 96.86)


@pytest.fixture(scope="module")
def tiny_v32(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny synthetic checkpoint turned into a V3.2 one: V3.2 config fields and the indexer tensors added."""
    root = tmp_path_factory.mktemp("v32")
    write_synthetic(root / "v3")
    out = root / "DeepSeek-V3.2-tiny"
    shutil.copytree(root / "v3", out)
    cfg = json.loads((out / "config.json").read_text())
    cfg.update(architectures=["DeepseekV32ForCausalLM"], model_type="deepseek_v32", index_n_heads=4, index_head_dim=64,
               index_topk=32)
    (out / "config.json").write_text(json.dumps(cfg))
    index = json.loads((out / "model.safetensors.index.json").read_text())
    last = sorted(set(index["weight_map"].values()))[-1]
    tensors = dict(load_file(out / last))
    gen = torch.Generator().manual_seed(0)
    for t in spec_for(cfg):
        if t.role is not Role.INDEXER:
            continue
        v = torch.randn(t.shape, generator=gen) * 0.02
        if t.fp8:
            tensors[t.name], tensors[t.scale_name] = quantize_fp8_block(v)
        else:
            tensors[t.name] = v.to(torch.bfloat16)
    write_tensors(out / last, sorted(tensors.items()), {"format": "pt"})
    index["weight_map"].update({n: last for n in tensors})
    index["metadata"]["total_size"] = sum(
        t.numel() * t.element_size() for f in sorted(set(index["weight_map"].values())) for t in load_file(out / f).values())
    (out / "model.safetensors.index.json").write_text(json.dumps(index))
    return out


def test_verify_and_plan_read_the_same_inventory(tiny_v32: Path) -> None:
    report = verify(tiny_v32)
    assert report.ok, report.to_dict()
    m = resolve_model(str(tiny_v32))
    assert m.family == "v32"
    indexer = sum(t.numel for t in spec_for(m.config) if t.role is Role.INDEXER and not t.mtp)
    v3_like = resolve_model(str(tiny_v32.parent / "v3"))
    assert m.params["attn"] == v3_like.params["attn"] + indexer
    assert m.stored_bytes["attn"] > v3_like.stored_bytes["attn"]  # the indexer's real bytes are counted as attention


def test_verify_names_a_missing_indexer_tensor(tiny_v32: Path, tmp_path: Path) -> None:
    broken = tmp_path / "broken"
    shutil.copytree(tiny_v32, broken)
    index = json.loads((broken / "model.safetensors.index.json").read_text())
    name = "model.layers.1.self_attn.indexer.wk.weight"
    shard = index["weight_map"].pop(name)
    tensors = {n: t for n, t in load_file(broken / shard).items() if n != name}
    write_tensors(broken / shard, sorted(tensors.items()), {"format": "pt"})
    (broken / "model.safetensors.index.json").write_text(json.dumps(index))
    report = verify(broken)
    assert not report.ok and name in json.dumps(report.to_dict())


@pytest.mark.parametrize("target", ["gguf", "int4"])
def test_gguf_and_int4_refuse_v32_saying_why(cli, tiny_v32: Path, tmp_path: Path, target: str) -> None:
    args = ["convert", tiny_v32, "--to", target, "--out", tmp_path / "out", "--dry-run"]
    r = cli(*args, *(["--quant", "Q8_0"] if target == "gguf" else []))
    assert r.exit_code == 2, r.output
    assert "DeepseekV32ForCausalLM" in r.output and "indexer" in r.output
