"""llama.cpp (llama-cpp-python) loads and runs our GGUFs; logits agree with transformers' DeepseekV3ForCausalLM.

Bounds are relative to the reference's largest |logit| over the sequence, per type, and were measured on these synthetic
models (whose logits move ~7x the relative weight noise, see the numbers below):
- F16 GGUF vs transformers float32 on the same BF16 weights: llama.cpp converts activations to fp16 for F16 matmuls;
  measured max 0.23 % (YaRN model 0.33 %). Bound 1 %.
- Q8_0 GGUF vs transformers on the GGUF's own dequantized weights: llama.cpp also quantizes activations to Q8_0
  blocks before each Q8_0 matmul (~0.4 % per element); measured 2-7 %. Bound 12 %.
Positions whose MoE routing is a near tie in the reference (top-k or group margin below TAU in sigmoid-score units)
are excluded from the bound: there, any numeric difference may pick another expert (TAU 0.005 for F16; 0.03 for Q8_0,
whose activation rounding was seen to flip a choice with a 0.019 margin). At most 40 % may be excluded.
Top-1 must agree wherever the reference's top-2 logit margin exceeds the bound.
"""
from __future__ import annotations

import json
from pathlib import Path

import gguf
import numpy as np
import pytest
import torch
import transformers

from dshub.converters import build_options, run_conversion
from dshub.formats.gguf_layout import map_tensors
from tests.support.tools import require

llama_cpp = require("llama_cpp")

pytestmark = pytest.mark.slow

IDS = [0] + list(range(40, 70)) + [300, 301, 302, 5, 9, 100, 200, 41, 42, 43, 600, 601]
BOUND = {"F16": 0.01, "Q8_0": 0.12}
TAU = {"F16": 0.005, "Q8_0": 0.03}  # routing-margin threshold: larger where llama.cpp perturbs activations more
MIN_KEPT = 0.6


def hf_model(path: Path) -> torch.nn.Module:
    return transformers.AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32).eval()


def hf_logits(model: torch.nn.Module, ids: list[int]) -> tuple[np.ndarray, np.ndarray]:
    """Logits and, per position, the smallest routing margin over all MoE layers."""
    margins: list[torch.Tensor] = []

    def hook(mod: torch.nn.Module, args: tuple) -> None:
        h = args[0].reshape(-1, mod.hidden_dim).float()
        scores = torch.sigmoid(h @ mod.weight.float().T) + mod.e_score_correction_bias
        groups = scores.view(-1, mod.num_group, mod.num_experts // mod.num_group).topk(2, dim=-1)[0].sum(-1)
        gs = groups.sort(dim=-1, descending=True)[0]
        gap = gs[:, mod.topk_group - 1] - gs[:, mod.topk_group] if mod.num_group > mod.topk_group else torch.full_like(gs[:, 0], 9.0)
        keep = torch.zeros_like(groups).scatter_(1, groups.topk(mod.topk_group, dim=-1)[1], 1).bool()
        s = scores.masked_fill(~keep.repeat_interleave(mod.num_experts // mod.num_group, 1), -1e9).sort(dim=-1, descending=True)[0]
        margins.append(torch.minimum(gap, s[:, mod.top_k - 1] - s[:, mod.top_k]))

    handles = [layer.mlp.gate.register_forward_pre_hook(hook) for layer in model.model.layers if hasattr(layer.mlp, "gate")]
    try:
        with torch.no_grad():
            logits = model(torch.tensor([ids])).logits[0].numpy()
    finally:
        for h in handles:
            h.remove()
    return logits, torch.stack(margins).min(0)[0].numpy()


def llama_logits(path: Path, ids: list[int]) -> np.ndarray:
    llm = llama_cpp.Llama(model_path=str(path), n_ctx=256, logits_all=True, verbose=False, n_threads=2, seed=0)
    llm.eval(ids)
    return np.array(llm.scores[: len(ids)], dtype=np.float32)


def load_gguf_weights(model: torch.nn.Module, path: Path, config: dict) -> None:
    """Put the GGUF's dequantized weights into the transformers model (the inverse of the converter's mapping)."""
    r = gguf.GGUFReader(path)
    vals = {t.name: torch.from_numpy(np.array(gguf.quants.dequantize(t.data, t.tensor_type))).reshape(
        [int(d) for d in reversed(t.shape)]) for t in r.tensors}
    sd: dict[str, torch.Tensor] = {}
    experts: dict[tuple[int, str], torch.Tensor] = {}
    for name, shape, src in map_tensors(config):
        v = vals[name].reshape(shape)
        if src.kind == "tensor":
            sd[src.names[0]] = v
        elif src.kind == "experts":
            layer, proj = int(name.split(".")[1]), name.split(".")[2].split("_")[1]
            experts[(layer, proj)] = v
        elif src.kind == "k_b":
            h, nope, vh = src.split
            vb = vals[name.replace("attn_k_b", "attn_v_b")].reshape(h, vh, -1)
            sd[src.names[0]] = torch.cat([v.transpose(1, 2), vb], dim=1).reshape(h * (nope + vh), -1)
    for (layer, proj), v in experts.items():
        p = f"model.layers.{layer}.mlp.experts."
        if proj == "down":
            sd[p + "down_proj"] = v
        elif proj == "gate":
            sd[p + "gate_up_proj"] = torch.cat([v, experts[(layer, "up")]], dim=1)
    missing, _ = model.load_state_dict(sd, strict=False)
    assert not [m for m in missing if "rotary" not in m], missing


def check(got: np.ndarray, ref: np.ndarray, margins: np.ndarray, quant: str, label: str) -> dict:
    bound = BOUND[quant]
    scale = float(np.abs(ref).max())
    diff = np.abs(got - ref).max(axis=1) / scale
    kept = margins >= TAU[quant]
    assert kept.mean() >= MIN_KEPT, f"{label}: only {kept.sum()} of {len(kept)} positions route unambiguously"
    assert diff[kept].max() <= bound, f"{label}: max |Δlogit| {diff[kept].max():.4f} of the logit scale > {bound}"
    top2 = np.sort(ref, axis=1)[:, -2:]
    clear = kept & ((top2[:, 1] - top2[:, 0]) > bound * scale)
    assert (got.argmax(1) == ref.argmax(1))[clear].all(), f"{label}: top-1 differs where the reference margin is clear"
    return {"max": float(diff[kept].max()), "median": float(np.median(diff)), "kept": int(kept.sum()), "clear": int(clear.sum())}


@pytest.fixture(scope="module")
def ggufs(tiny_bf16: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    out = {}
    for q in ("F16", "Q8_0"):
        d = tmp_path_factory.mktemp(f"llama-{q}")
        doc = run_conversion(tiny_bf16, build_options("gguf", out=d, **{"quant": q}), progress=False).to_dict()
        out[q] = d / doc["files"][0]["name"]
    return out


def test_f16_logits_match_transformers(ggufs: dict[str, Path], tiny_bf16: Path) -> None:
    ref, margins = hf_logits(hf_model(tiny_bf16), IDS)
    stats = check(llama_logits(ggufs["F16"], IDS), ref, margins, "F16", "F16")
    assert stats["clear"] >= len(IDS) // 2


def test_q8_0_logits_match_transformers_on_its_weights(ggufs: dict[str, Path], tiny_bf16: Path) -> None:
    config = json.loads((tiny_bf16 / "config.json").read_text())
    model = hf_model(tiny_bf16)
    load_gguf_weights(model, ggufs["Q8_0"], config)
    ref, margins = hf_logits(model, IDS)
    check(llama_logits(ggufs["Q8_0"], IDS), ref, margins, "Q8_0", "Q8_0")


def test_split_set_loads_from_first_file(tiny_bf16: Path, ggufs: dict[str, Path], tmp_path: Path) -> None:
    doc = run_conversion(tiny_bf16, build_options("gguf", out=tmp_path, **{"quant": "F16", "split_max_tensors": 16}),
                         progress=False).to_dict()
    files = [tmp_path / f["name"] for f in doc["files"]]
    assert len(files) == 4 and files[0].name.endswith("-00001-of-00004.gguf")
    whole = llama_logits(ggufs["F16"], IDS[:12])
    np.testing.assert_array_equal(llama_logits(files[0], IDS[:12]), whole)


def test_yarn_rope_scaling_matches_transformers(tmp_path: Path) -> None:
    """YaRN keys, including llama.cpp's 0.1 * mscale_all_dim log-multiplier convention, reproduce transformers."""
    from dshub.checkpoint.synth import write_synthetic

    write_synthetic(tmp_path / "fp8", "tiny-yarn")
    run_conversion(tmp_path / "fp8", build_options("bf16", out=tmp_path / "bf16"), progress=False)
    doc = run_conversion(tmp_path / "bf16", build_options("gguf", out=tmp_path / "g", **{"quant": "F16"}), progress=False).to_dict()
    ids = [0] + list(range(40, 160))
    ref, margins = hf_logits(hf_model(tmp_path / "bf16"), ids)
    check(llama_logits(tmp_path / "g" / doc["files"][0]["name"], ids), ref, margins, "F16", "F16 yarn")


def test_mtp_gguf_loads_and_trunk_logits_unchanged(tiny_bf16: Path, ggufs: dict[str, Path], tmp_path: Path) -> None:
    """llama.cpp builds with next-n support load the MTP block and leave the main model's logits as they were."""
    doc = run_conversion(tiny_bf16, build_options("gguf", out=tmp_path, **{"quant": "F16", "mtp": True}), progress=False).to_dict()
    got = llama_logits(tmp_path / doc["files"][0]["name"], IDS[:12])
    np.testing.assert_array_equal(got, llama_logits(ggufs["F16"], IDS[:12]))
