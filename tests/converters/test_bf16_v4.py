"""DeepSeek-V4 -> BF16: FP8 (e8m0 or F32 block scales) and MXFP4 experts decoded exactly; transformers'
DeepseekV4ForCausalLM loads the output and its logits equal those of the model built from independently decoded
weights, bit for bit."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from dshub.checkpoint.reader import Checkpoint
from dshub.checks import verify
from tests.support.decode import fp8_reference, load_all, mxfp4_reference


def decoded(src: Path) -> dict[str, torch.Tensor]:
    """Every tensor of a V4 checkpoint as the BF16 output must hold it, decoded without dshub's codecs."""
    ck = Checkpoint.open(src)
    out = {}
    for name, t in load_all(src).items():
        if name.endswith(".scale"):
            continue
        entry = ck.entry(name)
        if entry.dtype == "F8_E4M3":
            out[name] = fp8_reference(t, ck.read(name[: -len(".weight")] + ".scale"))
        elif entry.dtype == "I8":
            out[name] = mxfp4_reference(t, ck.read(name[: -len(".weight")] + ".scale"))
        else:
            out[name] = t
    return out


@pytest.fixture(scope="module")
def v4_bf16(tiny_v4: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    from dshub.cli import app
    from typer.testing import CliRunner

    out = tmp_path_factory.mktemp("v4-bf16") / "bf16"
    r = CliRunner().invoke(app, ["convert", str(tiny_v4), "--to", "bf16", "--out", str(out)])
    assert r.exit_code == 0, r.output
    return out


def _bits(t: torch.Tensor) -> torch.Tensor:
    return t.view(torch.int16) if t.dtype == torch.bfloat16 else t


def test_every_tensor_is_the_exact_decode(tiny_v4: Path, v4_bf16: Path):
    got, want = load_all(v4_bf16), decoded(tiny_v4)
    assert set(got) == set(want)
    kinds = set()
    for name, w in want.items():
        assert got[name].dtype == w.dtype and torch.equal(_bits(got[name]), _bits(w)), name
        kinds.add(Checkpoint.open(tiny_v4).entry(name).dtype)
    assert {"F8_E4M3", "I8", "I32", "F32", "BF16"} <= kinds  # FP8, MXFP4, the hash table, F32 and BF16 all covered
    cfg = json.loads((v4_bf16 / "config.json").read_text())
    assert "quantization_config" not in cfg and cfg["torch_dtype"] == "bfloat16"
    assert verify(v4_bf16).ok


def test_flash_base_layout_fp8_experts_with_f32_scales(tmp_path: Path, cli):
    from dshub.checkpoint.synth import write_synthetic

    src, out = tmp_path / "base", tmp_path / "base-bf16"
    write_synthetic(src, "tiny-v4-base")
    assert Checkpoint.open(src).entry("layers.1.ffn.experts.0.w1.scale").dtype == "F32"
    assert cli("convert", src, "--to", "bf16", "--out", out).exit_code == 0
    got, want = load_all(out), decoded(src)
    assert all(torch.equal(_bits(got[n]), _bits(w)) for n, w in want.items())


def test_transformers_logits_equal_the_model_from_exact_weights(tiny_v4: Path, v4_bf16: Path, tmp_path: Path):
    from transformers import DeepseekV4ForCausalLM

    ref = tmp_path / "reference"
    ref.mkdir()
    for f in ("config.json", "tokenizer.json", "tokenizer_config.json"):
        shutil.copy(v4_bf16 / f, ref / f)
    save_file(decoded(tiny_v4), str(ref / "model.safetensors"), metadata={"format": "pt"})
    ids = torch.arange(3, 3 + 40).unsqueeze(0)  # 40 tokens: CSA compresses every 4 and the sliding window (8) wraps

    def logits(path: Path) -> torch.Tensor:
        model, info = DeepseekV4ForCausalLM.from_pretrained(path, dtype=torch.bfloat16, output_loading_info=True)
        assert not info["missing_keys"] and not info["mismatched_keys"], info
        # the one unexpected key transformers reports is the hash layer's gate bias, unused there (llama.cpp drops it)
        assert set(info["unexpected_keys"]) <= {"layers.0.mlp.gate.e_score_correction_bias"}, info
        with torch.no_grad():
            return model(ids).logits

    a, b = logits(v4_bf16), logits(ref)
    assert torch.isfinite(a).all() and a.float().std() > 0
    assert torch.equal(a, b)
