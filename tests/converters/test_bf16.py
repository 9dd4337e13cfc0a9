"""FP8 -> BF16: bit-exactness, a complete HF checkpoint, determinism, transformers logits, resume after SIGKILL."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors import safe_open

from dshub.converters import build_options, run_conversion
from dshub.checkpoint.reader import Checkpoint
from dshub.constants import MANIFEST_NAME, TMP_SUFFIX
from dshub.checkpoint.header import read_header
from tests.support.decode import load_all
from tests.support.interrupt import kill_mid_run


def reference_bf16(weight: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    """Independent dequantization: one 128x128 tile at a time, scalar scale, cropped at the edges."""
    rows, cols = weight.shape
    out = torch.empty(rows, cols, dtype=torch.bfloat16)
    for i in range(0, rows, 128):
        for j in range(0, cols, 128):
            tile = weight[i : i + 128, j : j + 128].to(torch.float32)
            out[i : i + 128, j : j + 128] = (tile * scale[i // 128, j // 128].item()).to(torch.bfloat16)
    return out


# (FP8 source fixture, its BF16 conversion): DeepSeek-V3, and V3.2 with the lightning indexer's FP8 wq_b / wk
MODELS = pytest.mark.parametrize("pair", [("tiny_ckpt", "tiny_bf16"), ("tiny_v32", "tiny_v32_bf16")], ids=["v3", "v32"])


@MODELS
def test_bf16_is_bit_exact_tensor_by_tensor(request: pytest.FixtureRequest, pair: tuple[str, str]):
    tiny_ckpt, tiny_bf16 = (request.getfixturevalue(f) for f in pair)
    src = Checkpoint.open(tiny_ckpt)
    got = load_all(tiny_bf16)
    edge_seen = False
    for name, t in got.items():
        entry = src.entry(name)
        if entry.dtype == "F8_E4M3":
            scale = src.read(name.replace(".weight", ".weight_scale_inv"))
            want = reference_bf16(src.read(name), scale)
            edge_seen |= t.shape[0] % 128 != 0 or t.shape[1] % 128 != 0
        else:
            want = src.read(name)
        assert t.dtype == want.dtype and torch.equal(t.view(torch.int16) if t.dtype == torch.bfloat16 else t,
                                                      want.view(torch.int16) if want.dtype == torch.bfloat16 else want), name
    assert edge_seen, "the synthetic model must exercise a non-multiple-of-128 edge"
    assert not any(n.endswith("_scale_inv") for n in got)


def test_output_is_a_complete_hf_checkpoint(tiny_ckpt: Path, tiny_bf16: Path):
    cfg = json.loads((tiny_bf16 / "config.json").read_text())
    assert "quantization_config" not in cfg and cfg["torch_dtype"] == "bfloat16"
    for name in ("tokenizer.json", "tokenizer_config.json", "generation_config.json"):
        assert (tiny_bf16 / name).read_bytes() == (tiny_ckpt / name).read_bytes()
    index = json.loads((tiny_bf16 / "model.safetensors.index.json").read_text())
    src_index = json.loads((tiny_ckpt / "model.safetensors.index.json").read_text())
    assert sorted(set(index["weight_map"].values())) == sorted(set(src_index["weight_map"].values()))
    tensors = load_all(tiny_bf16)
    assert index["metadata"]["total_size"] == sum(t.numel() * t.element_size() for t in tensors.values())
    assert set(index["weight_map"]) == set(tensors)
    for shard in tiny_bf16.glob("*.safetensors"):
        with safe_open(str(shard), "pt") as f:
            assert f.metadata() == {"format": "pt"}
        src_order = [n for n in Checkpoint.open(tiny_ckpt).header(shard.name).tensors if not n.endswith("_scale_inv")]
        order = list(Checkpoint.open(tiny_bf16).header(shard.name).tensors)
        assert order == src_order
    manifest = json.loads((tiny_bf16 / MANIFEST_NAME).read_text())
    assert manifest["complete"] and set(manifest["files"]) == {p.name for p in tiny_bf16.glob("*.safetensors")}


def test_same_input_gives_byte_identical_output_and_drop_mtp(tiny_ckpt: Path, tiny_bf16: Path, tmp_path: Path):
    again = tmp_path / "again"
    run_conversion(tiny_ckpt, build_options("bf16", out=again, workers=2))
    for p in tiny_bf16.iterdir():
        assert (again / p.name).read_bytes() == p.read_bytes(), p.name
    nomtp = tmp_path / "nomtp"
    run_conversion(tiny_ckpt, build_options("bf16", out=nomtp, drop_mtp=True))
    cfg = json.loads((nomtp / "config.json").read_text())
    assert cfg["num_nextn_predict_layers"] == 0
    layers = cfg["num_hidden_layers"]
    assert not any(f"layers.{layers}." in n for n in load_all(nomtp))


@MODELS
def test_transformers_loads_the_conversion_with_reference_logits(request: pytest.FixtureRequest, pair: tuple[str, str],
                                                                 tmp_path: Path):
    """transformers' own class for the architecture (DeepseekV3ForCausalLM / DeepseekV32ForCausalLM) loads the output;
    its logits equal, bit for bit, those of the model built from this test's dequantization. The prompt is longer
    than V3.2-tiny's index_topk (8), so its indexer selects keys."""
    import transformers
    from safetensors.torch import save_file

    tiny_ckpt, tiny_bf16 = (request.getfixturevalue(f) for f in pair)
    arch = json.loads((tiny_ckpt / "config.json").read_text())["architectures"][0]
    model, info = transformers.AutoModelForCausalLM.from_pretrained(tiny_bf16, dtype=torch.bfloat16, output_loading_info=True)
    assert not info["missing_keys"], info["missing_keys"]
    assert type(model).__name__ == arch
    # The reference: the same model built from this test's own dequantization of the FP8 source.
    src = Checkpoint.open(tiny_ckpt)
    n_layers = model.config.num_hidden_layers
    state = {}
    for name in src.weight_map:
        if name.endswith("_scale_inv") or (".layers." in name and int(name.split(".")[2]) >= n_layers):
            continue
        t = src.read(name)
        if t.dtype == torch.float8_e4m3fn:
            t = reference_bf16(t, src.read(name.replace(".weight", ".weight_scale_inv")))
        state[name] = t
    ref_dir = tmp_path / "reference"
    ref_dir.mkdir()
    model.config.save_pretrained(ref_dir)
    save_file(state, str(ref_dir / "model.safetensors"), metadata={"format": "pt"})
    ref, ref_info = transformers.AutoModelForCausalLM.from_pretrained(ref_dir, dtype=torch.bfloat16, output_loading_info=True)
    assert not ref_info["missing_keys"]
    ids = torch.tensor([[0, 17, 300, 42, 99, 5, 250, 1, 64, 77, 123, 400, 41, 42, 43, 9]])
    with torch.no_grad():
        a = model(ids).logits
        b = ref(ids).logits
    assert torch.isfinite(a).all() and a.float().std() > 0.1
    assert torch.equal(a, b)


def _convert_cmd(src: Path, out: Path) -> list[str]:
    return [sys.executable, "-m", "dshub.cli", "convert", str(src), "--to", "bf16", "--out", str(out)]


def test_resume_after_sigkill_is_byte_identical(tiny_ckpt: Path, tiny_bf16: Path, tmp_path: Path):
    out = tmp_path / "killed"
    kill_mid_run(_convert_cmd(tiny_ckpt, out), out, "model.safetensors.index.json")
    manifest = out / MANIFEST_NAME
    # Nothing looks complete: no index/config, and every shard present under its final name is whole (a kill between
    # the rename and the manifest update leaves a whole shard that the manifest does not list yet; a rerun rewrites it).
    assert not json.loads(manifest.read_text())["complete"]
    for p in out.glob("*.safetensors"):
        read_header(p)
    assert not (out / "config.json").exists()
    rc = subprocess.run(_convert_cmd(tiny_ckpt, out), capture_output=True, text=True)
    assert rc.returncode == 0, rc.stderr
    assert not list(out.glob(f"*{TMP_SUFFIX}"))
    for p in tiny_bf16.iterdir():
        assert (out / p.name).read_bytes() == p.read_bytes(), p.name


def test_dry_run_writes_nothing_and_reports_bytes(cli, tiny_ckpt: Path, tmp_path: Path):
    out = tmp_path / "dry"
    r = cli("convert", tiny_ckpt, "--to", "bf16", "--out", out, "--dry-run", "--json")
    assert r.exit_code == 0, r.output
    doc = json.loads(r.stdout)
    assert doc["dry_run"] and doc["total_bytes"] > 0 and len(doc["files"]) == 9
    assert not out.exists()
