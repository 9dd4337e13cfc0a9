"""`dshub verify` and `dshub info` on INT4 outputs: clean outputs pass, damaged ones name file and tensor."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import save_file

from dshub.converters import build_options, run_conversion
from dshub.summary import checkpoint_info
from dshub.checkpoint.synth import write_synthetic
from dshub.checks import verify

EXPERT = "model.layers.2.mlp.experts.1.up_proj"
RUNS = {"ct": {"symmetric": False, "group_size": 64}, "gptq": {"format": "gptq"}, "awq": {"format": "awq", "symmetric": False}}


@pytest.fixture(scope="module")
def outputs(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("int4v")
    write_synthetic(root / "tiny", "tiny", seed=1)
    outs = {}
    for name, params in RUNS.items():
        outs[name] = root / name
        run_conversion(root / "tiny", build_options("int4", out=outs[name], **params), progress=False)
    return outs


def damaged(src: Path, dst: Path, name: str, fn) -> Path:
    """Copy checkpoint `src` to `dst` with tensor `name` replaced by fn(tensor) (or dropped when fn returns None)."""
    shutil.copytree(src, dst)
    wm = json.loads((dst / "model.safetensors.index.json").read_text())["weight_map"]
    shard = dst / wm[name]
    with safe_open(shard, "pt") as f:
        tensors = {k: f.get_tensor(k) for k in f.keys()}
    new = fn(tensors[name])
    if new is None:
        del tensors[name]
    else:
        tensors[name] = new
    save_file(tensors, shard, metadata={"format": "pt"})
    return dst


@pytest.mark.parametrize("name", sorted(RUNS))
def test_clean_outputs_verify(outputs, name):
    report = verify(outputs[name])
    assert report.ok, [str(f) for f in report.findings]
    assert not report.findings, [str(f) for f in report.findings]


@pytest.mark.parametrize("name, tensor, fn, msg", [
    ("ct", EXPERT + ".weight_scale", lambda t: torch.where(torch.arange(t.numel()).reshape(t.shape) == 3, float("nan"), t.float()).to(t.dtype),
     "1 of 1024 scales are not finite and positive"),
    ("ct", EXPERT + ".weight_shape", lambda t: torch.tensor([256, 128]), "holds [256, 128]"),
    ("ct", EXPERT + ".weight_zero_point", lambda t: None, "missing (compressed-tensors needs I32[32, 4]"),
    ("gptq", EXPERT + ".qweight", lambda t: t[:16].clone(), "I32[16, 256], I32[32, 256] expected"),
    ("awq", EXPERT + ".scales", lambda t: -t, "scales are not finite and positive"),
])
def test_damage_is_reported(outputs, tmp_path, name, tensor, fn, msg):
    bad = damaged(outputs[name], tmp_path / "bad", tensor, fn)
    report = verify(bad)
    assert not report.ok
    hits = [f for f in report.findings if f.check == "int4" and f.tensor == tensor]
    assert hits and msg in hits[0].message, [str(f) for f in report.findings]
    assert hits[0].file and hits[0].file.endswith(".safetensors")


def test_unlisted_unquantized_linear_warns(outputs, tmp_path):
    dst = tmp_path / "c"
    shutil.copytree(outputs["ct"], dst)
    cfg = json.loads((dst / "config.json").read_text())
    cfg["quantization_config"]["ignore"].remove("model.layers.1.self_attn.o_proj")
    (dst / "config.json").write_text(json.dumps(cfg))
    report = verify(dst)
    warn = [f for f in report.findings if f.check == "int4"]
    assert report.ok and len(warn) == 1 and warn[0].severity == "warning" and warn[0].tensor == "model.layers.1.self_attn.o_proj.weight"


def test_info_reports_int4(outputs):
    for name, fmt in (("ct", "compressed-tensors"), ("gptq", "gptq"), ("awq", "awq")):
        i = checkpoint_info(outputs[name])["int4"]
        assert i["format"] == fmt and i["bits"] == 4 and i["quantized_roles"] == ["expert"]
        assert i["quantized_modules"] == 72 and i["unquantized_linear"] > 0 and i["int4_bytes"] > 0
    assert checkpoint_info(outputs["ct"])["int4"]["symmetric"] is False
    assert checkpoint_info(outputs["gptq"])["int4"]["group_size"] == 128
