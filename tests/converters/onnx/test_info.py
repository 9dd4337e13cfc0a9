"""`dshub info` on an ONNX output (issue 17, item 9): it says what the directory is — format, precision, MatMulNBits
blocks and zero points, layers and heads from the graph and genai_config.json, every data file — and a file that is
not an ONNX graph is a one-line error."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from dshub.checkpoint.synth import write_synthetic
from dshub.converters import build_options, run_conversion


@pytest.fixture(scope="module")
def qwen(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("qwen") / "tiny-qwen2"
    write_synthetic(d, "tiny-qwen2")
    return d


@pytest.mark.parametrize("params, precision, blocks, zero_points", [
    ({}, "fp32", None, None),
    ({"precision": "fp16"}, "fp16", None, None),
    ({"precision": "int4", "block_size": 64, "symmetric": False}, "int4", [64], True),
])
def test_info_describes_the_onnx_output(cli, qwen, tmp_path, params, precision, blocks, zero_points):
    out = tmp_path / "onnx"
    run_conversion(qwen, build_options("onnx", out=out, workers=1, **params), progress=False)
    r = cli("info", out, "--json")
    assert r.exit_code == 0, r.output
    doc = json.loads(r.stdout)
    config = json.loads((qwen / "config.json").read_text())
    assert doc["format"] == "onnx" and doc["precision"] == precision
    assert doc["layers"] == config["num_hidden_layers"]
    assert doc["attention"] == {"heads": config["num_attention_heads"], "kv_heads": config["num_key_value_heads"],
                                "head_size": config["hidden_size"] // config["num_attention_heads"]}
    assert doc["inputs"][:2] == ["input_ids", "attention_mask"] and doc["outputs"][0] == "logits"
    on_disk = sorted(f.name for f in out.glob("*.onnx.data"))
    assert [f["name"] for f in doc["files"]] == on_disk
    assert doc["bytes"] == (out / "model.onnx").stat().st_size + sum((out / f).stat().st_size for f in on_disk)
    assert doc["genai_config"] and doc["tokenizer"]
    if blocks is None:
        assert doc["quantization"] is None and "MatMulNBits" not in doc["operators"]
    else:
        q = doc["quantization"]
        assert q["block_size"] == blocks and q["bits"] == [4] and (q["with_zero_points"] == q["matmuls"]) is zero_points
        assert doc["operators"]["MatMulNBits"] == q["matmuls"] > 0
    text = cli("info", out)
    assert text.exit_code == 0 and "ONNX decoder" in text.stdout and f"layers {config['num_hidden_layers']}" in text.stdout


def test_info_on_a_broken_graph_is_one_line(cli, tmp_path):
    d = tmp_path / "bad"
    d.mkdir()
    (d / "model.onnx").write_bytes(b"\x08\x07not a model")
    r = cli("info", d)
    assert r.exit_code == 1 and "Traceback" not in r.output
    assert "model.onnx" in r.output and "not a readable ONNX graph" in r.output
