"""Synthetic checkpoints (real layout, deterministic) and `dshub info`."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from dshub.checkpoint.reader import Checkpoint
from dshub.checkpoint.synth import PRESETS, QUANTIZATION_CONFIG, write_synthetic
from dshub.checks import verify


def test_same_seed_same_bytes_other_seed_other_bytes(tiny_ckpt: Path, tmp_path: Path):
    write_synthetic(tmp_path / "a", "tiny", seed=0)
    write_synthetic(tmp_path / "b", "tiny", seed=1)
    for p in tiny_ckpt.iterdir():
        assert (tmp_path / "a" / p.name).read_bytes() == p.read_bytes(), p.name
    shard = sorted(tiny_ckpt.glob("*.safetensors"))[1].name
    assert (tmp_path / "b" / shard).read_bytes() != (tiny_ckpt / shard).read_bytes()


@pytest.mark.parametrize("preset", [p for p in PRESETS if p.startswith("tiny")])
def test_every_small_preset_verifies_clean(preset: str, tmp_path: Path):
    write_synthetic(tmp_path / preset, preset)
    report = verify(tmp_path / preset, deep=True)
    assert report.ok, [str(f) for f in report.findings]


def test_real_layout(tiny_ckpt: Path):
    ckpt = Checkpoint.open(tiny_ckpt)
    cfg = ckpt.config
    assert cfg["quantization_config"] == QUANTIZATION_CONFIG
    for key in ("scoring_func", "topk_method", "rope_theta", "routed_scaling_factor", "n_group", "topk_group"):
        assert key in cfg
    assert len(ckpt.shard_names) > 1
    kv_a = ckpt.entry("model.layers.0.self_attn.kv_a_proj_with_mqa.weight")
    assert kv_a.dtype == "F8_E4M3" and kv_a.shape[0] % 128 != 0
    assert ckpt.entry("model.layers.0.self_attn.kv_a_proj_with_mqa.weight_scale_inv").dtype == "F32"
    assert ckpt.entry("model.layers.1.mlp.gate.e_score_correction_bias").dtype == "F32"
    assert ckpt.entry("model.layers.1.mlp.gate.weight").dtype == "BF16"
    mtp = cfg["num_hidden_layers"]
    assert ckpt.entry(f"model.layers.{mtp}.eh_proj.weight").dtype == "F8_E4M3"
    last_main = ckpt.weight_map[f"model.layers.{mtp - 1}.post_attention_layernorm.weight"]
    assert ckpt.weight_map[f"model.layers.{mtp}.eh_proj.weight"] >= last_main  # the MTP layer comes last, as on the hub


def test_tokenizer_is_a_real_byte_level_bpe(tiny_ckpt: Path):
    import tokenizers
    tok = tokenizers.Tokenizer.from_file(str(tiny_ckpt / "tokenizer.json"))
    text = "Experts route tokens: 12 + 30 = 42."
    enc = tok.encode(text)
    assert enc.ids[0] == 0 and tok.decode(enc.ids) == text
    assert len(enc.ids) < len(text.encode())  # merges do something
    assert tok.get_vocab_size() <= json.loads((tiny_ckpt / "config.json").read_text())["vocab_size"]


def test_router_has_a_trained_like_spread(tiny_ckpt: Path):
    """Expert scores for random inputs are not near-tied: the top-1 / top-k gap is clearly non-zero."""
    ckpt = Checkpoint.open(tiny_ckpt)
    gate = ckpt.read("model.layers.1.mlp.gate.weight").float()
    x = torch.randn(64, gate.shape[1], generator=torch.Generator().manual_seed(0))
    scores = torch.sigmoid(x @ gate.T)
    top = scores.topk(3, dim=-1).values
    assert (top[:, 0] - top[:, 2]).mean() > 0.05


def test_info_json(cli, tiny_ckpt: Path):
    r = cli("info", tiny_ckpt, "--json")
    assert r.exit_code == 0, r.output
    doc = json.loads(r.stdout)
    ckpt = Checkpoint.open(tiny_ckpt)
    assert doc["encoding"]["name"] == "fp8-block" and doc["encoding"]["block"] == [128, 128]
    assert doc["shards"] == len(ckpt.shard_names)
    assert doc["bytes"] == sum(p.stat().st_size for p in tiny_ckpt.glob("*.safetensors"))
    assert doc["dtype_census"]["F8_E4M3"] > doc["dtype_census"]["BF16"]
    assert doc["params"]["mtp"] > 0 and doc["params"]["active"] < doc["params"]["total"]
    assert doc["output_sizes"]["bf16"] > doc["output_sizes"]["gguf Q4_0"]
