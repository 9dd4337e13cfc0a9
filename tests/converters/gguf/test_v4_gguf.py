"""DeepSeek-V4 -> GGUF (llama.cpp `deepseek4`), through the CLI on tiny-v4.

- `--quant MXFP4_MOE` (what llama.cpp's converter writes for V4): experts repacked into GGUF MXFP4 without a float
  round trip, FP8 -> Q8_0, BF16 matrices BF16, F32 sources F32, the hash table I32: every tensor byte-identical with
  convert_hf_to_gguf.py on the same input, and the MXFP4 blocks decode to exactly the source values.
- llama.cpp (llama-cpp-python) loads MXFP4_MOE, Q4_K_M and F32 files; their logits are compared with transformers'
  DeepseekV4ForCausalLM on the BF16 conversion of the same checkpoint.
"""
from __future__ import annotations

import json
from pathlib import Path

import gguf
import numpy as np
import pytest
import torch

from dshub.checkpoint.reader import Checkpoint
from tests.support.decode import mxfp4_reference
from tests.support.tools import llama_cpp_vendor, require
from tests.support.upstream import assert_same_tensors, convert_hf_to_gguf

# Positions compared with transformers: the sliding window (8) of tiny-v4, which holds CSA's compressed entries (every
# 4 tokens). Past the window llama.cpp and transformers 5.24 part ways even on an F32 file (measured: max 2.1 at 40
# tokens, 3e-3 at 8), a difference between the two implementations, not in the weights.
IDS = list(range(3, 11))
# Measured on tiny-v4 (seed 0), mean |logit difference| / mean |logit| against transformers over IDS:
# F32 0.001, MXFP4_MOE 0.074 (Q8_0 of the FP8 weights), Q4_K_M 0.50.
REL_BOUND = {"F32": 0.005, "MXFP4_MOE": 0.12, "Q4_K_M": 0.8}


@pytest.fixture(scope="module")
def ggufs(tiny_v4: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    from typer.testing import CliRunner

    from dshub.cli import app

    root = tmp_path_factory.mktemp("v4-gguf")
    out = {}
    for quant in REL_BOUND:
        r = CliRunner().invoke(app, ["convert", str(tiny_v4), "--to", "gguf", "--quant", quant, "--out", str(root / quant), "--json"])
        assert r.exit_code == 0, r.output
        out[quant] = root / quant / json.loads(r.stdout)["files"][0]["name"]
    return out


def test_default_is_byte_identical_with_llama_cpp_converter(tiny_v4: Path, ggufs: dict[str, Path], tmp_path: Path):
    ref_path = tmp_path / "ref.gguf"
    proc = convert_hf_to_gguf(llama_cpp_vendor(), tiny_v4, ref_path, "q8_0")  # its V4 types ignore --outtype
    assert proc.returncode == 0, proc.stderr[-3000:]
    t_ref = assert_same_tensors(ggufs["MXFP4_MOE"], ref_path)
    ours, ref = gguf.GGUFReader(ggufs["MXFP4_MOE"]), gguf.GGUFReader(ref_path)
    assert {t.tensor_type.name for t in t_ref.values()} == {"MXFP4", "Q8_0", "BF16", "F32", "I32"}
    for key, f in ref.fields.items():  # every metadata key upstream writes, with its value (tokenizer flags aside)
        if key.startswith("deepseek4.") or key == "general.file_type":
            assert ours.fields[key].contents() == f.contents(), key


def test_mxfp4_experts_decode_to_the_source_values(tiny_v4: Path, ggufs: dict[str, Path]):
    ck = Checkpoint.open(tiny_v4)
    n_exp = ck.config["n_routed_experts"]
    tensors = {t.name: t for t in gguf.GGUFReader(ggufs["MXFP4_MOE"]).tensors}
    for layer in range(ck.config["num_hidden_layers"]):
        for proj, gname in (("w1", "gate"), ("w2", "down"), ("w3", "up")):
            t = tensors[f"blk.{layer}.ffn_{gname}_exps.weight"]
            got = gguf.quants.dequantize(t.data, t.tensor_type)  # gguf-py's own MXFP4 decoder
            for e in range(n_exp):
                w = f"layers.{layer}.ffn.experts.{e}.{proj}."
                want = mxfp4_reference(ck.read(w + "weight"), ck.read(w + "scale")).float().numpy()
                assert np.array_equal(got[e], want), w


def _hf_logits(tiny_v4: Path, tmp_path: Path) -> np.ndarray:
    from transformers import DeepseekV4ForCausalLM

    from dshub.converters import build_options, run_conversion

    run_conversion(tiny_v4, build_options("bf16", out=tmp_path / "bf16"), progress=False)
    model = DeepseekV4ForCausalLM.from_pretrained(tmp_path / "bf16", dtype=torch.float32).eval()
    with torch.no_grad():
        return model(torch.tensor([IDS])).logits[0].numpy()


def test_llama_cpp_loads_them_and_logits_track_transformers(tiny_v4: Path, ggufs: dict[str, Path], tmp_path: Path):
    llama_cpp = require("llama_cpp")
    ref = _hf_logits(tiny_v4, tmp_path)
    rel = {}
    for quant, path in ggufs.items():
        llm = llama_cpp.Llama(model_path=str(path), n_ctx=128, logits_all=True, verbose=False, n_threads=2, seed=0)
        llm.eval(IDS)
        got = np.array(llm.scores[: len(IDS)], dtype=np.float32)
        assert np.isfinite(got).all()
        rel[quant] = float(np.abs(got - ref).mean() / np.abs(ref).mean())
        assert rel[quant] < REL_BOUND[quant], (quant, rel)
    assert rel["F32"] < rel["MXFP4_MOE"] < rel["Q4_K_M"], rel  # the error follows the bits


def test_refusals(tiny_v4: Path, tiny_ckpt: Path, tmp_path: Path, cli):
    r = cli("convert", tiny_v4, "--to", "gguf", "--quant", "MXFP4_MOE", "--mtp", "--out", tmp_path / "a")
    assert r.exit_code == 2 and "MTP-only file" in r.stderr
    r = cli("convert", tiny_ckpt, "--to", "gguf", "--quant", "MXFP4_MOE", "--out", tmp_path / "b")
    assert r.exit_code == 2 and "has none" in r.stderr
