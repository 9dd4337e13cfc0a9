"""`--to onnx`: the graph passes onnx's full check, onnxruntime's logits match transformers', onnxruntime-genai
generates what transformers generates, MatMulNBits dequantizes to dshub's values bit for bit, a killed run resumes
to byte-identical files, and MoE families are refused naming why."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
import transformers
from onnx import TensorProto, helper, numpy_helper

from dshub.checkpoint.reader import Checkpoint
from dshub.checkpoint.synth import write_synthetic
from dshub.constants import MANIFEST_NAME, TMP_SUFFIX
from dshub.converters import build_options, run_conversion
from dshub.errors import UsageError
from dshub.quant.int4 import Int4Scheme, dequantize_int4, quantize_int4
from dshub.quant.int4_nbits import unpack_matmul_nbits
from tests.support.interrupt import kill_mid_run

IDS = [0] + list(range(40, 70)) + [300, 301, 302, 5, 9, 100, 200]


@pytest.fixture(scope="module", params=["tiny-qwen2", "tiny-llama"])
def dense(request, tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp(request.param) / request.param
    write_synthetic(d, request.param)
    return d


@pytest.fixture(scope="module")
def qwen(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("qwen") / "tiny-qwen2"
    write_synthetic(d, "tiny-qwen2")
    return d


def convert(src: Path, out: Path, **params) -> dict:
    return run_conversion(src, build_options("onnx", out=out, workers=1, **params), progress=False).to_dict()


def hf(path: Path) -> torch.nn.Module:
    return transformers.AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32).eval()


def hf_logits(model: torch.nn.Module, ids: list[int] = IDS) -> np.ndarray:
    with torch.no_grad():
        return model(torch.tensor([ids])).logits[0].numpy()


def ort_logits(out: Path, config: dict, ids: list[int] = IDS, dtype=np.float32) -> np.ndarray:
    s = ort.InferenceSession(str(out / "model.onnx"), providers=["CPUExecutionProvider"])
    hd = config["hidden_size"] // config["num_attention_heads"]
    feed = {"input_ids": np.array([ids], np.int64), "attention_mask": np.ones((1, len(ids)), np.int64)}
    for i in range(config["num_hidden_layers"]):
        for kv in ("key", "value"):
            feed[f"past_key_values.{i}.{kv}"] = np.zeros((1, config["num_key_value_heads"], 0, hd), dtype)
    return s.run(["logits"], feed)[0][0].astype(np.float32)


@pytest.fixture(scope="module")
def fp32(dense, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("onnx") / "fp32"
    convert(dense, out)
    return out


def test_fp32_graph_passes_full_check_and_matches_transformers(dense, fp32):
    onnx.checker.check_model(str(fp32 / "model.onnx"), full_check=True)
    m = onnx.load(str(fp32 / "model.onnx"), load_external_data=False)
    ops = {n.op_type for n in m.graph.node}
    assert {"GroupQueryAttention", "SkipSimplifiedLayerNormalization", "RMSNormalization", "MatMul"} <= ops
    assert [i.name for i in m.graph.input][:4] == ["input_ids", "attention_mask", "past_key_values.0.key", "past_key_values.0.value"]
    assert [o.name for o in m.graph.output][:3] == ["logits", "present.0.key", "present.0.value"]
    assert all(t.data_location == TensorProto.EXTERNAL for t in m.graph.initializer)  # no weight inline
    cfg = Checkpoint.open(dense).config
    a, b = hf_logits(hf(dense)), ort_logits(fp32, cfg)
    assert float(np.abs(a - b).max()) <= 1e-4 * float(np.abs(a).max())


def test_genai_greedy_generation_equals_transformers(dense, fp32):
    import onnxruntime_genai as og

    ids = IDS[:21]
    model = hf(dense)
    with torch.no_grad():
        ref = model.generate(torch.tensor([ids]), max_new_tokens=32, min_new_tokens=32, do_sample=False)[0].tolist()[len(ids):]
    gm = og.Model(str(fp32))
    params = og.GeneratorParams(gm)
    params.set_search_options(do_sample=False, max_length=len(ids) + 32, min_length=len(ids) + 32)
    gen = og.Generator(gm, params)
    gen.append_tokens(ids)
    got = []
    while not gen.is_done():
        gen.generate_next_token()
        got.append(int(gen.get_next_tokens()[0]))
    assert got == ref and len(got) == 32
    # its tokenizer reads the copied tokenizer files as transformers does
    text = "The quick brown fox jumps over 12 + 30 lazy dogs."
    theirs = transformers.AutoTokenizer.from_pretrained(dense).encode(text, add_special_tokens=False)
    assert list(og.Tokenizer(gm).encode(text)) == theirs
    cfg = json.loads((fp32 / "genai_config.json").read_text())
    assert cfg["search"]["temperature"] == 0.6 and cfg["search"]["top_p"] == 0.95  # the distills' sampling defaults
    tok = transformers.AutoTokenizer.from_pretrained(dense)
    assert (cfg["model"]["bor_token_id"], cfg["model"]["eor_token_id"]) == tuple(tok.convert_tokens_to_ids(["<think>", "</think>"]))


def test_fp16_logits_close(qwen, tmp_path):
    out = tmp_path / "fp16"
    convert(qwen, out, precision="fp16")
    onnx.checker.check_model(str(out / "model.onnx"), full_check=True)
    a, b = hf_logits(hf(qwen)), ort_logits(out, Checkpoint.open(qwen).config, dtype=np.float16)
    assert float(np.abs(a - b).max()) <= 0.01 * float(np.abs(a).max())


def _nbits_dequant_in_ort(parts: dict[str, np.ndarray], k: int, n: int, block: int) -> np.ndarray:
    """onnxruntime's MatMulNBits on an identity input: its dequantized weight, transposed ([K, N])."""
    ins = ["A", "B", "scales"] + (["zero_points"] if "zero_points" in parts else [])
    node = helper.make_node("MatMulNBits", ins, ["Y"], domain="com.microsoft", K=k, N=n, bits=4, block_size=block)
    g = helper.make_graph([node], "g", [helper.make_tensor_value_info("A", TensorProto.FLOAT, [k, k])],
                          [helper.make_tensor_value_info("Y", TensorProto.FLOAT, [k, n])],
                          [numpy_helper.from_array(v, name) for name, v in parts.items()])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 21), helper.make_opsetid("com.microsoft", 1)])
    s = ort.InferenceSession(m.SerializeToString(), providers=["CPUExecutionProvider"])
    return s.run(None, {"A": np.eye(k, dtype=np.float32)})[0]


@pytest.mark.parametrize("block, sym", [(32, True), (64, False), (128, True)])
def test_int4_matmul_nbits_dequantizes_to_dshubs_values_bit_for_bit(qwen, tmp_path, block, sym):
    out = tmp_path / "int4"
    res = convert(qwen, out, precision="int4", block_size=block, symmetric=sym)
    assert res["matmul_nbits"] == 2 * 7
    onnx.checker.check_model(str(out / "model.onnx"), full_check=True)
    m = onnx.load(str(out / "model.onnx"))  # external data next to it
    inits = {t.name: numpy_helper.to_array(t) for t in m.graph.initializer}
    src = Checkpoint.open(qwen)
    for w in ("model.layers.0.self_attn.k_proj", "model.layers.1.mlp.down_proj"):
        parts = {p: inits[f"{w}.MatMulNBits.{p}"] for p in ("B", "scales", "zero_points") if f"{w}.MatMulNBits.{p}" in inits}
        assert ("zero_points" in parts) == (not sym)
        exact = src.read(w + ".weight").to(torch.float32)
        n, k = exact.shape
        ours = unpack_matmul_nbits({p: torch.from_numpy(v.copy()) for p, v in parts.items()}, k, block)
        ref = quantize_int4(exact, Int4Scheme(block, sym, torch.float32))  # from the exact input values
        assert torch.equal(ours.q, ref.q) and torch.equal(ours.scale, ref.scale)
        theirs = _nbits_dequant_in_ort(parts, k, n, block)
        assert np.array_equal(theirs, dequantize_int4(ref, torch.float32).T.numpy())


def test_int4_logits_equal_transformers_on_the_dequantized_weights(qwen, tmp_path):
    """The whole int4 graph computes what transformers computes with dshub's dequantized weights; against the BF16
    weights the synthetic model (random weights, chaotic) moves by ~0.4 of the logit scale (measured 0.38)."""
    out = tmp_path / "int4"
    convert(qwen, out, precision="int4")
    cfg = Checkpoint.open(qwen).config
    b = ort_logits(out, cfg)
    model = hf(qwen)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("proj.weight"):
                p.copy_(dequantize_int4(quantize_int4(p.data, Int4Scheme(32, True, torch.float32)), torch.float32))
    a = hf_logits(model)
    assert float(np.abs(a - b).max()) <= 1e-4 * float(np.abs(a).max())


def _cmd(src: Path, out: Path) -> list[str]:
    return [sys.executable, "-m", "dshub.cli", "convert", str(src), "--to", "onnx", "--precision", "int4", "--out", str(out)]


def test_killed_run_resumes_to_byte_identical_files(qwen, tmp_path):
    whole = tmp_path / "whole"
    subprocess.run(_cmd(qwen, whole), check=True, capture_output=True)
    out = tmp_path / "killed"
    kill_mid_run(_cmd(qwen, out), out, "genai_config.json")
    assert not json.loads((out / MANIFEST_NAME).read_text())["complete"]
    rc = subprocess.run(_cmd(qwen, out), capture_output=True, text=True)
    assert rc.returncode == 0, rc.stderr
    assert not list(out.glob(f"*{TMP_SUFFIX}"))
    for p in whole.iterdir():
        if p.name != MANIFEST_NAME:
            assert (out / p.name).read_bytes() == p.read_bytes(), p.name


def test_two_workers_and_dry_run_agree_with_one(qwen, tmp_path):
    a = convert(qwen, tmp_path / "a", precision="int4")
    b = run_conversion(qwen, build_options("onnx", out=tmp_path / "b", workers=2, precision="int4"), progress=False).to_dict()
    dry = run_conversion(qwen, build_options("onnx", out=tmp_path / "c", precision="int4", dry_run=True), progress=False).to_dict()
    assert a["files"] == b["files"] == dry["files"]
    for f in a["files"]:
        assert (tmp_path / "a" / f["name"]).read_bytes() == (tmp_path / "b" / f["name"]).read_bytes()
        assert (tmp_path / "a" / f["name"]).stat().st_size == f["bytes"]


def test_moe_family_is_refused_naming_why(tmp_path):
    from typer.testing import CliRunner

    from dshub.cli import app

    moe = tmp_path / "moe"
    write_synthetic(moe, "tiny-v2")
    with pytest.raises(UsageError, match="MLA attention and routed experts"):
        convert(moe, tmp_path / "o")
    r = CliRunner().invoke(app, ["convert", str(moe), "--to", "onnx", "--out", str(tmp_path / "o"), "--json"])
    doc = json.loads(r.stdout)
    assert r.exit_code == 2 and not doc["ok"] and "routed experts" in doc["error"]["message"]
    assert not (tmp_path / "o" / "model.onnx").exists()


def test_bad_onnx_options_are_usage_errors(qwen, tmp_path):
    with pytest.raises(UsageError, match="--precision 'int8'"):
        build_options("onnx", out=tmp_path, precision="int8")
    with pytest.raises(UsageError, match="--block-size 48"):
        build_options("onnx", out=tmp_path, block_size=48)
    with pytest.raises(UsageError, match="does not take quant"):
        build_options("onnx", out=tmp_path, quant="Q8_0")


def test_onnx_sizes_in_info_are_the_converters_plan(cli, qwen, tmp_path):
    from dshub.api import info
    from dshub.recipes.models import catalog_entry

    sizes = info(qwen)["output_sizes"]
    for label, flags in (("onnx fp32", []), ("onnx int4 b32", ["--precision", "int4"])):
        dry = json.loads(cli("convert", qwen, "--to", "onnx", *flags, "--out", tmp_path / "o", "--dry-run", "--json").stdout)
        assert sizes[label] == dry["total_bytes"] > 0
    assert sizes["onnx int4 b32"] < sizes["onnx fp32"] and sizes["onnx fp16"] < sizes["onnx fp32"]
    # a catalog distill's config.json alone is sized by the same plan (Qwen-1.5B in fp32: ~7 GB of weights)
    src = tmp_path / "cfg"
    src.mkdir()
    (src / "config.json").write_text(json.dumps(catalog_entry("deepseek-r1-distill-qwen-1.5b").config))
    size = info(src)["output_sizes"]["onnx fp32"]
    assert 7.0e9 < size < 7.3e9  # 1.78B params x 4 bytes + the rotary caches
    assert "onnx fp32" not in info(write_moe(tmp_path))["output_sizes"]  # refused for MoE: left out


def write_moe(tmp_path: Path) -> Path:
    d = tmp_path / "moe-info"
    write_synthetic(d, "tiny-v2")
    return d


def test_fp16_overflow_names_the_tensor_and_leaves_nothing_complete(tmp_path):
    from dshub.errors import QuantizationError
    from tests.support.ckpt_edit import read_shard, shard_of, write_shard

    src = tmp_path / "big"
    write_synthetic(src, "tiny-qwen2")
    name = "model.layers.1.mlp.up_proj.weight"
    shard = shard_of(src, name)
    header, blobs = read_shard(shard)
    big = torch.frombuffer(bytearray(blobs[name]), dtype=torch.bfloat16).clone()
    big[5] = 1e6  # BF16 holds it, FP16 (max 65504) does not
    blobs[name] = bytes(big.view(torch.uint8).numpy())
    write_shard(shard, header, blobs)
    with pytest.raises(QuantizationError, match=f"{name}.*do not fit float16"):
        convert(src, tmp_path / "o", precision="fp16")
    assert not (tmp_path / "o" / "genai_config.json").exists()
    assert convert(src, tmp_path / "o32")["precision"] == "fp32"  # fp32 holds it
