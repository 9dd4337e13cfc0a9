"""`dshub info` on an ONNX output (issue 17, item 9): it says what the directory is — format, precision, MatMulNBits
blocks and zero points, layers and heads from the graph and genai_config.json, every data file — and a file that is
not an ONNX graph, a data file missing or cut short, are one-line errors naming the file and a tensor in it."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from dshub.checkpoint.synth import write_synthetic
from dshub.converters import build_options, run_conversion


@pytest.fixture(scope="module")
def qwen(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("qwen") / "tiny-qwen2"
    write_synthetic(d, "tiny-qwen2")
    return d


@pytest.fixture(scope="module")
def fp16(qwen, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("onnx") / "fp16"
    run_conversion(qwen, build_options("onnx", out=out, workers=1, precision="fp16"), progress=False)
    return out


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


def damaged(fp16: Path, tmp_path: Path) -> tuple[Path, Path]:
    """A copy of the fp16 output and its first layer's data file."""
    out = tmp_path / "onnx"
    shutil.copytree(fp16, out)
    return out, sorted(out.glob("*.onnx.data"))[0]


def initializers_in(out: Path, data: Path) -> set[str]:
    import onnx

    g = onnx.load(str(out / "model.onnx"), load_external_data=False).graph
    return {t.name for t in g.initializer if any(e.key == "location" and e.value == data.name for e in t.external_data)}


@pytest.mark.parametrize("damage, detail", [
    ("missing", "external data file missing: model.onnx stores this initializer in it"),
    ("short", "but model.onnx places this initializer up to byte"),
])
def test_info_on_a_missing_or_short_data_file_is_one_line(cli, fp16, tmp_path, damage, detail):
    out, data = damaged(fp16, tmp_path)
    if damage == "missing":
        data.unlink()
    else:
        with open(data, "r+b") as f:
            f.truncate(data.stat().st_size - 1)
    r = cli("info", out, "--json")
    assert r.exit_code == 1
    err = json.loads(r.stdout)["error"]
    assert err["path"] == str(data) and err["tensor"] in initializers_in(out, data) and detail in err["message"]
    text = cli("info", out)
    lines = text.output.strip().splitlines()
    assert text.exit_code == 1 and len(lines) == 1 and data.name in lines[0] and err["tensor"] in lines[0], text.output


def test_info_refuses_a_data_location_outside_the_directory(cli, fp16, tmp_path):
    import onnx

    out, data = damaged(fp16, tmp_path)
    (tmp_path / "elsewhere.data").write_bytes(data.read_bytes())
    model = onnx.load(str(out / "model.onnx"), load_external_data=False)
    moved = next(t for t in model.graph.initializer if t.name in initializers_in(out, data))
    next(e for e in moved.external_data if e.key == "location").value = "../elsewhere.data"
    onnx.save(model, str(out / "model.onnx"))
    r = cli("info", out, "--json")
    err = json.loads(r.stdout)["error"]
    assert r.exit_code == 1 and err["tensor"] == moved.name and "outside the directory" in err["message"]
