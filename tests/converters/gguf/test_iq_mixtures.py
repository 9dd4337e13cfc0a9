"""The IQ mixtures, the dynamic preset and --target-size with IQ types, as pure functions over DeepSeek-V3's tensor
list (61 layers: llama.cpp's n_layer/8 = 7); and `dshub plan gguf:IQ*` pricing what `convert --dry-run` plans.
Byte-exactness against llama-quantize itself is in test_iq_mixtures_llama.py."""
from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest

from dshub.checkpoint.synth import PRESETS, make_config
from dshub.converters.gguf.policy import solve_target_size, step
from dshub.converters.gguf.schemes import SchemeContext, get_scheme
from dshub.converters.gguf.tensors import plan_tensors
from dshub.errors import PolicyError
from dshub.formats.gguf_layout import forced_f32, map_tensors
from dshub.quant.gguf.types import GGML_TYPES
from dshub.recipes.models import catalog_entry
from tests.support.configs import V3_DIMS


@pytest.fixture(scope="module")
def v3() -> tuple[dict, list, SchemeContext]:
    config = make_config(dataclasses.replace(PRESETS["tiny"], dims=dict(V3_DIMS)), 129280)
    mapped = map_tensors(config)
    return config, mapped, SchemeContext(config, tuple((n, s) for n, s, _ in mapped if not forced_f32(n, s)))


def _types(v3, quant: str, has_imatrix: bool = True, policy: str | None = None, target_size: int | None = None) -> dict[str, str]:
    """Planned types (after row fallbacks), the option hooks applied in their order, with `has_imatrix` as if
    --imatrix were given (no file needed for type choices)."""
    from dshub.converters.gguf.policy import load_policy, policy_type_fn

    config, mapped, ctx = v3
    ctx = dataclasses.replace(ctx, has_imatrix=has_imatrix)
    fn = get_scheme(quant).make(ctx)
    if policy:
        fn = policy_type_fn(load_policy(policy), fn, ctx)
    if target_size:
        chosen, _ = solve_target_size(fn, ctx, target_size)
        fn = (lambda base: lambda n, s: chosen.get(n) or base(n, s))(fn)
    return {p.info.name: p.info.ggml_type for p in plan_tensors(mapped, fn)}


def test_iq1_s_follows_llama_cpps_very_low_bit_rules(v3) -> None:
    t = _types(v3, "IQ1_S")
    # ffn_down: the first 61/8 = 7 ffn_down tensors in name order get Q2_K (llama.cpp counts, it does not parse layers)
    first7 = ["blk.0.ffn_down.weight", "blk.1.ffn_down.weight", "blk.10.ffn_down_exps.weight", "blk.10.ffn_down_shexp.weight",
              "blk.11.ffn_down_exps.weight", "blk.11.ffn_down_shexp.weight", "blk.12.ffn_down_exps.weight"]
    assert [t[n] for n in first7] == ["Q2_K"] * 7
    assert t["blk.12.ffn_down_shexp.weight"] == t["blk.2.ffn_down.weight"] == t["blk.3.ffn_down_exps.weight"] == "IQ1_S"
    assert t["blk.5.attn_output.weight"] == "IQ2_XXS" and t["output.weight"] == "Q5_K" and t["token_embd.weight"] == "Q2_K"
    assert t["blk.5.attn_k_b.weight"] == "IQ4_NL"  # rows of 128: llama.cpp's fallback for every IQ type
    assert t["blk.30.ffn_gate_exps.weight"] == t["blk.30.attn_q_b.weight"] == "IQ1_S"


def test_other_iq_mixtures(v3) -> None:
    xs = _types(v3, "IQ3_XS")  # default IQ3_S; gate/up IQ3_XXS in the middle layers [7, 53)
    assert xs["blk.6.ffn_gate_exps.weight"] == "IQ3_S" and xs["blk.7.ffn_up_exps.weight"] == "IQ3_XXS"
    assert xs["blk.52.ffn_gate_shexp.weight"] == "IQ3_XXS" and xs["blk.53.ffn_up_exps.weight"] == "IQ3_S"
    assert xs["output.weight"] == "Q6_K" and xs["token_embd.weight"] == "IQ3_S"
    m = _types(v3, "IQ2_M")
    assert m["blk.20.ffn_up_exps.weight"] == "IQ2_S" and m["blk.0.ffn_down.weight"] == "IQ3_S" and m["token_embd.weight"] == "IQ3_S"
    iq3m = _types(v3, "IQ3_M")
    assert iq3m["blk.6.ffn_down_exps.weight"] == "Q4_K" and iq3m["blk.7.ffn_down_exps.weight"] == "IQ3_S"
    assert iq3m["blk.9.attn_output.weight"] == "Q4_K"
    for quant in ("IQ4_XS", "IQ4_NL"):  # without an imatrix the first 7 layers' ffn_down get Q5_K
        assert _types(v3, quant, has_imatrix=False)["blk.6.ffn_down_exps.weight"] == "Q5_K"
        assert _types(v3, quant, has_imatrix=True)["blk.6.ffn_down_exps.weight"] == quant
    assert _types(v3, "IQ3_XXS", has_imatrix=True)["blk.1.ffn_down.weight"] == "IQ3_XXS"
    assert _types(v3, "TQ1_0")["token_embd.weight"] == "Q4_K"


def test_steps_along_the_iq_ladder() -> None:
    assert [step("IQ1_S", k) for k in (0, 1, 2, 5, 7, 20)] == ["IQ1_S", "IQ1_M", "IQ2_XXS", "IQ3_XXS", "IQ4_XS", "Q8_0"]
    assert step("IQ4_NL", -1) == "IQ3_S" and step("Q3_K", 1) == "Q4_K" and step("TQ1_0", 1) == "TQ1_0"


def test_dynamic_preset(v3) -> None:
    t = _types(v3, "IQ1_S", policy="deepseek-r1-dynamic")
    assert t["blk.4.attn_k_b.weight"] == "Q8_0" and t["blk.4.attn_q_b.weight"] == "Q4_K" and t["blk.4.attn_output.weight"] == "Q4_K"
    assert t["blk.4.ffn_up_shexp.weight"] == t["blk.1.ffn_gate.weight"] == t["output.weight"] == "Q6_K"
    assert t["token_embd.weight"] == "Q4_K"
    assert t["blk.20.ffn_gate_exps.weight"] == t["blk.20.ffn_up_exps.weight"] == "IQ1_S"
    assert t["blk.3.ffn_down_exps.weight"] == "IQ2_XXS" and t["blk.20.ffn_down_exps.weight"] == "IQ1_M"
    assert t["blk.10.ffn_down_exps.weight"] == "Q3_K"  # llama.cpp's counted Q2_K, one step up
    config, mapped, _ = v3
    experts = sum(GGML_TYPES[t[n]].nbytes(s) for n, s, _ in mapped if "_exps" in n)
    total = sum(GGML_TYPES[t[n]].nbytes(s) for n, s, _ in mapped)
    assert 0.8 < experts / total < 0.95 and 120e9 < total < 175e9  # the community's 1.58-bit R1 file is 131 GB


@pytest.mark.parametrize("gb", [150, 180, 220])
def test_target_size_picks_the_routed_experts_iq_type(v3, gb: int) -> None:
    t = _types(v3, "IQ1_S", policy="deepseek-r1-dynamic", target_size=gb * 10**9)
    _, mapped, _ = v3
    total = sum(GGML_TYPES[t[n]].nbytes(s) for n, s, _ in mapped)
    assert 0.97 * gb * 1e9 < total <= gb * 1e9
    assert t["blk.30.ffn_gate_exps.weight"].startswith("IQ") and t["blk.4.attn_q_b.weight"] == "Q4_K"


def test_target_size_without_imatrix_skips_imatrix_only_types(v3) -> None:
    t = _types(v3, "IQ1_S", has_imatrix=False, policy="deepseek-r1-dynamic", target_size=320 * 10**9)
    assert {t[n] for n in t if "_exps" in n} <= {"IQ3_S", "IQ4_XS", "Q2_K", "Q3_K", "Q4_K", "Q5_K", "Q6_K", "Q8_0"}
    with pytest.raises(PolicyError, match=r"routed experts at .*IQ3_S.*\); without --imatrix the types llama.cpp needs one for"):
        _types(v3, "IQ1_S", has_imatrix=False, target_size=150 * 10**9)


@pytest.mark.parametrize("quant", ["IQ1_S", "IQ2_XXS", "IQ4_XS"])
def test_plan_prices_what_convert_writes(cli, tmp_path: Path, quant: str) -> None:
    src = tmp_path / "deepseek-v3"
    src.mkdir()
    (src / "config.json").write_text(json.dumps(catalog_entry("deepseek-v3").config))
    dry = json.loads(cli("convert", src, "--to", "gguf", "--quant", quant, "--out", tmp_path / "o", "--dry-run", "--json").stdout)
    plan = json.loads(cli("plan", "deepseek-v3", "--weights", f"gguf:{quant}", "--engine", "llamacpp", "--json").stdout)
    assert dry["total_bytes"] == plan["weights_total_bytes"] > 1e11
    if quant != "IQ4_XS":
        assert dry["imatrix_missing"]  # priced, and the real run would ask for an --imatrix
