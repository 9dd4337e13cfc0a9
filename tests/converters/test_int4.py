"""`--to int4` end to end on the synthetic DeepSeek-V3 checkpoint: compressed-tensors' own dequantizer and
transformers load our output; GPTQ/AWQ hold the same integers; bad inputs fail cleanly."""
from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors import safe_open

from dshub.converters import build_options, run_conversion
from dshub.checkpoint.reader import Checkpoint
from dshub.errors import CheckpointError, QuantizationError, UsageError
from dshub.checkpoint.synth import write_synthetic
from dshub.quant.fp8 import dequant_fp8_block_f32
from dshub.quant.int4 import dequantize_int4, quantize_int4, scheme_for, unpack_compressed_tensors
from tests.support.int4_readers import read_awq, read_ct, read_gptq

GROUPS = (32, 64, 128)
EXPERT = "model.layers.1.mlp.experts.3.down_proj"


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("int4") / "tiny"
    write_synthetic(d, "tiny", seed=0)
    return d


def convert(src: Path, out: Path, target: str = "int4", **params) -> dict:
    return run_conversion(src, build_options(target, out=out, **params), progress=False).to_dict()


def tensors(d: Path, prefix: str) -> dict[str, torch.Tensor]:
    """All tensors `prefix.*` of an output checkpoint, suffix -> tensor."""
    wm = json.loads((d / "model.safetensors.index.json").read_text())["weight_map"]
    out = {}
    for name, shard in wm.items():
        if name.startswith(prefix + "."):
            with safe_open(d / shard, "pt") as f:
                out[name[len(prefix) + 1:]] = f.get_tensor(name)
    return out


def exact_f32(src: Path, prefix: str) -> torch.Tensor:
    ck = Checkpoint.open(src)
    return dequant_fp8_block_f32(ck.read(prefix + ".weight"), ck.read(prefix + ".weight_scale_inv"))


# ---------------------------------------------------------------- compressed-tensors reads it back
@pytest.mark.parametrize("g", GROUPS)
@pytest.mark.parametrize("sym", [True, False])
def test_compressed_tensors_dequantizer_matches_ours(tiny, tmp_path, g, sym):
    from compressed_tensors.entrypoints.convert import CompressedTensorsDequantizer, convert_checkpoint

    out = tmp_path / "ct"
    summary = convert(tiny, out, group_size=g, symmetric=sym)
    assert summary["quantized_weights"] == 3 * 8 * 3  # MoE layers 1, 2 and the MTP layer 3 x 8 experts x 3 projections
    back = tmp_path / "back"
    convert_checkpoint(out, back, CompressedTensorsDequantizer(out), max_workers=1, device="cpu")
    ck_back = Checkpoint.open(back)
    scheme = scheme_for("compressed-tensors", g, sym)
    for prefix in (EXPERT, "model.layers.2.mlp.experts.0.gate_proj", "model.layers.3.mlp.experts.7.up_proj"):
        ours_packed = unpack_compressed_tensors(tensors(out, prefix), g)
        theirs = ck_back.read(prefix + ".weight")
        assert theirs.dtype == torch.bfloat16
        assert torch.equal(theirs, dequantize_int4(ours_packed))
        # ... and that is our quantization of the exact FP8 values
        ref = quantize_int4(exact_f32(tiny, prefix), scheme)
        assert torch.equal(ours_packed.q, ref.q) and torch.equal(ours_packed.scale, ref.scale)
        assert torch.equal(theirs, dequantize_int4(ref))
    # out-of-scope weights were dequantized to BF16 by us and left alone by ct
    attn = "model.layers.1.self_attn.o_proj.weight"
    assert torch.equal(ck_back.read(attn), Checkpoint.open(out).read(attn))


def test_config_lists_what_was_left_out(tiny, tmp_path):
    from compressed_tensors.quantization import QuantizationConfig

    out = tmp_path / "o"
    convert(tiny, out, ignore=[r"layers\.2\.mlp\.experts\.5\."])
    qc = json.loads((out / "config.json").read_text())["quantization_config"]
    QuantizationConfig.model_validate(qc)  # compressed-tensors accepts it
    assert qc["format"] == "pack-quantized" and qc["config_groups"]["group_0"]["weights"]["group_size"] == 128
    ignore = set(qc["ignore"])
    assert {"lm_head", "model.layers.1.mlp.gate", "model.layers.0.mlp.down_proj", "model.layers.1.self_attn.q_a_proj",
            "model.layers.1.mlp.shared_experts.up_proj", "model.layers.3.eh_proj", "model.layers.2.mlp.experts.5.gate_proj"} <= ignore
    assert not any(".experts.3." in n for n in ignore)
    ck = Checkpoint.open(out)
    packed = {n[: -len(".weight_packed")] for n in ck.weight_map if n.endswith(".weight_packed")}
    linear = {n[: -len(".weight")] for n in ck.weight_map if n.endswith(".weight") and ck.entry(n).shape.__len__() == 2
              and "layernorm" not in n and "norm" not in n.rsplit(".", 2)[-2] and "embed_tokens" not in n}
    assert packed.isdisjoint(ignore) and linear == ignore  # every linear module is either INT4 or listed
    assert not any(n.endswith("_scale_inv") for n in ck.weight_map)


# ---------------------------------------------------------------- transformers loads it
@pytest.mark.slow
def test_transformers_loads_int4_output(tiny, tmp_path):
    """Bound: INT4 rounding perturbs each expert weight by ~uniform noise of RMS step/sqrt(12). The synthetic model
    has random weights and a router, so it is chaotic: the same perturbation as Gaussian noise of equal RMS moves
    its logits by 30-50% (and flips top-1 on most seeds). So we require (a) the loaded expert weights to be exactly our
    dequantization, (b) the logit error to be no worse than 1.5x the median of 4 equal-RMS noise controls, and (c) the
    same top-1 for the last position of a fixed random prompt. A layout bug (nibble order, scale transpose) makes the
    weights garbage and fails (a) outright and (b) by far."""
    from transformers import AutoModelForCausalLM
    from transformers.utils import logging

    logging.set_verbosity_error()
    int4, bf16 = tmp_path / "int4", tmp_path / "bf16"
    convert(tiny, int4)
    convert(tiny, bf16, target="bf16")
    m4 = AutoModelForCausalLM.from_pretrained(int4, dtype=torch.float32)
    mb = AutoModelForCausalLM.from_pretrained(bf16, dtype=torch.float32)
    ids = torch.randint(0, 640, (1, 16), generator=torch.Generator().manual_seed(0))

    for layer in (1, 2):
        gu = m4.model.layers[layer].mlp.experts.gate_up_proj.data
        down = m4.model.layers[layer].mlp.experts.down_proj.data
        for e in range(8):
            pre = f"model.layers.{layer}.mlp.experts.{e}"
            deq = {p: dequantize_int4(unpack_compressed_tensors(tensors(int4, f"{pre}.{p}"), 128)).float()
                   for p in ("gate_proj", "up_proj", "down_proj")}  # ct dequantizes to the scale dtype, bf16
            assert torch.equal(gu[e].float(), torch.cat([deq["gate_proj"], deq["up_proj"]]))
            assert torch.equal(down[e].float(), deq["down_proj"])

    with torch.no_grad():
        lb, l4 = mb(ids).logits[0], m4(ids).logits[0]
        rel = float((l4 - lb).norm() / lb.norm())
        experts = [(l.mlp.experts, l4e.mlp.experts) for l, l4e in zip(mb.model.layers, m4.model.layers) if hasattr(l.mlp, "experts")]
        orig = [(eb, n, getattr(eb, n).data.clone(), getattr(e4, n).data) for eb, e4 in experts for n in ("gate_up_proj", "down_proj")]
        controls = []
        for seed in range(4):
            g = torch.Generator().manual_seed(seed)
            for eb, n, w, w4 in orig:
                getattr(eb, n).data.copy_(w + torch.randn(w.shape, generator=g) * (w4 - w).std())
            controls.append(float((mb(ids).logits[0] - lb).norm() / lb.norm()))
    assert 0 < rel <= 1.5 * float(np.median(controls)), (rel, controls)
    assert int(l4[-1].argmax()) == int(lb[-1].argmax())


# ---------------------------------------------------------------- GPTQ / AWQ
@pytest.mark.slow
@pytest.mark.parametrize("g", (32, 128))
def test_gptq_and_awq_outputs_hold_compressed_tensors_integers(tiny, tmp_path, g):
    outs = {fmt: tmp_path / fmt for fmt in ("compressed-tensors", "gptq", "awq")}
    for fmt, out in outs.items():
        convert(tiny, out, format=fmt, group_size=g)
    # GPTQ/AWQ quantize against FP16 scales; compressed-tensors against BF16: compare same-dtype runs
    ref = quantize_int4(exact_f32(tiny, EXPERT), scheme_for("gptq", g))
    q_ref = ref.q.numpy()
    gp = tensors(outs["gptq"], EXPERT)
    q, z = read_gptq(gp, g)
    assert np.array_equal(q.T - 8, q_ref) and bool((z == 8).all())
    assert torch.equal(gp["scales"].T, ref.scale)
    aw = tensors(outs["awq"], EXPERT)
    q, z = read_awq(aw)
    assert np.array_equal(q.T - 8, q_ref) and bool((z == 8).all())
    assert torch.equal(aw["scales"].T, ref.scale)
    q_ct, _ = read_ct(tensors(outs["compressed-tensors"], EXPERT))
    assert np.array_equal(q_ct, quantize_int4(exact_f32(tiny, EXPERT), scheme_for("compressed-tensors", g)).q.numpy())

    gcfg = json.loads((outs["gptq"] / "config.json").read_text())["quantization_config"]
    assert {k: gcfg[k] for k in ("quant_method", "bits", "group_size", "desc_act", "sym", "checkpoint_format")} == {
        "quant_method": "gptq", "bits": 4, "group_size": g, "desc_act": False, "sym": True, "checkpoint_format": "gptq"}
    import re

    skip = re.compile(next(iter(gcfg["dynamic"]))[2:])
    assert skip.match("model.layers.1.self_attn.o_proj") and not skip.match(EXPERT)
    acfg = json.loads((outs["awq"] / "config.json").read_text())["quantization_config"]
    assert {k: acfg[k] for k in ("quant_method", "bits", "group_size", "zero_point", "version")} == {
        "quant_method": "awq", "bits": 4, "group_size": g, "zero_point": True, "version": "gemm"}
    skip_awq = acfg["modules_to_not_convert"]
    assert "lm_head" in skip_awq and not any(".experts." in m for m in skip_awq)
    # engines fuse modules under new names; the skip lists must still cover them (substring for AWQ, re.match for GPTQ)
    for fused in ("model.layers.0.mlp.gate_up_proj", "model.layers.1.self_attn.fused_qkv_a_proj",
                  "model.layers.2.mlp.shared_experts.gate_up_proj", "model.layers.1.mlp.gate", "lm_head"):
        assert any(m in fused for m in skip_awq) and skip.match(fused), fused
    for quantized in (EXPERT, "model.layers.1.mlp.experts"):
        assert not any(m in quantized for m in skip_awq) and not skip.match(quantized)


def test_partial_moe_layer_warns(tiny, tmp_path, capsys):
    summary = convert(tiny, tmp_path / "o", ignore=[r"layers\.2\.mlp\.experts\.\d+\.down_proj"])
    assert len(summary["warnings"]) == 1 and summary["warnings"][0].startswith("layer 2:")
    assert "layer 2: some routed-expert weights are INT4" in capsys.readouterr().err
    assert not convert(tiny, tmp_path / "p", ignore=[r"layers\.2\.mlp\.experts\."])["warnings"]


def test_awq_asymmetric(tiny, tmp_path):
    convert(tiny, tmp_path / "a", format="awq", group_size=64, symmetric=False)
    ref = quantize_int4(exact_f32(tiny, EXPERT), scheme_for("awq", 64, False))
    q, z = read_awq(tensors(tmp_path / "a", EXPERT))
    assert np.array_equal(q.T - 8, ref.q.numpy()) and np.array_equal(z.T - 8, ref.zero.numpy())


# ---------------------------------------------------------------- inputs, options, resume
def test_bf16_input_works(tiny, tmp_path):
    convert(tiny, tmp_path / "bf16", target="bf16")
    out = tmp_path / "int4"
    convert(tmp_path / "bf16", out, scope="mlp", group_size=64)
    w = Checkpoint.open(tmp_path / "bf16").read(EXPERT + ".weight")
    got = unpack_compressed_tensors(tensors(out, EXPERT), 64)
    assert torch.equal(got.q, quantize_int4(w, scheme_for("compressed-tensors", 64)).q)
    assert "model.layers.1.mlp.shared_experts.down_proj.weight_packed" in Checkpoint.open(out).weight_map


def test_already_int4_input_is_refused(tiny, tmp_path):
    convert(tiny, tmp_path / "int4")
    with pytest.raises(CheckpointError, match="already quantized"):
        convert(tmp_path / "int4", tmp_path / "again")
    assert not (tmp_path / "again").exists()


def test_group_size_not_dividing_fails_before_writing(tiny, tmp_path):
    out = tmp_path / "o"
    with pytest.raises(QuantizationError, match=r"q_b_proj.weight: input dim 192 is not a multiple of group size 128"):
        convert(tiny, out, scope="all-linear")
    assert not out.exists()
    convert(tiny, out, scope="all-linear", group_size=64)  # 192 = 3 x 64 works
    assert "model.layers.0.self_attn.q_b_proj.weight_packed" in Checkpoint.open(out).weight_map


@pytest.mark.parametrize("params, msg", [
    ({"scope": "attention"}, "--scope 'attention'"),
    ({"group_size": 96}, "--group-size 96"),
    ({"format": "gptq", "symmetric": False}, "symmetric only"),
    ({"ignore": ["("]}, "not a valid regular expression"),
    ({"quant": "Q4_K"}, "takes no option"),
])
def test_bad_options_are_usage_errors(tiny, tmp_path, params, msg):
    with pytest.raises(UsageError, match=msg):
        convert(tiny, tmp_path / "o", **params)


def test_cli_exit_codes_and_resume(tiny, tmp_path):
    from typer.testing import CliRunner

    from dshub.cli import app

    runner = CliRunner()
    out = tmp_path / "o"
    r = runner.invoke(app, ["convert", str(tiny), "--to", "int4", "--out", str(out), "--scope", "nope"])
    assert r.exit_code == 2 and "--scope" in r.output
    r = runner.invoke(app, ["convert", str(tiny), "--to", "int4", "--out", str(out), "--dry-run", "--json"])
    assert r.exit_code == 0 and json.loads(r.stdout)["int4_bytes"] > 0 and not out.exists()
    args = ["convert", str(tiny), "--to", "int4", "--out", str(out), "--format", "awq", "--group-size", "64", "--json"]
    first = json.loads(runner.invoke(app, args).stdout)
    assert first["written"] and not first["resumed_skipped"]
    digest = {p.name: p.read_bytes() for p in out.glob("*.safetensors")}
    second = json.loads(runner.invoke(app, args).stdout)
    assert not second["written"] and sorted(second["resumed_skipped"]) == sorted(digest)
    r = runner.invoke(app, ["convert", str(out), "--to", "int4", "--out", str(tmp_path / "x")])
    assert r.exit_code == 1 and "already quantized" in r.output and "Traceback" not in r.output


def test_drop_mtp(tiny, tmp_path):
    from dshub.checks import verify

    out = tmp_path / "o"
    run_conversion(tiny, build_options("int4", out=out, drop_mtp=True, **{"format": "awq"}), progress=False)
    ck = Checkpoint.open(out)
    assert not any(n.startswith("model.layers.3.") for n in ck.weight_map)
    assert ck.config["num_nextn_predict_layers"] == 0
    assert not any("layers.3" in m for m in ck.config["quantization_config"]["modules_to_not_convert"])
    report = verify(out)
    assert report.ok and not report.findings, [str(f) for f in report.findings]


def test_fp16_scale_overflow_names_the_tensor_and_leaves_nothing_complete(tiny, tmp_path):
    from safetensors.torch import save_file

    bf16 = tmp_path / "bf16"
    convert(tiny, bf16, target="bf16")
    name = EXPERT + ".weight"
    shard = bf16 / json.loads((bf16 / "model.safetensors.index.json").read_text())["weight_map"][name]
    with safe_open(shard, "pt") as f:
        tensors = {k: f.get_tensor(k) for k in f.keys()}
    tensors[name] = tensors[name] * 1e7  # absmax / 7.5 far above FP16's 65504 (BF16 holds it)
    save_file(tensors, shard, metadata={"format": "pt"})
    out = tmp_path / "gptq"
    with pytest.raises(QuantizationError, match=rf"{shard.name}: tensor {name}: group scale .* overflows float16"):
        convert(bf16, out, format="gptq")
    assert not (out / "config.json").exists() and not (out / "model.safetensors.index.json").exists()
    assert not (out / shard.name).exists() and not list(out.glob("*tmp*"))
    convert(bf16, tmp_path / "ct")  # compressed-tensors' BF16 scales hold it


@pytest.mark.parametrize("sym", [True, False])
def test_compressed_tensors_reads_our_awq_output(tiny, tmp_path, sym):
    """compressed-tensors' own AutoAWQ reader (AutoAWQConverter, config taken from our config.json) turns our AWQ
    output into pack-quantized tensors equal to what we write for the same quantization."""
    from compressed_tensors.entrypoints.convert import convert_checkpoint
    from compressed_tensors.entrypoints.convert.converters.autoawq import AutoAWQConverter

    from dshub.quant.int4 import pack_compressed_tensors

    awq, back = tmp_path / "awq", tmp_path / "ct"
    convert(tiny, awq, format="awq", group_size=64, symmetric=sym)
    convert_checkpoint(awq, back, AutoAWQConverter.from_pretrained(str(awq)), max_workers=1, device="cpu")
    ref = quantize_int4(exact_f32(tiny, EXPERT), scheme_for("awq", 64, sym))
    want = pack_compressed_tensors(ref)
    got = tensors(back, EXPERT)
    assert torch.equal(got["weight_packed"], want["weight_packed"]) and torch.equal(got["weight_scale"], want["weight_scale"])
    if sym:  # AWQ always stores zero points; symmetric ones are all 8 -> signed 0
        assert bool((unpack_compressed_tensors(got, 64).zero == 0).all())
    else:
        assert torch.equal(got["weight_zero_point"], want["weight_zero_point"])
    # and the modules we left out stay untouched BF16
    attn = "model.layers.1.self_attn.o_proj.weight"
    assert torch.equal(Checkpoint.open(back).read(attn), Checkpoint.open(awq).read(attn))


def test_real_v3_dimensions_pack_and_skip_lists_stay_small():
    """On DeepSeek-V3's real 671B dimensions (spec only, no weights): every linear weight packs at every group size in
    every format, the experts-scope output is ~380 GB (MTP layer included), and the collapsed skip list is short."""
    import math

    from dshub.converters.int4 import SCOPES, in_scope
    from dshub.formats.int4_config import collapse_left_out, module_of
    from dshub.arch import spec_for
    from dshub.arch.spec import Role
    from dshub.quant.int4 import FORMATS, packed_layout
    from tests.support.configs import V3

    spec = list(spec_for(V3))
    linear = [t for t in spec if t.linear and t.name.endswith(".weight")]
    for fmt in FORMATS:
        for g in GROUPS:
            scheme = scheme_for(fmt, g)
            for shape in {t.shape for t in linear if in_scope(t, "all-linear", [])}:
                packed_layout(fmt, shape, scheme)  # raises if a shape cannot be packed
    scheme = scheme_for("compressed-tensors", 128)
    total = 0
    for t in spec:
        if in_scope(t, "experts", []):
            total += sum(math.prod(s) * torch.empty(0, dtype=d).element_size() for _, d, s in packed_layout("compressed-tensors", t.shape, scheme))
        else:
            total += t.numel * (4 if t.role is Role.ROUTER_BIAS else 2)
    assert 375e9 < total < 390e9
    left = [module_of(t.name) for t in linear if not in_scope(t, "experts", [])]
    skip = collapse_left_out(left, [module_of(t.name) for t in linear])
    assert len(left) == 558 and len(skip) == 183
    assert {"model.layers.0.", "model.layers.2.", "model.layers.3.self_attn.", "model.layers.60.mlp.shared_experts.",
            "model.layers.60.mlp.gate", "model.layers.61.eh_proj", "lm_head"} <= set(skip)
    assert set(SCOPES) == {"experts", "mlp", "all-linear"}


# ---------------------------------------------------------------- DeepSeek-V3.2: the indexer is never INT4
@pytest.mark.parametrize("scope, g", [("experts", 128), ("all-linear", 64)])  # q_lora_rank 192: groups of 64
def test_v32_indexer_is_never_quantized_and_reads_back(tiny_v32, tiny_v32_bf16, tmp_path, scope, g):
    """INT4 of V3.2: experts (and, with all-linear, MLA's projections) are packed, the lightning indexer stays the
    BF16 dequantization of its FP8 weights and is listed in `ignore`; compressed-tensors' dequantizer reads the
    output back, and transformers' DeepseekV32ForCausalLM loads it with every weight in place."""
    from compressed_tensors.entrypoints.convert import CompressedTensorsDequantizer, convert_checkpoint
    from transformers import AutoModelForCausalLM
    from transformers.utils import logging

    out = tmp_path / "int4"
    summary = convert(tiny_v32, out, scope=scope, group_size=g)
    ck, bf16 = Checkpoint.open(out), Checkpoint.open(tiny_v32_bf16)
    indexer = [n for n in bf16.weight_map if ".self_attn.indexer." in n]
    assert len(indexer) == 5 * 4  # 5 tensors x (3 layers + the MTP layer)
    for n in indexer:
        assert ck.entry(n).dtype == bf16.entry(n).dtype and torch.equal(ck.read(n), bf16.read(n)), n
    assert not any(".indexer." in n and n.endswith(".weight_packed") for n in ck.weight_map)
    attn_packed = any(".self_attn.q_b_proj.weight_packed" in n for n in ck.weight_map)
    assert attn_packed == (scope == "all-linear") and summary["quantized_weights"] >= 3 * 8 * 3
    ignore = json.loads((out / "config.json").read_text())["quantization_config"]["ignore"]
    for layer in range(4):
        for m in ("wq_b", "wk", "weights_proj"):
            name = f"model.layers.{layer}.self_attn.indexer.{m}"
            assert name in ignore or any(i.startswith("re:") and re.match(i[3:], name) for i in ignore), name

    back = tmp_path / "back"
    convert_checkpoint(out, back, CompressedTensorsDequantizer(out), max_workers=1, device="cpu")
    ck_back = Checkpoint.open(back)
    for n in indexer:
        assert torch.equal(ck_back.read(n), bf16.read(n)), n
    prefix = "model.layers.2.mlp.experts.5.down_proj"
    assert torch.equal(ck_back.read(prefix + ".weight"), dequantize_int4(unpack_compressed_tensors(tensors(out, prefix), g)))

    logging.set_verbosity_error()
    model, info = AutoModelForCausalLM.from_pretrained(out, dtype=torch.float32, output_loading_info=True)
    assert type(model).__name__ == "DeepseekV32ForCausalLM" and not info["missing_keys"], info["missing_keys"]
    ix = model.model.layers[1].self_attn.indexer
    assert torch.equal(ix.wk.weight, bf16.read("model.layers.1.self_attn.indexer.wk.weight").float())
    assert torch.equal(ix.weights_proj.weight, bf16.read("model.layers.1.self_attn.indexer.weights_proj.weight").float())
    with torch.no_grad():
        logits = model(torch.arange(40, 56)[None]).logits
    assert torch.isfinite(logits).all() and logits.std() > 0.1
