"""Memory planner: hand-computed sizes, guards, refusals with alternatives, local checkpoints."""
from __future__ import annotations

import json
import math

import pytest

from dshub.errors import PlanRefused, UsageError
from dshub.checkpoint.header import read_header
from dshub.recipes.formats import weight_format
from dshub.recipes.hardware import gpu
from dshub.recipes.models import CATALOG, resolve_model
from dshub.recipes.planner import GB, Request, kv_bytes_per_token, plan, require, total_weight_bytes


def chosen(**kw):
    p = require(plan(Request(**kw)))
    return p, p.chosen


def test_v3_parameter_counts_match_the_published_671b():
    m = resolve_model("deepseek-v3")
    assert round(m.total_params / 1e9, 1) == 671.0
    assert round(m.params["expert"] / 1e9, 1) == 653.9  # serving.md §5 breakdown
    assert round(m.params["attn"] / 1e9, 1) == 11.4
    assert 13e9 < m.params["mtp"] < 15e9  # the MTP layer: 685B on HF


def test_kimi_k2_is_about_one_trillion_parameters():
    m = resolve_model("moonshotai/Kimi-K2-Instruct")  # by hub id
    assert 1.0e12 < m.total_params < 1.05e12
    assert m.n_experts == 384 and m.heads == 64 and m.mtp_layers == 0


def test_weight_sizes_per_format_match_the_reference_arithmetic():
    m = resolve_model("deepseek-v3")
    sizes = {f: total_weight_bytes(m, weight_format(f), mtp=False) / GB for f in ("fp8", "bf16", "int4", "gguf:Q4_K_M", "gguf:Q2_K")}
    assert sizes["fp8"] == pytest.approx(673, abs=2)
    assert sizes["bf16"] == pytest.approx(1342, abs=5)  # "over 1.3 TB"
    assert sizes["int4"] == pytest.approx(653.9 * (0.5 + 2 / 128) + (671.0 - 653.9) * 2, abs=1)  # experts only: ≈372
    assert sizes["gguf:Q4_K_M"] == pytest.approx(404, abs=3)
    assert sizes["gguf:Q2_K"] == pytest.approx(244, abs=3)


def test_mla_kv_bytes_per_token():
    m = resolve_model("deepseek-r1")
    assert kv_bytes_per_token(m, "vllm", "bf16", mtp=False) == 70_272 == (512 + 64) * 61 * 2
    assert kv_bytes_per_token(m, "vllm", "fp8", mtp=False) == 35_136
    assert kv_bytes_per_token(m, "vllm", "bf16", mtp=True) == (512 + 64) * 62 * 2
    # V3.2: vLLM fp8_ds_mla (656 B) plus the indexer key cache (128 FP8 + one fp32 scale)
    assert kv_bytes_per_token(resolve_model("deepseek-v3.2"), "vllm", "fp8", mtp=False) == (656 + 132) * 61


H200_BYTES = 143771 * 2**20  # what nvidia-smi reports for an H200 ("141 GB" marketed): 150.8 GB
H100_BYTES = 81559 * 2**20  # H100 80GB SXM: 85.5 GB


def test_671b_fp8_on_8xh200_tp8_is_84gb_per_gpu_and_about_660k_tokens():
    p, c = chosen(model="deepseek-v3", gpu="h200", goal="latency", mtp=False)
    assert (c.layout.tp, c.layout.ep, c.layout.attn_tp) == (8, 8, 8)
    assert c.weights_per_gpu / GB == pytest.approx(84, abs=0.5)
    # 0.9 x 150.8 - 84 - 5 GB headroom = ~46.3 GB of KV per GPU, replicated on all 8 (MLA under TP); serving.md's
    # 540K came from the marketed 141 GB, which understates the card by 6.5 %
    assert c.kv_budget_per_gpu == pytest.approx(0.9 * H200_BYTES - 5 * GB - c.weights_per_gpu, abs=0.01 * GB)
    assert c.tokens_per_group == int(c.kv_budget_per_gpu / 70_272)
    assert 640_000 < c.tokens_per_group < 680_000
    assert c.total_tokens == c.tokens_per_group  # one attention group: the KV is not multiplied by TP
    assert c.max_context == 163_840
    assert c.concurrency == c.total_tokens // 163_840 == 4


def test_dp_ep_replicates_dense_weights_and_multiplies_kv_pools():
    p, c = chosen(model="deepseek-v3", gpu="h200", goal="throughput", mtp=False)
    assert c.layout.kind == "dep" and c.layout.attn_groups == 8
    assert c.weights_per_gpu / GB == pytest.approx(101, abs=1)  # serving.md §5: DP8+EP8 ≈ 101 GB
    assert c.total_tokens == 8 * c.tokens_per_group
    p16, c16 = chosen(model="deepseek-v3", gpu="h100", nodes=2, goal="throughput", mtp=False)
    assert c16.weights_per_gpu / GB == pytest.approx(60, abs=1)  # DP16+EP16 ≈ 60 GB


def test_dcp_splits_the_kv_instead_of_replicating_it():
    kw = dict(gpu="h200", mtp=False, memory_fraction=0.65)  # 0.65 x 150.8 - 5 - 84 = ~9 GB of KV per GPU
    tep = plan(Request("deepseek-v3", **kw))
    long = require(plan(Request("deepseek-v3", context=163_840, **kw)))
    assert long.chosen.layout.kind == "tep-dcp"  # TEP alone cannot hold one 163,840-token request
    assert long.chosen.tokens_per_group == pytest.approx(8 * tep.chosen.tokens_per_group, rel=1e-3)
    assert tep.evaluations[0].ok and tep.evaluations[0].max_context < 163_840 and not long.evaluations[0].ok


def test_8x_h100_fp8_is_refused_with_alternatives():
    p = plan(Request("deepseek-r1", gpu="h100", nodes=1))
    assert p.chosen is None
    assert any("weights need" in r for r in p.reasons())
    assert p.alternatives and p.alternatives[0].startswith("--nodes 2")
    assert any("--weights int4" in a for a in p.alternatives)
    with pytest.raises(PlanRefused) as e:
        require(p)
    assert "--nodes 2" in str(e.value) and e.value.exit_code == 1


def test_tp32_on_v3_breaks_fp8_blocks_and_falls_back_to_pp():
    p = require(plan(Request("deepseek-v3", gpu="h100", nodes=4, mtp=False)))
    tep32 = p.evaluations[0]
    assert tep32.layout.tp == 32 and not tep32.ok
    assert any("18432 / TP32 = 576" in r for r in tep32.reasons)
    assert p.chosen.layout.kind == "tp-pp" and (p.chosen.layout.tp, p.chosen.layout.pp) == (8, 4)
    # TP16 is fine: 18432/16 = 1152 = 9 x 128
    assert require(plan(Request("deepseek-v3", gpu="h100", nodes=2, mtp=False))).chosen.layout.tp == 16


def test_block_guard_follows_what_the_format_quantizes():
    def reasons(weights, kind):
        p = plan(Request("deepseek-v3", gpu="h100", nodes=4, weights=weights, mtp=False))
        return next(e for e in p.evaluations if e.layout.kind == kind).reasons

    assert not any("block" in r for r in reasons("bf16", "tp"))
    # INT4 packs only the routed experts: TP32 with EP leaves them whole, plain TP32 slices them to 64
    assert not any("block" in r for r in reasons("int4", "tep"))
    assert any("expert width 2048 / TP32 = 64" in r for r in reasons("int4", "tp"))
    assert any("dense width 18432" in r for r in reasons("fp8", "tep"))


def test_v4_pro_tp16_is_capped():
    p = plan(Request("deepseek-v4-pro", gpu="h200", nodes=2, mtp=False))
    assert any("cap of TP8" in r for r in p.evaluations[0].reasons)


def test_kimi_k2_fp8_needs_sixteen_gpus():
    # ~1.03 TB on 8x H200 at 0.9 leaves ~1 % of the budget: borderline, never a plain fit (vLLM's recipe says 16 GPUs)
    one = plan(Request("kimi-k2", gpu="h200", nodes=1))
    assert one.chosen is None or (one.chosen.borderline and any("borderline fit" in n for n in one.notes))
    assert plan(Request("kimi-k2", gpu="h200", nodes=1, memory_fraction=0.85)).chosen is None
    assert plan(Request("kimi-k2", gpu="h200", nodes=2)).chosen is not None
    with pytest.raises(UsageError, match="no MTP"):
        plan(Request("kimi-k2", gpu="h200", nodes=2, mtp=True))


def test_gguf_is_refused_for_vllm_and_safetensors_for_llamacpp():
    with pytest.raises(UsageError, match="llamacpp"):
        plan(Request("deepseek-r1", engine="vllm", weights="gguf:Q4_K_M"))
    with pytest.raises(UsageError, match="GGUF only"):
        plan(Request("deepseek-r1", engine="llamacpp", weights="fp8"))


def test_llamacpp_puts_just_enough_experts_in_system_ram():
    p, c = chosen(model="deepseek-r1", engine="llamacpp", weights="gguf:Q4_K_M", gpu="rtx4090", gpus_per_node=2,
                  context=16384)
    m = p.model
    vram = 2 * (24 - 4) * GB
    bytes_ = weight_format("gguf:Q4_K_M").bytes(m.params)
    resident = sum(v for k, v in bytes_.items() if k not in ("expert", "mtp"))
    per_layer = bytes_["expert"] / m.moe_layers
    free = vram - resident - 16384 * 70_272
    assert c.experts_on_cpu_layers == math.ceil((bytes_["expert"] - free) / per_layer)
    assert 0 < c.experts_on_cpu_layers < m.moe_layers
    # on 8x H200 everything fits on the GPUs
    _, big = chosen(model="deepseek-r1", engine="llamacpp", weights="gguf:Q4_K_M", gpu="h200")
    assert big.experts_on_cpu_layers == 0
    # multi-node llama.cpp is not generated
    with pytest.raises(PlanRefused, match="single-node"):
        require(plan(Request("deepseek-r1", engine="llamacpp", weights="gguf:Q2_K", nodes=2)))


def test_context_that_does_not_fit_is_refused():
    p = plan(Request("deepseek-v3", gpu="h200", engine="sglang", context=163_840, memory_fraction=0.6, mtp=False))
    assert p.chosen is None
    assert any("KV cache holds" in r for r in p.reasons())


def test_bad_inputs_are_usage_errors():
    for kw in (dict(gpu="h1000"), dict(engine="trt"), dict(weights="fp6"), dict(weights="gguf:Q9_K"),
               dict(goal="cheap"), dict(kv_dtype="q4_0")):
        with pytest.raises(UsageError):
            plan(Request("deepseek-v3", **kw))
    with pytest.raises(UsageError, match="at most 163,840"):
        plan(Request("deepseek-v3", context=1_000_000))
    with pytest.raises(UsageError, match="not in the catalog"):
        resolve_model("no-such-model")


def test_every_catalog_entry_plans_somewhere():
    for e in CATALOG:
        big = gpu("b300")
        dense = e.config is not None and not e.config.get("n_routed_experts")  # the R1 distills: one GPU
        p = plan(Request(e.name, gpu=big.name, nodes=1 if dense else 2, gpus_per_node=1 if dense else None, goal="latency"))
        assert p.chosen is not None, (e.name, p.reasons())


def test_local_checkpoint_uses_its_real_config_and_bytes(tiny_ckpt):
    p = require(plan(Request(str(tiny_ckpt), gpu="h100", gpus_per_node=1, mtp=False)))
    m = p.model
    assert m.source == "local" and m.layers == 3 and m.n_experts == 8
    index = json.loads((tiny_ckpt / "model.safetensors.index.json").read_text())
    on_disk = 0
    for shard in sorted(set(index["weight_map"].values())):
        h = read_header(tiny_ckpt / shard)
        on_disk += sum(e.nbytes for e in h.tensors.values())
    assert sum(m.stored_bytes.values()) == on_disk  # every tensor's real bytes, scales included
    assert p.to_dict()["weights_total_gb"] * GB == pytest.approx(on_disk - m.stored_bytes.get("mtp", 0), abs=0.06 * GB)
    # its 4 heads x 96 q-dims split 2 ways give 192-wide slices: not a multiple of the FP8 block
    two = plan(Request(str(tiny_ckpt), gpu="h100", gpus_per_node=2, mtp=False))
    assert two.chosen is None and any("block 128" in r for r in two.reasons())


def test_bare_config_json_is_enough(tmp_path, tiny_ckpt):
    (tmp_path / "r1").mkdir()
    cfg = tmp_path / "r1" / "config.json"
    cfg.write_text((tiny_ckpt / "config.json").read_text())
    m = resolve_model(str(cfg))
    assert m.family == "r1" and m.source == "local" and not m.stored_bytes


def test_v32_prefers_data_parallel_attention_on_both_engines():
    v = require(plan(Request("deepseek-v3.2", engine="vllm", gpu="h200", goal="latency")))
    assert v.chosen.layout.kind == "dep" and any("FlashMLA-Sparse" in n for n in v.notes)
    s = require(plan(Request("deepseek-v3.2", engine="sglang", gpu="h200", goal="latency")))
    assert s.chosen.layout.kind == "dp-attention"
    # other models keep the goal's order
    assert require(plan(Request("deepseek-v3.1", gpu="h200"))).chosen.layout.kind == "tep"


def test_sglang_tp32_replicates_the_dense_mlp_instead_of_breaking_blocks():
    p = require(plan(Request("deepseek-v3", engine="sglang", gpu="h100", nodes=4, goal="throughput")))
    plain, dense1 = p.evaluations[:2]
    assert not plain.ok and any("18432 / TP32" in r for r in plain.reasons)
    assert p.chosen is dense1 and dense1.layout.dense_tp == 1
    assert dense1.weight_parts["dense"] == pytest.approx(weight_format("fp8").bytes(p.model.params)["dense"], rel=1e-6)


def test_pipeline_parallel_turns_default_mtp_off_but_refuses_a_forced_one():
    p = require(plan(Request("deepseek-v3", engine="sglang", gpu="h100", nodes=3)))
    assert p.chosen.layout.kind == "tp-pp" and not p.mtp and any(n.startswith("MTP off") for n in p.notes)
    forced = plan(Request("deepseek-v3", engine="sglang", gpu="h100", nodes=3, mtp=True))
    assert forced.chosen is None and any("MTP with pipeline parallelism" in r for r in forced.reasons())
    old = require(plan(Request("deepseek-v3", gpu="h100", nodes=4, engine_version="0.15.0")))
    assert old.chosen.layout.pp == 4 and not old.mtp
    new = require(plan(Request("deepseek-v3", gpu="h100", nodes=4)))
    assert new.chosen.layout.pp == 4 and new.mtp


def test_local_int4_checkpoint_attributes_packed_tensors_to_their_modules(tiny_ckpt, tmp_path):
    from typer.testing import CliRunner

    from dshub.cli import app

    out = tmp_path / "int4"
    r = CliRunner().invoke(app, ["convert", str(tiny_ckpt), "--to", "int4", "--out", str(out)])
    assert r.exit_code == 0, r.output
    m = resolve_model(str(out))
    index = json.loads((out / "model.safetensors.index.json").read_text())
    mtp_prefix = f"model.layers.{m.layers}."  # the MTP layer's experts count as "mtp"
    packed = {t for t in index["weight_map"] if ".experts." in t and not t.startswith(mtp_prefix)}
    assert any(t.endswith("weight_packed") for t in packed)
    expert_bytes = 0
    for t in packed:
        expert_bytes += read_header(out / index["weight_map"][t]).tensors[t].nbytes
    assert m.shipped == "int4" and m.stored_bytes["expert"] == expert_bytes
    p = require(plan(Request(str(out), gpu="h100", gpus_per_node=1, mtp=False)))
    assert p.weights.name == "int4" and p.chosen.weight_parts["expert"] == expert_bytes  # one GPU: nothing split


def test_local_gguf_uses_its_metadata_and_real_tensor_bytes(tiny_gguf):
    from dshub.formats.gguf_file import read_gguf_header

    m = resolve_model(str(tiny_gguf))
    h = read_gguf_header(tiny_gguf)
    assert m.shipped == "gguf:Q8_0" and m.source == "local" and m.path == str(tiny_gguf)
    assert sum(m.stored_bytes.values()) == sum(t.nbytes for t in h.tensors)
    assert m.stored_bytes["expert"] == sum(t.nbytes for t in h.tensors if "_exps." in t.name)
    assert (m.layers, m.moe_layers, m.kv_lora_rank, m.qk_rope_head_dim) == (3, 2, 128, 32)
    p = require(plan(Request(str(tiny_gguf.parent), engine="llamacpp", gpu="rtx4090", gpus_per_node=1)))
    assert p.weights.name == "gguf:Q8_0" and p.kv_bytes_per_token == (128 + 32) * 3 * 2
    assert p.chosen.max_context == 4096  # its context_length
    with pytest.raises(UsageError, match="llamacpp"):
        plan(Request(str(tiny_gguf), engine="vllm"))


def test_2x8_h100_tp16_kv_budget_matches_the_reference_estimate():
    # serving.md §5: "2x8 H100 TP16: ≈ 26 GB ≈ 370K tokens" (0.9 x 80 - 42 - ~5), on the marketed 80 GB; the card
    # reports 85.5 GB: 0.9 x 85.5 - 42 - 5 ≈ 30 GB ≈ 430K tokens
    p = require(plan(Request("deepseek-v3", gpu="h100", nodes=2, goal="latency", mtp=False)))
    c = p.chosen
    assert c.layout.label == "TP16+EP16"
    assert c.weights_per_gpu / GB == pytest.approx(42, abs=0.5)
    assert c.kv_budget_per_gpu == pytest.approx(0.9 * H100_BYTES - 5 * GB - c.weights_per_gpu, abs=0.01 * GB)
    assert 400_000 < c.tokens_per_group < 440_000


def test_nvfp4_release_fits_four_b200_with_its_fp8_kv():
    p = require(plan(Request("deepseek-r1-0528-nvfp4", gpu="b200", gpus_per_node=4)))
    assert p.chosen.layout.label == "TP4+EP4" and p.kv_dtype == "fp8"
    assert 380 < p.to_dict()["weights_total_gb"] < 405  # recipes: vram_minimum_gb 403 for NVFP4
    assert plan(Request("deepseek-r1-0528", gpu="b200", gpus_per_node=4)).chosen is None  # FP8 needs 8
