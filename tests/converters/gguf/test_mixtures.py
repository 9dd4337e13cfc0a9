"""Named mixtures, policies and --target-size as pure functions over tensor names and shapes (no data touched).

The DeepSeek-V3 tensor list (1086 tensors) comes from the real config dimensions; the expected per-tensor types are
llama-quantize's rules for deepseek2 (src/llama-quant.cpp). Byte-exactness against llama-quantize itself is in
test_mixtures_llama.py.
"""
from __future__ import annotations

import dataclasses
import re
from collections import Counter
from pathlib import Path

import pytest

from dshub.converters import build_options, run_conversion
from dshub.converters.gguf.mixtures import MIXTURES, category, use_more_bits
from dshub.converters.gguf.policy import load_policy, presets, solve_target_size, step
from dshub.converters.gguf.schemes import SchemeContext, resolve
from dshub.converters.sizing import target_options
from dshub.converters.gguf.tensors import plan_tensors
from dshub.errors import PolicyError, UsageError
from dshub.formats.gguf_layout import forced_f32, map_tensors
from dshub.checkpoint.synth import PRESETS, make_config
from tests.support.configs import V3_DIMS

MORE_BITS_61 = set(range(0, 7)) | set(range(9, 52, 3)) | set(range(53, 61))


@pytest.fixture(scope="module")
def v3() -> tuple[dict, list]:
    config = make_config(dataclasses.replace(PRESETS["tiny"], dims=dict(V3_DIMS)), 129280)
    return config, map_tensors(config)


def _plan(config: dict, mapped: list, **params) -> dict[str, str]:
    ctx = SchemeContext(config, tuple((n, s) for n, s, _ in mapped if not forced_f32(n, s)))
    _, fn = resolve(target_options("gguf", **params), ctx)
    return {p.info.name: p.info.ggml_type for p in plan_tensors(mapped, fn)}


def _bytes(config: dict, mapped: list, types: dict[str, str]) -> int:
    from dshub.quant.gguf.types import GGML_TYPES

    return sum(GGML_TYPES[types[n]].nbytes(s) for n, s, _ in mapped)


def test_use_more_bits_layers_for_61_layers() -> None:
    assert {i for i in range(61) if use_more_bits(i, 61)} == MORE_BITS_61
    assert len(MORE_BITS_61) == 30


def test_categories_follow_llama_cpp_substrings() -> None:
    assert category("blk.5.ffn_down_exps.weight") == category("blk.5.ffn_down_shexp.weight") == "ffn_down"
    assert category("blk.0.attn_k_b.weight") == "other"  # not attn_k.weight: no attention bumps on MLA
    assert category("blk.0.attn_output.weight") == "attn_output"
    assert category("output.weight") == "output" and category("token_embd.weight") == "token_embd"


def test_q4_k_m_on_deepseek_v3(v3) -> None:
    config, mapped = v3
    types = _plan(config, mapped, quant="Q4_K_M")
    assert len(types) == 1086
    assert types["output.weight"] == "Q6_K" and types["token_embd.weight"] == "Q4_K"
    for i in range(61):
        down = f"blk.{i}.ffn_down.weight" if i < 3 else f"blk.{i}.ffn_down_exps.weight"
        assert types[down] == ("Q6_K" if i in MORE_BITS_61 else "Q4_K"), down
        assert types[f"blk.{i}.attn_k_b.weight"] == "Q5_0"  # rows of 128: llama.cpp's Q4_K fallback
        assert types[f"blk.{i}.attn_v_b.weight"] == "Q4_K"
        assert types[f"blk.{i}.attn_output.weight"] == "Q4_K"
        assert types[f"blk.{i}.attn_norm.weight"] == "F32"
        if i >= 3:
            assert types[f"blk.{i}.ffn_gate_inp.weight"] == "F32"
    assert types["blk.3.ffn_down_shexp.weight"] == "Q6_K" and types["blk.7.ffn_down_shexp.weight"] == "Q4_K"
    assert types["blk.3.exp_probs_b.bias"] == "F32"
    bpw = 8 * _bytes(config, mapped, types) / sum(_numel(s) for _, s, _ in mapped)
    assert 4.75 < bpw < 4.9  # ~377 GiB for 671B parameters


def _numel(shape: tuple[int, ...]) -> int:
    n = 1
    for d in shape:
        n *= d
    return n


@pytest.mark.parametrize("quant, attn_output, down_early, down_mid, k_b", [
    ("Q2_K", "Q3_K", "Q3_K", "Q3_K", "Q4_0"),
    ("Q3_K_S", "Q3_K", "Q3_K", "Q3_K", "Q4_0"),
    ("Q3_K_M", "Q4_K", "Q5_K", "Q4_K", "Q4_0"),
    ("Q3_K_L", "Q5_K", "Q5_K", "Q5_K", "Q4_0"),
    ("Q4_K_S", "Q4_K", "Q5_K", "Q4_K", "Q5_0"),
    ("Q5_K_S", "Q5_K", "Q5_K", "Q5_K", "Q5_1"),
    ("Q5_K_M", "Q5_K", "Q6_K", "Q5_K", "Q5_1"),
    ("Q6_K", "Q6_K", "Q6_K", "Q6_K", "Q8_0"),
])
def test_named_mixtures_on_deepseek_v3(v3, quant, attn_output, down_early, down_mid, k_b) -> None:
    config, mapped = v3
    types = _plan(config, mapped, quant=quant)
    default = MIXTURES[quant].default
    assert types["blk.30.attn_output.weight"] == attn_output
    assert types["blk.1.ffn_down.weight"] == down_early  # layer 1 < 61/16: Q3_K_M's Q5_K, in every more-bits set
    assert types["blk.31.ffn_down_exps.weight"] == down_mid  # layer 31: not more-bits, not early
    assert types["blk.31.ffn_gate_exps.weight"] == types["blk.31.ffn_up_shexp.weight"] == default
    assert types["blk.0.attn_k_b.weight"] == k_b
    assert types["output.weight"] == "Q6_K"


def test_eight_expert_models_get_llama_cpps_attn_output_bump() -> None:
    config = make_config(PRESETS["tiny"], 640)  # 8 routed experts
    assert _plan(config, map_tensors(config), quant="Q4_K_M")["blk.1.attn_output.weight"] == "Q5_K"
    assert _plan(config, map_tensors(config), quant="Q3_K_L")["blk.1.attn_output.weight"] == "Q3_K"


def test_tensor_type_overrides_first_match_wins(v3) -> None:
    config, mapped = v3
    types = _plan(config, mapped, quant="Q4_K_M", tensor_type=[r"ffn_down_exps=Q2_K", r"ffn_(down|up)_exps=Q8_0"])
    assert types["blk.9.ffn_down_exps.weight"] == "Q2_K" and types["blk.9.ffn_up_exps.weight"] == "Q8_0"


# ------------------------------------------------------------------------------------------ policies

def test_shipped_presets_load_and_apply(v3) -> None:
    config, mapped = v3
    assert {"deepseek-dynamic", "deepseek-attn-q8"} <= set(presets())
    types = _plan(config, mapped, quant="Q3_K_S", policy="deepseek-dynamic")
    assert types["blk.4.attn_k_b.weight"] == types["blk.4.attn_v_b.weight"] == "Q8_0"
    assert types["blk.4.attn_q_b.weight"] == types["blk.4.attn_output.weight"] == "Q6_K"
    assert types["blk.4.ffn_up_shexp.weight"] == types["blk.0.ffn_down.weight"] == "Q6_K"
    assert types["blk.4.ffn_gate_exps.weight"] == types["blk.40.ffn_up_exps.weight"] == "Q3_K"
    assert types["blk.3.ffn_down_exps.weight"] == types["blk.5.ffn_down_exps.weight"] == "Q5_K"  # first 3 MoE layers: +2
    assert types["blk.6.ffn_down_exps.weight"] == "Q4_K"  # +1
    assert types["token_embd.weight"] == "Q4_K" and types["output.weight"] == "Q6_K"
    assert types["blk.4.ffn_gate_inp.weight"] == "F32"
    counts = Counter(types.values())
    assert counts["Q3_K"] == 2 * 58


def _write(tmp_path: Path, text: str) -> Path:
    p = tmp_path / "policy.yaml"
    p.write_text(text)
    return p


def test_policy_relative_steps_and_layers(v3, tmp_path: Path) -> None:
    config, mapped = v3
    p = _write(tmp_path, "name: t\nrules:\n"
                         "  - {match: 'ffn_.*_exps', layers: 'last:2,10-11', type: '-1'}\n"
                         "  - {match: 'ffn_gate_exps', layers: more-bits, type: Q5_K}\n")
    types = _plan(config, mapped, quant="Q4_K_M", policy=str(p))
    assert types["blk.60.ffn_down_exps.weight"] == "Q5_K"  # Q6_K (more bits) one step down
    assert types["blk.10.ffn_up_exps.weight"] == "Q3_K"
    assert types["blk.9.ffn_gate_exps.weight"] == "Q5_K" and types["blk.8.ffn_gate_exps.weight"] == "Q4_K"
    assert step("Q8_0", 1) == "Q8_0" and step("Q2_K", -1) == "Q2_K" and step("Q5_0", 1) == "Q6_K" and step("F16", -1) == "F16"


@pytest.mark.parametrize("text, message", [
    ("name: t\nrules:\n  - {match: 'attn_q_b', type: Q4_K, bits: 4}\n", r"rules\.0\.bits: Extra inputs are not permitted"),
    ("name: t\nrules:\n  - {match: 'attn_q_b', type: Q4_KK}\n", r"rules\.0\.type: unknown type 'Q4_KK'"),
    ("name: t\nrules:\n  - {match: 'attn_(q_b', type: Q4_K}\n", r"rules\.0\.match: bad regex"),
    ("name: t\nrules:\n  - {match: 'attn_q_b', type: Q4_K, layers: 'early'}\n", r"bad layer selector 'early'"),
    ("name: t\nrules:\n  - {match: 'attn_qkv', type: Q4_K}\n", r"rule 1 \(match 'attn_qkv'\) matches no tensor of this model"),
    ("name: t\nrules:\n  - {match: 'attn_k_b', type: Q4_K}\n",
     r"rule 1 gives blk\.0\.attn_k_b\.weight type Q4_K, whose blocks of 256 do not divide its rows of 128"),
    ("- just a list\n", r"a policy is a mapping"),
    ("name: [unclosed\n", r"cannot read the policy"),
])
def test_policy_errors_are_clear_and_early(v3, tmp_path: Path, text: str, message: str) -> None:
    config, mapped = v3
    with pytest.raises(PolicyError, match=message):
        _plan(config, mapped, quant="Q4_K_M", policy=str(_write(tmp_path, text)))


def test_unknown_policy_names_the_presets() -> None:
    with pytest.raises(PolicyError, match="no such file and no preset.*deepseek-dynamic"):
        load_policy("nope")


def test_policy_error_stops_the_cli_before_writing(tiny_ckpt: Path, tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from dshub.cli import app

    bad = _write(tmp_path, "name: t\nrules:\n  - {match: 'attn_qkv', type: Q4_K}\n")
    out = tmp_path / "out"
    res = CliRunner().invoke(app, ["convert", str(tiny_ckpt), "--to", "gguf", "--quant", "Q4_K_M", "--policy", str(bad),
                                   "--out", str(out)])
    assert res.exit_code == 2, res.output
    assert "matches no tensor of this model" in res.output and "Traceback" not in res.output
    assert not out.exists() or not any(out.iterdir())


# ------------------------------------------------------------------------------------------ --target-size

def test_target_size_lands_under_budget(v3) -> None:
    config, mapped = v3
    ctx = SchemeContext(config, tuple((n, s) for n, s, _ in mapped if not forced_f32(n, s)))
    _, base = resolve(target_options("gguf", quant="Q4_K_M"), ctx)
    sizes = []
    for gb in (230, 280, 330, 400, 500):
        chosen, planned = solve_target_size(base, ctx, gb * 10**9)
        types = _plan(config, mapped, quant="Q4_K_M", target_size=f"{gb}G")
        actual = _bytes(config, mapped, types)
        assert actual <= gb * 10**9 and planned >= actual
        assert actual > 0.97 * gb * 10**9  # the greedy pass spends nearly all of the budget
        assert types["blk.5.attn_q_b.weight"] == "Q4_K"  # only routed experts move
        sizes.append(actual)
    assert sizes == sorted(sizes)


def test_target_size_counts_the_mtp_f32_tensors(v3) -> None:
    from dshub.converters.gguf.policy import TENSOR_INFO_RESERVE, fixed_bytes

    config, mapped = v3
    with_mtp = map_tensors(config, mtp=True)
    ctx = lambda m: SchemeContext(config, tuple((n, s) for n, s, _ in m if not forced_f32(n, s)))  # noqa: E731
    extra = sum(4 * _numel(s) for n, s, _ in with_mtp if forced_f32(n, s)) - sum(4 * _numel(s) for n, s, _ in mapped if forced_f32(n, s))
    assert extra > 0
    assert fixed_bytes(ctx(with_mtp)) - fixed_bytes(ctx(mapped)) == extra + TENSOR_INFO_RESERVE * (len(with_mtp) - len(mapped))


def test_target_size_too_small_is_a_clear_error(v3) -> None:
    config, mapped = v3
    with pytest.raises(PolicyError, match=r"below the smallest plan for this model \(\d+ bytes, routed experts at Q2_K\)"):
        _plan(config, mapped, quant="Q4_K_M", target_size="100G")
    with pytest.raises(UsageError, match="expected a size like"):
        _plan(config, mapped, quant="Q4_K_M", target_size="lots")


def test_dry_run_plan_reports_mixture(tiny_ckpt: Path, tmp_path: Path) -> None:
    res = run_conversion(tiny_ckpt, build_options("gguf", out=tmp_path / "o", dry_run=True, **{"quant": "Q4_K_M"}))
    doc = res.to_dict()
    assert doc["dry_run"] and doc["file_type"] == 15
    assert doc["types"]["Q6_K"] >= 1 and doc["types"]["Q5_0"] >= 1
    assert not (tmp_path / "o").exists() or not any((tmp_path / "o").iterdir())
    assert any(re.search(r"attn_k_b", f["name"]) and f["type"] == "Q5_0" for f in doc["fallbacks"])


def test_cli_dry_run_prints_the_tensor_table(tiny_ckpt: Path, tmp_path: Path) -> None:
    import json

    from typer.testing import CliRunner

    from dshub.cli import app

    args = ["convert", str(tiny_ckpt), "--to", "gguf", "--quant", "Q3_K_S", "--policy", "deepseek-dynamic",
            "--out", str(tmp_path / "o"), "--dry-run"]
    res = CliRunner().invoke(app, args)
    assert res.exit_code == 0, res.output
    assert re.search(r"blk\.0\.attn_k_b\.weight\s+4x128x64\s+Q8_0", res.output)
    assert re.search(r"blk\.0\.attn_q_b\.weight\s+\S+\s+Q8_0 \(asked Q6_K\)", res.output)  # rows of 192: fallback
    assert re.search(r"52 tensors, .*bits per weight", res.output)
    doc = json.loads(CliRunner().invoke(app, args + ["--json"]).stdout)
    assert len(doc["tensor_table"]) == 52 and 4 < doc["bits_per_weight"] < 8
    assert not (tmp_path / "o").exists() or not any((tmp_path / "o").iterdir())
