"""One owner for output sizes: `dshub info`, `dshub convert --dry-run` and `dshub plan` print the bytes of the
converters' own shape-only plans, on a synthetic checkpoint and on the catalog's DeepSeek-V3 config."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from dshub.recipes.models import catalog_entry

# (info label, convert flags, plan --weights, engine the plan is asked for)
TARGETS = [
    ("gguf Q4_K_M", ["--to", "gguf", "--quant", "Q4_K_M"], "gguf:Q4_K_M", "llamacpp"),
    ("gguf Q8_0", ["--to", "gguf", "--quant", "Q8_0"], "gguf:Q8_0", "llamacpp"),
    ("bf16", ["--to", "bf16"], "bf16", "llamacpp"),
    ("int4 w4a16 g128 (default scope)", ["--to", "int4"], "int4", "llamacpp"),
]


def _doc(result) -> dict:
    assert result.exit_code in (0, 1), result.output
    return json.loads(result.stdout)


def _three_sizes(cli, src: Path, model: str, out: Path, label: str, flags: list[str], weights: str, engine: str) -> tuple[int, int, int]:
    info = _doc(cli("info", src, "--json"))
    dry = _doc(cli("convert", src, *flags, "--out", out, "--dry-run", "--json"))
    assert dry["dry_run"] is True
    plan = _doc(cli("plan", model, "--weights", weights, "--engine", engine, "--json"))
    return info["output_sizes"][label], dry["total_bytes"], plan["weights_total_bytes"]


@pytest.mark.parametrize("label, flags, weights, engine", [t for t in TARGETS if t[2].startswith("gguf")])
def test_info_dry_run_and_plan_agree_on_a_synthetic_checkpoint(cli, tiny_ckpt: Path, tmp_path: Path, label, flags, weights, engine) -> None:
    sizes = _three_sizes(cli, tiny_ckpt, str(tiny_ckpt), tmp_path / "o", label, flags, weights, engine)
    assert len(set(sizes)) == 1 and sizes[0] > 0, sizes


@pytest.mark.parametrize("label, flags, weights, engine", TARGETS[:1])
def test_info_dry_run_and_plan_agree_on_the_catalog_v3_config(cli, tmp_path: Path, label, flags, weights, engine) -> None:
    """The catalog's config.json alone: info and the dry run plan its release layout; plan reads the catalog entry."""
    src = tmp_path / "deepseek-v3"
    src.mkdir()
    (src / "config.json").write_text(json.dumps(catalog_entry("deepseek-v3").config))
    info, dry, plan = _three_sizes(cli, src, "deepseek-v3", tmp_path / "o", label, flags, weights, engine)
    assert info == dry == plan
    assert 395e9 < plan < 415e9  # ~404 GB: Q4_K_M on 671B (MTP left out, as llama.cpp files leave it)
    assert _doc(cli("plan", str(src / "config.json"), "--weights", weights, "--engine", engine, "--json"))["weights_total_bytes"] == plan


def test_bf16_and_int4_sizes_agree_between_info_and_dry_run(cli, tiny_ckpt: Path, tmp_path: Path) -> None:
    info = _doc(cli("info", tiny_ckpt, "--json"))["output_sizes"]
    for label, flags, _, _ in TARGETS[2:]:
        dry = _doc(cli("convert", tiny_ckpt, *flags, "--out", tmp_path / label.split()[0], "--dry-run", "--json"))
        assert info[label] == dry["total_bytes"], label


def test_a_config_only_directory_cannot_be_converted_for_real(cli, tmp_path: Path) -> None:
    src = tmp_path / "cfg"
    src.mkdir()
    (src / "config.json").write_text(json.dumps(catalog_entry("deepseek-v3").config))
    r = cli("convert", src, "--to", "bf16", "--out", tmp_path / "o")
    assert r.exit_code == 1 and "model.safetensors" in r.output and not (tmp_path / "o").exists()
